/* test_capture_tiny.h: writes tiny random checkpoints of OLMoE, Qwen3-MoE,
 * Mixtral or Qwen2-MoE (config.json + safetensors, hub or fused expert layout,
 * F32/BF16/F16, optionally sharded with an index; Qwen's dense layers, Qwen2's
 * q/k/v biases and shared expert) for the loader and forward tests, keeping the weights (as
 * rounded to the stored dtype) so a test can compute with them independently.
 *
 *   tt_cfg c = tt_default_cfg();
 *   tt_model tm;
 *   tt_model_make(&tm, &c, 42);
 *   tt_model_write(&tm, "/tmp/x/model");   // dies on I/O errors
 *   ... tm.layers[l].wq ...                 // [Hq*hd, D] floats
 *   tt_model_free(&tm);
 *
 * The safetensors writer is written here from the format description (8-byte
 * length, JSON header built with jansson, data), independent of the loader.
 */
#ifndef TEST_CAPTURE_TINY_H
#define TEST_CAPTURE_TINY_H

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "traces.h" /* bf16/f16 rounding */

enum { TT_F32 = 0, TT_BF16 = 1, TT_F16 = 2 };
static const char *const tt_dtype_names[] = {"F32", "BF16", "F16"};

typedef struct {
    int V, D, I, L, H, KVH, hd, E, k;
    double eps, theta, clip; /* clip 0 = null */
    int norm, tie, fused, shards, dtype;
    int rope_params; /* theta under rope_parameters (transformers v5 style) */
    int arch;        /* TT_OLMOE, TT_QWEN3, TT_MIXTRAL, TT_QWEN2 (model.h's order) */
    unsigned dense;  /* bit l: layer l is dense (Qwen's mlp_only_layers) */
    int DI, SI;      /* dense MLP and shared expert widths (Qwen) */
} tt_cfg;

enum { TT_OLMOE = 0, TT_QWEN3 = 1, TT_MIXTRAL = 2, TT_QWEN2 = 3 };
static const char *const tt_arch_names[] = {"olmoe", "qwen3_moe", "mixtral", "qwen2_moe"};
#define TT_DENSE(c, l) ((c)->dense >> (l) & 1u)

static inline tt_cfg tt_default_cfg(void) {
    tt_cfg c = {.V = 97, .D = 32, .I = 24, .L = 2, .H = 4, .KVH = 4, .hd = 8, .E = 8, .k = 2,
                .eps = 1e-5, .theta = 10000, .clip = 0, .norm = 0, .tie = 0, .fused = 0,
                .shards = 1, .dtype = TT_F32, .rope_params = 0};
    return c;
}

typedef struct {
    float *input_norm, *wq, *wk, *wv, *wo, *q_norm, *k_norm, *post_norm, *router;
    float **gate, **up, **down; /* [E] of [I, D], [I, D], [D, I]; NULL in a dense layer */
    float *q_bias, *k_bias, *v_bias;  /* Qwen2-MoE, else NULL */
    float *mlp_gate, *mlp_up, *mlp_down; /* the dense MLP or the shared expert, else NULL */
    float *shared_gate;               /* [D] Qwen2-MoE's sigmoid gate, else NULL */
} tt_layer;

typedef struct {
    tt_cfg c;
    float *embed, *final_norm, *lm_head; /* lm_head == embed when tied */
    tt_layer *layers;
} tt_model;

/* a named tensor to write */
typedef struct {
    char name[128];
    int dtype, ndim;
    int64_t shape[3];
    const float *data; /* NULL: data_raw */
    const void *data_raw;
    size_t raw_bytes;
} tt_tensor;

