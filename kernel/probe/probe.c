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
 *       aio, uring  like odirect, each write submitted with io_submit / io_uring
 *                   (one context or ring per thread)
 *
 *   fpio-probe waits | setfl | exclusive | race | isize ...
 *       the race checks: see the comment above each cmd_*() below.
 *
 *   fpio-probe integrity FILE [--writers N] [--blocks B] [--rounds R] [--bs BYTES]
 *                        [--engine sync|aio|uring]
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
#include <linux/aio_abi.h>
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
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

/* Value of "name=" in a "a=1 b=2" status line (the whole word must match). */
static long stat_field(const char *line, const char *name)
{
	size_t n = strlen(name);
	const char *p = line;

	while ((p = strstr(p, name))) {
		if ((p == line || p[-1] == ' ') && p[n] == '=')
			return strtol(p + n + 1, NULL, 10);
		p += n;
	}
	fprintf(stderr, "fpio-probe: no %s= in \"%s\"\n", name, line);
	exit(2);
}

static long ctl_field(const char *ctl, const char *name)
{
	char buf[512];

	ctl_read(ctl, buf, sizeof(buf));
	return stat_field(buf, name);
}

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Wait (up to 20 s) until ctl's field reaches want. */
static void ctl_wait(const char *ctl, const char *name, long want)
{
	int i;

	for (i = 0; i < 2000; i++) {
		if (ctl_field(ctl, name) == want)
			return;
		msleep(10);
	}
	fprintf(stderr, "fpio-probe: %s never reached %s=%ld\n", ctl, name, want);
	exit(2);
}

/* Thread tid's scheduler state ('R', 'S', 'D', ...) and kernel stack
 * (/proc/self/task/TID/stack, CONFIG_STACKTRACE; the scheduler's and the lock slow
 * paths' own frames are not in it). */
static char task_state(pid_t tid, char *stack, size_t len)
{
	char path[64], buf[512], *p;
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open %s", path);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = 0;
	p = strrchr(buf, ')');
	snprintf(path, sizeof(path), "/proc/self/task/%d/stack", (int)tid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open %s", path);
	n = read(fd, stack, len - 1);
	close(fd);
	stack[n > 0 ? n : 0] = 0;
	return p && p[1] == ' ' ? p[2] : '?';
}

/* Wait (up to 20 s) until thread tid sleeps uninterruptibly (state D, as on a
 * rwsem) with the same kernel stack 50 ms apart; the stack is left in stack. */
static void blocked_wait(pid_t tid, char *stack, size_t len, const char *who)
{
	char *again = malloc(len);
	int i;

	for (i = 0; i < 400; i++) {
		if (task_state(tid, stack, len) == 'D') {
			msleep(50);
			if (task_state(tid, again, len) == 'D' && !strcmp(stack, again)) {
				free(again);
				return;
			}
		} else {
			msleep(50);
		}
	}
	fprintf(stderr, "fpio-probe: %s (tid %d) never blocked; its stack:\n%s\n", who,
		(int)tid, stack);
	exit(2);
}

/* ---------------- write engines: pwrite, aio (io_submit), io_uring ---------------- */

enum engine { ENG_SYNC, ENG_AIO, ENG_URING };

struct uring {
	int fd;
	unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};

struct eng {
	enum engine kind;
	aio_context_t aio;
	struct uring r;
};

static int eng_init(struct eng *e, enum engine kind)
{
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	if (kind == ENG_AIO)
		return syscall(__NR_io_setup, 4, &e->aio) < 0 ? -1 : 0;
	if (kind == ENG_URING) {
		struct io_uring_params p;
		size_t sqsz, cqsz;
		uint8_t *sq, *cq;

		memset(&p, 0, sizeof(p));
		e->r.fd = syscall(__NR_io_uring_setup, 4, &p);
		if (e->r.fd < 0)
			return -1;
		sqsz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
		cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
		if (p.features & IORING_FEAT_SINGLE_MMAP)
			sqsz = cqsz = sqsz > cqsz ? sqsz : cqsz;
		sq = mmap(NULL, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
			  e->r.fd, IORING_OFF_SQ_RING);
		if (sq == MAP_FAILED)
			return -1;
		cq = sq;
		if (!(p.features & IORING_FEAT_SINGLE_MMAP)) {
			cq = mmap(NULL, cqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
				  e->r.fd, IORING_OFF_CQ_RING);
			if (cq == MAP_FAILED)
				return -1;
		}
		e->r.sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe),
				 PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, e->r.fd,
				 IORING_OFF_SQES);
		if (e->r.sqes == MAP_FAILED)
			return -1;
		e->r.sq_tail = (unsigned *)(sq + p.sq_off.tail);
		e->r.sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
		e->r.sq_array = (unsigned *)(sq + p.sq_off.array);
		e->r.cq_head = (unsigned *)(cq + p.cq_off.head);
		e->r.cq_tail = (unsigned *)(cq + p.cq_off.tail);
		e->r.cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
		e->r.cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	}
	return 0;
}

