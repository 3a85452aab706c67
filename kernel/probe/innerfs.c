// SPDX-License-Identifier: GPL-2.0
/*
 * innerfs: the inner FUSE file system of the parallel-write probe.
 *
 *   innerfs MOUNTPOINT SIZE_MIB [BLOCK_DEVICE]
 *
 * With BLOCK_DEVICE (any unused one; nothing is read or written on it) the mount is a
 * "fuseblk" one, so that lockdep tells its super block from the passthrough mount's
 * (see fw_mount_blk()).
 *
 * Serves two files from memory:
 *   data  regular file of SIZE_MIB MiB (zeros), opened FOPEN_DIRECT_IO |
 *         FOPEN_PARALLEL_DIRECT_WRITES so that this mount itself lets
 *         overwrites reach us in parallel;
 *   ctl   control file: write "reset", "hold MS", "nohold" or "release" (lets the
 *         WRITEs held right now go on at once); read it for
 *         "max_inflight=N writes=N hold_timeouts=N hold_ms=N inflight=N\n".
 *
 * Every WRITE of data counts as in flight from its arrival until just before its
 * reply is sent. With "hold MS" armed, each WRITE waits until two WRITEs have been
 * in flight at the same time since the last reset, or until MS milliseconds pass.
 * So the first of two parallel writes is held until the second arrives, and two
 * serialized writes never overlap: max_inflight is 2 or 1, by construction.
 *
 * The passthrough file under test (outer mount) uses data as its backing file.
 * Runs in the foreground; exits when the mount goes away.
 */
#include "fusewire.h"

#include <linux/falloc.h>
#include <pthread.h>
#include <time.h>

static int devfd;
static uint8_t *mem;
static uint64_t mem_cap;
static uint64_t data_size;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static int inflight, max_inflight, hold_timeouts;
static unsigned long long writes, release_gen;
static long hold_ms;

enum { INO_DATA = 2, INO_CTL = 3 };

static void data_attr(struct fuse_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->ino = INO_DATA;
	a->mode = S_IFREG | 0644;
	a->nlink = 1;
	a->blksize = 4096;
	pthread_mutex_lock(&mu);
	a->size = data_size;
	pthread_mutex_unlock(&mu);
	a->blocks = (a->size + 511) / 512;
}

static int ino_attr(uint64_t ino, struct fuse_attr *a)
{
	if (ino == FUSE_ROOT_ID)
		fw_root_attr(a);
	else if (ino == INO_DATA)
		data_attr(a);
	else if (ino == INO_CTL)
		fw_ctl_attr(a, INO_CTL, 0644);
	else
		return -ENOENT;
	return 0;
}

struct wreq {
	uint64_t unique;
	uint64_t off;
	uint32_t size;
	uint8_t data[];
};

static void *data_write(void *arg)
{
	struct wreq *w = arg;
	struct fuse_write_out out = { 0 };
	int err = 0;

	pthread_mutex_lock(&mu);
	inflight++;
	if (inflight > max_inflight) {
		max_inflight = inflight;
		pthread_cond_broadcast(&cv);
	}
	if (hold_ms > 0) {
		struct timespec dl;
		unsigned long long gen = release_gen;

		clock_gettime(CLOCK_MONOTONIC, &dl);
		dl.tv_sec += hold_ms / 1000;
		dl.tv_nsec += (hold_ms % 1000) * 1000000L;
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
		while (max_inflight < 2 && gen == release_gen) {
			if (pthread_cond_timedwait(&cv, &mu, &dl) == ETIMEDOUT) {
				if (max_inflight < 2 && gen == release_gen)
					hold_timeouts++;
				break;
			}
		}
	}
	if (w->off + w->size > mem_cap) {
		err = -EFBIG;
	} else if (w->off + w->size > data_size) {
		data_size = w->off + w->size;
	}
	pthread_mutex_unlock(&mu);

	if (!err) {
		memcpy(mem + w->off, w->data, w->size);
		out.size = w->size;
	}

	/* No longer in flight: must happen before the reply (see header comment). */
	pthread_mutex_lock(&mu);
	inflight--;
	writes++;
	pthread_mutex_unlock(&mu);

	fw_reply(devfd, w->unique, err, &out, sizeof(out));
	free(w);
	return NULL;
}

