// SPDX-License-Identifier: GPL-2.0
/*
 * fpio-probe: client side of the kernel tier's deterministic checks.
 *
 *   fpio-probe overlap FILE CTL KIND [--expect overlap|serialized] [--hold-ms MS]
 *       FILE is the passthrough file (outer mount) whose backing file is innerfs's
 *       data; CTL is innerfs's ctl. Opens FILE twice and issues two 4 KiB writes of
 *       KIND at once from two threads, with innerfs holding the first WRITE until
 *       the second arrives (or MS ms, default 3000). Prints
 *         probe[KIND]: max concurrent writes in flight = N (overlap|serialized)
 *       KIND: odirect   O_DIRECT overwrites inside EOF
 *             odirect-stat  like odirect, with a stat() between the warm-up write
 *                       and the measured writes (clears S_NOSEC: see below)
 *             buffered  buffered overwrites inside EOF
 *             append    O_DIRECT|O_APPEND writes
 *             extend    O_DIRECT writes at/after the size the mount reports
 *                       (run ptfs with --report-size so they overwrite the backing)
 *       Before the measured writes, one O_DIRECT warm-up write (hold off) lets
 *       file_remove_privs() mark the inode S_NOSEC.
 *
 *   fpio-probe integrity FILE [--writers N] [--blocks B] [--rounds R] [--bs BYTES]
 *       N threads (default 8), each with its own O_DIRECT fd, overwrite their own
 *       interleaved set of B blocks (block i belongs to writer i % N) R times with
 *       a pattern naming (writer, block, round), in parallel. Then every byte of
 *       the N*B blocks is read back (O_DIRECT, fresh fd) and checked against the
 *       last round's pattern. FILE must already be at least N*B*BYTES long.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BS 4096

static void die(const char *fmt, const char *arg)
{
	fprintf(stderr, "fpio-probe: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, ": %s\n", strerror(errno));
	exit(2);
}

static void *xalign(size_t sz)
{
	void *p;

	if (posix_memalign(&p, 4096, sz))
		die("%s", "posix_memalign");
	return p;
}

static void ctl_write(const char *ctl, const char *cmd)
{
	int fd = open(ctl, O_WRONLY);

	if (fd < 0)
		die("open %s", ctl);
	if (write(fd, cmd, strlen(cmd)) != (ssize_t)strlen(cmd))
		die("write %s", ctl);
	close(fd);
}

static int ctl_read(const char *ctl, char *buf, size_t len)
{
	int fd = open(ctl, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		die("open %s", ctl);
	n = read(fd, buf, len - 1);
	if (n < 0)
		die("read %s", ctl);
	buf[n] = 0;
	close(fd);
	return (int)n;
}

/* ---------------- overlap ---------------- */

struct ow {
	int fd;
	off_t off;
	int append;
	pthread_barrier_t *bar;
	void *buf;
	ssize_t ret;
	int err;
};

static void *ow_thread(void *arg)
{
	struct ow *w = arg;

	pthread_barrier_wait(w->bar);
	if (w->append)
		w->ret = write(w->fd, w->buf, BS);
	else
		w->ret = pwrite(w->fd, w->buf, BS, w->off);
	w->err = errno;
	return NULL;
}

