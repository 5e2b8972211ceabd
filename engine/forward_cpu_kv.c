/* forward_cpu_kv.c: incremental decoding on the CPU engine (model.h,
 * olmoe_engine_decode_*): each layer's keys (after q/k norm, clamp and RoPE)
 * and values are kept for every position decoded so far, so a step computes
 * only its new rows and attends over the cache. The arithmetic is the
 * forward pass's own (forward_cpu.h: the same projections, attention,
 * routing and experts, on the engine's arena); only the head is run for the
 * last row alone. Results equal olmoe_engine_forward over the whole sequence
 * up to fp32 rounding: OpenBLAS may sum a 1-row GEMM in another order than a
 * many-row one. */
#include "decode_impl.h"
#include "forward_cpu.h"
#include "ops_cpu.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    float *kc; /* [L, C, Hkv*hd] keys, C = the decode's cap */
    float *vc; /* [L, C, Hkv*hd] values */
} kv_cache;

static int kv_open(olmoe_decode *d) {
    const olmoe_config *c = &d->e->model->cfg;
    size_t KD = (size_t)c->num_key_value_heads * c->head_dim;
    size_t n = xmul(xmul((size_t)c->num_hidden_layers, (size_t)d->cap), KD * sizeof(float));
    kv_cache *kv = xcalloc(1, sizeof *kv);
    kv->kc = olmoe_big_alloc(n);
    kv->vc = olmoe_big_alloc(n);
    d->impl = kv;
    return 0;
}

static void kv_close(olmoe_decode *d) {
    kv_cache *kv = d->impl;
    if (!kv) return;
    free(kv->kc);
    free(kv->vc);
    free(kv);
    d->impl = NULL;
}

static void add_rows(float *h, const float *a, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] += a[i];
}

/* the last row's routing into io (rows of width max_k) */
static void keep_choices(const cpu_state *s, int n, int l, int K, olmoe_decode_io *io) {
    int k = s->sel_n[n - 1];
    const int *ex = s->sel_e + (size_t)(n - 1) * K;
    const float *wt = s->sel_w + (size_t)(n - 1) * K;
    if (io->n_experts) io->n_experts[l] = k;
    if (io->experts)
        for (int j = 0; j < k; j++) io->experts[(size_t)l * K + j] = ex[j];
    if (io->weights) memcpy(io->weights + (size_t)l * K, wt, (size_t)k * sizeof *wt);
}

static int kv_step(olmoe_decode *d, const int32_t *tokens, int n, olmoe_decode_io *io) {
    kv_cache *kv = d->impl;
    olmoe_engine *e = d->e;
    cpu_state *s = e->impl;
    const olmoe_model *m = e->model;
    const olmoe_config *c = &m->cfg;
    int D = c->hidden_size, E = c->num_experts, L = c->num_hidden_layers, V = c->vocab_size;
    int Hq = c->num_attention_heads, Hkv = c->num_key_value_heads, hd = c->head_dim, K = e->top_k;
    int QD = Hq * hd, KD = Hkv * hd, past = d->len, half = hd / 2;
    size_t C = (size_t)d->cap;
    float eps = (float)c->rms_norm_eps;
    for (int i = 0; i < n; i++)
        memcpy(s->h + (size_t)i * D, m->embed_f32 + (size_t)tokens[i] * D, (size_t)D * sizeof(float));
    for (int l = 0; l < L; l++) {
        const olmoe_layer_f32 *W = &m->layers_f32[l];
        float *kl = kv->kc + (size_t)l * C * KD, *vl = kv->vc + (size_t)l * C * KD;
        olmoe_cpu_qkv(c, s, W, n);
        const float *cs = s->cos + (size_t)past * half, *sn = s->sin + (size_t)past * half;
        olmoe_rope_apply(s->q, n, Hq, hd, QD, cs, sn);
        olmoe_rope_apply(s->k, n, Hkv, hd, KD, cs, sn);
        memcpy(kl + (size_t)past * KD, s->k, (size_t)n * KD * sizeof(float));
        memcpy(vl + (size_t)past * KD, s->v, (size_t)n * KD * sizeof(float));
        olmoe_cpu_attention(s, c, s->q, kl, vl, s->att, n, past);
        olmoe_cpu_linear(s->att, W->wo, s->a, n, D, QD);
        add_rows(s->h, s->a, (size_t)n * D);
        olmoe_rmsnorm(s->h, W->post_norm, s->x, n, D, eps);
        olmoe_cpu_router(c, W, l, s->x, n, s->r);
        if (io->router_logits)
            memcpy(io->router_logits + (size_t)l * E, s->r + (size_t)(n - 1) * E, (size_t)E * sizeof(float));
        if (olmoe_cpu_experts(e, s, W, l, n) != 0) return -1;
        keep_choices(s, n, l, K, io);
        add_rows(s->h, s->a, (size_t)n * D);
    }
    olmoe_rmsnorm(s->h + (size_t)(n - 1) * D, m->final_norm_f32, s->x, 1, D, eps);
    olmoe_cpu_linear(s->x, m->lm_head_f32, s->logits, 1, V, D);
    int am;
    olmoe_logsumexp(s->logits, V, &am);
    io->argmax = am;
    if (io->logits) memcpy(io->logits, s->logits, (size_t)V * sizeof(float));
    return 0;
}

const olmoe_decode_ops olmoe_decode_cpu_ops = {"cpu", kv_open, kv_step, kv_close};
