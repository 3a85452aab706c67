/* fpio next to libfuse 3.17's native passthrough API, on a real mount.
 *
 * A lowlevel server (a multi-threaded loop in this process, lib/test_server.h)
 * uses fpio AND parts of the native API, while the harness's "application"
 * process does the file I/O on command (so the server threads are never
 * blocked by the test itself). The scenario is chosen by argv[1]:
 *
 *   native-cap-depth1            init() sets FUSE_CAP_PASSTHROUGH and
 *   native-cap-depth2            conn->max_backing_stack_depth = 0 / 1 (kernel
 *                                max_stack_depth 1 / 2) itself;
 *   native-cap-depth1-fpio-depth2   ... 0, with FPIO_SESSION_STACK_DEPTH_2;
 *   native-cap-depth-invalid     ... 2 (a kernel max_stack_depth of 3, which
 *                                the kernel would refuse);
 *   server-ids                   init() sets FUSE_CAP_PASSTHROUGH; some
 *                                inodes get ids from fuse_passthrough_open()
 *                                in fi->backing_id and fpio_reply_open(...,
 *                                -1, fi, ...); others fpio's own registration;
 *   server-ids-fpio-negotiated   the same, but init() leaves passthrough to fpio.
 *
 * The depth scenarios check which depth the kernel really took: a backing
 * file on overlayfs (stack depth 1) registers with max_stack_depth 2 and
 * fails with ELOOP (so fpio falls back) with 1.
 *
 * argv[2] "quick" shrinks the concurrent phase (valgrind).
 * TAP output. Needs root and /dev/fuse: "1..0 # SKIP" otherwise (meson's TAP
 * protocol counts exit status 77 as an error), or a failure when
 * FPIO_REQUIRE_MOUNT=1. Mounts and temp files are removed on every path,
 * also on SIGTERM/SIGINT (meson's timeout). Compiled only against libfuse >= 3.17. */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 317
#include <fuse_lowlevel.h>
#include <fpio.h>

#include "../lib/check.h"
#include "../lib/server_io.h"
#include "../lib/test_server.h"

#if FUSE_MAJOR_VERSION < 3 || (FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION < 17)
#error "test_native needs libfuse >= 3.17 (meson builds it only then)"
#endif

#define SENTINEL32 0xa5a5a5a5u
#define SENTINEL64 0xa5a5a5a5a5a5a5a5ull
#define STORM_TIMEOUT_MS 400000

/* ---- inodes ---- */

enum kind { K_FPIO, K_NATIVE };

struct node {
  const char *name;
  fuse_ino_t ino;
  int kind;
  char path[PATH_MAX];
  /* native ids: the server's own refcount, under lock */
  pthread_mutex_t lock;
  int refs;
  int32_t id;
  _Atomic int regs, reg_fail, closes_ok, closes_bad, close_errno;
  _Atomic int opens, releases;
};

#define N_PLAIN 0   /* fpio registers it (backing_fd = fd) */
#define N_STACKED 1 /* fpio registers it; backing file on overlayfs */
#define N_NAT1 2    /* the server's own ids (fuse_passthrough_open) */
#define N_NAT2 3
#define N_CREATED 4 /* made by CREATE, server's own id */
#define N_NODES 5

static struct node nodes[N_NODES] = {
    [N_PLAIN] = {.name = "plain", .ino = 2, .kind = K_FPIO},
    [N_STACKED] = {.name = "stacked", .ino = 3, .kind = K_FPIO},
    [N_NAT1] = {.name = "nat1", .ino = 4, .kind = K_NATIVE},
    [N_NAT2] = {.name = "nat2", .ino = 5, .kind = K_NATIVE},
    [N_CREATED] = {.name = "created", .ino = 6, .kind = K_NATIVE},
};

/* ---- scenario and state ---- */

static struct {
  /* scenario */
  const char *scenario;
  int native_cap;      /* init() sets FUSE_CAP_PASSTHROUGH */
  int native_depth;    /* conn->max_backing_stack_depth it sets */
  uint32_t fpio_flags; /* fpio_session_new flags */
  int expect_depth;    /* kernel max_stack_depth that should result */
  int server_ids;      /* the server-ids scenarios */
  int quick;
  /* the overlay (the harness (ts) has the temp dir, mount, fpio session and
   * application) */
  char ovl[128], lower[160], upper[160], work[160], merged[160], workwork[192],
      lowerfile[192], upperfile[192];
  int ovl_mounted;
  /* recorded by init() */
  _Atomic int init_called, init_capable, init_set_ok;
  /* recorded by the handlers */
  _Atomic int reads, writes;
  _Atomic int opens_begun, opens_ok, open_errs, last_open_err, bad_flags;
  _Atomic uint32_t flags_or, flags_and, last_flags;
  _Atomic int releases, release_errs, last_release_err;
} g;

static struct node *node_by_ino(fuse_ino_t ino) {
  for (int i = 0; i < N_NODES; i++)
    if (nodes[i].ino == ino) return &nodes[i];
  return NULL;
}

static struct node *node_by_name(const char *name) {
  for (int i = 0; i < N_NODES; i++)
    if (strcmp(nodes[i].name, name) == 0) return &nodes[i];
  return NULL;
}

