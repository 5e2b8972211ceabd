/* policy_select.c: the pieces every family routes with: the fp32 softmax,
 * selection of the K best by 64-bit keys (rank key << 32 | expert index: the
 * index in the low half makes keys distinct and breaks ties toward the lower
 * index, so "the K best" is one set in one order), and the weights. Nothing
 * here allocates: scratch is on the stack, sized by OLMOE_POLICY_MAX_E. */
#include "common.h"
#include "policy.h"
#include "policy_internal.h"

#include <math.h>
#include <string.h>

/* p = softmax(r / T) in fp32 (policy.h spells out the order of operations) */
void olmoe_policy_softmax(const float *r, int E, float T, float *p) {
    if (T == 1.0f)
        for (int e = 0; e < E; e++) p[e] = r[e];
    else
        for (int e = 0; e < E; e++) p[e] = r[e] / T;
    float m = p[0];
    for (int e = 1; e < E; e++)
        if (p[e] > m) m = p[e];
    float s = 0.0f;
    for (int e = 0; e < E; e++) {
        /* exp in double, rounded once to fp32: correctly rounded but for
         * ~1 in 10^8 arguments, so any libm and the GPU give the same bits
         * (glibc's expf differs from it in ~1 in 10^4 arguments) */
        p[e] = (float)exp((double)(p[e] - m));
        s += p[e];
    }
    for (int e = 0; e < E; e++) p[e] = p[e] / s;
}

static void merge_sort(uint64_t *a, int n, uint64_t *tmp) {
    for (int w = 1; w < n; w *= 2) {
        for (int lo = 0; lo < n; lo += 2 * w) {
            int mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int i = lo, j = mid, o = lo;
            while (i < mid && j < hi) tmp[o++] = a[i] <= a[j] ? a[i++] : a[j++];
            while (i < mid) tmp[o++] = a[i++];
            while (j < hi) tmp[o++] = a[j++];
        }
        memcpy(a, tmp, (size_t)n * sizeof *a);
    }
}


void olmoe_policy_sort_keys(uint64_t *a, int n) {
    if (n <= 16) {
        for (int i = 1; i < n; i++) {
            uint64_t v = a[i];
            int j = i;
            while (j > 0 && a[j - 1] > v) a[j] = a[j - 1], j--;
            a[j] = v;
        }
        return;
    }
    uint64_t tmp[OLMOE_POLICY_MAX_E];
    merge_sort(a, n, tmp);
}

/* best[0..K) = the K smallest of key[0..E) ascending (key is clobbered) */
void olmoe_policy_select_smallest(uint64_t *key, int E, int K, uint64_t *best) {
    if (K > 16) {
        olmoe_policy_sort_keys(key, E);
        memcpy(best, key, (size_t)K * sizeof *best);
        return;
    }
    /* Prefilter: the largest of the minima of K disjoint groups bounds the K
     * smallest from above (K distinct keys are at most it), so only keys <= it
     * go through the (branchy) insertion; usually a few more than K. */
    if (E >= 4 * K) {
        uint64_t bound = 0;
        int at = 0;
        for (int g = 0; g < K; g++) {
            int end = (int)((long)E * (g + 1) / K);
            uint64_t m = key[at];
            for (int e = at + 1; e < end; e++) m = key[e] < m ? key[e] : m;
            bound = m > bound ? m : bound;
            at = end;
        }
        int c = 0;
        for (int e = 0; e < E; e++) {
            key[c] = key[e];
            c += key[e] <= bound;
        }
        E = c;
    }
    int n = 0;
    for (int e = 0; e < E; e++) {
        uint64_t k = key[e];
        if (n == K) {
            if (k >= best[K - 1]) continue;
            n--;
        }
        int i = n++;
        while (i > 0 && best[i - 1] > k) {
            best[i] = best[i - 1];
            i--;
        }
        best[i] = k;
    }
}

