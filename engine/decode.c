/* decode.c: incremental decoding of one sequence (model.h,
 * olmoe_engine_decode_*): the checks every decoder relies on, the choice of
 * decoder for the engine's device, and the fallback that has no cache at
 * all: every step runs olmoe_engine_forward over the whole sequence so far
 * and keeps its last position. That fallback is also the reference the KV
 * caches are tested against (OLMOE_DECODE_RECOMPUTE). */
#include "decode_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef OLMOE_HAVE_CUDA
#include "cuda_engine.h"
#endif


int olmoe_engine_max_experts(const olmoe_engine *e) { return e->top_k; }

/* ---- the recomputing decoder ---- */

typedef struct {
    int32_t *seq;         /* [cap] the tokens so far */
    float *router_logits; /* [cap, L, E] */
    int32_t *argmax;      /* [cap] */
} recompute_state;

static int rc_open(olmoe_decode *d) {
    const olmoe_config *c = &d->e->model->cfg;
    size_t cap = (size_t)d->cap, LE = (size_t)c->num_hidden_layers * c->num_experts;
    recompute_state *r = xcalloc(1, sizeof *r);
    r->seq = xmalloc(xmul(cap, sizeof *r->seq));
    r->router_logits = xmalloc(xmul(xmul(cap, LE), sizeof(float)));
    r->argmax = xmalloc(xmul(cap, sizeof *r->argmax));
    d->impl = r;
    return 0;
}

static void rc_close(olmoe_decode *d) {
    recompute_state *r = d->impl;
    if (!r) return;
    free(r->seq);
    free(r->router_logits);
    free(r->argmax);
    free(r);
    d->impl = NULL;
}

/* The choices are the hook's on the last position's router logits: policies
 * keep no state between calls, so this is what the forward pass chose (on
 * the CUDA engine, whose default top-k routes on the GPU, up to the last bit
 * of the weights). */
static int rc_step(olmoe_decode *d, const int32_t *tokens, int n, olmoe_decode_io *io) {
    recompute_state *r = d->impl;
    olmoe_engine *e = d->e;
    const olmoe_config *c = &e->model->cfg;
    int L = c->num_hidden_layers, E = c->num_experts, V = c->vocab_size, K = e->top_k;
    int len = d->len + n;
    if (len > e->max_tokens)
        return olmoe_errorf("recomputing decoder: %d positions do not fit one forward call of at "
                            "most %d tokens",
                            len, e->max_tokens);
    memcpy(r->seq + d->len, tokens, (size_t)n * sizeof *tokens);
    float *logits = io->logits ? xmalloc(xmul(xmul((size_t)len, V), sizeof(float))) : NULL;
    olmoe_window_io w = {.n = len, .tokens = r->seq, .router_logits = r->router_logits,
                         .logits = logits, .argmax = r->argmax};
    if (olmoe_engine_forward(e, &w, 1) != 0) {
        free(logits);
        return -1;
    }
    io->argmax = r->argmax[len - 1];
    if (logits) memcpy(io->logits, logits + (size_t)(len - 1) * V, (size_t)V * sizeof(float));
    free(logits);
    const float *rl = r->router_logits + (size_t)(len - 1) * L * E;
    if (io->router_logits) memcpy(io->router_logits, rl, (size_t)L * E * sizeof(float));
    if (!io->n_experts && !io->experts && !io->weights) return 0;
    int *ex = xmalloc(xmul((size_t)K, sizeof *ex)), rc = 0;
    float *wt = xmalloc(xmul((size_t)K, sizeof *wt));
    for (int l = 0; l < L && rc == 0; l++) {
        int k = e->route(e->route_ctx, l, -1, rl + (size_t)l * E, E, ex, wt);
        if (k < 0) {
            rc = olmoe_error_prefix("layer %d: routing", l);
        } else if (k < 1 || k > K) {
            rc = olmoe_errorf("layer %d: the routing policy chose %d experts (allowed 1 to %d)", l, k, K);
        } else {
            if (io->n_experts) io->n_experts[l] = k;
            for (int j = 0; j < k; j++) {
                if (io->experts) io->experts[(size_t)l * K + j] = ex[j];
                if (io->weights) io->weights[(size_t)l * K + j] = wt[j];
            }
        }
    }
    free(ex);
    free(wt);
    return rc;
}

static const olmoe_decode_ops recompute_ops = {"recompute", rc_open, rc_step, rc_close};

/* ---- the public functions ---- */

int olmoe_engine_decode_begin(olmoe_engine *e, int mode, olmoe_decode **out) {
    if (mode != OLMOE_DECODE_AUTO && mode != OLMOE_DECODE_RECOMPUTE)
        return olmoe_errorf("decode mode %d is not auto (0) or recompute (1)", mode);
    const olmoe_decode_ops *ops = &recompute_ops;
    if (mode == OLMOE_DECODE_AUTO && e->ops == &olmoe_engine_cpu_ops) ops = &olmoe_decode_cpu_ops;
#ifdef OLMOE_HAVE_CUDA
    if (mode == OLMOE_DECODE_AUTO && e->ops == &olmoe_engine_cuda_ops) ops = &olmoe_decode_cuda_ops;
#endif
    olmoe_decode *d = xcalloc(1, sizeof *d);
    d->ops = ops;
    d->e = e;
    d->cap = e->max_ctx;
    if (ops->open(d) != 0) {
        ops->close(d); /* what open got before it failed */
        free(d);
        return -1;
    }
    *out = d;
    return 0;
}

int olmoe_engine_decode_step(olmoe_decode *d, const int32_t *tokens, int n, olmoe_decode_io *io) {
    olmoe_engine *e = d->e;
    const olmoe_config *c = &e->model->cfg;
    int V = c->vocab_size, L = c->num_hidden_layers, K = e->top_k;
    if (n < 1 || n > e->max_tokens)
        return olmoe_errorf("decode step of %d tokens; this engine takes 1 to %d", n, e->max_tokens);
    if (n > d->cap - d->len)
        return olmoe_errorf("decode step of %d tokens after %d: the sequence would pass the "
                            "engine's %d positions (max_ctx)",
                            n, d->len, d->cap);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return olmoe_errorf("token id %d is outside the vocabulary [0, %d)", tokens[i], V);
    if (io->n_experts)
        for (int l = 0; l < L; l++) io->n_experts[l] = 0;
    for (size_t i = 0; i < (size_t)L * K; i++) {
        if (io->experts) io->experts[i] = -1;
        if (io->weights) io->weights[i] = 0;
    }
    if (d->ops->step(d, tokens, n, io) != 0) return -1;
    d->len += n;
    return 0;
}

int olmoe_engine_decode_length(const olmoe_decode *d) { return d->len; }
int olmoe_engine_decode_cached(const olmoe_decode *d) { return d->ops != &recompute_ops; }

void olmoe_engine_decode_end(olmoe_decode *d) {
    if (!d) return;
    d->ops->close(d);
    free(d);
}
