/* SPDX-License-Identifier: MIT
 *
 * The only code in fpio that sees libfuse's own headers. It is compiled by
 * build.rs against the libfuse that meson (or pkg-config) selected, so the
 * layouts of struct fuse_file_info / fuse_entry_param and the spelling of
 * fuse_session_custom_io() always match the libfuse we link: Rust never
 * mirrors a libfuse struct. Symbols are named fpioglue_* so the export map
 * (fpio_*) keeps them private.
 */
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

/* fpio's hooks (Rust). They make no system call that is a cancellation
 * point: libfuse's multi-threaded loop cancels idle workers with
 * pthread_cancel(), whose forced unwind must only cross C frames. So the
 * read() and writev() below are the only cancellation points, as in
 * libfuse's own io. */
typedef void (*fpioglue_on_read_fn)(int fd, const void *buf, size_t len, void *userdata);
/* Returns 1 and fills out[0..*out_len) with a replacement message (the
 * patched INIT reply), or 0 to send the message as it is. */
typedef int (*fpioglue_on_writev_fn)(int fd, const struct iovec *iov, int count, void *userdata,
				     unsigned char *out, size_t out_cap, size_t *out_len);
/* Told what became of a replacement message: bytes written, or -errno. */
typedef void (*fpioglue_after_write_fn)(int fd, void *userdata, ssize_t res);

static fpioglue_on_read_fn hook_read;
static fpioglue_on_writev_fn hook_writev;
static fpioglue_after_write_fn hook_after_write;

static ssize_t glue_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);

	if (n > 0) {
		int saved = errno;
		hook_read(fd, buf, (size_t)n, userdata);
		errno = saved;
	}
	return n;
}

static ssize_t glue_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	unsigned char out[256];
	size_t out_len = 0;
	struct iovec one;
	ssize_t n, total = 0;
	int i, saved;

	if (!hook_writev(fd, iov, count, userdata, out, sizeof(out), &out_len))
		return writev(fd, iov, count);
	one.iov_base = out;
	one.iov_len = out_len;
	n = writev(fd, &one, 1);
	saved = errno;
	hook_after_write(fd, userdata, n < 0 ? -saved : n);
	errno = saved;
	if (n < 0)
		return n;
	/* libfuse only checks for errors; report the length it asked for. */
	for (i = 0; i < count; i++)
		total += (ssize_t)iov[i].iov_len;
	return total;
}

/* What fpio needs from a struct fuse_file_info, flattened. */
struct fpioglue_fi {
	uint64_t fh;
	int32_t flags;
	int32_t backing_id; /* 3.17+: fi->backing_id set by the server; 0 otherwise */
	uint32_t direct_io;
	uint32_t keep_cache;
	uint32_t nonseekable;
	uint32_t noflush;
	uint32_t parallel_direct_writes;
};

/* What fpio needs from a struct fuse_entry_param. */
struct fpioglue_entry {
	uint64_t ino;
	uint64_t generation;
	double attr_timeout;
	double entry_timeout;
	struct stat attr;
};

int fpioglue_session_fd(struct fuse_session *se)
{
	return fuse_session_fd(se);
}

#if FUSE_MAJOR_VERSION > 3 || (FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION >= 17)
/* libfuse 3.17 clones channels (-o clone_fd) only through the custom io's
 * own callback; without one it silently runs all workers on one fd. */
static int glue_clone_fd(int master_fd)
{
	uint32_t master = (uint32_t)master_fd;
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -1;
	/* FUSE_DEV_IOC_CLONE = _IOR(229, 0, uint32_t) */
	if (ioctl(fd, _IOR(229, 0, uint32_t), &master) < 0) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}
#endif

int fpioglue_install_io(struct fuse_session *se, fpioglue_on_read_fn rd, fpioglue_on_writev_fn wv,
			fpioglue_after_write_fn aw)
{
	struct fuse_custom_io io;
	int fd = fuse_session_fd(se);

	if (fd < 0)
		return -ENOTCONN;
	/* The same three hooks serve every session; they find theirs by fd. */
	hook_read = rd;
	hook_writev = wv;
	hook_after_write = aw;
	/* splice_* stay NULL: libfuse then never splices, so every request and
	 * reply passes through rd/wv, where INIT is patched and requests counted. */
	memset(&io, 0, sizeof(io));
	io.read = glue_read;
	io.writev = glue_writev;
#if FUSE_MAJOR_VERSION > 3 || (FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION >= 17)
	io.clone_fd = glue_clone_fd;
	return fuse_session_custom_io_317(se, &io, sizeof(io), fd);
#else
	return fuse_session_custom_io(se, &io, fd);
#endif
}

void fpioglue_read_fi(const struct fuse_file_info *fi, struct fpioglue_fi *out)
{
	memset(out, 0, sizeof(*out));
	out->fh = fi->fh;
	out->flags = fi->flags;
	out->direct_io = fi->direct_io;
	out->keep_cache = fi->keep_cache;
	out->nonseekable = fi->nonseekable;
	out->noflush = fi->noflush;
#if FUSE_MAJOR_VERSION > 3 || (FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION >= 15)
	out->parallel_direct_writes = fi->parallel_direct_writes;
#endif
#if FUSE_MAJOR_VERSION > 3 || (FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION >= 17)
	out->backing_id = fi->backing_id;
#endif
}

void fpioglue_read_entry(const struct fuse_entry_param *e, struct fpioglue_entry *out)
{
	out->ino = e->ino;
	out->generation = e->generation;
	out->attr_timeout = e->attr_timeout;
	out->entry_timeout = e->entry_timeout;
	out->attr = e->attr;
}

int fpioglue_reply_buf(fuse_req_t req, const void *buf, size_t len)
{
	return fuse_reply_buf(req, buf, len);
}

int fpioglue_reply_err(fuse_req_t req, int err)
{
	return fuse_reply_err(req, err);
}

uint32_t fpioglue_version_built(void)
{
	return FUSE_MAJOR_VERSION * 100 + FUSE_MINOR_VERSION;
}

/* fuse_version()'s encoding changed across releases; the package version
 * string has not. */
uint32_t fpioglue_version_runtime(void)
{
	unsigned major = 0, minor = 0;
	const char *v = fuse_pkgversion();

	if (v == NULL || sscanf(v, "%u.%u", &major, &minor) != 2)
		return 0;
	return major * 100 + minor;
}
