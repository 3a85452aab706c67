/* fpio C API without a mount: version, io-mode helpers, names, and every
 * entry point fed bad input (NULL, unknown ids/rules/flags, wrong order).
 * Outputs are pre-filled with a sentinel: the contract says they are
 * written only on success. */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>
#include <fpio.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/check.h"
#include "lib/kernel_fuse.h"

#define SENTINEL32 0xa5a5a5a5u
#define SENTINEL64 0xa5a5a5a5a5a5a5a5ull
#define SESSION_SENTINEL ((struct fpio_session *)(uintptr_t)0xdeadbeef)

static const char *const expected_counter_names[] = {
    "opens_passthrough",   "opens_direct",
    "opens_cached",        "opens_shared_direct",
    "fallback_not_live",   "fallback_declined",
    "fallback_bad_fd",     "fallback_not_regular",
    "fallback_access",     "fallback_cached_opens",
    "fallback_register_failed", "busy_refused",
    "backing_ids_live",    "backing_opened",
    "backing_closed",      "reply_failed",
    "req_read",            "req_write",
    "req_getxattr",        "req_total",
    "fallback_direct_opens", "stale_refused",
    "fallback_request_unseen",
};

/* Values beyond the 8 defined bits: the io mode must ignore them. */
static const uint32_t high_bits[] = {0, 1u << 8, 1u << 15, 1u << 31, 0xffffff00u};

/* Independent models of the kernel's rules, written with the UAPI header's
 * constants, not from fpio: an open's io mode is its DIRECT_IO and
 * PASSTHROUGH bits; a passthrough reply may carry no bit outside
 * FOPEN_PASSTHROUGH_MASK (fs/fuse/iomode.c: PASSTHROUGH, DIRECT_IO,
 * PARALLEL_DIRECT_WRITES, NOFLUSH) or the open fails; released kernels drop
 * PARALLEL_DIRECT_WRITES unless DIRECT_IO is set (FPIO_RULE_LEGACY), the
 * series that keeps it for passthrough drops it only from cached opens
 * (FPIO_RULE_SERIES). */
static uint32_t model_iomode(uint32_t f) {
  return f & (FOPEN_DIRECT_IO | K_FOPEN_PASSTHROUGH);
}

static int model_pt_valid(uint32_t f) {
  uint32_t allowed = K_FOPEN_PASSTHROUGH | FOPEN_DIRECT_IO |
                     FOPEN_PARALLEL_DIRECT_WRITES | FOPEN_NOFLUSH;
  return (f & K_FOPEN_PASSTHROUGH) && (f & ~allowed) == 0;
}

/* Returns the kept flags, or -1 when the kernel fails the open instead
 * (PASSTHROUGH next to a bit a passthrough reply may not carry); fpio then
 * answers -EIO, the errno the application would see. */
static int64_t model_kept(uint32_t f, int series) {
  int direct = (f & FOPEN_DIRECT_IO) != 0, passthrough = (f & K_FOPEN_PASSTHROUGH) != 0;
  int clear = series ? (!direct && !passthrough) : !direct;
  if (passthrough && !model_pt_valid(f)) return -1;
  return clear ? f & ~(uint32_t)FOPEN_PARALLEL_DIRECT_WRITES : f;
}

/* ---- version ---- */

static void test_version_string_matches_macros(void) {
  char want[64];
  snprintf(want, sizeof want, "%d.%d.%d", FPIO_VERSION_MAJOR,
           FPIO_VERSION_MINOR, FPIO_VERSION_PATCH);
  CHECK_STREQ(fpio_version(), want);
}

static void test_libfuse_version_built_matches_headers(void) {
  /* fuse_common.h: FUSE_VERSION = FUSE_MAKE_VERSION(maj, min) = maj*100+min */
  CHECK_EQ(fpio_libfuse_version_built(), FUSE_VERSION);
  CHECK_EQ(fpio_libfuse_version_built(),
           FUSE_MAKE_VERSION(FUSE_MAJOR_VERSION, FUSE_MINOR_VERSION));
}

static void test_libfuse_version_runtime_matches_loaded(void) {
  CHECK_EQ(fpio_libfuse_version_runtime(), fuse_version());
}

/* ---- io mode ---- */