static void eng_fini(struct eng *e)
{
	if (e->kind == ENG_AIO)
		syscall(__NR_io_destroy, e->aio);
	if (e->kind == ENG_URING)
		close(e->r.fd); /* the mappings go with the process */
}

/* One write at offset off (append: ignored by the kernel), waited for.
 * Returns bytes written or -1 with errno set. */
static ssize_t eng_pwrite(struct eng *e, int fd, const void *buf, size_t len, off_t off)
{
	if (e->kind == ENG_SYNC)
		return pwrite(fd, buf, len, off);
	if (e->kind == ENG_AIO) {
		struct iocb cb, *cbs[1] = { &cb };
		struct io_event ev;

		memset(&cb, 0, sizeof(cb));
		cb.aio_fildes = fd;
		cb.aio_lio_opcode = IOCB_CMD_PWRITE;
		cb.aio_buf = (uintptr_t)buf;
		cb.aio_nbytes = len;
		cb.aio_offset = off;
		if (syscall(__NR_io_submit, e->aio, 1, cbs) != 1)
			return -1;
		if (syscall(__NR_io_getevents, e->aio, 1, 1, &ev, NULL) != 1)
			return -1;
		if ((long long)ev.res < 0) {
			errno = -(long long)ev.res;
			return -1;
		}
		return ev.res;
	} else {
		struct uring *r = &e->r;
		unsigned tail = *r->sq_tail, idx = tail & *r->sq_mask, head;
		struct io_uring_sqe *sqe = &r->sqes[idx];
		int res;

		memset(sqe, 0, sizeof(*sqe));
		sqe->opcode = IORING_OP_WRITE;
		sqe->fd = fd;
		sqe->addr = (uintptr_t)buf;
		sqe->len = len;
		sqe->off = off;
		r->sq_array[idx] = idx;
		__atomic_store_n(r->sq_tail, tail + 1, __ATOMIC_RELEASE);
		if (syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
			return -1;
		head = __atomic_load_n(r->cq_head, __ATOMIC_ACQUIRE);
		while (head == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE)) {
			if (syscall(__NR_io_uring_enter, r->fd, 0, 1, IORING_ENTER_GETEVENTS,
				    NULL, 0) < 0 && errno != EINTR)
				return -1;
		}
		res = r->cqes[head & *r->cq_mask].res;
		__atomic_store_n(r->cq_head, head + 1, __ATOMIC_RELEASE);
		if (res < 0) {
			errno = -res;
			return -1;
		}
		return res;
	}
}

static enum engine engine_of(const char *name)
{
	if (!strcmp(name, "sync"))
		return ENG_SYNC;
	if (!strcmp(name, "aio"))
		return ENG_AIO;
	if (!strcmp(name, "uring"))
		return ENG_URING;
	fprintf(stderr, "fpio-probe: unknown engine %s\n", name);
	exit(2);
}

/* ---------------- overlap ---------------- */

struct ow {
	int fd;
	off_t off;
	int append;
	enum engine engine;
	pthread_barrier_t *bar;
	void *buf;
	ssize_t ret;
	int err;
	pid_t tid;
};

static void *ow_thread(void *arg)
{
	struct ow *w = arg;
	struct eng e;

	w->tid = gettid();
	if (eng_init(&e, w->engine) < 0) {
		w->ret = -1;
		w->err = errno;
		return NULL;
	}
	if (w->bar)
		pthread_barrier_wait(w->bar);
	if (w->append)
		w->ret = write(w->fd, w->buf, BS);
	else
		w->ret = eng_pwrite(&e, w->fd, w->buf, BS, w->off);
	w->err = errno;
	eng_fini(&e);
	return NULL;
}

/* Read back one block through a fresh fd and compare it with want. */
static int block_is(const char *file, off_t off, const void *want)
{
	void *got = xalign(BS);
	int fd = open(file, O_RDONLY | O_DIRECT), same;

	if (fd < 0)
		die("open %s", file);
	if (pread(fd, got, BS, off) != BS)
		die("pread %s", file);
	close(fd);
	same = !memcmp(got, want, BS);
	free(got);
	return same;
}

