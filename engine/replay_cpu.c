/* replay_cpu.c: the CPU replay backend, fp32 with OpenBLAS. Its arithmetic
 * is the engine's (forward_cpu.c) step for step, through the same
 * row operations (ops_cpu.h): h = embed, h += A_l, rmsnorm, router
 * GEMM, each expert once over its tokens in expert order into a zeroed sum,
 * h += sum, final norm, LM head in blocks. So replaying the captured policy
 * with fp32 residuals gives the captured NLL up to GEMM blocking (~1e-7);
 * bfloat16 residuals add their own rounding, which the self-check reports. */
#include "forward_cpu.h"
#include "ops_cpu.h"
#include "replay_backend.h"
#include "traces.h" /* olmoe_bf16_to_f32_n */
#ifdef OLMOE_HAVE_CUDA /* ---- the CUDA backend ---- */
#include "replay_cuda.h"
#include "cuda_engine.h"
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LBLOCK 64 /* rows per LM-head GEMM, as the engine */

typedef struct {
    void *arena;
    float *h;     /* [T, D] residual stream */
    float *x;     /* [T, D] normed input of the experts */
    float *a;     /* [T, D] A_l, then the experts' weighted sum */
    float *r;     /* [T, E] router logits of one layer */
    int *sel_e;   /* [T, K] */
    float *sel_w; /* [T, K] */
    int *sel_n;   /* [T] */
    int *first;   /* [E + 1] bucket starts */
    int *fill;    /* [E] */
    int *btok;    /* [T * K] rows grouped by expert */
    float *bw;    /* [T * K] their weights */
    float *xe;    /* [T, D] one expert's inputs */
    float *g;     /* [T, FF] */
    float *u;     /* [T, FF] */
    float *y;     /* [T, D] */
    float *logits; /* [LBLOCK, V] */
} cpu_replay;

static void *take(unsigned char *base, size_t *off, size_t n, size_t size) {
    size_t at = (*off + 63) & ~(size_t)63;
    *off = at + xmul(n ? n : 1, size);
    return base ? base + at : NULL;
}

static size_t layout(cpu_replay *s, unsigned char *base, const olmoe_config *c, size_t T, size_t K) {
    size_t D = c->hidden_size, FF = olmoe_config_ffn_max(c), E = c->num_experts, V = c->vocab_size;
    size_t off = 0;
    s->h = take(base, &off, T * D, sizeof(float));
    s->x = take(base, &off, T * D, sizeof(float));
    s->a = take(base, &off, T * D, sizeof(float));
    s->r = take(base, &off, T * E, sizeof(float));
    s->sel_e = take(base, &off, T * K, sizeof(int));
    s->sel_w = take(base, &off, T * K, sizeof(float));
    s->sel_n = take(base, &off, T, sizeof(int));
    s->first = take(base, &off, E + 1, sizeof(int));
    s->fill = take(base, &off, E, sizeof(int));
    s->btok = take(base, &off, T * K, sizeof(int));
    s->bw = take(base, &off, T * K, sizeof(float));
    s->xe = take(base, &off, T * D, sizeof(float));
    s->g = take(base, &off, T * FF, sizeof(float));
    s->u = take(base, &off, T * FF, sizeof(float));
    s->y = take(base, &off, T * D, sizeof(float));
    s->logits = take(base, &off, (size_t)LBLOCK * V, sizeof(float));
    return off;
}

static int cpu_open(olmoe_replay_backend *b) {
    if (olmoe_model_load_f32(b->model) != 0) return -1;
    cpu_replay *s = xcalloc(1, sizeof *s);
    size_t bytes = layout(s, NULL, &b->model->cfg, (size_t)b->max_tokens, (size_t)b->max_k);
    s->arena = olmoe_big_alloc((bytes + 63) & ~(size_t)63);
    layout(s, s->arena, &b->model->cfg, (size_t)b->max_tokens, (size_t)b->max_k);
    b->impl = s;
    snprintf(b->device, sizeof b->device, "cpu");
    return 0;
}

static void cpu_close(olmoe_replay_backend *b) {
    cpu_replay *s = b->impl;
    if (!s) return;
    free(s->arena);
    free(s);
    b->impl = NULL;
}

static int cpu_load(olmoe_replay_backend *b, const olmoe_replay_chunk *c) {
    (void)b, (void)c; /* rows are read where they lie */
    return 0;
}

/* routes every row with the policy, then each expert once over its rows; the
 * weighted sum lands in s->a (the engine's experts(), plus the counts) */
