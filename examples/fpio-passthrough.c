/* fpio-passthrough: mirror a directory through FUSE, with kernel passthrough via fpio.
 *
 *   fpio-passthrough [-f] [--mode=passthrough|direct|cached] [--threads=N]
 *                    [--no-passthrough] [--killpriv-v2] [--writeback] [--no-fpio]
 *                    [--counters-file=PATH] [--timeout=SEC]
 *                    [-o opts] SOURCE MOUNTPOINT
 *
 * A plain libfuse lowlevel server; everything not marked "fpio:" is what any mirroring
 * server does. The six fpio calls:
 *   fpio_session_new()   after fuse_session_mount(): attach to the session
 *   fpio_session_init()  at the end of init()
 *   fpio_reply_open()    instead of fuse_reply_open()
 *   fpio_reply_create()  instead of fuse_reply_create()
 *   fpio_release()       in release, before closing the fd
 *   fpio_session_free()  at the end
 * With --killpriv-v2 the session negotiates KILLPRIV_V2 where fpio can (no GETXATTR
 * round trip per passthrough write), and fpio_request_kills_suidgid() tells write,
 * setattr and O_TRUNC opens when to clear set-uid.
 *
 * Modes: passthrough (default) hands each open's fd to the kernel, so reads and writes of
 * regular files never reach this process; direct and cached serve the I/O here with
 * pread/pwrite (direct bypasses the page cache, cached uses it). SIGUSR1 rewrites the
 * --counters-file.
 */

/* 3.12 is the oldest API level with fuse_loop_cfg_set_max_threads(); it builds against
 * libfuse 3.14 and 3.17 alike. */
#define FUSE_USE_VERSION 312
#define _GNU_SOURCE

#include <fuse_lowlevel.h>
#include <fpio.h>

#include "counters-file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

enum io_mode { MODE_PASSTHROUGH, MODE_DIRECT, MODE_CACHED };

/* One per source inode the kernel knows about. fuse_ino_t is a pointer to it. */
struct inode {
	int fd; /* O_PATH */
	dev_t dev;
	ino_t ino;
	uint64_t nlookup; /* guarded by fs.lock */
	struct inode *next; /* hash chain */
};

static struct {
	struct fuse_session *se;
	struct fpio_session *fpio;
	enum io_mode mode;
	double timeout;
	bool as_caller; /* running as root: create nodes with the caller's ids */
	bool writeback; /* ask for the writeback cache in init() */
	bool splice;    /* ask for splice in init(), unchecked, as many servers do */

	struct inode root;
	pthread_mutex_t lock; /* the inode table below and every nlookup */
	struct inode **buckets;
	size_t nbuckets, count;

	/* Requests that reached this server's own handlers, whatever the transport. */
	atomic_ullong served_read, served_write, served_getxattr;

	struct counters_file counters;
	atomic_bool counters_written;
} fs = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
};

/* ---- inode table, keyed by (st_dev, st_ino) so a file keeps its fuse_ino_t ---- */

static struct inode *inode_of(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &fs.root : (struct inode *)(uintptr_t)ino;
}

static struct inode **bucket(struct inode **buckets, size_t n, dev_t dev, ino_t ino)
{
	uint64_t h = ((uint64_t)ino * 0x9e3779b97f4a7c15ull) ^ (uint64_t)dev;
	return &buckets[(h >> 17) & (n - 1)];
}

/* Called with fs.lock held. On allocation failure the old table just gets fuller. */
static void table_grow(void)
{
	size_t n = fs.nbuckets * 2;
	struct inode **b = calloc(n, sizeof(*b));
	if (!b)
		return;
	for (size_t i = 0; i < fs.nbuckets; i++) {
		for (struct inode *in = fs.buckets[i], *next; in; in = next) {
			struct inode **slot = bucket(b, n, in->dev, in->ino);
			next = in->next;
			in->next = *slot;
			*slot = in;
		}
	}
	free(fs.buckets);
	fs.buckets = b;
	fs.nbuckets = n;
}

/* Counts one lookup of the file behind fd (an O_PATH fd, consumed: it becomes the
 * inode's fd, or is closed if the inode is already known). NULL: out of memory. */
