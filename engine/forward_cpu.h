/* forward_cpu.h (internal to engine/): the CPU engine's state and the
 * per-layer pieces of its forward pass, shared by the whole-window forward
 * (forward_cpu.c) and incremental decoding with a KV cache
 * (forward_cpu_kv.c), so both run the same arithmetic.
 *
 *   cpu_state *s = e->impl;                        // rows [0, T) of the arena
 *   olmoe_cpu_qkv(c, s, W, T);                     // s->q, s->k, s->v
 *   olmoe_cpu_attention(s, c, s->q, K, V, s->att, n, past);
 *   if (olmoe_cpu_experts(e, s, W, l, T) != 0) return -1;  // s->a
 */
#ifndef OLMOE_FORWARD_CPU_H
#define OLMOE_FORWARD_CPU_H

#include "engine_impl.h"

#define QBLOCK 64 /* query rows per attention GEMM */
#define LBLOCK 64 /* rows per lm_head GEMM: the logits of a whole window would be huge */

typedef struct {
    void *arena;
    float *h;      /* [T, D] residual stream */
    float *x;      /* [T, D] normed input of the current sublayer */
    float *q;      /* [T, Hq*hd] */
    float *k;      /* [T, Hkv*hd] */
    float *v;      /* [T, Hkv*hd] */
    float *att;    /* [T, Hq*hd] attention output before o_proj */
    float *a;      /* [T, D] o_proj output (A_l), then the experts' weighted sum */
    float *r;      /* [T, E] router logits */
    int *sel_e;    /* [T, K] experts chosen per token */
    float *sel_w;  /* [T, K] their weights */
    int *sel_n;    /* [T] how many were chosen */
    int *first;    /* [E + 1] start of each expert's bucket */
    int *fill;     /* [E] bucket cursors */
    int *btok;     /* [T * K] token rows grouped by expert */
    float *bw;     /* [T * K] their weights */
    float *xe;     /* [T, D] one expert's gathered inputs */
    float *g;      /* [T, FF] gate, then silu(gate) * up (FF = olmoe_config_ffn_max) */
    float *u;      /* [T, FF] up */
    float *y;      /* [T, D] down */
    float *scores; /* [QBLOCK, C] attention probabilities of a block of queries */
    float *cos;    /* [C, hd/2] */
    float *sin;    /* [C, hd/2] */
    float *logits; /* [LBLOCK, V] */
} cpu_state;

/* out[T, N] = in[T, K] . W[N, K]^T */
void olmoe_cpu_linear(const float *in, const float *W, float *out, int T, int N, int K);

/* rows [0, T) of s->h: x = rmsnorm(h) * w_input; q, k, v projected (plus
 * their biases when the architecture has them), q and k normed over the
 * whole projection (OLMoE), per head (Qwen3-MoE) or not at all, all three
 * clamped when clip_qkv is set (no RoPE: that needs the rows' positions) */
void olmoe_cpu_qkv(const olmoe_config *c, cpu_state *s, const olmoe_layer_f32 *W, int T);

/* causal attention of n query rows at positions past .. past+n-1 over the
 * keys and values of positions 0 .. past+n-1 (rows of K, V); past + n is at
 * most the engine's max_ctx */
void olmoe_cpu_attention(cpu_state *s, const olmoe_config *c, const float *q /*[n, Hq*hd]*/,
                         const float *k /*[past+n, Hkv*hd]*/, const float *v /*[past+n, Hkv*hd]*/,
                         float *att /*[n, Hq*hd]*/, int n, int past);

/* r = the router logits of layer l for rows [0, T) of x; zeros in a dense layer */
void olmoe_cpu_router(const olmoe_config *c, const olmoe_layer_f32 *W, int l,
                      const float *x /*[T, D]*/, int T, float *r /*[T, E]*/);

/* a dense layer's MLP: a = down(silu(gate x) * up x); g, u: [T, F] scratch */
void olmoe_cpu_dense_mlp(const olmoe_config *c, const olmoe_layer_f32 *W, const float *x /*[T, D]*/,
                         int T, float *g, float *u, float *a /*[T, D]*/);

/* adds the shared expert, scaled by sigmoid(x . shared_expert_gate), to the
 * routed experts' sum in a (nothing when the layer has none); g, u: [T, F]
 * and y: [T, D] scratch */
void olmoe_cpu_shared_expert(const olmoe_config *c, const olmoe_layer_f32 *W,
                             const float *x /*[T, D]*/, int T, float *g, float *u, float *y,
                             float *a /*[T, D]*/);

/* routes rows [0, T) of s->r through the engine's hook (choices checked, in
 * s->sel_*), then runs each expert once over its rows of s->x; the weighted
 * sum, plus the shared expert where there is one, lands in s->a. A dense
 * layer routes nothing (s->sel_n all 0) and runs its MLP into s->a. */
int olmoe_cpu_experts(olmoe_engine *e, cpu_state *s, const olmoe_layer_f32 *W, int l, int T);

#endif