static int experts(olmoe_replay_backend *b, cpu_replay *s, const olmoe_policy *pol, int l, int T,
                   olmoe_replay_out *o) {
    const olmoe_config *c = &b->model->cfg;
    const olmoe_layer_f32 *W = &b->model->layers_f32[l];
    int D = c->hidden_size, FF = c->intermediate_size, E = c->num_experts, K = b->max_k;
    int L = c->num_hidden_layers;
    if (c->dense[l]) { /* nothing to route: the layer's MLP, as the engine runs it */
        for (int t = 0; t < T; t++) o->n_experts[(size_t)t * L + l] = 0;
        olmoe_cpu_dense_mlp(c, W, s->x, T, s->g, s->u, s->a);
        return 0;
    }
    for (int t = 0; t < T; t++) {
        int *ex = s->sel_e + (size_t)t * K;
        float *wt = s->sel_w + (size_t)t * K;
        int n = olmoe_policy_route_at((void *)pol, l, b->chunk->row0 + t, s->r + (size_t)t * E, E, ex, wt);
        if (n < 0) return olmoe_error_prefix("layer %d: routing", l);
        if (n < 1 || n > K)
            return olmoe_errorf("layer %d: policy %s chose %d experts (allowed 1 to %d)", l, pol->id,
                                n, K);
        for (int j = 0; j < n; j++) {
            if (ex[j] < 0 || ex[j] >= E)
                return olmoe_errorf("layer %d: policy %s chose expert %d of %d", l, pol->id, ex[j], E);
            o->load[(size_t)l * E + ex[j]]++;
        }
        s->sel_n[t] = n;
        o->n_experts[(size_t)t * L + l] = (uint8_t)n;
    }
    olmoe_moe_scratch m = {s->first, s->fill, s->btok, s->bw, s->xe, s->g, s->u, s->y};
    olmoe_cpu_moe(W, s->x, T, D, FF, E, K, s->sel_e, s->sel_w, s->sel_n, &m, s->a);
    olmoe_cpu_shared_expert(c, W, s->x, T, s->g, s->u, s->y, s->a);
    return 0;
}

static void add(float *h, const float *a, size_t n) {
    for (size_t i = 0; i < n; i++) h[i] += a[i];
}

static int cpu_run(olmoe_replay_backend *b, const olmoe_policy *pol, olmoe_replay_out *o) {
    cpu_replay *s = b->impl;
    const olmoe_replay_chunk *ch = b->chunk;
    const olmoe_model *m = b->model;
    const olmoe_config *c = &m->cfg;
    int T = ch->n, D = c->hidden_size, E = c->num_experts, L = c->num_hidden_layers;
    int V = c->vocab_size;
    float eps = (float)c->rms_norm_eps;
    for (int t = 0; t < T; t++)
        memcpy(s->h + (size_t)t * D, m->embed_f32 + (size_t)ch->tokens[t] * D, (size_t)D * sizeof(float));
    for (int l = 0; l < L; l++) {
        const olmoe_layer_f32 *W = &m->layers_f32[l];
        for (int t = 0; t < T; t++) {
            size_t at = ((size_t)t * L + l) * D;
            if (ch->residual)
                memcpy(s->a + (size_t)t * D, ch->residual + at, (size_t)D * sizeof(float));
            else
                olmoe_bf16_to_f32_n(s->a + (size_t)t * D, ch->residual_bf16 + at, (size_t)D);
        }
        add(s->h, s->a, (size_t)T * D);
        olmoe_rmsnorm(s->h, W->post_norm, s->x, T, D, eps);
        if (b->routing == OLMOE_ROUTING_CAPTURED)
            for (int t = 0; t < T; t++)
                memcpy(s->r + (size_t)t * E, ch->router_logits + ((size_t)t * L + l) * E,
                       (size_t)E * sizeof(float));
        else
            olmoe_cpu_router(c, W, l, s->x, T, s->r);
        if (experts(b, s, pol, l, T, o) != 0) return -1;
        add(s->h, s->a, (size_t)T * D);
    }
    olmoe_rmsnorm(s->h, m->final_norm_f32, s->x, T, D, eps);
    for (int i0 = 0; i0 < T; i0 += LBLOCK) {
        int nb = T - i0 < LBLOCK ? T - i0 : LBLOCK;
        olmoe_cpu_linear(s->x + (size_t)i0 * D, m->lm_head_f32, s->logits, nb, V, D);
        for (int rr = 0; rr < nb; rr++) {
            int i = i0 + rr, am;
            const float *row = s->logits + (size_t)rr * V;
            double lse = olmoe_logsumexp(row, V, &am);
            o->argmax[i] = am;
            o->nll[i] = ch->target[i] >= 0 ? (float)(lse - row[ch->target[i]]) : NAN;
        }
    }
    return 0;
}