static void ctl_command(const char *cmd, size_t len)
{
	char buf[128];

	if (len >= sizeof(buf))
		len = sizeof(buf) - 1;
	memcpy(buf, cmd, len);
	buf[len] = 0;
	pthread_mutex_lock(&mu);
	if (!strncmp(buf, "reset", 5)) {
		max_inflight = 0;
		writes = 0;
		hold_timeouts = 0;
	} else if (!strncmp(buf, "hold ", 5)) {
		hold_ms = strtol(buf + 5, NULL, 10);
	} else if (!strncmp(buf, "nohold", 6)) {
		hold_ms = 0;
	} else if (!strncmp(buf, "release", 7)) {
		release_gen++;
	}
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
}

static void handle(struct fuse_in_header *ih, void *arg, size_t arglen)
{
	uint64_t u = ih->unique;
	struct fuse_attr a;

	switch (ih->opcode) {
	case FUSE_INIT: {
		struct fuse_init_in *in = arg;
		struct fuse_init_out out;

		memset(&out, 0, sizeof(out));
		out.major = FUSE_KERNEL_VERSION;
		out.minor = in->minor < FUSE_KERNEL_MINOR_VERSION ?
				    in->minor : FUSE_KERNEL_MINOR_VERSION;
		out.max_readahead = in->max_readahead;
		out.flags = (in->flags & (FUSE_MAX_PAGES | FUSE_BIG_WRITES));
		out.max_background = 64;
		out.congestion_threshold = 48;
		out.max_write = FW_MAX_WRITE;
		out.max_pages = FW_MAX_WRITE / 4096;
		out.time_gran = 1;
		fw_reply(devfd, u, 0, &out, sizeof(out));
		break;
	}
	case FUSE_LOOKUP: {
		const char *name = arg;
		uint64_t ino = !strcmp(name, "data") ? INO_DATA :
			       !strcmp(name, "ctl")  ? INO_CTL : 0;

		if (ih->nodeid != FUSE_ROOT_ID || !ino) {
			fw_reply(devfd, u, -ENOENT, NULL, 0);
			break;
		}
		ino_attr(ino, &a);
		fw_reply_entry(devfd, u, ino, &a, 0);
		break;
	}
	case FUSE_GETATTR:
		if (ino_attr(ih->nodeid, &a))
			fw_reply(devfd, u, -ENOENT, NULL, 0);
		else
			fw_reply_attr(devfd, u, &a, 0);
		break;
	case FUSE_SETATTR: {
		struct fuse_setattr_in *in = arg;

		if (ih->nodeid == INO_DATA && (in->valid & FATTR_SIZE)) {
			pthread_mutex_lock(&mu);
			if (in->size > mem_cap) {
				pthread_mutex_unlock(&mu);
				fw_reply(devfd, u, -EFBIG, NULL, 0);
				break;
			}
			if (in->size < data_size)
				memset(mem + in->size, 0, data_size - in->size);
			data_size = in->size;
			pthread_mutex_unlock(&mu);
		}
		if (ino_attr(ih->nodeid, &a))
			fw_reply(devfd, u, -ENOENT, NULL, 0);
		else
			fw_reply_attr(devfd, u, &a, 0);
		break;
	}
	case FUSE_OPEN: {
		struct fuse_open_out out = { 0 };

		out.open_flags = FOPEN_DIRECT_IO;
		if (ih->nodeid == INO_DATA)
			out.open_flags |= FOPEN_PARALLEL_DIRECT_WRITES;
		fw_reply(devfd, u, 0, &out, sizeof(out));
		break;
	}
	case FUSE_OPENDIR: {
		struct fuse_open_out out = { 0 };

		fw_reply(devfd, u, 0, &out, sizeof(out));
		break;
	}
	case FUSE_READ: {
		struct fuse_read_in *in = arg;
		char buf[256];

		if (ih->nodeid == INO_CTL) {
			int n;

			pthread_mutex_lock(&mu);
			n = snprintf(buf, sizeof(buf),
				     "max_inflight=%d writes=%llu hold_timeouts=%d hold_ms=%ld inflight=%d\n",
				     max_inflight, writes, hold_timeouts, hold_ms, inflight);
			pthread_mutex_unlock(&mu);
			if (in->offset >= (uint64_t)n)
				n = 0;
			else
				n -= in->offset;
			fw_reply(devfd, u, 0, buf + in->offset * (n > 0), n);
		} else if (ih->nodeid == INO_DATA) {
			uint64_t sz, len = in->size;

			pthread_mutex_lock(&mu);
			sz = data_size;
			pthread_mutex_unlock(&mu);
			if (in->offset >= sz)
				len = 0;
			else if (in->offset + len > sz)
				len = sz - in->offset;
			fw_reply(devfd, u, 0, mem + in->offset, len);
		} else {
			fw_reply(devfd, u, -EISDIR, NULL, 0);
		}
		break;
	}
	case FUSE_WRITE: {
		struct fuse_write_in *in = arg;
		const uint8_t *payload = (const uint8_t *)(in + 1);

		if (arglen < sizeof(*in) + in->size) {
			fw_reply(devfd, u, -EINVAL, NULL, 0);
			break;
		}
		if (ih->nodeid == INO_CTL) {
			struct fuse_write_out out = { .size = in->size };

			ctl_command((const char *)payload, in->size);
			fw_reply(devfd, u, 0, &out, sizeof(out));
		} else if (ih->nodeid == INO_DATA) {
			struct wreq *w = malloc(sizeof(*w) + in->size);
			pthread_t t;

			if (!w)
				fw_die("out of memory");
			w->unique = u;
			w->off = in->offset;
			w->size = in->size;
			memcpy(w->data, payload, in->size);
			if (pthread_create(&t, NULL, data_write, w))
				fw_die("pthread_create failed");
			pthread_detach(t);
		} else {
			fw_reply(devfd, u, -EISDIR, NULL, 0);
		}
		break;
	}
	case FUSE_FALLOCATE: { /* memory needs no allocation: sizes only */
		struct fuse_fallocate_in *in = arg;
		int err = 0;

		if (ih->nodeid != INO_DATA || (in->mode & ~FALLOC_FL_KEEP_SIZE)) {
			fw_reply(devfd, u, -EOPNOTSUPP, NULL, 0);
			break;
		}
		pthread_mutex_lock(&mu);
		if (in->offset + in->length > mem_cap)
			err = -EFBIG;
		else if (!(in->mode & FALLOC_FL_KEEP_SIZE) && in->offset + in->length > data_size)
			data_size = in->offset + in->length;
		pthread_mutex_unlock(&mu);
		fw_reply(devfd, u, err, NULL, 0);
		break;
	}
	case FUSE_READDIR:
		fw_reply_empty_readdir(devfd, u);
		break;
	case FUSE_DESTROY: /* fuseblk: umount waits for this reply */
	case FUSE_RELEASE:
	case FUSE_RELEASEDIR:
	case FUSE_FLUSH:
	case FUSE_FSYNC:
		fw_reply(devfd, u, 0, NULL, 0);
		break;
	case FUSE_FORGET:
	case FUSE_BATCH_FORGET:
	case FUSE_INTERRUPT:
		break; /* no reply */
	case FUSE_GETXATTR:
	case FUSE_LISTXATTR:
		fw_reply(devfd, u, -ENODATA, NULL, 0);
		break;
	default:
		fw_reply(devfd, u, -ENOSYS, NULL, 0);
		break;
	}
}

