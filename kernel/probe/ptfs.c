// SPDX-License-Identifier: GPL-2.0
/*
 * ptfs: a minimal raw-protocol FUSE passthrough server for the probe (no libfuse).
 *
 *   ptfs [options] MOUNTPOINT BACKING_FILE
 *     --depth N          max_stack_depth to negotiate (default 2)
 *     --no-killpriv      do not negotiate FUSE_HANDLE_KILLPRIV_V2 (no SB_NOSEC)
 *     --no-parallel      do not ask for FOPEN_PARALLEL_DIRECT_WRITES
 *     --report-size N    report min(real size, N) bytes as the file size, so that
 *                        writes past N are "extending" for this mount while still
 *                        being overwrites of the backing file
 *     --inner-ctl PATH   innerfs's ctl file (the backing file is innerfs's data):
 *                        every GETXATTR, SETATTR and FALLOCATE of data reads it, and
 *                        counts as "X_during_write" if innerfs has a WRITE in flight.
 *                        The kernel sends SETATTR and FALLOCATE under the exclusive
 *                        inode lock, so a write of the same inode in flight at that
 *                        moment means a lock rule was broken; so does a GETXATTR that
 *                        comes from a write's privilege removal (file_remove_privs()
 *                        runs under the writer's exclusive lock). truncate() also
 *                        asks (dentry_needs_remove_privs()) before taking the lock:
 *                        the caller knows which GETXATTRs count.
 *
 * Besides "data" it serves "ctl" (direct io, not passthrough): read it for
 * "getxattr=N setattr=N fallocate=N getxattr_during_write=N setattr_during_write=N
 *  fallocate_during_write=N opens=N writes_to_server=N\n".
 *
 * "data"'s opens are FOPEN_PASSTHROUGH (+ PARALLEL_DIRECT_WRITES) on BACKING_FILE.
 * One backing id per inode, shared by its opens, closed at the last release. The fd
 * registered is a plain O_RDWR one: the kernel opens its own backing file for every
 * passthrough open with that open's flags (O_DIRECT, O_APPEND included), so the
 * registered fd only names the file and carries the server's credentials.
 * GETXATTR answers ENODATA, so after the first write file_remove_privs() marks the
 * inode S_NOSEC (with KILLPRIV_V2 the super block is SB_NOSEC).
 */
#include "fusewire.h"

#include <sys/ioctl.h>

static int devfd;
static const char *backing_path;
static int opt_depth = 2, opt_killpriv = 1, opt_parallel = 1;
static uint64_t opt_report_size = UINT64_MAX;
static const char *opt_inner_ctl;

static int backing_fd = -1, backing_id, backing_refs;
static unsigned long long n_getxattr, n_opens, n_writes, n_setattr, n_fallocate;
static unsigned long long dw_getxattr, dw_setattr, dw_fallocate;

enum { INO_DATA = 2, INO_CTL = 3 };

/* Called for requests the kernel sends with the inode lock held exclusively: a
 * WRITE of the backing file in flight at innerfs at the same time breaks the rule. */