/* fpio's FOPEN constants against the kernel UAPI header's. */
static void test_fopen_constants_match_kernel(void) {
  CHECK_EQ(FPIO_FOPEN_DIRECT_IO, FOPEN_DIRECT_IO);
  CHECK_EQ(FPIO_FOPEN_KEEP_CACHE, FOPEN_KEEP_CACHE);
  CHECK_EQ(FPIO_FOPEN_NONSEEKABLE, FOPEN_NONSEEKABLE);
  CHECK_EQ(FPIO_FOPEN_CACHE_DIR, FOPEN_CACHE_DIR);
  CHECK_EQ(FPIO_FOPEN_STREAM, FOPEN_STREAM);
  CHECK_EQ(FPIO_FOPEN_NOFLUSH, FOPEN_NOFLUSH);
  CHECK_EQ(FPIO_FOPEN_PARALLEL_DIRECT_WRITES, FOPEN_PARALLEL_DIRECT_WRITES);
  CHECK_EQ(FPIO_FOPEN_PASSTHROUGH, K_FOPEN_PASSTHROUGH);
  /* Every constant its own bit: a copy-paste slip would pass the checks above
   * only if the header had the same slip. */
  CHECK_EQ(__builtin_popcount(FPIO_FOPEN_DIRECT_IO | FPIO_FOPEN_KEEP_CACHE |
                              FPIO_FOPEN_NONSEEKABLE | FPIO_FOPEN_CACHE_DIR |
                              FPIO_FOPEN_STREAM | FPIO_FOPEN_NOFLUSH |
                              FPIO_FOPEN_PARALLEL_DIRECT_WRITES | FPIO_FOPEN_PASSTHROUGH),
           8);
#ifndef FOPEN_PASSTHROUGH
  printf("# <linux/fuse.h> is FUSE 7.%d, without FOPEN_PASSTHROUGH (7.40): "
         "compared with its 7.40 value\n", FUSE_KERNEL_MINOR_VERSION);
#endif
}

static void test_iomode_functions_all_flag_values(void) {
  for (unsigned h = 0; h < sizeof high_bits / sizeof high_bits[0]; h++)
    for (uint32_t lo = 0; lo < 256; lo++) {
      uint32_t f = lo | high_bits[h];
      uint32_t m = model_iomode(f);
      CHECK_EQ(fpio_iomode(f), m);
      CHECK_EQ(fpio_iomode_is_cached(f), m == 0);
      CHECK_EQ(fpio_iomode_is_direct(f), (m & 1u) != 0);
      CHECK_EQ(fpio_iomode_is_passthrough(f), m == (1u << 7));
      if (check_failed_now) return; /* report the first bad value only */
    }
}

static void test_iomode_macros_match_functions(void) {
  for (unsigned h = 0; h < sizeof high_bits / sizeof high_bits[0]; h++)
    for (uint32_t lo = 0; lo < 256; lo++) {
      uint32_t f = lo | high_bits[h];
      CHECK_EQ(FOPEN_IOMODE(f), fpio_iomode(f));
      CHECK_EQ(FOPEN_IOMODE_IS_CACHED(f), fpio_iomode_is_cached(f));
      CHECK_EQ(FOPEN_IOMODE_IS_DIRECT(f), fpio_iomode_is_direct(f));
      CHECK_EQ(FOPEN_IOMODE_IS_PASSTHROUGH(f), fpio_iomode_is_passthrough(f));
      /* Macro arguments must be parenthesised: an expression argument. */
      CHECK_EQ(FOPEN_IOMODE(lo | high_bits[h]), fpio_iomode(f));
      CHECK_EQ(FOPEN_IOMODE_IS_PASSTHROUGH(lo | high_bits[h]),
               fpio_iomode_is_passthrough(f));
      if (check_failed_now) return;
    }
}

static void check_rule(uint32_t rule, int series) {
  for (unsigned h = 0; h < sizeof high_bits / sizeof high_bits[0]; h++)
    for (uint32_t lo = 0; lo < 256; lo++) {
      uint32_t f = lo | high_bits[h], kept = SENTINEL32;
      int64_t want = model_kept(f, series);
      int ret = fpio_effective_open_flags(f, rule, &kept);
      if (want < 0) {
        CHECK_EQ(ret, -EIO);
        CHECK_EQ(kept, SENTINEL32);
      } else {
        CHECK_EQ(ret, 0);
        CHECK_EQ(kept, want);
      }
      if (check_failed_now) {
        printf("#   rule %u flags 0x%x\n", rule, f);
        return;
      }
    }
}

