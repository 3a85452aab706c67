/* fpio sessions on real mounts, in-process: wrong call order (-ENOTCONN is in
 * test_api.c; here -EALREADY, unknown flags, queries before INIT), and a tiny
 * lowlevel server whose open handler feeds fpio_reply_open good and bad backing
 * fds, NULL arguments, and a conflicting backing file, while this thread plays
 * the application. Needs root and /dev/fuse (TAP skip otherwise, or a failure
 * when FPIO_REQUIRE_MOUNT=1). */
#define _GNU_SOURCE
#include <fpio.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/check.h"

#define SENTINEL32 0xa5a5a5a5u
#define SENTINEL64 0xa5a5a5a5a5a5a5a5ull
#define SESSION_SENTINEL ((struct fpio_session *)(uintptr_t)0xdeadbeef)
#define FUSE_PASSTHROUGH_BIT (1ull << 37) /* kernel-rules.md: flags2 bit 5 */
#define INO_FILE 2

/* What the open handler hands to fpio_reply_open. */
enum plan {
  PLAN_GOOD,        /* backing fd of the inode's file, same access mode */
  PLAN_DECLINE,     /* -1 */
  PLAN_INVALID_FD,  /* a number that is no fd */
  PLAN_CLOSED_FD,   /* an fd that was just closed */
  PLAN_DIR_FD,      /* a directory */
  PLAN_OTHER_FILE,  /* a different regular file than the inode's backing */
  PLAN_NULL_FI,     /* fpio_reply_open(s, req, ino, fd, NULL, ...) */
  PLAN_NULL_SESSION /* fpio_reply_open(NULL, req, ...) */
};

static struct {
  char dir[PATH_MAX], mnt[PATH_MAX], file[PATH_MAX], other[PATH_MAX];
  struct fuse_session *se;
  struct fpio_session *fs;
  pthread_t loop;
  int looping;
  /* set by the test thread before it opens */
  _Atomic int plan;
  /* recorded by the server thread */
  _Atomic int open_ret;
  _Atomic uint32_t open_flags;
  _Atomic int releases, release_ret, rerelease_ret;
  _Atomic int reads, writes;
} g;

/* ---- the server side ---- */

static void fill_attr(fuse_ino_t ino, struct stat *st) {
  if (ino == FUSE_ROOT_ID) {
    memset(st, 0, sizeof *st);
    st->st_ino = FUSE_ROOT_ID;
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
  } else {
    stat(g.file, st);
    st->st_ino = ino;
  }
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  struct fuse_entry_param e;
  if (parent != FUSE_ROOT_ID || strcmp(name, "file") != 0) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  memset(&e, 0, sizeof e);
  e.ino = INO_FILE;
  fill_attr(INO_FILE, &e.attr); /* timeouts 0: every access asks again */
  fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct stat st;
  (void)fi;
  fill_attr(ino, &st);
  fuse_reply_attr(req, &st, 0);
}

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
    backing = spare = open(g.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    break;
  case PLAN_OTHER_FILE:
    backing = spare = open(g.other, acc | O_CLOEXEC);
    break;
  }
  if (g.plan == PLAN_NULL_FI)
    ret = fpio_reply_open(g.fs, req, ino, backing, NULL, &flags);
  else if (g.plan == PLAN_NULL_SESSION)
    ret = fpio_reply_open(NULL, req, ino, backing, fi, &flags);
  else
    ret = fpio_reply_open(g.fs, req, ino, backing, fi, &flags);
  g.open_ret = ret;
  g.open_flags = flags;
  if (spare >= 0)
    close(spare); /* fpio must not depend on the fd it was given staying open */
  if (ret != 0)
    close(fh); /* no open exists, so no release will come */
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  g.release_ret = fpio_release(g.fs, ino, fi);
  g.rerelease_ret = fpio_release(g.fs, ino, fi); /* double release */
  close((int)fi->fh);
  g.releases++;
  fuse_reply_err(req, 0);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi) {
  char buf[4096];
  ssize_t n;
  (void)ino;
  g.reads++;
  n = pread((int)fi->fh, buf, size < sizeof buf ? size : sizeof buf, off);
  if (n < 0)
    fuse_reply_err(req, errno);
  else
    fuse_reply_buf(req, buf, (size_t)n);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
                     off_t off, struct fuse_file_info *fi) {
  ssize_t n;
  (void)ino;
  g.writes++;
  n = pwrite((int)fi->fh, buf, size, off);
  if (n < 0)
    fuse_reply_err(req, errno);
  else
    fuse_reply_write(req, (size_t)n);
}