static struct inode *inode_get(int fd, const struct stat *st)
{
	pthread_mutex_lock(&fs.lock);
	struct inode **slot = bucket(fs.buckets, fs.nbuckets, st->st_dev, st->st_ino);
	struct inode *in = *slot;
	while (in && (in->dev != st->st_dev || in->ino != st->st_ino))
		in = in->next;
	if (in) {
		in->nlookup++;
		pthread_mutex_unlock(&fs.lock);
		close(fd);
		return in;
	}
	in = calloc(1, sizeof(*in));
	if (in) {
		*in = (struct inode){ .fd = fd, .dev = st->st_dev, .ino = st->st_ino,
				      .nlookup = 1, .next = *slot };
		*slot = in;
		if (++fs.count > 2 * fs.nbuckets)
			table_grow();
	}
	pthread_mutex_unlock(&fs.lock);
	if (!in)
		close(fd);
	return in;
}

/* Drops n lookups; the inode goes away with the last. (The root starts with one
 * lookup of its own that is never dropped.) */
static void inode_unref(struct inode *in, uint64_t n)
{
	pthread_mutex_lock(&fs.lock);
	in->nlookup -= n;
	bool gone = in->nlookup == 0;
	if (gone) {
		struct inode **p = bucket(fs.buckets, fs.nbuckets, in->dev, in->ino);
		while (*p != in)
			p = &(*p)->next;
		*p = in->next;
		fs.count--;
	}
	pthread_mutex_unlock(&fs.lock);
	if (gone) {
		close(in->fd);
		free(in);
	}
}

static void table_free(void)
{
	for (size_t i = 0; i < fs.nbuckets; i++) {
		for (struct inode *in = fs.buckets[i], *next; in; in = next) {
			next = in->next;
			close(in->fd);
			if (in != &fs.root)
				free(in);
		}
	}
	free(fs.buckets);
}

/* O_PATH fds cannot be read, chmod'ed or have xattrs; their /proc/self/fd link can. */
#define PROC_PATH_MAX 32
static const char *proc_path(char buf[PROC_PATH_MAX], int fd)
{
	snprintf(buf, PROC_PATH_MAX, "/proc/self/fd/%d", fd);
	return buf;
}

/* ---- small helpers shared by the handlers ---- */

static void reply_result(fuse_req_t req, int res)
{
	fuse_reply_err(req, res < 0 ? errno : 0);
}

