/* forward_cpu.c: the reference OLMoE forward pass (docs/DESIGN.md §4) in fp32 on
 * the CPU. All windows of a call are stacked into T rows so every projection
 * is one cblas_sgemm over T tokens; attention runs per window and head in
 * blocks of query rows (memory O(ctx), not O(ctx^2)); experts run one GEMM
 * per expert over the tokens routed to it, in expert order, which is also the
 * order transformers adds their outputs in. Activations live in one arena
 * sized at open for max_tokens rows. The per-layer pieces are shared with
 * the KV-cache decoder (forward_cpu_kv.c) through forward_cpu.h. */
#include "forward_cpu.h"
#include "ops_cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* two passes over the same layout: the first sizes the arena, the second carves it */
typedef struct {
    unsigned char *base;
    size_t off;
} carver;

static void *take(carver *cv, size_t n, size_t size) {
    size_t bytes = xmul(n ? n : 1, size);
    size_t at = (cv->off + 63) & ~(size_t)63;
    cv->off = at + bytes;
    return cv->base ? cv->base + at : NULL;
}

static void layout(cpu_state *s, carver *cv, const olmoe_config *c, size_t T, size_t C, size_t K) {
    size_t D = c->hidden_size, FF = olmoe_config_ffn_max(c), E = c->num_experts, V = c->vocab_size;
    size_t QD = (size_t)c->num_attention_heads * c->head_dim;
    size_t KD = (size_t)c->num_key_value_heads * c->head_dim, half = c->head_dim / 2;
    s->h = take(cv, T * D, sizeof(float));
    s->x = take(cv, T * D, sizeof(float));
    s->q = take(cv, T * QD, sizeof(float));
    s->k = take(cv, T * KD, sizeof(float));
    s->v = take(cv, T * KD, sizeof(float));
    s->att = take(cv, T * QD, sizeof(float));
    s->a = take(cv, T * D, sizeof(float));
    s->r = take(cv, T * E, sizeof(float));
    s->sel_e = take(cv, T * K, sizeof(int));
    s->sel_w = take(cv, T * K, sizeof(float));
    s->sel_n = take(cv, T, sizeof(int));
    s->first = take(cv, E + 1, sizeof(int));
    s->fill = take(cv, E, sizeof(int));
    s->btok = take(cv, T * K, sizeof(int));
    s->bw = take(cv, T * K, sizeof(float));
    s->xe = take(cv, T * D, sizeof(float));
    s->g = take(cv, T * FF, sizeof(float));
    s->u = take(cv, T * FF, sizeof(float));
    s->y = take(cv, T * D, sizeof(float));
    s->scores = take(cv, (size_t)QBLOCK * C, sizeof(float));
    s->cos = take(cv, C * half, sizeof(float));
    s->sin = take(cv, C * half, sizeof(float));
    s->logits = take(cv, (size_t)LBLOCK * V, sizeof(float));
}

static int cpu_open(olmoe_engine *e) {
    olmoe_model *m = e->model;
    const olmoe_config *c = &m->cfg;
    if (olmoe_model_load_f32(m) != 0) return -1;
    cpu_state *s = xcalloc(1, sizeof *s);
    carver cv = {NULL, 0};
    layout(s, &cv, c, e->max_tokens, e->max_ctx, e->top_k);
    size_t bytes = cv.off;
    s->arena = olmoe_big_alloc((bytes + 63) & ~(size_t)63);
    cv.base = s->arena;
    cv.off = 0;
    layout(s, &cv, c, e->max_tokens, e->max_ctx, e->top_k);
    olmoe_rope_table(e->max_ctx, c->head_dim, c->rope_theta, s->cos, s->sin);
    e->impl = s;
    e->activation_bytes = bytes;
    snprintf(e->device, sizeof e->device, "cpu");
    e->compute_dtype = "float32";
    return 0;
}

static void cpu_close(olmoe_engine *e) {
    cpu_state *s = e->impl;
    if (!s) return;
    free(s->arena);
    free(s);
    e->impl = NULL;
}

void olmoe_cpu_linear(const float *in, const float *W, float *out, int T, int N, int K) {
    if (T == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, N, K, 1.0f, in, K, W, K, 0.0f, out, N);
}

/* out[T, N] += bias[N] */
static void add_bias(float *out, const float *bias, int T, int N) {
    if (!bias) return;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < N; i++) out[(size_t)t * N + i] += bias[i];
}