int main(int argc, char **argv)
{
	pthread_condattr_t ca;
	uint8_t *buf;

	fw_prog = "innerfs";
	if (argc != 3 && argc != 4)
		fw_die("usage: innerfs MOUNTPOINT SIZE_MIB [BLOCK_DEVICE]");
	mem_cap = 4 * strtoull(argv[2], NULL, 10) << 20;
	data_size = mem_cap / 4;
	mem = calloc(1, mem_cap);
	buf = malloc(FW_BUFSIZE);
	if (!mem || !buf || !data_size)
		fw_die("bad size or out of memory");
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&cv, &ca);

	devfd = argc == 4 ? fw_mount_blk(argv[1], argv[3]) : fw_mount(argv[1], "innerfs");
	for (;;) {
		ssize_t n = read(devfd, buf, FW_BUFSIZE);
		struct fuse_in_header *ih = (struct fuse_in_header *)buf;

		if (n < 0) {
			if (errno == EINTR || errno == ENOENT || errno == EAGAIN)
				continue;
			if (errno == ENODEV) /* unmounted */
				return 0;
			fw_die("read /dev/fuse: %s", strerror(errno));
		}
		if ((size_t)n < sizeof(*ih))
			fw_die("short read from /dev/fuse");
		handle(ih, buf + sizeof(*ih), n - sizeof(*ih));
	}
}
