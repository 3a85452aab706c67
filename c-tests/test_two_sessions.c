/* Two fpio sessions in one process, each on its own mount, served by
 * multi-threaded loops with -o clone_fd (one /dev/fuse clone per worker): fpio
 * must tie every channel to its own session. Each session's passthrough opens,
 * and its READ/WRITE requests where fpio sees requests, must be exactly the
 * ones of its own mount. TAP output; needs root and /dev/fuse (a TAP skip
 * otherwise, or a failure when FPIO_REQUIRE_MOUNT=1). */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <fpio.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/check.h"

#define INO_PASS 2 /* served with passthrough */
#define INO_SERVED 3 /* served by the server itself (backing fd -1) */

/* Where fpio sees requests: before libfuse 3.18 (see test_session.c). */
#define FPIO_SEES_REQUESTS (FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION < 18)

struct fs {
  char dir[32], mnt[64], pass[64], served[64];
  struct fuse_session *se;
  struct fpio_session *fp;
  pthread_t loop;
  atomic_int reads, writes;
};

static struct fs fss[2];

static struct fs *fs_of(fuse_req_t req) { return fuse_req_userdata(req); }

static const char *path_of(struct fs *f, fuse_ino_t ino) {
  return ino == INO_PASS ? f->pass : ino == INO_SERVED ? f->served : NULL;
}

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  struct fs *f = userdata;
  fpio_session_init(f->fp, conn);
}

static int attr_of(struct fs *f, fuse_ino_t ino, struct stat *st) {
  if (ino == FUSE_ROOT_ID) {
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2;
    return 0;
  }
  const char *p = path_of(f, ino);
  if (!p || stat(p, st) != 0) return ENOENT;
  st->st_ino = ino;
  return 0;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  struct fuse_entry_param e;
  memset(&e, 0, sizeof e);
  e.ino = parent == FUSE_ROOT_ID && strcmp(name, "pass") == 0     ? INO_PASS
          : parent == FUSE_ROOT_ID && strcmp(name, "served") == 0 ? INO_SERVED
                                                                  : 0;
  if (!e.ino || attr_of(fs_of(req), e.ino, &e.attr) != 0) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  e.attr_timeout = e.entry_timeout = 1.0;
  fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct stat st;
  (void)fi;
  int err = attr_of(fs_of(req), ino, &st);
  if (err)
    fuse_reply_err(req, err);
  else
    fuse_reply_attr(req, &st, 1.0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct fs *f = fs_of(req);
  int fd = open(path_of(f, ino), (fi->flags & O_ACCMODE) | O_CLOEXEC);
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fi->fh = (uint64_t)fd;
  fi->direct_io = 1;
  if (fpio_reply_open(f->fp, req, ino, ino == INO_PASS ? fd : -1, fi, NULL) < 0) close(fd);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi) {
  char buf[65536];
  (void)ino;
  atomic_fetch_add(&fs_of(req)->reads, 1);
  ssize_t n = pread((int)fi->fh, buf, size < sizeof buf ? size : sizeof buf, off);
  if (n < 0)
    fuse_reply_err(req, errno);
  else
    fuse_reply_buf(req, buf, (size_t)n);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi) {
  (void)ino;
  atomic_fetch_add(&fs_of(req)->writes, 1);
  ssize_t n = pwrite((int)fi->fh, buf, size, off);
  if (n < 0)
    fuse_reply_err(req, errno);
  else
    fuse_reply_write(req, (size_t)n);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  fpio_release(fs_of(req)->fp, ino, fi);
  close((int)fi->fh);
  fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .release = op_release,
};

static void *loop_main(void *arg) {
  struct fs *f = arg;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, 4);
  fuse_loop_cfg_set_clone_fd(cfg, 1);
  fuse_session_loop_mt(f->se, cfg);
  fuse_loop_cfg_destroy(cfg);
  return NULL;
}

static int touch(const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  return fd < 0 ? -1 : close(fd);
}

static int start(struct fs *f) {
  char *argv[] = {"fpio-two", "-o", "fsname=fpio-two", NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, argv);
  snprintf(f->dir, sizeof f->dir, "/tmp/fpio-two.XXXXXX");
  if (!mkdtemp(f->dir)) return -1;
  snprintf(f->mnt, sizeof f->mnt, "%.31s/mnt", f->dir);
  snprintf(f->pass, sizeof f->pass, "%.31s/pass", f->dir);
  snprintf(f->served, sizeof f->served, "%.31s/served", f->dir);
  if (mkdir(f->mnt, 0755) != 0 || touch(f->pass) != 0 || touch(f->served) != 0) return -1;
  /* Each server's own state is its userdata, as usual. */
  f->se = fuse_session_new(&args, &ops, sizeof ops, f);
  fuse_opt_free_args(&args);
  if (!f->se || fuse_session_mount(f->se, f->mnt) != 0) return -1;
  if (fpio_session_new(f->se, 0, &f->fp) != 0) return -1;
  return pthread_create(&f->loop, NULL, loop_main, f) == 0 ? 0 : -1;
}

