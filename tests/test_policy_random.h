/* test_policy_random.h: a policy against its reference (test_policy_ref.h,
 * test_policy_lit_ref.h) on random logits with ties: continuous, rounded to
 * quarters, blocks of equal values, outliers, flat, and +-0; a null on a
 * coarse grid with a flat stretch (so grid points and p-value ties are hit);
 * an empirical null of 50 tokens of such logits. Every spec at every expert
 * count routes 400 times and must choose the same experts with the same
 * weights as the reference, also when asked for the selection only. */
#ifndef OLMOE_TEST_POLICY_RANDOM_H
#define OLMOE_TEST_POLICY_RANDOM_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kde.h"
#include "policy.h"

static uint64_t pr_rng;
static double pr_urand(void) {
    pr_rng ^= pr_rng << 13, pr_rng ^= pr_rng >> 7, pr_rng ^= pr_rng << 17;
    return (double)(pr_rng >> 11) / 9007199254740992.0;
}
static double pr_nrand(void) {
    double u = pr_urand() + 1e-300, v = pr_urand();
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

enum { PR_CONTINUOUS, PR_TIES, PR_BLOCKS, PR_OUTLIERS, PR_FLAT, PR_ZEROS };

static void pr_logits(float *r, int E, int mode) {
    for (int e = 0; e < E; e++) {
        switch (mode) {
        case PR_CONTINUOUS: r[e] = (float)(2.0 * pr_nrand()); break;
        case PR_TIES: r[e] = (float)(floor(4.0 * pr_nrand()) / 4.0); break;
        case PR_BLOCKS: r[e] = e % 3 ? 0.0f : 7.0f; break;
        case PR_OUTLIERS: r[e] = (float)(pr_nrand() * (pr_urand() < 0.1 ? 8 : 1)); break;
        case PR_FLAT: r[e] = 0.0f; break;
        default: r[e] = pr_urand() < 0.5 ? (pr_urand() < 0.5 ? -0.0f : 0.0f) : (float)(e % 2); /* +-0 */
        }
    }
}

enum { PR_L = 3, PR_G = 33, PR_NT = 50 };

/* a null of PR_L layers on PR_G grid points from a normal, with a flat stretch */
static olmoe_kde_cdf pr_coarse_null(void) {
    static float sf[PR_L * PR_G];
    static unsigned char present[PR_L] = {1, 1, 1};
    static double x0[PR_L], inv[PR_L];
    for (int l = 0; l < PR_L; l++) {
        x0[l] = -3.0 - l;
        inv[l] = (PR_G - 1) / (6.0 + 2 * l);
        for (int j = 0; j < PR_G; j++) sf[l * PR_G + j] = (float)(0.5 * erfc((x0[l] + j / inv[l]) / sqrt(2.0)));
        sf[l * PR_G + 5] = sf[l * PR_G + 6]; /* a flat stretch: p-value ties */
    }
    return (olmoe_kde_cdf){PR_L, 0, PR_G, present, x0, inv, sf};
}

typedef struct {
    uint64_t seed;
    const char *const *specs;
    int n_specs;
    const int *Es, *modes; /* trial i draws its logits in modes[i % n_modes] */
    int n_Es, n_modes;
    float w_tol; /* |w - reference| allowed; 0: equal */
    /* 1 to leave (spec, E) out */
    int (*skip)(const olmoe_policy *pol, int E);
    /* reads the bound policy into the reference; returns its p-value kind */
    int (*ref_prepare)(const olmoe_policy *pol);
    int (*ref_route)(int L, int layer, const float *r, int E, int ntp, const olmoe_kde_cdf *null,
                     const float *emp /*[E][n]*/, int emp_n, int *ex, float *w);
} pr_sweep;

typedef struct {
    long routed;
    int distinct; /* how many expert counts occurred */
} pr_result;

/* tok [PR_NT][PR_L][E] random logits, as the policy's empirical null and as
 * the reference reads it, [PR_L][E][PR_NT] */
static void pr_empirical(int E, float *tok, float *ref_emp, olmoe_policy_empirical *emp) {
    for (int t = 0; t < PR_NT; t++) pr_logits(tok + (size_t)t * PR_L * E, PR_L * E, t % 2);
    CHECK(olmoe_policy_empirical_init(emp, PR_L, E, PR_NT, 0) == 0, "emp init");
    olmoe_policy_empirical_add(emp, 0, tok, PR_NT);
    CHECK(olmoe_policy_empirical_finish(emp) == 0, "emp finish");
    for (int l = 0; l < PR_L; l++)
        for (int e = 0; e < E; e++)
            for (int t = 0; t < PR_NT; t++)
                ref_emp[((size_t)l * E + e) * PR_NT + t] = tok[((size_t)t * PR_L + l) * E + e];
}

/* 400 decisions of one bound policy against the reference; the mismatches */
static long pr_trials(const pr_sweep *sw, olmoe_policy *pol, const char *spec, int E, int ntp,
                      const olmoe_kde_cdf *null, const float *tok, const float *ref_emp, long *mismatches,
                      long sizes[65]) {
    int pvalue = sw->ref_prepare(pol);
    long routed = 0;
    for (int trial = 0; trial < 400; trial++) {
        float r[64];
        int layer = trial % PR_L;
        if (trial < 40 && pvalue == 1) /* logits from the null itself: exact ties */
            memcpy(r, tok + ((size_t)(trial % PR_NT) * PR_L + layer) * E, sizeof(float) * E);
        else
            pr_logits(r, E, sw->modes[trial % sw->n_modes]);
        int ex[64], rex[64], ex2[64];
        float w[64], rw[64];
        int n = olmoe_policy_route(pol, layer, r, E, ex, w);
        int rn = sw->ref_route(PR_L, layer, r, E, ntp, null, ref_emp + (size_t)layer * E * PR_NT, PR_NT, rex, rw);
        int same = n == rn;
        for (int i = 0; same && i < n; i++)
            same = ex[i] == rex[i] && (sw->w_tol == 0 ? w[i] == rw[i] : fabsf(w[i] - rw[i]) <= sw->w_tol);
        /* selection-only calls decide the same */
        same = same && olmoe_policy_route(pol, layer, r, E, ex2, NULL) == n &&
               memcmp(ex, ex2, sizeof(int) * (size_t)n) == 0;
        if (!same && (*mismatches)++ < 3)
            CHECK(same, "%s (%s) E=%d trial %d: n %d vs %d, first %d vs %d", spec, pol->id, E, trial, n, rn,
                  ex[0], rex[0]);
        routed++;
        if (n >= 0 && n <= 64) sizes[n]++;
    }
    return routed;
}

/* every spec at every expert count; checks that no decision differs */
static pr_result pr_run(const pr_sweep *sw) {
    pr_rng = sw->seed;
    olmoe_kde_cdf null = pr_coarse_null();
    long mismatches = 0, sizes[65] = {0};
    pr_result res = {0, 0};
    for (int s = 0; s < sw->n_specs; s++) {
        for (int ei = 0; ei < sw->n_Es; ei++) {
            int E = sw->Es[ei];
            olmoe_policy pol;
            CHECK(olmoe_policy_parse(sw->specs[s], &pol) == 0, "%s: %s", sw->specs[s], olmoe_error());
            if (olmoe_policy_max_experts(&pol) > E || (sw->skip && sw->skip(&pol, E))) continue;
            float *tok = malloc(sizeof(float) * PR_NT * PR_L * E), *ref_emp = malloc(sizeof(float) * PR_L * E * PR_NT);
            olmoe_policy_empirical emp;
            pr_empirical(E, tok, ref_emp, &emp);
            int ntp = s % 2;
            olmoe_policy_model m = {PR_L, E, ntp, &null, &emp, NULL, 0};
            CHECK(olmoe_policy_bind(&pol, &m) == 0, "%s: %s", sw->specs[s], olmoe_error());
            res.routed += pr_trials(sw, &pol, sw->specs[s], E, ntp, &null, tok, ref_emp, &mismatches, sizes);
            olmoe_policy_empirical_free(&emp);
            free(tok);
            free(ref_emp);
        }
    }
    CHECK(mismatches == 0, "%ld of %ld decisions differ", mismatches, res.routed);
    for (int k = 0; k <= 64; k++) res.distinct += sizes[k] > 0;
    return res;
}

#endif
