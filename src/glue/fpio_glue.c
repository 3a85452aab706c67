/* SPDX-License-Identifier: MIT
 *
 * The only code in fpio that sees libfuse's own headers. It is compiled by
 * build.rs against the libfuse that meson (or pkg-config) selected, so the
 * layouts of struct fuse_file_info / fuse_entry_param and the spelling of
 * fuse_session_custom_io() always match the libfuse we link: Rust never
 * mirrors a libfuse struct. Symbols are named fpioglue_* so the export map
 * (fpio_*) keeps them private.
 */
#define _GNU_SOURCE /* splice() */
#define FUSE_USE_VERSION 34
#include <fuse.h>
#include <fuse_lowlevel.h>

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
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
/* A request was spliced into libfuse's pipe: fpio cannot look at it. */
typedef void (*fpioglue_on_splice_fn)(int fd, void *userdata);
/* libfuse 3.17+ cloned the channel master_fd into clone_fd (-o clone_fd). */
typedef void (*fpioglue_on_clone_fn)(int master_fd, int clone_fd);

struct fpioglue_hooks {
	fpioglue_on_read_fn read;
	fpioglue_on_writev_fn writev;
	fpioglue_after_write_fn after_write;
	fpioglue_on_splice_fn spliced;
	fpioglue_on_clone_fn cloned;
};

/* Set once, before the first session's io is installed (fpio's hooks never
 * change), so readers need no synchronisation beyond that store. */
static struct fpioglue_hooks hooks;

static ssize_t glue_read(int fd, void *buf, size_t len, void *userdata)
{
	ssize_t n = read(fd, buf, len);

	if (n > 0) {
		int saved = errno;
		hooks.read(fd, buf, (size_t)n, userdata);
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

	if (!hooks.writev(fd, iov, count, userdata, out, sizeof(out), &out_len))
		return writev(fd, iov, count);
	one.iov_base = out;
	one.iov_len = out_len;
	n = writev(fd, &one, 1);
	saved = errno;
	hooks.after_write(fd, userdata, n < 0 ? -saved : n);
	errno = saved;
	if (n < 0)
		return n;
	/* libfuse only checks for errors; report the length it asked for. */
	for (i = 0; i < count; i++)
		total += (ssize_t)iov[i].iov_len;
	return total;
}

/* With splice hooks present libfuse keeps FUSE_CAP_SPLICE_* in conn->capable
 * (without them 3.14 refuses an init() that asks for splice). Data moves
 * exactly as without fpio; only the request bytes stay unseen. */
static ssize_t glue_splice_receive(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
				   unsigned int flags, void *userdata)
{
	ssize_t n = splice(fdin, offin, fdout, offout, len, flags);

	if (n > 0) {
		int saved = errno;
		hooks.spliced(fdin, userdata);
		errno = saved;
	}
	return n;
}

static ssize_t glue_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
				unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
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
	uint32_t cache_readdir;
};

/* What fpio needs from a struct fuse_entry_param. */
struct fpioglue_entry {
	uint64_t ino;
	uint64_t generation;
	double attr_timeout;
	double entry_timeout;
	struct stat attr;
};

#if FUSE_MAJOR_VERSION > 3 || (FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION >= 17)
#define GLUE_NATIVE_API 1
#else
#define GLUE_NATIVE_API 0
#endif

int fpioglue_session_fd(struct fuse_session *se)
{
	return fuse_session_fd(se);
}

#if GLUE_NATIVE_API
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
	hooks.cloned(master_fd, fd);
	return fd;
}
#endif

void fpioglue_set_hooks(const struct fpioglue_hooks *h)
{
	hooks = *h;
}

/* Returns 0, or -errno: libfuse 3.18.3+ built without -Denable-custom-io
 * refuses with -ENOTSUP (the caller then runs without it). */
int fpioglue_install_io(struct fuse_session *se)
{
	struct fuse_custom_io io;
	int fd = fuse_session_fd(se);

	if (fd < 0)
		return -ENOTCONN;
	memset(&io, 0, sizeof(io));
	io.read = glue_read;
	io.writev = glue_writev;
	io.splice_receive = glue_splice_receive;
	io.splice_send = glue_splice_send;
#if GLUE_NATIVE_API
	io.clone_fd = glue_clone_fd;
	return fuse_session_custom_io_317(se, &io, sizeof(io), fd);
#else
	return fuse_session_custom_io(se, &io, fd);
#endif
}