static int cmd_overlap(int argc, char **argv)
{
	const char *file, *ctl, *kind, *expect = NULL;
	int hold_ms = 3000, flags = O_RDWR, append = 0, i, fds[2], max = -1;
	off_t offs[2] = { 1 << 20, (1 << 20) + BS };
	pthread_barrier_t bar;
	pthread_t th[2];
	struct ow w[2];
	struct stat st;
	char stats[256], cmd[64];
	void *buf;
	char *p;

	if (argc < 3) {
		fprintf(stderr, "usage: fpio-probe overlap FILE CTL KIND [--expect overlap|serialized] [--hold-ms MS]\n");
		return 2;
	}
	file = argv[0];
	ctl = argv[1];
	kind = argv[2];
	for (i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--expect") && i + 1 < argc)
			expect = argv[++i];
		else if (!strcmp(argv[i], "--hold-ms") && i + 1 < argc)
			hold_ms = atoi(argv[++i]);
		else {
			fprintf(stderr, "fpio-probe: unknown argument %s\n", argv[i]);
			return 2;
		}
	}

	if (!strcmp(kind, "odirect") || !strcmp(kind, "odirect-stat")) {
		flags |= O_DIRECT;
	} else if (!strcmp(kind, "buffered")) {
	} else if (!strcmp(kind, "append")) {
		flags |= O_DIRECT | O_APPEND;
		append = 1;
	} else if (!strcmp(kind, "extend")) {
		flags |= O_DIRECT;
	} else {
		fprintf(stderr, "fpio-probe: unknown kind %s\n", kind);
		return 2;
	}

	buf = xalign(BS);
	memset(buf, 'p', BS);
	ctl_write(ctl, "nohold");
	for (i = 0; i < 2; i++) {
		fds[i] = open(file, flags);
		if (fds[i] < 0)
			die("open %s", file);
	}
	/* Where the extending writes go: at and after the size the mount reports. */
	if (fstat(fds[0], &st) < 0)
		die("fstat %s", file);
	if (!strcmp(kind, "extend")) {
		offs[0] = st.st_size;
		offs[1] = st.st_size + BS;
		if (st.st_size % BS)
			fprintf(stderr, "fpio-probe: warning: size %jd not block aligned\n",
				(intmax_t)st.st_size);
	} else if (st.st_size < offs[1] + BS) {
		fprintf(stderr, "fpio-probe: %s is too small (%jd bytes)\n", file,
			(intmax_t)st.st_size);
		return 2;
	}
	/* Warm-up: an O_DIRECT overwrite at offset 0 (the first write of the inode
	 * runs file_remove_privs() the slow way and sets S_NOSEC). */
	{
		int wfd = open(file, O_RDWR | O_DIRECT);

		if (wfd < 0)
			die("open %s", file);
		if (pwrite(wfd, buf, BS, 0) != BS)
			die("warm-up write %s", file);
		close(wfd);
	}

	/* odirect-stat: a stat() after a write refreshes the attributes, and fuse clears
	 * S_NOSEC on every refresh, so the next writes must take the exclusive lock. */
	if (!strcmp(kind, "odirect-stat") && fstat(fds[0], &st) < 0)
		die("fstat %s", file);

	snprintf(cmd, sizeof(cmd), "hold %d", hold_ms);
	ctl_write(ctl, "reset");
	ctl_write(ctl, cmd);

	pthread_barrier_init(&bar, NULL, 2);
	for (i = 0; i < 2; i++) {
		w[i] = (struct ow){ .fd = fds[i], .off = offs[i], .append = append,
				    .bar = &bar, .buf = buf };
		pthread_create(&th[i], NULL, ow_thread, &w[i]);
	}
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	ctl_write(ctl, "nohold");
	ctl_read(ctl, stats, sizeof(stats));
	for (i = 0; i < 2; i++) {
		if (w[i].ret != BS) {
			errno = w[i].err;
			die("%s write", kind);
		}
		close(fds[i]);
	}
	p = strstr(stats, "max_inflight=");
	if (p)
		max = atoi(p + strlen("max_inflight="));
	p = strchr(stats, '\n');
	if (p)
		*p = 0;
	printf("probe[%s]: max concurrent writes in flight = %d (%s)  [innerfs: %s]\n",
	       kind, max, max >= 2 ? "overlap" : "serialized", stats);
	fflush(stdout);
	if (max < 1)
		return 2;
	if (expect && strcmp(expect, max >= 2 ? "overlap" : "serialized")) {
		printf("probe[%s]: EXPECTED %s\n", kind, expect);
		return 1;
	}
	return 0;
}

/* ---------------- integrity ---------------- */

struct iw {
	const char *file;
	int id, writers, blocks, rounds;
	size_t bs;
	int fail;
};