static const struct fuse_lowlevel_ops ops = {
    .lookup = op_lookup,
    .getattr = op_getattr,
    .open = op_open,
    .release = op_release,
    .read = op_read,
    .write = op_write,
};

static void *loop_main(void *arg) {
  (void)arg;
  fuse_session_loop(g.se);
  return NULL;
}

/* ---- setup / teardown ---- */

static int write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int ok = fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text);
  if (fd >= 0) close(fd);
  return ok ? 0 : -1;
}

static int make_dirs(void) {
  snprintf(g.dir, sizeof g.dir, "/tmp/fpio-unit.XXXXXX");
  if (mkdtemp(g.dir) == NULL) return -1;
  snprintf(g.mnt, sizeof g.mnt, "%s/mnt", g.dir);
  snprintf(g.file, sizeof g.file, "%s/backing", g.dir);
  snprintf(g.other, sizeof g.other, "%s/other", g.dir);
  if (mkdir(g.mnt, 0755) != 0) return -1;
  if (write_file(g.file, "0123456789") != 0) return -1;
  return write_file(g.other, "other file");
}

static void remove_dirs(void) {
  unlink(g.file);
  unlink(g.other);
  rmdir(g.mnt);
  rmdir(g.dir);
}

/* A mounted session that nobody serves yet (INIT stays queued). */
static int mount_session(void) {
  char *argv[] = {"fpio-test", "-o", "fsname=fpio-unit", NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, argv);
  g.se = fuse_session_new(&args, &ops, sizeof ops, NULL);
  fuse_opt_free_args(&args);
  if (g.se == NULL) return -1;
  if (fuse_session_mount(g.se, g.mnt) != 0) {
    fuse_session_destroy(g.se);
    g.se = NULL;
    return -1;
  }
  return 0;
}

static int start_loop(void) {
  if (pthread_create(&g.loop, NULL, loop_main, NULL) != 0) return -1;
  g.looping = 1;
  return 0;
}

/* Detaching the mount aborts the connection, which ends the loop. */
static void unmount_session(void) {
  if (g.se == NULL) return;
  umount2(g.mnt, MNT_DETACH);
  if (g.looping) {
    pthread_join(g.loop, NULL);
    g.looping = 0;
  }
  fuse_session_unmount(g.se);
  fuse_session_destroy(g.se);
  g.se = NULL;
}

static void free_fpio(void) {
  fpio_session_free(g.fs);
  g.fs = NULL;
}

static uint64_t counter(uint32_t c) {
  uint64_t v = SENTINEL64;
  if (fpio_session_counter(g.fs, c, &v) != 0) {
    printf("#   fpio_session_counter(%u) failed\n", c);
    check_failed_now++;
  }
  return v;
}

/* RELEASE reaches the server asynchronously after close(). */
static int wait_releases(int n) {
  for (int i = 0; i < 1000; i++) {
    if (g.releases >= n) return 0;
    usleep(10000);
  }
  printf("#   timed out waiting for %d releases (have %d)\n", n, g.releases);
  return -1;
}

/* Mount + fpio session (flags) + loop, and wait for INIT by touching the mount. */
static int serve(uint32_t flags) {
  struct stat st;
  if (make_dirs() != 0 || mount_session() != 0) return -1;
  if (fpio_session_new(g.se, flags, &g.fs) != 0) return -1;
  if (start_loop() != 0) return -1;
  return stat(g.mnt, &st);
}

