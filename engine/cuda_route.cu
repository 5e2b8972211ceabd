/* cuda_route.cu: routing and the data movement around the experts' GEMMs:
 * default top-k per token, grouping the choices by expert (deterministic:
 * counts, one scan, a stable scatter in token order, no atomics deciding any
 * order), gathering rows, and SiLU(gate) * up.
 *
 * C references: olmoe_route_topk (route.c) for the selection, the bucket
 * loop of forward_cpu.c's experts() for the grouping, olmoe_silu_mul. */
#include "cuda_ops.h"
#include "cuda_util.h"

#define ROUTE_MAX_E 256
#define BK_TOK 256 /* tokens per block of the grouping kernels */

/* one warp per token */
__global__ void route_topk_kernel(float *logits, int ld, int E, int k, int norm, int32_t *sel_e, float *sel_w,
                                  int32_t *sel_n, int T) {
    int t = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (t >= T) return;
    float *row = logits + (size_t)t * ld;
    float x[ROUTE_MAX_E / 32];
    float mx = -INFINITY;
#pragma unroll
    for (int c = 0; c < ROUTE_MAX_E / 32; c++) {
        int e = lane + 32 * c;
        x[c] = -INFINITY;
        if (e < E) {
            x[c] = rbf(row[e]);
            row[e] = x[c];
            mx = fmaxf(mx, x[c]);
        }
    }
    mx = warp_max(mx);
    float sum = 0;
#pragma unroll
    for (int c = 0; c < ROUTE_MAX_E / 32; c++) {
        x[c] = lane + 32 * c < E ? expf(x[c] - mx) : -1.0f; /* -1: never chosen */
        sum += x[c] > 0 ? x[c] : 0.0f;
    }
    sum = warp_sum(sum);
    float inv = 1.0f / sum;
#pragma unroll
    for (int c = 0; c < ROUTE_MAX_E / 32; c++)
        if (x[c] >= 0) x[c] *= inv;
    unsigned taken = 0;
    float wsum = 0;
    for (int j = 0; j < k; j++) {
        float bv = -2.0f;
        int bi = 0x7fffffff;
#pragma unroll
        for (int c = 0; c < ROUTE_MAX_E / 32; c++)
            if (!(taken >> c & 1) && x[c] > bv) bv = x[c], bi = lane + 32 * c; /* c ascending: lower index on ties */
        for (int off = 16; off > 0; off >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, off);
            int oi = __shfl_xor_sync(0xffffffffu, bi, off);
            if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
        }
        if ((bi & 31) == lane) taken |= 1u << (bi >> 5);
        if (lane == 0) {
            sel_e[(size_t)t * k + j] = bi;
            sel_w[(size_t)t * k + j] = bv;
        }
        wsum += bv;
    }
    if (lane == 0) {
        if (norm)
            for (int j = 0; j < k; j++) sel_w[(size_t)t * k + j] /= wsum;
        sel_n[t] = k;
    }
}

__global__ void round_rows_kernel(float *logits, int ld, int E, int T) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)T * E) return;
    float *p = logits + (i / E) * ld + i % E;
    *p = rbf(*p);
}

/* per block of BK_TOK tokens: how many choices each expert got; also marks
 * unused slots */
__global__ void bucket_count_kernel(const int32_t *sel_e, const int32_t *nsel, int T, int K, int E,
                                    int32_t *blk_cnt, int32_t *slot) {
    extern __shared__ int cnt[]; /* [E] */
    for (int e = threadIdx.x; e < E; e += blockDim.x) cnt[e] = 0;
    __syncthreads();
    int t = blockIdx.x * BK_TOK + threadIdx.x;
    if (t < T) {
        int n = nsel[t];
        for (int j = 0; j < K; j++) {
            if (j < n)
                atomicAdd(&cnt[sel_e[(size_t)t * K + j]], 1); /* integer counts: order-free */
            else
                slot[(size_t)t * K + j] = -1;
        }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < E; e += blockDim.x) blk_cnt[(size_t)blockIdx.x * E + e] = cnt[e];
}

/* one block: first[e] = sum of earlier experts' counts; blk_off[b, e] = where
 * block b's rows of expert e begin */
__global__ void bucket_scan_kernel(const int32_t *blk_cnt, int nblk, int E, int32_t *blk_off, int32_t *first) {
    extern __shared__ int tot[]; /* [E] */
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
        int s = 0;
        for (int b = 0; b < nblk; b++) s += blk_cnt[(size_t)b * E + e];
        tot[e] = s;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int run = 0;
        for (int e = 0; e < E; e++) {
            int c = tot[e];
            tot[e] = run;
            run += c;
        }
        first[E] = run;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < E; e += blockDim.x) {
        int run = tot[e];
        first[e] = run;
        for (int b = 0; b < nblk; b++) {
            blk_off[(size_t)b * E + e] = run;
            run += blk_cnt[(size_t)b * E + e];
        }
    }
}

