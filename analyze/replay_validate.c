/* replay_validate.c: how far replay can be trusted: for every policy run
 * both ways, perplexity of each, their relative difference, the agreement of
 * the per-token NLL, the time of each, and whether the two order the
 * policies alike (/validate, man/olmoe-replay.1). */
#include "common.h"
#include "replay.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double olmoe_replay_pearson(const float *x, const float *y, int64_t n, double *mean_abs_diff) {
    double mx = 0, my = 0, mad = 0;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        mx += x[i], my += y[i], mad += fabs((double)x[i] - (double)y[i]);
        m++;
    }
    if (mean_abs_diff) *mean_abs_diff = m ? mad / (double)m : NAN;
    if (m < 2) return NAN;
    mx /= (double)m, my /= (double)m;
    double sxy = 0, sxx = 0, syy = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        double a = x[i] - mx, b = y[i] - my;
        sxy += a * b, sxx += a * a, syy += b * b;
    }
    if (sxx <= 0 || syy <= 0) return NAN;
    return sxy / sqrt(sxx * syy);
}

static int sgn(double d) { return (d > 0) - (d < 0); }

double olmoe_replay_kendall(const double *a, const double *b, int n, int *all_agree) {
    int64_t conc = 0, disc = 0, ties_a = 0, ties_b = 0;
    int agree = 1;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            int sa = sgn(a[i] - a[j]), sb = sgn(b[i] - b[j]);
            if (sa != sb) agree = 0;
            if (sa == 0 && sb == 0) continue;
            if (sa == 0) ties_a++;
            else if (sb == 0) ties_b++;
            else if (sa == sb) conc++;
            else disc++;
        }
    if (all_agree) *all_agree = agree;
    double n1 = (double)(conc + disc + ties_a), n2 = (double)(conc + disc + ties_b);
    if (n < 2 || n1 <= 0 || n2 <= 0) return NAN;
    return (double)(conc - disc) / sqrt(n1 * n2);
}

int olmoe_replay_discordant(const double *a, const double *b, int n, double *widest) {
    int count = 0;
    *widest = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            if (sgn(a[i] - a[j]) == sgn(b[i] - b[j])) continue;
            count++;
            double lo = fmin(b[i], b[j]), gap = fabs(b[i] - b[j]) / lo;
            if (lo > 0 && gap > *widest) *widest = gap;
        }
    return count;
}

int olmoe_replay_validate(const olmoe_replay_run *r, olmoe_replay_validation *v) {
    memset(v, 0, sizeof *v);
    int cap = r->n_results;
    v->policy = xcalloc((size_t)cap + 1, sizeof *v->policy);
    double **cols[] = {&v->replay_ppl, &v->exact_ppl, &v->rel_diff, &v->nll_corr,
                       &v->nll_mad, &v->replay_seconds, &v->exact_seconds};
    for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
        *cols[c] = xcalloc((size_t)cap + 1, sizeof(double));
    for (int i = 0; i < r->n_results; i++) {
        const olmoe_replay_result *rp = &r->res[i];
        if (rp->kind != OLMOE_KIND_REPLAY || !rp->stored) continue;
        const olmoe_replay_result *ex = olmoe_replay_find(r, OLMOE_KIND_EXACT, rp->policy->id);
        if (!ex) continue;
        int k = v->n++;
        v->policy[k] = xstrdup(rp->policy->id);
        v->replay_ppl[k] = rp->all.perplexity;
        v->exact_ppl[k] = ex->all.perplexity;
        v->rel_diff[k] = rp->all.perplexity / ex->all.perplexity - 1;
        v->nll_corr[k] = olmoe_replay_pearson(rp->nll, ex->nll, r->n_tokens, &v->nll_mad[k]);
        v->replay_seconds[k] = rp->seconds;
        v->exact_seconds[k] = ex->seconds;
    }
    if (v->n == 0) {
        olmoe_replay_validation_free(v);
        return olmoe_errorf("validate: no policy was run both ways");
    }
    v->kendall_tau = olmoe_replay_kendall(v->replay_ppl, v->exact_ppl, v->n, &v->ranking_agrees);
    v->n_discordant = olmoe_replay_discordant(v->replay_ppl, v->exact_ppl, v->n, &v->widest_discordant);
    return 0;
}

void olmoe_replay_validation_free(olmoe_replay_validation *v) {
    for (int i = 0; i < v->n; i++) free(v->policy[i]);
    free(v->policy);
    free(v->replay_ppl);
    free(v->exact_ppl);
    free(v->rel_diff);
    free(v->nll_corr);
    free(v->nll_mad);
    free(v->replay_seconds);
    free(v->exact_seconds);
    memset(v, 0, sizeof *v);
}