static void stop(struct fs *f) {
  if (!f->se) return;
  umount2(f->mnt, MNT_DETACH);
  if (f->loop) pthread_join(f->loop, NULL);
  fuse_session_unmount(f->se);
  fpio_session_free(f->fp);
  fuse_session_destroy(f->se);
  unlink(f->pass);
  unlink(f->served);
  rmdir(f->mnt);
  rmdir(f->dir);
  f->se = NULL;
}

static uint64_t counter(struct fs *f, uint32_t c) {
  uint64_t v = 0;
  CHECK_EQ(fpio_session_counter(f->fp, c, &v), 0);
  return v;
}

/* Releases reach the server after close() returns. */
static void wait_ids_closed(struct fs *f) {
  for (int i = 0; i < 400 && counter(f, FPIO_COUNTER_BACKING_IDS_LIVE) != 0; i++) usleep(10000);
}

/* n opens of mount f's file, each writing then reading 4 KiB. Each open's
 * RELEASE is waited for, so that every open of the passthrough file registers
 * its own backing id instead of sharing the previous one's. */
static int io(struct fs *f, const char *name, int n) {
  char path[128], buf[4096];
  snprintf(path, sizeof path, "%s/%s", f->mnt, name);
  memset(buf, 'x', sizeof buf);
  for (int i = 0; i < n; i++) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    if (pwrite(fd, buf, sizeof buf, 0) != (ssize_t)sizeof buf || pread(fd, buf, sizeof buf, 0) < 0) {
      close(fd);
      return -EIO;
    }
    close(fd);
    wait_ids_closed(f);
  }
  return 0;
}

static void test_each_session_sees_its_own(void) {
  int opens[2] = {3, 5};
  for (int k = 0; k < 2; k++) REQUIRE(start(&fss[k]) == 0);
  for (int k = 0; k < 2; k++) {
    CHECK_EQ(io(&fss[k], "pass", opens[k]), 0);
    CHECK_EQ(io(&fss[k], "served", opens[k] * 2), 0);
  }
  for (int k = 0; k < 2; k++) {
    struct fs *f = &fss[k];
    uint32_t st = 99;
    uint64_t v = 12345;
    wait_ids_closed(f);
    CHECK_EQ(fpio_session_status(f->fp, &st), 0);
    CHECK_EQ(st, FPIO_STATUS_LIVE);
    CHECK_EQ(counter(f, FPIO_COUNTER_OPENS_PASSTHROUGH), (uint64_t)opens[k]);
    CHECK_EQ(counter(f, FPIO_COUNTER_OPENS_DIRECT), (uint64_t)opens[k] * 2);
    CHECK_EQ(counter(f, FPIO_COUNTER_BACKING_OPENED), (uint64_t)opens[k]);
    CHECK_EQ(counter(f, FPIO_COUNTER_BACKING_IDS_LIVE), 0);
    /* Only the served file's io reached this server: one write and one read per open. */
    CHECK_EQ(atomic_load(&f->writes), opens[k] * 2);
    CHECK_EQ(atomic_load(&f->reads), opens[k] * 2);
    int r = fpio_session_counter(f->fp, FPIO_COUNTER_REQ_WRITE, &v);
    if (FPIO_SEES_REQUESTS) {
      /* Every channel (clones included) is tied to its own session. */
      CHECK_EQ(r, 0);
      CHECK_EQ(v, (uint64_t)opens[k] * 2);
      CHECK_EQ(fpio_session_counter(f->fp, FPIO_COUNTER_REQ_READ, &v), 0);
      CHECK_EQ(v, (uint64_t)opens[k] * 2);
    } else {
      CHECK_EQ(r, -ENODATA);
    }
  }
  for (int k = 0; k < 2; k++) stop(&fss[k]);
}

int main(void) {
  if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0) {
    const char *req = getenv("FPIO_REQUIRE_MOUNT");
    if (req && strcmp(req, "1") == 0) {
      printf("Bail out! needs root and /dev/fuse (FPIO_REQUIRE_MOUNT=1)\n");
      return 1;
    }
    printf("1..0 # SKIP needs root and /dev/fuse\n");
    return 0;
  }
  check_group_begin("two-sessions");
  RUN(test_each_session_sees_its_own);
  check_group_end();
  return check_finish();
}
