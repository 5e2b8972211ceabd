/* policy_hc.c: hc beta= (definition in policy.h): Higher Criticism (Donoho
 * and Jin 2004) on the per-expert p-values bh uses. Where BH asks for the
 * largest rank whose p-value is under its line, HC takes the rank at which
 * the p-values depart most from uniform, in standard deviations, among the
 * first beta * E ranks. */
#include "common.h"
#include "policy.h"
#include "policy_internal.h"

#include <math.h>

int olmoe_policy_check_hc(const olmoe_policy *p) {
    if (olmoe_policy_check_k_range(p) != 0) return -1;
    double b = p->param[OLMOE_PARAM_BETA];
    if (b < 0) return olmoe_errorf("beta=median is for skip; hc takes a number in (0, 1]");
    if (!(b > 0)) return olmoe_errorf("beta must be in (0, 1] for hc, got 0");
    return 0;
}

int olmoe_policy_bind_hc(olmoe_policy *p) {
    /* bh's checks: k range and the null that pvalue= needs (its thresholds
     * are computed from alpha = NaN and never read) */
    if (olmoe_policy_bind_bh(p) != 0) return -1;
    int E = p->model.n_experts;
    double b = p->param[OLMOE_PARAM_BETA], m = floor(b * (double)E);
    if (m < 1)
        return olmoe_errorf("beta=%g searches no rank among %d experts (beta * E < 1)", b, E);
    p->hc_ranks = (int)m;
    return 0;
}

int olmoe_policy_route_hc(const olmoe_policy *pol, int layer, const float *r, int E, int *ex,
                          float *w) {
    float q[OLMOE_POLICY_MAX_E], p[OLMOE_POLICY_MAX_E];
    uint64_t key[OLMOE_POLICY_MAX_E], best[OLMOE_POLICY_MAX_E];
    int have_p = olmoe_policy_pvalues(pol, layer, r, E, q, p);
    const int m = pol->hc_ranks;
    /* the smallest q for the search and for the chosen set at once */
    const int n = m > pol->max_k ? m : pol->max_k;
    for (int e = 0; e < E; e++) key[e] = olmoe_policy_key_asc(q[e], e);
    olmoe_policy_select_smallest(key, E, n, best);
    const double sqE = sqrt((double)E);
    double top = -INFINITY;
    int kstar = 1;
    for (int i = 1; i <= m; i++) {
        double qi = q[(uint32_t)best[i - 1]];
        double hc = sqE * ((double)i / E - qi) / sqrt(qi * (1.0 - qi));
        if (hc > top) { /* strict: the smallest rank wins a tie */
            top = hc;
            kstar = i;
        }
    }
    int K = kstar < pol->min_k ? pol->min_k : (kstar > pol->max_k ? pol->max_k : kstar);
    olmoe_policy_put_experts(best, K, ex);
    if (w) {
        if (!have_p) olmoe_policy_softmax(r, E, pol->T, p);
        olmoe_policy_put_weights(pol, p, ex, K, w);
    }
    return K;
}
