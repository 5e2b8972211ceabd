/* test_replay_util.h: what the replay tests share: the engine run over a
 * few windows of deterministic token ids (its NLL, argmax, router logits and
 * fp32 attention residuals: the ground truth replay is held against), a
 * policy from a spec, and one chunk replayed through the backend.
 *
 *   tr_run e;
 *   tr_engine(&model, 4, 0, tokens, 3, 40, &e);   // top-4, default route, 3 windows of 40
 *   float *nll = tr_replay(&model, &pol, &e, e.attn, NULL, 0);
 *   tr_run_free(&e);
 */
#ifndef TEST_REPLAY_UTIL_H
#define TEST_REPLAY_UTIL_H

#include "check.h"
#include "common.h"
#include "model.h"
#include "policy.h"
#include "replay.h"
#include "traces.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* the trace metadata of a capture of the model c configures (directory md, checksum hex)
 * under its own top-k on the CPU in fp32; pol receives the policy id */
static inline olmoe_trace_meta tr_meta(const olmoe_config *c, const char *command, const char *md, const char *hex,
                                       char pol[64], int save_residuals) {
    snprintf(pol, 64, "topk(k=%d,norm=model)", c->num_experts_per_tok);
    return (olmoe_trace_meta){.command = command, .config_json = c->json, .model_checksum = hex,
                              .tokenizer_checksum = "", .model_dir = md, .policy = pol, .device = "cpu",
                              .compute_dtype = "float32", .corpus = "", .n_layers = c->num_hidden_layers,
                              .n_experts = c->num_experts, .hidden_size = c->hidden_size,
                              .vocab_size = c->vocab_size, .top_k = c->num_experts_per_tok,
                              .norm_topk_prob = c->norm_topk_prob, .ctx = 40, .logits_dtype = OLMOE_DTYPE_F32,
                              .save_residuals = save_residuals};
}

/* deterministic ids in [2, V) (0 and 1 are EOS and padding in the fixtures) */
static inline int32_t *tr_tokens(int n, int V, unsigned seed) {
    int32_t *t = xmalloc((size_t)n * sizeof *t);
    uint64_t s = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (int i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        t[i] = 2 + (int32_t)((s >> 33) % (uint64_t)(V - 2));
    }
    return t;
}

typedef struct {
    int nw, len, T, L, E, D;
    const int32_t *tokens; /* [T] windows back to back */
    float *nll;            /* [T] */
    int32_t *argmax;       /* [T] */
    float *logits;         /* [T, L, E] router logits */
    float *attn;           /* [T, L, D] fp32 A_l */
    int32_t *target;       /* [T] next token in the window, -1 at its end */
} tr_run;

/* the engine with top-k (k = 0: the config's) or a policy hook */
static inline int tr_engine(olmoe_model *m, int k, olmoe_policy *pol, const int32_t *tokens, int nw,
                            int len, tr_run *r) {
    const olmoe_config *c = &m->cfg;
    memset(r, 0, sizeof *r);
    r->nw = nw, r->len = len, r->T = nw * len, r->tokens = tokens;
    r->L = c->num_hidden_layers, r->E = c->num_experts, r->D = c->hidden_size;
    size_t T = (size_t)r->T;
    r->nll = xmalloc(T * sizeof *r->nll);
    r->argmax = xmalloc(T * sizeof *r->argmax);
    r->logits = xmalloc(T * r->L * r->E * sizeof *r->logits);
    r->attn = xmalloc(T * r->L * r->D * sizeof *r->attn);
    r->target = xmalloc(T * sizeof *r->target);
    olmoe_engine_opts eo = {.device = "cpu", .max_tokens = r->T, .max_ctx = len, .top_k = k};
    if (pol) eo.top_k = olmoe_policy_max_experts(pol), eo.route = olmoe_policy_route_at, eo.route_ctx = pol;
    olmoe_engine *e;
    if (olmoe_engine_open(m, &eo, &e) != 0) return -1;
    olmoe_window_io *io = xcalloc((size_t)nw, sizeof *io);
    for (int b = 0; b < nw; b++) {
        size_t o = (size_t)b * len;
        io[b] = (olmoe_window_io){.n = len, .tokens = tokens + o, .router_logits = r->logits + o * r->L * r->E,
                                  .nll = r->nll + o, .argmax = r->argmax + o,
                                  .attn_residual = r->attn + o * r->L * r->D};
        for (int i = 0; i < len; i++) r->target[o + i] = i + 1 < len ? tokens[o + i + 1] : -1;
    }
    int rc = olmoe_engine_forward(e, io, nw);
    free(io);
    olmoe_engine_close(e);
    return rc;
}