static int cmd_overlap(int argc, char **argv)
{
	const char *file, *ctl, *kind, *expect = NULL;
	int hold_ms = 3000, flags = O_RDWR, append = 0, i, fds[2], max = -1;
	off_t offs[2] = { 1 << 20, (1 << 20) + BS };
	enum engine engine = ENG_SYNC;
	void *pat[2];
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
	} else if (!strcmp(kind, "aio")) {
		flags |= O_DIRECT;
		engine = ENG_AIO;
	} else if (!strcmp(kind, "uring")) {
		flags |= O_DIRECT;
		engine = ENG_URING;
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
		pat[i] = xalign(BS);
		memset(pat[i], i ? 'q' : 'p', BS);
		w[i] = (struct ow){ .fd = fds[i], .off = offs[i], .append = append,
				    .engine = engine, .bar = &bar, .buf = pat[i] };
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
	/* the data must be where it was written (appends: somewhere past the old end) */
	if (!append) {
		for (i = 0; i < 2; i++) {
			if (!block_is(file, offs[i], pat[i])) {
				printf("probe[%s]: block at %jd does not hold what was written\n",
				       kind, (intmax_t)offs[i]);
				return 1;
			}
		}
	}
	if (expect && strcmp(expect, max >= 2 ? "overlap" : "serialized")) {
		printf("probe[%s]: EXPECTED %s\n", kind, expect);
		return 1;
	}
	return 0;
}

/* ---------------- integrity ---------------- */

struct iw {
	const char *file;
	enum engine engine;
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
	struct eng e;

	if (fd < 0 || eng_init(&e, w->engine) < 0) {
		perror("fpio-probe: integrity open");
		w->fail = 1;
		return NULL;
	}
	for (r = 0; r < w->rounds; r++) {
		for (blk = w->id; blk < w->blocks * w->writers; blk += w->writers) {
			fill(b, w->bs, w->id, blk, r);
			if (eng_pwrite(&e, fd, b, w->bs, (off_t)blk * w->bs) != (ssize_t)w->bs) {
				perror("fpio-probe: integrity pwrite");
				w->fail = 1;
				goto out;
			}
		}
	}
out:
	eng_fini(&e);
	close(fd);
	free(b);
	return NULL;
}

