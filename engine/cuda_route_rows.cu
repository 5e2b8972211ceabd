/* cuda_route_rows.cu: a routing hook over many rows at once, split across a
 * thread pool: the CUDA engine's host-routed layers and the CUDA
 * replay backend route a whole layer of tokens here between two GPU phases.
 * Host code only; it sits with the CUDA objects because only they call it
 * (and the static libraries link in that order).
 * Each row's choice is checked as the engines check it; rows are independent
 * and each writes only its own slots, so the result does not depend on the
 * number of threads. */
extern "C" {
#include "common.h"
#include "model.h"
}

typedef struct {
    olmoe_route_fn fn;
    void *ctx;
    int layer, E, K;
    const int64_t *pos;
    const float *logits;
    size_t ld;
    int32_t *ex;
    float *w;
    int32_t *n;
} route_job;

static int route_range(void *arg, int64_t lo, int64_t hi) {
    const route_job *j = (const route_job *)arg;
    int E = j->E, K = j->K, l = j->layer;
    int buf[OLMOE_ROUTE_ROWS_MAX_K];
    for (int64_t t = lo; t < hi; t++) {
        int32_t *et = j->ex + (size_t)t * K;
        float *wt = j->w + (size_t)t * K;
        int n = j->fn(j->ctx, l, j->pos ? j->pos[t] : -1, j->logits + (size_t)t * j->ld, E, buf, wt);
        if (n < 0) return olmoe_error_prefix("layer %d: routing", l);
        if (n < 1 || n > K)
            return olmoe_errorf("layer %d: the routing policy chose %d experts (allowed 1 to %d)", l, n, K);
        for (int i = 0; i < n; i++) {
            if (buf[i] < 0 || buf[i] >= E)
                return olmoe_errorf("layer %d: the routing policy chose expert %d of %d", l, buf[i], E);
            for (int q = 0; q < i; q++)
                if (buf[q] == buf[i])
                    return olmoe_errorf("layer %d: the routing policy chose expert %d twice", l, buf[i]);
            et[i] = buf[i];
        }
        for (int i = n; i < K; i++) et[i] = -1, wt[i] = 0;
        j->n[t] = n;
    }
    return 0;
}

extern "C" int olmoe_route_rows(olmoe_pool *pool, olmoe_route_fn fn, void *ctx, int layer, const int64_t *pos,
                     const float *logits,
                     size_t ld, int T, int E, int K, int32_t *ex, float *w, int32_t *n) {
    if (K < 1 || K > OLMOE_ROUTE_ROWS_MAX_K)
        return olmoe_errorf("routing rows: %d slots per token (1 to %d)", K, OLMOE_ROUTE_ROWS_MAX_K);
    route_job j = {fn, ctx, layer, E, K, pos, logits, ld, ex, w, n};
    return olmoe_pool_for(pool, T, route_range, &j);
}