/* Fills e for parent/name and counts the lookup. Returns 0 or an errno. */
static int do_lookup(fuse_ino_t parent, const char *name, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->attr_timeout = e->entry_timeout = fs.timeout;
	int fd = openat(inode_of(parent)->fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno;
	if (fstatat(fd, "", &e->attr, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0) {
		int err = errno;
		close(fd);
		return err;
	}
	struct inode *in = inode_get(fd, &e->attr);
	if (!in)
		return ENOMEM;
	e->ino = (uintptr_t)in;
	return 0;
}

/* Answers a lookup-like request (lookup, mkdir, link, ...) once the node exists. */
static void reply_entry(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	int err = do_lookup(parent, name, &e);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_entry(req, &e);
}

/* New nodes belong to the caller, not to a root server. fsuid/fsgid are per thread.
 * (Supplementary groups are not switched; mount with default_permissions so the kernel
 * does the access checks.) */
static void become_caller(fuse_req_t req)
{
	if (fs.as_caller) {
		const struct fuse_ctx *ctx = fuse_req_ctx(req);
		setfsgid(ctx->gid);
		setfsuid(ctx->uid);
	}
}

static void become_server(void)
{
	if (fs.as_caller) {
		setfsuid(0);
		setfsgid(0);
	}
}

/* Flags for the server's own open of a file. Never O_DIRECT: our pread/pwrite buffers
 * are not aligned, and passthrough I/O uses the caller's open flags, not this fd's.
 * O_NOFOLLOW would refuse the /proc/self/fd link. */
static int server_open_flags(int flags)
{
	return (flags & ~(O_NOFOLLOW | O_DIRECT)) | O_CLOEXEC;
}

/* The io mode of every open this server serves itself (and of passthrough opens fpio
 * cannot pass through). */
static void set_io_mode(struct fuse_file_info *fi)
{
	fi->direct_io = fs.mode != MODE_CACHED; /* fpio adds PARALLEL_DIRECT_WRITES */
	fi->keep_cache = 0;
}

/* What to hand fpio as the backing file: the open fd, or -1 to decline passthrough. */
static int backing_fd(int fd)
{
	return fs.mode == MODE_PASSTHROUGH ? fd : -1;
}

/* Clears S_ISUID, and S_ISGID with S_IXGRP, as the kernel does when a user without
 * CAP_FSETID writes or truncates: this (root) server holds CAP_FSETID, so the backing fs
 * keeps the bits on its own writes. fd may be the inode's O_PATH fd. */
static void kill_suid(fuse_ino_t ino, int fd)
{
	struct stat st;
	char path[PROC_PATH_MAX];
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return;
	mode_t kill = st.st_mode & S_ISUID;
	if ((st.st_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		kill |= S_ISGID;
	if (kill && chmod(proc_path(path, fd), st.st_mode & 07777 & ~kill) == 0)
		fuse_lowlevel_notify_inval_inode(fs.se, ino, -1, 0); /* its cached mode is stale */
}

/* ---- counters file ---- */

static int own_counter_lines(int fd)
{
	return dprintf(fd, "server_read %llu\nserver_write %llu\nserver_getxattr %llu\n",
		       atomic_load(&fs.served_read), atomic_load(&fs.served_write),
		       atomic_load(&fs.served_getxattr));
}

/* Once INIT is answered (any later request proves it), record the negotiated status. */
static void counters_after_init(void)
{
	if (fs.counters.path && !atomic_load(&fs.counters_written) &&
	    !atomic_exchange(&fs.counters_written, true))
		counters_file_write(&fs.counters);
}

/* ---- the filesystem ---- */

static void fs_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	counters_after_init();
	reply_entry(req, parent, name);
}

static void fs_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	inode_unref(inode_of(ino), nlookup);
	fuse_reply_none(req);
}

static void fs_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		inode_unref(inode_of(forgets[i].ino), forgets[i].nlookup);
	fuse_reply_none(req);
}

static void fs_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	counters_after_init();
	struct stat st;
	if (fstatat(inode_of(ino)->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_attr(req, &st, fs.timeout);
}

static void fs_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
		       struct fuse_file_info *fi)
{
	struct inode *in = inode_of(ino);
	char path[PROC_PATH_MAX];
	proc_path(path, in->fd);
	int fd = fi ? (int)fi->fh : -1;
	int res = 0;

	if (valid & FUSE_SET_ATTR_MODE)
		res = fi ? fchmod(fd, attr->st_mode) : chmod(path, attr->st_mode);
	if (!res && (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
		uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
		res = fchownat(in->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
	}
	if (!res && (valid & FUSE_SET_ATTR_SIZE))
		res = fi ? ftruncate(fd, attr->st_size) : truncate(path, attr->st_size);
	if (!res && (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
		struct timespec tv[2] = { { .tv_nsec = UTIME_OMIT }, { .tv_nsec = UTIME_OMIT } };
		if (valid & FUSE_SET_ATTR_ATIME_NOW)
			tv[0].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_ATIME)
			tv[0] = attr->st_atim;
		if (valid & FUSE_SET_ATTR_MTIME_NOW)
			tv[1].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_MTIME)
			tv[1] = attr->st_mtim;
		res = fi ? futimens(fd, tv) : utimensat(AT_FDCWD, path, tv, 0);
	}
	if (res < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	/* fpio: with KILLPRIV_V2 the kernel asks us here to clear set-uid/set-gid after a
	 * truncate or chown by an unprivileged user, or for a passthrough write. */
	if (fpio_request_kills_suidgid())
		kill_suid(ino, fi ? fd : in->fd);
	fs_getattr(req, ino, fi);
}

static void fs_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	ssize_t n = readlinkat(inode_of(ino)->fd, "", buf, sizeof(buf));
	if (n < 0)
		fuse_reply_err(req, errno);
	else if ((size_t)n == sizeof(buf))
		fuse_reply_err(req, ENAMETOOLONG);
	else {
		buf[n] = '\0';
		fuse_reply_readlink(req, buf);
	}
}

/* mknod, mkdir and symlink ran as the caller (res is their result); answer with the entry. */
static void reply_made(fuse_req_t req, fuse_ino_t parent, const char *name, int res)
{
	int err = res < 0 ? errno : 0;
	become_server();
	if (err)
		fuse_reply_err(req, err);
	else
		reply_entry(req, parent, name);
}

static void fs_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	become_caller(req);
	reply_made(req, parent, name, mknodat(inode_of(parent)->fd, name, mode, rdev));
}

static void fs_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	become_caller(req);
	reply_made(req, parent, name, mkdirat(inode_of(parent)->fd, name, mode));
}