void olmoe_cpu_qkv(const olmoe_config *c, cpu_state *s, const olmoe_layer_f32 *W, int T) {
    int D = c->hidden_size, hd = c->head_dim;
    int QD = c->num_attention_heads * hd, KD = c->num_key_value_heads * hd;
    float eps = (float)c->rms_norm_eps;
    olmoe_rmsnorm(s->h, W->input_norm, s->x, T, D, eps);
    olmoe_cpu_linear(s->x, W->wq, s->q, T, QD, D);
    olmoe_cpu_linear(s->x, W->wk, s->k, T, KD, D);
    olmoe_cpu_linear(s->x, W->wv, s->v, T, KD, D);
    add_bias(s->q, W->q_bias, T, QD);
    add_bias(s->k, W->k_bias, T, KD);
    add_bias(s->v, W->v_bias, T, KD);
    if (c->qk_norm == OLMOE_QK_NORM_WHOLE) {
        olmoe_rmsnorm(s->q, W->q_norm, s->q, T, QD, eps);
        olmoe_rmsnorm(s->k, W->k_norm, s->k, T, KD, eps);
    } else if (c->qk_norm == OLMOE_QK_NORM_HEAD) { /* each head's vector on its own */
        olmoe_rmsnorm(s->q, W->q_norm, s->q, (size_t)T * c->num_attention_heads, hd, eps);
        olmoe_rmsnorm(s->k, W->k_norm, s->k, (size_t)T * c->num_key_value_heads, hd, eps);
    }
    if (c->has_clip_qkv) {
        float lim = (float)c->clip_qkv;
        olmoe_clamp(s->q, (size_t)T * QD, lim);
        olmoe_clamp(s->k, (size_t)T * KD, lim);
        olmoe_clamp(s->v, (size_t)T * KD, lim);
    }
}

void olmoe_cpu_attention(cpu_state *s, const olmoe_config *c, const float *q, const float *k,
                         const float *v, float *att, int n, int past) {
    int Hq = c->num_attention_heads, Hkv = c->num_key_value_heads, hd = c->head_dim;
    int QD = Hq * hd, KD = Hkv * hd, group = Hq / Hkv;
    float scale = (float)(1.0 / sqrt((double)hd));
    for (int h = 0; h < Hq; h++) {
        int kvh = h / group;
        const float *Q = q + (size_t)h * hd;
        const float *K = k + (size_t)kvh * hd;
        const float *V = v + (size_t)kvh * hd;
        float *O = att + (size_t)h * hd;
        for (int i0 = 0; i0 < n; i0 += QBLOCK) {
            int nb = n - i0 < QBLOCK ? n - i0 : QBLOCK, nk = past + i0 + nb;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nk, hd, scale,
                        Q + (size_t)i0 * QD, QD, K, KD, 0.0f, s->scores, nk);
            for (int r = 0; r < nb; r++) {
                float *row = s->scores + (size_t)r * nk;
                int valid = past + i0 + r + 1; /* keys 0..i: causal */
                olmoe_softmax(row, valid);
                memset(row + valid, 0, (size_t)(nk - valid) * sizeof *row);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, nk, 1.0f, s->scores, nk, V,
                        KD, 0.0f, O + (size_t)i0 * QD, QD);
        }
    }
}

void olmoe_cpu_moe(const olmoe_layer_f32 *W, const float *x, int T, int D, int FF, int E, int K,
                   const int *sel_e, const float *sel_w, const int *sel_n, olmoe_moe_scratch *s,
                   float *a) {
    memset(s->first, 0, (size_t)(E + 1) * sizeof(int));
    for (int t = 0; t < T; t++)
        for (int j = 0; j < sel_n[t]; j++) s->first[sel_e[(size_t)t * K + j] + 1]++;
    for (int e = 0; e < E; e++) s->first[e + 1] += s->first[e];
    memcpy(s->fill, s->first, (size_t)E * sizeof(int));
    for (int t = 0; t < T; t++)
        for (int j = 0; j < sel_n[t]; j++) {
            int e = sel_e[(size_t)t * K + j], at = s->fill[e]++;
            s->btok[at] = t;
            s->bw[at] = sel_w[(size_t)t * K + j];
        }
    memset(a, 0, (size_t)T * D * sizeof(float));
    for (int e = 0; e < E; e++) {
        int b0 = s->first[e], cnt = s->first[e + 1] - b0;
        if (cnt == 0) continue;
        for (int j = 0; j < cnt; j++)
            memcpy(s->xe + (size_t)j * D, x + (size_t)s->btok[b0 + j] * D, (size_t)D * sizeof(float));
        olmoe_cpu_linear(s->xe, W->gate[e], s->g, cnt, FF, D);
        olmoe_cpu_linear(s->xe, W->up[e], s->u, cnt, FF, D);
        olmoe_silu_mul(s->g, s->u, (size_t)cnt * FF);
        olmoe_cpu_linear(s->g, W->down[e], s->y, cnt, D, FF);
        for (int j = 0; j < cnt; j++) {
            float w = s->bw[b0 + j];
            float *dst = a + (size_t)s->btok[b0 + j] * D;
            const float *src = s->y + (size_t)j * D;
            for (int i = 0; i < D; i++) dst[i] += src[i] * w;
        }
    }
}

