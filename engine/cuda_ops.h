/* cuda_ops.h (internal to engine/): the CUDA kernels of the bf16 OLMoE
 * forward pass (docs/DESIGN.md §4), callable from C. Every pointer is device
 * memory; every launcher enqueues on stream s and returns cudaGetLastError().
 * bfloat16 values travel as their 16-bit patterns (olmoe_bf16).
 *
 *   olmoe_bf16 *h, *x;            // [T, D] on the device
 *   cudaError_t rc = olmoe_cuda_add_rmsnorm(h, a, w, x, T, D, 1e-5f, stream);
 *
 * Numerics follow transformers' bf16 path (docs/DESIGN.md §15, bench/NOTES.md):
 * each op that PyTorch runs in bf16 rounds its result to bf16 at the same
 * point; sums, norms and softmax are in fp32. Each op has a plain C reference
 * in ops_cpu.c, and tests/gpu/test_cuda_ops.c binds the two. No op uses
 * floating-point atomics, so every result is bit-reproducible.
 */
#ifndef OLMOE_CUDA_OPS_H
#define OLMOE_CUDA_OPS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t olmoe_bf16; /* bfloat16 bits */

/* h = embed[tok]; x = rmsnorm(h) * w */
cudaError_t olmoe_cuda_embed_rmsnorm(const int32_t *tok /*[T]*/, const olmoe_bf16 *embed /*[V, D]*/,
                                     const olmoe_bf16 *w /*[D]*/, olmoe_bf16 *h /*[T, D]*/,
                                     olmoe_bf16 *x /*[T, D]*/, int T, int D, float eps,
                                     cudaStream_t s);

/* h = bf16(h + a); x = rmsnorm(h) * w (the attention residual and the
 * post-attention norm in one pass) */
cudaError_t olmoe_cuda_add_rmsnorm(olmoe_bf16 *h /*[T, D]*/, const olmoe_bf16 *a /*[T, D]*/,
                                   const olmoe_bf16 *w /*[D]*/, olmoe_bf16 *x /*[T, D]*/, int T,
                                   int D, float eps, cudaStream_t s);

/* the experts' weighted sum, gathered per token in slot order j = 0..n-1 and
 * rounded as transformers' bf16 index_add_ does (weights rounded to bf16,
 * each product rounded, each partial sum rounded):
 * m = sum_j wt[t, j] * y[slot[t, j]]; h = bf16(h + m); x = rmsnorm(h) * w */
cudaError_t olmoe_cuda_combine_rmsnorm(olmoe_bf16 *h /*[T, D]*/, const olmoe_bf16 *y /*[S, D]*/,
                                       const int32_t *slot /*[T, K]*/, const float *wt /*[T, K]*/,
                                       const int32_t *nsel /*[T]*/, int K, const olmoe_bf16 *w /*[D]*/,
                                       olmoe_bf16 *x /*[T, D]*/, int T, int D, float eps,
                                       cudaStream_t s);

/* in place on the fused projection rows qkv[t] = [q (QD) | k (KD) | v (KD)]:
 * q = rmsnorm(q) * qn, k = rmsnorm(k) * kn over the whole projection, then
 * clamp q, k, v to +-clip when clip > 0, then rotate_half RoPE on q and k per
 * head of hd at position pos[t] with cos/sin from the fp32 table (rounded to
 * bf16 as transformers does) */
cudaError_t olmoe_cuda_qk_norm_rope(olmoe_bf16 *qkv /*[T, ld]*/, int ld, int QD, int KD, int hd,
                                    const olmoe_bf16 *qn /*[QD]*/, const olmoe_bf16 *kn /*[KD]*/,
                                    const float *cos_t /*[C, hd/2]*/, const float *sin_t /*[C, hd/2]*/,
                                    const int32_t *pos /*[T]*/, float eps, float clip, int T,
                                    cudaStream_t s);

/* causal softmax(q k^T / sqrt(hd)) v per window and head; q, k, v are column
 * blocks of qkv (q at 0, k at Hq*hd, v at (Hq+Hkv)*hd), out is [T, Hq*hd].
 * Window w covers rows win_off[w] .. + win_len[w] (device arrays), each at
 * most max_len. variant: OLMOE_ATTN_AUTO picks the tensor-core kernel when
 * hd is 16/32/64/128 and rows are 16-byte aligned, else the plain one. */
