/* fpio sessions on real mounts: wrong call order (-ENOTCONN is in test_api.c;
 * here -EALREADY, unknown flags, queries before INIT), and a tiny lowlevel
 * server (a thread of this process, lib/test_server.h) whose open/create
 * handlers feed fpio good and bad backing fds, NULL arguments and a
 * conflicting backing file, while the harness's "application" process does
 * the file I/O on command. Needs root and /dev/fuse (TAP skip otherwise, or
 * a failure when FPIO_REQUIRE_MOUNT=1). */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <fpio.h>

#include <linux/fuse.h>

#include "lib/check.h"
#include "lib/kernel_fuse.h"
#include "lib/server_io.h"
#include "lib/test_server.h"

#define SENTINEL32 0xa5a5a5a5u
#define SENTINEL64 0xa5a5a5a5a5a5a5a5ull
#define SESSION_SENTINEL ((struct fpio_session *)(uintptr_t)0xdeadbeef)
#define INO_FILE 2
#define INO_CREATED 3

/* What the open handler hands to fpio_reply_open. */
enum plan {
  PLAN_GOOD,        /* backing fd of the inode's file, same access mode */
  PLAN_DECLINE,     /* -1 */
  PLAN_INVALID_FD,  /* a number that is no fd */
  PLAN_CLOSED_FD,   /* an fd that was just closed */
  PLAN_DIR_FD,      /* a directory */
  PLAN_OTHER_FILE,  /* a different regular file than the inode's backing */
  PLAN_NULL_FI,     /* fpio_reply_open(s, req, ino, fd, NULL, ...) */
  PLAN_NULL_SESSION, /* fpio_reply_open(NULL, req, ...) */
  PLAN_NULL_ENTRY    /* create: fpio_reply_create(s, req, NULL, ...) */
};

/* The harness (ts) has the mount, the fpio session and the application. */
static struct {
  char file[PATH_MAX], other[PATH_MAX], created[PATH_MAX];
  /* set by the test thread before it opens */
  _Atomic int plan;
  /* the server's own io mode for opens without passthrough: cached or direct */
  _Atomic int cached;
  /* recorded by the server thread */
  _Atomic int open_ret;
  _Atomic uint32_t open_flags;
  _Atomic int opens_done, releases, release_ret, rerelease_ret;
  _Atomic int opens_ok; /* opens that happened: each gets a RELEASE */
  _Atomic int reads, writes;
} g;

/* ---- the server side ---- */

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  int acc = fi->flags & O_ACCMODE;
  int fh = open(g.file, acc | O_CLOEXEC);
  int backing = -1, spare = -1, ret;
  uint32_t flags = SENTINEL32;

  if (fh < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fi->fh = (uint64_t)fh;
  fi->direct_io = !g.cached;
  switch (g.plan) {
  case PLAN_GOOD: case PLAN_NULL_FI: case PLAN_NULL_SESSION:
    backing = fh;
    break;
  case PLAN_DECLINE:
    backing = -1;
    break;
  case PLAN_INVALID_FD:
    backing = 999999;
    break;
  case PLAN_CLOSED_FD:
    backing = open(g.file, O_RDONLY | O_CLOEXEC);
    close(backing);
    break;
  case PLAN_DIR_FD:
    backing = spare = open(ts.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    break;
  case PLAN_OTHER_FILE:
    backing = spare = open(g.other, acc | O_CLOEXEC);
    break;
  }
  if (g.plan == PLAN_NULL_FI)
    ret = fpio_reply_open(ts.fs, req, ino, backing, NULL, &flags);
  else if (g.plan == PLAN_NULL_SESSION)
    ret = fpio_reply_open(NULL, req, ino, backing, fi, &flags);
  else
    ret = fpio_reply_open(ts.fs, req, ino, backing, fi, &flags);
  g.open_ret = ret;
  g.open_flags = flags;
  if (ret == 0) g.opens_ok++;
  g.opens_done++;
  if (spare >= 0)
    close(spare); /* fpio must not depend on the fd it was given staying open */
  if (ret != 0)
    close(fh); /* no open exists, so no release will come */
}

/* CREATE: the file is made in the temp dir and served as INO_CREATED. */
static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi) {
  struct fuse_entry_param e;
  uint32_t flags = SENTINEL32;
  int fd, ret;
  if (parent != FUSE_ROOT_ID || strcmp(name, "created") != 0) {
    fuse_reply_err(req, EACCES);
    return;
  }
  fd = open(g.created, O_RDWR | O_CREAT | O_CLOEXEC, mode);
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  memset(&e, 0, sizeof e);
  e.ino = INO_CREATED;
  ts_fill_attr(INO_CREATED, &e.attr);
  fi->fh = (uint64_t)fd;
  ret = fpio_reply_create(ts.fs, req, g.plan == PLAN_NULL_ENTRY ? NULL : &e, fd, fi, &flags);
  g.open_ret = ret;
  g.open_flags = flags;
  if (ret == 0) g.opens_ok++;
  g.opens_done++;
  if (ret != 0) close(fd);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  g.release_ret = fpio_release(ts.fs, ino, fi);
  g.rerelease_ret = fpio_release(ts.fs, ino, fi); /* double release */
  close((int)fi->fh);
  g.releases++;
  fuse_reply_err(req, 0);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi) {
  (void)ino;
  test_server_read(req, size, off, fi, &g.reads);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
                     off_t off, struct fuse_file_info *fi) {
  (void)ino;
  test_server_write(req, buf, size, off, fi, &g.writes);
}

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  fpio_session_init(ts.fs, conn);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = ts_op_lookup,
    .getattr = ts_op_getattr,
    .open = op_open,
    .create = op_create,
    .release = op_release,
    .read = op_read,
    .write = op_write,
};