void olmoe_policy_put_experts(const uint64_t *best, int K, int *experts) {
    for (int i = 0; i < K; i++) experts[i] = (int)(uint32_t)best[i];
}

void olmoe_policy_most_probable(const float *p, int E, int K, int *ex) {
    uint64_t key[OLMOE_POLICY_MAX_E], best[OLMOE_POLICY_MAX_E];
    for (int e = 0; e < E; e++) key[e] = olmoe_policy_key_desc(p[e], e);
    olmoe_policy_select_smallest(key, E, K, best);
    olmoe_policy_put_experts(best, K, ex);
}

void olmoe_policy_put_weights(const olmoe_policy *pol, const float *p, const int *ex, int K, float *w) {
    if (pol->norm == OLMOE_NORM_SELECTED || pol->model.norm_topk_prob) {
        float s = 0.0f;
        for (int i = 0; i < K; i++) s += p[ex[i]];
        for (int i = 0; i < K; i++) w[i] = s > 0.0f ? p[ex[i]] / s : 1.0f / (float)K;
    } else {
        for (int i = 0; i < K; i++) w[i] = p[ex[i]];
    }
}

/* Selection without the softmax, when it provably picks what the softmax
 * would: p-order is x-order (x = r / T) except where rounding makes two
 * different x give the same p (then the p-tie goes to the lower index). Equal
 * x give equal p, so exact ties are safe; two x that differ by more than
 * 1e-4 (1 + |x - max x|), with x - max x > -80 (no underflow of e^(x - max)),
 * give distinct p in the same order: the rounded exp and the division each err by
 * under 2^-23 relative, far below the e^(1e-4) ratio. When every adjacent
 * pair among the K + 1 best by x passes, the K best by x, in order, are the K
 * best by p; otherwise the caller computes p. Returns 1 on success. */
/* the x a key of topk_by_logits was made from */
static inline float desc_key_value(uint64_t key) {
    uint32_t asc = ~(uint32_t)(key >> 32);
    uint32_t u = asc ^ ((asc >> 31) ? 0x80000000u : 0xFFFFFFFFu);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

int olmoe_policy_topk_by_logits(const float *r, int E, float T, int K, uint64_t *best) {
    float x[OLMOE_POLICY_MAX_E];
    uint64_t key[OLMOE_POLICY_MAX_E];
    /* + 0.0f turns -0 into +0: the two give equal p, so they must tie here too */
    for (int e = 0; e < E; e++) x[e] = (T == 1.0f ? r[e] : r[e] / T) + 0.0f;
    int n = K < E ? K + 1 : E;
    /* the smallest of n group maxima bounds the n largest from below */
    float bound = -INFINITY;
    if (E >= 4 * n) {
        bound = INFINITY;
        int at = 0;
        for (int g = 0; g < n; g++) {
            int end = (int)((long)E * (g + 1) / n);
            float m = x[at];
            for (int e = at + 1; e < end; e++) m = x[e] > m ? x[e] : m;
            bound = m < bound ? m : bound;
            at = end;
        }
    }
    int c = 0;
    for (int e = 0; e < E; e++) {
        uint32_t u = olmoe_policy_f2u(x[e]);
        uint32_t asc = u ^ ((u >> 31) ? 0xFFFFFFFFu : 0x80000000u);
        key[c] = (uint64_t)(~asc) << 32 | (uint32_t)e;
        c += x[e] >= bound;
    }
    if (c < n) return 0; /* NaN among the logits: let the softmax path decide */
    olmoe_policy_select_smallest(key, c, n, best);
    float m = desc_key_value(best[0]);
    if (!(m - m == 0.0f)) return 0; /* inf */
    for (int i = 0; i + 1 < n; i++) {
        float a = desc_key_value(best[i]), b = desc_key_value(best[i + 1]);
        if (a == b) continue;
        float d = m - b;
        if (!(d < 80.0f) || !(a - b > 1e-4f * (1.0f + d))) return 0;
    }
    return 1;
}