static void stop_serving(void) {
  unmount_session();
  free_fpio();
  remove_dirs();
}

static char *file_path(void) {
  static char p[PATH_MAX + 8];
  snprintf(p, sizeof p, "%s/file", g.mnt);
  return p;
}

/* ---- order and flags ---- */

static void test_session_new_twice_is_ealready(void) {
  struct fpio_session *second = SESSION_SENTINEL;
  REQUIRE(make_dirs() == 0);
  REQUIRE(mount_session() == 0);
  CHECK_EQ(fpio_session_new(g.se, 0, &g.fs), 0);
  CHECK(g.fs != NULL);
  CHECK_EQ(fpio_session_new(g.se, 0, &second), -EALREADY);
  CHECK(second == SESSION_SENTINEL);
  /* freed before fuse_session_destroy: allowed once no loop runs */
  free_fpio();
  unmount_session();
  remove_dirs();
}

static void test_session_new_unknown_flag(void) {
  struct fpio_session *out = SESSION_SENTINEL;
  REQUIRE(make_dirs() == 0);
  REQUIRE(mount_session() == 0);
  CHECK_EQ(fpio_session_new(g.se, 1u << 31, &out), -EINVAL);
  CHECK(out == SESSION_SENTINEL);
  CHECK_EQ(fpio_session_new(g.se, 1u << 4, &out), -EINVAL);
  CHECK(out == SESSION_SENTINEL);
  /* a refused call attached nothing: a good one still works */
  CHECK_EQ(fpio_session_new(g.se, 0, &g.fs), 0);
  unmount_session();
  free_fpio(); /* freed after fuse_session_destroy */
  remove_dirs();
}

static void test_queries_before_init(void) {
  uint32_t st = SENTINEL32, minor = SENTINEL32;
  uint64_t flags = SENTINEL64;
  REQUIRE(make_dirs() == 0);
  REQUIRE(mount_session() == 0);
  CHECK_EQ(fpio_session_new(g.se, 0, &g.fs), 0);
  CHECK_EQ(fpio_session_status(g.fs, &st), 0);
  CHECK_EQ(st, FPIO_STATUS_PENDING);
  CHECK_EQ(fpio_session_kernel_offer(g.fs, &flags, &minor), -EAGAIN);
  CHECK_EQ(flags, SENTINEL64);
  CHECK_EQ(minor, SENTINEL32);
  unmount_session();
  free_fpio();
  remove_dirs();
}

/* ---- a served mount ---- */

static void test_live_session_queries(void) {
  uint32_t st = SENTINEL32, minor = SENTINEL32;
  uint64_t flags = SENTINEL64, v = SENTINEL64;
  int32_t id = (int32_t)SENTINEL32;
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  CHECK_EQ(fpio_session_status(g.fs, &st), 0);
  CHECK_STREQ(fpio_status_str(st), "live");
  CHECK_EQ(fpio_session_kernel_offer(g.fs, &flags, &minor), 0);
  CHECK((flags & FUSE_PASSTHROUGH_BIT) != 0);
  CHECK(minor >= 40 && minor != SENTINEL32);
  /* NULL outputs and unknown ids on a real session */
  CHECK_EQ(fpio_session_status(g.fs, NULL), -EINVAL);
  CHECK_EQ(fpio_session_kernel_offer(g.fs, NULL, &minor), -EINVAL);
  CHECK_EQ(fpio_session_kernel_offer(g.fs, &flags, NULL), -EINVAL);
  CHECK_EQ(fpio_session_counter(g.fs, FPIO_COUNTER_COUNT, &v), -EINVAL);
  CHECK_EQ(fpio_session_counter(g.fs, UINT32_MAX, &v), -EINVAL);
  CHECK_EQ(v, SENTINEL64);
  CHECK_EQ(fpio_session_counter(g.fs, FPIO_COUNTER_REQ_TOTAL, NULL), -EINVAL);
  CHECK_EQ(fpio_backing_id(g.fs, INO_FILE, &id), -ENOENT);
  CHECK_EQ(fpio_backing_id(g.fs, 12345, &id), -ENOENT);
  CHECK_EQ(id, (int32_t)SENTINEL32);
  CHECK_EQ(fpio_backing_id(g.fs, INO_FILE, NULL), -EINVAL);
  stop_serving();
}