static void fs_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	become_caller(req);
	reply_made(req, parent, name, symlinkat(link, inode_of(parent)->fd, name));
}

static void fs_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	char path[PROC_PATH_MAX];
	if (linkat(AT_FDCWD, proc_path(path, inode_of(ino)->fd), inode_of(parent)->fd, name,
		   AT_SYMLINK_FOLLOW) < 0)
		fuse_reply_err(req, errno);
	else
		reply_entry(req, parent, name);
}

static void fs_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	reply_result(req, unlinkat(inode_of(parent)->fd, name, 0));
}

static void fs_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	reply_result(req, unlinkat(inode_of(parent)->fd, name, AT_REMOVEDIR));
}

static void fs_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	reply_result(req, renameat2(inode_of(parent)->fd, name, inode_of(newparent)->fd,
				    newname, flags));
}

static void fs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	char path[PROC_PATH_MAX];
	int flags = server_open_flags(fi->flags) & ~(O_CREAT | O_EXCL);
	int fd = open(proc_path(path, inode_of(ino)->fd), flags);
	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	if ((fi->flags & O_TRUNC) && fpio_request_kills_suidgid())
		kill_suid(ino, fd); /* fpio: see fs_setattr */
	fi->fh = fd;
	set_io_mode(fi);
	/* fpio: replies like fuse_reply_open(), with the fd as passthrough backing file when
	 * the kernel allows it (else exactly as fuse_reply_open(req, fi)). It always answers
	 * req; on failure the open did not happen, so no release will follow. */
	if (fpio_reply_open(fs.fpio, req, ino, backing_fd(fd), fi, NULL) < 0)
		close(fd);
}

static void fs_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	become_caller(req);
	int fd = openat(inode_of(parent)->fd, name, server_open_flags(fi->flags) | O_CREAT, mode);
	int err = fd < 0 ? errno : 0;
	become_server();
	struct fuse_entry_param e;
	if (!err)
		err = do_lookup(parent, name, &e);
	if (err) {
		if (fd >= 0)
			close(fd);
		fuse_reply_err(req, err);
		return;
	}
	if ((fi->flags & O_TRUNC) && fpio_request_kills_suidgid())
		kill_suid(e.ino, fd); /* fpio: see fs_setattr */
	fi->fh = fd;
	set_io_mode(fi);
	/* fpio: fuse_reply_create() with passthrough, as in fs_open. On failure the kernel
	 * got neither the entry nor the open. */
	if (fpio_reply_create(fs.fpio, req, &e, backing_fd(fd), fi, NULL) < 0) {
		inode_unref(inode_of(e.ino), 1);
		close(fd);
	}
}

static void fs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)ino;
	atomic_fetch_add_explicit(&fs.served_read, 1, memory_order_relaxed);
	/* libfuse preads the fd (handling EOF and short reads) straight into the reply. */
	struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
	buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	buf.buf[0].fd = (int)fi->fh;
	buf.buf[0].pos = off;
	fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void fs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	int fd = (int)fi->fh;
	atomic_fetch_add_explicit(&fs.served_write, 1, memory_order_relaxed);
	/* The kernel sends no SETATTR to clear set-uid before a direct-io write, and with
	 * KILLPRIV_V2 it marks the request instead, so the server clears the bits. */
	if (fuse_req_ctx(req)->uid != 0 || fpio_request_kills_suidgid())
		kill_suid(ino, fd);
	size_t done = 0;
	while (done < size) {
		ssize_t n = pwrite(fd, buf + done, size - done, off + (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && done == 0) {
			fuse_reply_err(req, errno);
			return;
		}
		if (n <= 0)
			break; /* report the part that was written */
		done += (size_t)n;
	}
	fuse_reply_write(req, done);
}

static void fs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	/* Closing a duplicate reports delayed write errors (e.g. NFS) without losing the fd. */
	reply_result(req, close(dup((int)fi->fh)));
}

static void fs_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	int fd = (int)fi->fh;
	reply_result(req, datasync ? fdatasync(fd) : fsync(fd));
}