/* ---- the server side ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  g.init_capable = (conn->capable_ext & FUSE_CAP_PASSTHROUGH) != 0;
  if (g.native_cap) {
    g.init_set_ok = fuse_set_feature_flag(conn, FUSE_CAP_PASSTHROUGH);
    conn->max_backing_stack_depth = (uint32_t)g.native_depth;
  }
  /* last, as the adoption snippet says: keeps a valid depth the server chose */
  fpio_session_init(ts.fs, conn);
  g.init_called = 1;
}

/* One reference on the inode's server-registered id; registers an O_RDWR
 * fd of the backing file at the first. 0, or -1 if registration failed. */
static int native_get(fuse_req_t req, struct node *n, int32_t *id) {
  int rc = 0;
  pthread_mutex_lock(&n->lock);
  if (n->refs == 0) {
    int rfd = open(n->path, O_RDWR | O_CLOEXEC);
    int32_t got = rfd >= 0 ? fuse_passthrough_open(req, rfd) : 0;
    if (rfd >= 0) close(rfd); /* the kernel holds its own reference */
    if (got <= 0) {
      n->reg_fail++;
      rc = -1;
      goto out;
    }
    n->id = got;
    n->regs++;
  }
  n->refs++;
  *id = n->id;
out:
  pthread_mutex_unlock(&n->lock);
  return rc;
}

/* Drops one reference; the server closes its id at the last one. A close
 * that fails (ENOENT) means someone else, i.e. fpio, closed the id. */
static void native_put(fuse_req_t req, struct node *n) {
  pthread_mutex_lock(&n->lock);
  if (--n->refs == 0) {
    errno = 0;
    if (fuse_passthrough_close(req, n->id) == 0) {
      n->closes_ok++;
    } else {
      n->closes_bad++;
      n->close_errno = errno;
    }
    n->id = 0;
  }
  pthread_mutex_unlock(&n->lock);
}

