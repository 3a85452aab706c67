// SPDX-License-Identifier: GPL-2.0
/*
 * v4-check BACKING_FILE PASSTHROUGH_FILE
 *
 * fcntl(F_SETFL) toggles of O_APPEND and O_DIRECT on a passthrough file (checked
 * on the backing file), then stat() in a loop racing four O_DIRECT overwriters
 * for 8 s.  Build: gcc -O2 -Wall -static -pthread -o v4-check v4-check.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int fails;
#define CHECK(c, ...) do { if (c) printf("ok - " __VA_ARGS__); else { fails++; printf("not ok - " __VA_ARGS__); } printf("\n"); } while (0)

static void fill(const char *path, size_t size, char c)
{
	char *b = malloc(size);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	memset(b, c, size);
	if (fd < 0 || write(fd, b, size) != (ssize_t)size) { perror(path); exit(2); }
	close(fd);
	free(b);
}

static const char *ptfile;
static volatile int stop;

static void *writer(void *arg)
{
	long id = (long)arg;
	void *buf = NULL;
	int fd = open(ptfile, O_RDWR | O_DIRECT);
	unsigned long n = 0;

	if (fd < 0 || posix_memalign(&buf, 4096, 4096)) { perror("writer open"); exit(2); }
	memset(buf, 'a' + id, 4096);
	while (!stop) {
		if (pwrite(fd, buf, 4096, (off_t)((id * 64 + n++ % 64) * 4096)) != 4096) {
			perror("pwrite");
			exit(2);
		}
	}
	close(fd);
	return (void *)n;
}

static void race(int secs, int do_stat)
{
	pthread_t t[4];
	unsigned long stats = 0, writes = 0;
	time_t end = time(NULL) + secs;
	struct stat st;
	long i;

	stop = 0;
	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, writer, (void *)i);
	while (time(NULL) < end) {
		if (do_stat) {
			stat(ptfile, &st);
			stats++;
		} else {
			usleep(10000);
		}
	}
	stop = 1;
	for (i = 0; i < 4; i++) {
		void *r;

		pthread_join(t[i], &r);
		writes += (unsigned long)r;
	}
	CHECK(writes > 0, "4 O_DIRECT overwriters for %d s%s: %lu writes, %lu stats",
	      secs, do_stat ? " racing stat()" : "", writes, stats);
}

int main(int argc, char **argv)
{
	/* argv: backing file, passthrough file (same file through ptfs) */
	const char *bk = argv[1];
	struct stat st;
	char got[4];
	int fd, fl;

	ptfile = argv[2];

	/* O_APPEND cleared by fcntl: pwrite(0) must overwrite offset 0 */
	fill(bk, 1 << 20, 'a');
	fd = open(ptfile, O_WRONLY | O_APPEND);
	fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_APPEND);
	CHECK(pwrite(fd, "XXXX", 4, 0) == 4, "pwrite after clearing O_APPEND");
	close(fd);
	stat(bk, &st);
	fd = open(bk, O_RDONLY);
	CHECK(read(fd, got, 4) == 4 && !memcmp(got, "XXXX", 4) && st.st_size == 1 << 20,
	      "O_APPEND cleared by fcntl: write landed at 0 (size %lld)", (long long)st.st_size);
	close(fd);

	/* O_DIRECT cleared by fcntl: an unaligned write must work */
	fd = open(ptfile, O_RDWR | O_DIRECT);
	fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_DIRECT);
	errno = 0;
	CHECK(pwrite(fd, "unaligned", 9, 1) == 9, "O_DIRECT cleared by fcntl: unaligned pwrite (%s)", strerror(errno));
	close(fd);

	/* O_DIRECT set by fcntl on a buffered open, then an aligned write */
	{
		void *buf = NULL;
		fd = open(ptfile, O_RDWR);
		fl = fcntl(fd, F_GETFL);
		CHECK(fcntl(fd, F_SETFL, fl | O_DIRECT) == 0, "fcntl sets O_DIRECT");
		posix_memalign(&buf, 4096, 4096);
		memset(buf, 'd', 4096);
		CHECK(pwrite(fd, buf, 4096, 8192) == 4096, "aligned pwrite after setting O_DIRECT");
		errno = 0;
		CHECK(pwrite(fd, "u", 1, 3) < 0 || 1, "unaligned pwrite after setting O_DIRECT returned (%s)", strerror(errno));
		close(fd);
	}

	/*
	 * Four O_DIRECT overwriters, first alone (after the first write the
	 * inode is S_NOSEC and the writes take the shared lock), then racing
	 * stat() in a loop (S_NOSEC cleared and set again all the time).
	 */
	fill(bk, 4 << 20, 'z');
	race(3, 0);
	race(8, 1);
	stat(bk, &st);
	CHECK(st.st_size == 4 << 20, "size unchanged after overwrites (%lld)", (long long)st.st_size);

	return fails ? 1 : 0;
}
