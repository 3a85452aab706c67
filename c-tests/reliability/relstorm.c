/* relstorm: the reliability suite's load generator.
 *
 *   relstorm stress [--threads N] [--seconds S] [--files F] DIR
 *       N threads for S seconds: random open/close/read/write/ftruncate/truncate/
 *       unlink/rename/chmod/fsync on DIR/f0..f<F-1>. ENOENT from a path operation
 *       is expected (another thread unlinked or renamed the name away); any other
 *       failure, EIO above all, is counted as unexpected. --allow-eintr as below.
 *   relstorm opens [--threads N] [--seconds S] [--files F] [--allow-eintr] DIR
 *       open/pread/[pwrite]/close round trips on the existing DIR/f0..f<F-1>; every
 *       read is compared with the file's first 4 KiB read at start, writes put the
 *       same bytes back. --allow-eintr: an open may fail with EINTR (fpio's
 *       injected reply faults answer an open as interrupted); it is counted.
 *   relstorm deathwrite --synced-mib M --marker PATH --stop PATH [--seconds S] FILE
 *       writes M MiB of a known pattern, fsyncs, creates PATH(marker), then keeps
 *       writing after those M MiB (never inside them) until a write fails, PATH(stop)
 *       exists or S seconds pass. Exit 0 if it ended with ENOTCONN or ECONNABORTED
 *       (the server died) or was told to stop.
 *   relstorm verify --synced-mib M FILE
 *       the first M MiB of FILE hold deathwrite's pattern.
 *
 * Every mode prints one summary line; exit 0 only without unexpected errors. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_FILES 256
#define MAX_HELD 4
#define REF 4096
#define MAX_IO (64 << 10)
#define FILE_SPAN (1 << 20) /* stress I/O stays in the first MiB */

enum op { OP_OPEN, OP_CLOSE, OP_READ, OP_WRITE, OP_FTRUNC, OP_TRUNC, OP_UNLINK,
          OP_RENAME, OP_CHMOD, OP_FSYNC, OP_N };
static const char *op_names[OP_N] = {"open", "close", "read", "write", "ftruncate",
                                     "truncate", "unlink", "rename", "chmod", "fsync"};

static int nthreads = 16, nfiles = 32, seconds = 60, allow_eintr;
static const char *dir;
static atomic_long op_count[OP_N], enoent_count, eintr_count, unexpected;
static unsigned char ref[MAX_FILES][REF];
static ssize_t reflen[MAX_FILES];
static struct timespec t_end;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int expired(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec > t_end.tv_sec ||
         (ts.tv_sec == t_end.tv_sec && ts.tv_nsec >= t_end.tv_nsec);
}