/* Answers an open (e == NULL) or create; fi->fh is the open's own fd. */
static void answer_open(fuse_req_t req, struct node *n, struct fuse_file_info *fi,
                        const struct fuse_entry_param *e) {
  uint32_t flags = SENTINEL32;
  int32_t id = 0;
  int backing_fd = (int)fi->fh, ret;

  g.opens_begun++; /* before the reply: counted when the application's open returns */
  if (n->kind == K_NATIVE) {
    if (native_get(req, n, &id) != 0) {
      g.open_errs++;
      g.last_open_err = -EPERM;
      close((int)fi->fh);
      fuse_reply_err(req, EIO);
      return;
    }
    fi->backing_id = id;
    backing_fd = -1;
  }
  if (e != NULL)
    ret = fpio_reply_create(ts.fs, req, e, backing_fd, fi, &flags);
  else
    ret = fpio_reply_open(ts.fs, req, n->ino, backing_fd, fi, &flags);
  if (ret != 0) {
    g.open_errs++;
    g.last_open_err = ret;
    if (n->kind == K_NATIVE) native_put(req, n);
    close((int)fi->fh); /* no open exists, so no release will come */
    return;
  }
  n->opens++;
  g.last_flags = flags;
  g.flags_or |= flags;
  g.flags_and &= flags;
  if (!fpio_iomode_is_passthrough(flags) || !(flags & FPIO_FOPEN_PARALLEL_DIRECT_WRITES))
    g.bad_flags++;
  /* (fpio_backing_id is checked by the tests while the application holds
   * the file: here its RELEASE may already have run on another thread) */
  g.opens_ok++; /* last: the test waits on it */
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct node *n = node_by_ino(ino);
  int fh;
  if (n == NULL || n->path[0] == '\0') {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fh = open(n->path, (fi->flags & O_ACCMODE) | O_CLOEXEC);
  if (fh < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  fi->fh = (uint64_t)fh;
  answer_open(req, n, fi, NULL);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi) {
  struct fuse_entry_param e;
  struct node *n = parent == FUSE_ROOT_ID ? node_by_name(name) : NULL;
  int fd, err;
  if (n == NULL || n != &nodes[N_CREATED]) {
    fuse_reply_err(req, EACCES);
    return;
  }
  fd = open(n->path, (fi->flags & O_ACCMODE) | O_CREAT | O_CLOEXEC, mode);
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  memset(&e, 0, sizeof e);
  e.ino = n->ino;
  err = ts_fill_attr(n->ino, &e.attr);
  if (err) {
    close(fd);
    fuse_reply_err(req, err);
    return;
  }
  fi->fh = (uint64_t)fd;
  answer_open(req, n, fi, &e);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct node *n = node_by_ino(ino);
  int r = fpio_release(ts.fs, ino, fi); /* before the server drops its own id */
  if (r != 0) {
    g.release_errs++;
    g.last_release_err = r;
  }
  if (n != NULL && n->kind == K_NATIVE) native_put(req, n);
  close((int)fi->fh);
  if (n != NULL) n->releases++;
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
  APP_RW,        /* open name O_RDWR, pwrite text at off, pread back, close */
  APP_READ,      /* open name O_RDONLY, pread at off, compare with text, close */
  APP_HOLD,      /* open name with flags (O_RDONLY/O_RDWR) and keep it */
  APP_CLOSE_ALL, /* close what is held */
  APP_CREATE_RW, /* create name O_EXCL, write text, read back, close */
  APP_STORM      /* threads x iterations of open/rw/close on plain, nat1, nat2 */
};

static void mnt_path(char *out, size_t len, const char *name) {
  snprintf(out, len, "%s/%s", ts.mnt, name);
}

/* 0, or -errno of the first failing step; -EILSEQ for wrong bytes. */
static int app_rw(const char *name, int flags, off_t off, const char *text) {
  char p[PATH_MAX + 40], buf[64] = {0};
  size_t len = strlen(text);
  int fd, err = 0;
  mnt_path(p, sizeof p, name);
  fd = open(p, flags, 0644);
  if (fd < 0) return -errno;
  if (pwrite(fd, text, len, off) != (ssize_t)len || pread(fd, buf, len, off) != (ssize_t)len)
    err = errno ? -errno : -EIO;
  else if (memcmp(buf, text, len) != 0)
    err = -EILSEQ;
  if (close(fd) != 0 && !err) err = -errno;
  return err;
}

static int app_read(const char *name, off_t off, const char *text) {
  char p[PATH_MAX + 40], buf[64] = {0};
  size_t len = strlen(text);
  int fd, err = 0;
  mnt_path(p, sizeof p, name);
  fd = open(p, O_RDONLY);
  if (fd < 0) return -errno;
  if (pread(fd, buf, len, off) != (ssize_t)len)
    err = errno ? -errno : -EIO;
  else if (memcmp(buf, text, len) != 0)
    err = -EILSEQ;
  if (close(fd) != 0 && !err) err = -errno;
  return err;
}

/* The storm: each thread writes its own 32-byte slot of each file. */
#define STORM_MAX_THREADS 16
#define STORM_FILES 3
#define SLOT 32
static const int storm_nodes[STORM_FILES] = {N_PLAIN, N_NAT1, N_NAT2};

struct storm_thread {
  pthread_t th;
  int t, iters, err;
  char last[STORM_FILES][SLOT];
};

static int slot_rw(int fd, int rdonly, off_t off, char *last, const char *next) {
  char buf[SLOT];
  if (!rdonly) {
    if (pwrite(fd, next, SLOT, off) != SLOT) return errno ? -errno : -EIO;
    memcpy(last, next, SLOT);
  }
  if (last[0] == '\0') return 0; /* nothing written yet */
  if (pread(fd, buf, SLOT, off) != SLOT) return errno ? -errno : -EIO;
  return memcmp(buf, last, SLOT) == 0 ? 0 : -EILSEQ;
}

static void *storm_main(void *arg) {
  struct storm_thread *st = arg;
  char p[PATH_MAX + 40], next[SLOT];
  int held = -1;
  off_t off = (off_t)st->t * SLOT;
  if (st->t % 2 == 0) { /* keep one open across half the run: overlapping opens */
    mnt_path(p, sizeof p, nodes[storm_nodes[st->t % STORM_FILES]].name);
    held = open(p, O_RDWR);
    if (held < 0) st->err = -errno;
  }
  for (int i = 0; i < st->iters && !st->err; i++) {
    int f = (st->t + i) % STORM_FILES;
    struct node *n = &nodes[storm_nodes[f]];
    /* read-only opens of the server-id inodes too; fpio's inode stays
     * O_RDWR so its backing fd (the first open's) serves every open */
    int rdonly = n->kind == K_NATIVE && i % 4 == 3;
    int fd;
    mnt_path(p, sizeof p, n->name);
    fd = open(p, rdonly ? O_RDONLY : O_RDWR);
    if (fd < 0) {
      st->err = -errno;
      break;
    }
    memset(next, 'x', sizeof next);
    snprintf(next, 16, "t%02u-i%06u-f%u", (unsigned)st->t % 100u, (unsigned)i % 1000000u,
             (unsigned)f % 10u);
    next[14] = '-'; /* the tag, then padding: no NUL inside the slot */
    st->err = slot_rw(fd, rdonly, off, st->last[f], next);
    if (close(fd) != 0 && !st->err) st->err = -errno;
    if (i == st->iters / 2 && held >= 0) {
      if (close(held) != 0 && !st->err) st->err = -errno;
      held = -1;
    }
  }
  if (held >= 0) close(held);
  return NULL;
}

/* Runs the storm, then checks every thread's last slot through the mount
 * and in the backing file itself. */
static int app_storm(int threads, int iters) {
  static struct storm_thread st[STORM_MAX_THREADS];
  int err = 0;
  if (threads > STORM_MAX_THREADS) threads = STORM_MAX_THREADS;
  memset(st, 0, sizeof st);
  for (int t = 0; t < threads; t++) {
    st[t].t = t;
    st[t].iters = iters;
    if (pthread_create(&st[t].th, NULL, storm_main, &st[t]) != 0) {
      threads = t;
      err = -EAGAIN;
      break;
    }
  }
  for (int t = 0; t < threads; t++) {
    pthread_join(st[t].th, NULL);
    if (st[t].err && !err) {
      printf("#   app: storm thread %d: %s\n", t, strerror(-st[t].err));
      fflush(stdout);
      err = st[t].err;
    }
  }
  if (err) return err;
  for (int f = 0; f < STORM_FILES && !err; f++) {
    char p[PATH_MAX + 40], buf[SLOT];
    struct node *n = &nodes[storm_nodes[f]];
    for (int via = 0; via < 2 && !err; via++) {
      int fd;
      if (via == 0) mnt_path(p, sizeof p, n->name);
      else snprintf(p, sizeof p, "%s", n->path);
      fd = open(p, O_RDONLY);
      if (fd < 0) return -errno;
      for (int t = 0; t < threads && !err; t++) {
        if (st[t].last[f][0] == '\0') continue;
        if (pread(fd, buf, SLOT, (off_t)t * SLOT) != SLOT)
          err = -EIO;
        else if (memcmp(buf, st[t].last[f], SLOT) != 0) {
          printf("#   app: %s slot %d differs %s\n", n->name, t,
                 via ? "in the backing file" : "through the mount");
          fflush(stdout);
          err = -EILSEQ;
        }
      }
      close(fd);
    }
  }
  return err;
}

static int app_do(const struct ts_cmd *c, int *held, int *nheld) {
  char p[PATH_MAX + 40];
  int fd, err = 0;
  switch (c->op) {
  case APP_RW: return app_rw(c->name, O_RDWR, c->a, c->text);
  case APP_READ: return app_read(c->name, c->a, c->text);
  case APP_HOLD:
    if (*nheld >= TS_APP_MAX_HELD) return -EMFILE;
    mnt_path(p, sizeof p, c->name);
    fd = open(p, c->a);
    if (fd < 0) return -errno;
    held[(*nheld)++] = fd;
    return 0;
  case APP_CLOSE_ALL:
    while (*nheld > 0)
      if (close(held[--*nheld]) != 0 && !err) err = -errno;
    return err;
  case APP_CREATE_RW: return app_rw(c->name, O_RDWR | O_CREAT | O_EXCL, 0, c->text);
  case APP_STORM: return app_storm(c->a, c->b);
  }
  return -ENOSYS;
}

#define app(op, name, a, text) ts_app(op, name, a, text)

/* ---- files, mounts, cleanup ---- */

/* The backing file's bytes at [0, len) equal text. */
static int backing_is(const char *path, const char *text) {
  char buf[128] = {0};
  size_t len = strlen(text);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? pread(fd, buf, len, 0) : -1;
  if (fd >= 0) close(fd);
  if (n != (ssize_t)len || memcmp(buf, text, len) != 0) {
    printf("#   %s holds \"%.*s\", expected \"%s\"\n", path, n > 0 ? (int)n : 0, buf, text);
    return 0;
  }
  return 1;
}

static int make_dirs(void) {
  if (ts_make_dirs("fpio-native") != 0) return -1;
  for (int i = 0; i < N_NODES; i++) {
    struct node *n = &nodes[i];
    pthread_mutex_init(&n->lock, NULL);
    if (i == N_STACKED) continue; /* set up with the overlay */
    snprintf(n->path, sizeof n->path, "%s/%s", ts.dir, n->name);
    if (i != N_CREATED && ts_write_file(n->path, "0123456789") != 0) return -1;
  }
  return 0;
}

/* A backing file on overlayfs (stack depth 1) for the depth scenarios. */
static int make_overlay(void) {
  char opts[4 * PATH_MAX];
  snprintf(g.ovl, sizeof g.ovl, "%s/ovl", ts.dir);
  snprintf(g.lower, sizeof g.lower, "%s/lower", g.ovl);
  snprintf(g.upper, sizeof g.upper, "%s/upper", g.ovl);
  snprintf(g.work, sizeof g.work, "%s/work", g.ovl);
  snprintf(g.workwork, sizeof g.workwork, "%s/work", g.work);
  snprintf(g.merged, sizeof g.merged, "%s/merged", g.ovl);
  snprintf(g.lowerfile, sizeof g.lowerfile, "%s/stacked", g.lower);
  snprintf(g.upperfile, sizeof g.upperfile, "%s/stacked", g.upper);
  if (mkdir(g.ovl, 0755) != 0 || mkdir(g.lower, 0755) != 0 || mkdir(g.upper, 0755) != 0 ||
      mkdir(g.work, 0755) != 0 || mkdir(g.merged, 0755) != 0)
    return -1;
  if (ts_write_file(g.lowerfile, "0123456789") != 0) return -1;
  snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", g.lower, g.upper, g.work);
  if (mount("overlay", g.merged, "overlay", 0, opts) != 0) {
    printf("#   mount overlay: %s\n", strerror(errno));
    return -1;
  }
  g.ovl_mounted = 1;
  snprintf(nodes[N_STACKED].path, sizeof nodes[N_STACKED].path, "%s/stacked", g.merged);
  return 0;
}

/* Only async-signal-safe calls: meson's timeout sends SIGTERM. */
static void on_signal(int sig) {
  (void)sig;
  ts_signal_cleanup();
  if (g.ovl_mounted) umount2(g.merged, MNT_DETACH);
  if (ts.dir[0] != '\0') {
    for (int i = 0; i < N_NODES; i++)
      if (i != N_STACKED && nodes[i].path[0]) unlink(nodes[i].path);
    if (g.ovl[0]) {
      unlink(g.upperfile);
      unlink(g.lowerfile);
      rmdir(g.workwork);
      rmdir(g.work);
      rmdir(g.upper);
      rmdir(g.lower);
      rmdir(g.merged);
      rmdir(g.ovl);
    }
    rmdir(ts.mnt);
    rmdir(ts.dir);
  }
  _exit(1);
}

/* Temp dir (and the overlay for the depth scenarios), application, mount,
 * fpio session, an 8-thread loop; INIT answered. */
static int serve(void) {
  int r;
  if (make_dirs() != 0) return -1;
  if (!g.server_ids && make_overlay() != 0) return -1;
  if (ts_app_start(app_do) != 0 || ts_mount(&ops, sizeof ops, "fpio-native") != 0) return -1;
  r = fpio_session_new(ts.se, g.fpio_flags, &ts.fs);
  if (r != 0) {
    printf("#   fpio_session_new: %s\n", strerror(-r));
    return -1;
  }
  if (ts_start_loop(8) != 0) return -1;
  return ts_wait_init();
}

static void stop_serving(void) {
  ts_stop();
  if (g.ovl_mounted) {
    umount2(g.merged, MNT_DETACH);
    g.ovl_mounted = 0;
  }
  ts_remove_dirs();
}

/* ---- helpers for the checks ---- */

static uint64_t counter(uint32_t c) { return ts_counter(c); }


static int wait_atomic(_Atomic int *v, int n, const char *what) {
  return ts_wait_atomic(v, n, what);
}

/* An open reply can reach the application before its handler has recorded
 * it: wait for every open handler that began to finish. */
static int handlers_done(void) {
  for (int i = 0; i < 3000; i++) { /* 30 s */
    if (g.opens_ok + g.open_errs >= g.opens_begun) return 0;
    usleep(10000);
  }
  printf("#   timed out waiting for open handlers (%d begun, %d ok, %d failed)\n",
         g.opens_begun, g.opens_ok, g.open_errs);
  return -1;
}

/* RELEASE reaches the server after close() returned: wait for the release
 * of every open (the test holds none). */
static int settle(void) {
  if (handlers_done() != 0) return -1;
  return wait_atomic(&g.releases, g.opens_ok, "releases");
}

static int total_server_regs(void) {
  int s = 0;
  for (int i = 0; i < N_NODES; i++) s += nodes[i].regs;
  return s;
}

static int total_closes_ok(void) {
  int s = 0;
  for (int i = 0; i < N_NODES; i++) s += nodes[i].closes_ok;
  return s;
}

/* No native id was closed by anyone but the server, and every one it
 * registered it closed itself. */
static void check_native_ids_balanced(void) {
  for (int i = 0; i < N_NODES; i++) {
    struct node *n = &nodes[i];
    if (n->kind != K_NATIVE) continue;
    if (n->closes_bad)
      printf("#   %s: %d fuse_passthrough_close failed (last errno %d: %s)\n", n->name,
             n->closes_bad, n->close_errno, strerror(n->close_errno));
    CHECK_EQ(n->closes_bad, 0);
    CHECK_EQ(n->reg_fail, 0);
    CHECK_EQ(n->regs, n->closes_ok);
    CHECK_EQ(n->refs, 0);
  }
}

static void check_no_server_io(void) {
  CHECK_EQ(g.reads, 0);
  CHECK_EQ(g.writes, 0);
  CHECK(ts_req_counter(FPIO_COUNTER_REQ_READ) <= 0);
  CHECK(ts_req_counter(FPIO_COUNTER_REQ_WRITE) <= 0);
}

static void check_handler_record(void) {
  if (g.open_errs) printf("#   last open error %d\n", g.last_open_err);
  if (g.release_errs) printf("#   last fpio_release error %d\n", g.last_release_err);
  if (g.bad_flags) printf("#   last open flags 0x%x\n", g.last_flags);
  CHECK_EQ(g.open_errs, 0);
  CHECK_EQ(g.bad_flags, 0);
  CHECK_EQ(g.release_errs, 0);
}

/* ---- tests common to every scenario ---- */

static int served; /* serve() succeeded */

static void test_built_and_running_on_317(void) {
  CHECK(fpio_libfuse_version_built() >= 317);
  CHECK(fpio_libfuse_version_runtime() >= 317);
  printf("#   fpio built against %u, running on %u\n", fpio_libfuse_version_built(),
         fpio_libfuse_version_runtime());
}

static void test_init_and_status_live(void) {
  uint32_t st = SENTINEL32;
  int e = -1;
  REQUIRE(served);
  CHECK_EQ(g.init_called, 1);
  CHECK_EQ(g.init_capable, 1); /* the server sees the kernel's offer */
  if (g.native_cap) CHECK_EQ(g.init_set_ok, 1);
  CHECK_EQ(fpio_session_status(ts.fs, &st), 0);
  if (st != FPIO_STATUS_LIVE) printf("#   status: %s\n", fpio_status_str(st));
  CHECK_EQ(st, FPIO_STATUS_LIVE);
  CHECK_EQ(fpio_session_register_errno(ts.fs, &e), 0);
  CHECK_EQ(e, 0);
}

/* ---- scenario 2: the server negotiates natively too ---- */

static void test_fpio_ids_pass_through(void) {
  uint64_t pt0, op0, cl0;
  REQUIRE(served);
  pt0 = counter(FPIO_COUNTER_OPENS_PASSTHROUGH);
  op0 = counter(FPIO_COUNTER_BACKING_OPENED);
  cl0 = counter(FPIO_COUNTER_BACKING_CLOSED);
  /* Each open after the last one's RELEASE (which follows close()
   * asynchronously): a writer arriving while the reader's read-only backing
   * file is still registered would share it as direct io instead. */
  CHECK_EQ(app(APP_READ, "plain", 0, "0123456789"), 0);
  CHECK_EQ(settle(), 0);
  CHECK_EQ(app(APP_RW, "plain", 2, "ABCD"), 0);
  CHECK_EQ(settle(), 0);
  CHECK_EQ(app(APP_READ, "plain", 0, "01ABCD6789"), 0);
  CHECK_EQ(settle(), 0);
  CHECK(backing_is(nodes[N_PLAIN].path, "01ABCD6789"));
  check_no_server_io();
  check_handler_record();
  CHECK_EQ(counter(FPIO_COUNTER_OPENS_PASSTHROUGH) - pt0, 3);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_OPENED) - op0, 3); /* one per (sequential) open */
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_CLOSED) - cl0, 3);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
}