static void fs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* fpio: drop this open's share of the inode's backing id while the fd still exists. */
	fpio_release(fs.fpio, ino, fi);
	close((int)fi->fh);
	fuse_reply_err(req, 0);
}

struct dir_handle {
	DIR *dp;
	off_t offset; /* where dp stands */
	struct dirent *entry; /* read from dp but not yet sent */
};

static void fs_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dir_handle *d = calloc(1, sizeof(*d));
	int fd = openat(inode_of(ino)->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int err = !d ? ENOMEM : fd < 0 ? errno : 0;
	if (!err && !(d->dp = fdopendir(fd)))
		err = errno;
	if (err) {
		if (fd >= 0)
			close(fd);
		free(d);
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = (uintptr_t)d;
	fuse_reply_open(req, fi);
}

static void fs_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)ino;
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;
	char *buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (off != d->offset) {
		seekdir(d->dp, off);
		d->offset = off;
		d->entry = NULL;
	}
	size_t used = 0;
	int err = 0;
	for (;;) {
		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry) {
				err = errno;
				break;
			}
		}
		struct stat st = { .st_ino = d->entry->d_ino, .st_mode = DTTOIF(d->entry->d_type) };
		size_t n = fuse_add_direntry(req, buf + used, size - used, d->entry->d_name, &st,
					     d->entry->d_off);
		if (n > size - used)
			break; /* keep the entry for the next call */
		used += n;
		d->offset = d->entry->d_off;
		d->entry = NULL;
	}
	if (err && used == 0)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

static void fs_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	struct dir_handle *d = (struct dir_handle *)(uintptr_t)fi->fh;
	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

static void fs_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;
	if (fstatvfs(inode_of(ino)->fd, &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

static void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	char path[PROC_PATH_MAX];
	reply_result(req, setxattr(proc_path(path, inode_of(ino)->fd), name, value, size, flags));
}

static void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	char path[PROC_PATH_MAX];
	reply_result(req, removexattr(proc_path(path, inode_of(ino)->fd), name));
}

/* getxattr and listxattr answer alike: size 0 asks only for the length. */
static void reply_xattr(fuse_req_t req, size_t size, char *buf, ssize_t res)
{
	if (res < 0)
		fuse_reply_err(req, errno);
	else if (size == 0)
		fuse_reply_xattr(req, (size_t)res);
	else
		fuse_reply_buf(req, buf, (size_t)res);
	free(buf);
}

static void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char path[PROC_PATH_MAX];
	atomic_fetch_add_explicit(&fs.served_getxattr, 1, memory_order_relaxed);
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	reply_xattr(req, size, buf, getxattr(proc_path(path, inode_of(ino)->fd), name, buf, size));
}

static void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char path[PROC_PATH_MAX];
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	reply_xattr(req, size, buf, listxattr(proc_path(path, inode_of(ino)->fd), buf, size));
}

static void fs_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	if (fs.writeback)
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	if (fs.splice)
		conn->want |= FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	/* fpio: last in init(): asks for passthrough where it can be live (dropping the
	 * writeback cache then), and leaves everything as it was where it cannot. */
	int live = fpio_session_init(fs.fpio, conn);
	fprintf(stderr, "fpio-passthrough: init: passthrough %s, writeback cache %s, splice read %s\n",
		live > 0 ? "expected" : "not expected",
		conn->want & FUSE_CAP_WRITEBACK_CACHE ? "on" : "off",
		conn->want & FUSE_CAP_SPLICE_READ ? "on" : "off");
}

static const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_init,
	.lookup = fs_lookup,
	.forget = fs_forget,
	.forget_multi = fs_forget_multi,
	.getattr = fs_getattr,
	.setattr = fs_setattr,
	.readlink = fs_readlink,
	.mknod = fs_mknod,
	.mkdir = fs_mkdir,
	.symlink = fs_symlink,
	.link = fs_link,
	.unlink = fs_unlink,
	.rmdir = fs_rmdir,
	.rename = fs_rename,
	.open = fs_open,
	.create = fs_create,
	.read = fs_read,
	.write = fs_write,
	.flush = fs_flush,
	.fsync = fs_fsync,
	.release = fs_release,
	.opendir = fs_opendir,
	.readdir = fs_readdir,
	.releasedir = fs_releasedir,
	.statfs = fs_statfs,
	.setxattr = fs_setxattr,
	.getxattr = fs_getxattr,
	.listxattr = fs_listxattr,
	.removexattr = fs_removexattr,
};

