/* check.h: the tiny test harness of the C tests.
 *
 *   static void test_roundtrip(void) {
 *       CHECK(x == 3, "x is %d", x);            // records a failure, goes on
 *       CHECK_CLOSE(a, b, 1e-5, "logit %d", i);  // relative to max(1, |b|)
 *   }
 *   int main(void) { RUN(test_roundtrip); return check_summary(); }
 *
 * Each RUN prints "PASS file/name" or "FAIL file/name: why" (the first few
 * failing checks with their values); tests/run counts those lines. A program
 * exits non-zero when anything failed.
 */
#ifndef OLMOE_CHECK_H
#define OLMOE_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failed_now, check_fail_total, check_pass_total, check_reported;

#define CHECK(cond, ...)                                                           \
    do {                                                                           \
        if (!(cond)) {                                                             \
            if (check_reported++ < 5) {                                            \
                fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, \
                        #cond);                                                    \
                fprintf(stderr, __VA_ARGS__);                                      \
                fputc('\n', stderr);                                               \
            }                                                                      \
            check_failed_now = 1;                                                  \
        }                                                                          \
    } while (0)

/* |a - b| <= tol * max(1, |b|); NaN never passes */
#define CHECK_CLOSE(a, b, tol, ...)                                                \
    do {                                                                           \
        double a_ = (a), b_ = (b), t_ = (tol);                                     \
        double s_ = fabs(b_) > 1 ? fabs(b_) : 1;                                   \
        if (!(fabs(a_ - b_) <= t_ * s_) && check_reported < 5)                     \
            fprintf(stderr, "  %.9g vs %.9g (tol %.1e)\n", a_, b_, t_);             \
        CHECK(fabs(a_ - b_) <= t_ * s_, __VA_ARGS__);                              \
    } while (0)

static const char *check_file_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

#define RUN(fn)                                                                     \
    do {                                                                            \
        check_failed_now = 0;                                                       \
        check_reported = 0;                                                         \
        fn();                                                                       \
        char name_[256];                                                            \
        snprintf(name_, sizeof name_, "%s", check_file_name(__FILE__));             \
        char *dot_ = strrchr(name_, '.');                                           \
        if (dot_) *dot_ = '\0';                                                     \
        if (check_failed_now) {                                                     \
            printf("FAIL %s/%s\n", name_, #fn);                                     \
            check_fail_total++;                                                     \
        } else {                                                                    \
            printf("PASS %s/%s\n", name_, #fn);                                     \
            check_pass_total++;                                                     \
        }                                                                           \
        fflush(stdout);                                                             \
    } while (0)

static inline int check_summary(void) { return check_fail_total ? 1 : 0; }

/* where the repository's test inputs are (tests are run from the repo root) */
static inline const char *check_fixture_dir(void) {
    const char *d = getenv("OLMOE_FIXTURES");
    return d ? d : "tests/fixtures";
}

#endif