/* ---- the application process ---- */

enum app_op {
  APP_RW,         /* open "file" O_RDWR, write, read back, close */
  APP_RW_HOLD,    /* the same, but keep it open */
  APP_OPEN_HOLD,  /* just open "file" O_RDWR and keep it open */
  APP_CREATE_RW,  /* create "created", write, read back, close */
  APP_CREATE,     /* just create "created" */
  APP_CLOSE_ALL   /* close what is held */
};

static char *mnt_path(const char *name) {
  static char p[PATH_MAX + 16];
  snprintf(p, sizeof p, "%s/%s", ts.mnt, name);
  return p;
}

/* 0, or -errno of the first failing step; -EILSEQ for wrong bytes. */
static int app_rw(const char *name, int flags, const char *text, int *fd_out) {
  char buf[16] = {0};
  size_t len = strlen(text);
  int fd = open(mnt_path(name), flags, 0644), err = 0;
  if (fd < 0) return -errno;
  if (pwrite(fd, text, len, 0) != (ssize_t)len || pread(fd, buf, len, 0) != (ssize_t)len)
    err = -errno;
  else if (memcmp(buf, text, len) != 0)
    err = -EILSEQ;
  if (fd_out && !err) *fd_out = fd;
  else if (close(fd) != 0 && !err) err = -errno;
  return err;
}

static int app_do(const struct ts_cmd *c, int *held, int *nheld) {
  int fd, err = 0;
  switch (c->op) {
  case APP_RW: return app_rw("file", O_RDWR, "ABCD", NULL);
  case APP_RW_HOLD:
    err = app_rw("file", O_RDWR, "ABCD", &fd);
    if (!err) held[(*nheld)++] = fd;
    return err;
  case APP_OPEN_HOLD:
    fd = open(mnt_path("file"), O_RDWR);
    if (fd < 0) return -errno;
    held[(*nheld)++] = fd;
    return 0;
  case APP_CREATE_RW: return app_rw("created", O_RDWR | O_CREAT | O_EXCL, "hello", NULL);
  case APP_CREATE:
    fd = open(mnt_path("created"), O_RDWR | O_CREAT | O_EXCL, 0644);
    if (fd < 0) return -errno;
    close(fd);
    return 0;
  case APP_CLOSE_ALL:
    while (*nheld > 0)
      if (close(held[--*nheld]) != 0 && !err) err = -errno;
    return err;
  }
  return -ENOSYS;
}

/* Run one operation in the application process; its result, or -errno. */
static int app(int op) { return ts_app(op, NULL, 0, NULL); }

/* ---- setup / teardown ---- */