/* out[T, D] = down(silu(gate x) * up x), width F */
static void swiglu(const float *x, const float *gate, const float *up, const float *down, int T,
                   int D, int F, float *g, float *u, float *out) {
    olmoe_cpu_linear(x, gate, g, T, F, D);
    olmoe_cpu_linear(x, up, u, T, F, D);
    olmoe_silu_mul(g, u, (size_t)T * F);
    olmoe_cpu_linear(g, down, out, T, D, F);
}

void olmoe_cpu_dense_mlp(const olmoe_config *c, const olmoe_layer_f32 *W, const float *x, int T,
                         float *g, float *u, float *a) {
    swiglu(x, W->mlp_gate, W->mlp_up, W->mlp_down, T, c->hidden_size, c->dense_intermediate_size, g,
           u, a);
}

void olmoe_cpu_shared_expert(const olmoe_config *c, const olmoe_layer_f32 *W, const float *x, int T,
                             float *g, float *u, float *y, float *a) {
    if (!W->shared_gate) return;
    int D = c->hidden_size;
    swiglu(x, W->mlp_gate, W->mlp_up, W->mlp_down, T, D, c->shared_intermediate_size, g, u, y);
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * D;
        float z = 0; /* the gate logit, summed in fp32 as a one-output linear */
        for (int i = 0; i < D; i++) z += xt[i] * W->shared_gate[i];
        float sg = 1.0f / (1.0f + expf(-z));
        float *dst = a + (size_t)t * D;
        const float *src = y + (size_t)t * D;
        for (int i = 0; i < D; i++) dst[i] += sg * src[i];
    }
}

int olmoe_cpu_experts(olmoe_engine *e, cpu_state *s, const olmoe_layer_f32 *W, int l, int T) {
    const olmoe_config *c = &e->model->cfg;
    int D = c->hidden_size, FF = c->intermediate_size, E = c->num_experts, K = e->top_k;
    if (c->dense[l]) { /* no router: nothing chosen, zero logits, the MLP for every row */
        memset(s->sel_n, 0, (size_t)T * sizeof *s->sel_n);
        olmoe_cpu_dense_mlp(c, W, s->x, T, s->g, s->u, s->a);
        return 0;
    }
    for (int t = 0; t < T; t++) {
        int *ex = s->sel_e + (size_t)t * K;
        float *wt = s->sel_w + (size_t)t * K;
        int n = e->route(e->route_ctx, l, e->route_pos[t], s->r + (size_t)t * E, E, ex, wt);
        if (n < 0) return olmoe_error_prefix("layer %d: routing", l);
        if (n < 1 || n > K)
            return olmoe_errorf("layer %d: the routing policy chose %d experts (allowed 1 to %d)", l, n,
                                K);
        for (int j = 0; j < n; j++) {
            if (ex[j] < 0 || ex[j] >= E)
                return olmoe_errorf("layer %d: the routing policy chose expert %d of %d", l, ex[j], E);
            for (int i = 0; i < j; i++)
                if (ex[i] == ex[j])
                    return olmoe_errorf("layer %d: the routing policy chose expert %d twice", l, ex[j]);
        }
        s->sel_n[t] = n;
    }
    olmoe_moe_scratch m = {s->first, s->fill, s->btok, s->bw, s->xe, s->g, s->u, s->y};
    olmoe_cpu_moe(W, s->x, T, D, FF, E, K, s->sel_e, s->sel_w, s->sel_n, &m, s->a);
    olmoe_cpu_shared_expert(c, W, s->x, T, s->g, s->u, s->y, s->a);
    return 0;
}

void olmoe_cpu_router(const olmoe_config *c, const olmoe_layer_f32 *W, int l, const float *x, int T,
                      float *r) {
    if (c->dense[l])
        memset(r, 0, (size_t)T * c->num_experts * sizeof *r);
    else
        olmoe_cpu_linear(x, W->router, r, T, c->num_experts, c->hidden_size);
}

/* copies rows of a [T, width] buffer into each window's [n, stride/width, width]
 * output at slot */
