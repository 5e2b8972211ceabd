/* cuda_attention.cu: causal self-attention of a batch of windows, per head.
 *
 * The fast kernel is FlashAttention-2 style on the tensor cores
 * (mma.sync m16n8k16 bf16 -> fp32): a block takes 64 query rows of one head
 * of one window, 4 warps of 16 rows each, and walks the key tiles of 64 up
 * to the diagonal with an online softmax in fp32; K and V tiles are loaded
 * with cp.async two stages deep into XOR-swizzled shared memory and read
 * with ldmatrix. P is rounded to bf16 for the P.V product (as FlashAttention,
 * which PyTorch's sdpa runs, does); the row sums stay fp32. Memory is O(ctx)
 * per head, so any ctx works (4096 and beyond).
 *
 * The plain kernel (one block per query row, fp32 throughout) takes any
 * head_dim and is the reference the fast one is tested against on the GPU;
 * the C reference is forward_cpu.c's attention(). */
#include "cuda_ops.h"
#include "cuda_util.h"

/* ---------------------------------------------------------------- plain */

__global__ void attn_plain_kernel(const bf16_t *qkv, int ld, int Hq, int Hkv, int hd, bf16_t *out,
                                  const int32_t *win_off, const int32_t *win_len, float scale) {
    extern __shared__ float sh[]; /* [hd] query, then [max_len] scores */
    __shared__ float red[32];
    int w = blockIdx.z, head = blockIdx.y, i = blockIdx.x;
    int n = win_len[w];
    if (i >= n) return;
    size_t row0 = (size_t)win_off[w];
    int kvh = head / (Hq / Hkv);
    const bf16_t *q = qkv + (row0 + i) * ld + (size_t)head * hd;
    const bf16_t *k = qkv + row0 * ld + (size_t)Hq * hd + (size_t)kvh * hd;
    const bf16_t *v = k + (size_t)Hkv * hd;
    float *qs = sh, *sc = sh + hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = bf(q[d]);
    __syncthreads();
    float mx = -INFINITY;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) {
        const bf16_t *kj = k + (size_t)j * ld;
        float s = 0;
        for (int d = 0; d < hd; d++) s += qs[d] * bf(kj[d]);
        sc[j] = s * scale;
        mx = fmaxf(mx, sc[j]);
    }
    mx = block_max(mx, red);
    float sum = 0;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) {
        sc[j] = expf(sc[j] - mx);
        sum += sc[j];
    }
    sum = block_sum(sum, red);
    float inv = 1.0f / sum;
    bf16_t *o = out + (row0 + i) * (size_t)Hq * hd + (size_t)head * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0;
        for (int j = 0; j <= i; j++) acc += sc[j] * bf(v[(size_t)j * ld + d]);
        o[d] = to_bf(acc * inv);
    }
}

/* ---------------------------------------------------------------- flash */

#define FA_BM 64 /* query rows per block */
#define FA_BN 64 /* keys per tile */
#define FA_THREADS 128

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t &r0, uint32_t &r1, uint32_t &r2,
                                          uint32_t &r3) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(addr));
}

/* d += a . b, a 16x16 (row), b 16x8 (col), bf16 in, fp32 accumulate */
__device__ __forceinline__ void mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
                 "{%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    return (uint32_t)to_bf(lo) | ((uint32_t)to_bf(hi) << 16);
}

/* 16-byte chunk c of row r of a tile with CPR chunks a row, XOR-swizzled so
 * that 8 rows read at the same logical chunk hit 8 different bank groups */
template <int CPR> __device__ __forceinline__ int swz(int r, int c) {
    constexpr int M = CPR >= 8 ? 7 : CPR - 1;
    return r * CPR + (c ^ (r & M));
}

/* rows r0 .. r0+63 of a [*, ld] column block into a swizzled tile; rows at
 * or past n are zero-filled without being read */
template <int HD>
__device__ __forceinline__ void load_tile(bf16_t *s, const bf16_t *g, int ld, int r0, int n) {
    constexpr int CPR = HD / 8;
    for (int idx = threadIdx.x; idx < FA_BM * CPR; idx += FA_THREADS) {
        int r = idx / CPR, c = idx % CPR, gr = r0 + r;
        const bf16_t *src = g + (size_t)(gr < n ? gr : 0) * ld + c * 8;
        cp_async16(smem_u32(s + swz<CPR>(r, c) * 8), src, gr < n ? 16 : 0);
    }
}