static int make_dirs(void) {
  if (ts_make_dirs("fpio-unit") != 0) return -1;
  snprintf(g.file, sizeof g.file, "%s/backing", ts.dir);
  snprintf(g.other, sizeof g.other, "%s/other", ts.dir);
  snprintf(g.created, sizeof g.created, "%s/created", ts.dir);
  if (ts_write_file(g.file, "0123456789") != 0) return -1;
  return ts_write_file(g.other, "other file");
}

/* A mounted session that nobody serves yet (INIT stays queued). */
static int mount_session(void) { return ts_mount(&ops, sizeof ops, "fpio-unit"); }

static void free_fpio(void) {
  fpio_session_free(ts.fs);
  ts.fs = NULL;
}

static uint64_t counter(uint32_t c) { return ts_counter(c); }


/* RELEASE reaches the server asynchronously after close(). */
static int wait_releases(int n) { return ts_wait_atomic(&g.releases, n, "releases"); }

/* The application's open() returns as soon as the reply is written, which
 * can be before the handler has recorded fpio's return value. */
static int wait_opens(int n) { return ts_wait_atomic(&g.opens_done, n, "recorded opens"); }

/* App process + mount + fpio session (flags) + a one-thread loop; INIT
 * answered. The app is forked first so it holds no /dev/fuse fd. */
/* Not an fpio flag: the test server answers opens it serves itself cached. */
#define SERVE_CACHED (1u << 31)

static int serve(uint32_t flags) {
  g.cached = (flags & SERVE_CACHED) != 0;
  flags &= ~SERVE_CACHED;
  if (make_dirs() != 0 || ts_app_start(app_do) != 0 || mount_session() != 0) return -1;
  if (fpio_session_new(ts.se, flags, &ts.fs) != 0) return -1;
  if (ts_start_loop(1) != 0) return -1;
  return ts_wait_init();
}

/* The application's last close() (or its exit, for what it held) returns
 * before the kernel sends that open's RELEASE; a session torn down before it
 * arrives never closes the handler's fd. So wait for every release first. */
static void stop_serving(void) {
  ts_app_stop();
  if (ts_wait_atomic(&g.releases, g.opens_ok, "releases before unmount") != 0)
    check_failed_now++;
  ts_stop();
  ts_remove_dirs();
}

/* ---- order and flags ---- */

static void test_session_new_twice_is_ealready(void) {
  struct fpio_session *second = SESSION_SENTINEL;
  REQUIRE(make_dirs() == 0);
  REQUIRE(mount_session() == 0);
  CHECK_EQ(fpio_session_new(ts.se, 0, &ts.fs), 0);
  CHECK(ts.fs != NULL);
  CHECK_EQ(fpio_session_new(ts.se, 0, &second), -EALREADY);
  CHECK(second == SESSION_SENTINEL);
  /* freed before fuse_session_destroy: allowed once no loop runs */
  free_fpio();
  ts_unmount();
  ts_remove_dirs();
}

static void test_session_new_unknown_flag(void) {
  struct fpio_session *out = SESSION_SENTINEL;
  REQUIRE(make_dirs() == 0);
  REQUIRE(mount_session() == 0);
  CHECK_EQ(fpio_session_new(ts.se, 1u << 31, &out), -EINVAL);
  CHECK(out == SESSION_SENTINEL);
  CHECK_EQ(fpio_session_new(ts.se, 1u << 30, &out), -EINVAL);
  CHECK(out == SESSION_SENTINEL);
  if (out != SESSION_SENTINEL) fpio_session_free(out); /* keep later tests clean */
  /* a refused call attached nothing: a good one still works */
  CHECK_EQ(fpio_session_new(ts.se, 0, &ts.fs), 0);
  ts_unmount();
  free_fpio(); /* freed after fuse_session_destroy */
  ts_remove_dirs();
}

static void test_queries_before_init(void) {
  uint32_t st = SENTINEL32, minor = SENTINEL32;
  uint64_t flags = SENTINEL64;
  REQUIRE(make_dirs() == 0);
  REQUIRE(mount_session() == 0);
  CHECK_EQ(fpio_session_new(ts.se, 0, &ts.fs), 0);
  CHECK_EQ(fpio_session_status(ts.fs, &st), 0);
  CHECK_EQ(st, FPIO_STATUS_PENDING);
  CHECK_EQ(fpio_session_kernel_offer(ts.fs, &flags, &minor), -EAGAIN);
  CHECK_EQ(flags, SENTINEL64);
  CHECK_EQ(minor, SENTINEL32);
  ts_unmount();
  free_fpio();
  ts_remove_dirs();
}

