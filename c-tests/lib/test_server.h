/* The in-process test server harness of test_session.c and
 * native/test_native.c: a lowlevel FUSE server that is a thread (or a
 * multi-threaded loop) of the test process, serving a few regular files
 * under its root, and an "application" process that does the file I/O
 * through the mount on command.
 *
 * The application is a separate process because under valgrind a thread
 * blocked in a FUSE request (e.g. stat() on the mount) keeps valgrind's big
 * lock, so the server threads could never run; the test thread itself never
 * touches the mount.
 *
 * What the harness gives:
 *   - a temp dir with a mount point (ts_make_dirs / ts_remove_dirs);
 *   - the files served: ts_files[] (name, inode, backing path), answered by
 *     ts_op_lookup and ts_op_getattr, which the test puts in its ops
 *     (attribute timeouts 0: every access asks again); a file whose
 *     backing path does not exist (yet) is ENOENT;
 *   - ts_mount / ts_start_loop / ts_unmount around fuse_session_*;
 *   - the application: ts_app_start(handler), ts_app(...) with a deadline
 *     (on timeout the connection is aborted and the process killed),
 *     ts_app_stop; TS_APP_STAT (stat of the mount root: waits for INIT,
 *     returns the connection's device minor) is built in;
 *   - waits for what the server threads record, fpio counters, the
 *     skip-or-fail decision when mounting is impossible, and an
 *     async-signal-safe cleanup for a signal handler.
 *
 * Include after <fpio.h> (with the test's FUSE_USE_VERSION) and lib/check.h.
 * Before including, the test may define TS_MAX_FILES (default 8). */
#ifndef FPIO_TEST_SERVER_H
#define FPIO_TEST_SERVER_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TS_MAX_FILES
#define TS_MAX_FILES 8
#endif
#define TS_APP_TIMEOUT_MS 120000
#define TS_APP_MAX_HELD 64

/* ---- the files served ---- */

struct ts_file {
  const char *name;  /* its name under the root */
  fuse_ino_t ino;
  const char *path;  /* its backing file (the buffer may be filled in later) */
};

/* One command to the application: an op of the test's own (>= 0) or a
 * TS_APP_* op, and arguments whose meaning is the op's. */
struct ts_cmd {
  int op;
  int a, b;
  char name[32];
  char text[64];
};

enum { TS_APP_EXIT = -1, TS_APP_STAT = -2 };

/* Runs one command of the test's own in the application process; returns
 * 0 or a value the test reads, or -errno. held/nheld: fds the application
 * keeps open across commands (at most TS_APP_MAX_HELD); TS_APP_CLOSE_ALL
 * style commands close them. */
typedef int (*ts_app_handler)(const struct ts_cmd *c, int *held, int *nheld);

static struct {
  char dir[64], mnt[128], abort_path[128];
  struct ts_file files[TS_MAX_FILES];
  int nfiles;
  struct fuse_session *se;
  struct fpio_session *fs;
  pthread_t loop;
  int looping, mounted, max_threads;
  pid_t app;
  int app_cmd, app_res;
} ts;

static inline void ts_add_file(const char *name, fuse_ino_t ino, const char *path) {
  if (ts.nfiles < TS_MAX_FILES) ts.files[ts.nfiles++] = (struct ts_file){name, ino, path};
}

static inline const struct ts_file *ts_file_by_ino(fuse_ino_t ino) {
  for (int i = 0; i < ts.nfiles; i++)
    if (ts.files[i].ino == ino) return &ts.files[i];
  return NULL;
}

static inline const struct ts_file *ts_file_by_name(const char *name) {
  for (int i = 0; i < ts.nfiles; i++)
    if (strcmp(ts.files[i].name, name) == 0) return &ts.files[i];
  return NULL;
}

/* 0 or an errno: the root, or a served file's backing attributes with its inode. */
static inline int ts_fill_attr(fuse_ino_t ino, struct stat *st) {
  const struct ts_file *f;
  if (ino == FUSE_ROOT_ID) {
    memset(st, 0, sizeof *st);
    st->st_ino = FUSE_ROOT_ID;
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
    return 0;
  }
  f = ts_file_by_ino(ino);
  if (f == NULL || f->path == NULL || f->path[0] == '\0') return ENOENT;
  if (stat(f->path, st) != 0) return errno;
  st->st_ino = ino;
  return 0;
}

