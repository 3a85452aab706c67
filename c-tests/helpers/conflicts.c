/* conflicts: open patterns that mix access modes and truncation on one inode,
 * where a careless passthrough server turns a kernel refusal into EIO.
 *
 *   conflicts ro-then-rw FILE    keep an O_RDONLY open, then open O_RDWR and
 *                                O_WRONLY while it is open; write through them;
 *                                every fd must read the new bytes back
 *   conflicts check FILE         FILE holds what ro-then-rw wrote (run on the
 *                                backing file)
 *   conflicts trunc-storm [--procs N] [--iters N] FILE
 *                                N writer processes (O_WRONLY|O_TRUNC, write a
 *                                tagged record) and N reader processes
 *                                (O_RDONLY, read to EOF) interleaved; no syscall
 *                                may fail; every word read is 0 (a hole left by
 *                                a racing truncate) or a well-formed tag; then a
 *                                final record is written and read back exactly.
 * Exit 0 on success, 1 on any failure. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define LEN (64 * 1024)
#define MAGIC 0x46504951u /* "FPIQ" in the high half of every tag word */

static unsigned char pattern_byte(size_t i, unsigned gen) {
  return (unsigned char)(i * 7 + 3 + gen * 13);
}

static int check_fd(int fd, const char *what, unsigned gen) {
  static unsigned char buf[LEN];
  ssize_t n = pread(fd, buf, LEN, 0);
  if (n != LEN) {
    fprintf(stderr, "conflicts: %s: pread: %s (n=%zd)\n", what,
            n < 0 ? strerror(errno) : "short", n);
    return 1;
  }
  for (size_t i = 0; i < LEN; i++)
    if (buf[i] != pattern_byte(i, gen)) {
      fprintf(stderr, "conflicts: %s: byte %zu is %u, want %u\n", what, i, buf[i],
              pattern_byte(i, gen));
      return 1;
    }
  return 0;
}

static int write_gen(int fd, const char *what, unsigned gen, size_t from, size_t to) {
  static unsigned char buf[LEN];
  for (size_t i = 0; i < LEN; i++) buf[i] = pattern_byte(i, gen);
  if (pwrite(fd, buf + from, to - from, (off_t)from) != (ssize_t)(to - from)) {
    fprintf(stderr, "conflicts: %s: pwrite: %s\n", what, strerror(errno));
    return 1;
  }
  return 0;
}

static int xopen(const char *path, int flags, const char *what) {
  int fd = open(path, flags | O_CLOEXEC);
  if (fd < 0) fprintf(stderr, "conflicts: open %s (%s): %s\n", path, what, strerror(errno));
  return fd;
}

/* The first open decides what backing fd an inode gets (read-only here);
 * later opens need write access the backing fd does not have. */
static int ro_then_rw(const char *path) {
  int ro = xopen(path, O_RDONLY, "O_RDONLY"), rw = -1, wo = -1, bad = 0;
  char c;
  if (ro < 0) return 1;
  if (read(ro, &c, 1) < 0) {
    fprintf(stderr, "conflicts: read O_RDONLY: %s\n", strerror(errno));
    bad = 1;
  }
  rw = xopen(path, O_RDWR, "O_RDWR while O_RDONLY open");
  wo = xopen(path, O_WRONLY, "O_WRONLY while O_RDONLY and O_RDWR open");
  if (rw < 0 || wo < 0) bad = 1;
  /* first half through O_RDWR, second half through O_WRONLY */
  if (!bad) bad |= write_gen(rw, "O_RDWR", 1, 0, LEN / 2);
  if (!bad) bad |= write_gen(wo, "O_WRONLY", 1, LEN / 2, LEN);
  if (!bad && fsync(wo) != 0) {
    fprintf(stderr, "conflicts: fsync: %s\n", strerror(errno));
    bad = 1;
  }
  if (!bad) bad |= check_fd(rw, "read back via O_RDWR", 1);
  if (!bad) bad |= check_fd(ro, "read back via the first O_RDONLY", 1);
  if (wo >= 0 && close(wo) != 0) bad = 1;
  if (rw >= 0 && close(rw) != 0) bad = 1;
  if (close(ro) != 0) bad = 1;
  return bad;
}

