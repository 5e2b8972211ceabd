/* policy_route.c: the built-in families' routing and binding (definitions
 * in policy.h), and the entry points that dispatch through the family table.
 * A new family goes in a file of its own (policy_<family>.c) built from the
 * pieces in policy_internal.h, plus its rows in policy_table.c. */
#include "common.h"
#include "policy.h"
#include "policy_internal.h"

#include <math.h>
#include <string.h>

/* ---- families ---- */

int olmoe_policy_route_topk(const olmoe_policy *pol, int layer, const float *r, int E, int *ex,
                            float *w) {
    (void)layer;
    float p[OLMOE_POLICY_MAX_E];
    uint64_t best[OLMOE_POLICY_MAX_E];
    if (!w && olmoe_policy_topk_by_logits(r, E, pol->T, pol->k, best)) {
        olmoe_policy_put_experts(best, pol->k, ex);
        return pol->k;
    }
    olmoe_policy_softmax(r, E, pol->T, p);
    olmoe_policy_most_probable(p, E, pol->k, ex);
    if (w) olmoe_policy_put_weights(pol, p, ex, pol->k, w);
    return pol->k;
}

int olmoe_policy_route_topp(const olmoe_policy *pol, int layer, const float *r, int E, int *ex,
                            float *w) {
    (void)layer;
    float p[OLMOE_POLICY_MAX_E];
    olmoe_policy_softmax(r, E, pol->T, p);
    olmoe_policy_most_probable(p, E, pol->max_k, ex);
    int K = pol->max_k;
    float cum = 0.0f;
    for (int i = 0; i < pol->max_k; i++) {
        cum += p[ex[i]];
        if (cum >= pol->p_target) {
            K = i + 1;
            break;
        }
    }
    if (K < pol->min_k) K = pol->min_k;
    if (w) olmoe_policy_put_weights(pol, p, ex, K, w);
    return K;
}

int olmoe_policy_pvalues(const olmoe_policy *pol, int layer, const float *r, int E, float *q,
                         float *p) {
    const float lo = pol->pv_lo, hi = pol->pv_hi;
    switch (pol->pvalue) {
    case OLMOE_PVALUE_KDE:
        for (int e = 0; e < E; e++) q[e] = olmoe_kde_cdf_pvalue_expert(pol->model.null, layer, e, r[e], lo);
        return 0;
    case OLMOE_PVALUE_EMPIRICAL:
        for (int e = 0; e < E; e++)
            q[e] = olmoe_policy_clampf(olmoe_policy_empirical_pvalue(pol->model.emp, layer, e, r[e]),
                                       lo, hi);
        return 0;
    default: /* pseudo */
        olmoe_policy_softmax(r, E, pol->T, p);
        for (int e = 0; e < E; e++) q[e] = olmoe_policy_clampf(1.0f - p[e], lo, hi);
        return 1;
    }
}

int olmoe_policy_route_bh(const olmoe_policy *pol, int layer, const float *r, int E, int *ex,
                          float *w) {
    float q[OLMOE_POLICY_MAX_E], p[OLMOE_POLICY_MAX_E];
    int have_p = olmoe_policy_pvalues(pol, layer, r, E, q, p);

    /* Only p-values <= alpha = thr_E can ever pass. Sorted, those candidates
     * are the c smallest p-values, q_(1..c), so the step-up rule "largest k
     * with q_(k) <= thr_k" reads directly off them. */
    const float *thr = pol->thr;
    const float tmax = thr[E];
    uint64_t cand[OLMOE_POLICY_MAX_E], best[OLMOE_POLICY_MAX_E];
    int c = 0;
    for (int e = 0; e < E; e++) {
        cand[c] = olmoe_policy_key_asc(q[e], e);
        c += q[e] <= tmax; /* no branch: whether one passes is a coin toss */
    }
    olmoe_policy_sort_keys(cand, c);
    int kstar = 0;
    for (int k = c; k >= 1; k--)
        if (q[(uint32_t)cand[k - 1]] <= thr[k]) {
            kstar = k;
            break;
        }
    int K = kstar < pol->min_k ? pol->min_k : (kstar > pol->max_k ? pol->max_k : kstar);
    if (K <= c) {
        olmoe_policy_put_experts(cand, K, ex);
    } else if (K == 1) {
        uint64_t least = olmoe_policy_key_asc(q[0], 0);
        for (int e = 1; e < E; e++) {
            uint64_t k = olmoe_policy_key_asc(q[e], e);
            least = k < least ? k : least;
        }
        olmoe_policy_put_experts(&least, 1, ex);
    } else {
        uint64_t key[OLMOE_POLICY_MAX_E];
        for (int e = 0; e < E; e++) key[e] = olmoe_policy_key_asc(q[e], e);
        olmoe_policy_select_smallest(key, E, K, best);
        olmoe_policy_put_experts(best, K, ex);
    }
    if (w) {
        if (!have_p) olmoe_policy_softmax(r, E, pol->T, p);
        olmoe_policy_put_weights(pol, p, ex, K, w);
    }
    return K;
}

/* ---- binding ---- */

int olmoe_policy_bind_topk(olmoe_policy *p) {
    if (p->k > p->model.n_experts)
        return olmoe_errorf("k=%d is more than the model's %d experts", p->k, p->model.n_experts);
    p->min_k = p->max_k = p->k;
    return 0;
}

int olmoe_policy_bind_kclamped(olmoe_policy *p) {
    int E = p->model.n_experts;
    if (p->max_k > E) return olmoe_errorf("max_k=%d is more than the model's %d experts", p->max_k, E);
    if (p->min_k > E) return olmoe_errorf("min_k=%d is more than the model's %d experts", p->min_k, E);
    return 0;
}

