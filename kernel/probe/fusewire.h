/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Minimal raw /dev/fuse plumbing shared by the probe servers (no libfuse).
 * <linux/fuse.h> must be the 7.3 uapi header (probe/build.sh copies it from the
 * kernel source), for FUSE_PASSTHROUGH, max_stack_depth and backing_id.
 */
#ifndef FPIO_PROBE_FUSEWIRE_H
#define FPIO_PROBE_FUSEWIRE_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define FW_MAX_WRITE (1u << 20)
#define FW_BUFSIZE (FW_MAX_WRITE + 65536)

static const char *fw_prog __attribute__((unused)) = "fuse";

static inline void fw_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", fw_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* Open /dev/fuse and mount it at mnt as type ("fuse" or "fuseblk") with the
 * source given and extra options appended. Returns the device fd. */
static inline int fw_mount_as(const char *mnt, const char *source, const char *type,
			      const char *extra)
{
	char opts[256];
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		fw_die("open /dev/fuse: %s", strerror(errno));
	snprintf(opts, sizeof(opts),
		 "fd=%d,rootmode=40755,user_id=0,group_id=0,allow_other%s", fd, extra);
	if (mount(source, mnt, type, MS_NOSUID | MS_NODEV, opts) < 0)
		fw_die("mount %s %s on %s: %s", type, source, mnt, strerror(errno));
	return fd;
}

static inline int fw_mount(const char *mnt, const char *fsname)
{
	return fw_mount_as(mnt, fsname, "fuse", "");
}

/*
 * The same as a "fuseblk" mount on the block device dev. A file system of another
 * type than the passthrough mount above it: the two super blocks' freeze protection
 * (sb_writers) then has different lockdep classes. Stacked on a plain "fuse" mount,
 * lockdep reports the passthrough write's sb_start_write() on the backing file
 * (inside the fuse file's own) as "possible recursive locking" and turns itself off.
 */
static inline int fw_mount_blk(const char *mnt, const char *dev)
{
	return fw_mount_as(mnt, dev, "fuseblk", ",blksize=4096");
}

/* Attributes of a server's small control file (ino, mode bits, 4 KiB). */
static inline void fw_ctl_attr(struct fuse_attr *a, uint64_t ino, unsigned int perm)
{
	memset(a, 0, sizeof(*a));
	a->ino = ino;
	a->mode = S_IFREG | perm;
	a->nlink = 1;
	a->size = 4096;
	a->blksize = 4096;
}

/* Send a reply: error (0 or -errno) and an optional payload. */
static inline int fw_reply(int fd, uint64_t unique, int error, const void *data,
		    size_t len)
{
	struct fuse_out_header oh = {
		.len = sizeof(oh) + (error ? 0 : len),
		.error = error,
		.unique = unique,
	};
	struct iovec iov[2] = {
		{ &oh, sizeof(oh) },
		{ (void *)data, len },
	};
	ssize_t n = writev(fd, iov, (error || !len) ? 1 : 2);

	if (n < 0 && errno != ENOENT) /* ENOENT: request was interrupted */
		fprintf(stderr, "%s: reply: %s\n", fw_prog, strerror(errno));
	return n < 0 ? -errno : 0;
}

static inline void fw_attr_from_stat(struct fuse_attr *a, const struct stat *st,
			      uint64_t ino)
{
	memset(a, 0, sizeof(*a));
	a->ino = ino;
	a->size = st->st_size;
	a->blocks = st->st_blocks;
	a->atime = st->st_atim.tv_sec;
	a->atimensec = st->st_atim.tv_nsec;
	a->mtime = st->st_mtim.tv_sec;
	a->mtimensec = st->st_mtim.tv_nsec;
	a->ctime = st->st_ctim.tv_sec;
	a->ctimensec = st->st_ctim.tv_nsec;
	a->mode = st->st_mode;
	a->nlink = st->st_nlink;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->blksize = 4096;
}

static inline void fw_root_attr(struct fuse_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->ino = FUSE_ROOT_ID;
	a->mode = S_IFDIR | 0755;
	a->nlink = 2;
	a->blksize = 4096;
}

static inline int fw_reply_attr(int fd, uint64_t unique, const struct fuse_attr *a,
			 uint64_t valid_s)
{
	struct fuse_attr_out out;

	memset(&out, 0, sizeof(out));
	out.attr_valid = valid_s;
	out.attr = *a;
	return fw_reply(fd, unique, 0, &out, sizeof(out));
}

static inline int fw_reply_entry(int fd, uint64_t unique, uint64_t nodeid,
			  const struct fuse_attr *a, uint64_t valid_s)
{
	struct fuse_entry_out out;

	memset(&out, 0, sizeof(out));
	out.nodeid = nodeid;
	out.generation = 1;
	out.entry_valid = valid_s;
	out.attr_valid = valid_s;
	out.attr = *a;
	return fw_reply(fd, unique, 0, &out, sizeof(out));
}

/* Replies for the directory ops a shell may issue on the root (ls). */
static inline int fw_reply_empty_readdir(int fd, uint64_t unique)
{
	return fw_reply(fd, unique, 0, NULL, 0);
}

#endif
