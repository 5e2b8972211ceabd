/* pool.h (part of common.h: include common.h):
 * a fixed set of threads that run one parallel loop at a time, for
 * short data-parallel steps repeated many times (routing a layer's tokens on
 * every core, between two GPU phases), where starting threads per step would
 * cost more than the step.
 *
 *   olmoe_pool *pool = olmoe_pool_open(0);          // one thread per online CPU
 *   if (olmoe_pool_for(pool, n, route_range, &job) != 0)  // route_range(&job, lo, hi)
 *       return -1;                                  // olmoe_error() says why
 *   olmoe_pool_close(pool);
 *
 * olmoe_pool_for splits [0, n) into one contiguous range per thread (the
 * calling thread takes the first), waits for all, and returns 0, or -1 with
 * the message of the failing range that starts lowest (olmoe_error() is
 * thread-local: the message is carried over). Ranges depend only on n and the
 * thread count, so a loop whose ranges write disjoint outputs is
 * deterministic. One loop at a time per pool; a pool of one thread runs the
 * loop in the caller.
 */
#ifndef OLMOE_POOL_H
#define OLMOE_POOL_H

#include <stdint.h>

typedef struct olmoe_pool olmoe_pool;

/* n_threads <= 0: one per online CPU (at most 256); never fails (a thread
 * that cannot be started leaves the pool smaller) */
olmoe_pool *olmoe_pool_open(int n_threads);
int olmoe_pool_threads(const olmoe_pool *p);
/* fn(arg, lo, hi) over a split of [0, n); fn returns 0 or -1 after olmoe_errorf */
int olmoe_pool_for(olmoe_pool *p, int64_t n, int (*fn)(void *arg, int64_t lo, int64_t hi), void *arg);
void olmoe_pool_close(olmoe_pool *p);

#endif
