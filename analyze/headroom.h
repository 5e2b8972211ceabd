/* headroom.h (part of analyze.h: include analyze.h):
 * how far any adaptive policy could go, from the exact top-k
 * ladder's per-token NLLs. For each scored token, k* is the smallest k of the
 * ladder whose NLL is within eps of the baseline's (NLL_k <= NLL_base + eps;
 * the baseline itself, k = k_base, always qualifies). The oracle routes each
 * token with its own k* (the same at every layer): its experts per token are
 * the mean of k*, its NLL per token NLL_{k*}, so its perplexity is at most
 * the baseline's times e^eps. It assumes each token's choice leaves the
 * others alone, which is false (attention mixes tokens, and a token's routing
 * changes the later layers' inputs of every token after it): realising it
 * through a routing file and --exact measures how much survives.
 *
 *   olmoe_headroom_in in = {.n_k = 3, .ks = {1, 2, 4}, .nll = {n1, n2, n4},
 *                           .base = base, .k_base = 8, .N = N};
 *   olmoe_headroom h;
 *   olmoe_headroom_compute(&in, 0.01, &h);
 *   printf("mean k %.3f, ppl %.2f\n", h.mean_k, h.ppl_oracle);
 *   olmoe_headroom_free(&h);
 */
#ifndef OLMOE_HEADROOM_H
#define OLMOE_HEADROOM_H

#include <stdint.h>

#define OLMOE_HEADROOM_MAX_K 32 /* rungs of the ladder */

typedef struct {
    int n_k;
    int ks[OLMOE_HEADROOM_MAX_K];           /* ascending, each below k_base */
    const float *nll[OLMOE_HEADROOM_MAX_K]; /* [N] per-token NLL of top-ks[j] (exact), NaN unscored */
    const float *base;                      /* [N] the baseline's */
    int k_base;
    int64_t N;
} olmoe_headroom_in;

typedef struct {
    double eps;
    int64_t n_scored;                      /* tokens finite in every rung and the baseline */
    int64_t count[OLMOE_HEADROOM_MAX_K + 1]; /* tokens whose k* is ks[j]; [n_k]: k_base */
    double mean_k;                         /* mean k* over the scored tokens */
    double ppl_oracle, ppl_base;
    int32_t *kstar;                        /* [N] k* per token; 0 where not scored */
} olmoe_headroom;

/* 0, or -1 + message (no rung, unsorted, no token scored) */
int olmoe_headroom_compute(const olmoe_headroom_in *in, double eps, olmoe_headroom *out);
void olmoe_headroom_free(olmoe_headroom *h);

#endif