int olmoe_policy_bind_bh(olmoe_policy *p) {
    if (olmoe_policy_bind_kclamped(p) != 0) return -1;
    const olmoe_policy_model *m = &p->model;
    int E = m->n_experts;
    double alpha = p->param[OLMOE_PARAM_ALPHA];
    p->thr[0] = 0.0f;
    for (int k = 1; k <= E; k++) p->thr[k] = (float)((double)k * alpha / (double)E);
    if (p->pvalue == OLMOE_PVALUE_KDE) {
        if (!m->null)
            return olmoe_errorf("pvalue=kde needs a null distribution (--kde null.h5, made by "
                                "olmoe-kde fit)");
        if (m->null->n_layers != m->n_layers)
            return olmoe_errorf("the null distribution has %d layers, the model %d",
                                m->null->n_layers, m->n_layers);
        if (m->null->n_experts && m->null->n_experts != E)
            return olmoe_errorf("the per-expert null distribution has %d experts, the model %d",
                                m->null->n_experts, E);
        for (int l = 0; l < m->n_layers; l++)
            for (int e = 0; e < (m->null->n_experts ? E : 1); e++)
                if (!m->null->present[olmoe_kde_cdf_slot(m->null, l, e)])
                    return olmoe_errorf("the null distribution has no fit for layer %d%s", l,
                                        m->null->n_experts ? " (an expert of it)" : "");
    } else if (p->pvalue == OLMOE_PVALUE_EMPIRICAL) {
        if (!m->emp || !m->emp->sorted)
            return olmoe_errorf("pvalue=empirical needs the trace's logits (built by the caller)");
        if (m->emp->n_layers != m->n_layers || m->emp->n_experts != E)
            return olmoe_errorf("the empirical null is %d x %d, the model %d layers x %d experts",
                                m->emp->n_layers, m->emp->n_experts, m->n_layers, E);
        if (m->emp->n < 1) return olmoe_errorf("the empirical null is empty");
    }
    return 0;
}

static int param_int(const olmoe_policy *p, olmoe_param_id id, int def) {
    double v = p->param[id];
    return isnan(v) ? def : (int)v;
}

int olmoe_policy_bind(olmoe_policy *p, const olmoe_policy_model *m) {
    p->bound = 0;
    if (!p->family) return olmoe_errorf("policy not parsed");
    if (m->n_experts < 1 || m->n_experts > OLMOE_POLICY_MAX_E)
        return olmoe_errorf("%s: %d experts is outside what policies handle (1..%d)", p->id,
                            m->n_experts, OLMOE_POLICY_MAX_E);
    if (m->n_layers < 1) return olmoe_errorf("%s: the model has no layers", p->id);
    p->model = *m;
    p->k = param_int(p, OLMOE_PARAM_K, 0);
    p->min_k = param_int(p, OLMOE_PARAM_MIN_K, 1);
    p->max_k = param_int(p, OLMOE_PARAM_MAX_K, m->n_experts);
    p->pvalue = param_int(p, OLMOE_PARAM_PVALUE, OLMOE_PVALUE_KDE);
    p->norm = param_int(p, OLMOE_PARAM_NORM, OLMOE_NORM_MODEL);
    double T = p->param[OLMOE_PARAM_T], pt = p->param[OLMOE_PARAM_P];
    double fl = p->param[OLMOE_PARAM_PVALUE_FLOOR];
    p->T = isnan(T) ? 1.0f : (float)T;
    p->p_target = isnan(pt) ? 1.0f : (float)pt;
    p->pv_lo = isnan(fl) ? 1e-7f : (float)fl;
    p->pv_hi = 1.0f - p->pv_lo;
    if (p->family->bind && p->family->bind(p) != 0) return olmoe_error_prefix("%s", p->id);
    p->bound = 1;
    return 0;
}

int olmoe_policy_route_at(void *policy, int layer, int64_t pos, const float *logits, int E,
                          int *experts, float *weights) {
    const olmoe_policy *pol = policy;
    if (!pol->bound || E != pol->model.n_experts || layer < 0 || layer >= pol->model.n_layers)
        return -1;
    if (pol->family->route_at) return pol->family->route_at(pol, layer, pos, logits, E, experts, weights);
    return pol->family->route(pol, layer, logits, E, experts, weights);
}

int olmoe_policy_route(void *policy, int layer, const float *logits, int E, int *experts,
                       float *weights) {
    return olmoe_policy_route_at(policy, layer, -1, logits, E, experts, weights);
}

void olmoe_policy_free(olmoe_policy *p) {
    olmoe_policy_free_routing(p);
}

int olmoe_policy_max_experts(const olmoe_policy *p) {
    double k = p->param[OLMOE_PARAM_K], mk = p->param[OLMOE_PARAM_MAX_K];
    if (p->family && p->family->route_at) return p->bound ? p->max_k : OLMOE_POLICY_MAX_E;
    if (!isnan(mk)) return (int)mk;
    if (!isnan(k)) return (int)k;
    return p->bound ? p->model.n_experts : OLMOE_POLICY_MAX_E;
}

void olmoe_policy_k_range(const olmoe_policy *p, int *min_k, int *max_k) {
    double k = p->param[OLMOE_PARAM_K], lo = p->param[OLMOE_PARAM_MIN_K];
    *max_k = olmoe_policy_max_experts(p);
    *min_k = !isnan(lo) ? (int)lo : (!isnan(k) ? (int)k : 1);
}

int olmoe_policy_needs(const olmoe_policy *p, olmoe_pvalue_kind kind) {
    double v = p->param[OLMOE_PARAM_PVALUE];
    return !isnan(v) && (int)v == (int)kind;
}

