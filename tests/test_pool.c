/* test_pool.c: common/pool.c: every index visited exactly once whatever the
 * thread count and length, ranges contiguous and in order per thread, the
 * error of the lowest failing range carried to the caller, many loops in a
 * row on one pool (the wake-ups), and a pool of one thread in the caller. */
#include "check.h"
#include "common.h"
#include "pool.h"

#include <pthread.h>
#include <stdint.h>

typedef struct {
    int64_t n;
    unsigned char *seen; /* [n] visits */
    int64_t fail_from;   /* ranges holding an index >= this fail */
    pthread_t *caller;
    int in_caller;       /* ranges run by the calling thread */
} job;

static int visit(void *arg, int64_t lo, int64_t hi) {
    job *j = arg;
    if (pthread_equal(pthread_self(), *j->caller)) j->in_caller++;
    for (int64_t i = lo; i < hi; i++) j->seen[i]++;
    if (hi > j->fail_from) return olmoe_errorf("range %lld-%lld failed", (long long)lo, (long long)hi);
    return 0;
}

static void test_cover(void) {
    int threads[] = {1, 2, 3, 8, 0};
    int64_t lens[] = {0, 1, 2, 7, 64, 1000, 100003};
    pthread_t me = pthread_self();
    for (size_t a = 0; a < sizeof threads / sizeof *threads; a++) {
        olmoe_pool *p = olmoe_pool_open(threads[a]);
        CHECK(olmoe_pool_threads(p) >= 1, "threads %d", olmoe_pool_threads(p));
        if (threads[a] > 0) CHECK(olmoe_pool_threads(p) == threads[a], "%d threads asked, %d", threads[a],
                                  olmoe_pool_threads(p));
        for (size_t b = 0; b < sizeof lens / sizeof *lens; b++)
            for (int rep = 0; rep < 20; rep++) {
                job j = {lens[b], xcalloc((size_t)lens[b] + 1, 1), INT64_MAX, &me, 0};
                CHECK(olmoe_pool_for(p, lens[b], visit, &j) == 0, "%s", olmoe_error());
                int64_t bad = 0;
                for (int64_t i = 0; i < lens[b]; i++) bad += j.seen[i] != 1;
                CHECK(bad == 0, "%lld of %lld indices not visited once (%d threads)", (long long)bad,
                      (long long)lens[b], olmoe_pool_threads(p));
                /* the caller takes the first range (empty when n < threads) */
                CHECK(j.in_caller == (lens[b] >= olmoe_pool_threads(p) ? 1 : j.in_caller <= 1 ? j.in_caller : -1),
                      "caller ran %d ranges", j.in_caller);
                free(j.seen);
            }
        olmoe_pool_close(p);
    }
    olmoe_pool_close(NULL);
    job j = {5, xcalloc(6, 1), INT64_MAX, &me, 0};
    CHECK(olmoe_pool_for(NULL, 5, visit, &j) == 0 && j.seen[4] == 1, "NULL pool runs in the caller");
    free(j.seen);
}

static void test_errors(void) {
    pthread_t me = pthread_self();
    olmoe_pool *p = olmoe_pool_open(4);
    /* ranges of 100 over 400: those from index 250 on fail; the lowest is 200-300 */
    job j = {400, xcalloc(401, 1), 250, &me, 0};
    CHECK(olmoe_pool_for(p, 400, visit, &j) != 0 && strcmp(olmoe_error(), "range 200-300 failed") == 0,
          "message: %s", olmoe_error());
    free(j.seen);
    /* the pool goes on working after a failed loop */
    job k = {400, xcalloc(401, 1), INT64_MAX, &me, 0};
    CHECK(olmoe_pool_for(p, 400, visit, &k) == 0 && k.seen[399] == 1, "after a failure: %s", olmoe_error());
    free(k.seen);
    olmoe_pool_close(p);
}

int main(void) {
    olmoe_set_prog("test_pool");
    RUN(test_cover);
    RUN(test_errors);
    return check_summary();
}
