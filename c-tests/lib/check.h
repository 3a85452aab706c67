/* Tiny test framework for the fpio C tests: TAP output (meson runs these
 * with protocol 'tap'), one function per behaviour, failures recorded and
 * execution continued so every behaviour is reported in one run.
 * Also: an fd-leak check that counts /proc/self/fd around each test group. */
#ifndef FPIO_CHECK_H
#define FPIO_CHECK_H

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failed_now;   /* failures inside the running test */
static int check_tests_run;
static int check_tests_failed;

#define CHECK(cond)                                                          \
  do {                                                                       \
    if (!(cond)) {                                                           \
      printf("#   %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);    \
      check_failed_now++;                                                    \
    }                                                                        \
  } while (0)

/* Integers (errnos, flags, counters) print both sides on failure. */
#define CHECK_EQ(a, b)                                                       \
  do {                                                                       \
    long long check_a_ = (long long)(a), check_b_ = (long long)(b);          \
    if (check_a_ != check_b_) {                                              \
      printf("#   %s:%d: %s == %s failed: %lld != %lld\n", __FILE__,        \
             __LINE__, #a, #b, check_a_, check_b_);                          \
      check_failed_now++;                                                    \
    }                                                                        \
  } while (0)

#define CHECK_STREQ(a, b)                                                    \
  do {                                                                       \
    const char *check_a_ = (a), *check_b_ = (b);                             \
    if (check_a_ == NULL || check_b_ == NULL ||                              \
        strcmp(check_a_, check_b_) != 0) {                                   \
      printf("#   %s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__,    \
             __LINE__, #a, #b, check_a_ ? check_a_ : "(null)",              \
             check_b_ ? check_b_ : "(null)");                                \
      check_failed_now++;                                                    \
    }                                                                        \
  } while (0)

/* A test that cannot continue (setup failed) bails out of its function. */
#define REQUIRE(cond)                                                        \
  do {                                                                       \
    if (!(cond)) {                                                           \
      printf("#   %s:%d: REQUIRE(%s) failed\n", __FILE__, __LINE__, #cond);  \
      check_failed_now++;                                                    \
      return;                                                                \
    }                                                                        \
  } while (0)

static inline void check_report(const char *name) {
  check_tests_run++;
  if (check_failed_now) {
    check_tests_failed++;
    printf("not ok %d - %s\n", check_tests_run, name);
  } else {
    printf("ok %d - %s\n", check_tests_run, name);
  }
  check_failed_now = 0;
  fflush(stdout);
}

#define RUN(fn)                                                              \
  do {                                                                       \
    fn();                                                                    \
    check_report(#fn);                                                       \
  } while (0)

static inline int check_count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  struct dirent *de;
  if (d == NULL) return -1;
  while ((de = readdir(d)) != NULL)
    if (de->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the DIR's own fd */
}

/* A group's fd count must come back to where it started; reported as its
 * own TAP line so a leak names the group that leaked. */
static int check_group_fds;
static const char *check_group_name;

static inline void check_group_begin(const char *name) {
  check_group_name = name;
  check_group_fds = check_count_fds();
  printf("# group %s (%d fds open)\n", name, check_group_fds);
}

static inline void check_group_end(void) {
  int now = check_count_fds();
  char name[128];
  if (now != check_group_fds) {
    printf("#   fd leak in group %s: %d fds before, %d after\n",
           check_group_name, check_group_fds, now);
    check_failed_now++;
  }
  snprintf(name, sizeof name, "%s: no fd leaked", check_group_name);
  check_report(name);
}

static inline int check_finish(void) {
  printf("1..%d\n", check_tests_run);
  if (check_tests_failed)
    printf("# %d of %d failed\n", check_tests_failed, check_tests_run);
  return check_tests_failed ? 1 : 0;
}

#endif