/* ---- a served mount ---- */

static void test_live_session_queries(void) {
  uint32_t st = SENTINEL32, minor = SENTINEL32;
  uint64_t flags = SENTINEL64, v = SENTINEL64;
  int32_t id = (int32_t)SENTINEL32;
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  CHECK_EQ(fpio_session_status(ts.fs, &st), 0);
  CHECK_STREQ(fpio_status_str(st), "live");
  CHECK_EQ(fpio_session_kernel_offer(ts.fs, &flags, &minor), 0);
  CHECK((flags & K_FUSE_PASSTHROUGH) != 0);
  CHECK(minor >= 40 && minor != SENTINEL32);
  /* NULL outputs and unknown ids on a real session */
  CHECK_EQ(fpio_session_status(ts.fs, NULL), -EINVAL);
  CHECK_EQ(fpio_session_kernel_offer(ts.fs, NULL, &minor), -EINVAL);
  CHECK_EQ(fpio_session_kernel_offer(ts.fs, &flags, NULL), -EINVAL);
  CHECK_EQ(fpio_session_counter(ts.fs, FPIO_COUNTER_COUNT, &v), -EINVAL);
  CHECK_EQ(fpio_session_counter(ts.fs, UINT32_MAX, &v), -EINVAL);
  CHECK_EQ(v, SENTINEL64);
  CHECK_EQ(fpio_session_counter(ts.fs, FPIO_COUNTER_REQ_TOTAL, NULL), -EINVAL);
  CHECK_EQ(fpio_backing_id(ts.fs, INO_FILE, &id), -ENOENT);
  CHECK_EQ(fpio_backing_id(ts.fs, 12345, &id), -ENOENT);
  CHECK_EQ(id, (int32_t)SENTINEL32);
  CHECK_EQ(fpio_backing_id(ts.fs, INO_FILE, NULL), -EINVAL);
  stop_serving();
}

static void test_release_unknown_and_null(void) {
  struct fuse_file_info fi;
  memset(&fi, 0, sizeof fi);
  fi.fh = 77;
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  CHECK_EQ(fpio_release(ts.fs, INO_FILE, &fi), -ENOENT);
  CHECK_EQ(fpio_release(ts.fs, 12345, &fi), -ENOENT);
  CHECK_EQ(fpio_release(ts.fs, INO_FILE, NULL), -EINVAL);
  /* NULL request with a real session: nothing to answer, -EINVAL */
  CHECK_EQ(fpio_reply_open(ts.fs, NULL, INO_FILE, -1, &fi, NULL), -EINVAL);
  CHECK_EQ(fpio_reply_create(ts.fs, NULL, NULL, -1, &fi, NULL), -EINVAL);
  stop_serving();
}

static void test_write_counters(void) {
  int p[2];
  char buf[8192];
  ssize_t n;
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  CHECK_EQ(fpio_session_write_counters(ts.fs, p[1]), 0);
  close(p[1]);
  n = read(p[0], buf, sizeof buf - 1);
  close(p[0]);
  CHECK(n > 0);
  buf[n > 0 ? n : 0] = '\0';
  for (uint32_t c = 0; c < FPIO_COUNTER_COUNT; c++) {
    char line[128];
    snprintf(line, sizeof line, "%s ", fpio_counter_name(c));
    CHECK(strstr(buf, line) != NULL);
  }
  CHECK(strstr(buf, "status live\n") != NULL);
  /* bad fds */
  CHECK(fpio_session_write_counters(ts.fs, -1) < 0);
  CHECK(fpio_session_write_counters(ts.fs, 999999) < 0);
  stop_serving();
}