static void scatter(olmoe_window_io *w, int nw, size_t field, const float *src, int width, int slots,
                    int slot) {
    size_t off = 0;
    for (int b = 0; b < nw; b++) {
        float *dst = *(float **)((char *)&w[b] + field);
        if (dst)
            for (int i = 0; i < w[b].n; i++)
                memcpy(dst + ((size_t)i * slots + slot) * width, src + (off + i) * width,
                       (size_t)width * sizeof(float));
        off += w[b].n;
    }
}

static void add(float *h, const float *a, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] += a[i];
}

static void head(cpu_state *s, const olmoe_model *m, olmoe_window_io *w, int off) {
    const olmoe_config *c = &m->cfg;
    int D = c->hidden_size, V = c->vocab_size, n = w->n;
    for (int i0 = 0; i0 < n; i0 += LBLOCK) {
        int nb = n - i0 < LBLOCK ? n - i0 : LBLOCK;
        olmoe_cpu_linear(s->x + (size_t)(off + i0) * D, m->lm_head_f32, s->logits, nb, V, D);
        for (int r = 0; r < nb; r++) {
            int i = i0 + r, am;
            const float *row = s->logits + (size_t)r * V;
            double lse = olmoe_logsumexp(row, V, &am);
            if (w->argmax) w->argmax[i] = am;
            if (w->nll) w->nll[i] = i + 1 < n ? (float)(lse - row[w->tokens[i + 1]]) : NAN;
            if (w->logits) memcpy(w->logits + (size_t)i * V, row, (size_t)V * sizeof(float));
        }
    }
}

static int cpu_forward(olmoe_engine *e, olmoe_window_io *w, int nw) {
    cpu_state *s = e->impl;
    const olmoe_model *m = e->model;
    const olmoe_config *c = &m->cfg;
    int D = c->hidden_size, E = c->num_experts, L = c->num_hidden_layers;
    int QD = c->num_attention_heads * c->head_dim, KD = c->num_key_value_heads * c->head_dim;
    float eps = (float)c->rms_norm_eps;
    int T = 0;
    for (int b = 0; b < nw; b++) {
        for (int i = 0; i < w[b].n; i++)
            memcpy(s->h + (size_t)(T + i) * D, m->embed_f32 + (size_t)w[b].tokens[i] * D,
                   (size_t)D * sizeof(float));
        T += w[b].n;
    }
    for (int l = 0; l < L; l++) {
        const olmoe_layer_f32 *W = &m->layers_f32[l];
        scatter(w, nw, offsetof(olmoe_window_io, hidden), s->h, D, L + 1, l);
        olmoe_cpu_qkv(c, s, W, T);
        for (int b = 0, off = 0; b < nw; off += w[b].n, b++) {
            olmoe_rope_apply(s->q + (size_t)off * QD, w[b].n, c->num_attention_heads, c->head_dim, QD,
                             s->cos, s->sin);
            olmoe_rope_apply(s->k + (size_t)off * KD, w[b].n, c->num_key_value_heads, c->head_dim, KD,
                             s->cos, s->sin);
            olmoe_cpu_attention(s, c, s->q + (size_t)off * QD, s->k + (size_t)off * KD,
                                s->v + (size_t)off * KD, s->att + (size_t)off * QD, w[b].n, 0);
        }
        olmoe_cpu_linear(s->att, W->wo, s->a, T, D, QD);
        scatter(w, nw, offsetof(olmoe_window_io, attn_residual), s->a, D, L, l);
        add(s->h, s->a, (size_t)T * D);
        olmoe_rmsnorm(s->h, W->post_norm, s->x, T, D, eps);
        olmoe_cpu_router(c, W, l, s->x, T, s->r);
        scatter(w, nw, offsetof(olmoe_window_io, router_logits), s->r, E, L, l);
        if (olmoe_cpu_experts(e, s, W, l, T) != 0) return -1;
        add(s->h, s->a, (size_t)T * D);
    }
    scatter(w, nw, offsetof(olmoe_window_io, hidden), s->h, D, L + 1, L);
    olmoe_rmsnorm(s->h, m->final_norm_f32, s->x, T, D, eps);
    for (int b = 0, off = 0; b < nw; off += w[b].n, b++)
        if (w[b].nll || w[b].argmax || w[b].logits) head(s, m, &w[b], off);
    return 0;
}

/* bf16_residuals = 0: engine.c rounds the fp32 residuals for attn_residual_bf16 */
const olmoe_engine_ops olmoe_engine_cpu_ops = {"cpu", cpu_open, cpu_forward, cpu_close, 0, NULL};
