/* test_policy_ref_base.h: the pieces every reference policy of the tests is
 * built from, written the straightforward way from docs/DESIGN.md §6 and the
 * definitions at the top of policy/policy.h: softmax, full qsort orders, the
 * kde p-value read off the grid by hand, and each p-value kind counted over
 * every expert. It shares no code with policy/policy*.c; test_policy_ref.h
 * and test_policy_lit_ref.h build their policies on it. */
#ifndef OLMOE_TEST_POLICY_REF_BASE_H
#define OLMOE_TEST_POLICY_REF_BASE_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kde.h"
#include "policy.h"

static void ref_softmax(const float *r, int E, float T, float *p) {
    float x[512], m, s = 0;
    for (int e = 0; e < E; e++) x[e] = T == 1.0f ? r[e] : r[e] / T;
    m = x[0];
    for (int e = 1; e < E; e++) m = x[e] > m ? x[e] : m;
    for (int e = 0; e < E; e++) s += (x[e] = (float)exp((double)(x[e] - m)));
    for (int e = 0; e < E; e++) p[e] = x[e] / s;
}

static const float *ref_sort_val;
static int ref_sort_desc;
static int ref_cmp_idx(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    float u = ref_sort_val[i], v = ref_sort_val[j];
    if (u != v) return ref_sort_desc ? (u < v ? 1 : -1) : (u < v ? -1 : 1);
    return i - j;
}
/* experts ordered by v (descending or ascending), ties to the lower index */
static void ref_order(const float *v, int E, int desc, int *idx) {
    for (int e = 0; e < E; e++) idx[e] = e;
    ref_sort_val = v;
    ref_sort_desc = desc;
    qsort(idx, (size_t)E, sizeof *idx, ref_cmp_idx);
}

static float ref_clamp(float q, float lo) {
    float hi = 1.0f - lo;
    return q < lo ? lo : (q > hi ? hi : q);
}

/* 1 - CDF of the layer's null, written out from kde.h's definition (not calling it) */
static float ref_kde_p(const olmoe_kde_cdf *c, int l, float x, float lo) {
    double t = ((double)x - c->x0[l]) * c->inv_dx[l];
    const float *s = c->sf + (size_t)l * c->n_grid;
    float p;
    if (isnan(t) || t < 0) p = 1.0f;
    else if (t > c->n_grid - 1) p = 0.0f;
    else if (t == c->n_grid - 1) p = s[c->n_grid - 1];
    else {
        int i = (int)floor(t);
        float f = (float)(t - i);
        p = s[i] + f * (s[i + 1] - s[i]);
    }
    return ref_clamp(p, lo);
}

/* q[e], every expert's p-value of kind pvalue (0 kde, 1 empirical, 2 pseudo)
 * floored at lo; r the router logits, p their softmax, emp that layer's
 * empirical logits per expert [E][emp_n] */
static void ref_pvalues(int pvalue, float lo, const olmoe_kde_cdf *null, int layer, const float *r, const float *p,
                        int E, const float *emp, int emp_n, float *q) {
    for (int e = 0; e < E; e++) {
        if (pvalue == 0) {
            q[e] = ref_kde_p(null, layer, r[e], lo);
        } else if (pvalue == 1) {
            int above = 0;
            for (int i = 0; i < emp_n; i++) above += emp[e * emp_n + i] > r[e];
            q[e] = ref_clamp((float)((double)above / emp_n), lo);
        } else {
            q[e] = ref_clamp(1.0f - p[e], lo);
        }
    }
}

#endif
