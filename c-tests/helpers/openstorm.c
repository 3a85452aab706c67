/* openstorm: concurrent opens and releases of the same few files, in phases the
 * calling test can observe (counters) between:
 *
 *   openstorm [--threads N] [--iters N] --sync DIR FILE...
 *
 *   pre-read  each file is opened once, its first 4 KiB kept as the reference
 *   held      every thread opens every file (even threads O_RDONLY, odd O_RDWR)
 *             and keeps it open            -> DIR/held.ready, wait DIR/held.go
 *   anchored  main opens one O_RDONLY anchor per file (before the held opens
 *             are closed) and keeps it; the threads storm
 *             (N x iters open/pread/[pwrite]/close, mixed O_RDONLY and O_RDWR)
 *                                          -> DIR/anchored.ready, wait DIR/anchored.go
 *   free      anchors closed; the same storm again, so backing ids come and go
 *
 * Opens per run: F + N*F + F + 2*N*iters (F = number of files). Every read is
 * compared with the reference; O_RDWR opens write the reference bytes back, so
 * content never changes. Any failing syscall (EIO above all) -> exit 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REF 4096
#define MAX_FILES 64

static int nthreads = 16, iters = 200, nfiles;
static char **files;
static const char *syncdir;
static unsigned char ref[MAX_FILES][REF];
static ssize_t reflen[MAX_FILES];
static atomic_int errors;
static pthread_barrier_t barrier;

static void fail(const char *what, int file, int err) {
  if (atomic_fetch_add(&errors, 1) < 20) /* enough to diagnose, not a flood */
    fprintf(stderr, "openstorm: %s %s: %s\n", what, files[file], strerror(err));
}

/* One open/pread/[pwrite]/close round trip. */
static void round_trip(int file, int rw) {
  unsigned char buf[REF];
  int fd = open(files[file], (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  ssize_t n;
  if (fd < 0) {
    fail(rw ? "open O_RDWR" : "open O_RDONLY", file, errno);
    return;
  }
  n = pread(fd, buf, REF, 0);
  if (n < 0)
    fail("pread", file, errno);
  else if (n != reflen[file] || memcmp(buf, ref[file], (size_t)n) != 0)
    fail("pread (content differs)", file, EILSEQ);
  if (rw && pwrite(fd, ref[file], (size_t)reflen[file], 0) != reflen[file])
    fail("pwrite", file, errno);
  if (close(fd) != 0)
    fail("close", file, errno);
}

static void storm(long t) {
  unsigned seed = (unsigned)t * 2654435761u + 1;
  for (int i = 0; i < iters; i++) {
    seed = seed * 1103515245u + 12345u;
    round_trip((int)((seed >> 8) % (unsigned)nfiles), (int)((seed >> 20) & 1));
  }
}

static void *thread_main(void *arg) {
  long t = (long)arg;
  int fds[MAX_FILES];
  for (int f = 0; f < nfiles; f++) {
    fds[f] = open(files[f], ((t & 1) ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fds[f] < 0) fail("open (held)", f, errno);
  }
  pthread_barrier_wait(&barrier); /* all held */
  pthread_barrier_wait(&barrier); /* held.go seen */
  for (int f = 0; f < nfiles; f++)
    if (fds[f] >= 0 && close(fds[f]) != 0) fail("close (held)", f, errno);
  pthread_barrier_wait(&barrier); /* anchors open */
  storm(t);
  pthread_barrier_wait(&barrier); /* anchored storm done */
  pthread_barrier_wait(&barrier); /* anchors closed */
  storm(t);
  return NULL;
}

/* Tell the test a phase is reached and wait (bounded) for its go. */
static int phase(const char *name) {
  char p[PATH_MAX];
  int fd;
  snprintf(p, sizeof p, "%s/%s.ready", syncdir, name);
  fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    perror(p);
    return -1;
  }
  close(fd);
  snprintf(p, sizeof p, "%s/%s.go", syncdir, name);
  for (int i = 0; i < 6000; i++) { /* 60 s */
    if (access(p, F_OK) == 0) return 0;
    usleep(10000);
  }
  fprintf(stderr, "openstorm: no %s within 60 s\n", p);
  return -1;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"threads", required_argument, NULL, 't'},
                                       {"iters", required_argument, NULL, 'i'},
                                       {"sync", required_argument, NULL, 's'},
                                       {NULL, 0, NULL, 0}};
  int c, anchors[MAX_FILES], sync_failed = 0;
  pthread_t *th;

  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 't': nthreads = atoi(optarg); break;
    case 'i': iters = atoi(optarg); break;
    case 's': syncdir = optarg; break;
    default: goto usage;
    }
  }
  nfiles = argc - optind;
  files = argv + optind;
  if (syncdir == NULL || nfiles < 1 || nfiles > MAX_FILES || nthreads < 1 || iters < 0)
    goto usage;

  for (int f = 0; f < nfiles; f++) {
    int fd = open(files[f], O_RDONLY | O_CLOEXEC);
    if (fd < 0 || (reflen[f] = pread(fd, ref[f], REF, 0)) <= 0) {
      fprintf(stderr, "openstorm: pre-read %s: %s\n", files[f],
              fd < 0 ? strerror(errno) : "empty or unreadable");
      return 1;
    }
    close(fd);
  }

  pthread_barrier_init(&barrier, NULL, (unsigned)nthreads + 1);
  th = calloc((size_t)nthreads, sizeof *th);
  for (long t = 0; t < nthreads; t++)
    if (pthread_create(&th[t], NULL, thread_main, (void *)t) != 0) {
      fprintf(stderr, "openstorm: pthread_create failed\n");
      return 1;
    }
  /* A failed phase handshake still walks every barrier so threads finish;
   * the run then fails. */
  pthread_barrier_wait(&barrier);
  sync_failed |= phase("held");
  /* Anchors open while the held opens still are: the ids never drop. */
  for (int f = 0; f < nfiles; f++) {
    anchors[f] = open(files[f], O_RDONLY | O_CLOEXEC);
    if (anchors[f] < 0) fail("open (anchor)", f, errno);
  }
  pthread_barrier_wait(&barrier);
  pthread_barrier_wait(&barrier);
  pthread_barrier_wait(&barrier);
  sync_failed |= phase("anchored");
  for (int f = 0; f < nfiles; f++)
    if (anchors[f] >= 0 && close(anchors[f]) != 0) fail("close (anchor)", f, errno);
  pthread_barrier_wait(&barrier);
  for (long t = 0; t < nthreads; t++) pthread_join(th[t], NULL);
  free(th);
  pthread_barrier_destroy(&barrier);

  if (errors || sync_failed) {
    fprintf(stderr, "openstorm: %d errors%s\n", atomic_load(&errors),
            sync_failed ? ", phase handshake failed" : "");
    return 1;
  }
  printf("openstorm: %d threads x %d files held, 2 x %d x %d round trips, no errors\n",
         nthreads, nfiles, nthreads, iters);
  return 0;

usage:
  fprintf(stderr, "usage: openstorm [--threads N] [--iters N] --sync DIR FILE...\n");
  return 2;
}