enum { OLMOE_ATTN_AUTO = 0, OLMOE_ATTN_PLAIN = 1, OLMOE_ATTN_FLASH = 2, OLMOE_ATTN_COUNT };
cudaError_t olmoe_cuda_attention(const olmoe_bf16 *qkv /*[T, ld]*/, int ld, int Hq, int Hkv, int hd,
                                 olmoe_bf16 *out /*[T, Hq*hd]*/, const int32_t *win_off /*[W]*/,
                                 const int32_t *win_len /*[W]*/, int W, int max_len, int variant,
                                 cudaStream_t s);
/* whether the tensor-core kernel takes this shape */
int olmoe_cuda_attention_flash_ok(int ld, int hd);

/* default routing, per token: logits rounded to bf16 in place (what the
 * trace stores and every later step sees), p = softmax in fp32, the k
 * largest p (ties toward the lower index) with weights p (renormalised over
 * the k when norm). logits rows are ld floats apart. E <= 256. */
cudaError_t olmoe_cuda_route_topk(float *logits /*[T, ld]*/, int ld, int E, int k, int norm,
                                  int32_t *sel_e /*[T, k]*/, float *sel_w /*[T, k]*/,
                                  int32_t *sel_n /*[T]*/, int T, cudaStream_t s);
/* rounds logits to bf16 in place only (for routing hooks run on the host) */
cudaError_t olmoe_cuda_round_bf16_rows(float *logits /*[T, ld]*/, int ld, int E, int T,
                                       cudaStream_t s);

/* Groups the (token, slot) choices by expert, stably in token order, without
 * atomics in the ordering: per-block counts, one scan, per-block scatter.
 * first[e] .. first[e+1] are expert e's rows of the grouped arrays; perm_tok
 * and perm_w give each row's token and weight; slot[t, j] is the row of
 * token t's j-th choice (-1 for j >= nsel[t]). blk_cnt is scratch of
 * olmoe_cuda_bucket_scratch(T, E) ints. */
int olmoe_cuda_bucket_scratch(int T, int E);
cudaError_t olmoe_cuda_bucket(const int32_t *sel_e /*[T, K]*/, const float *sel_w /*[T, K]*/,
                              const int32_t *nsel /*[T]*/, int T, int K, int E,
                              int32_t *blk_cnt /*scratch*/, int32_t *first /*[E + 1]*/,
                              int32_t *perm_tok /*[T*K]*/, float *perm_w /*[T*K]*/,
                              int32_t *slot /*[T, K]*/, cudaStream_t s);

/* out[r] = x[perm[r]] for r < *count (a device scalar), r < S_max */
cudaError_t olmoe_cuda_gather_rows(const olmoe_bf16 *x /*[T, D]*/, int D, const int32_t *perm /*[S]*/,
                                   const int32_t *count, int S_max, olmoe_bf16 *out /*[S, D]*/,
                                   cudaStream_t s);

/* act = bf16(bf16(silu(g)) * u) with g, u the two halves of each gu row,
 * for rows r < *count */
cudaError_t olmoe_cuda_silu_mul(const olmoe_bf16 *gu /*[S, 2I]*/, int I, const int32_t *count,
                                int S_max, olmoe_bf16 *act /*[S, I]*/, cudaStream_t s);

/* per row of bf16 logits: argmax (first maximum), and when target[r] >= 0,
 * nll = logsumexp(row) - row[target] (fp32), else NaN */
cudaError_t olmoe_cuda_lm_head_reduce(const olmoe_bf16 *logits /*[n, V]*/, int V, int n,
                                      const int32_t *target /*[n]*/, float *nll /*[n]*/,
                                      int32_t *argmax /*[n]*/, cudaStream_t s);

/* out[i] = (float)in[i] (for copying stashed activations to the host) */
cudaError_t olmoe_cuda_bf16_to_f32(const olmoe_bf16 *in, float *out, size_t n, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