static void test_open_passthrough_and_release(void) {
  int32_t id = (int32_t)SENTINEL32;
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  g.plan = PLAN_GOOD;
  CHECK_EQ(app(APP_RW_HOLD), 0);
  CHECK_EQ(wait_opens(1), 0);
  CHECK_EQ(g.open_ret, 0);
  CHECK(fpio_passthrough_flags_valid(g.open_flags));
  CHECK(fpio_iomode_is_passthrough(g.open_flags));
  CHECK_EQ(fpio_backing_id(ts.fs, INO_FILE, &id), 0);
  CHECK(id >= 1 && id != (int32_t)SENTINEL32);
  CHECK_EQ(counter(FPIO_COUNTER_OPENS_PASSTHROUGH), 1);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 1);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_OPENED), 1);
  CHECK_EQ(g.reads, 0); /* passthrough: I/O never reached this server */
  CHECK_EQ(g.writes, 0);
  CHECK(ts_req_counter(FPIO_COUNTER_REQ_READ) <= 0);
  CHECK(ts_req_counter(FPIO_COUNTER_REQ_WRITE) <= 0);
  CHECK_EQ(app(APP_CLOSE_ALL), 0);
  CHECK_EQ(wait_releases(1), 0);
  CHECK_EQ(g.release_ret, 0);
  CHECK_EQ(g.rerelease_ret, -ENOENT);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_CLOSED), 1);
  id = (int32_t)SENTINEL32;
  CHECK_EQ(fpio_backing_id(ts.fs, INO_FILE, &id), -ENOENT);
  CHECK_EQ(id, (int32_t)SENTINEL32);
  stop_serving();
}

/* A fallback plan: the application still works, through the server. */
static void check_fallback(int plan, uint32_t session_flags, uint32_t reason) {
  if (serve(session_flags) != 0) { check_failed_now++; stop_serving(); return; }
  g.plan = plan;
  CHECK_EQ(app(APP_RW), 0);
  CHECK_EQ(wait_opens(1), 0);
  CHECK_EQ(g.open_ret, 0);
  CHECK(!fpio_iomode_is_passthrough(g.open_flags));
  CHECK_EQ(g.open_flags & FPIO_FOPEN_PASSTHROUGH, 0);
  if (session_flags & SERVE_CACHED) {
    CHECK(fpio_iomode_is_cached(g.open_flags));
    CHECK_EQ(counter(FPIO_COUNTER_OPENS_CACHED), 1);
  } else {
    CHECK_EQ(g.open_flags & (FPIO_FOPEN_DIRECT_IO | FPIO_FOPEN_PARALLEL_DIRECT_WRITES),
             FPIO_FOPEN_DIRECT_IO | FPIO_FOPEN_PARALLEL_DIRECT_WRITES);
    CHECK_EQ(counter(FPIO_COUNTER_OPENS_DIRECT), 1);
    CHECK(g.writes >= 1 && g.reads >= 1);
    CHECK(ts_req_counter(FPIO_COUNTER_REQ_WRITE) != 0); /* >= 1, or -1: not seen */
  }
  CHECK_EQ(counter(reason), 1);
  CHECK_EQ(counter(FPIO_COUNTER_OPENS_PASSTHROUGH), 0);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  CHECK_EQ(wait_releases(1), 0);
  CHECK_EQ(g.release_ret, 0);
  CHECK_EQ(g.rerelease_ret, -ENOENT);
  stop_serving();
}

static void reset_server_record(void) {
  g.open_ret = 1;
  g.open_flags = SENTINEL32;
  g.opens_done = g.opens_ok = g.releases = g.reads = g.writes = 0;
  g.release_ret = g.rerelease_ret = 1;
}

static void test_open_declined(void) {
  check_fallback(PLAN_DECLINE, 0, FPIO_COUNTER_FALLBACK_DECLINED);
}
static void test_open_invalid_fd(void) {
  check_fallback(PLAN_INVALID_FD, 0, FPIO_COUNTER_FALLBACK_BAD_FD);
}
static void test_open_closed_fd(void) {
  check_fallback(PLAN_CLOSED_FD, 0, FPIO_COUNTER_FALLBACK_BAD_FD);
}
static void test_open_directory_fd(void) {
  check_fallback(PLAN_DIR_FD, 0, FPIO_COUNTER_FALLBACK_NOT_REGULAR);
}
static void test_open_not_live(void) {
  check_fallback(PLAN_GOOD, FPIO_SESSION_NO_PASSTHROUGH,
                 FPIO_COUNTER_FALLBACK_NOT_LIVE);
}
static void test_open_declined_cached_policy(void) {
  check_fallback(PLAN_DECLINE, SERVE_CACHED,
                 FPIO_COUNTER_FALLBACK_DECLINED);
}

