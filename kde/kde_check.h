/* kde_check.h (internal to kde/): does a null describe the experts a router does not select?
 * On a (held-out) trace, per layer: the p-values 1 - CDF(r_e) of the experts
 * that the trace's own top-k does not select, against Uniform(0, 1). If the
 * null is right for them, their p-values are uniform: the QQ points lie on
 * the diagonal and the KS distance is small (about 1.36 / sqrt(n) at 5 %
 * for n independent values; these are not independent, so read it as a
 * distance, not a test). A null that is too wide gives p-values piled near 1
 * (too few discoveries), too narrow near 0 (too many). Beside it, the curve
 * of BH discoveries per token-layer (over all E experts, no max_k) against
 * alpha: what bh(alpha) would select with this null.
 *
 *   olmoe_kde_check c;
 *   if (olmoe_kde_check_run(&cdf, trace, 8, 0, 0, &c) != 0) die("%s", olmoe_error());
 *   printf("layer 0: KS %.4f\n", c.ks[0]);
 *   olmoe_kde_check_free(&c);
 *
 * p-values are counted in OLMOE_KDE_CHECK_BINS equal bins of [0, 1], so the
 * KS distance (evaluated at the bin edges) and the quantiles are exact to
 * 1 / OLMOE_KDE_CHECK_BINS.
 */
#ifndef OLMOE_KDE_CHECK_H
#define OLMOE_KDE_CHECK_H

#include <stdint.h>

#include "kde.h"
#include "traces.h"

#define OLMOE_KDE_CHECK_BINS 65536
#define OLMOE_KDE_CHECK_Q 99      /* QQ points: probabilities 0.01 .. 0.99 */
#define OLMOE_KDE_CHECK_ALPHAS 12

extern const double olmoe_kde_check_alpha[OLMOE_KDE_CHECK_ALPHAS];

typedef struct {
    int n_layers, n_experts, top_k;
    int64_t first, n_tokens;  /* the tokens checked: [first, first + n_tokens) */
    int64_t *n;               /* [L] p-values of non-selected experts */
    double *ks;               /* [L] sup |F_n(p) - p| */
    double *qq;               /* [L, Q] observed quantile at probability (i + 1) / 100 */
    double *share_below;      /* [L, 3] share of p-values below 0.01, 0.05, 0.1 */
    double *disc;             /* [L, ALPHAS] mean BH discoveries per token at that layer */
} olmoe_kde_check;

/* tokens [first, first + count) of t (count 0: to the end); every layer the
 * null has must be the trace's; layers the null lacks are skipped (n = 0) */
int olmoe_kde_check_run(const olmoe_kde_cdf *cdf, olmoe_trace *t, int top_k, int64_t first, int64_t count,
                        olmoe_kde_check *out);
void olmoe_kde_check_free(olmoe_kde_check *c);

#endif