static void fill(uint8_t *b, size_t bs, int writer, int block, int round)
{
	uint64_t x = ((uint64_t)writer << 48) ^ ((uint64_t)block << 20) ^
		     (uint64_t)round ^ 0x9e3779b97f4a7c15ull;
	size_t i;

	for (i = 0; i < bs; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(b + i, &x, 8);
	}
	/* a readable tag at the start of every block */
	snprintf((char *)b, 32, "w%02d b%06d r%03d", writer, block, round);
}

static void *iw_thread(void *arg)
{
	struct iw *w = arg;
	uint8_t *b = xalign(w->bs);
	int fd = open(w->file, O_RDWR | O_DIRECT), r, blk;

	if (fd < 0) {
		perror("fpio-probe: integrity open");
		w->fail = 1;
		return NULL;
	}
	for (r = 0; r < w->rounds; r++) {
		for (blk = w->id; blk < w->blocks * w->writers; blk += w->writers) {
			fill(b, w->bs, w->id, blk, r);
			if (pwrite(fd, b, w->bs, (off_t)blk * w->bs) != (ssize_t)w->bs) {
				perror("fpio-probe: integrity pwrite");
				w->fail = 1;
				goto out;
			}
		}
	}
out:
	close(fd);
	free(b);
	return NULL;
}

static int cmd_integrity(int argc, char **argv)
{
	int writers = 8, blocks = 64, rounds = 8, i, fd, bad = 0, fail = 0;
	size_t bs = BS;
	const char *file;
	uint8_t *got, *want;
	pthread_t th[64];
	struct iw w[64];
	struct timespec t0, t1;

	if (argc < 1) {
		fprintf(stderr, "usage: fpio-probe integrity FILE [--writers N] [--blocks B] [--rounds R] [--bs BYTES]\n");
		return 2;
	}
	file = argv[0];
	for (i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--writers"))
			writers = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--blocks"))
			blocks = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--rounds"))
			rounds = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--bs"))
			bs = strtoul(argv[i + 1], NULL, 0);
		else
			break;
	}
	if (i != argc || writers < 1 || writers > 64 || blocks < 1 || rounds < 1 ||
	    bs < 512 || bs % 512) {
		fprintf(stderr, "fpio-probe: bad integrity arguments\n");
		return 2;
	}

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < writers; i++) {
		w[i] = (struct iw){ .file = file, .id = i, .writers = writers,
				    .blocks = blocks, .rounds = rounds, .bs = bs };
		pthread_create(&th[i], NULL, iw_thread, &w[i]);
	}
	for (i = 0; i < writers; i++) {
		pthread_join(th[i], NULL);
		fail |= w[i].fail;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (fail)
		return 1;

	got = xalign(bs);
	want = xalign(bs);
	fd = open(file, O_RDONLY | O_DIRECT);
	if (fd < 0)
		die("open %s", file);
	for (i = 0; i < writers * blocks; i++) {
		if (pread(fd, got, bs, (off_t)i * bs) != (ssize_t)bs)
			die("pread %s", file);
		fill(want, bs, i % writers, i, rounds - 1);
		if (memcmp(got, want, bs)) {
			if (bad < 5)
				fprintf(stderr, "fpio-probe: block %d: got \"%.20s\" want \"%.20s\"\n",
					i, (char *)got, (char *)want);
			bad++;
		}
	}
	close(fd);
	printf("integrity: %d O_DIRECT writers x %d blocks x %d rounds x %zu B: %s"
	       " (%lld bytes verified, %d bad blocks, write phase %.2f s)\n",
	       writers, blocks, rounds, bs, bad ? "FAILED" : "ok",
	       (long long)writers * blocks * bs, bad,
	       (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "overlap"))
		return cmd_overlap(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "integrity"))
		return cmd_integrity(argc - 2, argv + 2);
	fprintf(stderr, "usage: fpio-probe overlap|integrity ...\n");
	return 2;
}
