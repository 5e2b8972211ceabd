/* ops_cpu.h (internal to engine/): the elementwise and row-wise pieces of the
 * OLMoE forward pass in fp32, each written to follow transformers' float32
 * arithmetic order (docs/DESIGN.md §4), plus dtype conversion. The GEMMs are CBLAS
 * calls in forward_cpu.c. These are also the C references a CUDA kernel is
 * checked against.
 *
 *   olmoe_rmsnorm(h, w, x, n, D, eps);            // x = rmsnorm(h) * w, row by row
 *   olmoe_rope_table(64, 32, 10000, cos, sin);    // [64, 16] each
 *   olmoe_rope_apply(q, n, heads, 32, ldq, cos, sin);
 */
#ifndef OLMOE_OPS_CPU_H
#define OLMOE_OPS_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

/* malloc for large buffers (weights, arenas), on huge pages where it helps;
 * release with free(); dies when memory is exhausted */
void *olmoe_big_alloc(size_t bytes);

/* n elements of src (F32/BF16/F16, any alignment) into dst, exactly */
void olmoe_convert_to_f32(const void *src, olmoe_st_dtype dt, size_t n, float *dst);

/* out[r] = w * (x[r] * 1/sqrt(mean(x[r]^2) + eps)); out may be x */
void olmoe_rmsnorm(const float *x /*[rows, dim]*/, const float *w /*[dim]*/, float *out /*[rows, dim]*/,
                   size_t rows, int dim, float eps);

/* cos/sin of pos * inv_freq_i, inv_freq_i = 1 / theta^(2i/head_dim), in
 * float32 as transformers computes them */
void olmoe_rope_table(int max_pos, int head_dim, double theta, float *cos /*[max_pos, hd/2]*/,
                      float *sin /*[max_pos, hd/2]*/);
/* rotate_half RoPE in place on rows 0..n-1 (row i at position i), each row
 * holding heads x head_dim values, rows ld floats apart */
void olmoe_rope_apply(float *x, int n, int heads, int head_dim, size_t ld, const float *cos,
                      const float *sin);

void olmoe_clamp(float *x, size_t n, float lim);
/* in place, returns nothing; max-subtracted, sum in double */
void olmoe_softmax(float *x, int n);
/* g = silu(g) * u */
void olmoe_silu_mul(float *g, const float *u, size_t n);
/* log-sum-exp of a row in double, and its first argmax */
double olmoe_logsumexp(const float *x, int n, int *argmax);

/* scratch of olmoe_cpu_moe for T tokens of at most K experts each */
typedef struct {
    int *first;  /* [E + 1] start of each expert's bucket */
    int *fill;   /* [E] bucket cursors */
    int *btok;   /* [T * K] token rows grouped by expert */
    float *bw;   /* [T * K] their weights */
    float *xe;   /* [T, D] one expert's gathered inputs */
    float *g;    /* [T, FF] gate, then silu(gate) * up */
    float *u;    /* [T, FF] up */
    float *y;    /* [T, D] down */
} olmoe_moe_scratch;

/* a[t] = sum over j < sel_n[t] of sel_w[t, j] * expert_{sel_e[t, j]}(x[t]),
 * experts being SwiGLU MLPs: the (token, expert) pairs grouped by expert,
 * each expert run once over its rows (CBLAS), summed in each token's choice
 * order. Experts must be valid and distinct per token (the callers check). */
void olmoe_cpu_moe(const olmoe_layer_f32 *W, const float *x /*[T, D]*/, int T, int D, int FF, int E,
                   int K, const int *sel_e /*[T, K]*/, const float *sel_w /*[T, K]*/,
                   const int *sel_n /*[T]*/, olmoe_moe_scratch *s, float *a /*[T, D]*/);

#endif