static uint64_t tt_rng_state = 1;
static inline double tt_uniform(void) { /* splitmix64 -> [0, 1) */
    uint64_t z = (tt_rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

/* stored dtype rounding, so the kept floats are exactly what the file holds */
static inline float tt_round(float x, int dtype) {
    if (dtype == TT_BF16) return olmoe_bf16_to_f32(olmoe_bf16_from_f32(x));
    if (dtype == TT_F16) return olmoe_f16_to_f32(olmoe_f16_from_f32(x));
    return x;
}

static inline float *tt_rand(size_t n, double center, double scale, int dtype) {
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = tt_round((float)(center + scale * (2 * tt_uniform() - 1)), dtype);
    return p;
}

static inline void tt_model_make(tt_model *m, const tt_cfg *c, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->c = *c;
    tt_rng_state = seed;
    size_t V = c->V, D = c->D, I = c->I, QD = (size_t)c->H * c->hd, KD = (size_t)c->KVH * c->hd;
    int t = c->dtype;
    /* scales well above HF's 0.02 init so logits and routing are far from uniform */
    m->embed = tt_rand(V * D, 0, 1.0, t);
    m->final_norm = tt_rand(D, 1, 0.3, t);
    m->lm_head = c->tie ? m->embed : tt_rand(V * D, 0, 1.5 / sqrt((double)D), t);
    m->layers = xcalloc(c->L, sizeof *m->layers);
    for (int l = 0; l < c->L; l++) {
        tt_layer *L = &m->layers[l];
        double sd = 1.7 / sqrt((double)D);
        L->input_norm = tt_rand(D, 1, 0.3, t);
        L->wq = tt_rand(QD * D, 0, sd, t);
        L->wk = tt_rand(KD * D, 0, sd, t);
        L->wv = tt_rand(KD * D, 0, sd, t);
        L->wo = tt_rand(D * QD, 0, 1.7 / sqrt((double)QD), t);
        int qwen = c->arch == TT_QWEN3 || c->arch == TT_QWEN2;
        if (c->arch == TT_OLMOE) {
            L->q_norm = tt_rand(QD, 1, 0.3, t);
            L->k_norm = tt_rand(KD, 1, 0.3, t);
        } else if (c->arch == TT_QWEN3) { /* one weight per head dimension, shared by the heads */
            L->q_norm = tt_rand(c->hd, 1, 0.3, t);
            L->k_norm = tt_rand(c->hd, 1, 0.3, t);
        }
        if (c->arch == TT_QWEN2) {
            L->q_bias = tt_rand(QD, 0, 0.5, t);
            L->k_bias = tt_rand(KD, 0, 0.5, t);
            L->v_bias = tt_rand(KD, 0, 0.5, t);
        }
        L->post_norm = tt_rand(D, 1, 0.3, t);
        if (qwen && TT_DENSE(c, l)) {
            size_t F = c->DI;
            L->mlp_gate = tt_rand(F * D, 0, sd, t);
            L->mlp_up = tt_rand(F * D, 0, sd, t);
            L->mlp_down = tt_rand(D * F, 0, 1.7 / sqrt((double)F), t);
            continue;
        }
        L->router = tt_rand((size_t)c->E * D, 0, 3.0 / sqrt((double)D), t);
        L->gate = xcalloc(c->E, sizeof *L->gate);
        L->up = xcalloc(c->E, sizeof *L->up);
        L->down = xcalloc(c->E, sizeof *L->down);
        for (int e = 0; e < c->E; e++) {
            L->gate[e] = tt_rand(I * D, 0, sd, t);
            L->up[e] = tt_rand(I * D, 0, sd, t);
            L->down[e] = tt_rand(D * I, 0, 1.7 / sqrt((double)I), t);
        }
        if (c->arch == TT_QWEN2) {
            size_t F = c->SI;
            L->mlp_gate = tt_rand(F * D, 0, sd, t);
            L->mlp_up = tt_rand(F * D, 0, sd, t);
            L->mlp_down = tt_rand(D * F, 0, 1.7 / sqrt((double)F), t);
            L->shared_gate = tt_rand(D, 0, 3.0 / sqrt((double)D), t);
        }
    }
}

static inline void tt_model_free(tt_model *m) {
    for (int l = 0; l < m->c.L; l++) {
        tt_layer *L = &m->layers[l];
        free(L->input_norm), free(L->wq), free(L->wk), free(L->wv), free(L->wo);
        free(L->q_norm), free(L->k_norm), free(L->post_norm), free(L->router);
        for (int e = 0; L->gate && e < m->c.E; e++) free(L->gate[e]), free(L->up[e]), free(L->down[e]);
        free(L->gate), free(L->up), free(L->down);
        free(L->q_bias), free(L->k_bias), free(L->v_bias);
        free(L->mlp_gate), free(L->mlp_up), free(L->mlp_down), free(L->shared_gate);
    }
    free(m->layers);
    if (m->lm_head != m->embed) free(m->lm_head);
    free(m->embed);
    free(m->final_norm);
}

static inline size_t tt_numel(const tt_tensor *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

static inline size_t tt_nbytes(const tt_tensor *t) {
    if (!t->data) return t->raw_bytes;
    return tt_numel(t) * (t->dtype == TT_F32 ? 4 : 2);
}

static inline void tt_put(FILE *f, const tt_tensor *t) {
    if (!t->data) {
        fwrite(t->data_raw, 1, t->raw_bytes, f);
        return;
    }
    size_t n = tt_numel(t);
    for (size_t i = 0; i < n; i++) {
        if (t->dtype == TT_F32) {
            fwrite(&t->data[i], 4, 1, f);
        } else {
            uint16_t b = t->dtype == TT_BF16 ? olmoe_bf16_from_f32(t->data[i]) : olmoe_f16_from_f32(t->data[i]);
            fwrite(&b, 2, 1, f);
        }
    }
}

/* writes a raw safetensors file: the header text as given, then data */
static inline void tt_write_raw(const char *path, uint64_t hlen, const char *header, size_t header_bytes,
                                const void *data, size_t data_bytes) {
    FILE *f = fopen(path, "wb");
    if (!f) die("%s: %s", path, strerror(errno));
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(hlen >> (8 * i));
    fwrite(lb, 1, 8, f);
    fwrite(header, 1, header_bytes, f);
    if (data_bytes) fwrite(data, 1, data_bytes, f);
    if (fclose(f) != 0) die("%s: write error", path);
}

/* a well-formed safetensors file of n tensors, in the order given */
static inline void tt_write_safetensors(const char *path, const tt_tensor *ts, int n) {
    json_t *h = json_object();
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < ts[i].ndim; d++) json_array_append_new(shape, json_integer(ts[i].shape[d]));
        size_t nb = tt_nbytes(&ts[i]);
        json_object_set_new(h, ts[i].name,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", tt_dtype_names[ts[i].dtype], "shape",
                                      shape, "data_offsets", (json_int_t)off, (json_int_t)(off + nb)));
        off += nb;
    }
    char *text = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    size_t hl = strlen(text), padded = (hl + 7) & ~(size_t)7;
    char *hdr = xmalloc(padded);
    memcpy(hdr, text, hl);
    memset(hdr + hl, ' ', padded - hl);
    free(text);
    FILE *f = fopen(path, "wb");
    if (!f) die("%s: %s", path, strerror(errno));
    unsigned char lb[8];
    for (int i = 0; i < 8; i++) lb[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    fwrite(lb, 1, 8, f);
    fwrite(hdr, 1, padded, f);
    for (int i = 0; i < n; i++) tt_put(f, &ts[i]);
    if (fclose(f) != 0) die("%s: write error", path);
    free(hdr);
}

static inline void tt_mkdir(const char *dir) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) die("%s: %s", dir, strerror(errno));
}