static void test_effective_flags_legacy_rule(void) {
  check_rule(FPIO_RULE_LEGACY, 0);
  /* The case that motivates fpio: plain passthrough loses the flag. */
  uint32_t kept = 0;
  CHECK_EQ(fpio_effective_open_flags(FPIO_FOPEN_PASSTHROUGH |
                                         FPIO_FOPEN_PARALLEL_DIRECT_WRITES,
                                     FPIO_RULE_LEGACY, &kept), 0);
  CHECK_EQ(kept, FPIO_FOPEN_PASSTHROUGH);
}

static void test_effective_flags_series_rule(void) {
  check_rule(FPIO_RULE_SERIES, 1);
  uint32_t kept = 0;
  CHECK_EQ(fpio_effective_open_flags(FPIO_FOPEN_PASSTHROUGH |
                                         FPIO_FOPEN_PARALLEL_DIRECT_WRITES,
                                     FPIO_RULE_SERIES, &kept), 0);
  CHECK_EQ(kept, FPIO_FOPEN_PASSTHROUGH | FPIO_FOPEN_PARALLEL_DIRECT_WRITES);
}

static void test_effective_flags_unknown_rule(void) {
  const uint32_t rules[] = {2, 3, 255, 0x80000000u, UINT32_MAX};
  for (unsigned i = 0; i < sizeof rules / sizeof rules[0]; i++) {
    uint32_t kept = SENTINEL32;
    CHECK_EQ(fpio_effective_open_flags(FPIO_FOPEN_DIRECT_IO, rules[i], &kept),
             -EINVAL);
    CHECK_EQ(kept, SENTINEL32);
  }
}

static void test_effective_flags_null_out(void) {
  CHECK_EQ(fpio_effective_open_flags(0, FPIO_RULE_LEGACY, NULL), -EINVAL);
  CHECK_EQ(fpio_effective_open_flags(0, FPIO_RULE_SERIES, NULL), -EINVAL);
}

static void test_passthrough_flags_valid_all_values(void) {
  for (unsigned h = 0; h < sizeof high_bits / sizeof high_bits[0]; h++)
    for (uint32_t lo = 0; lo < 256; lo++) {
      uint32_t f = lo | high_bits[h];
      CHECK_EQ(fpio_passthrough_flags_valid(f), model_pt_valid(f));
      if (check_failed_now) return;
    }
}

/* ---- names ---- */

static void test_counter_names(void) {
  CHECK_EQ(FPIO_COUNTER_COUNT,
           sizeof expected_counter_names / sizeof expected_counter_names[0]);
  for (uint32_t c = 0; c < FPIO_COUNTER_COUNT; c++)
    CHECK_STREQ(fpio_counter_name(c), expected_counter_names[c]);
}

static void test_counter_name_unknown_is_null(void) {
  CHECK(fpio_counter_name(FPIO_COUNTER_COUNT) == NULL);
  CHECK(fpio_counter_name(1000) == NULL);
  CHECK(fpio_counter_name(UINT32_MAX) == NULL);
}

static size_t first_word_len(const char *s) { return strcspn(s, " "); }

static void test_status_str_known_values(void) {
  const char *disabled = fpio_status_str(FPIO_STATUS_DISABLED);
  CHECK_STREQ(fpio_status_str(FPIO_STATUS_LIVE), "live");
  REQUIRE(disabled != NULL);
  CHECK(strncmp(disabled, "disabled", 8) == 0 && first_word_len(disabled) == 8);
  /* Every status has its own text, and its own FIRST word: scripts read the
   * counters file's "status <text>" line by its first word. */
  for (uint32_t a = FPIO_STATUS_LIVE; a <= FPIO_STATUS_NOT_NEGOTIATED; a++) {
    const char *sa = fpio_status_str(a);
    REQUIRE(sa != NULL);
    CHECK(sa[0] != '\0');
    CHECK(strcmp(sa, "unknown status") != 0);
    for (uint32_t b = a + 1; b <= FPIO_STATUS_NOT_NEGOTIATED; b++) {
      const char *sb = fpio_status_str(b);
      REQUIRE(sb != NULL);
      CHECK(first_word_len(sa) != first_word_len(sb) ||
            strncmp(sa, sb, first_word_len(sa)) != 0);
    }
  }
}