static void check_exclusive(const char *what, unsigned long long *during_write)
{
	char buf[256], *p;
	int fd, n, inflight;

	if (!opt_inner_ctl)
		return;
	fd = open(opt_inner_ctl, O_RDONLY);
	if (fd < 0)
		fw_die("open %s: %s", opt_inner_ctl, strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		fw_die("read %s", opt_inner_ctl);
	buf[n] = 0;
	p = strstr(buf, "inflight=");
	for (;;) { /* the last "inflight=", not "max_inflight=" */
		char *q = p ? strstr(p + 1, " inflight=") : NULL;

		if (!q)
			break;
		p = q + 1;
	}
	if (!p || p == buf || p[-1] != ' ')
		fw_die("no inflight= in %s", opt_inner_ctl);
	inflight = atoi(p + strlen("inflight="));
	if (inflight > 0) {
		(*during_write)++;
		fprintf(stderr, "ptfs: %s arrived while %d backing WRITE(s) were in flight\n",
			what, inflight);
	}
}

static int data_attr(struct fuse_attr *a)
{
	struct stat st;

	if (stat(backing_path, &st) < 0)
		return -errno;
	fw_attr_from_stat(a, &st, INO_DATA);
	if (a->size > opt_report_size)
		a->size = opt_report_size;
	return 0;
}

/* GETATTR and SETATTR both answer with the data file's attributes or an error. */
static void reply_attr_or_err(uint64_t unique, int err, const struct fuse_attr *a)
{
	if (err)
		fw_reply(devfd, unique, err, NULL, 0);
	else
		fw_reply_attr(devfd, unique, a, 3600);
}

static void handle(struct fuse_in_header *ih, void *arg)
{
	uint64_t u = ih->unique;
	struct fuse_attr a;
	int err;

	switch (ih->opcode) {
	case FUSE_INIT: {
		struct fuse_init_in *in = arg;
		struct fuse_init_out out;
		uint64_t offered = in->flags;

		if (in->flags & FUSE_INIT_EXT)
			offered |= (uint64_t)in->flags2 << 32;
		if (!(offered & FUSE_PASSTHROUGH))
			fw_die("kernel does not offer FUSE_PASSTHROUGH");
		memset(&out, 0, sizeof(out));
		out.major = FUSE_KERNEL_VERSION;
		out.minor = in->minor < FUSE_KERNEL_MINOR_VERSION ?
				    in->minor : FUSE_KERNEL_MINOR_VERSION;
		out.max_readahead = in->max_readahead;
		out.flags = FUSE_INIT_EXT | (in->flags & (FUSE_MAX_PAGES | FUSE_BIG_WRITES));
		if (opt_killpriv) {
			if (!(in->flags & FUSE_HANDLE_KILLPRIV_V2))
				fw_die("kernel does not offer FUSE_HANDLE_KILLPRIV_V2");
			out.flags |= FUSE_HANDLE_KILLPRIV_V2;
		}
		out.flags2 = FUSE_PASSTHROUGH >> 32;
		out.max_stack_depth = opt_depth;
		out.max_background = 64;
		out.congestion_threshold = 48;
		out.max_write = FW_MAX_WRITE;
		out.max_pages = FW_MAX_WRITE / 4096;
		out.time_gran = 1;
		fw_reply(devfd, u, 0, &out, sizeof(out));
		break;
	}
	case FUSE_LOOKUP:
		if (ih->nodeid == FUSE_ROOT_ID && !strcmp(arg, "ctl")) {
			fw_ctl_attr(&a, INO_CTL, 0444);
			fw_reply_entry(devfd, u, INO_CTL, &a, 3600);
			break;
		}
		if (ih->nodeid != FUSE_ROOT_ID || strcmp(arg, "data")) {
			fw_reply(devfd, u, -ENOENT, NULL, 0);
			break;
		}
		err = data_attr(&a);
		if (err)
			fw_reply(devfd, u, err, NULL, 0);
		else
			fw_reply_entry(devfd, u, INO_DATA, &a, 3600);
		break;
	case FUSE_GETATTR:
		if (ih->nodeid == FUSE_ROOT_ID) {
			fw_root_attr(&a);
			err = 0;
		} else if (ih->nodeid == INO_CTL) {
			fw_ctl_attr(&a, INO_CTL, 0444);
			err = 0;
		} else {
			err = data_attr(&a);
		}
		reply_attr_or_err(u, err, &a);
		break;
	case FUSE_SETATTR: {
		struct fuse_setattr_in *in = arg;

		err = 0;
		if (ih->nodeid != INO_DATA)
			err = -EPERM;
		if (!err) {
			n_setattr++;
			check_exclusive("SETATTR", &dw_setattr);
		}
		if (!err && (in->valid & FATTR_SIZE) && truncate(backing_path, in->size) < 0)
			err = -errno;
		if (!err && (in->valid & FATTR_MODE) && chmod(backing_path, in->mode & 07777) < 0)
			err = -errno;
		if (!err)
			err = data_attr(&a);
		reply_attr_or_err(u, err, &a);
		break;
	}
	case FUSE_OPEN: {
		struct fuse_open_out out = { 0 };

		if (ih->nodeid == INO_CTL) {
			out.open_flags = FOPEN_DIRECT_IO;
			fw_reply(devfd, u, 0, &out, sizeof(out));
			break;
		}
		if (ih->nodeid != INO_DATA) {
			fw_reply(devfd, u, -EISDIR, NULL, 0);
			break;
		}
		if (backing_refs == 0) {
			struct fuse_backing_map map = { 0 };
			int id;

			backing_fd = open(backing_path,
					  O_RDWR | O_CLOEXEC);
			if (backing_fd < 0) {
				fw_reply(devfd, u, -errno, NULL, 0);
				break;
			}
			map.fd = backing_fd;
			id = ioctl(devfd, FUSE_DEV_IOC_BACKING_OPEN, &map);
			if (id <= 0) {
				err = id < 0 ? -errno : -EIO;
				fprintf(stderr, "ptfs: FUSE_DEV_IOC_BACKING_OPEN: %s\n",
					strerror(-err));
				close(backing_fd);
				backing_fd = -1;
				fw_reply(devfd, u, err, NULL, 0);
				break;
			}
			backing_id = id;
		}
		backing_refs++;
		n_opens++;
		out.fh = 1;
		out.open_flags = FOPEN_PASSTHROUGH;
		if (opt_parallel)
			out.open_flags |= FOPEN_PARALLEL_DIRECT_WRITES;
		out.backing_id = backing_id;
		fw_reply(devfd, u, 0, &out, sizeof(out));
		break;
	}
	case FUSE_RELEASE:
		if (ih->nodeid == INO_DATA && backing_refs > 0 && --backing_refs == 0) {
			uint32_t id = backing_id;

			if (ioctl(devfd, FUSE_DEV_IOC_BACKING_CLOSE, &id) < 0)
				fprintf(stderr, "ptfs: FUSE_DEV_IOC_BACKING_CLOSE: %s\n",
					strerror(errno));
			close(backing_fd);
			backing_fd = -1;
		}
		fw_reply(devfd, u, 0, NULL, 0);
		break;
	case FUSE_OPENDIR: {
		struct fuse_open_out out = { 0 };

		fw_reply(devfd, u, 0, &out, sizeof(out));
		break;
	}
	case FUSE_READDIR:
		fw_reply_empty_readdir(devfd, u);
		break;
	case FUSE_READ: { /* ctl only: data is passthrough */
		struct fuse_read_in *in = arg;
		char buf[256];
		int n;

		if (ih->nodeid != INO_CTL) {
			fw_reply(devfd, u, -EIO, NULL, 0);
			break;
		}
		n = snprintf(buf, sizeof(buf), "getxattr=%llu setattr=%llu fallocate=%llu "
			     "getxattr_during_write=%llu setattr_during_write=%llu "
			     "fallocate_during_write=%llu opens=%llu writes_to_server=%llu\n",
			     n_getxattr, n_setattr, n_fallocate, dw_getxattr, dw_setattr,
			     dw_fallocate, n_opens, n_writes);
		if (in->offset >= (uint64_t)n)
			n = 0;
		else
			n -= in->offset;
		fw_reply(devfd, u, 0, buf + (n > 0 ? in->offset : 0), n);
		break;
	}
	case FUSE_FALLOCATE: {
		struct fuse_fallocate_in *in = arg;

		n_fallocate++;
		check_exclusive("FALLOCATE", &dw_fallocate);
		err = 0;
		if (ih->nodeid != INO_DATA || backing_fd < 0)
			err = -EBADF;
		else if (fallocate(backing_fd, in->mode, in->offset, in->length) < 0)
			err = -errno;
		fw_reply(devfd, u, err, NULL, 0);
		break;
	}
	case FUSE_WRITE: /* only reached if passthrough did not take the write */
		n_writes++;
		fw_reply(devfd, u, -EIO, NULL, 0);
		break;
	case FUSE_GETXATTR:
		n_getxattr++;
		check_exclusive("GETXATTR", &dw_getxattr);
		fw_reply(devfd, u, -ENODATA, NULL, 0);
		break;
	case FUSE_LISTXATTR:
		fw_reply(devfd, u, 0, NULL, 0);
		break;
	case FUSE_RELEASEDIR:
	case FUSE_FLUSH:
		fw_reply(devfd, u, 0, NULL, 0);
		break;
	case FUSE_FSYNC:
		fw_reply(devfd, u, backing_fd >= 0 && fsync(backing_fd) < 0 ? -errno : 0,
			 NULL, 0);
		break;
	case FUSE_FORGET:
	case FUSE_BATCH_FORGET:
	case FUSE_INTERRUPT:
		break;
	default:
		fw_reply(devfd, u, -ENOSYS, NULL, 0);
		break;
	}
}

int main(int argc, char **argv)
{
	uint8_t *buf;
	int i;

	fw_prog = "ptfs";
	for (i = 1; i < argc && !strncmp(argv[i], "--", 2); i++) {
		if (!strcmp(argv[i], "--depth") && i + 1 < argc)
			opt_depth = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--no-killpriv"))
			opt_killpriv = 0;
		else if (!strcmp(argv[i], "--no-parallel"))
			opt_parallel = 0;
		else if (!strcmp(argv[i], "--report-size") && i + 1 < argc)
			opt_report_size = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--inner-ctl") && i + 1 < argc)
			opt_inner_ctl = argv[++i];
		else
			fw_die("unknown option %s", argv[i]);
	}
	if (argc - i != 2)
		fw_die("usage: ptfs [--depth N] [--no-killpriv] [--no-parallel] "
		       "[--report-size N] [--inner-ctl PATH] "
		       "MOUNTPOINT BACKING_FILE");
	backing_path = argv[i + 1];
	buf = malloc(FW_BUFSIZE);
	if (!buf)
		fw_die("out of memory");

	devfd = fw_mount(argv[i], "ptfs");
	for (;;) {
		ssize_t n = read(devfd, buf, FW_BUFSIZE);

		if (n < 0) {
			if (errno == EINTR || errno == ENOENT || errno == EAGAIN)
				continue;
			if (errno == ENODEV) {
				fprintf(stderr, "ptfs: unmounted: opens=%llu getxattr=%llu "
					"writes_to_server=%llu\n", n_opens, n_getxattr, n_writes);
				return 0;
			}
			fw_die("read /dev/fuse: %s", strerror(errno));
		}
		if ((size_t)n < sizeof(struct fuse_in_header))
			fw_die("short read from /dev/fuse");
		handle((struct fuse_in_header *)buf, buf + sizeof(struct fuse_in_header));
	}
}