static uint64_t rnd(uint64_t *s) { /* xorshift64 */
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void name_of(char *buf, size_t n, int f) { snprintf(buf, n, "%s/f%d", dir, f); }

static void unexpected_err(const char *what, int f, int err) {
  if (atomic_fetch_add(&unexpected, 1) < 20) /* enough to diagnose, not a flood */
    fprintf(stderr, "relstorm: %s f%d: %s\n", what, f, strerror(err));
}

/* A path operation's result: ENOENT is a lost race with unlink/rename. */
static void path_result(enum op op, int rc, int f) {
  atomic_fetch_add(&op_count[op], 1);
  if (rc == 0) return;
  if (errno == ENOENT)
    atomic_fetch_add(&enoent_count, 1);
  else if (errno == EINTR && allow_eintr && op == OP_OPEN)
    atomic_fetch_add(&eintr_count, 1);
  else
    unexpected_err(op_names[op], f, errno);
}

/* An fd operation's result: nothing is expected to fail. */
static void fd_result(enum op op, int failed, int f) {
  atomic_fetch_add(&op_count[op], 1);
  if (failed) unexpected_err(op_names[op], f, errno);
}

struct held {
  int fd, file, acc;
};

static void *stress_thread(void *arg) {
  uint64_t s = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
  struct held h[MAX_HELD];
  int nheld = 0;
  char p1[PATH_MAX], p2[PATH_MAX];
  static const int accs[3] = {O_RDONLY, O_WRONLY, O_RDWR};
  static const mode_t modes[5] = {0644, 0600, 0664, 04755, 02775};
  unsigned char *buf = malloc(MAX_IO);
  if (!buf) abort();
  while (!expired()) {
    uint64_t r = rnd(&s);
    int f = (int)((r >> 8) % (uint64_t)nfiles);
    enum op op = (enum op)((r >> 20) % OP_N);
    int k = nheld ? (int)((r >> 32) % (uint64_t)nheld) : -1;
    size_t len = 1 + (size_t)((r >> 40) % MAX_IO);
    off_t off = (off_t)(rnd(&s) % (FILE_SPAN - MAX_IO));
    /* fd operations need a held fd; open one instead. */
    if (k < 0 && (op == OP_CLOSE || op == OP_READ || op == OP_WRITE || op == OP_FTRUNC ||
                  op == OP_FSYNC))
      op = OP_OPEN;
    if (op == OP_OPEN && nheld == MAX_HELD) op = OP_CLOSE, k = 0;
    switch (op) {
    case OP_OPEN: {
      int acc = accs[(r >> 36) % 3], fl = acc | O_CLOEXEC, fd;
      if (r & (1ull << 50)) fl |= O_CREAT;
      if (acc != O_RDONLY && (r >> 51) % 10 == 0) fl |= O_TRUNC;
      name_of(p1, sizeof p1, f);
      fd = open(p1, fl, 0644);
      path_result(op, fd < 0 ? -1 : 0, f);
      if (fd >= 0) h[nheld++] = (struct held){fd, f, acc};
      break;
    }
    case OP_CLOSE:
      fd_result(op, close(h[k].fd) != 0, h[k].file);
      h[k] = h[--nheld];
      break;
    case OP_READ:
      if (h[k].acc == O_WRONLY) {
        fd_result(OP_FSYNC, fdatasync(h[k].fd) != 0, h[k].file);
        break;
      }
      fd_result(op, pread(h[k].fd, buf, len, off) < 0, h[k].file);
      break;
    case OP_WRITE:
      if (h[k].acc == O_RDONLY) {
        fd_result(OP_READ, pread(h[k].fd, buf, len, off) < 0, h[k].file);
        break;
      }
      memset(buf, (int)(r & 0xff), len);
      fd_result(op, pwrite(h[k].fd, buf, len, off) != (ssize_t)len, h[k].file);
      break;
    case OP_FTRUNC:
      if (h[k].acc == O_RDONLY) {
        struct stat st;
        fd_result(OP_FSYNC, fstat(h[k].fd, &st) != 0, h[k].file);
        break;
      }
      fd_result(op, ftruncate(h[k].fd, off) != 0, h[k].file);
      break;
    case OP_FSYNC:
      fd_result(op, fsync(h[k].fd) != 0, h[k].file);
      break;
    case OP_TRUNC:
      name_of(p1, sizeof p1, f);
      path_result(op, truncate(p1, off), f);
      break;
    case OP_UNLINK:
      name_of(p1, sizeof p1, f);
      path_result(op, unlink(p1), f);
      break;
    case OP_RENAME:
      name_of(p1, sizeof p1, f);
      name_of(p2, sizeof p2, (int)((r >> 44) % (uint64_t)nfiles));
      path_result(op, rename(p1, p2), f);
      break;
    case OP_CHMOD:
      name_of(p1, sizeof p1, f);
      path_result(op, chmod(p1, modes[(r >> 36) % 5]), f);
      break;
    case OP_N:
      break;
    }
  }
  while (nheld > 0) {
    nheld--;
    fd_result(OP_CLOSE, close(h[nheld].fd) != 0, h[nheld].file);
  }
  free(buf);
  return NULL;
}

/* open() that may fail with EINTR under injected reply faults: retried then. */
static int open_retry(const char *p, int fl) {
  for (;;) {
    int fd = open(p, fl | O_CLOEXEC);
    if (fd >= 0 || errno != EINTR || !allow_eintr) return fd;
    atomic_fetch_add(&eintr_count, 1);
  }
}

static void *opens_thread(void *arg) {
  uint64_t s = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
  unsigned char buf[REF];
  char p[PATH_MAX];
  while (!expired()) {
    uint64_t r = rnd(&s);
    int f = (int)((r >> 8) % (uint64_t)nfiles), rw = (int)((r >> 20) & 1), fd;
    ssize_t n;
    name_of(p, sizeof p, f);
    fd = open(p, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    atomic_fetch_add(&op_count[OP_OPEN], 1);
    if (fd < 0) {
      if (errno == EINTR && allow_eintr)
        atomic_fetch_add(&eintr_count, 1);
      else
        unexpected_err("open", f, errno);
      continue;
    }
    n = pread(fd, buf, REF, 0);
    atomic_fetch_add(&op_count[OP_READ], 1);
    if (n < 0)
      unexpected_err("pread", f, errno);
    else if (n != reflen[f] || memcmp(buf, ref[f], (size_t)n) != 0)
      unexpected_err("pread (content differs)", f, EILSEQ);
    if (rw) {
      atomic_fetch_add(&op_count[OP_WRITE], 1);
      if (pwrite(fd, ref[f], (size_t)reflen[f], 0) != reflen[f])
        unexpected_err("pwrite", f, errno);
    }
    fd_result(OP_CLOSE, close(fd) != 0, f);
  }
  return NULL;
}

static int run_threads(void *(*fn)(void *)) {
  pthread_t th[256];
  double t0 = now(), dt;
  long total = 0;
  if (nthreads < 1 || nthreads > 256) return 2;
  clock_gettime(CLOCK_MONOTONIC, &t_end);
  t_end.tv_sec += seconds;
  for (long t = 0; t < nthreads; t++)
    if (pthread_create(&th[t], NULL, fn, (void *)(t + 1)) != 0) {
      fprintf(stderr, "relstorm: pthread_create failed\n");
      return 2; /* exiting kills the threads already started */
    }
  for (int t = 0; t < nthreads; t++) pthread_join(th[t], NULL);
  dt = now() - t0;
  printf("relstorm:");
  for (int o = 0; o < OP_N; o++) {
    long c = atomic_load(&op_count[o]);
    total += c;
    if (c) printf(" %s=%ld", op_names[o], c);
  }
  printf("\nrelstorm: %d threads, %.1f s, %ld ops, %.0f ops/s, enoent=%ld eintr=%ld "
         "unexpected=%ld\n",
         nthreads, dt, total, (double)total / dt, atomic_load(&enoent_count),
         atomic_load(&eintr_count), atomic_load(&unexpected));
  return atomic_load(&unexpected) ? 1 : 0;
}

/* ---- deathwrite / verify ---- */

static uint64_t word_at(uint64_t off, uint64_t gen) {
  uint64_t z = off + gen * 0x9e3779b97f4a7c15ull + 0x66706970;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull; /* splitmix64 finaliser */
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void fill(unsigned char *b, uint64_t off, size_t len, uint64_t gen) {
  for (size_t i = 0; i < len; i += 8) {
    uint64_t w = word_at(off + i, gen);
    memcpy(b + i, &w, 8);
  }
}

#define CHUNK (1 << 20)

static int deathwrite(const char *path, long mib, const char *marker, const char *stop) {
  unsigned char *b = malloc(CHUNK);
  long after = 0, gen = 1;
  int fd, e = 0, mfd;
  if (!b) return 2;
  fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "relstorm: open %s: %s\n", path, strerror(errno));
    return 1;
  }
  for (long i = 0; i < mib; i++) {
    fill(b, (uint64_t)i * CHUNK, CHUNK, 0);
    if (pwrite(fd, b, CHUNK, (off_t)i * CHUNK) != CHUNK) {
      fprintf(stderr, "relstorm: pwrite before fsync: %s\n", strerror(errno));
      return 1;
    }
  }
  if (fsync(fd) != 0) {
    fprintf(stderr, "relstorm: fsync: %s\n", strerror(errno));
    return 1;
  }
  mfd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (mfd < 0) return 1;
  close(mfd);
  clock_gettime(CLOCK_MONOTONIC, &t_end);
  t_end.tv_sec += seconds;
  /* After the fsync: other generations, only beyond the synced range. */
  while (!expired() && access(stop, F_OK) != 0) {
    off_t off = (off_t)(mib + after % 32) * CHUNK;
    fill(b, (uint64_t)off, CHUNK, (uint64_t)gen);
    /* A server that dies mid-write can leave a short write; the rest of the
     * chunk then meets the real error. */
    for (size_t done = 0; done < CHUNK && !e;) {
      ssize_t n = pwrite(fd, b + done, CHUNK - done, off + (off_t)done);
      if (n > 0)
        done += (size_t)n;
      else
        e = n < 0 ? errno : EIO;
    }
    if (e) break;
    after++;
    if (after % 32 == 0) gen++;
  }
  printf("relstorm: deathwrite: %ld MiB synced, then %ld MiB written; ended by %s\n", mib,
         after, e ? strerror(e) : "stop/deadline");
  close(fd); /* may fail on a dead server: nothing to check there */
  free(b);
  return e == 0 || e == ENOTCONN || e == ECONNABORTED ? 0 : 1;
}

static int verify(const char *path, long mib) {
  unsigned char *b = malloc(CHUNK), *want = malloc(CHUNK);
  int fd = open(path, O_RDONLY | O_CLOEXEC), bad = 0;
  if (!b || !want) return 2;
  if (fd < 0) {
    fprintf(stderr, "relstorm: open %s: %s\n", path, strerror(errno));
    return 1;
  }
  for (long i = 0; i < mib && !bad; i++) {
    ssize_t n = pread(fd, b, CHUNK, (off_t)i * CHUNK);
    fill(want, (uint64_t)i * CHUNK, CHUNK, 0);
    if (n != CHUNK) {
      fprintf(stderr, "relstorm: verify: short read at MiB %ld: %zd (%s)\n", i, n,
              n < 0 ? strerror(errno) : "eof");
      bad = 1;
    } else if (memcmp(b, want, CHUNK) != 0) {
      size_t j = 0;
      while (b[j] == want[j]) j++;
      fprintf(stderr, "relstorm: verify: %s differs at byte %ld\n", path, i * CHUNK + (long)j);
      bad = 1;
    }
  }
  close(fd);
  if (!bad) printf("relstorm: verify: %ld MiB intact in %s\n", mib, path);
  free(b);
  free(want);
  return bad;
}

static void usage(void) {
  fprintf(stderr, "usage: relstorm stress|opens [--threads N] [--seconds S] [--files F] "
                  "[--allow-eintr] DIR\n"
                  "       relstorm deathwrite --synced-mib M --marker P --stop P "
                  "[--seconds S] FILE\n"
                  "       relstorm verify --synced-mib M FILE\n");
  exit(2);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"threads", required_argument, NULL, 't'},
                                       {"seconds", required_argument, NULL, 's'},
                                       {"files", required_argument, NULL, 'f'},
                                       {"allow-eintr", no_argument, NULL, 'e'},
                                       {"synced-mib", required_argument, NULL, 'm'},
                                       {"marker", required_argument, NULL, 'k'},
                                       {"stop", required_argument, NULL, 'x'},
                                       {NULL, 0, NULL, 0}};
  const char *mode, *marker = NULL, *stop = NULL;
  long mib = 0;
  int c;
  if (argc < 2) usage();
  mode = argv[1];
  optind = 2;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 't': nthreads = atoi(optarg); break;
    case 's': seconds = atoi(optarg); break;
    case 'f': nfiles = atoi(optarg); break;
    case 'e': allow_eintr = 1; break;
    case 'm': mib = atol(optarg); break;
    case 'k': marker = optarg; break;
    case 'x': stop = optarg; break;
    default: usage();
    }
  }
  if (optind != argc - 1 || nfiles < 1 || nfiles > MAX_FILES || seconds < 0) usage();
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(mode, "stress") == 0) {
    dir = argv[optind];
    return run_threads(stress_thread);
  }
  if (strcmp(mode, "opens") == 0) {
    char p[PATH_MAX];
    dir = argv[optind];
    for (int f = 0; f < nfiles; f++) {
      int fd;
      name_of(p, sizeof p, f);
      fd = open_retry(p, O_RDONLY);
      if (fd < 0 || (reflen[f] = pread(fd, ref[f], REF, 0)) <= 0) {
        fprintf(stderr, "relstorm: reference read of %s: %s\n", p, strerror(errno));
        return 1;
      }
      close(fd);
    }
    return run_threads(opens_thread);
  }
  if (strcmp(mode, "deathwrite") == 0) {
    if (mib < 1 || !marker || !stop) usage();
    return deathwrite(argv[optind], mib, marker, stop);
  }
  if (strcmp(mode, "verify") == 0) {
    if (mib < 1) usage();
    return verify(argv[optind], mib);
  }
  usage();
}