/* What fpio reads from the connection inside the server's init(). */
struct fpioglue_conn {
	uint32_t native_api;          /* libfuse negotiates passthrough itself (3.17+) */
	uint32_t capable_passthrough; /* native_api only */
	uint32_t capable_direct_io_allow_mmap;
	uint32_t capable_killpriv_v2;
	uint32_t want_writeback;
	uint32_t want_splice_read;
	uint32_t want_killpriv_v2;
	uint32_t proto_major, proto_minor;
	uint32_t capable_writeback;
};

/* What fpio wants changed; only set flags act. */
struct fpioglue_conn_change {
	uint32_t want_passthrough;
	uint32_t stack_depth;
	uint32_t want_direct_io_allow_mmap;
	uint32_t want_killpriv_v2;
	uint32_t drop_writeback;
	uint32_t drop_killpriv; /* v1: the kernel would leave write kills to the server */
	uint32_t drop_killpriv_v2;
	uint32_t drop_splice_read; /* fpio must read request headers itself */
};

#if GLUE_NATIVE_API
#define GLUE_WANTS(conn) ((conn)->want_ext | (conn)->want)
#else
#define GLUE_WANTS(conn) ((uint64_t)(conn)->want)
#endif

void fpioglue_conn_read(const struct fuse_conn_info *conn, struct fpioglue_conn *out)
{
	memset(out, 0, sizeof(*out));
	out->want_writeback = !!(GLUE_WANTS(conn) & FUSE_CAP_WRITEBACK_CACHE);
	out->want_splice_read = !!(GLUE_WANTS(conn) & FUSE_CAP_SPLICE_READ);
	out->proto_major = conn->proto_major;
	out->proto_minor = conn->proto_minor;
	out->capable_writeback = !!(conn->capable & FUSE_CAP_WRITEBACK_CACHE);
#if GLUE_NATIVE_API
	out->native_api = 1;
	out->capable_passthrough = !!(conn->capable_ext & FUSE_CAP_PASSTHROUGH);
	out->capable_direct_io_allow_mmap = !!(conn->capable_ext & FUSE_CAP_DIRECT_IO_ALLOW_MMAP);
	out->capable_killpriv_v2 = !!(conn->capable_ext & FUSE_CAP_HANDLE_KILLPRIV_V2);
	out->want_killpriv_v2 = !!(GLUE_WANTS(conn) & FUSE_CAP_HANDLE_KILLPRIV_V2);
#endif
}

/* Changes conn's wants without tripping libfuse 3.17+'s check that a server
 * changed only one of conn->want (old API) and conn->want_ext: both start out
 * equal in init(); where the server made them differ, fpio edits the one the
 * server set bits in, otherwise both. */
static void glue_want(struct fuse_conn_info *conn, uint64_t flag, int on)
{
#if GLUE_NATIVE_API
	uint32_t low_ext = (uint32_t)conn->want_ext;
	int edit_want = 1, edit_ext = 1;

	if (conn->want != low_ext) {
		if (conn->want & ~low_ext)
			edit_ext = 0;
		else
			edit_want = 0;
	}
	if (edit_want)
		conn->want = on ? conn->want | (uint32_t)flag : conn->want & ~(uint32_t)flag;
	if (edit_ext)
		conn->want_ext = on ? conn->want_ext | flag : conn->want_ext & ~flag;
#else
	conn->want = on ? conn->want | (unsigned)flag : conn->want & ~(unsigned)flag;
#endif
}

void fpioglue_conn_apply(struct fuse_conn_info *conn, const struct fpioglue_conn_change *c)
{
	if (c->drop_writeback)
		glue_want(conn, FUSE_CAP_WRITEBACK_CACHE, 0);
	if (c->drop_killpriv)
		glue_want(conn, FUSE_CAP_HANDLE_KILLPRIV, 0);
	if (c->drop_splice_read)
		glue_want(conn, FUSE_CAP_SPLICE_READ, 0);
#if GLUE_NATIVE_API
	if (c->drop_killpriv_v2)
		glue_want(conn, FUSE_CAP_HANDLE_KILLPRIV_V2, 0);
	if (c->want_passthrough) {
		/* conn counts the backing file's own depth (libfuse sends it + 1);
		 * a valid deeper depth the server chose itself is kept. */
		uint32_t depth = c->stack_depth - 1;

		glue_want(conn, FUSE_CAP_PASSTHROUGH, 1);
		if (conn->max_backing_stack_depth > depth && conn->max_backing_stack_depth <= 1)
			depth = conn->max_backing_stack_depth;
		conn->max_backing_stack_depth = depth;
	}
	if (c->want_direct_io_allow_mmap)
		glue_want(conn, FUSE_CAP_DIRECT_IO_ALLOW_MMAP, 1);
	if (c->want_killpriv_v2)
		glue_want(conn, FUSE_CAP_HANDLE_KILLPRIV_V2, 1);
#endif
}

