/* test_policy_ref.h: the routing policies written the straightforward way,
 * from docs/DESIGN.md §6 and the definitions at the top of policy/policy.h:
 * full sorts with qsort, the step-up rule scanned from the top rank down,
 * linear counts for empirical p-values. It shares no code with
 * policy/policy*.c; the tests compare the two decision for decision. */
#ifndef OLMOE_TEST_POLICY_REF_H
#define OLMOE_TEST_POLICY_REF_H

#include "test_policy_ref_base.h"

typedef struct {
    int family; /* 0 topk, 1 topp, 2 bh */
    int k, min_k, max_k, pvalue, norm;
    double alpha, p, T, floor;
} ref_policy;

static int ref_route(const ref_policy *rp, int L_unused, int layer, const float *r, int E,
                     int ntp, const olmoe_kde_cdf *null, const float *emp /*[E][n]*/, int emp_n,
                     int *ex, float *w) {
    (void)L_unused;
    float p[512], q[512];
    int idx[512], K;
    ref_softmax(r, E, (float)rp->T, p);
    if (rp->family == 0 || rp->family == 1) {
        ref_order(p, E, 1, idx);
        if (rp->family == 0) {
            K = rp->k;
        } else {
            float cum = 0;
            K = E + 1;
            for (int i = 0; i < E; i++) {
                cum += p[idx[i]];
                if (cum >= (float)rp->p) {
                    K = i + 1;
                    break;
                }
            }
            K = K < rp->min_k ? rp->min_k : (K > rp->max_k ? rp->max_k : K);
        }
    } else {
        ref_pvalues(rp->pvalue, (float)rp->floor, null, layer, r, p, E, emp, emp_n, q);
        ref_order(q, E, 0, idx);
        int kstar = 0;
        for (int k = E; k >= 1; k--)
            if (q[idx[k - 1]] <= (float)((double)k * rp->alpha / E)) {
                kstar = k;
                break;
            }
        if (kstar == 0) kstar = rp->min_k;
        K = kstar < rp->min_k ? rp->min_k : (kstar > rp->max_k ? rp->max_k : kstar);
    }
    for (int i = 0; i < K; i++) ex[i] = idx[i];
    int renorm = rp->norm == 1 || ntp;
    float s = 0;
    for (int i = 0; i < K; i++) s += p[ex[i]];
    for (int i = 0; i < K; i++) w[i] = renorm ? p[ex[i]] / s : p[ex[i]];
    return K;
}


/* the parameters of a parsed policy, as the reference reads them */
static ref_policy ref_from_policy(const olmoe_policy *pol) {
    ref_policy rp;
    memset(&rp, 0, sizeof rp);
    const char *fam = pol->family->name;
    rp.family = strcmp(fam, "topk") == 0 ? 0 : (strcmp(fam, "topp") == 0 ? 1 : 2);
    rp.k = (int)olmoe_policy_get(pol, "k");
    rp.min_k = rp.family ? (int)olmoe_policy_get(pol, "min_k") : rp.k;
    rp.max_k = rp.family ? (int)olmoe_policy_get(pol, "max_k") : rp.k;
    rp.pvalue = rp.family == 2 ? (int)olmoe_policy_get(pol, "pvalue") : 0;
    rp.norm = (int)olmoe_policy_get(pol, "norm");
    rp.alpha = olmoe_policy_get(pol, "alpha");
    rp.p = olmoe_policy_get(pol, "p");
    rp.T = olmoe_policy_get(pol, "T");
    rp.floor = rp.family == 2 ? olmoe_policy_get(pol, "pvalue_floor") : 0;
    return rp;
}

#endif