/* ---- command line ---- */

struct options {
	int foreground, no_passthrough, killpriv_v2, writeback, splice, no_fpio, late_fpio, clone_fd,
		help;
	unsigned int threads;
	double timeout;
	char *mode, *counters_file, *source, *mountpoint;
};

enum { KEY_DEBUG };

#define OPT(t, field, v) { t, offsetof(struct options, field), v }
static const struct fuse_opt opt_spec[] = {
	OPT("-f", foreground, 1),
	OPT("--mode=%s", mode, 0),
	OPT("--threads=%u", threads, 0),
	OPT("--no-passthrough", no_passthrough, 1),
	OPT("--killpriv-v2", killpriv_v2, 1),
	OPT("--writeback", writeback, 1),
	OPT("--splice", splice, 1),
	OPT("--no-fpio", no_fpio, 1),
	OPT("--fpio-after-daemonize", late_fpio, 1),
	OPT("--counters-file=%s", counters_file, 0),
	OPT("--timeout=%lf", timeout, 0),
	OPT("clone_fd", clone_fd, 1), /* -o clone_fd: one /dev/fuse fd per thread */
	OPT("-h", help, 1),
	OPT("--help", help, 1),
	FUSE_OPT_KEY("debug", KEY_DEBUG), /* -o debug: kept for libfuse, implies -f */
	FUSE_OPT_KEY("-d", KEY_DEBUG),
	FUSE_OPT_END,
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	(void)outargs;
	struct options *o = data;
	if (key == KEY_DEBUG) {
		o->foreground = 1;
		return 1;
	}
	if (key == FUSE_OPT_KEY_NONOPT) {
		char **slot = !o->source ? &o->source : !o->mountpoint ? &o->mountpoint : NULL;
		if (!slot) {
			fprintf(stderr, "fpio-passthrough: unexpected argument '%s'\n", arg);
			return -1;
		}
		*slot = strdup(arg);
		return 0;
	}
	return 1; /* anything else (-o opts) goes to libfuse */
}

static void usage(FILE *f, const char *prog)
{
	fprintf(f,
		"usage: %s [options] SOURCE MOUNTPOINT\n"
		"  -f                         stay in the foreground\n"
		"  --mode=passthrough|direct|cached\n"
		"                             file I/O by the kernel (default), or served here\n"
		"                             bypassing / using the page cache\n"
		"  --threads=N                N > 1: multi-threaded loop with up to N workers\n"
		"  --no-passthrough           never negotiate passthrough (fpio falls back)\n"
		"  --killpriv-v2              negotiate FUSE_HANDLE_KILLPRIV_V2 where fpio can (saves\n"
		"                             a GETXATTR round trip per passthrough write)\n"
		"  --writeback                ask for the writeback cache (kept where passthrough\n"
		"                             cannot be live)\n"
		"  --splice                   ask for splice read/write/move in init()\n"
		"  --no-fpio                  run without fpio (plain libfuse), for comparisons\n"
		"  --fpio-after-daemonize     attach fpio after fuse_daemonize() (default: before)\n"
		"  --counters-file=PATH       write fpio counters there at exit and on SIGUSR1\n"
		"  --timeout=SEC              attribute and entry timeout (default 1.0)\n"
		"  -o clone_fd                one /dev/fuse fd per thread\n"
		"  -o debug                   libfuse debug output (implies -f)\n"
		"  -o OPT[,OPT...]            mount options (allow_other, default_permissions, ...)\n",
		prog);
}

static bool parse_mode(const char *s, enum io_mode *mode)
{
	static const char *const names[] = { "passthrough", "direct", "cached" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*mode = (enum io_mode)i;
			return true;
		}
	}
	return false;
}