static inline void tt_write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) die("%s: %s", path, strerror(errno));
    fputs(text, f);
    if (fclose(f) != 0) die("%s: write error", path);
}

static inline void tt_write_config(const tt_model *m, const char *dir) {
    const tt_cfg *c = &m->c;
    json_t *j = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:b, s:i, s:s}",
                          "model_type", tt_arch_names[c->arch], "vocab_size", c->V,
                          "hidden_size", c->D, "intermediate_size", c->I, "num_hidden_layers", c->L,
                          "num_attention_heads", c->H, "num_key_value_heads", c->KVH,
                          "num_experts_per_tok", c->k, "rms_norm_eps", c->eps,
                          "tie_word_embeddings", c->tie, "max_position_embeddings", 4096,
                          "hidden_act", "silu");
    json_object_set_new(j, c->arch == TT_MIXTRAL ? "num_local_experts" : "num_experts", json_integer(c->E));
    if (c->arch != TT_MIXTRAL) json_object_set_new(j, "norm_topk_prob", json_boolean(c->norm));
    if (c->arch == TT_QWEN3 || c->arch == TT_QWEN2) {
        json_t *only = json_array();
        for (int l = 0; l < c->L; l++)
            if (TT_DENSE(c, l)) json_array_append_new(only, json_integer(l));
        json_object_set_new(j, "mlp_only_layers", only);
        json_object_set_new(j, "decoder_sparse_step", json_integer(1));
        json_object_set_new(j, "moe_intermediate_size", json_integer(c->I));
        json_object_set_new(j, "intermediate_size", json_integer(c->DI ? c->DI : 4 * c->I));
        json_object_set_new(j, "use_sliding_window", json_false());
    }
    if (c->arch == TT_QWEN2) {
        json_object_set_new(j, "shared_expert_intermediate_size", json_integer(c->SI));
        json_object_set_new(j, "qkv_bias", json_true());
    }
    if (c->arch == TT_MIXTRAL) json_object_set_new(j, "sliding_window", json_null());
    if (c->hd != c->D / c->H) json_object_set_new(j, "head_dim", json_integer(c->hd));
    if (c->arch == TT_OLMOE)
        json_object_set_new(j, "clip_qkv", c->clip > 0 ? json_real(c->clip) : json_null());
    if (c->rope_params)
        json_object_set_new(j, "rope_parameters",
                            json_pack("{s:f, s:s}", "rope_theta", c->theta, "rope_type", "default"));
    else
        json_object_set_new(j, "rope_theta", json_real(c->theta));
    char *path = olmoe_path_join(dir, "config.json");
    if (json_dump_file(j, path, JSON_INDENT(2)) != 0) die("%s: cannot write", path);
    free(path);
    json_decref(j);
}

