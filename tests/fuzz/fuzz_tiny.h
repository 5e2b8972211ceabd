/* fuzz_tiny.h: the smallest OLMoE checkpoint the fuzz targets bind against
 * (V 8, D 4, I 2, one layer, 2 heads of 2 dims, 1 KV head, 2 experts, top-1):
 * its config.json, its tensors, and a safetensors writer (jansson header, zero
 * data) for targets that need fixed valid files beside the fuzzed one.
 * tests/fuzz/make_seeds.py writes the same model as seed inputs. */
#ifndef OLMOE_FUZZ_TINY_H
#define OLMOE_FUZZ_TINY_H

#include "fuzz.h"

#include <jansson.h>

static const char fuzz_tiny_config[] =
    "{\"model_type\": \"olmoe\", \"vocab_size\": 8, \"hidden_size\": 4,\n"
    " \"intermediate_size\": 2, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,\n"
    " \"num_key_value_heads\": 1, \"num_experts\": 2, \"num_experts_per_tok\": 1,\n"
    " \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"clip_qkv\": null,\n"
    " \"norm_topk_prob\": false, \"tie_word_embeddings\": false,\n"
    " \"max_position_embeddings\": 16, \"eos_token_id\": 0, \"pad_token_id\": 1}\n";

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[3];
} fuzz_tiny_tensor;

/* hub layout (one tensor per expert and projection) */
static const fuzz_tiny_tensor fuzz_tiny_tensors[] = {
    {"lm_head.weight", 2, {8, 4}},
    {"model.embed_tokens.weight", 2, {8, 4}},
    {"model.layers.0.input_layernorm.weight", 1, {4}},
    {"model.layers.0.mlp.experts.0.down_proj.weight", 2, {4, 2}},
    {"model.layers.0.mlp.experts.0.gate_proj.weight", 2, {2, 4}},
    {"model.layers.0.mlp.experts.0.up_proj.weight", 2, {2, 4}},
    {"model.layers.0.mlp.experts.1.down_proj.weight", 2, {4, 2}},
    {"model.layers.0.mlp.experts.1.gate_proj.weight", 2, {2, 4}},
    {"model.layers.0.mlp.experts.1.up_proj.weight", 2, {2, 4}},
    {"model.layers.0.mlp.gate.weight", 2, {2, 4}},
    {"model.layers.0.post_attention_layernorm.weight", 1, {4}},
    {"model.layers.0.self_attn.k_norm.weight", 1, {2}},
    {"model.layers.0.self_attn.k_proj.weight", 2, {2, 4}},
    {"model.layers.0.self_attn.o_proj.weight", 2, {4, 4}},
    {"model.layers.0.self_attn.q_norm.weight", 1, {4}},
    {"model.layers.0.self_attn.q_proj.weight", 2, {4, 4}},
    {"model.layers.0.self_attn.v_proj.weight", 2, {2, 4}},
    {"model.norm.weight", 1, {4}},
};
#define FUZZ_TINY_N_TENSORS ((int)(sizeof fuzz_tiny_tensors / sizeof fuzz_tiny_tensors[0]))

/* dir = fuzz_dir()/name, a model directory holding fuzz_tiny_config as its
 * config.json (aborts on failure: harness) */
static inline void fuzz_tiny_model_dir(char *dir, size_t n, const char *name) {
    char p[400];
    fuzz_path(dir, n, name);
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) abort();
    snprintf(p, sizeof p, "%s/config.json", dir);
    fuzz_write_file(p, fuzz_tiny_config, strlen(fuzz_tiny_config));
}

/* Writes tensors[0..n) as F32 zeros to path (aborts on failure: harness). */
static inline void fuzz_tiny_write(const char *path, const fuzz_tiny_tensor *t, int n) {
    json_t *h = json_object();
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t bytes = 4;
        json_t *shape = json_array();
        for (int d = 0; d < t[i].ndim; d++) {
            json_array_append_new(shape, json_integer(t[i].shape[d]));
            bytes *= (size_t)t[i].shape[d];
        }
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string("F32"));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets",
                            json_pack("[II]", (json_int_t)off, (json_int_t)(off + bytes)));
        json_object_set_new(h, t[i].name, e);
        off += bytes;
    }
    char *text = json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(h);
    if (!text) abort();
    size_t hl = strlen(text);
    size_t total = 8 + hl + off;
    unsigned char *buf = calloc(1, total);
    if (!buf) abort();
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, text, hl);
    fuzz_write_file(path, buf, total);
    free(buf);
    free(text);
}

#endif