static inline void tr_run_free(tr_run *r) {
    free(r->nll), free(r->argmax), free(r->logits), free(r->attn), free(r->target);
}

/* a bound policy (no nulls) */
static inline int tr_policy(const olmoe_model *m, const char *spec, olmoe_policy *p) {
    const olmoe_config *c = &m->cfg;
    olmoe_policy_model pm = {c->num_hidden_layers, c->num_experts, c->norm_topk_prob, NULL, NULL, NULL, 0};
    if (olmoe_policy_parse(spec, p) != 0) return -1;
    return olmoe_policy_bind(p, &pm);
}

/* replays the engine run's rows with residuals res (fp32, or bf16 when
 * res_bf16) through the CPU backend; captured: route on r->logits. Returns
 * the NLL [T] (caller frees), NULL on error; experts per token into n_exp
 * when given ([T, L]) */
static inline float *tr_replay(olmoe_model *m, const olmoe_policy *p, const tr_run *r, const float *res,
                               const uint16_t *res_bf16, int captured, uint8_t *n_exp, int32_t *argmax) {
    olmoe_replay_backend *b;
    int max_k = olmoe_policy_max_experts(p);
    if (olmoe_replay_backend_open(m, "cpu", r->T, max_k,
                                  captured ? OLMOE_ROUTING_CAPTURED : OLMOE_ROUTING_RECOMPUTE, &b) != 0)
        return NULL;
    float *nll = xmalloc((size_t)r->T * sizeof *nll);
    int32_t *am = argmax ? argmax : xmalloc((size_t)r->T * sizeof *am);
    uint8_t *ne = n_exp ? n_exp : xmalloc((size_t)r->T * r->L);
    int64_t *load = xcalloc((size_t)r->L * r->E, sizeof *load);
    olmoe_replay_chunk ch = {r->T, r->tokens, r->target, res, res_bf16, captured ? r->logits : NULL, 0};
    olmoe_replay_out o = {nll, am, ne, load};
    int rc = olmoe_replay_backend_load(b, &ch);
    if (rc == 0) rc = olmoe_replay_backend_run(b, p, &o);
    olmoe_replay_backend_close(b);
    if (!argmax) free(am);
    if (!n_exp) free(ne);
    free(load);
    if (rc != 0) {
        free(nll);
        return NULL;
    }
    return nll;
}

/* differences of two NLL arrays over the entries finite in b: max |a - b|,
 * max of that / max(1, |b|), mean |a - b|, and the perplexity ratio - 1;
 * returns the number of entries whose NaN pattern differs */
typedef struct {
    double max_abs, max_rel, mean_abs, ppl_rel;
    double nll_rel; /* mean NLL of a / of b - 1: perplexity's log, relative */
} tr_diff;

static inline int tr_compare(const float *a, const float *b, int64_t n, tr_diff *d) {
    memset(d, 0, sizeof *d);
    int bad = 0;
    int64_t m = 0;
    double sa = 0, sb = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i])) bad++;
        if (isnan(a[i]) || isnan(b[i])) continue;
        double x = fabs((double)a[i] - (double)b[i]);
        if (!(x <= d->max_abs)) d->max_abs = x;
        double rel = x / (fabs(b[i]) > 1 ? fabs(b[i]) : 1);
        if (!(rel <= d->max_rel)) d->max_rel = rel;
        d->mean_abs += x, sa += a[i], sb += b[i], m++;
    }
    if (m) d->mean_abs /= (double)m, d->ppl_rel = exp((sa - sb) / (double)m) - 1;
    if (m && sb != 0) d->nll_rel = sa / sb - 1;
    return bad;
}

#endif
