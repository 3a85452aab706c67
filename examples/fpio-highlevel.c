/* fpio-highlevel: mirror a directory through libfuse's high-level, path-based API
 * (fuse.h), with kernel passthrough via fpio.
 *
 *   fpio-highlevel [--counters-file=PATH] [--decline=SUFFIX] [--no-fpio]
 *                  [fuse_main options: -f, -s, -d, -o ...] SOURCE MOUNTPOINT
 *
 * A plain high-level server; everything not marked "fpio:" is what any mirroring server
 * does. The fpio calls:
 *   fpio_fuse_init()     at the end of init()
 *   fpio_fuse_open()     at the end of open() and create()
 *   fpio_fuse_release()  in release(), before closing the fd
 * and, for the counters and an explicit end, fpio_fuse_session() in init() and
 * fpio_session_free() in destroy().
 *
 * --decline=SUFFIX serves files whose name ends in SUFFIX here (fpio_fuse_open() with -1):
 * their reads and writes reach this process, which counts them. --counters-file writes
 * fpio's counters and this process's own read/write counts after init(), on SIGUSR1 and
 * in destroy().
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE

#include <fuse.h>
#include <fpio.h>

#include "counters-file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static struct {
	int root; /* O_PATH fd of SOURCE: every path is resolved below it */
	char *decline;
	bool no_fpio;
	struct fpio_session *fpio; /* fpio: the session fpio_fuse_init() attached */
	struct counters_file counters;
	/* the reads and writes that reached this server; spliced: writes libfuse
	 * handed over in its pipe (read from /dev/fuse with splice) */
	atomic_ullong served_read, served_write, served_write_spliced;
} fs = {.root = -1};

/* "/a/b" -> "a/b", "/" -> "." (relative to fs.root) */
static const char *rel(const char *path)
{
	return path[1] ? path + 1 : ".";
}

static int err(int res)
{
	return res < 0 ? -errno : 0;
}

static int own_counter_lines(int fd)
{
	return dprintf(fd, "server_read %llu\nserver_write %llu\nserver_write_spliced %llu\n",
		       atomic_load(&fs.served_read), atomic_load(&fs.served_write),
		       atomic_load(&fs.served_write_spliced));
}

/* ---- the filesystem ---- */

static void *hl_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	cfg->use_ino = 1;
	/* Changes made in SOURCE behind the mount show at once. */
	cfg->entry_timeout = 0;
	cfg->attr_timeout = 0;
	cfg->negative_timeout = 0;
	if (!fs.no_fpio) {
		fpio_fuse_init(conn, cfg, 0); /* fpio: last in init() */
		fpio_fuse_session(&fs.fpio);  /* fpio: for the counters and destroy() */
	}
	counters_file_start(&fs.counters);
	counters_file_write(&fs.counters);
	return NULL;
}

static void hl_destroy(void *private_data)
{
	(void)private_data;
	counters_file_stop(&fs.counters);
	uint32_t status;
	if (fpio_session_status(fs.fpio, &status) == 0)
		fprintf(stderr, "fpio: passthrough: %s\n", fpio_status_str(status));
	else
		fprintf(stderr, "fpio: passthrough: not attached\n");
	fpio_session_free(fs.fpio); /* fpio: the loop is over */
	fs.fpio = NULL;
}

static int hl_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	if (fi)
		return err(fstat((int)fi->fh, st));
	return err(fstatat(fs.root, rel(path), st, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH));
}

static int hl_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	(void)off;
	(void)fi;
	(void)flags;
	int fd = openat(fs.root, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int e = errno;
		close(fd);
		return -e;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		struct stat st = {.st_ino = de->d_ino, .st_mode = (mode_t)de->d_type << 12};
		if (filler(buf, de->d_name, &st, 0, 0))
			break;
	}
	closedir(d);
	return 0;
}

static int hl_mkdir(const char *path, mode_t mode)
{
	return err(mkdirat(fs.root, rel(path), mode));
}

static int hl_unlink(const char *path)
{
	return err(unlinkat(fs.root, rel(path), 0));
}

static int hl_rmdir(const char *path)
{
	return err(unlinkat(fs.root, rel(path), AT_REMOVEDIR));
}

static int hl_rename(const char *from, const char *to, unsigned int flags)
{
	return err(renameat2(fs.root, rel(from), fs.root, rel(to), flags));
}

static int hl_link(const char *from, const char *to)
{
	return err(linkat(fs.root, rel(from), fs.root, rel(to), 0));
}

static int hl_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	if (fi)
		return err(fchmod((int)fi->fh, mode));
	return err(fchmodat(fs.root, rel(path), mode, 0));
}

static int hl_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	if (fi)
		return err(fchown((int)fi->fh, uid, gid));
	return err(fchownat(fs.root, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW));
}

static int hl_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	if (fi)
		return err(ftruncate((int)fi->fh, size));
	int fd = openat(fs.root, rel(path), O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int res = err(ftruncate(fd, size));
	close(fd);
	return res;
}