/* every tensor of the model in checkpoint form; *n set; caller frees (data borrowed) */
static inline tt_tensor *tt_model_tensors(const tt_model *m, int *n_out) {
    const tt_cfg *c = &m->c;
    int cap = 8 + c->L * (20 + 3 * c->E), n = 0;
    tt_tensor *ts = xcalloc(cap, sizeof *ts);
    int64_t V = c->V, D = c->D, I = c->I, E = c->E, QD = (int64_t)c->H * c->hd, KD = (int64_t)c->KVH * c->hd;
#define TT_ADD(nd, s0, s1, s2, ptr, ...)                                              \
    do {                                                                              \
        tt_tensor *t_ = &ts[n++];                                                     \
        snprintf(t_->name, sizeof t_->name, __VA_ARGS__);                             \
        t_->dtype = c->dtype, t_->ndim = (nd), t_->shape[0] = (s0), t_->shape[1] = (s1); \
        t_->shape[2] = (s2), t_->data = (ptr);                                        \
    } while (0)
    TT_ADD(2, V, D, 0, m->embed, "model.embed_tokens.weight");
    for (int l = 0; l < c->L; l++) {
        const tt_layer *L = &m->layers[l];
        const char *p = "model.layers";
        TT_ADD(1, D, 0, 0, L->input_norm, "%s.%d.input_layernorm.weight", p, l);
        TT_ADD(2, QD, D, 0, L->wq, "%s.%d.self_attn.q_proj.weight", p, l);
        TT_ADD(2, KD, D, 0, L->wk, "%s.%d.self_attn.k_proj.weight", p, l);
        TT_ADD(2, KD, D, 0, L->wv, "%s.%d.self_attn.v_proj.weight", p, l);
        TT_ADD(2, D, QD, 0, L->wo, "%s.%d.self_attn.o_proj.weight", p, l);
        int64_t NQ = c->arch == TT_QWEN3 ? c->hd : QD, NK = c->arch == TT_QWEN3 ? c->hd : KD;
        if (L->q_norm) TT_ADD(1, NQ, 0, 0, L->q_norm, "%s.%d.self_attn.q_norm.weight", p, l);
        if (L->k_norm) TT_ADD(1, NK, 0, 0, L->k_norm, "%s.%d.self_attn.k_norm.weight", p, l);
        if (L->q_bias) {
            TT_ADD(1, QD, 0, 0, L->q_bias, "%s.%d.self_attn.q_proj.bias", p, l);
            TT_ADD(1, KD, 0, 0, L->k_bias, "%s.%d.self_attn.k_proj.bias", p, l);
            TT_ADD(1, KD, 0, 0, L->v_bias, "%s.%d.self_attn.v_proj.bias", p, l);
        }
        TT_ADD(1, D, 0, 0, L->post_norm, "%s.%d.post_attention_layernorm.weight", p, l);
        /* Mixtral's hub layout names the block block_sparse_moe and its experts w1, w3, w2 */
        int mx = c->arch == TT_MIXTRAL;
        const char *blk = mx && !c->fused ? "block_sparse_moe" : "mlp";
        const char *gn = mx ? "w1" : "gate_proj", *un = mx ? "w3" : "up_proj", *dn_ = mx ? "w2" : "down_proj";
        if (L->mlp_gate) { /* the dense MLP, or the shared expert */
            int64_t F = L->router ? c->SI : c->DI;
            const char *sub = L->router ? ".shared_expert" : "";
            TT_ADD(2, F, D, 0, L->mlp_gate, "%s.%d.mlp%s.gate_proj.weight", p, l, sub);
            TT_ADD(2, F, D, 0, L->mlp_up, "%s.%d.mlp%s.up_proj.weight", p, l, sub);
            TT_ADD(2, D, F, 0, L->mlp_down, "%s.%d.mlp%s.down_proj.weight", p, l, sub);
        }
        if (L->shared_gate) TT_ADD(2, 1, D, 0, L->shared_gate, "%s.%d.mlp.shared_expert_gate.weight", p, l);
        if (!L->router) continue;
        TT_ADD(2, E, D, 0, L->router, "%s.%d.%s.gate.weight", p, l, blk);
        if (c->fused) {
            /* gate rows [0, I) then up rows [I, 2I) per expert */
            float *gu = xmalloc((size_t)E * 2 * I * D * sizeof *gu), *dn = xmalloc((size_t)E * D * I * sizeof *dn);
            for (int e = 0; e < E; e++) {
                memcpy(gu + (size_t)e * 2 * I * D, L->gate[e], (size_t)I * D * sizeof *gu);
                memcpy(gu + ((size_t)e * 2 + 1) * I * D, L->up[e], (size_t)I * D * sizeof *gu);
                memcpy(dn + (size_t)e * D * I, L->down[e], (size_t)D * I * sizeof *dn);
            }
            TT_ADD(3, E, 2 * I, D, gu, "%s.%d.mlp.experts.gate_up_proj", p, l);
            TT_ADD(3, E, D, I, dn, "%s.%d.mlp.experts.down_proj", p, l);
        } else {
            for (int e = 0; e < E; e++) {
                TT_ADD(2, I, D, 0, L->gate[e], "%s.%d.%s.experts.%d.%s.weight", p, l, blk, e, gn);
                TT_ADD(2, I, D, 0, L->up[e], "%s.%d.%s.experts.%d.%s.weight", p, l, blk, e, un);
                TT_ADD(2, D, I, 0, L->down[e], "%s.%d.%s.experts.%d.%s.weight", p, l, blk, e, dn_);
            }
        }
    }
    TT_ADD(1, D, 0, 0, m->final_norm, "model.norm.weight");
    if (!c->tie) TT_ADD(2, V, D, 0, m->lm_head, "lm_head.weight");
#undef TT_ADD
    *n_out = n;
    return ts;
}

