/* test_analyze_util.h: hand-made traces for the analysis tests, written with
 * the traces/ writer, and the straightforward reference computations the
 * analyses are checked against (selection by repeated argmax, counting over
 * whole arrays, Spearman by sorting).
 *
 * The fixture "a" (N = 600 tokens, 3 layers, 8 experts, top-2, vocabulary 50)
 * is built so that some answers are known by construction:
 *   layer 0: even positions select experts 0 and 1 (logits 5, 4.5), odd ones
 *            two of experts 2..7 (0 and 1 get -5): P(1|0) = P(0|1) = 1;
 *   layer 1: a token of group g selects experts 2g, 2g+1; a token in no group
 *            6 and 7: each group has its own experts (NMI 1);
 *   layer 2: token ids below 25 select experts v%8 and (v+3)%8, always.
 * Documents: [0,100) g0, [100,200) g1, [200,300) g2, [300,400) g0,
 * [400,450) g1, [450,500) no group; positions 500..599 are in no document.
 * "b" holds the same tokens and logits except layer 1 (logits rotated by one
 * expert: its sets overlap a's by exactly half) and, at position 123, layer 2
 * (negated: disjoint sets, Spearman -1). */
#ifndef TEST_ANALYZE_UTIL_H
#define TEST_ANALYZE_UTIL_H

#include "common.h"
#include "traces.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FX_N 600
#define FX_L 3
#define FX_E 8
#define FX_K 2
#define FX_V 50
#define FX_CTX 100
#define FX_WORST 123

typedef struct {
    int64_t n;
    int L, E, k, V, ctx;
    int32_t *tokens;            /* [n] */
    float *logits;              /* [n, L, E] */
    olmoe_trace_document *docs; /* [n_docs] */
    int64_t n_docs;
    const char *const *groups;  /* [n_groups] */
    int64_t n_groups;
    const char *model_dir;
} fixture;

static uint32_t fx_rand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static const char *const fx_group_names[3] = {"news", "fiction", "science"};

/* the group of position p in fixture a (-1: none) */
static int fx_group(int64_t p) {
    if (p < 100) return 0;
    if (p < 200) return 1;
    if (p < 300) return 2;
    if (p < 400) return 0;
    if (p < 450) return 1;
    return -1;
}

static void fixture_free(fixture *f) {
    free(f->tokens);
    free(f->logits);
    free(f->docs);
    memset(f, 0, sizeof *f);
}

static void fixture_a(fixture *f) {
    memset(f, 0, sizeof *f);
    f->n = FX_N, f->L = FX_L, f->E = FX_E, f->k = FX_K, f->V = FX_V, f->ctx = FX_CTX;
    f->tokens = xmalloc(FX_N * sizeof *f->tokens);
    f->logits = xmalloc((size_t)FX_N * FX_L * FX_E * sizeof *f->logits);
    uint32_t s = 12345;
    for (int64_t p = 0; p < FX_N; p++) {
        int v = (int)(fx_rand(&s) % FX_V);
        f->tokens[p] = v;
        float *l0 = f->logits + ((size_t)p * FX_L + 0) * FX_E;
        float *l1 = l0 + FX_E, *l2 = l1 + FX_E;
        /* quantised random logits: exact ties happen and break the same way everywhere */
        for (int e = 0; e < FX_E; e++) {
            l0[e] = (float)(fx_rand(&s) % 256) / 256.0f;
            l1[e] = (float)(fx_rand(&s) % 256) / 256.0f;
            l2[e] = (float)(fx_rand(&s) % 1024) / 256.0f;
        }
        if (p % 2 == 0)
            l0[0] = 5.0f, l0[1] = 4.5f;
        else
            l0[0] = l0[1] = -5.0f;
        int g = fx_group(p);
        int e1 = g >= 0 ? 2 * g : 6;
        l1[e1] = 5.0f, l1[e1 + 1] = 4.5f;
        if (v < 25) l2[v % 8] = 5.0f, l2[(v + 3) % 8] = 4.5f;
    }
    static olmoe_trace_document docs[6] = {{0, 100, 0},   {100, 100, 1}, {200, 100, 2},
                                           {300, 100, 0}, {400, 50, 1},  {450, 50, -1}};
    f->docs = xmalloc(sizeof docs);
    memcpy(f->docs, docs, sizeof docs);
    f->n_docs = 6;
    f->groups = fx_group_names;
    f->n_groups = 3;
}

