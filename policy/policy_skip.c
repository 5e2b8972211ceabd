/* policy_skip.c: skip beta= (definition in policy.h): dynamic skipping from
 * "Not All Experts are Equal" (Lu et al. 2024): route to the top max_k, then
 * skip every expert whose probability is below beta times the largest.
 *
 * beta=median takes beta per layer from a calibration trace: the median of
 * p_(max_k) / p_(1) over its tokens (the paper's choice for top-2, where
 * half the tokens then skip their second expert). Since p_(k) / p_(1) =
 * exp((r_(k) - r_(1)) / T), the median is taken over the logit gaps, which
 * do not depend on T, and mapped through exp(. / T), which keeps the order.
 * Bind reads the trace (any on-disk dtype, as float32), so the policy works
 * wherever policies are bound, given the trace's path (--beta-trace). */
#include "common.h"
#include "policy.h"
#include "policy_internal.h"
#include "traces.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int olmoe_policy_check_skip(const olmoe_policy *p) {
    return olmoe_policy_check_k_range(p);
}

int olmoe_policy_needs_calibration(const olmoe_policy *p) {
    return p->family && p->family->bind == olmoe_policy_bind_skip &&
           p->param[OLMOE_PARAM_BETA] < 0;
}

int olmoe_policy_set_needs_calibration(const olmoe_policy_set *set) {
    for (int i = 0; i < set->n; i++)
        if (olmoe_policy_needs_calibration(&set->items[i])) return 1;
    return 0;
}

void olmoe_policy_set_calibration(olmoe_policy_set *set, const char *path, int replace) {
    for (int i = 0; i < set->n; i++) {
        olmoe_policy *p = &set->items[i];
        if (olmoe_policy_needs_calibration(p) && (replace || !p->calib_path)) p->calib_path = path;
    }
}

/* the k-th largest of x[0..n) (1 <= k <= n); x is reordered */
static float kth_largest(float *x, int n, int k) {
    int lo = 0, hi = n - 1, want = k - 1;
    while (lo < hi) {
        float pivot = x[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (x[i] > pivot) i++;
            while (x[j] < pivot) j--;
            if (i <= j) {
                float t = x[i];
                x[i++] = x[j];
                x[j--] = t;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else return x[want];
    }
    return x[want];
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* beta_layer and calib_sum from the calibration trace (definition in policy.h) */
static int resolve_median(olmoe_policy *p) {
    const char *path = p->calib_path;
    olmoe_trace *t = olmoe_trace_open(path);
    if (!t) return -1;
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    const int L = in->meta.n_layers, E = in->meta.n_experts, k = p->max_k;
    const int64_t N = in->n_tokens;
    int rc = -1;
    if (L != p->model.n_layers || E != p->model.n_experts) {
        olmoe_errorf("beta=median: calibration trace %s has %d layers x %d experts, the model %d x "
                     "%d", path, L, E, p->model.n_layers, p->model.n_experts);
        olmoe_trace_close(t);
        return -1;
    }
    if (N < 1) {
        olmoe_errorf("beta=median: calibration trace %s has no tokens", path);
        olmoe_trace_close(t);
        return -1;
    }
    const int64_t C = 1024;
    float *buf = xmalloc(xmul(xmul((size_t)C, (size_t)L * E), sizeof *buf)); /* [C, L, E] */
    double *gap = xmalloc(xmul(xmul((size_t)L, (size_t)N), sizeof *gap));     /* [L, N] */
    float row[OLMOE_POLICY_MAX_E];
    olmoe_hasher *h = olmoe_hasher_new();
    for (int64_t s = 0; s < N; s += C) {
        int64_t n = N - s < C ? N - s : C;
        if (olmoe_trace_read_router_logits(t, s, n, buf) != 0) goto done;
        olmoe_hasher_feed(h, buf, (size_t)n * L * E * sizeof *buf);
        for (int64_t i = 0; i < n; i++)
            for (int l = 0; l < L; l++) {
                const float *r = buf + ((size_t)i * L + l) * E;
                float top = r[0];
                for (int e = 0; e < E; e++) {
                    if (!isfinite(r[e])) {
                        olmoe_errorf("beta=median: %s: router logit of token %lld, layer %d, "
                                     "expert %d is not finite", path, (long long)(s + i), l, e);
                        goto done;
                    }
                    top = r[e] > top ? r[e] : top;
                }
                memcpy(row, r, (size_t)E * sizeof *row);
                gap[(size_t)l * N + (size_t)(s + i)] = (double)kth_largest(row, E, k) - (double)top;
            }
    }
    for (int l = 0; l < L; l++) {
        double *g = gap + (size_t)l * N;
        qsort(g, (size_t)N, sizeof *g, cmp_double);
        p->beta_layer[l] = (float)exp(g[(N - 1) / 2] / (double)p->T);
    }
    rc = 0;
done : {
    olmoe_hash sum;
    olmoe_hasher_end(h, &sum);
    if (rc == 0) snprintf(p->calib_sum, sizeof p->calib_sum, "%s", sum.hex);
}
    free(buf);
    free(gap);
    olmoe_trace_close(t);
    return rc;
}

int olmoe_policy_bind_skip(olmoe_policy *p) {
    if (olmoe_policy_bind_kclamped(p) != 0) return -1;
    double b = p->param[OLMOE_PARAM_BETA];
    p->beta_median = b < 0;
    if (!p->beta_median) {
        p->beta = (float)b;
        return 0;
    }
    if (p->model.n_layers > OLMOE_POLICY_MAX_LAYERS)
        return olmoe_errorf("beta=median handles at most %d layers, the model has %d",
                            OLMOE_POLICY_MAX_LAYERS, p->model.n_layers);
    if (!p->calib_path)
        return olmoe_errorf("beta=median needs a calibration trace (--beta-trace TRACE; the trace "
                            "itself will do)");
    /* a second bind (with the real nulls) does not read the trace again */
    if (!(p->calib_done == p->calib_path && p->calib_k == p->max_k && p->calib_T == p->T)) {
        p->calib_done = NULL;
        if (resolve_median(p) != 0) return -1;
        p->calib_done = p->calib_path;
        p->calib_k = p->max_k;
        p->calib_T = p->T;
    }
    char tag_hex[13];
    memcpy(tag_hex, p->calib_sum, 12);
    tag_hex[12] = '\0';
    double tag = (double)strtoull(tag_hex, NULL, 16);
    if (b < -1 && -2.0 - b != tag)
        return olmoe_errorf("beta=median-%012llx was calibrated on another trace: %s has %s",
                            (unsigned long long)(-2.0 - b), p->calib_path, tag_hex);
    p->param[OLMOE_PARAM_BETA] = -2.0 - tag;
    return olmoe_policy_make_id(p);
}

int olmoe_policy_route_skip(const olmoe_policy *pol, int layer, const float *r, int E, int *ex,
                            float *w) {
    float p[OLMOE_POLICY_MAX_E];
    olmoe_policy_softmax(r, E, pol->T, p);
    olmoe_policy_most_probable(p, E, pol->max_k, ex);
    const float b = pol->beta_median ? pol->beta_layer[layer] : pol->beta;
    const float cut = b * p[ex[0]];
    int K = 0;
    while (K < pol->max_k && p[ex[K]] >= cut) K++;
    if (K < pol->min_k) K = pol->min_k;
    if (w) olmoe_policy_put_weights(pol, p, ex, K, w);
    return K;
}
