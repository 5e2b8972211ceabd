/* route.c: the default routing hook, OLMoE's own rule: softmax over all
 * experts in fp32, the k most probable (ties toward the lower index, which is
 * what a stable descending sort gives), weighted by their probability,
 * renormalised over the chosen set only when the config says norm_topk_prob. */
#include "model.h"
#include "ops_cpu.h"

#include <stdlib.h>
#include <string.h>

int olmoe_route_topk(void *ctx, int layer, int64_t pos, const float *logits, int E, int *experts, float *weights) {
    (void)pos;
    (void)layer;
    const olmoe_topk_route *r = ctx;
    int k = r->k;
    if (k < 1 || k > E) return olmoe_errorf("top-k %d is outside [1, %d]", k, E);
    float stackp[256];
    unsigned char stackt[256];
    float *p = E <= 256 ? stackp : xmalloc(xmul((size_t)E, sizeof *p));
    unsigned char *taken = E <= 256 ? stackt : xmalloc((size_t)E);
    memcpy(p, logits, (size_t)E * sizeof *p);
    memset(taken, 0, (size_t)E);
    olmoe_softmax(p, E);
    /* k passes of a strict maximum: O(kE), and k and E are small */
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (!taken[e] && (best < 0 || p[e] > p[best])) best = e;
        taken[best] = 1;
        experts[j] = best;
        weights[j] = p[best];
    }
    if (r->norm) {
        float sum = 0;
        for (int j = 0; j < k; j++) sum += weights[j];
        for (int j = 0; j < k; j++) weights[j] /= sum;
    }
    if (p != stackp) {
        free(p);
        free(taken);
    }
    return k;
}