/* b: a with layer 1 rotated (b[e] = a[(e + 7) % 8]) and layer 2 negated at FX_WORST */
static void fixture_b(fixture *f) {
    fixture_a(f);
    for (int64_t p = 0; p < FX_N; p++) {
        float *l1 = f->logits + ((size_t)p * FX_L + 1) * FX_E, tmp[FX_E];
        for (int e = 0; e < FX_E; e++) tmp[e] = l1[(e + 7) % FX_E];
        memcpy(l1, tmp, sizeof tmp);
    }
    float *l2 = f->logits + ((size_t)FX_WORST * FX_L + 2) * FX_E;
    for (int e = 0; e < FX_E; e++) l2[e] = -l2[e];
}

/* Writes f as a complete trace: windows of ctx tokens, nll 1 (NaN at each
 * window's last position), argmax 0. */
static int fixture_write(const fixture *f, const char *path) {
    char cfg[256];
    snprintf(cfg, sizeof cfg,
             "{\"model_type\": \"olmoe\", \"num_hidden_layers\": %d, \"num_experts\": %d, "
             "\"vocab_size\": %d, \"num_experts_per_tok\": %d}",
             f->L, f->E, f->V, f->k);
    char pol[64];
    snprintf(pol, sizeof pol, "topk(k=%d,norm=model)", f->k);
    olmoe_trace_meta m = {.command = "test_analyze",
                          .config_json = cfg,
                          .model_checksum = "00112233445566778899aabbccddeeff",
                          .tokenizer_checksum = "",
                          .model_dir = f->model_dir ? f->model_dir : "",
                          .policy = pol,
                          .device = "cpu",
                          .compute_dtype = "float32",
                          .corpus = "",
                          .n_layers = f->L,
                          .n_experts = f->E,
                          .hidden_size = 16,
                          .vocab_size = f->V,
                          .top_k = f->k,
                          .ctx = f->ctx,
                          .logits_dtype = OLMOE_DTYPE_F32,
                          .chunk_rows = 64};
    olmoe_trace *t = olmoe_trace_create(path, &m);
    if (!t) return -1;
    if (f->n_groups && olmoe_trace_add_groups(t, f->groups, f->n_groups) != 0) goto fail;
    if (f->n_docs && olmoe_trace_add_documents(t, f->docs, f->n_docs) != 0) goto fail;
    float *nll = xmalloc((size_t)f->ctx * sizeof *nll);
    int32_t *am = xcalloc((size_t)f->ctx, sizeof *am);
    for (int64_t st = 0; st < f->n; st += f->ctx) {
        int64_t len = f->n - st < f->ctx ? f->n - st : f->ctx;
        for (int64_t i = 0; i < len; i++) nll[i] = i == len - 1 ? NAN : 1.0f;
        olmoe_trace_window w = {st, len, 0, 0}; /* stored_end 0: start + length */
        olmoe_trace_rows r = {.tokens = f->tokens + st,
                              .router_logits = f->logits + (size_t)st * f->L * f->E,
                              .nll = nll,
                              .argmax = am};
        if (olmoe_trace_append_window(t, &w, &r) != 0) {
            free(nll);
            free(am);
            goto fail;
        }
    }
    free(nll);
    free(am);
    return olmoe_trace_close(t);
fail:
    olmoe_trace_abort(t);
    return -1;
}

/* A synthetic trace of n tokens (L layers, E experts, top-k, vocabulary V),
 * written window by window (ctx 2048): memory stays small for large n.
 * Logits are pseudo-random with a per-expert bias so that loads differ. */