/* One long kernel on purpose: the online softmax's row max, row sum and
 * output accumulators live in registers across the whole key loop, and the
 * cp.async pipeline's stages interleave with the two mma loops; the parts
 * that stand alone (tile loads, swizzle, fragment loads) are functions above. */
template <int HD>
__global__ void __launch_bounds__(FA_THREADS)
    attn_flash_kernel(const bf16_t *qkv, int ld, int Hq, int Hkv, bf16_t *out, const int32_t *win_off,
                      const int32_t *win_len, float scale_log2) {
    constexpr int CPR = HD / 8, KS = HD / 16;
    extern __shared__ __align__(16) unsigned char smem[];
    bf16_t *sQ = (bf16_t *)smem;          /* [64][HD] */
    bf16_t *sK = sQ + FA_BM * HD;         /* [2][64][HD] */
    bf16_t *sV = sK + 2 * FA_BN * HD;     /* [2][64][HD] */
    const int w = blockIdx.z, head = blockIdx.y;
    const int n = win_len[w];
    const int qb = (int)gridDim.x - 1 - (int)blockIdx.x; /* longest rows first */
    if (qb * FA_BM >= n) return;
    const int q0 = qb * FA_BM;
    const size_t row0 = (size_t)win_off[w];
    const int kvh = head / (Hq / Hkv);
    const bf16_t *gq = qkv + row0 * ld + (size_t)head * HD;
    const bf16_t *gk = qkv + row0 * ld + (size_t)Hq * HD + (size_t)kvh * HD;
    const bf16_t *gv = gk + (size_t)Hkv * HD;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
    const int li = lane >> 3, lr = lane & 7; /* ldmatrix: which 8x8 matrix, which row */

    load_tile<HD>(sQ, gq, ld, q0, n);
    load_tile<HD>(sK, gk, ld, 0, n);
    load_tile<HD>(sV, gv, ld, 0, n);
    cp_async_commit();

    uint32_t qf[KS][4];
    float o[HD / 8][4];
#pragma unroll
    for (int i = 0; i < HD / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    const int rowa = q0 + warp * 16 + g, rowb = rowa + 8; /* this thread's two query rows */

    for (int j = 0; j <= qb; j++) {
        const int st = j & 1;
        if (j < qb) {
            load_tile<HD>(sK + (st ^ 1) * FA_BN * HD, gk, ld, (j + 1) * FA_BN, n);
            load_tile<HD>(sV + (st ^ 1) * FA_BN * HD, gv, ld, (j + 1) * FA_BN, n);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (j == 0) {
#pragma unroll
            for (int kk = 0; kk < KS; kk++) {
                int r = warp * 16 + (li & 1) * 8 + lr, c = 2 * kk + (li >> 1);
                ldsm_x4(smem_u32(sQ + swz<CPR>(r, c) * 8), qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3]);
            }
        }
        const bf16_t *k_s = sK + st * FA_BN * HD, *v_s = sV + st * FA_BN * HD;

        float s[8][4];
#pragma unroll
        for (int i = 0; i < 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t b0, b1, b2, b3;
                int r = 16 * np + (li >> 1) * 8 + lr, c = 2 * kk + (li & 1);
                ldsm_x4(smem_u32(k_s + swz<CPR>(r, c) * 8), b0, b1, b2, b3);
                mma16816(s[2 * np], qf[kk], b0, b1);
                mma16816(s[2 * np + 1], qf[kk], b2, b3);
            }
        }
        if (j == qb) { /* the diagonal tile: keys after the query are masked */
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                int key = j * FA_BN + nt * 8 + 2 * tq;
                if (key > rowa) s[nt][0] = -INFINITY;
                if (key + 1 > rowa) s[nt][1] = -INFINITY;
                if (key > rowb) s[nt][2] = -INFINITY;
                if (key + 1 > rowb) s[nt][3] = -INFINITY;
            }
        }
        float mx0 = m0, mx1 = m1;
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
            mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        /* every row sees key 0 in tile 0, so the maxima are finite from here */
        const float c0 = exp2f((m0 - mx0) * scale_log2), c1 = exp2f((m1 - mx1) * scale_log2);
        m0 = mx0, m1 = mx1;
        const float ms0 = mx0 * scale_log2, ms1 = mx1 * scale_log2;
        float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            s[nt][0] = exp2f(fmaf(s[nt][0], scale_log2, -ms0));
            s[nt][1] = exp2f(fmaf(s[nt][1], scale_log2, -ms0));
            s[nt][2] = exp2f(fmaf(s[nt][2], scale_log2, -ms1));
            s[nt][3] = exp2f(fmaf(s[nt][3], scale_log2, -ms1));
            ps0 += s[nt][0] + s[nt][1];
            ps1 += s[nt][2] + s[nt][3];
        }
        l0 = l0 * c0 + ps0;
        l1 = l1 * c1 + ps1;
