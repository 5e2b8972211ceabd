/* test_policy_lit_ref.h: the literature's routing policies (threshold, skip,
 * entropy, hc) written the straightforward way from docs/DESIGN.md §6 and the
 * definitions at the top of policy/policy.h: full qsort orders, counts over
 * every expert, HC scanned over every searched rank, p-values counted by
 * hand. It shares no code with policy/policy*.c; test_policy_lit.c compares
 * the two decision for decision. */
#ifndef OLMOE_TEST_POLICY_LIT_REF_H
#define OLMOE_TEST_POLICY_LIT_REF_H

#include "test_policy_ref_base.h"

enum { LIT_THRESHOLD, LIT_SKIP, LIT_ENTROPY, LIT_HC };

typedef struct {
    int family; /* LIT_* */
    int min_k, max_k, pvalue, norm;
    double tau, beta, scale, T, floor;
    const float *beta_layer; /* skip: per layer, or NULL for beta */
} lit_policy;

static int lit_clamp(int k, int lo, int hi) {
    return k < lo ? lo : (k > hi ? hi : k);
}

/* one routing decision; emp: that layer's logits per expert [E][emp_n] */
static int lit_route(const lit_policy *rp, int layer, const float *r, int E, int ntp,
                     const olmoe_kde_cdf *null, const float *emp, int emp_n, int *ex, float *w) {
    float p[512] = {0}, q[512] = {0}; /* zeroed: -O1 cannot see that E bounds the reads */
    int idx[512], K = 0;
    ref_softmax(r, E, (float)rp->T, p);
    if (rp->family == LIT_THRESHOLD) {
        ref_order(p, E, 1, idx);
        for (int e = 0; e < E; e++) K += p[e] >= (float)rp->tau;
        K = lit_clamp(K, rp->min_k, rp->max_k);
    } else if (rp->family == LIT_SKIP) {
        ref_order(p, E, 1, idx);
        float beta = rp->beta_layer ? rp->beta_layer[layer] : (float)rp->beta;
        float cut = beta * p[idx[0]];
        for (int i = 0; i < rp->max_k; i++) K += p[idx[i]] >= cut;
        K = K < rp->min_k ? rp->min_k : K;
    } else if (rp->family == LIT_ENTROPY) {
        ref_order(p, E, 1, idx);
        double H = 0;
        for (int e = 0; e < E; e++)
            if (p[e] > 0) H += -(double)p[e] * log((double)p[e]);
        double k = round(rp->scale * exp(H));
        K = k > rp->max_k ? rp->max_k : (k < rp->min_k ? rp->min_k : (int)k);
    } else {
        ref_pvalues(rp->pvalue, (float)rp->floor, null, layer, r, p, E, emp, emp_n, q);
        ref_order(q, E, 0, idx);
        int m = (int)floor(rp->beta * E), kstar = 1;
        double top = 0;
        for (int i = 1; i <= m; i++) {
            double qi = q[idx[i - 1]];
            double hc = sqrt((double)E) * ((double)i / E - qi) / sqrt(qi * (1.0 - qi));
            if (i == 1 || hc > top) top = hc, kstar = i;
        }
        K = lit_clamp(kstar, rp->min_k, rp->max_k);
    }
    for (int i = 0; i < K; i++) ex[i] = idx[i];
    int renorm = rp->norm == 1 || ntp;
    float s = 0;
    for (int i = 0; i < K; i++) s += p[ex[i]];
    for (int i = 0; i < K; i++) w[i] = renorm ? (s > 0 ? p[ex[i]] / s : 1.0f / K) : p[ex[i]];
    return K;
}

/* the parameters of a parsed policy, as the reference reads them */
static lit_policy lit_from_policy(const olmoe_policy *pol) {
    lit_policy rp;
    memset(&rp, 0, sizeof rp);
    const char *fam = pol->family->name;
    rp.family = !strcmp(fam, "threshold") ? LIT_THRESHOLD
                : !strcmp(fam, "skip")    ? LIT_SKIP
                : !strcmp(fam, "entropy") ? LIT_ENTROPY
                                          : LIT_HC;
    rp.min_k = (int)olmoe_policy_get(pol, "min_k");
    rp.max_k = (int)olmoe_policy_get(pol, "max_k");
    rp.norm = (int)olmoe_policy_get(pol, "norm");
    rp.T = olmoe_policy_get(pol, "T");
    rp.tau = olmoe_policy_get(pol, "tau");
    rp.beta = olmoe_policy_get(pol, "beta");
    rp.scale = olmoe_policy_get(pol, "scale");
    if (rp.family == LIT_HC) {
        rp.pvalue = (int)olmoe_policy_get(pol, "pvalue");
        rp.floor = olmoe_policy_get(pol, "pvalue_floor");
    }
    return rp;
}

#endif
