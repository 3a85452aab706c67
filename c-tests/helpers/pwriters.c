/* pwriters: N threads pwrite disjoint, interleaved chunks of ONE file (chunk k
 * belongs to thread k % N, each thread on its own fd), then every byte is
 * verified. Each 8-byte word holds a value derived from its offset, so a
 * misplaced, torn or lost chunk is caught.
 *
 *   pwriters [--threads N] [--size BYTES] [--chunk BYTES] [--direct] [--write-only] FILE
 *   pwriters --verify-only [--size BYTES] [--direct] FILE
 *
 * --write-only: no verification after the writes (the caller verifies with
 * --verify-only once it knows the writers' opens are gone).
 * --direct: O_DIRECT with page-aligned buffers (size and chunk must be
 * multiples of 4096). Exit 0 when every byte matches, 1 otherwise. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ALIGN 4096

static const char *path;
static int nthreads = 8, direct;
static uint64_t size = 64ull << 20, chunk = 256 << 10;

static uint64_t word_at(uint64_t off) {
  return (off * 0x9e3779b97f4a7c15ull) ^ 0x6670696f66706930ull;
}

static void fill(unsigned char *buf, uint64_t off, uint64_t len) {
  for (uint64_t i = 0; i < len; i += 8) {
    uint64_t w = word_at(off + i);
    memcpy(buf + i, &w, 8);
  }
}

static void *xalloc(uint64_t len) {
  void *p = NULL;
  if (posix_memalign(&p, ALIGN, len) != 0) {
    perror("posix_memalign");
    exit(1);
  }
  return p;
}

static int open_flags(int base) { return base | O_CLOEXEC | (direct ? O_DIRECT : 0); }

static void *writer(void *arg) {
  long t = (long)arg;
  unsigned char *buf = xalloc(chunk);
  int fd = open(path, open_flags(O_WRONLY));
  long failed = 0;
  if (fd < 0) {
    fprintf(stderr, "pwriters: thread %ld: open %s: %s\n", t, path, strerror(errno));
    free(buf);
    return (void *)1;
  }
  for (uint64_t k = (uint64_t)t; k * chunk < size; k += (uint64_t)nthreads) {
    uint64_t off = k * chunk;
    ssize_t n;
    fill(buf, off, chunk);
    n = pwrite(fd, buf, chunk, (off_t)off);
    if (n != (ssize_t)chunk) {
      fprintf(stderr, "pwriters: thread %ld: pwrite at %llu: %s (n=%zd)\n", t,
              (unsigned long long)off, n < 0 ? strerror(errno) : "short write", n);
      failed = 1;
      break;
    }
  }
  if (close(fd) != 0) {
    fprintf(stderr, "pwriters: thread %ld: close: %s\n", t, strerror(errno));
    failed = 1;
  }
  free(buf);
  return (void *)failed;
}

static int verify(void) {
  unsigned char *got = xalloc(chunk), *want = xalloc(chunk);
  struct stat st;
  int fd = open(path, open_flags(O_RDONLY)), bad = 0;
  if (fd < 0) {
    fprintf(stderr, "pwriters: verify: open %s: %s\n", path, strerror(errno));
    free(got);
    free(want);
    return 1;
  }
  if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != size) {
    fprintf(stderr, "pwriters: verify: %s has size %lld, want %llu\n", path,
            (long long)st.st_size, (unsigned long long)size);
    bad = 1;
  }
  for (uint64_t off = 0; off < size && !bad; off += chunk) {
    ssize_t n = pread(fd, got, chunk, (off_t)off);
    if (n != (ssize_t)chunk) {
      fprintf(stderr, "pwriters: verify: pread at %llu: %s (n=%zd)\n",
              (unsigned long long)off, n < 0 ? strerror(errno) : "short read", n);
      bad = 1;
      break;
    }
    fill(want, off, chunk);
    if (memcmp(got, want, chunk) != 0) {
      uint64_t i = 0;
      while (got[i] == want[i]) i++;
      fprintf(stderr, "pwriters: verify: %s: first bad byte at offset %llu\n",
              path, (unsigned long long)(off + i));
      bad = 1;
    }
  }
  close(fd);
  free(got);
  free(want);
  return bad;
}

static void usage(void) {
  fprintf(stderr, "usage: pwriters [--threads N] [--size BYTES] [--chunk BYTES] "
                  "[--direct] [--write-only | --verify-only] FILE\n");
  exit(2);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"threads", required_argument, NULL, 't'}, {"size", required_argument, NULL, 's'},
      {"chunk", required_argument, NULL, 'c'},   {"direct", no_argument, NULL, 'd'},
      {"verify-only", no_argument, NULL, 'v'},   {"write-only", no_argument, NULL, 'w'},
      {NULL, 0, NULL, 0}};
  int verify_only = 0, write_only = 0, c, fd, failed = 0;
  struct timespec t0, t1;
  pthread_t *th;

  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 't': nthreads = atoi(optarg); break;
    case 's': size = strtoull(optarg, NULL, 0); break;
    case 'c': chunk = strtoull(optarg, NULL, 0); break;
    case 'd': direct = 1; break;
    case 'v': verify_only = 1; break;
    case 'w': write_only = 1; break;
    default: usage();
    }
  }
  if (optind + 1 != argc || nthreads < 1 || chunk == 0 || chunk % ALIGN ||
      size % chunk || (verify_only && write_only))
    usage();
  path = argv[optind];
  if (verify_only) return verify();

  /* Full size up front, so the writers never extend the file. */
  fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || ftruncate(fd, (off_t)size) != 0 || close(fd) != 0) {
    fprintf(stderr, "pwriters: create %s: %s\n", path, strerror(errno));
    return 1;
  }
  th = calloc((size_t)nthreads, sizeof *th);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long t = 0; t < nthreads; t++)
    if (pthread_create(&th[t], NULL, writer, (void *)t) != 0) {
      fprintf(stderr, "pwriters: pthread_create failed\n");
      return 1;
    }
  for (long t = 0; t < nthreads; t++) {
    void *r;
    pthread_join(th[t], &r);
    failed |= r != NULL;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  free(th);
  if (failed) return 1;
  printf("pwriters: %d threads wrote %llu MiB%s in %.3f s\n", nthreads,
         (unsigned long long)(size >> 20), direct ? " (O_DIRECT)" : "",
         (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
  return write_only ? 0 : verify();
}
