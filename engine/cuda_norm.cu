/* cuda_norm.cu: the row-wise kernels around the GEMMs of a layer: RMSNorm
 * fused with what precedes it (embedding gather, attention residual add,
 * experts' weighted sum + residual add), and q/k norm + clip + RoPE. One
 * block per token row; every sum is a fixed-order block reduction.
 *
 * Rounding points are transformers' bf16 ones: OlmoeRMSNorm computes in
 * fp32, rounds x * rsqrt(var + eps) to bf16, then multiplies by the bf16
 * weight in bf16; residual adds and RoPE's products and sum round to bf16.
 * C references: olmoe_rmsnorm, olmoe_rope_apply, olmoe_clamp (ops_cpu.c). */
#include "cuda_ops.h"
#include "cuda_util.h"

#define ROW_THREADS 256

/* P = 2 (D even, as in every OLMoE) moves element pairs, 4 bytes at a time;
 * P = 1 is the plain loop. A thread reads in the second pass exactly the
 * elements it wrote in the first. */
template <int P> __device__ __forceinline__ void ld(const bf16_t *p, float *v) {
    if (P == 2) {
        uint32_t u = *(const uint32_t *)p;
        v[0] = bf((bf16_t)u), v[1] = bf((bf16_t)(u >> 16));
    } else {
        v[0] = bf(*p);
    }
}
template <int P> __device__ __forceinline__ void st(bf16_t *p, const float *v) {
    if (P == 2)
        *(uint32_t *)p = (uint32_t)to_bf(v[0]) | ((uint32_t)to_bf(v[1]) << 16);
    else
        *p = to_bf(v[0]);
}

/* x = bf16(w * bf16(h * r)) over a row whose sum of squares is ss */
template <int P>
__device__ __forceinline__ void norm_row(const bf16_t *h, const bf16_t *w, bf16_t *x, int D, float ss, float eps) {
    float r = rsqrtf(ss / (float)D + eps);
    for (int i = P * threadIdx.x; i < D; i += P * blockDim.x) {
        float hv[P], wv[P], xv[P];
        ld<P>(h + i, hv);
        ld<P>(w + i, wv);
        for (int k = 0; k < P; k++) xv[k] = wv[k] * rbf(hv[k] * r);
        st<P>(x + i, xv);
    }
}

/* the residual add h = bf16(h + a) over the P elements at hr; ss plus the
 * squares of the new h */
template <int P> __device__ __forceinline__ float add_row(bf16_t *hr, const float *a, float ss) {
    float hv[P];
    ld<P>(hr, hv);
    for (int k = 0; k < P; k++) {
        hv[k] = rbf(hv[k] + a[k]);
        ss += hv[k] * hv[k];
    }
    st<P>(hr, hv);
    return ss;
}

template <int P>
__global__ void embed_rmsnorm_kernel(const int32_t *tok, const bf16_t *embed, const bf16_t *w, bf16_t *h,
                                     bf16_t *x, int D, float eps) {
    __shared__ float red[32];
    size_t t = blockIdx.x;
    const bf16_t *src = embed + (size_t)tok[t] * D;
    bf16_t *hr = h + t * D;
    float ss = 0;
    for (int i = P * threadIdx.x; i < D; i += P * blockDim.x) {
        float v[P];
        ld<P>(src + i, v);
        st<P>(hr + i, v);
        for (int k = 0; k < P; k++) ss += v[k] * v[k];
    }
    ss = block_sum(ss, red);
    norm_row<P>(hr, w, x + t * D, D, ss, eps);
}

template <int P>
__global__ void add_rmsnorm_kernel(bf16_t *h, const bf16_t *a, const bf16_t *w, bf16_t *x, int D, float eps) {
    __shared__ float red[32];
    size_t t = blockIdx.x;
    bf16_t *hr = h + t * D;
    const bf16_t *ar = a + t * D;
    float ss = 0;
    for (int i = P * threadIdx.x; i < D; i += P * blockDim.x) {
        float av[P];
        ld<P>(ar + i, av);
        ss = add_row<P>(hr + i, av, ss);
    }
    ss = block_sum(ss, red);
    norm_row<P>(hr, w, x + t * D, D, ss, eps);
}

#define MAX_K 64

template <int P>
__global__ void combine_rmsnorm_kernel(bf16_t *h, const bf16_t *y, const int32_t *slot, const float *wt,
                                       const int32_t *nsel, int K, const bf16_t *w, bf16_t *x, int D, float eps) {
    __shared__ float red[32];
    __shared__ int rows[MAX_K];
    __shared__ float ws[MAX_K];
    size_t t = blockIdx.x;
    int n = nsel[t];
    if (threadIdx.x < n) {
        rows[threadIdx.x] = slot[t * K + threadIdx.x];
        ws[threadIdx.x] = rbf(wt[t * K + threadIdx.x]); /* transformers casts the weights to bf16 */
    }
    __syncthreads();
    bf16_t *hr = h + t * D;
    float ss = 0;
    for (int i = P * threadIdx.x; i < D; i += P * blockDim.x) {
        /* as transformers' bf16 index_add_: each weighted row rounded, then
         * added in bf16, here in the fixed slot order */
        float acc[P], yv[P];
        for (int k = 0; k < P; k++) acc[k] = 0;
        for (int j = 0; j < n; j++) {
            ld<P>(y + (size_t)rows[j] * D + i, yv);
            for (int k = 0; k < P; k++) acc[k] = rbf(acc[k] + rbf(ws[j] * yv[k]));
        }
        ss = add_row<P>(hr + i, acc, ss);
    }
    ss = block_sum(ss, red);
    norm_row<P>(hr, w, x + t * D, D, ss, eps);
}