/* frees what tt_model_tensors allocated for the fused layout */
static inline void tt_tensors_free(const tt_model *m, tt_tensor *ts, int n) {
    if (m->c.fused)
        for (int i = 0; i < n; i++)
            if (strstr(ts[i].name, "gate_up_proj") || strstr(ts[i].name, "experts.down_proj"))
                free((void *)ts[i].data);
    free(ts);
}

/* config.json and model.safetensors, or c.shards shards plus the index */
static inline void tt_model_write(const tt_model *m, const char *dir) {
    tt_mkdir(dir);
    tt_write_config(m, dir);
    int n;
    tt_tensor *ts = tt_model_tensors(m, &n);
    if (m->c.shards <= 1) {
        char *p = olmoe_path_join(dir, "model.safetensors");
        tt_write_safetensors(p, ts, n);
        free(p);
    } else {
        int S = m->c.shards;
        json_t *wm = json_object();
        for (int s = 0; s < S; s++) {
            char name[64];
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, S);
            int lo = (int)((long)n * s / S), hi = (int)((long)n * (s + 1) / S);
            for (int i = lo; i < hi; i++) json_object_set_new(wm, ts[i].name, json_string(name));
            char *p = olmoe_path_join(dir, name);
            tt_write_safetensors(p, ts + lo, hi - lo);
            free(p);
        }
        json_t *idx = json_pack("{s:{s:i}, s:o}", "metadata", "total_size", 0, "weight_map", wm);
        char *p = olmoe_path_join(dir, "model.safetensors.index.json");
        if (json_dump_file(idx, p, JSON_INDENT(2)) != 0) die("%s: cannot write", p);
        free(p);
        json_decref(idx);
    }
    tt_tensors_free(m, ts, n);
}

/* rm -r of a directory holding plain files only */
static inline void tt_rmdir(const char *dir) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

/* a fresh scratch directory under $TMPDIR */
static inline char *tt_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/olmoe-capture-test.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl)) die("mkdtemp: %s", strerror(errno));
    return xstrdup(tmpl);
}

#endif
