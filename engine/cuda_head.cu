/* cuda_head.cu: the end of the forward pass on a chunk of rows of bf16
 * logits (the lm_head GEMM's output, rounded to bf16 as transformers'
 * logits are): argmax and the next-token NLL, log-softmax in fp32, one block
 * per row with fixed-order reductions. The fp32 logits of a whole batch are
 * never materialised. C reference: olmoe_logsumexp (ops_cpu.c). */
#include "cuda_ops.h"
#include "cuda_util.h"

#define HEAD_THREADS 256

__global__ void lm_head_reduce_kernel(const bf16_t *logits, int V, const int32_t *target, float *nll,
                                      int32_t *argmax) {
    __shared__ float rv[32];
    __shared__ int ri[32];
    __shared__ float red[32];
    size_t r = blockIdx.x;
    const bf16_t *row = logits + r * V;
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    const int pairs = (V & 1) == 0 && ((uintptr_t)row & 3) == 0; /* 4-byte loads */
    if (pairs) {
        const uint32_t *r2 = (const uint32_t *)row;
        for (int p = threadIdx.x; p < V / 2; p += blockDim.x) {
            uint32_t w = r2[p];
            float lo = bf((bf16_t)w), hi = bf((bf16_t)(w >> 16));
            if (lo > bv) bv = lo, bi = 2 * p; /* indices ascending per thread: first maximum kept */
            if (hi > bv) bv = hi, bi = 2 * p + 1;
        }
    } else {
        for (int i = threadIdx.x; i < V; i += blockDim.x) {
            float v = bf(row[i]);
            if (v > bv) bv = v, bi = i;
        }
    }
    for (int off = 16; off > 0; off >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, off);
        int oi = __shfl_xor_sync(0xffffffffu, bi, off);
        if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) rv[wid] = bv, ri[wid] = bi;
    __syncthreads();
    if (wid == 0) {
        bv = lane < nw ? rv[lane] : -INFINITY;
        bi = lane < nw ? ri[lane] : 0x7fffffff;
        for (int off = 16; off > 0; off >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, off);
            int oi = __shfl_xor_sync(0xffffffffu, bi, off);
            if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
        }
        if (lane == 0) rv[0] = bv, ri[0] = bi;
    }
    __syncthreads();
    float mx = rv[0];
    int am = ri[0];
    float s = 0;
    if (pairs) {
        const uint32_t *r2 = (const uint32_t *)row;
        for (int p = threadIdx.x; p < V / 2; p += blockDim.x) {
            uint32_t w = r2[p];
            s += expf(bf((bf16_t)w) - mx) + expf(bf((bf16_t)(w >> 16)) - mx);
        }
    } else {
        for (int i = threadIdx.x; i < V; i += blockDim.x) s += expf(bf(row[i]) - mx);
    }
    s = block_sum(s, red);
    if (threadIdx.x == 0) {
        argmax[r] = am;
        int tg = target[r];
        nll[r] = tg >= 0 ? (logf(s) + mx) - bf(row[tg]) : __int_as_float(0x7fc00000);
    }
}

__global__ void bf16_to_f32_kernel(const bf16_t *in, float *out, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = bf(in[i]);
}

extern "C" cudaError_t olmoe_cuda_lm_head_reduce(const olmoe_bf16 *logits, int V, int n, const int32_t *target,
                                                 float *nll, int32_t *argmax, cudaStream_t s) {
    if (n > 0) lm_head_reduce_kernel<<<n, HEAD_THREADS, 0, s>>>(logits, V, target, nll, argmax);
    return cudaGetLastError();
}

extern "C" cudaError_t olmoe_cuda_bf16_to_f32(const olmoe_bf16 *in, float *out, size_t n, cudaStream_t s) {
    if (n) bf16_to_f32_kernel<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(in, out, n);
    return cudaGetLastError();
}