static void test_status_disabled(void) {
  uint32_t st = SENTINEL32;
  if (serve(FPIO_SESSION_NO_PASSTHROUGH) != 0) { check_failed_now++; stop_serving(); return; }
  CHECK_EQ(fpio_session_status(ts.fs, &st), 0);
  CHECK_EQ(st, FPIO_STATUS_DISABLED);
  stop_serving();
}

/* NULL fi with a real request: -EINVAL and the app gets EIO, not a hang (the
 * request must still be answered). */
static void check_bad_reply_args(int plan) {
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  g.plan = plan;
  CHECK_EQ(app(APP_OPEN_HOLD), -EIO);
  CHECK_EQ(wait_opens(1), 0);
  CHECK_EQ(g.open_ret, -EINVAL);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  stop_serving();
}

static void test_reply_open_null_fi(void) { check_bad_reply_args(PLAN_NULL_FI); }

/* A NULL session is "without fpio": the open is answered as
 * fuse_reply_open(req, fi) would, and the application's io reaches the server. */
static void test_reply_open_null_session_is_plain_libfuse(void) {
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  g.plan = PLAN_NULL_SESSION;
  CHECK_EQ(app(APP_RW), 0);
  CHECK_EQ(wait_opens(1), 0);
  CHECK_EQ(g.open_ret, 0);
  CHECK_EQ(g.open_flags, SENTINEL32); /* not written for a NULL session */
  CHECK(g.writes >= 1 && g.reads >= 1);
  CHECK_EQ(counter(FPIO_COUNTER_OPENS_DIRECT) + counter(FPIO_COUNTER_OPENS_PASSTHROUGH), 0);
  CHECK_EQ(wait_releases(1), 0);
  CHECK_EQ(g.release_ret, -ENOENT); /* fpio never saw that open */
  stop_serving();
}

/* Another file for an inode whose backing file is live: ESTALE, not EIO. The
 * kernel looks the name up again and retries once; this server's lookup
 * keeps the node id, so the retry is refused too and the application sees
 * ESTALE (a server that gives the new file a new node id gets it opened). */
static void test_open_other_backing_is_estale(void) {
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  g.plan = PLAN_GOOD;
  CHECK_EQ(app(APP_RW_HOLD), 0);
  CHECK_EQ(wait_opens(1), 0);
  g.plan = PLAN_OTHER_FILE;
  CHECK_EQ(app(APP_OPEN_HOLD), -ESTALE);
  CHECK_EQ(wait_opens(3), 0);
  CHECK_EQ(g.open_ret, -ESTALE);
  CHECK_EQ(counter(FPIO_COUNTER_STALE_REFUSED), 2);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 1);
  CHECK_EQ(app(APP_CLOSE_ALL), 0);
  CHECK_EQ(wait_releases(1), 0);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  stop_serving();
}

static void test_create_passthrough(void) {
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  CHECK_EQ(app(APP_CREATE_RW), 0);
  CHECK_EQ(wait_opens(1), 0);
  CHECK_EQ(g.open_ret, 0);
  CHECK(fpio_iomode_is_passthrough(g.open_flags));
  CHECK(fpio_passthrough_flags_valid(g.open_flags));
  CHECK_EQ(g.writes, 0);
  CHECK_EQ(g.reads, 0);
  CHECK_EQ(counter(FPIO_COUNTER_OPENS_PASSTHROUGH), 1);
  CHECK_EQ(wait_releases(1), 0);
  CHECK_EQ(g.release_ret, 0);
  CHECK_EQ(g.rerelease_ret, -ENOENT);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  stop_serving();
}

/* NULL entry with a real CREATE request: -EINVAL, the app gets EIO. */
static void test_create_null_entry(void) {
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  g.plan = PLAN_NULL_ENTRY;
  CHECK_EQ(app(APP_CREATE), -EIO);
  CHECK_EQ(wait_opens(1), 0);
  CHECK_EQ(g.open_ret, -EINVAL);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  stop_serving();
}

/* ---- one inode, two io modes (kernel: ETXTBSY/EINVAL, i.e. EIO) ---- */

/* A cached open is held; a passthrough open of the same inode would be
 * ETXTBSY, so fpio must fall back instead, and passthrough returns once the
 * cached open is gone. */