/* A backing file on overlayfs: passthrough with max_stack_depth 2, ELOOP
 * (fpio falls back to server io) with 1. */
static void test_stack_depth_taken(void) {
  uint64_t pt0, rf0;
  int reads0, writes0, e = -1;
  REQUIRE(served);
  pt0 = counter(FPIO_COUNTER_OPENS_PASSTHROUGH);
  rf0 = counter(FPIO_COUNTER_FALLBACK_REGISTER_FAILED);
  reads0 = g.reads;
  writes0 = g.writes;
  g.bad_flags = 0;
  CHECK_EQ(app(APP_READ, "stacked", 0, "0123456789"), 0);
  CHECK_EQ(settle(), 0); /* the writer must not find the reader's backing file */
  CHECK_EQ(app(APP_RW, "stacked", 1, "xyz"), 0);
  CHECK_EQ(settle(), 0);
  CHECK(backing_is(nodes[N_STACKED].path, "0xyz456789"));
  CHECK_EQ(fpio_session_register_errno(ts.fs, &e), 0);
  printf("#   expected kernel max_stack_depth %d; stacked opens: %llu passthrough, "
         "%llu registrations failed (errno %d), server reads %d writes %d\n",
         g.expect_depth, (unsigned long long)(counter(FPIO_COUNTER_OPENS_PASSTHROUGH) - pt0),
         (unsigned long long)(counter(FPIO_COUNTER_FALLBACK_REGISTER_FAILED) - rf0), e,
         g.reads - reads0, g.writes - writes0);
  if (g.expect_depth == 2) {
    CHECK_EQ(counter(FPIO_COUNTER_OPENS_PASSTHROUGH) - pt0, 2);
    CHECK_EQ(counter(FPIO_COUNTER_FALLBACK_REGISTER_FAILED) - rf0, 0);
    CHECK_EQ(g.bad_flags, 0);
    check_no_server_io();
  } else {
    CHECK_EQ(counter(FPIO_COUNTER_OPENS_PASSTHROUGH) - pt0, 0);
    CHECK_EQ(counter(FPIO_COUNTER_FALLBACK_REGISTER_FAILED) - rf0, 2);
    CHECK_EQ(e, ELOOP);
    CHECK(g.writes - writes0 >= 1);
    CHECK(g.reads - reads0 >= 1);
  }
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_OPENED), counter(FPIO_COUNTER_BACKING_CLOSED));
  g.bad_flags = 0; /* the fallback opens are not the plain file's business */
}

