/* fuzz_policy_check.h: what fuzz_policy and fuzz_sweep do with the policies
 * a spec or sweep file gave: bind them to a small model (2 layers, E experts,
 * a synthetic KDE null and an empirical null, so every p-value kind binds),
 * route logits taken from the input, and compare each result with a
 * reference written here straight from the definitions in analyze/policy.h
 * (O(E^2) selection, no shortcuts). The library's routing without weights
 * (which may skip the softmax) must pick the same experts as with them. */
#ifndef OLMOE_FUZZ_POLICY_CHECK_H
#define OLMOE_FUZZ_POLICY_CHECK_H

#include "fuzz.h"
#include "policy.h"

#include <math.h>

#define PC_LAYERS 2
#define PC_GRID 8

typedef struct {
    int E;
    olmoe_kde_cdf cdf;
    unsigned char present[PC_LAYERS];
    double x0[PC_LAYERS], inv_dx[PC_LAYERS];
    float sf[PC_LAYERS * PC_GRID];
    olmoe_policy_empirical emp;
    olmoe_policy_model model;
} pc_env;

/* a decreasing survival function on [-4, 3] and an empirical null of 8
 * tokens with a few ties */
static void pc_env_init(pc_env *v, int E, int norm_topk_prob) {
    memset(v, 0, sizeof *v);
    v->E = E;
    for (int l = 0; l < PC_LAYERS; l++) {
        v->present[l] = 1;
        v->x0[l] = -4.0 + l;
        v->inv_dx[l] = 1.0;
        for (int g = 0; g < PC_GRID; g++) v->sf[l * PC_GRID + g] = 1.0f - (float)g / (PC_GRID - 1);
    }
    v->cdf = (olmoe_kde_cdf){PC_LAYERS, 0, PC_GRID, v->present, v->x0, v->inv_dx, v->sf};
    FUZZ_ASSERT(olmoe_policy_empirical_init(&v->emp, PC_LAYERS, E, 8, 0) == 0, "emp init");
    float *lg = malloc(sizeof(float) * 8 * PC_LAYERS * (size_t)E);
    if (!lg) abort();
    for (int i = 0; i < 8 * PC_LAYERS * E; i++) lg[i] = (float)((i * 7) % 11) - 5.0f;
    olmoe_policy_empirical_add(&v->emp, 0, lg, 8);
    free(lg);
    FUZZ_ASSERT(olmoe_policy_empirical_finish(&v->emp) == 0, "emp finish: %s", olmoe_error());
    v->model = (olmoe_policy_model){PC_LAYERS, E, norm_topk_prob, &v->cdf, &v->emp, NULL, 0};
}

/* one environment per (E, norm), built on first use and kept: the
 * empirical null's sort is the slow part */
static pc_env *pc_env_get(int E, int norm) {
    static pc_env *envs[2][OLMOE_POLICY_MAX_E + 1];
    pc_env **v = &envs[norm != 0][E];
    if (!*v) {
        *v = malloc(sizeof **v);
        if (!*v) abort();
        pc_env_init(*v, E, norm);
    }
    return *v;
}

/* ---- the reference, from policy.h's definitions ---- */
static void pc_softmax(const float *r, int E, float T, float *p) {
    float x[OLMOE_POLICY_MAX_E], m = -INFINITY, s = 0.0f;
    for (int e = 0; e < E; e++) x[e] = T == 1.0f ? r[e] : r[e] / T;
    for (int e = 0; e < E; e++) m = x[e] > m ? x[e] : m;
    for (int e = 0; e < E; e++) {
        p[e] = (float)exp((double)(x[e] - m));
        s += p[e];
    }
    for (int e = 0; e < E; e++) p[e] = p[e] / s;
}

/* order[0..E): experts by v, descending (desc) or ascending, ties to the lower index */
static void pc_order(const float *v, int E, int desc, int *order) {
    int used[OLMOE_POLICY_MAX_E] = {0};
    for (int i = 0; i < E; i++) {
        int b = -1;
        for (int e = 0; e < E; e++) {
            if (used[e]) continue;
            if (b < 0 || (desc ? v[e] > v[b] : v[e] < v[b])) b = e;
        }
        used[b] = 1;
        order[i] = b;
    }
}

static int pc_reference(const olmoe_policy *pol, int layer, const float *r, int E, int *ex,
                        float *w) {
    float p[OLMOE_POLICY_MAX_E], q[OLMOE_POLICY_MAX_E];
    int order[OLMOE_POLICY_MAX_E], K;
    pc_softmax(r, E, pol->T, p);
    const char *fam = pol->family->name;
    if (strcmp(fam, "topk") == 0) {
        pc_order(p, E, 1, order);
        K = pol->k;
    } else if (strcmp(fam, "topp") == 0) {
        pc_order(p, E, 1, order);
        float cum = 0.0f;
        K = E;
        for (int i = 0; i < E; i++) {
            cum += p[order[i]];
            if (cum >= pol->p_target) {
                K = i + 1;
                break;
            }
        }
        K = K < pol->min_k ? pol->min_k : K > pol->max_k ? pol->max_k : K;
    } else {
        FUZZ_ASSERT(strcmp(fam, "bh") == 0, "a family without a reference: %s", fam);
        float lo = pol->pv_lo, hi = 1.0f - lo;
        for (int e = 0; e < E; e++) {
            if (pol->pvalue == OLMOE_PVALUE_KDE)
                q[e] = olmoe_kde_cdf_pvalue_expert(pol->model.null, layer, e, r[e], lo);
            else if (pol->pvalue == OLMOE_PVALUE_EMPIRICAL)
                q[e] = olmoe_policy_empirical_pvalue(pol->model.emp, layer, e, r[e]);
            else
                q[e] = 1.0f - p[e];
            q[e] = q[e] < lo ? lo : q[e] > hi ? hi : q[e];
        }
        pc_order(q, E, 0, order);
        double alpha = olmoe_policy_get(pol, "alpha");
        int kstar = 0;
        for (int k = E; k >= 1; k--)
            if (q[order[k - 1]] <= (float)((double)k * alpha / (double)E)) {
                kstar = k;
                break;
            }
        K = kstar < pol->min_k ? pol->min_k : kstar > pol->max_k ? pol->max_k : kstar;
    }
    for (int i = 0; i < K; i++) ex[i] = order[i];
    int renorm = pol->norm == OLMOE_NORM_SELECTED || pol->model.norm_topk_prob;
    float s = 0.0f;
    for (int i = 0; i < K; i++) s += p[ex[i]];
    for (int i = 0; i < K; i++) w[i] = !renorm ? p[ex[i]] : s > 0.0f ? p[ex[i]] / s : 1.0f / (float)K;
    return K;
}