static int synth_big_write(const char *path, int64_t n, int L, int E, int k, int V) {
    const int ctx = 2048;
    char cfg[256];
    snprintf(cfg, sizeof cfg, "{\"model_type\": \"olmoe\", \"num_hidden_layers\": %d}", L);
    char pol[64];
    snprintf(pol, sizeof pol, "topk(k=%d,norm=model)", k);
    olmoe_trace_meta m = {.command = "test_analyze --synth",
                          .config_json = cfg,
                          .model_checksum = "00112233445566778899aabbccddeeff",
                          .tokenizer_checksum = "",
                          .model_dir = "",
                          .policy = pol,
                          .device = "cpu",
                          .compute_dtype = "float32",
                          .corpus = "",
                          .n_layers = L,
                          .n_experts = E,
                          .hidden_size = 16,
                          .vocab_size = V,
                          .top_k = k,
                          .ctx = ctx,
                          .logits_dtype = OLMOE_DTYPE_F32};
    olmoe_trace *t = olmoe_trace_create(path, &m);
    if (!t) return -1;
    const char *groups[4] = {"g0", "g1", "g2", "g3"};
    if (olmoe_trace_add_groups(t, groups, 4) != 0) goto fail;
    int32_t *tok = xmalloc(ctx * sizeof *tok), *am = xcalloc(ctx, sizeof *am);
    float *nll = xmalloc(ctx * sizeof *nll), *lg = xmalloc((size_t)ctx * L * E * sizeof *lg);
    uint32_t s = 777;
    int rc = 0;
    for (int64_t st = 0; st < n && rc == 0; st += ctx) {
        int64_t len = n - st < ctx ? n - st : ctx;
        olmoe_trace_document d = {st, len, (int32_t)((st / ctx) % 4)};
        for (int64_t i = 0; i < len; i++) {
            tok[i] = (int32_t)(fx_rand(&s) % (uint32_t)V);
            nll[i] = i == len - 1 ? NAN : 2.0f;
            for (int j = 0; j < L * E; j++)
                lg[(size_t)i * L * E + j] =
                    (float)(fx_rand(&s) % 65536) / 8192.0f + (float)((j % E) % 7) * 0.3f;
        }
        olmoe_trace_window w = {st, len, 0, 0}; /* stored_end 0: start + length */
        olmoe_trace_rows r = {.tokens = tok, .router_logits = lg, .nll = nll, .argmax = am};
        rc = olmoe_trace_add_documents(t, &d, 1) || olmoe_trace_append_window(t, &w, &r);
    }
    free(tok), free(am), free(nll), free(lg);
    if (rc != 0) goto fail;
    return olmoe_trace_close(t);
fail:
    olmoe_trace_abort(t);
    return -1;
}

/* ---- references ---- */

/* the k largest of r[0..E) by repeated argmax, ties toward the lower index */
static void ref_topk(const float *r, int E, int k, int *out) {
    unsigned char used[256] = {0};
    for (int i = 0; i < k; i++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (!used[e] && (best < 0 || r[e] > r[best])) best = e;
        used[best] = 1;
        out[i] = best;
    }
}

/* average ranks by sorting (insertion sort of indices), then Pearson */
static double ref_spearman(const float *a, const float *b, int n) {
    double ra[256], rb[256];
    const float *v[2] = {a, b};
    double *rk[2] = {ra, rb};
    for (int w = 0; w < 2; w++) {
        int idx[256];
        for (int i = 0; i < n; i++) idx[i] = i;
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && v[w][idx[j - 1]] > v[w][idx[j]]; j--) {
                int t = idx[j];
                idx[j] = idx[j - 1], idx[j - 1] = t;
            }
        for (int i = 0; i < n;) {
            int j = i;
            while (j + 1 < n && v[w][idx[j + 1]] == v[w][idx[i]]) j++;
            for (int x = i; x <= j; x++) rk[w][idx[x]] = (i + j) / 2.0 + 1;
            i = j + 1;
        }
    }
    double ma = 0, mb = 0;
    for (int i = 0; i < n; i++) ma += ra[i], mb += rb[i];
    ma /= n, mb /= n;
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++)
        sab += (ra[i] - ma) * (rb[i] - mb), saa += (ra[i] - ma) * (ra[i] - ma),
            sbb += (rb[i] - mb) * (rb[i] - mb);
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

#endif