static int check_file(const char *path) {
  int fd = xopen(path, O_RDONLY, "check"), bad;
  if (fd < 0) return 1;
  bad = check_fd(fd, path, 1);
  close(fd);
  return bad;
}

static uint64_t tag(unsigned w, unsigned i) {
  return ((uint64_t)MAGIC << 32) | ((uint64_t)w << 16) | (i & 0xffff);
}

static int writer(const char *path, unsigned w, int iters) {
  static uint64_t rec[LEN / 8];
  for (int i = 0; i < iters; i++) {
    int fd = xopen(path, O_WRONLY | O_TRUNC, "writer O_WRONLY|O_TRUNC");
    if (fd < 0) return 1;
    for (size_t k = 0; k < LEN / 8; k++) rec[k] = tag(w, (unsigned)i);
    if (write(fd, rec, LEN) != LEN) {
      fprintf(stderr, "conflicts: writer %u: write: %s\n", w, strerror(errno));
      close(fd);
      return 1;
    }
    if (close(fd) != 0) {
      fprintf(stderr, "conflicts: writer %u: close: %s\n", w, strerror(errno));
      return 1;
    }
  }
  return 0;
}

static int reader(const char *path, int iters) {
  static uint64_t buf[2 * LEN / 8];
  for (int i = 0; i < iters; i++) {
    int fd = xopen(path, O_RDONLY, "reader O_RDONLY");
    ssize_t n, total = 0;
    if (fd < 0) return 1;
    while ((n = read(fd, (char *)buf + total, sizeof buf - (size_t)total)) > 0)
      total += n;
    if (n < 0) {
      fprintf(stderr, "conflicts: reader: read: %s\n", strerror(errno));
      close(fd);
      return 1;
    }
    close(fd);
    for (ssize_t k = 0; k < total / 8; k++)
      if (buf[k] != 0 && (buf[k] >> 32) != MAGIC) {
        fprintf(stderr, "conflicts: reader: garbage word 0x%llx at %zd\n",
                (unsigned long long)buf[k], k * 8);
        return 1;
      }
  }
  return 0;
}

static int trunc_storm(const char *path, int procs, int iters) {
  pid_t pids[256];
  int n = 0, bad = 0, fd;
  for (int p = 0; p < 2 * procs; p++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      bad = 1;
      break;
    }
    if (pid == 0) _exit(p < procs ? writer(path, (unsigned)p, iters) : reader(path, iters));
    pids[n++] = pid;
  }
  for (int p = 0; p < n; p++) {
    int st;
    if (waitpid(pids[p], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) bad = 1;
  }
  if (bad) return 1;
  /* quiet now: the last record must read back exactly */
  fd = xopen(path, O_RDWR | O_TRUNC, "final O_RDWR|O_TRUNC");
  if (fd < 0) return 1;
  bad = write_gen(fd, "final", 1, 0, LEN) || check_fd(fd, "final read back", 1);
  if (close(fd) != 0) bad = 1;
  return bad;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {{"procs", required_argument, NULL, 'p'},
                                       {"iters", required_argument, NULL, 'i'},
                                       {NULL, 0, NULL, 0}};
  int procs = 4, iters = 100, c;
  const char *cmd;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (c == 'p') procs = atoi(optarg);
    else if (c == 'i') iters = atoi(optarg);
    else goto usage;
  }
  if (optind + 2 != argc || procs < 1 || procs > 128) goto usage;
  cmd = argv[optind];
  if (strcmp(cmd, "ro-then-rw") == 0) return ro_then_rw(argv[optind + 1]);
  if (strcmp(cmd, "check") == 0) return check_file(argv[optind + 1]);
  if (strcmp(cmd, "trunc-storm") == 0) return trunc_storm(argv[optind + 1], procs, iters);
usage:
  fprintf(stderr, "usage: conflicts ro-then-rw|check|trunc-storm [--procs N] [--iters N] FILE\n");
  return 2;
}