static void test_status_str_unknown(void) {
  CHECK_STREQ(fpio_status_str(FPIO_STATUS_INIT_NOT_CALLED + 1), "unknown status");
  CHECK_STREQ(fpio_status_str(1000), "unknown status");
  CHECK_STREQ(fpio_status_str(UINT32_MAX), "unknown status");
}

/* ---- bad input without a session ---- */

static void test_session_new_null_se(void) {
  struct fpio_session *out = SESSION_SENTINEL;
  CHECK_EQ(fpio_session_new(NULL, 0, &out), -EINVAL);
  CHECK(out == SESSION_SENTINEL);
  CHECK_EQ(fpio_session_new(NULL, 0, NULL), -EINVAL);
}

static struct fuse_session *new_unmounted_session(void) {
  static const struct fuse_lowlevel_ops ops; /* no handlers: never looped */
  char *argv[] = {"fpio-test", NULL};
  struct fuse_args args = FUSE_ARGS_INIT(1, argv);
  struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
  fuse_opt_free_args(&args);
  return se;
}

static void test_session_new_not_mounted(void) {
  struct fuse_session *se = new_unmounted_session();
  struct fpio_session *out = SESSION_SENTINEL;
  REQUIRE(se != NULL);
  CHECK_EQ(fpio_session_new(se, 0, &out), -ENOTCONN);
  CHECK(out == SESSION_SENTINEL);
  fuse_session_destroy(se);
}

static void test_session_new_null_out(void) {
  struct fuse_session *se = new_unmounted_session();
  REQUIRE(se != NULL);
  CHECK_EQ(fpio_session_new(se, 0, NULL), -EINVAL);
  fuse_session_destroy(se);
}

/* NULL is ignored: the call returns (in a child, so a crash is reported as
 * this test's failure) and closes none of the process's fds. */
static void test_session_free_null(void) {
  int fds = check_count_fds(), st = 0;
  pid_t pid;
  fflush(stdout);
  pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int before = check_count_fds();
    fpio_session_free(NULL);
    _exit(check_count_fds() == before ? 0 : 3);
  }
  REQUIRE(waitpid(pid, &st, 0) == pid);
  CHECK(WIFEXITED(st));
  CHECK_EQ(WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st), 0);
  fpio_session_free(NULL);
  CHECK_EQ(check_count_fds(), fds);
}

static void test_session_queries_null(void) {
  uint32_t st = SENTINEL32, minor = SENTINEL32;
  uint64_t flags = SENTINEL64, v = SENTINEL64;
  int32_t id = (int32_t)SENTINEL32;
  CHECK_EQ(fpio_session_status(NULL, &st), -EINVAL);
  CHECK_EQ(st, SENTINEL32);
  CHECK_EQ(fpio_session_kernel_offer(NULL, &flags, &minor), -EINVAL);
  CHECK_EQ(flags, SENTINEL64);
  CHECK_EQ(minor, SENTINEL32);
  for (uint32_t c = 0; c <= FPIO_COUNTER_COUNT; c++) {
    CHECK_EQ(fpio_session_counter(NULL, c, &v), -EINVAL);
    CHECK_EQ(v, SENTINEL64);
  }
  CHECK_EQ(fpio_backing_id(NULL, 2, &id), -EINVAL);
  CHECK_EQ(id, (int32_t)SENTINEL32);
}

static void test_write_counters_null_session(void) {
  int p[2];
  char c;
  REQUIRE(pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0);
  CHECK_EQ(fpio_session_write_counters(NULL, p[1]), -EINVAL);
  CHECK_EQ(read(p[0], &c, 1), -1); /* nothing was written */
  CHECK_EQ(errno, EAGAIN);
  close(p[0]);
  close(p[1]);
}

