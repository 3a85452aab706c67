/* counters-file.h: the example servers' --counters-file, test plumbing rather than part
 * of adopting fpio. fpio's counters (fpio_session_write_counters()) and the server's own
 * lines are written to PATH.tmp and renamed over PATH, so a reader never sees half a
 * file; on demand, and on SIGUSR1 from a thread that takes the signal with sigwait(), so
 * nothing runs inside a signal handler. Include after <fpio.h>. */
#ifndef FPIO_EXAMPLE_COUNTERS_FILE_H
#define FPIO_EXAMPLE_COUNTERS_FILE_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct counters_file {
	const char *prog; /* for messages */
	/* Where the server keeps its fpio handle (NULL: no fpio lines). */
	struct fpio_session *const *session;
	/* Writes the server's own "name value" lines; < 0 on error. */
	int (*own_lines)(int fd);
	char *path, *tmp; /* NULL path: no counters file */
	pthread_mutex_t lock;
	pthread_t tid;
	bool running;
	atomic_bool stopping;
};

/* Takes PATH (relative to the current directory, which fuse_daemonize() leaves) and
 * blocks SIGUSR1 in this thread and every thread it starts later: call before libfuse
 * starts any. False with errno set on failure. */
static inline bool counters_file_open(struct counters_file *cf, const char *path)
{
	char cwd[PATH_MAX];
	sigset_t set;

	pthread_mutex_init(&cf->lock, NULL);
	if (path[0] == '/')
		cf->path = strdup(path);
	else if (!getcwd(cwd, sizeof(cwd)) || asprintf(&cf->path, "%s/%s", cwd, path) < 0)
		cf->path = NULL;
	if (!cf->path || asprintf(&cf->tmp, "%s.tmp", cf->path) < 0)
		return false;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	return true;
}

static inline void counters_file_write(struct counters_file *cf)
{
	if (!cf->path)
		return;
	pthread_mutex_lock(&cf->lock);
	struct fpio_session *s = cf->session ? *cf->session : NULL;
	int fd = open(cf->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int err = fd < 0 ? -errno : s ? fpio_session_write_counters(s, fd) : 0;
	if (!err && cf->own_lines && cf->own_lines(fd) < 0)
		err = -EIO;
	if (fd >= 0 && close(fd) < 0 && !err)
		err = -errno;
	if (!err && rename(cf->tmp, cf->path) < 0)
		err = -errno;
	if (err)
		fprintf(stderr, "%s: %s: %s\n", cf->prog, cf->path, strerror(-err));
	pthread_mutex_unlock(&cf->lock);
}

static inline void *counters_file_thread(void *arg)
{
	struct counters_file *cf = arg;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	for (;;) {
		int sig;
		if (sigwait(&set, &sig) != 0)
			continue;
		if (atomic_load(&cf->stopping))
			return NULL;
		counters_file_write(cf);
	}
}

/* Starts the SIGUSR1 thread (once). */
static inline void counters_file_start(struct counters_file *cf)
{
	if (!cf->path || cf->running)
		return;
	cf->running = pthread_create(&cf->tid, NULL, counters_file_thread, cf) == 0;
	if (!cf->running)
		fprintf(stderr, "%s: cannot start the SIGUSR1 thread\n", cf->prog);
}

/* Stops the thread and writes the file a last time. */
static inline void counters_file_stop(struct counters_file *cf)
{
	if (cf->running) {
		atomic_store(&cf->stopping, true);
		pthread_kill(cf->tid, SIGUSR1);
		pthread_join(cf->tid, NULL);
		cf->running = false;
	}
	counters_file_write(cf);
}

static inline void counters_file_free(struct counters_file *cf)
{
	free(cf->path);
	free(cf->tmp);
	cf->path = cf->tmp = NULL;
}

#endif /* FPIO_EXAMPLE_COUNTERS_FILE_H */