const olmoe_replay_backend_ops olmoe_replay_cpu_ops = {"cpu", cpu_open, cpu_load, cpu_run, cpu_close};

/* ---- the dispatching calls ---- */

const char *olmoe_device_resolve(const char *device) {
    if (!device || strcmp(device, "auto") != 0) return device;
#ifdef OLMOE_HAVE_CUDA /* cuda when built with it and a GPU is there */
    return olmoe_cuda_device_count() > 0 ? "cuda" : "cpu";
#else
    return "cpu";
#endif
}


const char *olmoe_replay_routing_name(olmoe_replay_routing r) {
    return r == OLMOE_ROUTING_CAPTURED ? "captured" : "recompute";
}

int olmoe_replay_backend_open(olmoe_model *m, const char *device, int max_tokens, int max_k,
                              olmoe_replay_routing routing, olmoe_replay_backend **out) {
    const olmoe_replay_backend_ops *ops = NULL;
    device = olmoe_device_resolve(device);
    if (!device || strcmp(device, "cpu") == 0)
        ops = &olmoe_replay_cpu_ops;
    /* ---- the CUDA backend (replay_cuda.cu) ---- */
    else if (strcmp(device, "cuda") == 0 || strncmp(device, "cuda:", 5) == 0)
#ifdef OLMOE_HAVE_CUDA
        ops = &olmoe_replay_cuda_ops;
#else
        return olmoe_errorf("device '%s': built without CUDA (make CUDA=1 builds it); "
                            "use --device cpu", device);
#endif
    /* ---- end of the CUDA backend ---- */
    else
        return olmoe_errorf("unknown device '%s' (auto, cpu or cuda)", device);
    int E = m->cfg.num_experts;
    if (max_tokens < 1) return olmoe_errorf("replay chunks of %d tokens", max_tokens);
    if (max_k < 1 || max_k > E || max_k > 255)
        return olmoe_errorf("policies of up to %d experts: replay takes 1 to %d", max_k,
                            E < 255 ? E : 255);
    olmoe_replay_backend *b = xcalloc(1, sizeof *b);
    b->ops = ops;
    b->model = m;
    b->max_tokens = max_tokens;
    b->max_k = max_k;
    b->routing = routing;
    snprintf(b->device, sizeof b->device, "%s", ops->name);
    if (ops->open(b) != 0) {
        free(b);
        return -1;
    }
    *out = b;
    return 0;
}

int olmoe_replay_backend_load(olmoe_replay_backend *b, const olmoe_replay_chunk *c) {
    int V = b->model->cfg.vocab_size;
    if (c->n < 0 || c->n > b->max_tokens)
        return olmoe_errorf("replay chunk of %d rows; this backend takes 0 to %d", c->n, b->max_tokens);
    if (!c->residual == !c->residual_bf16)
        return olmoe_errorf("replay chunk needs residuals in exactly one form");
    if (b->routing == OLMOE_ROUTING_CAPTURED && !c->router_logits)
        return olmoe_errorf("replay with captured routing needs the router logits");
    for (int i = 0; i < c->n; i++)
        if (c->tokens[i] < 0 || c->tokens[i] >= V || c->target[i] >= V)
            return olmoe_errorf("row %d: token id outside the vocabulary [0, %d)", i, V);
    b->chunk = c;
    return b->ops->load(b, c);
}

int olmoe_replay_backend_run(olmoe_replay_backend *b, const olmoe_policy *p, olmoe_replay_out *o) {
    if (!b->chunk) return olmoe_errorf("replay: no chunk loaded");
    if (!p->bound) return olmoe_errorf("policy %s is not bound", p->id);
    if (olmoe_policy_max_experts(p) > b->max_k)
        return olmoe_errorf("policy %s may choose %d experts; the backend was opened for %d", p->id,
                            olmoe_policy_max_experts(p), b->max_k);
    if (b->chunk->n == 0) return 0;
    return b->ops->run(b, p, o);
}

void olmoe_replay_backend_close(olmoe_replay_backend *b) {
    if (!b) return;
    b->ops->close(b);
    free(b);
}