static void test_reply_open_null_session(void) {
  struct fuse_file_info fi;
  uint32_t flags = SENTINEL32;
  memset(&fi, 0, sizeof fi);
  CHECK_EQ(fpio_reply_open(NULL, NULL, 2, -1, &fi, &flags), -EINVAL);
  CHECK_EQ(flags, SENTINEL32);
  CHECK_EQ(fpio_reply_open(NULL, NULL, 2, -1, NULL, NULL), -EINVAL);
}

static void test_reply_create_null_session(void) {
  struct fuse_file_info fi;
  struct fuse_entry_param e;
  uint32_t flags = SENTINEL32;
  memset(&fi, 0, sizeof fi);
  memset(&e, 0, sizeof e);
  CHECK_EQ(fpio_reply_create(NULL, NULL, &e, -1, &fi, &flags), -EINVAL);
  CHECK_EQ(flags, SENTINEL32);
  CHECK_EQ(fpio_reply_create(NULL, NULL, NULL, -1, NULL, NULL), -EINVAL);
}

static void test_release_null_session(void) {
  struct fuse_file_info fi;
  memset(&fi, 0, sizeof fi);
  CHECK_EQ(fpio_release(NULL, 2, &fi), 0); /* without fpio: nothing to forget */
  CHECK_EQ(fpio_release(NULL, 2, NULL), -EINVAL);
  CHECK_EQ(fpio_release(SESSION_SENTINEL, 2, &fi), -EINVAL);
}

/* High-level entry points outside any high-level server: without fpio they
 * change nothing; bad pointers and flags are refused before anything else. */
static void test_high_level_without_fpio(void) {
  struct fuse_file_info fi, before;
  struct fuse_conn_info conn;
  struct fpio_session *s = SESSION_SENTINEL;
  long cfg[64];
  memset(&fi, 0x5a, sizeof fi);
  before = fi;
  CHECK_EQ(fpio_fuse_open(0, &fi), 0);
  CHECK(memcmp(&fi, &before, sizeof fi) == 0);
  CHECK_EQ(fpio_fuse_open(-1, NULL), -EINVAL);
  CHECK_EQ(fpio_fuse_release(&fi), 0);
  CHECK_EQ(fpio_fuse_release(NULL), -EINVAL);
  CHECK_EQ(fpio_fuse_session(&s), -ENOENT);
  CHECK(s == SESSION_SENTINEL);
  CHECK_EQ(fpio_fuse_session(NULL), -EINVAL);
  memset(&conn, 0, sizeof conn);
  CHECK_EQ(fpio_fuse_init(NULL, (struct fuse_config *)cfg, 0), -EINVAL);
  CHECK_EQ(fpio_fuse_init(&conn, NULL, 0), -EINVAL);
  CHECK_EQ(fpio_fuse_init(&conn, (struct fuse_config *)cfg, 1u << 30), -EINVAL);
}

int main(void) {
  check_group_begin("version");
  RUN(test_version_string_matches_macros);
  RUN(test_libfuse_version_built_matches_headers);
  RUN(test_libfuse_version_runtime_matches_loaded);
  check_group_end();

  check_group_begin("iomode");
  RUN(test_fopen_constants_match_kernel);
  RUN(test_iomode_functions_all_flag_values);
  RUN(test_iomode_macros_match_functions);
  RUN(test_effective_flags_legacy_rule);
  RUN(test_effective_flags_series_rule);
  RUN(test_effective_flags_unknown_rule);
  RUN(test_effective_flags_null_out);
  RUN(test_passthrough_flags_valid_all_values);
  check_group_end();

  check_group_begin("names");
  RUN(test_counter_names);
  RUN(test_counter_name_unknown_is_null);
  RUN(test_status_str_known_values);
  RUN(test_status_str_unknown);
  check_group_end();

  check_group_begin("bad-input");
  RUN(test_session_new_null_se);
  RUN(test_session_new_not_mounted);
  RUN(test_session_new_null_out);
  RUN(test_session_free_null);
  RUN(test_session_queries_null);
  RUN(test_write_counters_null_session);
  RUN(test_reply_open_null_session);
  RUN(test_reply_create_null_session);
  RUN(test_release_null_session);
  RUN(test_high_level_without_fpio);
  check_group_end();

  return check_finish();
}