static inline void ts_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  struct fuse_entry_param e;
  const struct ts_file *f = parent == FUSE_ROOT_ID ? ts_file_by_name(name) : NULL;
  int err;
  if (f == NULL) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  memset(&e, 0, sizeof e);
  e.ino = f->ino;
  err = ts_fill_attr(f->ino, &e.attr); /* timeouts 0: every access asks again */
  if (err)
    fuse_reply_err(req, err);
  else
    fuse_reply_entry(req, &e);
}

static inline void ts_op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct stat st;
  int err = ts_fill_attr(ino, &st);
  (void)fi;
  if (err)
    fuse_reply_err(req, err);
  else
    fuse_reply_attr(req, &st, 0);
}

/* ---- temp dir ---- */

static inline int ts_write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text);
  if (fd >= 0) close(fd);
  return ok ? 0 : -1;
}

/* ts.dir = a new /tmp/PREFIX.XXXXXX, with the mount point ts.mnt in it. */
static inline int ts_make_dirs(const char *prefix) {
  snprintf(ts.dir, sizeof ts.dir, "/tmp/%s.XXXXXX", prefix);
  if (mkdtemp(ts.dir) == NULL) {
    ts.dir[0] = '\0';
    return -1;
  }
  snprintf(ts.mnt, sizeof ts.mnt, "%s/mnt", ts.dir);
  return mkdir(ts.mnt, 0755);
}

static inline int ts_rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  if (type == FTW_DP || type == FTW_D || type == FTW_DNR)
    rmdir(path);
  else
    unlink(path);
  return 0;
}

