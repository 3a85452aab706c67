/* Server-side I/O for the tests' in-process lowlevel servers: pread/pwrite on
 * fi->fh, counted, so a test can tell whether any I/O reached the server.
 * Include after <fuse_lowlevel.h>. */
#ifndef FPIO_TEST_SERVER_IO_H
#define FPIO_TEST_SERVER_IO_H

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

static inline void test_server_read(fuse_req_t req, size_t size, off_t off,
                                    const struct fuse_file_info *fi, _Atomic int *count) {
  char *buf = malloc(size ? size : 1);
  ssize_t n;
  (*count)++;
  if (!buf) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  n = pread((int)fi->fh, buf, size, off);
  if (n < 0)
    fuse_reply_err(req, errno);
  else
    fuse_reply_buf(req, buf, (size_t)n);
  free(buf);
}

static inline void test_server_write(fuse_req_t req, const char *buf, size_t size, off_t off,
                                     const struct fuse_file_info *fi, _Atomic int *count) {
  ssize_t n;
  (*count)++;
  n = pwrite((int)fi->fh, buf, size, off);
  if (n < 0)
    fuse_reply_err(req, errno);
  else
    fuse_reply_write(req, (size_t)n);
}

#endif