/* routes rows of logits (E each) through pol and the reference */
static void pc_route_check(olmoe_policy *pol, const float *logits, int rows, int E) {
    int max = olmoe_policy_max_experts(pol), lo, hi;
    olmoe_policy_k_range(pol, &lo, &hi);
    FUZZ_ASSERT(max >= 1 && max <= E && lo >= 1 && lo <= hi && hi <= max,
                "%s: max %d, k range [%d, %d] with E %d", pol->id, max, lo, hi, E);
    for (int i = 0; i < rows; i++) {
        const float *r = logits + (size_t)i * E;
        int layer = i % PC_LAYERS;
        int ex[OLMOE_POLICY_MAX_E], ex2[OLMOE_POLICY_MAX_E], rex[OLMOE_POLICY_MAX_E];
        float w[OLMOE_POLICY_MAX_E], rw[OLMOE_POLICY_MAX_E];
        int n = olmoe_policy_route(pol, layer, r, E, ex, w);
        FUZZ_ASSERT(n >= lo && n <= hi, "%s: %d experts outside [%d, %d]", pol->id, n, lo, hi);
        int seen[OLMOE_POLICY_MAX_E] = {0};
        for (int k = 0; k < n; k++) {
            FUZZ_ASSERT(ex[k] >= 0 && ex[k] < E && !seen[ex[k]]++, "%s: expert %d at %d", pol->id,
                        ex[k], k);
            FUZZ_ASSERT(isfinite(w[k]) && w[k] >= 0.0f, "%s: weight %g (T %g)", pol->id, w[k],
                        (double)pol->T);
        }
        int n2 = olmoe_policy_route(pol, layer, r, E, ex2, NULL);
        FUZZ_ASSERT(n2 == n && memcmp(ex, ex2, sizeof *ex * (size_t)n) == 0,
                    "%s: routing without weights picks other experts (row %d)", pol->id, i);
        int rn = pc_reference(pol, layer, r, E, rex, rw);
        FUZZ_ASSERT(rn == n && memcmp(ex, rex, sizeof *ex * (size_t)n) == 0,
                    "%s: %d experts, the definition gives %d (row %d; first %d vs %d)", pol->id, n,
                    rn, i, ex[0], rex[0]);
        for (int k = 0; k < n; k++)
            FUZZ_ASSERT(w[k] == rw[k], "%s: weight %d is %.9g, the definition gives %.9g", pol->id,
                        k, (double)w[k], (double)rw[k]);
    }
}

/* logits from bytes: int16 / 64, so values repeat (ties) and stay finite;
 * 0x8000 is -0.0 */
static int pc_logits(const uint8_t *b, size_t n, int E, float *out, int max_rows) {
    int rows = (int)(n / (2 * (size_t)E));
    if (rows > max_rows) rows = max_rows;
    for (int i = 0; i < rows * E; i++) {
        int16_t v = (int16_t)(b[2 * i] | b[2 * i + 1] << 8);
        out[i] = v == INT16_MIN ? -0.0f : (float)v / 64.0f;
    }
    return rows;
}

/* binds the set (errors must be one line) and routes the first policies */
static void pc_check_set(olmoe_policy_set *set, const uint8_t *lbytes, size_t nl, int E, int norm) {
    pc_env *v = pc_env_get(E, norm);
    for (int i = 0; i < set->n; i++) {
        FUZZ_ASSERT(strlen(set->items[i].id) < OLMOE_POLICY_ID_MAX, "id length");
        for (int j = 0; j < i && set->n <= 256; j++)
            FUZZ_ASSERT(strcmp(set->items[i].id, set->items[j].id) != 0, "duplicate id %s",
                        set->items[i].id);
        /* the id is canonical: it parses back to a policy with the same id */
        olmoe_policy back;
        if (i < 64) {
            FUZZ_ASSERT(olmoe_policy_parse(set->items[i].id, &back) == 0, "id '%s' does not parse: %s",
                        set->items[i].id, olmoe_error());
            FUZZ_ASSERT(strcmp(back.id, set->items[i].id) == 0, "id '%s' reads back as '%s'",
                        set->items[i].id, back.id);
        }
    }
    if (olmoe_policy_set_bind(set, &v->model) != 0) {
        FUZZ_MESSAGE_OK();
        return;
    }
    static float logits[8 * OLMOE_POLICY_MAX_E];
    int rows = pc_logits(lbytes, nl, E, logits, 8);
    for (int i = 0; i < set->n && i < 8; i++) pc_route_check(&set->items[i], logits, rows, E);
}

#endif
