/* headroom.c: see headroom.h. */
#include "headroom.h"

#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int olmoe_headroom_compute(const olmoe_headroom_in *in, double eps, olmoe_headroom *h) {
    memset(h, 0, sizeof *h);
    if (in->n_k < 1 || in->n_k > OLMOE_HEADROOM_MAX_K)
        return olmoe_errorf("headroom: %d rungs of top-k (1 to %d)", in->n_k, OLMOE_HEADROOM_MAX_K);
    for (int j = 0; j < in->n_k; j++)
        if (in->ks[j] < 1 || in->ks[j] >= in->k_base || (j && in->ks[j] <= in->ks[j - 1]))
            return olmoe_errorf("headroom: the ladder must ascend below the baseline's k=%d", in->k_base);
    if (!(eps >= 0)) return olmoe_errorf("headroom: eps must be >= 0");
    h->eps = eps;
    h->kstar = xcalloc((size_t)(in->N ? in->N : 1), sizeof *h->kstar);
    double so = 0, sb = 0, sk = 0;
    for (int64_t i = 0; i < in->N; i++) {
        double b = in->base[i];
        int ok = isfinite(b);
        for (int j = 0; j < in->n_k && ok; j++) ok = isfinite(in->nll[j][i]);
        if (!ok) continue;
        int j = 0;
        while (j < in->n_k && !((double)in->nll[j][i] <= b + eps)) j++;
        double v = j < in->n_k ? (double)in->nll[j][i] : b;
        int k = j < in->n_k ? in->ks[j] : in->k_base;
        h->count[j]++;
        h->kstar[i] = k;
        so += v, sb += b, sk += k;
        h->n_scored++;
    }
    if (h->n_scored == 0) {
        olmoe_headroom_free(h);
        return olmoe_errorf("headroom: no token is scored by every rung and the baseline");
    }
    h->mean_k = sk / (double)h->n_scored;
    h->ppl_oracle = exp(so / (double)h->n_scored);
    h->ppl_base = exp(sb / (double)h->n_scored);
    return 0;
}

void olmoe_headroom_free(olmoe_headroom *h) {
    free(h->kstar);
    h->kstar = NULL;
}