/* thread e of block b walks the block's tokens in order: a stable scatter */
__global__ void bucket_scatter_kernel(const int32_t *sel_e, const float *sel_w, const int32_t *nsel, int T, int K,
                                      int E, const int32_t *blk_off, int32_t *perm_tok, float *perm_w,
                                      int32_t *slot) {
    int e = threadIdx.x;
    if (e >= E) return;
    int pos = blk_off[(size_t)blockIdx.x * E + e];
    int t0 = blockIdx.x * BK_TOK, t1 = min(T, t0 + BK_TOK);
    for (int t = t0; t < t1; t++) {
        int n = nsel[t];
        for (int j = 0; j < n; j++)
            if (sel_e[(size_t)t * K + j] == e) {
                perm_tok[pos] = t;
                perm_w[pos] = sel_w[(size_t)t * K + j];
                slot[(size_t)t * K + j] = pos;
                pos++;
            }
    }
}

__global__ void gather_rows_kernel(const bf16_t *x, int D, const int32_t *perm, const int32_t *count, bf16_t *out) {
    int r = blockIdx.x;
    if (r >= *count) return;
    const bf16_t *src = x + (size_t)perm[r] * D;
    bf16_t *dst = out + (size_t)r * D;
    if ((D & 7) == 0) {
        const uint4 *s4 = (const uint4 *)src;
        uint4 *d4 = (uint4 *)dst;
        for (int i = threadIdx.x; i < D / 8; i += blockDim.x) d4[i] = s4[i];
    } else {
        for (int i = threadIdx.x; i < D; i += blockDim.x) dst[i] = src[i];
    }
}

__device__ __forceinline__ float silu_mul1(float g, float u) { return rbf(rbf(g / (1.0f + expf(-g))) * u); }

__global__ void silu_mul_kernel(const bf16_t *gu, int I, const int32_t *count, bf16_t *act) {
    int r = blockIdx.x;
    if (r >= *count) return;
    const bf16_t *g = gu + (size_t)r * 2 * I, *u = g + I;
    bf16_t *a = act + (size_t)r * I;
    if ((I & 1) == 0) { /* pairs: 4-byte loads and stores */
        const uint32_t *g2 = (const uint32_t *)g, *u2 = (const uint32_t *)u;
        uint32_t *a2 = (uint32_t *)a;
        for (int i = threadIdx.x; i < I / 2; i += blockDim.x) {
            uint32_t gv = g2[i], uv = u2[i];
            float lo = silu_mul1(bf((bf16_t)gv), bf((bf16_t)uv));
            float hi = silu_mul1(bf((bf16_t)(gv >> 16)), bf((bf16_t)(uv >> 16)));
            a2[i] = (uint32_t)to_bf(lo) | ((uint32_t)to_bf(hi) << 16);
        }
        return;
    }
    for (int i = threadIdx.x; i < I; i += blockDim.x) a[i] = to_bf(silu_mul1(bf(g[i]), bf(u[i])));
}

extern "C" cudaError_t olmoe_cuda_route_topk(float *logits, int ld, int E, int k, int norm, int32_t *sel_e,
                                             float *sel_w, int32_t *sel_n, int T, cudaStream_t s) {
    if (E > ROUTE_MAX_E || k < 1 || k > E) return cudaErrorInvalidValue;
    if (T > 0) route_topk_kernel<<<(T + 7) / 8, 256, 0, s>>>(logits, ld, E, k, norm, sel_e, sel_w, sel_n, T);
    return cudaGetLastError();
}

extern "C" cudaError_t olmoe_cuda_round_bf16_rows(float *logits, int ld, int E, int T, cudaStream_t s) {
    size_t n = (size_t)T * E;
    if (n) round_rows_kernel<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(logits, ld, E, T);
    return cudaGetLastError();
}

extern "C" int olmoe_cuda_bucket_scratch(int T, int E) { return 2 * ((T + BK_TOK - 1) / BK_TOK) * E; }

extern "C" cudaError_t olmoe_cuda_bucket(const int32_t *sel_e, const float *sel_w, const int32_t *nsel, int T,
                                         int K, int E, int32_t *blk_cnt, int32_t *first, int32_t *perm_tok,
                                         float *perm_w, int32_t *slot, cudaStream_t s) {
    if (E > 1024 || T <= 0) return T <= 0 ? cudaSuccess : cudaErrorInvalidValue;
    int nblk = (T + BK_TOK - 1) / BK_TOK;
    int32_t *blk_off = blk_cnt + (size_t)nblk * E;
    size_t sm = (size_t)E * sizeof(int);
    bucket_count_kernel<<<nblk, BK_TOK, sm, s>>>(sel_e, nsel, T, K, E, blk_cnt, slot);
    bucket_scan_kernel<<<1, 256, sm, s>>>(blk_cnt, nblk, E, blk_off, first);
    bucket_scatter_kernel<<<nblk, (E + 31) / 32 * 32, 0, s>>>(sel_e, sel_w, nsel, T, K, E, blk_off, perm_tok, perm_w,
                                                              slot);
    return cudaGetLastError();
}

extern "C" cudaError_t olmoe_cuda_gather_rows(const olmoe_bf16 *x, int D, const int32_t *perm, const int32_t *count,
                                              int S_max, olmoe_bf16 *out, cudaStream_t s) {
    if (S_max > 0) gather_rows_kernel<<<S_max, 256, 0, s>>>(x, D, perm, count, out);
    return cudaGetLastError();
}

extern "C" cudaError_t olmoe_cuda_silu_mul(const olmoe_bf16 *gu, int I, const int32_t *count, int S_max,
                                           olmoe_bf16 *act, cudaStream_t s) {
    if (S_max > 0) silu_mul_kernel<<<S_max, 256, 0, s>>>(gu, I, count, act);
    return cudaGetLastError();
}