/* ---- scenario 3: the server registers some ids itself ---- */

static void test_server_id_passes_through(void) {
  struct node *n = &nodes[N_NAT1];
  uint64_t pt0 = counter(FPIO_COUNTER_OPENS_PASSTHROUGH);
  uint64_t op0 = counter(FPIO_COUNTER_BACKING_OPENED);
  uint64_t cl0 = counter(FPIO_COUNTER_BACKING_CLOSED);
  int32_t id = (int32_t)SENTINEL32;
  REQUIRE(served);
  CHECK_EQ(app(APP_READ, "nat1", 0, "0123456789"), 0);
  CHECK_EQ(app(APP_RW, "nat1", 0, "WXYZ"), 0);
  CHECK_EQ(app(APP_CREATE_RW, "created", 0, "created-here"), 0);
  CHECK_EQ(settle(), 0);
  CHECK(backing_is(n->path, "WXYZ456789"));
  CHECK(backing_is(nodes[N_CREATED].path, "created-here"));
  check_no_server_io();
  check_handler_record();
  CHECK((g.flags_and & FPIO_FOPEN_PASSTHROUGH) != 0);
  CHECK_EQ(counter(FPIO_COUNTER_OPENS_PASSTHROUGH) - pt0, 3);
  /* the server registered and closed each id itself; fpio none */
  CHECK_EQ(n->regs, 2);
  CHECK_EQ(nodes[N_CREATED].regs, 1);
  check_native_ids_balanced();
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_OPENED) - op0, 0);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_CLOSED) - cl0, 0);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  CHECK_EQ(fpio_backing_id(ts.fs, n->ino, &id), -ENOENT);
}

