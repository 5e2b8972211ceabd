/* kde_check.c: see kde_check.h. */
#include "kde_check.h"

#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const double olmoe_kde_check_alpha[OLMOE_KDE_CHECK_ALPHAS] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
                                                              0.1,   0.2,   0.3,   0.4,  0.5,  0.6};

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* one token-layer: histogram the non-selected experts' p-values, count BH
 * discoveries at each alpha */
static void token_layer(const olmoe_kde_cdf *cdf, int l, const float *r, int E, int K, int64_t *hist,
                        double *disc) {
    float q[256], sorted[256];
    unsigned char sel[256] = {0};
    for (int j = 0; j < K; j++) { /* top-K by logit, ties toward the lower index */
        int best = -1;
        for (int e = 0; e < E; e++)
            if (!sel[e] && (best < 0 || r[e] > r[best])) best = e;
        sel[best] = 1;
    }
    for (int e = 0; e < E; e++) {
        q[e] = olmoe_kde_cdf_pvalue_expert(cdf, l, e, r[e], 1e-7f);
        sorted[e] = q[e];
        if (sel[e]) continue;
        int64_t b = (int64_t)((double)q[e] * OLMOE_KDE_CHECK_BINS);
        hist[b >= OLMOE_KDE_CHECK_BINS ? OLMOE_KDE_CHECK_BINS - 1 : b]++;
    }
    qsort(sorted, (size_t)E, sizeof *sorted, cmp_float);
    for (int a = 0; a < OLMOE_KDE_CHECK_ALPHAS; a++) {
        int kstar = 0;
        for (int k = E; k >= 1; k--)
            if ((double)sorted[k - 1] <= (double)k * olmoe_kde_check_alpha[a] / E) {
                kstar = k;
                break;
            }
        disc[a] += kstar;
    }
}

/* KS distance, quantiles and tail shares of one layer's histogram */
static void summarise(const int64_t *hist, int64_t n, double *ks, double *qq, double *below) {
    double d = 0;
    int64_t cum = 0;
    int qi = 0;
    for (int b = 0; b < OLMOE_KDE_CHECK_BINS; b++) {
        double lo = (double)b / OLMOE_KDE_CHECK_BINS, hi = (double)(b + 1) / OLMOE_KDE_CHECK_BINS;
        double f0 = (double)cum / (double)n;
        cum += hist[b];
        double f1 = (double)cum / (double)n;
        d = fmax(d, fmax(fabs(f0 - lo), fabs(f1 - hi)));
        while (qi < OLMOE_KDE_CHECK_Q && f1 >= (qi + 1) / 100.0) qq[qi++] = hi;
        if (b + 1 == OLMOE_KDE_CHECK_BINS / 100) below[0] = f1;
        if (b + 1 == OLMOE_KDE_CHECK_BINS / 20) below[1] = f1;
        if (b + 1 == OLMOE_KDE_CHECK_BINS / 10) below[2] = f1;
    }
    while (qi < OLMOE_KDE_CHECK_Q) qq[qi++] = 1;
    *ks = d;
}

int olmoe_kde_check_run(const olmoe_kde_cdf *cdf, olmoe_trace *t, int K, int64_t first, int64_t count,
                        olmoe_kde_check *c) {
    memset(c, 0, sizeof *c);
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    int L = in->meta.n_layers, E = in->meta.n_experts;
    if (cdf->n_layers != L) return olmoe_errorf("the null is of %d layers, the trace %d", cdf->n_layers, L);
    /* a per-expert null is read by expert index: it must have the trace's experts */
    if (cdf->n_experts && cdf->n_experts != E)
        return olmoe_errorf("the null is per expert of %d experts, the trace has %d", cdf->n_experts, E);
    if (E > 256 || K < 1 || K >= E) return olmoe_errorf("top-k %d of %d experts: nothing left to check", K, E);
    if (first < 0 || first >= in->n_tokens) return olmoe_errorf("--start %lld: the trace has %lld tokens", (long long)first, (long long)in->n_tokens);
    unsigned char *checked = xcalloc((size_t)L, 1); /* [L] layers whose every null is there */
    for (int l = 0; l < L; l++) {
        checked[l] = 1;
        for (int e = 0; e < (cdf->n_experts ? E : 1); e++)
            if (!cdf->present[olmoe_kde_cdf_slot(cdf, l, e)]) checked[l] = 0;
    }
    int64_t N = count > 0 && first + count < in->n_tokens ? count : in->n_tokens - first;
    c->n_layers = L, c->n_experts = E, c->top_k = K, c->first = first, c->n_tokens = N;
    c->n = xcalloc((size_t)L, sizeof *c->n);
    c->ks = xcalloc((size_t)L, sizeof *c->ks);
    c->qq = xcalloc((size_t)L * OLMOE_KDE_CHECK_Q, sizeof *c->qq);
    c->share_below = xcalloc((size_t)L * 3, sizeof *c->share_below);
    c->disc = xcalloc((size_t)L * OLMOE_KDE_CHECK_ALPHAS, sizeof *c->disc);
    int64_t *hist = xcalloc((size_t)L * OLMOE_KDE_CHECK_BINS, sizeof *hist);
    const int64_t C = 1024;
    float *buf = xmalloc(xmul((size_t)C * L * E, sizeof *buf));
    int rc = 0;
    for (int64_t s = first; s < first + N && rc == 0; s += C) {
        int64_t n = first + N - s < C ? first + N - s : C;
        if ((rc = olmoe_trace_read_router_logits(t, s, n, buf)) != 0) break;
        for (int64_t i = 0; i < n; i++)
            for (int l = 0; l < L; l++)
                if (checked[l])
                    token_layer(cdf, l, buf + ((size_t)i * L + l) * E, E, K, hist + (size_t)l * OLMOE_KDE_CHECK_BINS,
                                c->disc + (size_t)l * OLMOE_KDE_CHECK_ALPHAS);
    }
    for (int l = 0; l < L && rc == 0; l++) {
        if (!checked[l]) continue;
        c->n[l] = N * (E - K);
        summarise(hist + (size_t)l * OLMOE_KDE_CHECK_BINS, c->n[l], &c->ks[l], c->qq + (size_t)l * OLMOE_KDE_CHECK_Q,
                  c->share_below + (size_t)l * 3);
        for (int a = 0; a < OLMOE_KDE_CHECK_ALPHAS; a++) c->disc[(size_t)l * OLMOE_KDE_CHECK_ALPHAS + a] /= (double)N;
    }
    free(hist);
    free(buf);
    free(checked);
    if (rc != 0) olmoe_kde_check_free(c);
    return rc;
}

void olmoe_kde_check_free(olmoe_kde_check *c) {
    free(c->n);
    free(c->ks);
    free(c->qq);
    free(c->share_below);
    free(c->disc);
    memset(c, 0, sizeof *c);
}