__global__ void qk_norm_rope_kernel(bf16_t *qkv, int ld, int QD, int KD, int hd, const bf16_t *qn,
                                    const bf16_t *kn, const float *cos_t, const float *sin_t,
                                    const int32_t *pos, float eps, float clip) {
    __shared__ float red[32];
    size_t t = blockIdx.x;
    bf16_t *q = qkv + t * ld, *k = q + QD, *v = q + QD + KD;
    float sq = 0, sk = 0;
    for (int i = threadIdx.x; i < QD; i += blockDim.x) sq += bf(q[i]) * bf(q[i]);
    for (int i = threadIdx.x; i < KD; i += blockDim.x) sk += bf(k[i]) * bf(k[i]);
    sq = block_sum(sq, red);
    sk = block_sum(sk, red);
    float rq = rsqrtf(sq / (float)QD + eps), rk = rsqrtf(sk / (float)KD + eps);
    int half = hd / 2, p = pos[t];
    const float *ct = cos_t + (size_t)p * half, *st = sin_t + (size_t)p * half;
    int nq = QD / 2, nall = (QD + KD) / 2;
    /* one thread owns both elements of a rotation pair, so in place is safe */
    for (int u = threadIdx.x; u < nall; u += blockDim.x) {
        int isk = u >= nq, uu = isk ? u - nq : u;
        bf16_t *row = isk ? k : q;
        const bf16_t *nw = isk ? kn : qn;
        float r = isk ? rk : rq;
        int head = uu / half, i = uu % half;
        int ia = head * hd + i, ib = ia + half;
        float a = rbf(bf(nw[ia]) * rbf(bf(row[ia]) * r));
        float b = rbf(bf(nw[ib]) * rbf(bf(row[ib]) * r));
        if (clip > 0) { /* torch clamps a bf16 tensor: the bound is rounded too */
            a = rbf(fminf(fmaxf(a, -clip), clip));
            b = rbf(fminf(fmaxf(b, -clip), clip));
        }
        float c = rbf(ct[i]), s = rbf(st[i]);
        row[ia] = to_bf(rbf(a * c) - rbf(b * s));
        row[ib] = to_bf(rbf(b * c) + rbf(a * s));
    }
    if (clip > 0)
        for (int i = threadIdx.x; i < KD; i += blockDim.x) v[i] = to_bf(fminf(fmaxf(bf(v[i]), -clip), clip));
}

extern "C" cudaError_t olmoe_cuda_embed_rmsnorm(const int32_t *tok, const olmoe_bf16 *embed,
                                                const olmoe_bf16 *w, olmoe_bf16 *h, olmoe_bf16 *x, int T,
                                                int D, float eps, cudaStream_t s) {
    if (T > 0 && D % 2 == 0) embed_rmsnorm_kernel<2><<<T, ROW_THREADS, 0, s>>>(tok, embed, w, h, x, D, eps);
    if (T > 0 && D % 2 != 0) embed_rmsnorm_kernel<1><<<T, ROW_THREADS, 0, s>>>(tok, embed, w, h, x, D, eps);
    return cudaGetLastError();
}

extern "C" cudaError_t olmoe_cuda_add_rmsnorm(olmoe_bf16 *h, const olmoe_bf16 *a, const olmoe_bf16 *w,
                                              olmoe_bf16 *x, int T, int D, float eps, cudaStream_t s) {
    if (T > 0 && D % 2 == 0) add_rmsnorm_kernel<2><<<T, ROW_THREADS, 0, s>>>(h, a, w, x, D, eps);
    if (T > 0 && D % 2 != 0) add_rmsnorm_kernel<1><<<T, ROW_THREADS, 0, s>>>(h, a, w, x, D, eps);
    return cudaGetLastError();
}

extern "C" cudaError_t olmoe_cuda_combine_rmsnorm(olmoe_bf16 *h, const olmoe_bf16 *y, const int32_t *slot,
                                                  const float *wt, const int32_t *nsel, int K,
                                                  const olmoe_bf16 *w, olmoe_bf16 *x, int T, int D,
                                                  float eps, cudaStream_t s) {
    if (K > MAX_K) return cudaErrorInvalidValue;
    if (T > 0 && D % 2 == 0)
        combine_rmsnorm_kernel<2><<<T, ROW_THREADS, 0, s>>>(h, y, slot, wt, nsel, K, w, x, D, eps);
    if (T > 0 && D % 2 != 0)
        combine_rmsnorm_kernel<1><<<T, ROW_THREADS, 0, s>>>(h, y, slot, wt, nsel, K, w, x, D, eps);
    return cudaGetLastError();
}

extern "C" cudaError_t olmoe_cuda_qk_norm_rope(olmoe_bf16 *qkv, int ld, int QD, int KD, int hd,
                                               const olmoe_bf16 *qn, const olmoe_bf16 *kn,
                                               const float *cos_t, const float *sin_t, const int32_t *pos,
                                               float eps, float clip, int T, cudaStream_t s) {
    if (hd % 2 || QD % hd || KD % hd) return cudaErrorInvalidValue;
    if (T > 0)
        qk_norm_rope_kernel<<<T, ROW_THREADS, 0, s>>>(qkv, ld, QD, KD, hd, qn, kn, cos_t, sin_t, pos, eps,
                                                      clip);
    return cudaGetLastError();
}
