/* policy_empirical.c: the empirical null of pvalue=empirical: for each layer
 * and expert, that expert's logits over the trace, sorted; the p-value of a
 * logit x is the share of them above x. Memory is L * E * n floats; when the
 * trace is longer than max_per_expert tokens, every stride-th token is kept
 * (stride = ceil(N / max_per_expert)), so the null is a systematic subsample
 * spread over the whole trace, not its beginning. */
#include "common.h"
#include "policy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int olmoe_policy_empirical_init(olmoe_policy_empirical *emp, int n_layers, int n_experts,
                                int64_t n_tokens, int64_t max_per_expert) {
    memset(emp, 0, sizeof *emp);
    if (n_layers < 1 || n_experts < 1 || n_tokens < 1)
        return olmoe_errorf("empirical null: nothing to build from (%d layers, %d experts, "
                            "%lld tokens)", n_layers, n_experts, (long long)n_tokens);
    int64_t stride = 1;
    if (max_per_expert > 0 && n_tokens > max_per_expert)
        stride = (n_tokens + max_per_expert - 1) / max_per_expert;
    emp->n_layers = n_layers;
    emp->n_experts = n_experts;
    emp->n_tokens = n_tokens;
    emp->stride = stride;
    emp->n = (n_tokens + stride - 1) / stride;
    size_t cells = xmul(xmul((size_t)n_layers, (size_t)n_experts), (size_t)emp->n);
    emp->sorted = xmalloc(xmul(cells, sizeof *emp->sorted));
    return 0;
}

void olmoe_policy_empirical_add(olmoe_policy_empirical *emp, int64_t first, const float *logits,
                                int64_t n) {
    const int L = emp->n_layers, E = emp->n_experts;
    for (int64_t t = 0; t < n; t++) {
        int64_t i = first + t;
        if (i < 0 || i >= emp->n_tokens || i % emp->stride) continue;
        int64_t slot = i / emp->stride;
        const float *row = logits + (size_t)t * (size_t)L * (size_t)E;
        for (int c = 0; c < L * E; c++) emp->sorted[(size_t)c * (size_t)emp->n + (size_t)slot] = row[c];
        emp->filled++;
    }
}

int olmoe_policy_empirical_finish(olmoe_policy_empirical *emp) {
    if (emp->filled != emp->n)
        return olmoe_errorf("empirical null: %lld of %lld tokens were given", (long long)emp->filled,
                            (long long)emp->n);
    size_t cells = (size_t)emp->n_layers * (size_t)emp->n_experts;
    for (size_t c = 0; c < cells; c++) {
        float *a = emp->sorted + c * (size_t)emp->n;
        for (int64_t i = 0; i < emp->n; i++)
            if (!isfinite(a[i]))
                return olmoe_errorf("empirical null: a router logit of layer %zu expert %zu is not "
                                    "finite", c / (size_t)emp->n_experts, c % (size_t)emp->n_experts);
        olmoe_kde_sort(a, (size_t)emp->n);
    }
    return 0;
}

void olmoe_policy_empirical_free(olmoe_policy_empirical *emp) {
    free(emp->sorted);
    memset(emp, 0, sizeof *emp);
}

float olmoe_policy_empirical_pvalue(const olmoe_policy_empirical *emp, int layer, int expert,
                                    float x) {
    const float *a = emp->sorted + ((size_t)layer * (size_t)emp->n_experts + (size_t)expert) *
                                       (size_t)emp->n;
    /* first index whose value is > x */
    int64_t lo = 0, hi = emp->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (float)((double)(emp->n - lo) / (double)emp->n);
}