/* Removes ts.dir and everything in it, never descending into a mount. */
static inline void ts_remove_dirs(void) {
  if (ts.dir[0] == '\0') return;
  nftw(ts.dir, ts_rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
  ts.dir[0] = '\0';
}

/* ---- mount and loop ---- */

/* A mounted session at ts.mnt that nobody serves yet (INIT stays queued). */
static inline int ts_mount(const struct fuse_lowlevel_ops *ops, size_t ops_size, const char *fsname) {
  char opt[64];
  char *argv[] = {"fpio-test", "-o", opt, NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, argv);
  snprintf(opt, sizeof opt, "fsname=%s", fsname);
  ts.se = fuse_session_new(&args, ops, ops_size, NULL);
  fuse_opt_free_args(&args);
  if (ts.se == NULL) return -1;
  if (fuse_session_mount(ts.se, ts.mnt) != 0) {
    fuse_session_destroy(ts.se);
    ts.se = NULL;
    return -1;
  }
  ts.mounted = 1;
  return 0;
}

static inline void *ts_loop_main(void *arg) {
  int rc;
  (void)arg;
  if (ts.max_threads <= 1) {
    rc = fuse_session_loop(ts.se);
  } else {
#if FUSE_USE_VERSION >= FUSE_MAKE_VERSION(3, 12)
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (cfg == NULL) {
      printf("#   fuse_loop_cfg_create failed\n");
      return NULL;
    }
    fuse_loop_cfg_set_max_threads(cfg, (unsigned)ts.max_threads);
    rc = fuse_session_loop_mt(ts.se, cfg);
    fuse_loop_cfg_destroy(cfg);
#else
    printf("#   a multi-threaded loop needs FUSE_USE_VERSION >= 312\n");
    rc = -1;
#endif
  }
  if (rc != 0) printf("#   fuse session loop returned %d\n", rc);
  return NULL;
}

/* Serves ts.se from a thread: one request at a time (max_threads <= 1), or
 * libfuse's multi-threaded loop with up to max_threads workers. */
static inline int ts_start_loop(int max_threads) {
  ts.max_threads = max_threads;
  if (pthread_create(&ts.loop, NULL, ts_loop_main, NULL) != 0) return -1;
  ts.looping = 1;
  return 0;
}

/* Detaching the mount ends the connection once nothing uses it, which ends
 * the loop. */
static inline void ts_unmount(void) {
  if (ts.se == NULL) return;
  umount2(ts.mnt, MNT_DETACH);
  if (ts.looping) {
    pthread_join(ts.loop, NULL);
    ts.looping = 0;
  }
  fuse_session_unmount(ts.se);
  fuse_session_destroy(ts.se);
  ts.se = NULL;
  ts.mounted = 0;
  ts.abort_path[0] = '\0';
}

/* Ends a hung connection: MNT_FORCE makes FUSE abort it (umount_begin),
 * also where fusectl is not mounted; then fusectl's abort file if it is.
 * Async-signal-safe. */
static inline void ts_abort_connection(void) {
  int fd;
  if (ts.mounted) umount2(ts.mnt, MNT_FORCE);
  if (ts.abort_path[0] == '\0') return;
  fd = open(ts.abort_path, O_WRONLY | O_CLOEXEC);
  if (fd >= 0) {
    if (write(fd, "1", 1) != 1) { /* nothing more to do */ }
    close(fd);
  }
}

/* ---- the application process ---- */

__attribute__((noreturn)) static inline void ts_app_loop(ts_app_handler handler, int cmd_fd, int res_fd) {
  struct ts_cmd c;
  struct stat st;
  int held[TS_APP_MAX_HELD], nheld = 0;
  while (read(cmd_fd, &c, sizeof c) == sizeof c && c.op != TS_APP_EXIT) {
    int r;
    if (c.op == TS_APP_STAT)
      r = stat(ts.mnt, &st) == 0 ? (int)minor(st.st_dev) : -errno;
    else
      r = handler(&c, held, &nheld);
    if (write(res_fd, &r, sizeof r) != sizeof r) break;
  }
  _exit(0);
}

/* Forks the application. Call before ts_mount, so that it holds no
 * /dev/fuse fd. It dies with the test process. */
static inline int ts_app_start(ts_app_handler handler) {
  int cmd[2], res[2];
  if (pipe2(cmd, O_CLOEXEC) != 0) return -1;
  if (pipe2(res, O_CLOEXEC) != 0) {
    close(cmd[0]);
    close(cmd[1]);
    return -1;
  }
  fflush(stdout);
  ts.app = fork();
  if (ts.app == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    close(cmd[1]);
    close(res[0]);
    ts_app_loop(handler, cmd[0], res[1]);
  }
  close(cmd[0]);
  close(res[1]);
  ts.app_cmd = cmd[1];
  ts.app_res = res[0];
  if (ts.app < 0) {
    ts.app = 0;
    close(ts.app_cmd);
    close(ts.app_res);
    return -1;
  }
  return 0;
}

static inline void ts_app_reap(void) {
  waitpid(ts.app, NULL, 0);
  close(ts.app_cmd);
  close(ts.app_res);
  ts.app = 0;
}

static inline void ts_app_kill(void) {
  if (ts.app <= 0) return;
  kill(ts.app, SIGKILL);
  ts_app_reap();
}

/* One command in the application process: its result, -EPIPE, or
 * -ETIMEDOUT (the connection is then aborted and the process killed). */
static inline int ts_app_cmd(int op, const char *name, int a, int b, const char *text, int timeout_ms) {
  struct ts_cmd c;
  struct pollfd pfd;
  int r;
  if (ts.app <= 0) return -EPIPE;
  memset(&c, 0, sizeof c);
  c.op = op;
  c.a = a;
  c.b = b;
  if (name) snprintf(c.name, sizeof c.name, "%s", name);
  if (text) snprintf(c.text, sizeof c.text, "%s", text);
  if (write(ts.app_cmd, &c, sizeof c) != sizeof c) return -EPIPE;
  pfd.fd = ts.app_res;
  pfd.events = POLLIN;
  if (poll(&pfd, 1, timeout_ms) != 1) {
    printf("#   application op %d on %s timed out; aborting the connection\n", op,
           name ? name : "-");
    ts_abort_connection();
    ts_app_kill();
    return -ETIMEDOUT;
  }
  if (read(ts.app_res, &r, sizeof r) != sizeof r) return -EPIPE;
  return r;
}

static inline int ts_app(int op, const char *name, int a, const char *text) {
  return ts_app_cmd(op, name, a, 0, text, TS_APP_TIMEOUT_MS);
}

static inline void ts_app_stop(void) {
  struct ts_cmd c;
  if (ts.app <= 0) return;
  memset(&c, 0, sizeof c);
  c.op = TS_APP_EXIT;
  if (write(ts.app_cmd, &c, sizeof c) != sizeof c) kill(ts.app, SIGKILL);
  ts_app_reap();
}

/* The application's stat of the mount root: returns once INIT is answered,
 * and tells the connection's fusectl abort file. 0, or -1. */
static inline int ts_wait_init(void) {
  int r = ts_app(TS_APP_STAT, NULL, 0, NULL);
  if (r < 0) {
    printf("#   stat of the mount: %s\n", strerror(-r));
    return -1;
  }
  snprintf(ts.abort_path, sizeof ts.abort_path, "/sys/fs/fuse/connections/%d/abort", r);
  return 0;
}

/* ---- teardown, waits, counters ---- */

/* Application, mount, fpio session: everything ts_* set up, in order. */
static inline void ts_stop(void) {
  ts_app_stop();
  ts_unmount();
  fpio_session_free(ts.fs);
  ts.fs = NULL;
}

/* For a signal handler (meson's timeout sends SIGTERM): async-signal-safe. */
static inline void ts_signal_cleanup(void) {
  ts_abort_connection();
  if (ts.mounted) umount2(ts.mnt, MNT_DETACH);
  if (ts.app > 0) kill(ts.app, SIGKILL);
}

/* Bounded wait (30 s) until *v >= n: what server threads record can lag
 * behind what the application saw (RELEASE follows close() asynchronously;
 * an open's reply can arrive before its handler recorded it). */
static inline int ts_wait_atomic(_Atomic int *v, int n, const char *what) {
  for (int i = 0; i < 3000; i++) {
    if (*v >= n) return 0;
    usleep(10000);
  }
  printf("#   timed out waiting for %d %s (have %d)\n", n, what, *v);
  return -1;
}

/* An fpio counter of ts.fs; a failed query fails the running test. */
static inline uint64_t ts_counter(uint32_t c) {
  uint64_t v = 0xa5a5a5a5a5a5a5a5ull;
  if (fpio_session_counter(ts.fs, c, &v) != 0) {
    printf("#   fpio_session_counter(%u) failed\n", c);
    check_failed_now++;
  }
  return v;
}

/* fpio sees requests (and counts them) where libfuse lets it wrap the io:
 * before 3.18, whose default build refuses custom io. There the request
 * counters must say -ENODATA rather than a number. */
#define FPIO_SEES_REQUESTS (FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION < 18)

/* A request counter: its value where fpio sees requests, else -1 after
 * checking that fpio says it does not know. */
static inline int64_t ts_req_counter(uint32_t c) {
  uint64_t v = 0xa5a5a5a5a5a5a5a5ull;
  int r = fpio_session_counter(ts.fs, c, &v);
  if (!FPIO_SEES_REQUESTS) {
    CHECK_EQ(r, -ENODATA);
    CHECK_EQ(v, 0xa5a5a5a5a5a5a5a5ull);
    return -1;
  }
  CHECK_EQ(r, 0);
  return (int64_t)v;
}

/* 1 when this process can mount. Otherwise prints the TAP skip plan (or,
 * with FPIO_REQUIRE_MOUNT=1, a bail-out) and returns 0; main then returns
 * *exit_code. (Exit status 77 would be an error under meson's TAP protocol.) */
static inline int ts_mounts_possible(int *exit_code) {
  const char *req = getenv("FPIO_REQUIRE_MOUNT");
  if (geteuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0) return 1;
  if (req && strcmp(req, "1") == 0) {
    printf("Bail out! needs root and /dev/fuse (FPIO_REQUIRE_MOUNT=1)\n");
    *exit_code = 1;
  } else {
    printf("1..0 # SKIP needs root and /dev/fuse\n");
    *exit_code = 0;
  }
  return 0;
}

#endif