/* The counters file must still resolve after fuse_daemonize() changes to "/". */
static bool open_root(const char *source)
{
	struct stat st;
	fs.nbuckets = 1024;
	fs.buckets = calloc(fs.nbuckets, sizeof(*fs.buckets));
	fs.root.fd = open(source, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (!fs.buckets || fs.root.fd < 0 || fstat(fs.root.fd, &st) < 0) {
		fprintf(stderr, "fpio-passthrough: %s: %s\n", source, strerror(errno));
		return false;
	}
	fs.root.dev = st.st_dev;
	fs.root.ino = st.st_ino;
	fs.root.nlookup = 1;
	*bucket(fs.buckets, fs.nbuckets, st.st_dev, st.st_ino) = &fs.root;
	fs.count = 1;
	return true;
}

/* fpio: on failure fs.fpio stays NULL and every fpio call answers as plain libfuse. */
static void attach_fpio(uint32_t flags)
{
	int err = fpio_session_new(fs.se, flags, &fs.fpio);
	if (err < 0)
		fprintf(stderr, "fpio-passthrough: fpio_session_new: %s (running without it)\n",
			strerror(-err));
}

static int run_loop(const struct options *o)
{
	if (o->threads <= 1)
		return fuse_session_loop(fs.se);
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	if (!cfg)
		return -ENOMEM;
	fuse_loop_cfg_set_max_threads(cfg, o->threads);
	fuse_loop_cfg_set_clone_fd(cfg, (unsigned int)o->clone_fd);
	int ret = fuse_session_loop_mt(fs.se, cfg);
	fuse_loop_cfg_destroy(cfg);
	return ret;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct options o = { .threads = 1, .timeout = 1.0 };
	int ret = 1;

	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) < 0)
		return 1;
	if (o.help) {
		usage(stdout, argv[0]);
		return 0;
	}
	if (!o.source || !o.mountpoint || !parse_mode(o.mode ? o.mode : "passthrough", &fs.mode) ||
	    o.timeout < 0) {
		usage(stderr, argv[0]);
		return 1;
	}
	fs.timeout = o.timeout;
	fs.as_caller = geteuid() == 0;
	fs.counters.prog = "fpio-passthrough";
	fs.counters.session = &fs.fpio;
	fs.counters.own_lines = own_counter_lines;
	if (o.counters_file && !counters_file_open(&fs.counters, o.counters_file)) {
		fprintf(stderr, "fpio-passthrough: %s: %s\n", o.counters_file, strerror(errno));
		return 1;
	}
	umask(0); /* the kernel already applied the caller's umask to create modes */
	if (!open_root(o.source))
		return 1;

	fs.se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), NULL);
	if (!fs.se)
		return 1;
	if (fuse_set_signal_handlers(fs.se) != 0)
		goto out_destroy;
	if (fuse_session_mount(fs.se, o.mountpoint) != 0)
		goto out_signals;

	/* fpio: attach to the mounted session before its loop runs (before or after
	 * fuse_daemonize()). */
	uint32_t flags = (o.no_passthrough ? FPIO_SESSION_NO_PASSTHROUGH : 0) |
			 (o.killpriv_v2 ? FPIO_SESSION_KILLPRIV_V2 : 0);
	fs.writeback = o.writeback;
	fs.splice = o.splice;
	if (!o.no_fpio && !o.late_fpio)
		attach_fpio(flags);

	if (fuse_daemonize(o.foreground) != 0)
		goto out_unmount;
	if (!o.no_fpio && o.late_fpio)
		attach_fpio(flags);

	counters_file_start(&fs.counters);

	int loop = run_loop(&o);
	ret = loop < 0 ? 1 : 0; /* a signal (SIGTERM, SIGINT) is a normal way out */
	if (loop < 0)
		fprintf(stderr, "fpio-passthrough: session loop: %s\n", strerror(-loop));

	counters_file_stop(&fs.counters);
	uint32_t status;
	if (fpio_session_status(fs.fpio, &status) == 0)
		fprintf(stderr, "fpio: passthrough: %s\n", fpio_status_str(status));
	else
		fprintf(stderr, "fpio: passthrough: not attached\n");

out_unmount:
	fuse_session_unmount(fs.se);
	/* fpio: after the loop has returned; closes the backing ids fpio opened. */
	fpio_session_free(fs.fpio);
out_signals:
	fuse_remove_signal_handlers(fs.se);
out_destroy:
	fuse_session_destroy(fs.se);
	table_free();
	fuse_opt_free_args(&args);
	free(o.mode);
	free(o.counters_file);
	free(o.source);
	free(o.mountpoint);
	counters_file_free(&fs.counters);
	return ret;
}