static int cmd_integrity(int argc, char **argv)
{
	int writers = 8, blocks = 64, rounds = 8, i, fd, bad = 0, fail = 0;
	size_t bs = BS;
	enum engine engine = ENG_SYNC;
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
		else if (!strcmp(argv[i], "--engine"))
			engine = engine_of(argv[i + 1]);
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
		w[i] = (struct iw){ .file = file, .engine = engine, .id = i, .writers = writers,
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
	printf("integrity: %d O_DIRECT %s writers x %d blocks x %d rounds x %zu B: %s"
	       " (%lld bytes verified, %d bad blocks, write phase %.2f s)\n",
	       writers, engine == ENG_AIO ? "aio" : engine == ENG_URING ? "io_uring" : "pwrite",
	       blocks, rounds, bs, bad ? "FAILED" : "ok",
	       (long long)writers * blocks * bs, bad,
	       (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	return bad ? 1 : 0;
}


/* isize's writer: w->rounds is the original size in blocks, w->blocks the number of
 * extending writes (K). Extending block i of writer id: s0/BS + i*N + id. */
static void *isize_thread(void *arg)
{
	struct iw *w = arg;
	uint8_t *b = xalign(BS);
	int fd = open(w->file, O_RDWR | O_DIRECT), i, s0b = w->rounds;

	if (fd < 0) {
		w->fail = 1;
		return NULL;
	}
	for (i = 0; i < w->blocks; i++) {
		int ov = (i * w->writers + w->id) % (s0b < 256 ? s0b : 256);
		int ex = s0b + i * w->writers + w->id;

		fill(b, BS, w->id, ov, i);
		if (pwrite(fd, b, BS, (off_t)ov * BS) != BS)
			w->fail = 1;
		fill(b, BS, w->id, ex, 1000);
		if (pwrite(fd, b, BS, (off_t)ex * BS) != BS)
			w->fail = 1;
		if (w->fail) {
			perror("fpio-probe: isize write");
			break;
		}
	}
	close(fd);
	free(b);
	return NULL;
}

/* ---------------- waits ---------------- */

/*
 * waits FILE CTL KIND
 *   An O_DIRECT overwrite of FILE (the shared lock on a patched kernel) is held inside
 *   innerfs; then a second write of KIND starts and blocks. Where it blocks shows
 *   which lock it asked for: a write that needs the fuse inode lock exclusively waits
 *   for it in fuse_passthrough_write_iter(), before backing_file_write_iter(); one
 *   that got the lock shared waits inside the backing filesystem instead, below
 *   backing_file_write_iter() (innerfs's own mount serializes appends, and buffered
 *   writes go through the page cache of a direct-io file...). KIND:
 *     append      O_DIRECT|O_APPEND write
 *     rwf-append  O_DIRECT pwritev2(RWF_APPEND)
 *     buffered    buffered overwrite
 *   Each must wait for the fuse inode lock. Its kernel stack is read from
 *   /proc/self/task/TID/stack (CONFIG_STACKTRACE) once it sleeps (state D) with the
 *   same stack twice 50 ms apart.
 */
struct ww {
	const char *file;
	const char *kind;
	pid_t tid;
	ssize_t ret;
	int err;
};

static void *waits_thread(void *arg)
{
	struct ww *w = arg;
	void *b = xalign(BS);
	int flags = O_RDWR, fd;

	memset(b, 'w', BS);
	if (!strcmp(w->kind, "append"))
		flags |= O_DIRECT | O_APPEND;
	else if (!strcmp(w->kind, "rwf-append"))
		flags |= O_DIRECT;
	fd = open(w->file, flags);
	__atomic_store_n(&w->tid, gettid(), __ATOMIC_SEQ_CST);
	if (fd < 0) {
		w->ret = -1;
		w->err = errno;
		return NULL;
	}
	if (!strcmp(w->kind, "rwf-append")) {
		struct iovec iov = { b, BS };

		w->ret = pwritev2(fd, &iov, 1, 0, RWF_APPEND);
	} else if (!strcmp(w->kind, "append")) {
		w->ret = write(fd, b, BS);
	} else {
		w->ret = pwrite(fd, b, BS, 2 << 20);
	}
	w->err = errno;
	close(fd);
	free(b);
	return NULL;
}

static int cmd_waits(int argc, char **argv)
{
	const char *file, *ctl, *kind;
	char stack[4096];
	struct ow h;
	struct ww w;
	pthread_t hth, wth;
	void *buf;
	int fd, in_backing;

	if (argc != 3 || (strcmp(argv[2], "append") && strcmp(argv[2], "rwf-append") &&
			  strcmp(argv[2], "buffered"))) {
		fprintf(stderr, "usage: fpio-probe waits FILE CTL append|rwf-append|buffered\n");
		return 2;
	}
	file = argv[0];
	ctl = argv[1];
	kind = argv[2];
	buf = xalign(BS);
	memset(buf, 'h', BS);
	fd = open(file, O_RDWR | O_DIRECT);
	if (fd < 0)
		die("open %s", file);
	if (pwrite(fd, buf, BS, 0) != BS) /* warm-up: S_NOSEC */
		die("warm-up write %s", file);
	ctl_write(ctl, "reset");
	ctl_write(ctl, "hold 25000");
	h = (struct ow){ .fd = fd, .off = 1 << 20, .engine = ENG_SYNC, .buf = buf };
	pthread_create(&hth, NULL, ow_thread, &h);
	ctl_wait(ctl, "inflight", 1);
	w = (struct ww){ .file = file, .kind = kind };
	pthread_create(&wth, NULL, waits_thread, &w);
	while (!__atomic_load_n(&w.tid, __ATOMIC_SEQ_CST))
		msleep(1);
	blocked_wait(w.tid, stack, sizeof(stack), kind);
	in_backing = strstr(stack, "backing_file_write_iter") != NULL;
	ctl_write(ctl, "release");
	ctl_write(ctl, "nohold");
	pthread_join(hth, NULL);
	pthread_join(wth, NULL);
	close(fd);
	if (h.ret != BS || w.ret != BS) {
		fprintf(stderr, "fpio-probe: waits: write failed: %s\n",
			strerror(h.ret != BS ? h.err : w.err));
		return 2;
	}
	printf("waits[%s]: behind a held O_DIRECT write, it waited %s\n", kind,
	       in_backing ? "inside the backing filesystem (it got the fuse inode lock shared)"
			  : "for the fuse inode lock");
	if (in_backing)
		printf("waits[%s]: its stack:\n%s", kind, stack);
	return in_backing ? 1 : 0;
}

/* ---------------- setfl ---------------- */

/* Is the page at off of path in the page cache? */
static int cached(const char *path, off_t off)
{
	int fd = open(path, O_RDONLY);
	unsigned char v = 0;
	struct stat st;
	void *m;

	if (fd < 0 || fstat(fd, &st) < 0)
		die("open %s", path);
	m = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		die("mmap %s", path);
	if (mincore((char *)m + off, BS, &v) < 0)
		die("mincore %s", path);
	munmap(m, st.st_size);
	close(fd);
	return v & 1;
}

static void drop_cache(const char *path)
{
	int fd = open(path, O_RDWR);

	if (fd < 0 || fdatasync(fd) < 0 ||
	    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
		die("drop cache of %s", path);
	close(fd);
}

static off_t size_of(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		die("stat %s", path);
	return st.st_size;
}

/*
 * One setfl case: open file with flags, change them with F_SETFL (set, then
 * clear), write BS bytes of fill at off. Only the fcntl() decides what the
 * backing file should do.
 */
static void setfl_write(const char *file, int flags, int set, int clear, void *b, int fill,
			off_t off)
{
	int fd = open(file, flags);

	if (fd < 0 || fcntl(fd, F_SETFL, (fcntl(fd, F_GETFL) | set) & ~clear) < 0)
		die("open/F_SETFL %s", file);
	memset(b, fill, BS);
	if (pwrite(fd, b, BS, off) != BS)
		die("pwrite %s", file);
	close(fd);
}

/*
 * setfl FILE BACKING --expect fixed|upstream
 *   FILE: a passthrough file (ptfs) whose backing file is BACKING (on ext4, for the
 *   page-cache checks). fcntl(F_SETFL) toggles of O_APPEND and O_DIRECT on FILE must
 *   take effect on the backing file:
 *     append-off  open O_APPEND, clear it, pwrite at 0: lands at 0
 *     append-on   open without, set O_APPEND, write: lands at the end
 *     direct-on   open buffered, set O_DIRECT, write: the backing page is not cached
 *     direct-off  open O_DIRECT, clear it, write: the backing page is cached
 *   "upstream" asserts the behaviour of released kernels instead, where the backing
 *   file keeps the flags of the open (append-off lands at the end, direct-on is
 *   buffered, direct-off is direct); append-on is the same in both.
 */
static int cmd_setfl(int argc, char **argv)
{
	const char *file, *back;
	int fixed, fails = 0, landed_at_0, at_end, c;
	off_t size0;
	void *b = xalign(BS);
	const char *res;

	if (argc != 4 || strcmp(argv[2], "--expect") ||
	    (strcmp(argv[3], "fixed") && strcmp(argv[3], "upstream"))) {
		fprintf(stderr, "usage: fpio-probe setfl FILE BACKING --expect fixed|upstream\n");
		return 2;
	}
	file = argv[0];
	back = argv[1];
	fixed = !strcmp(argv[3], "fixed");

	/* append-off */
	size0 = size_of(back);
	setfl_write(file, O_RDWR | O_APPEND, 0, O_APPEND, b, 'A', 0);
	landed_at_0 = block_is(back, 0, b);
	at_end = size_of(back) == size0 + BS && block_is(back, size0, b);
	res = landed_at_0 && size_of(back) == size0 ? "at offset 0" : at_end ? "at the end" : "elsewhere";
	c = fixed ? landed_at_0 && size_of(back) == size0 : at_end;
	printf("setfl[append-off]: O_APPEND cleared, pwrite(0) landed %s: %s\n", res, c ? "ok" : "WRONG");
	fails += !c;

	/* append-on */
	size0 = size_of(back);
	setfl_write(file, O_RDWR, O_APPEND, 0, b, 'B', 0);
	at_end = size_of(back) == size0 + BS && block_is(back, size0, b);
	printf("setfl[append-on]: O_APPEND set, write landed %s: %s\n",
	       at_end ? "at the end" : block_is(back, 0, b) ? "at offset 0" : "elsewhere",
	       at_end ? "ok" : "WRONG");
	fails += !at_end;

	/* direct-on: the backing write must bypass the backing page cache */
	drop_cache(back);
	setfl_write(file, O_RDWR, O_DIRECT, 0, b, 'C', 8 * BS);
	c = cached(back, 8 * BS);
	printf("setfl[direct-on]: O_DIRECT set, backing write was %s: %s\n",
	       c ? "buffered" : "direct", c == !fixed ? "ok" : "WRONG");
	fails += c != !fixed;

	/* direct-off */
	drop_cache(back);
	setfl_write(file, O_RDWR | O_DIRECT, 0, O_DIRECT, b, 'D', 16 * BS);
	c = cached(back, 16 * BS);
	printf("setfl[direct-off]: O_DIRECT cleared, backing write was %s: %s\n",
	       c ? "buffered" : "direct", c == fixed ? "ok" : "WRONG");
	fails += c != fixed;

	printf("setfl: %d wrong (expected: %s)\n", fails, fixed ? "toggles reach the backing file" :
	       "released kernels' behaviour");
	return fails ? 1 : 0;
}

/* ---------------- exclusive ---------------- */

/*
 * exclusive FILE CTL PTCTL truncate|fallocate|chmod
 *   An O_DIRECT overwrite of FILE (shared lock on a patched kernel) is held inside
 *   innerfs; then the operation runs. It takes the inode lock exclusively, so its
 *   request (SETATTR, FALLOCATE) must reach ptfs only after the write is done:
 *   ptfs (--inner-ctl) counts requests that arrive while innerfs has a WRITE in
 *   flight (PTCTL's setattr_during_write / fallocate_during_write), which must stay
 *   0. Also asserts that the request did arrive and the write completed with its
 *   data in place.
 */
static int cmd_exclusive(int argc, char **argv)
{
	const char *file, *ctl, *ptctl, *op;
	long during0, n0, n1;
	const char *counter;
	char dwname[64];
	struct ow w;
	pthread_t th;
	void *buf;
	int fd, wfd, r;

	if (argc != 4) {
		fprintf(stderr, "usage: fpio-probe exclusive FILE CTL PTCTL truncate|fallocate|chmod\n");
		return 2;
	}
	file = argv[0];
	ctl = argv[1];
	ptctl = argv[2];
	op = argv[3];
	counter = !strcmp(op, "fallocate") ? "fallocate" : "setattr";
	snprintf(dwname, sizeof(dwname), "%s_during_write", counter);
	buf = xalign(BS);
	memset(buf, 'x', BS);
	fd = open(file, O_RDWR);
	wfd = open(file, O_RDWR | O_DIRECT);
	if (fd < 0 || wfd < 0)
		die("open %s", file);
	if (pwrite(wfd, buf, BS, 0) != BS) /* warm-up: S_NOSEC */
		die("warm-up write %s", file);
	during0 = ctl_field(ptctl, dwname);
	n0 = ctl_field(ptctl, counter);
	ctl_write(ctl, "reset");
	ctl_write(ctl, "hold 2000");
	memset(buf, 'y', BS);
	w = (struct ow){ .fd = wfd, .off = 1 << 20, .engine = ENG_SYNC, .buf = buf };
	pthread_create(&th, NULL, ow_thread, &w);
	ctl_wait(ctl, "inflight", 1);
	if (!strcmp(op, "truncate"))
		r = ftruncate(fd, size_of(file));
	else if (!strcmp(op, "fallocate"))
		r = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, BS);
	else if (!strcmp(op, "chmod"))
		r = fchmod(fd, 0644);
	else {
		fprintf(stderr, "fpio-probe: unknown operation %s\n", op);
		return 2;
	}
	if (r < 0)
		die("%s", op);
	pthread_join(th, NULL);
	ctl_write(ctl, "nohold");
	n1 = ctl_field(ptctl, counter);
	if (w.ret != BS) {
		errno = w.err;
		die("held write to %s", file);
	}
	r = ctl_field(ptctl, dwname) - during0;
	printf("exclusive[%s]: %ld %s request(s), %d while a write was in flight: %s\n", op,
	       n1 - n0, counter, r, r == 0 && n1 > n0 && block_is(file, 1 << 20, buf) ? "ok" : "WRONG");
	close(fd);
	close(wfd);
	return r == 0 && n1 > n0 && block_is(file, 1 << 20, buf) ? 0 : 1;
}

/* ---------------- race ---------------- */

/*
 * race FILE PTCTL [--seconds S] [--writers N] [--engine E] [--stat] [--truncate]
 *      [--fallocate] [--chmod]
 *   N O_DIRECT overwriters (each its own blocks of the first N*64) for S seconds,
 *   against threads that stat() the file (each write invalidates the attributes,
 *   so each stat refreshes them and clears S_NOSEC: the next write's privilege
 *   removal asks the server again), truncate it to its own size, fallocate
 *   (KEEP_SIZE) past the written blocks, or chmod it 0644. Then asserts: every
 *   block holds its writer's last round, the size did not change, no write failed,
 *   and ptfs saw no SETATTR or FALLOCATE while a backing WRITE was in flight, nor a
 *   GETXATTR unless truncate (which asks before taking the lock) is in the mix
 *   (PTCTL's *_during_write; the backing file on innerfs: ptfs --inner-ctl).
 */
struct rctx {
	const char *file;
	enum engine engine;
	int id, writers, rounds, fail;
	volatile int *stop;
	long ops;
	const char *op;
};

#define RACE_BLOCKS 64

static void *race_writer(void *arg)
{
	struct rctx *c = arg;
	uint8_t *b = xalign(BS);
	int fd = open(c->file, O_RDWR | O_DIRECT), blk, r = 0;
	struct eng e;

	if (fd < 0 || eng_init(&e, c->engine) < 0) {
		c->fail = 1;
		return NULL;
	}
	while (!*c->stop) {
		for (blk = c->id; blk < RACE_BLOCKS * c->writers; blk += c->writers) {
			fill(b, BS, c->id, blk, r);
			if (eng_pwrite(&e, fd, b, BS, (off_t)blk * BS) != BS) {
				perror("fpio-probe: race write");
				c->fail = 1;
				goto out;
			}
		}
		r++;
	}
out:
	c->rounds = r;
	eng_fini(&e);
	close(fd);
	free(b);
	return NULL;
}

static void *race_other(void *arg)
{
	struct rctx *c = arg;
	int fd = open(c->file, O_RDWR);
	struct stat st;
	off_t size;

	if (fd < 0 || fstat(fd, &st) < 0) {
		c->fail = 1;
		return NULL;
	}
	size = st.st_size;
	while (!*c->stop) {
		int r = 0;

		if (!strcmp(c->op, "stat"))
			r = fstat(fd, &st);
		else if (!strcmp(c->op, "truncate"))
			r = ftruncate(fd, size);
		else if (!strcmp(c->op, "fallocate"))
			r = fallocate(fd, FALLOC_FL_KEEP_SIZE, size - 16 * BS, 16 * BS);
		else if (!strcmp(c->op, "chmod"))
			r = fchmod(fd, 0644);
		if (r < 0) {
			fprintf(stderr, "fpio-probe: race %s: %s\n", c->op, strerror(errno));
			c->fail = 1;
			break;
		}
		c->ops++;
		/* stat back to back: every refresh clears S_NOSEC, the more the better */
		if (strcmp(c->op, "stat"))
			msleep(1);
	}
	close(fd);
	return NULL;
}

static int cmd_race(int argc, char **argv)
{
	const char *file, *ptctl, *ops[4];
	int seconds = 5, writers = 4, nops = 0, i, bad = 0, fail = 0, fd;
	enum engine engine = ENG_SYNC;
	volatile int stop = 0;
	struct rctx wc[16], oc[4];
	pthread_t wt[16], ot[4];
	long during0, gx0;
	int count_getxattr = 1;
	off_t size0;
	uint8_t *got, *want;

	if (argc < 2) {
		fprintf(stderr, "usage: fpio-probe race FILE PTCTL [--seconds S] [--writers N] [--engine E] [--stat] [--truncate] [--fallocate] [--chmod]\n");
		return 2;
	}
	file = argv[0];
	ptctl = argv[1];
	for (i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--writers") && i + 1 < argc)
			writers = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--engine") && i + 1 < argc)
			engine = engine_of(argv[++i]);
		else if (!strncmp(argv[i], "--", 2) && nops < 4)
			ops[nops++] = argv[i] + 2;
		else {
			fprintf(stderr, "fpio-probe: bad race argument %s\n", argv[i]);
			return 2;
		}
	}
	if (writers < 1 || writers > 16 || seconds < 1)
		return 2;
	size0 = size_of(file);
	if (size0 < (off_t)RACE_BLOCKS * writers * BS + 16 * BS) {
		fprintf(stderr, "fpio-probe: %s too small\n", file);
		return 2;
	}
	for (i = 0; i < nops; i++)
		if (!strcmp(ops[i], "truncate"))
			count_getxattr = 0;
#define RACE_DURING() (ctl_field(ptctl, "setattr_during_write") + \
		       ctl_field(ptctl, "fallocate_during_write") + \
		       (count_getxattr ? ctl_field(ptctl, "getxattr_during_write") : 0))
	during0 = RACE_DURING();
	gx0 = ctl_field(ptctl, "getxattr");
	for (i = 0; i < writers; i++) {
		wc[i] = (struct rctx){ .file = file, .engine = engine, .id = i,
				       .writers = writers, .stop = &stop };
		pthread_create(&wt[i], NULL, race_writer, &wc[i]);
	}
	for (i = 0; i < nops; i++) {
		oc[i] = (struct rctx){ .file = file, .stop = &stop, .op = ops[i] };
		pthread_create(&ot[i], NULL, race_other, &oc[i]);
	}
	sleep(seconds);
	stop = 1;
	for (i = 0; i < writers; i++) {
		pthread_join(wt[i], NULL);
		fail |= wc[i].fail || wc[i].rounds == 0;
	}
	for (i = 0; i < nops; i++) {
		pthread_join(ot[i], NULL);
		fail |= oc[i].fail || oc[i].ops == 0;
	}
	got = xalign(BS);
	want = xalign(BS);
	fd = open(file, O_RDONLY | O_DIRECT);
	if (fd < 0)
		die("open %s", file);
	for (i = 0; i < RACE_BLOCKS * writers; i++) {
		int wr = i % writers;

		if (pread(fd, got, BS, (off_t)i * BS) != BS)
			die("pread %s", file);
		fill(want, BS, wr, i, wc[wr].rounds - 1);
		if (memcmp(got, want, BS)) /* writers stop between rounds, never inside one */
			bad++;
	}
	close(fd);
	{
		long during = RACE_DURING() - during0;
		long gx = ctl_field(ptctl, "getxattr") - gx0;
		off_t size1 = size_of(file);
		long rounds = 0, nop = 0;

		for (i = 0; i < writers; i++)
			rounds += wc[i].rounds;
		for (i = 0; i < nops; i++)
			nop += oc[i].ops;
		printf("race[%s%s%s%s%s]: %d %s writers, %ld rounds, %ld other ops, %ld GETXATTR, "
		       "%ld exclusive-only requests during a write, %d bad blocks, size %s: %s\n",
		       nops > 0 ? ops[0] : "", nops > 1 ? "," : "", nops > 1 ? ops[1] : "",
		       nops > 2 ? "," : "", nops > 2 ? ops[2] : "", writers,
		       engine == ENG_AIO ? "aio" : engine == ENG_URING ? "io_uring" : "pwrite",
		       rounds, nop, gx, during, bad, size1 == size0 ? "unchanged" : "CHANGED",
		       !fail && !bad && !during && size1 == size0 ? "ok" : "WRONG");
		return !fail && !bad && !during && size1 == size0 ? 0 : 1;
	}
}

/* ---------------- isize ---------------- */

/*
 * isize FILE BACKING [--writers N] [--extends K]
 *   N threads, each alternating O_DIRECT overwrites inside the file's first MiB with
 *   extending writes of its own blocks past the original end (block S0/BS + i*N + id,
 *   i < K). Afterwards the size the kernel has cached (statx AT_STATX_DONT_SYNC), the
 *   size after a refresh (stat) and the backing file's size must all be exactly
 *   S0 + N*K*BS, and every extending block must hold what its writer wrote.
 */
static int cmd_isize(int argc, char **argv)
{
	const char *file, *back;
	int writers = 4, extends = 32, i, bad = 0, fd;
	off_t s0, want_size, cached_size, fresh_size, back_size;
	struct statx stx;
	pthread_t th[16];
	struct iw w[16];
	uint8_t *got, *want;

	if (argc < 2) {
		fprintf(stderr, "usage: fpio-probe isize FILE BACKING [--writers N] [--extends K]\n");
		return 2;
	}
	file = argv[0];
	back = argv[1];
	for (i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--writers"))
			writers = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--extends"))
			extends = atoi(argv[i + 1]);
	}
	if (writers < 1 || writers > 16 || extends < 1)
		return 2;
	s0 = size_of(file);
	if (s0 % BS || s0 < 1 << 20) {
		fprintf(stderr, "fpio-probe: %s: size must be a multiple of 4 KiB >= 1 MiB\n", file);
		return 2;
	}
	for (i = 0; i < writers; i++) {
		w[i] = (struct iw){ .file = file, .id = i, .writers = writers,
				    .blocks = extends, .rounds = (int)(s0 / BS) };
		pthread_create(&th[i], NULL, isize_thread, &w[i]);
	}
	for (i = 0; i < writers; i++) {
		pthread_join(th[i], NULL);
		bad |= w[i].fail;
	}
	if (bad)
		return 1;
	want_size = s0 + (off_t)writers * extends * BS;
	if (syscall(__NR_statx, AT_FDCWD, file, AT_STATX_DONT_SYNC, STATX_SIZE, &stx) < 0)
		die("statx %s", file);
	cached_size = stx.stx_size;
	fresh_size = size_of(file);
	back_size = size_of(back);
	got = xalign(BS);
	want = xalign(BS);
	fd = open(file, O_RDONLY | O_DIRECT);
	if (fd < 0)
		die("open %s", file);
	for (i = 0; i < writers * extends; i++) {
		if (pread(fd, got, BS, s0 + (off_t)i * BS) != BS)
			die("pread %s", file);
		fill(want, BS, i % writers, (int)(s0 / BS) + i, 1000);
		if (memcmp(got, want, BS))
			bad++;
	}
	close(fd);
	printf("isize: %d writers, %d extending + %d overwriting writes each: size cached %jd, "
	       "refreshed %jd, backing %jd, want %jd; %d bad blocks: %s\n", writers, extends,
	       extends, (intmax_t)cached_size, (intmax_t)fresh_size, (intmax_t)back_size,
	       (intmax_t)want_size, bad,
	       cached_size == want_size && fresh_size == want_size && back_size == want_size &&
	       !bad ? "ok" : "WRONG");
	return cached_size == want_size && fresh_size == want_size && back_size == want_size &&
	       !bad ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "overlap"))
		return cmd_overlap(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "integrity"))
		return cmd_integrity(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "waits"))
		return cmd_waits(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "setfl"))
		return cmd_setfl(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "exclusive"))
		return cmd_exclusive(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "race"))
		return cmd_race(argc - 2, argv + 2);
	if (argc >= 2 && !strcmp(argv[1], "isize"))
		return cmd_isize(argc - 2, argv + 2);
	fprintf(stderr, "usage: fpio-probe overlap|integrity|waits|setfl|exclusive|race|isize ...\n");
	return 2;
}