/* libfuse 3.18+ can deliver requests over io_uring; an older library (or one
 * built without it) has no such function, so it is looked up at run time. */
typedef bool (*glue_req_is_uring_fn)(fuse_req_t req);
static glue_req_is_uring_fn glue_req_is_uring;
static pthread_once_t glue_uring_once = PTHREAD_ONCE_INIT;

static void glue_find_req_is_uring(void)
{
	glue_req_is_uring = (glue_req_is_uring_fn)dlsym(RTLD_DEFAULT, "fuse_req_is_uring");
}

int fpioglue_req_is_uring(fuse_req_t req)
{
	pthread_once(&glue_uring_once, glue_find_req_is_uring);
	return glue_req_is_uring != NULL && glue_req_is_uring(req);
}

int fpioglue_reply_open_plain(fuse_req_t req, const struct fuse_file_info *fi)
{
	return fuse_reply_open(req, fi);
}

int fpioglue_reply_create_plain(fuse_req_t req, const struct fuse_entry_param *e,
				const struct fuse_file_info *fi)
{
	return fuse_reply_create(req, e, fi);
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
	out->cache_readdir = fi->cache_readdir;
#if FUSE_MAJOR_VERSION > 3 || (FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION >= 15)
	out->parallel_direct_writes = fi->parallel_direct_writes;
#endif
#if FUSE_MAJOR_VERSION > 3 || (FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION >= 17)
	out->backing_id = fi->backing_id;
#endif
}

/* What an open of a high-level (fuse.h) server gets in its fuse_file_info
 * from fpio; libfuse's own reply carries it (backing_id: 3.17+). */
struct fpioglue_fi_set {
	int32_t backing_id;
	uint32_t direct_io;
	uint32_t keep_cache;
	uint32_t parallel_direct_writes;
};

void fpioglue_write_fi(struct fuse_file_info *fi, const struct fpioglue_fi_set *set)
{
	fi->direct_io = !!set->direct_io;
	fi->keep_cache = !!set->keep_cache;
#if FUSE_MAJOR_VERSION > 3 || (FUSE_MAJOR_VERSION == 3 && FUSE_MINOR_VERSION >= 15)
	fi->parallel_direct_writes = !!set->parallel_direct_writes;
#endif
#if GLUE_NATIVE_API
	fi->backing_id = set->backing_id;
#endif
}

/* High-level servers: the session of the struct fuse whose request (or
 * init()) the calling thread runs, or NULL. fpio calls it only once a
 * high-level server attached, so libfuse's context key exists. */
struct fuse_session *fpioglue_context_session(void)
{
	struct fuse_context *ctx = fuse_get_context();

	if (ctx == NULL || ctx->fuse == NULL)
		return NULL;
	return fuse_get_session(ctx->fuse);
}

/* The struct fuse_config options that set open flags after the server's
 * open() has returned (fuse_lib_open): fpio takes them over where
 * passthrough can be live, since the kernel refuses FOPEN_KEEP_CACHE with
 * FOPEN_PASSTHROUGH, and applies them to the opens that do not pass through. */
struct fpioglue_cfg {
	uint32_t kernel_cache;
	uint32_t auto_cache;
	uint32_t direct_io;
};

void fpioglue_cfg_take(struct fuse_config *cfg, struct fpioglue_cfg *out, int clear)
{
	out->kernel_cache = !!cfg->kernel_cache;
	out->auto_cache = !!cfg->auto_cache;
	out->direct_io = !!cfg->direct_io;
	if (clear) {
		cfg->kernel_cache = 0;
		cfg->auto_cache = 0;
		cfg->direct_io = 0;
	}
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
	unsigned major = 0, minor = 0, patch = 0;
	const char *v = fuse_pkgversion();

	if (v == NULL || sscanf(v, "%u.%u.%u", &major, &minor, &patch) < 2)
		return 0;
	return major * 10000 + minor * 100 + patch;
}