#pragma unroll
        for (int i = 0; i < HD / 8; i++) {
            o[i][0] *= c0, o[i][1] *= c0;
            o[i][2] *= c1, o[i][3] *= c1;
        }
#pragma unroll
        for (int kk = 0; kk < 4; kk++) { /* keys 16kk .. 16kk+15 */
            uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                              pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < KS; dp++) {
                uint32_t b0, b1, b2, b3;
                int r = 16 * kk + (li & 1) * 8 + lr, c = 2 * dp + (li >> 1);
                ldsm_x4_t(smem_u32(v_s + swz<CPR>(r, c) * 8), b0, b1, b2, b3);
                mma16816(o[2 * dp], pa, b0, b1);
                mma16816(o[2 * dp + 1], pa, b2, b3);
            }
        }
        __syncthreads(); /* the stage just read is the next load's target */
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = 1.0f / l0, i1 = 1.0f / l1;
    const size_t ldo = (size_t)Hq * HD;
    bf16_t *ob = out + row0 * ldo + (size_t)head * HD + 2 * tq;
#pragma unroll
    for (int nt = 0; nt < HD / 8; nt++) {
        if (rowa < n) *(uint32_t *)(ob + (size_t)rowa * ldo + nt * 8) = pack_bf16(o[nt][0] * i0, o[nt][1] * i0);
        if (rowb < n) *(uint32_t *)(ob + (size_t)rowb * ldo + nt * 8) = pack_bf16(o[nt][2] * i1, o[nt][3] * i1);
    }
}

template <int HD>
static cudaError_t launch_flash(const bf16_t *qkv, int ld, int Hq, int Hkv, bf16_t *out, const int32_t *win_off,
                                const int32_t *win_len, int W, int max_len, cudaStream_t s) {
    const int smem = (FA_BM + 4 * FA_BN) * HD * (int)sizeof(bf16_t);
    static int attr_set = 0; /* per instantiation */
    if (!attr_set) {
        cudaError_t e = cudaFuncSetAttribute(attn_flash_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return e;
        attr_set = 1;
    }
    dim3 grid((max_len + FA_BM - 1) / FA_BM, Hq, W);
    float scale_log2 = (float)(1.0 / sqrt((double)HD) * 1.4426950408889634);
    attn_flash_kernel<HD><<<grid, FA_THREADS, smem, s>>>(qkv, ld, Hq, Hkv, out, win_off, win_len, scale_log2);
    return cudaGetLastError();
}

extern "C" int olmoe_cuda_attention_flash_ok(int ld, int hd) {
    return (hd == 16 || hd == 32 || hd == 64 || hd == 128) && ld % 8 == 0;
}

extern "C" cudaError_t olmoe_cuda_attention(const olmoe_bf16 *qkv, int ld, int Hq, int Hkv, int hd,
                                            olmoe_bf16 *out, const int32_t *win_off, const int32_t *win_len,
                                            int W, int max_len, int variant, cudaStream_t s) {
    if (W <= 0 || max_len <= 0) return cudaSuccess;
    if (Hkv <= 0 || Hq % Hkv) return cudaErrorInvalidValue;
    int flash = olmoe_cuda_attention_flash_ok(ld, hd);
    if (variant == OLMOE_ATTN_FLASH && !flash) return cudaErrorInvalidValue;
    if (variant == OLMOE_ATTN_PLAIN) flash = 0;
    if (flash) {
        switch (hd) {
        case 16: return launch_flash<16>(qkv, ld, Hq, Hkv, out, win_off, win_len, W, max_len, s);
        case 32: return launch_flash<32>(qkv, ld, Hq, Hkv, out, win_off, win_len, W, max_len, s);
        case 64: return launch_flash<64>(qkv, ld, Hq, Hkv, out, win_off, win_len, W, max_len, s);
        default: return launch_flash<128>(qkv, ld, Hq, Hkv, out, win_off, win_len, W, max_len, s);
        }
    }
    size_t smem = (size_t)(hd + max_len) * sizeof(float);
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(attn_plain_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
    }
    dim3 grid(max_len, Hq, W);
    attn_plain_kernel<<<grid, 128, smem, s>>>(qkv, ld, Hq, Hkv, hd, out, win_off, win_len,
                                              (float)(1.0 / sqrt((double)hd)));
    return cudaGetLastError();
}
