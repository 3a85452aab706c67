/* openbench: metadata-rate helper for bench/bench.py.
 *
 *   openbench open DIR NFILES THREADS SECONDS [rdonly|rdwr [MAXOPS]]
 *   openbench stat DIR NFILES THREADS SECONDS
 *   openbench create DIR NFILES          (make f00000.. as empty files)
 *
 * Files are DIR/fNNNNN. Every thread walks all NFILES files in turn (so several
 * threads hit the same inodes, as concurrent opens of one tree do) until the
 * deadline. One untimed warm-up pass first, so the kernel's dentry cache is
 * populated and we measure open/close (or stat), not the first LOOKUPs.
 * MAXOPS (open only) stops after that many ops in total, if the deadline is not hit first.
 * Prints one line: "<ops> <seconds> <ops_per_sec>". Exit 1 on any syscall error:
 * a benchmark that silently counts failures would lie.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *g_dir;
static long g_nfiles;
static double g_seconds;
static int g_open_flags = O_RDONLY;
static int g_stat_mode;
static long g_max_ops_per_thread;  /* 0: no limit */
static atomic_int g_go;
static atomic_int g_failed;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void path_of(char *buf, size_t len, long i)
{
    snprintf(buf, len, "%s/f%05ld", g_dir, i);
}

static int one_op(const char *path)
{
    if (g_stat_mode) {
        struct stat st;
        if (stat(path, &st) != 0) {
            fprintf(stderr, "openbench: stat %s: %s\n", path, strerror(errno));
            return -1;
        }
        return 0;
    }
    int fd = open(path, g_open_flags | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "openbench: open %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (close(fd) != 0) {
        fprintf(stderr, "openbench: close %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

struct worker {
    pthread_t tid;
    long start;      /* threads start at different offsets to spread contention */
    long ops;
    double deadline;
};

static void *run_worker(void *arg)
{
    struct worker *w = arg;
    char path[4096];
    long i = w->start;
    while (!atomic_load(&g_go))
        ;
    /* Check the clock every 64 ops: clock_gettime is cheap but not free. */
    for (;;) {
        for (int k = 0; k < 64; k++) {
            path_of(path, sizeof path, i);
            if (one_op(path) != 0) {
                atomic_store(&g_failed, 1);
                return NULL;
            }
            w->ops++;
            if (++i == g_nfiles)
                i = 0;
        }
        if (atomic_load(&g_failed) || now() >= w->deadline)
            break;
        if (g_max_ops_per_thread && w->ops >= g_max_ops_per_thread)
            break;
    }
    return NULL;
}

static int do_create(void)
{
    char path[4096];
    for (long i = 0; i < g_nfiles; i++) {
        path_of(path, sizeof path, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0 || close(fd) != 0) {
            fprintf(stderr, "openbench: create %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: openbench open|stat DIR NFILES THREADS SECONDS [rdonly|rdwr]\n"
                        "       openbench create DIR NFILES\n");
        return 2;
    }
    g_dir = argv[2];
    g_nfiles = strtol(argv[3], NULL, 10);
    if (g_nfiles <= 0)
        return 2;
    if (strcmp(argv[1], "create") == 0)
        return do_create();
    if (argc < 6)
        return 2;
    g_stat_mode = strcmp(argv[1], "stat") == 0;
    if (!g_stat_mode && strcmp(argv[1], "open") != 0)
        return 2;
    int nthreads = atoi(argv[4]);
    g_seconds = atof(argv[5]);
    if (nthreads < 1 || g_seconds <= 0)
        return 2;
    if (argc > 6 && strcmp(argv[6], "rdwr") == 0)
        g_open_flags = O_RDWR;
    if (argc > 7)
        g_max_ops_per_thread = (strtol(argv[7], NULL, 10) + nthreads - 1) / nthreads;

    char path[4096];
    for (long i = 0; i < g_nfiles; i++) {   /* warm-up pass, untimed */
        path_of(path, sizeof path, i);
        if (one_op(path) != 0)
            return 1;
    }

    struct worker *ws = calloc(nthreads, sizeof *ws);
    if (!ws)
        return 1;
    for (int t = 0; t < nthreads; t++) {
        ws[t].start = (g_nfiles * t) / nthreads;
        if (pthread_create(&ws[t].tid, NULL, run_worker, &ws[t]) != 0) {
            fprintf(stderr, "openbench: pthread_create failed\n");
            return 1;
        }
    }
    double t0 = now();
    for (int t = 0; t < nthreads; t++)
        ws[t].deadline = t0 + g_seconds;
    atomic_store(&g_go, 1);
    long total = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(ws[t].tid, NULL);
        total += ws[t].ops;
    }
    double el = now() - t0;
    free(ws);
    if (atomic_load(&g_failed))
        return 1;
    printf("%ld %.6f %.1f\n", total, el, total / el);
    return 0;
}