/* Several opens share one server id; releases that are not the last keep
 * it usable (fpio does not close it early), the last one lets the server
 * close it. */
static void test_server_id_shared_and_held(void) {
  struct node *n = &nodes[N_NAT1];
  int regs0 = n->regs, closes0 = n->closes_ok;
  int32_t id = (int32_t)SENTINEL32, held_id;
  REQUIRE(served);
  CHECK_EQ(app(APP_HOLD, "nat1", O_RDWR, NULL), 0);
  CHECK_EQ(app(APP_HOLD, "nat1", O_RDONLY, NULL), 0);
  CHECK_EQ(handlers_done(), 0);
  CHECK_EQ(n->regs - regs0, 1);
  held_id = n->id;
  CHECK_EQ(fpio_backing_id(ts.fs, n->ino, &id), 0);
  CHECK_EQ(id, held_id);
  /* opens and releases while the id is held: same id, never closed */
  for (int i = 0; i < 5; i++) {
    char text[16];
    snprintf(text, sizeof text, "held%d", i);
    CHECK_EQ(app(APP_RW, "nat1", 0, text), 0);
  }
  CHECK_EQ(wait_atomic(&g.releases, g.opens_ok - 2, "releases"), 0);
  CHECK_EQ(n->regs - regs0, 1);
  CHECK_EQ(n->closes_ok - closes0, 0);
  CHECK_EQ(n->closes_bad, 0);
  CHECK_EQ(fpio_backing_id(ts.fs, n->ino, &id), 0);
  CHECK_EQ(id, held_id);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_OPENED), counter(FPIO_COUNTER_BACKING_CLOSED));
  CHECK_EQ(app(APP_CLOSE_ALL, NULL, 0, NULL), 0);
  CHECK_EQ(settle(), 0);
  CHECK_EQ(n->closes_ok - closes0, 1);
  check_native_ids_balanced();
  CHECK(backing_is(n->path, "held4"));
  check_no_server_io();
  check_handler_record();
  CHECK_EQ(fpio_backing_id(ts.fs, n->ino, &id), -ENOENT);
}