static void test_release_unknown_and_null(void) {
  struct fuse_file_info fi;
  memset(&fi, 0, sizeof fi);
  fi.fh = 77;
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  CHECK_EQ(fpio_release(g.fs, INO_FILE, &fi), -ENOENT);
  CHECK_EQ(fpio_release(g.fs, 12345, &fi), -ENOENT);
  CHECK_EQ(fpio_release(g.fs, INO_FILE, NULL), -EINVAL);
  /* NULL request with a real session: nothing to answer, -EINVAL */
  CHECK_EQ(fpio_reply_open(g.fs, NULL, INO_FILE, -1, &fi, NULL), -EINVAL);
  CHECK_EQ(fpio_reply_create(g.fs, NULL, NULL, -1, &fi, NULL), -EINVAL);
  stop_serving();
}

static void test_write_counters(void) {
  int p[2];
  char buf[8192];
  ssize_t n;
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  CHECK_EQ(fpio_session_write_counters(g.fs, p[1]), 0);
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
  CHECK(fpio_session_write_counters(g.fs, -1) < 0);
  CHECK(fpio_session_write_counters(g.fs, 999999) < 0);
  stop_serving();
}

/* Application side: open O_RDWR, write and read back through the mount. */
static int app_rw(int *fd_out) {
  char buf[16] = {0};
  int fd = open(file_path(), O_RDWR);
  if (fd < 0) return -errno;
  if (pwrite(fd, "ABCD", 4, 0) != 4 || pread(fd, buf, 10, 0) != 10 ||
      memcmp(buf, "ABCD456789", 10) != 0) {
    printf("#   read back \"%.10s\"\n", buf);
    close(fd);
    return -EIO;
  }
  if (fd_out) *fd_out = fd; else close(fd);
  return 0;
}

static void test_open_passthrough_and_release(void) {
  int fd = -1;
  int32_t id = (int32_t)SENTINEL32;
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  g.plan = PLAN_GOOD;
  CHECK_EQ(app_rw(&fd), 0);
  CHECK_EQ(g.open_ret, 0);
  CHECK(fpio_passthrough_flags_valid(g.open_flags));
  CHECK(fpio_iomode_is_passthrough(g.open_flags));
  CHECK_EQ(fpio_backing_id(g.fs, INO_FILE, &id), 0);
  CHECK(id >= 1 && id != (int32_t)SENTINEL32);
  CHECK_EQ(counter(FPIO_COUNTER_OPENS_PASSTHROUGH), 1);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 1);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_OPENED), 1);
  CHECK_EQ(g.reads, 0); /* passthrough: I/O never reached this server */
  CHECK_EQ(g.writes, 0);
  CHECK_EQ(counter(FPIO_COUNTER_REQ_READ), 0);
  CHECK_EQ(counter(FPIO_COUNTER_REQ_WRITE), 0);
  if (fd >= 0) close(fd);
  CHECK_EQ(wait_releases(1), 0);
  CHECK_EQ(g.release_ret, 0);
  CHECK_EQ(g.rerelease_ret, -ENOENT);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_CLOSED), 1);
  id = (int32_t)SENTINEL32;
  CHECK_EQ(fpio_backing_id(g.fs, INO_FILE, &id), -ENOENT);
  CHECK_EQ(id, (int32_t)SENTINEL32);
  stop_serving();
}