static int hl_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	if (fi)
		return err(futimens((int)fi->fh, tv));
	return err(utimensat(fs.root, rel(path), tv, AT_SYMLINK_NOFOLLOW));
}

static bool declined(const char *path)
{
	size_t n = strlen(path), s = fs.decline ? strlen(fs.decline) : 0;
	return s && n >= s && strcmp(path + n - s, fs.decline) == 0;
}

/* fi->flags are the application's open flags; the kernel handled O_CREAT/O_EXCL checks
 * for create() already, and O_NOFOLLOW matters only for the last component. */
static int open_common(const char *path, struct fuse_file_info *fi, int fd)
{
	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	fpio_fuse_open(declined(path) ? -1 : fd, fi); /* fpio: last in open()/create() */
	return 0;
}

static int hl_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return open_common(path, fi, openat(fs.root, rel(path), fi->flags | O_CLOEXEC, mode));
}

static int hl_open(const char *path, struct fuse_file_info *fi)
{
	return open_common(path, fi, openat(fs.root, rel(path), fi->flags | O_CLOEXEC));
}

static int hl_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)path;
	atomic_fetch_add(&fs.served_read, 1);
	ssize_t n = pread((int)fi->fh, buf, size, off);
	return n < 0 ? -errno : (int)n;
}

/* write_buf rather than write, as libfuse's passthrough_fh.c: libfuse then reads
 * requests with splice where the kernel allows it. */
static int hl_write_buf(const char *path, struct fuse_bufvec *buf, off_t off,
			struct fuse_file_info *fi)
{
	struct fuse_bufvec dst = FUSE_BUFVEC_INIT(fuse_buf_size(buf));

	(void)path;
	atomic_fetch_add(&fs.served_write, 1);
	if (buf->count > 0 && (buf->buf[0].flags & FUSE_BUF_IS_FD))
		atomic_fetch_add(&fs.served_write_spliced, 1);
	dst.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	dst.buf[0].fd = (int)fi->fh;
	dst.buf[0].pos = off;
	return (int)fuse_buf_copy(&dst, buf, FUSE_BUF_SPLICE_NONBLOCK);
}

static int hl_statfs(const char *path, struct statvfs *st)
{
	(void)path;
	return err(fstatvfs(fs.root, st));
}

static int hl_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	fpio_fuse_release(fi); /* fpio: before the fd goes */
	close((int)fi->fh);
	return 0;
}

static int hl_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	return err(datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh));
}

static const struct fuse_operations hl_ops = {
	.init = hl_init,
	.destroy = hl_destroy,
	.getattr = hl_getattr,
	.readdir = hl_readdir,
	.mkdir = hl_mkdir,
	.unlink = hl_unlink,
	.rmdir = hl_rmdir,
	.rename = hl_rename,
	.link = hl_link,
	.chmod = hl_chmod,
	.chown = hl_chown,
	.truncate = hl_truncate,
	.utimens = hl_utimens,
	.create = hl_create,
	.open = hl_open,
	.read = hl_read,
	.write_buf = hl_write_buf,
	.statfs = hl_statfs,
	.release = hl_release,
	.fsync = hl_fsync,
};

/* ---- options ---- */

struct options {
	char *counters_file, *decline, *source;
	int no_fpio;
};

static const struct fuse_opt option_spec[] = {
	{"--counters-file=%s", offsetof(struct options, counters_file), 0},
	{"--decline=%s", offsetof(struct options, decline), 0},
	{"--no-fpio", offsetof(struct options, no_fpio), 1},
	FUSE_OPT_END,
};

/* The first non-option is SOURCE (taken out); the second, MOUNTPOINT, goes to fuse_main. */
static int take_source(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct options *o = data;
	(void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT && !o->source) {
		o->source = strdup(arg);
		return 0;
	}
	return 1;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct options o = {0};

	if (fuse_opt_parse(&args, &o, option_spec, take_source) != 0)
		return 1;
	if (!o.source) {
		fprintf(stderr, "usage: %s [--counters-file=PATH] [--decline=SUFFIX] [--no-fpio] "
				"[fuse options] SOURCE MOUNTPOINT\n", argv[0]);
		return 1;
	}
	fs.root = open(o.source, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fs.root < 0) {
		fprintf(stderr, "fpio-highlevel: %s: %s\n", o.source, strerror(errno));
		return 1;
	}
	fs.decline = o.decline;
	fs.no_fpio = o.no_fpio;
	fs.counters.prog = "fpio-highlevel";
	fs.counters.session = &fs.fpio;
	fs.counters.own_lines = own_counter_lines;
	if (o.counters_file && !counters_file_open(&fs.counters, o.counters_file)) {
		fprintf(stderr, "fpio-highlevel: %s: %s\n", o.counters_file, strerror(errno));
		return 1;
	}
	umask(0); /* the kernel already applied the caller's umask to create modes */
	int ret = fuse_main(args.argc, args.argv, &hl_ops, NULL);
	fuse_opt_free_args(&args);
	close(fs.root);
	counters_file_free(&fs.counters);
	free(o.counters_file);
	free(o.decline);
	free(o.source);
	return ret;
}