/* Server ids and fpio ids side by side: fpio's counters see only its own. */
static void test_server_and_fpio_ids_together(void) {
  uint64_t op0 = counter(FPIO_COUNTER_BACKING_OPENED);
  uint64_t cl0 = counter(FPIO_COUNTER_BACKING_CLOSED);
  int32_t fid = 0, n1 = 0, n2 = 0;
  int regs0 = total_server_regs(), closes0 = total_closes_ok();
  REQUIRE(served);
  CHECK_EQ(app(APP_HOLD, "plain", O_RDWR, NULL), 0);
  CHECK_EQ(app(APP_HOLD, "nat1", O_RDWR, NULL), 0);
  CHECK_EQ(app(APP_HOLD, "nat2", O_RDWR, NULL), 0);
  CHECK_EQ(handlers_done(), 0);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 1);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_OPENED) - op0, 1);
  CHECK_EQ(total_server_regs() - regs0, 2);
  CHECK_EQ(fpio_backing_id(ts.fs, nodes[N_PLAIN].ino, &fid), 0);
  CHECK_EQ(fpio_backing_id(ts.fs, nodes[N_NAT1].ino, &n1), 0);
  CHECK_EQ(fpio_backing_id(ts.fs, nodes[N_NAT2].ino, &n2), 0);
  CHECK(fid > 0 && n1 > 0 && n2 > 0 && fid != n1 && fid != n2 && n1 != n2);
  CHECK_EQ(app(APP_RW, "plain", 0, "fpio-id"), 0);
  CHECK_EQ(app(APP_RW, "nat1", 0, "server-1"), 0);
  CHECK_EQ(app(APP_RW, "nat2", 0, "server-2"), 0);
  CHECK_EQ(app(APP_CLOSE_ALL, NULL, 0, NULL), 0);
  CHECK_EQ(settle(), 0);
  CHECK(backing_is(nodes[N_PLAIN].path, "fpio-id"));
  CHECK(backing_is(nodes[N_NAT1].path, "server-1"));
  CHECK(backing_is(nodes[N_NAT2].path, "server-2"));
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_OPENED) - op0, 1);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_CLOSED) - cl0, 1);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  CHECK_EQ(total_closes_ok() - closes0, 2);
  check_native_ids_balanced();
  check_no_server_io();
  check_handler_record();
}

/* Many concurrent opens and releases of the server-id inodes (and of fpio's
 * inode next to them), on a multi-threaded server. */
static void test_concurrent_opens_and_releases(void) {
  int threads = g.quick ? 4 : 8, iters = g.quick ? 30 : 300;
  int opens0 = g.opens_ok, fp_opens0 = nodes[N_PLAIN].opens;
  uint64_t op0 = counter(FPIO_COUNTER_BACKING_OPENED);
  uint64_t pt0 = counter(FPIO_COUNTER_OPENS_PASSTHROUGH);
  uint64_t opened, closed;
  REQUIRE(served);
  CHECK_EQ(ts_app_cmd(APP_STORM, NULL, threads, iters, NULL, STORM_TIMEOUT_MS), 0);
  CHECK_EQ(settle(), 0);
  printf("#   %d threads x %d iterations: %d opens (%d of fpio's inode), server registered "
         "%d ids, fpio %llu\n",
         threads, iters, g.opens_ok - opens0, nodes[N_PLAIN].opens - fp_opens0,
         total_server_regs(), (unsigned long long)(counter(FPIO_COUNTER_BACKING_OPENED) - op0));
  CHECK(g.opens_ok - opens0 >= threads * iters);
  CHECK_EQ(counter(FPIO_COUNTER_OPENS_PASSTHROUGH) - pt0, g.opens_ok - opens0);
  check_no_server_io();
  check_handler_record();
  check_native_ids_balanced();
  opened = counter(FPIO_COUNTER_BACKING_OPENED) - op0;
  CHECK(opened >= 1);
  CHECK(opened <= (uint64_t)(nodes[N_PLAIN].opens - fp_opens0)); /* only fpio's inode */
  closed = counter(FPIO_COUNTER_BACKING_CLOSED);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_OPENED), closed);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
}

