/* cuda_policy.cu: the routing policies on the GPU (cuda_policy.h). One warp
 * per token row; the row's logits, p, p-values and rank order sit in shared
 * memory (4 E words per warp), so any E up to OLMOE_POLICY_MAX_E works.
 *
 * The C reference is policy/policy_*.c. What keeps the bits equal:
 * - the softmax as policy.h defines it: max, exp in double rounded once,
 *   the sum in index order (one lane's loop, not a tree), IEEE division;
 * - selection by rank: each expert's rank is the number of smaller 64-bit
 *   keys (policy_internal.h's keys: value bits << 32 | index), so the order,
 *   ties included, is the one the host's sorts give;
 * - running sums (top-p, the weights' renormalisation) in rank order on one
 *   lane; the entropy and HC statistics in double with explicit _rn
 *   operations where the host multiplies and adds (nvcc would fuse them);
 * - kde p-values interpolated on the null's grid as kde.h does, empirical
 *   ones by the same binary search over each expert's sorted sample.
 * Where the host calls libm in double (log, exp in entropy), the GPU's
 * results may differ in the last bit of a double: a decision changes only
 * where scale * exp(H) sits on a half-integer to ~1e-15, counted by the test. */
#include "cuda_util.h"

extern "C" {
#include "cuda_policy.h"
#include "kde.h"
}

#define PW 4 /* warps per block */

enum { F_TOPK, F_TOPP, F_THRESHOLD, F_SKIP, F_ENTROPY, F_BH, F_HC };

/* a bound policy at one layer, by value */
typedef struct {
    int fam, E, K, k, min_k, max_k, pvalue, renorm, hc_ranks;
    float T, p_target, pv_lo, pv_hi, tau, beta;
    double scale;
    const float *sf; /* kde: this layer's survival function [n_grid] */
    double x0, inv_dx;
    int n_grid;
    const float *emp; /* empirical: this layer's [E, emp_n] */
    long long emp_n;
    float thr[OLMOE_POLICY_MAX_E + 1];
} dev_policy;

struct olmoe_cuda_nulls {
    const olmoe_kde_cdf *kde; /* the host null the copy is of */
    const float *kde_sf_host;
    float *sf;
    const olmoe_policy_empirical *emp;
    const float *emp_host;
    float *sorted;
};

__device__ __forceinline__ float soft_exp(float v) { return (float)exp((double)v); }

__device__ __forceinline__ uint64_t key_desc(float p, int e) {
    return (uint64_t)(0x7F800000u - __float_as_uint(p)) << 32 | (uint32_t)e;
}
__device__ __forceinline__ uint64_t key_asc(float q, int e) { return (uint64_t)__float_as_uint(q) << 32 | (uint32_t)e; }
__device__ __forceinline__ float clampf(float q, float lo, float hi) { return q < lo ? lo : (q > hi ? hi : q); }

__device__ float kde_pvalue(const dev_policy &P, float x) {
    double t = __dmul_rn(__dsub_rn((double)x, P.x0), P.inv_dx);
    float p;
    if (!(t >= 0)) {
        p = 1.0f;
    } else if (t >= (double)(P.n_grid - 1)) {
        p = t == (double)(P.n_grid - 1) ? P.sf[P.n_grid - 1] : 0.0f;
    } else {
        int i = (int)t;
        float f = (float)(t - i);
        p = __fadd_rn(P.sf[i], __fmul_rn(f, __fsub_rn(P.sf[i + 1], P.sf[i])));
    }
    float hi = 1.0f - P.pv_lo;
    return p < P.pv_lo ? P.pv_lo : (p > hi ? hi : p);
}

