/* cuda_util.h (internal to the engine .cu files): what the CUDA files share: checked
 * calls that name file:line, a device allocation that says what failed, bf16
 * bit conversions, and warp/block reductions with a fixed order (so results
 * are reproducible bit for bit). Device code only in the inline functions;
 * included by .cu files only. */
#ifndef OLMOE_CUDA_UTIL_H
#define OLMOE_CUDA_UTIL_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

extern "C" {
#include "common.h"
}

/* library style: set the message and return -1 */
#define CUDA_TRY(call)                                                                  \
    do {                                                                                \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess)                                                          \
            return olmoe_errorf("cuda: %s:%d: %s: %s", __FILE__, __LINE__, #call,       \
                                cudaGetErrorString(e_));                                \
    } while (0)

#define CUBLAS_TRY(call)                                                                \
    do {                                                                                \
        int s_ = (int)(call);                                                           \
        if (s_ != 0)                                                                    \
            return olmoe_errorf("cublas: %s:%d: %s: status %d", __FILE__, __LINE__, #call, s_); \
    } while (0)

/* cudaMalloc (cuda_setup.cu); on failure *p = NULL and the message "WHO:
 * cannot allocate SIZE WHAT: cuda's reason HINT", WHAT formatted from what
 * and its arguments */
int olmoe_cuda_alloc(void **p, size_t bytes, const char *who, const char *hint, const char *what, ...)
    OLMOE_PRINTF(5, 6);

typedef uint16_t bf16_t;

__device__ __forceinline__ float bf(bf16_t b) { return __uint_as_float((uint32_t)b << 16); }

/* round to nearest even, as PyTorch's float -> bfloat16 */
__device__ __forceinline__ bf16_t to_bf(float f) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
}
/* the value after a bf16 round trip */
__device__ __forceinline__ float rbf(float f) { return bf(to_bf(f)); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* sum over the block (blockDim.x a multiple of 32, at most 1024); red is
 * shared scratch of 32 floats; every thread gets the total */
__device__ __forceinline__ float block_sum(float v, float *red) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* red may still be read by a previous call */
    if (lane == 0) red[wid] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return warp_sum(v);
}

__device__ __forceinline__ float block_max(float v, float *red) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[wid] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    return warp_max(v);
}

#endif