/* A fallback plan: the application still works, through the server. */
static void check_fallback(int plan, uint32_t session_flags, uint32_t reason) {
  if (serve(session_flags) != 0) { check_failed_now++; stop_serving(); return; }
  g.plan = plan;
  CHECK_EQ(app_rw(NULL), 0);
  CHECK_EQ(g.open_ret, 0);
  CHECK(!fpio_iomode_is_passthrough(g.open_flags));
  CHECK_EQ(g.open_flags & FPIO_FOPEN_PASSTHROUGH, 0);
  if (session_flags & FPIO_SESSION_FALLBACK_CACHED) {
    CHECK(fpio_iomode_is_cached(g.open_flags));
    CHECK_EQ(counter(FPIO_COUNTER_OPENS_CACHED), 1);
  } else {
    CHECK_EQ(g.open_flags & (FPIO_FOPEN_DIRECT_IO | FPIO_FOPEN_PARALLEL_DIRECT_WRITES),
             FPIO_FOPEN_DIRECT_IO | FPIO_FOPEN_PARALLEL_DIRECT_WRITES);
    CHECK_EQ(counter(FPIO_COUNTER_OPENS_DIRECT), 1);
    CHECK(g.writes >= 1 && g.reads >= 1);
    CHECK(counter(FPIO_COUNTER_REQ_WRITE) >= 1);
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
  g.releases = g.reads = g.writes = 0;
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
  check_fallback(PLAN_DECLINE, FPIO_SESSION_FALLBACK_CACHED,
                 FPIO_COUNTER_FALLBACK_DECLINED);
}

static void test_status_disabled(void) {
  uint32_t st = SENTINEL32;
  if (serve(FPIO_SESSION_NO_PASSTHROUGH) != 0) { check_failed_now++; stop_serving(); return; }
  CHECK_EQ(fpio_session_status(g.fs, &st), 0);
  CHECK_EQ(st, FPIO_STATUS_DISABLED);
  stop_serving();
}

/* NULL fi / NULL session with a real request: -EINVAL and the app gets EIO,
 * not a hang (the request must still be answered). */
static void check_bad_reply_args(int plan) {
  int fd;
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  g.plan = plan;
  fd = open(file_path(), O_RDWR);
  CHECK_EQ(fd, -1);
  CHECK_EQ(errno, EIO);
  if (fd >= 0) close(fd);
  CHECK_EQ(g.open_ret, -EINVAL);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  stop_serving();
}

static void test_reply_open_null_fi(void) { check_bad_reply_args(PLAN_NULL_FI); }
static void test_reply_open_null_session_real_req(void) {
  check_bad_reply_args(PLAN_NULL_SESSION);
}

/* A second backing file for an inode that has one: EBUSY, not EIO. */
static void test_open_other_backing_is_ebusy(void) {
  int fd1 = -1, fd2;
  if (serve(0) != 0) { check_failed_now++; stop_serving(); return; }
  g.plan = PLAN_GOOD;
  CHECK_EQ(app_rw(&fd1), 0);
  g.plan = PLAN_OTHER_FILE;
  fd2 = open(file_path(), O_RDWR);
  CHECK_EQ(fd2, -1);
  CHECK_EQ(errno, EBUSY);
  if (fd2 >= 0) close(fd2);
  CHECK_EQ(g.open_ret, -EBUSY);
  CHECK_EQ(counter(FPIO_COUNTER_BUSY_REFUSED), 1);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 1);
  if (fd1 >= 0) close(fd1);
  CHECK_EQ(wait_releases(1), 0);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  stop_serving();
}

static int mounts_possible(void) {
  return geteuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0;
}

#define RUN_SERVED(fn) do { reset_server_record(); RUN(fn); } while (0)

int main(void) {
  if (!mounts_possible()) {
    const char *req = getenv("FPIO_REQUIRE_MOUNT");
    if (req && strcmp(req, "1") == 0) {
      printf("Bail out! needs root and /dev/fuse (FPIO_REQUIRE_MOUNT=1)\n");
      return 1;
    }
    printf("1..0 # SKIP needs root and /dev/fuse\n");
    return 0;
  }

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
  RUN_SERVED(test_reply_open_null_session_real_req);
  RUN_SERVED(test_open_other_backing_is_ebusy);
  check_group_end();

  return check_finish();
}