__device__ float emp_pvalue(const dev_policy &P, int e, float x) {
    const float *a = P.emp + (size_t)e * (size_t)P.emp_n;
    long long lo = 0, hi = P.emp_n;
    while (lo < hi) {
        long long mid = lo + (hi - lo) / 2;
        if (a[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return clampf((float)((double)(P.emp_n - lo) / (double)P.emp_n), P.pv_lo, P.pv_hi);
}

/* ord[rank] = expert, ranks by ascending key (keys are distinct) */
__device__ void rank_experts(const dev_policy &P, const float *v, int asc, int *ord, int lane) {
    const int E = P.E;
    for (int e = lane; e < E; e += 32) {
        uint64_t me = asc ? key_asc(v[e], e) : key_desc(v[e], e);
        int rank = 0;
        for (int j = 0; j < E; j++) rank += (asc ? key_asc(v[j], j) : key_desc(v[j], j)) < me;
        ord[rank] = e;
    }
    __syncwarp();
}

__device__ __forceinline__ int clamp_k(int k, const dev_policy &P) {
    return k < P.min_k ? P.min_k : (k > P.max_k ? P.max_k : k);
}

/* the number of experts the family keeps, from p (index order), q and ord */
__device__ int family_count(const dev_policy &P, const float *p, const float *q, const int *ord) {
    const int E = P.E;
    switch (P.fam) {
    case F_TOPK: return P.k;
    case F_TOPP: {
        int K = P.max_k;
        float cum = 0.0f;
        for (int i = 0; i < P.max_k; i++) {
            cum = __fadd_rn(cum, p[ord[i]]);
            if (cum >= P.p_target) {
                K = i + 1;
                break;
            }
        }
        return K < P.min_k ? P.min_k : K;
    }
    case F_THRESHOLD: {
        int K = 0;
        for (int e = 0; e < E; e++) K += p[e] >= P.tau;
        return clamp_k(K, P);
    }
    case F_SKIP: {
        const float cut = __fmul_rn(P.beta, p[ord[0]]);
        int K = 0;
        while (K < P.max_k && p[ord[K]] >= cut) K++;
        return K < P.min_k ? P.min_k : K;
    }
    case F_ENTROPY: {
        double H = 0.0;
        for (int e = 0; e < E; e++)
            if (p[e] > 0.0f) H = __dsub_rn(H, __dmul_rn((double)p[e], log((double)p[e])));
        double k = round(__dmul_rn(P.scale, exp(H)));
        return k >= P.max_k ? P.max_k : (k >= P.min_k ? (int)k : P.min_k);
    }
    case F_BH: {
        int kstar = 0;
        for (int i = E; i >= 1; i--)
            if (q[ord[i - 1]] <= P.thr[i]) {
                kstar = i;
                break;
            }
        return clamp_k(kstar, P);
    }
    default: { /* F_HC */
        const double sqE = sqrt((double)E);
        double top = -INFINITY;
        int kstar = 1;
        for (int i = 1; i <= P.hc_ranks; i++) {
            double qi = q[ord[i - 1]];
            double num = __dmul_rn(sqE, __dsub_rn(__ddiv_rn((double)i, (double)E), qi));
            double hc = __ddiv_rn(num, sqrt(__dmul_rn(qi, __dsub_rn(1.0, qi))));
            if (hc > top) {
                top = hc;
                kstar = i;
            }
        }
        return clamp_k(kstar, P);
    }
    }
}

__global__ void __launch_bounds__(PW * 32) policy_rows_kernel(const float *logits, int ld, int T, const dev_policy P,
                                                              int32_t *sel_e, float *sel_w, int32_t *sel_n) {
    extern __shared__ float sm[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, E = P.E;
    const int t = blockIdx.x * PW + warp;
    if (t >= T) return; /* whole warps only: nothing below syncs the block */
    float *r = sm + (size_t)warp * 4 * E, *p = r + E, *q = p + E;
    int *ord = (int *)(q + E);
    const float *row = logits + (size_t)t * ld;

    /* softmax(r / T) */
    float mx = -INFINITY;
    for (int e = lane; e < E; e += 32) {
        r[e] = row[e];
        p[e] = P.T == 1.0f ? r[e] : __fdiv_rn(r[e], P.T);
        mx = fmaxf(mx, p[e]);
    }
    mx = warp_max(mx);
    for (int e = lane; e < E; e += 32) p[e] = soft_exp(__fsub_rn(p[e], mx));
    __syncwarp();
    float s = 0.0f;
    for (int e = 0; e < E; e++) s = __fadd_rn(s, p[e]);
    __syncwarp();
    for (int e = lane; e < E; e += 32) p[e] = __fdiv_rn(p[e], s);
    __syncwarp();

    const int by_q = P.fam == F_BH || P.fam == F_HC;
    if (by_q) {
        for (int e = lane; e < E; e += 32)
            q[e] = P.pvalue == OLMOE_PVALUE_KDE         ? kde_pvalue(P, r[e])
                   : P.pvalue == OLMOE_PVALUE_EMPIRICAL ? emp_pvalue(P, e, r[e])
                                                        : clampf(__fsub_rn(1.0f, p[e]), P.pv_lo, P.pv_hi);
        __syncwarp();
    }
    rank_experts(P, by_q ? q : p, by_q, ord, lane);
    const int K = family_count(P, p, q, ord);

    /* weights as put_weights: p, or p / (the fp32 sum over the chosen in rank order) */
    float ws = 0.0f;
    if (P.renorm)
        for (int i = 0; i < K; i++) ws = __fadd_rn(ws, p[ord[i]]);
    for (int i = lane; i < P.K; i += 32) {
        int e = i < K ? ord[i] : -1;
        float w = 0.0f;
        if (e >= 0) w = !P.renorm ? p[e] : (ws > 0.0f ? __fdiv_rn(p[e], ws) : __fdiv_rn(1.0f, (float)K));
        sel_e[(size_t)t * P.K + i] = e;
        sel_w[(size_t)t * P.K + i] = w;
    }
    if (lane == 0) sel_n[t] = K;
}

/* ---- host side ---- */

static int family_of(const olmoe_policy *p) {
    static const char *const names[] = {"topk", "topp", "threshold", "skip", "entropy", "bh", "hc"};
    for (int i = 0; i < 7; i++)
        if (strcmp(p->family->name, names[i]) == 0) return i;
    return -1;
}

/* The kernels read one kde null per layer (describe): a per-expert null
 * (olmoe-kde fit --per-expert) is routed on the host instead. */
extern "C" int olmoe_cuda_policy_supported(const olmoe_policy *p, int K) {
    if (!p || !p->bound) return 0;
    int per_expert_null = olmoe_policy_needs(p, OLMOE_PVALUE_KDE) && p->model.null && p->model.null->n_experts > 0;
    return family_of(p) >= 0 && !per_expert_null && p->model.n_experts >= 1 &&
           p->model.n_experts <= OLMOE_POLICY_MAX_E && olmoe_policy_max_experts(p) <= K && K >= 1;
}

/* device copies of the nulls the policy reads, made once per host null */
static int ensure_nulls(olmoe_cuda_nulls **np, const olmoe_policy *p) {
    if (!*np) *np = (olmoe_cuda_nulls *)xcalloc(1, sizeof **np);
    olmoe_cuda_nulls *n = *np;
    const olmoe_policy_model *m = &p->model;
    if (p->pvalue == OLMOE_PVALUE_KDE && (n->kde != m->null || n->kde_sf_host != m->null->sf)) {
        if (n->sf) CUDA_TRY(cudaFree(n->sf));
        n->sf = NULL, n->kde = NULL;
        size_t bytes = (size_t)m->null->n_layers * (size_t)m->null->n_grid * sizeof(float);
        CUDA_TRY(cudaMalloc((void **)&n->sf, bytes ? bytes : 1));
        CUDA_TRY(cudaMemcpy(n->sf, m->null->sf, bytes, cudaMemcpyHostToDevice));
        n->kde = m->null, n->kde_sf_host = m->null->sf;
    }
    if (p->pvalue == OLMOE_PVALUE_EMPIRICAL && (n->emp != m->emp || n->emp_host != m->emp->sorted)) {
        if (n->sorted) CUDA_TRY(cudaFree(n->sorted));
        n->sorted = NULL, n->emp = NULL;
        size_t bytes = (size_t)m->emp->n_layers * (size_t)m->emp->n_experts * (size_t)m->emp->n * sizeof(float);
        cudaError_t err = cudaMalloc((void **)&n->sorted, bytes);
        if (err != cudaSuccess)
            return olmoe_errorf("cuda routing: cannot allocate the empirical null (%zu bytes): %s", bytes,
                                cudaGetErrorString(err));
        CUDA_TRY(cudaMemcpy(n->sorted, m->emp->sorted, bytes, cudaMemcpyHostToDevice));
        n->emp = m->emp, n->emp_host = m->emp->sorted;
    }
    return 0;
}

static int describe(const olmoe_policy *p, int layer, int K, const olmoe_cuda_nulls *n, dev_policy *d) {
    memset(d, 0, sizeof *d);
    d->fam = family_of(p);
    d->E = p->model.n_experts, d->K = K, d->k = p->k, d->min_k = p->min_k, d->max_k = p->max_k;
    d->pvalue = p->pvalue, d->hc_ranks = p->hc_ranks;
    d->renorm = p->norm == OLMOE_NORM_SELECTED || p->model.norm_topk_prob;
    d->T = p->T, d->p_target = p->p_target, d->pv_lo = p->pv_lo, d->pv_hi = p->pv_hi, d->tau = p->tau;
    d->beta = d->fam == F_SKIP ? (p->beta_median ? p->beta_layer[layer] : p->beta) : 0.0f;
    d->scale = p->scale;
    if (d->fam == F_TOPK) d->min_k = d->max_k = p->k;
    memcpy(d->thr, p->thr, sizeof d->thr);
    if ((d->fam == F_BH || d->fam == F_HC) && p->pvalue == OLMOE_PVALUE_KDE) {
        const olmoe_kde_cdf *c = p->model.null;
        d->sf = n->sf + (size_t)layer * (size_t)c->n_grid;
        d->x0 = c->x0[layer], d->inv_dx = c->inv_dx[layer], d->n_grid = c->n_grid;
    }
    if ((d->fam == F_BH || d->fam == F_HC) && p->pvalue == OLMOE_PVALUE_EMPIRICAL) {
        d->emp_n = p->model.emp->n;
        d->emp = n->sorted + (size_t)layer * (size_t)d->E * (size_t)d->emp_n;
    }
    return 0;
}

extern "C" int olmoe_cuda_policy_route(olmoe_cuda_nulls **nulls, const olmoe_policy *p, int layer,
                                       const float *logits, int ld, int T, int K, int32_t *sel_e, float *sel_w,
                                       int32_t *sel_n, cudaStream_t s) {
    if (!olmoe_cuda_policy_supported(p, K))
        return olmoe_errorf("cuda routing: %s is not routed on the GPU with %d slots", p ? p->id : "(none)", K);
    if (layer < 0 || layer >= p->model.n_layers) return olmoe_errorf("cuda routing: layer %d out of range", layer);
    int fam = family_of(p);
    if ((fam == F_BH || fam == F_HC) && p->pvalue != OLMOE_PVALUE_PSEUDO && ensure_nulls(nulls, p) != 0) return -1;
    dev_policy d;
    describe(p, layer, K, *nulls, &d);
    if (T <= 0) return 0;
    size_t shared = (size_t)PW * 4 * (size_t)d.E * sizeof(float);
    policy_rows_kernel<<<(T + PW - 1) / PW, PW * 32, shared, s>>>(logits, ld, T, d, sel_e, sel_w, sel_n);
    CUDA_TRY(cudaGetLastError());
    return 0;
}

extern "C" void olmoe_cuda_nulls_free(olmoe_cuda_nulls *n) {
    if (!n) return;
    if (n->sf) cudaFree(n->sf);
    if (n->sorted) cudaFree(n->sorted);
    free(n);
}