/* After everything: nothing fell back, nothing refused, ids balanced. */
static void test_counters_balanced(void) {
  /* depth 1: the overlay file's two opens fell back (ELOOP), as checked above */
  int stacked_fell_back = !g.server_ids && g.expect_depth == 1 ? 2 : 0;
  REQUIRE(served);
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_OPENED), counter(FPIO_COUNTER_BACKING_CLOSED));
  CHECK_EQ(counter(FPIO_COUNTER_BACKING_IDS_LIVE), 0);
  CHECK_EQ(counter(FPIO_COUNTER_BUSY_REFUSED), 0);
  CHECK_EQ(counter(FPIO_COUNTER_REPLY_FAILED), 0);
  /* a fallback is the server's own reply: this server never asks for direct io */
  CHECK_EQ(counter(FPIO_COUNTER_OPENS_DIRECT), 0);
  CHECK_EQ(counter(FPIO_COUNTER_OPENS_CACHED), stacked_fell_back);
  CHECK_EQ(counter(FPIO_COUNTER_OPENS_SHARED_DIRECT), 0);
  for (uint32_t c = FPIO_COUNTER_FALLBACK_NOT_LIVE; c <= FPIO_COUNTER_FALLBACK_REGISTER_FAILED; c++) {
    uint64_t want = c == FPIO_COUNTER_FALLBACK_REGISTER_FAILED ? (uint64_t)stacked_fell_back : 0;
    if (counter(c) != want)
      printf("#   %s = %llu\n", fpio_counter_name(c), (unsigned long long)counter(c));
    CHECK_EQ(counter(c), want);
  }
  check_native_ids_balanced();
  CHECK_EQ(g.release_errs, 0);
}

/* ---- main ---- */

static int set_scenario(const char *name) {
  g.scenario = name;
  g.flags_and = UINT32_MAX;
  if (strcmp(name, "native-cap-depth1") == 0) {
    g.native_cap = 1, g.native_depth = FUSE_BACKING_STACKED_UNDER, g.expect_depth = 1;
  } else if (strcmp(name, "native-cap-depth2") == 0) {
    g.native_cap = 1, g.native_depth = FUSE_BACKING_STACKED_OVER, g.expect_depth = 2;
  } else if (strcmp(name, "native-cap-depth1-fpio-depth2") == 0) {
    g.native_cap = 1, g.native_depth = FUSE_BACKING_STACKED_UNDER;
    g.fpio_flags = FPIO_SESSION_STACK_DEPTH_2, g.expect_depth = 2;
  } else if (strcmp(name, "native-cap-depth-invalid") == 0) {
    /* libfuse would send max_stack_depth 3, which the kernel refuses
     * (passthrough silently off); fpio replaces it with its own 1 */
    g.native_cap = 1, g.native_depth = 2, g.expect_depth = 1;
  } else if (strcmp(name, "server-ids") == 0) {
    g.native_cap = 1, g.native_depth = FUSE_BACKING_STACKED_UNDER, g.expect_depth = 1;
    g.server_ids = 1;
  } else if (strcmp(name, "server-ids-fpio-negotiated") == 0) {
    g.expect_depth = 1, g.server_ids = 1;
  } else {
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  struct sigaction sa;
  int rc;
  if (argc < 2 || set_scenario(argv[1]) != 0) {
    fprintf(stderr,
            "usage: %s native-cap-depth1|native-cap-depth2|native-cap-depth1-fpio-depth2|"
            "native-cap-depth-invalid|server-ids|server-ids-fpio-negotiated [quick]\n",
            argv[0]);
    return 2;
  }
  g.quick = argc > 2 && strcmp(argv[2], "quick") == 0;
  if (!ts_mounts_possible(&rc)) return rc;
  for (int i = 0; i < N_NODES; i++) ts_add_file(nodes[i].name, nodes[i].ino, nodes[i].path);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  printf("# scenario %s\n", g.scenario);

  RUN(test_built_and_running_on_317);
  check_group_begin(g.scenario);
  served = serve() == 0;
  if (!served) printf("#   could not serve the mount\n");
  RUN(test_init_and_status_live);
  if (g.server_ids) {
    RUN(test_server_id_passes_through);
    RUN(test_server_id_shared_and_held);
    RUN(test_server_and_fpio_ids_together);
    RUN(test_concurrent_opens_and_releases);
  } else {
    RUN(test_fpio_ids_pass_through);
    RUN(test_stack_depth_taken);
  }
  RUN(test_counters_balanced);
  stop_serving();
  check_group_end();
  return check_finish();
}