static void test_cached_then_passthrough(void) {
  if (serve(SERVE_CACHED) != 0) { check_failed_now++; stop_serving(); return; }
  g.plan = PLAN_DECLINE;
  CHECK_EQ(app(APP_RW_HOLD), 0);
  CHECK_EQ(wait_opens(1), 0);
  CHECK(fpio_iomode_is_cached(g.open_flags));
  g.plan = PLAN_GOOD;
  CHECK_EQ(app(APP_RW_HOLD), 0); /* not EIO */
  CHECK_EQ(wait_opens(2), 0);
  CHECK_EQ(g.open_ret, 0);
  CHECK(!fpio_iomode_is_passthrough(g.open_flags));
  CHECK_EQ(counter(FPIO_COUNTER_FALLBACK_CACHED_OPENS), 1);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  CHECK_EQ(app(APP_CLOSE_ALL), 0);
  CHECK_EQ(wait_releases(2), 0);
  CHECK_EQ(app(APP_RW), 0);
  CHECK_EQ(wait_opens(3), 0);
  CHECK(fpio_iomode_is_passthrough(g.open_flags));
  CHECK_EQ(counter(FPIO_COUNTER_OPENS_PASSTHROUGH), 1);
  stop_serving();
}

/* A passthrough open is held; the server declines passthrough for a second
 * open. A plain direct or cached reply would be EINVAL/ETXTBSY -> EIO, so fpio
 * must still answer with the inode's backing id. */
static void check_passthrough_then_declined(uint32_t session_flags) {
  if (serve(session_flags) != 0) { check_failed_now++; stop_serving(); return; }
  g.plan = PLAN_GOOD;
  CHECK_EQ(app(APP_RW_HOLD), 0);
  CHECK_EQ(wait_opens(1), 0);
  CHECK(fpio_iomode_is_passthrough(g.open_flags));
  g.plan = PLAN_DECLINE;
  CHECK_EQ(app(APP_RW_HOLD), 0); /* not EIO */
  CHECK_EQ(wait_opens(2), 0);
  CHECK_EQ(g.open_ret, 0);
  CHECK((g.open_flags & FPIO_FOPEN_PASSTHROUGH) != 0);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 1);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_OPENED), 1);
  CHECK_EQ(app(APP_CLOSE_ALL), 0);
  CHECK_EQ(wait_releases(2), 0);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  stop_serving();
}

static void test_passthrough_then_declined(void) { check_passthrough_then_declined(0); }
static void test_passthrough_then_declined_cached_policy(void) {
  check_passthrough_then_declined(SERVE_CACHED);
}

#define RUN_SERVED(fn) do { reset_server_record(); RUN(fn); } while (0)

int main(void) {
  int rc;
  if (!ts_mounts_possible(&rc)) return rc;
  ts_add_file("file", INO_FILE, g.file);
  ts_add_file("created", INO_CREATED, g.created);

  check_group_begin("order");
  RUN(test_session_new_twice_is_ealready);
  RUN(test_session_new_unknown_flag);
  RUN(test_queries_before_init);
  check_group_end();

  check_group_begin("served");
  RUN_SERVED(test_live_session_queries);
  RUN_SERVED(test_release_unknown_and_null);
  RUN_SERVED(test_write_counters);
  RUN_SERVED(test_status_disabled);
  check_group_end();

  check_group_begin("reply-open");
  RUN_SERVED(test_open_passthrough_and_release);
  RUN_SERVED(test_open_declined);
  RUN_SERVED(test_open_invalid_fd);
  RUN_SERVED(test_open_closed_fd);
  RUN_SERVED(test_open_directory_fd);
  RUN_SERVED(test_open_not_live);
  RUN_SERVED(test_open_declined_cached_policy);
  RUN_SERVED(test_reply_open_null_fi);
  RUN_SERVED(test_reply_open_null_session_is_plain_libfuse);
  RUN_SERVED(test_open_other_backing_is_estale);
  RUN_SERVED(test_create_passthrough);
  RUN_SERVED(test_create_null_entry);
  check_group_end();

  check_group_begin("mode-conflicts");
  RUN_SERVED(test_cached_then_passthrough);
  RUN_SERVED(test_passthrough_then_declined);
  RUN_SERVED(test_passthrough_then_declined_cached_policy);
  check_group_end();

  return check_finish();
}
