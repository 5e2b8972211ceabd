/* config.c: config.json into an olmoe_config. Every field the forward pass uses
 * is checked here, once, so the engine can trust the numbers; a field that is
 * missing or odd is named in the message together with the file. Defaults are
 * those of transformers' config classes only where HF itself fills a field in
 * (num_key_value_heads, head_dim, clip_qkv, norm_topk_prob, tie_word_embeddings,
 * decoder_sparse_step, mlp_only_layers); Qwen2-MoE's q/k/v biases follow the
 * checkpoint when qkv_bias is absent. model_type picks the
 * architecture (model.h says what differs); a field of a part the engine does
 * not have (sliding windows, rope scaling, other biases) is refused by name. */
#include "model.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* bounds that keep every product of two dimensions far from overflow */
#define DIM_MAX (1L << 24)

static int get_int(json_t *root, const char *name, const char *key, int required, long lo, long hi,
                   long dflt, long *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return olmoe_errorf("%s: missing field '%s'", name, key);
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v)) return olmoe_errorf("%s: field '%s' must be an integer", name, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return olmoe_errorf("%s: field '%s' is %lld, must be in [%ld, %ld]", name, key, (long long)x,
                            lo, hi);
    *out = (long)x;
    return 0;
}

static int get_number(json_t *v, const char *name, const char *key, double *out) {
    if (!json_is_number(v)) return olmoe_errorf("%s: field '%s' must be a number", name, key);
    double x = json_number_value(v);
    if (!isfinite(x)) return olmoe_errorf("%s: field '%s' is not finite", name, key);
    *out = x;
    return 0;
}

static int get_bool(json_t *root, const char *name, const char *key, int dflt, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v)) return olmoe_errorf("%s: field '%s' must be true or false", name, key);
    *out = json_is_true(v);
    return 0;
}

/* eos/pad ids: an integer, null, or a list of integers (the first is kept) */
static int get_token_id(json_t *root, const char *name, const char *key, long *out) {
    json_t *v = json_object_get(root, key);
    *out = -1;
    if (!v || json_is_null(v)) return 0;
    if (json_is_array(v)) {
        if (json_array_size(v) == 0) return 0;
        v = json_array_get(v, 0);
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= DIM_MAX)
        return olmoe_errorf("%s: field '%s' must be a token id, a list of them, or null", name, key);
    *out = (long)json_integer_value(v);
    return 0;
}

/* rope_type of a rope_parameters / rope_scaling object must be "default" */
static int check_rope_type(json_t *obj, const char *name, const char *key) {
    if (!obj || json_is_null(obj)) return 0;
    if (!json_is_object(obj)) return olmoe_errorf("%s: field '%s' must be an object or null", name, key);
    json_t *t = json_object_get(obj, "rope_type");
    if (!t) t = json_object_get(obj, "type");
    if (!t || json_is_null(t)) return 0;
    if (!json_is_string(t)) return olmoe_errorf("%s: field '%s.rope_type' must be a string", name, key);
    if (strcmp(json_string_value(t), "default") != 0)
        return olmoe_errorf("%s: %s.rope_type '%s' is not supported (only \"default\")", name, key,
                            json_string_value(t));
    return 0;
}

static int parse_rope(json_t *root, const char *name, olmoe_config *c) {
    json_t *params = json_object_get(root, "rope_parameters");
    json_t *scaling = json_object_get(root, "rope_scaling");
    if (check_rope_type(params, name, "rope_parameters") != 0) return -1;
    if (check_rope_type(scaling, name, "rope_scaling") != 0) return -1;
    json_t *theta = json_object_get(root, "rope_theta");
    const char *key = "rope_theta";
    if ((!theta || json_is_null(theta)) && params && json_is_object(params)) {
        theta = json_object_get(params, "rope_theta");
        key = "rope_parameters.rope_theta";
    }
    if (!theta || json_is_null(theta))
        return olmoe_errorf("%s: missing field 'rope_theta' (or 'rope_parameters.rope_theta')", name);
    if (get_number(theta, name, key, &c->rope_theta) != 0) return -1;
    if (!(c->rope_theta > 1)) return olmoe_errorf("%s: field '%s' must be > 1", name, key);
    return 0;
}

static const char *const arch_names[OLMOE_ARCH_COUNT] = {"olmoe", "qwen3_moe", "mixtral",
                                                          "qwen2_moe"};

const char *olmoe_arch_name(olmoe_arch a) {
    return a >= 0 && a < OLMOE_ARCH_COUNT ? arch_names[a] : "unknown";
}

static int parse_arch(json_t *root, const char *name, olmoe_config *c) {
    json_t *mt = json_object_get(root, "model_type");
    if (!mt) return olmoe_errorf("%s: missing field 'model_type'", name);
    if (json_is_string(mt))
        for (int a = 0; a < OLMOE_ARCH_COUNT; a++)
            if (strcmp(json_string_value(mt), arch_names[a]) == 0) {
                c->arch = (olmoe_arch)a;
                return 0;
            }
    return olmoe_errorf("%s: model_type %s%s%s is not supported (supported: olmoe, qwen3_moe, "
                        "mixtral, qwen2_moe)",
                        name, json_is_string(mt) ? "\"" : "",
                        json_is_string(mt) ? json_string_value(mt) : "not a string",
                        json_is_string(mt) ? "\"" : "");
}

/* a field that must be false (or absent) because the engine has no such part */
static int refuse_true(json_t *root, const char *name, const char *key, const char *why) {
    int on = 0;
    if (get_bool(root, name, key, 0, &on) != 0) return -1;
    if (on) return olmoe_errorf("%s: %s true is not supported (%s)", name, key, why);
    return 0;
}

/* Qwen's dense layers: layer l has experts unless it is in mlp_only_layers or
 * (l + 1) is not a multiple of decoder_sparse_step */
static int parse_dense_layers(json_t *root, const char *name, olmoe_config *c) {
    long step;
    if (get_int(root, name, "decoder_sparse_step", 0, 1, 4096, 1, &step) != 0) return -1;
    for (int l = 0; l < c->num_hidden_layers; l++) c->dense[l] = (l + 1) % step != 0;
    json_t *only = json_object_get(root, "mlp_only_layers");
    if (only && !json_is_null(only)) {
        if (!json_is_array(only))
            return olmoe_errorf("%s: field 'mlp_only_layers' must be a list of layer indices", name);
        size_t i;
        json_t *v;
        json_array_foreach(only, i, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) >= c->num_hidden_layers)
                return olmoe_errorf("%s: mlp_only_layers[%zu] is not a layer index in [0, %d)", name,
                                    i, c->num_hidden_layers);
            c->dense[json_integer_value(v)] = 1;
        }
    }
    c->n_dense_layers = 0;
    for (int l = 0; l < c->num_hidden_layers; l++) c->n_dense_layers += c->dense[l];
    if (c->n_dense_layers == c->num_hidden_layers)
        return olmoe_errorf("%s: every layer is dense (mlp_only_layers, decoder_sparse_step): "
                            "there is no routing to study",
                            name);
    return 0;
}

/* the expert count's field: Mixtral's num_local_experts, num_experts elsewhere;
 * transformers 5 saves Qwen3-MoE's under Mixtral's name, the hub's checkpoints
 * under num_experts, so Qwen3-MoE reads either */
static const char *experts_key(json_t *root, const olmoe_config *c) {
    if (c->arch == OLMOE_ARCH_MIXTRAL) return "num_local_experts";
    if (c->arch == OLMOE_ARCH_QWEN3_MOE && !json_object_get(root, "num_experts") &&
        json_object_get(root, "num_local_experts"))
        return "num_local_experts";
    return "num_experts";
}

/* the per-architecture fields: expert counts and widths, attention parts, routing */
static int parse_arch_fields(json_t *root, const char *name, olmoe_config *c) {
    long v;
    int qwen = c->arch == OLMOE_ARCH_QWEN3_MOE || c->arch == OLMOE_ARCH_QWEN2_MOE;
    if (get_int(root, name, experts_key(root, c), 1, 1, 1L << 16, 0, &v) != 0) return -1;
    c->num_experts = (int)v;
    if (get_int(root, name, qwen ? "moe_intermediate_size" : "intermediate_size", 1, 1, 1L << 18, 0,
                &v) != 0)
        return -1;
    c->intermediate_size = (int)v;
    c->qk_norm = c->arch == OLMOE_ARCH_OLMOE       ? OLMOE_QK_NORM_WHOLE
                 : c->arch == OLMOE_ARCH_QWEN3_MOE ? OLMOE_QK_NORM_HEAD
                                                   : OLMOE_QK_NORM_NONE;
    if (c->arch == OLMOE_ARCH_QWEN2_MOE) {
        /* Qwen2-MoE's q, k and v projections have biases; a config without the
         * field leaves it to the checkpoint (-1) */
        if (get_bool(root, name, "qkv_bias", -1, &c->qkv_bias) != 0) return -1;
        if (get_int(root, name, "shared_expert_intermediate_size", 1, 1, 1L << 18, 0, &v) != 0)
            return -1;
        c->shared_intermediate_size = (int)v;
    } else if (refuse_true(root, name, "attention_bias", "only Qwen2-MoE's q/k/v biases are") != 0) {
        return -1;
    }
    if (qwen) {
        if (refuse_true(root, name, "use_sliding_window", "sliding-window attention") != 0 ||
            parse_dense_layers(root, name, c) != 0)
            return -1;
        if (c->n_dense_layers) {
            if (get_int(root, name, "intermediate_size", 1, 1, 1L << 18, 0, &v) != 0) return -1;
            c->dense_intermediate_size = (int)v;
        }
    }
    if (c->arch == OLMOE_ARCH_MIXTRAL) {
        json_t *sw = json_object_get(root, "sliding_window");
        if (sw && !json_is_null(sw))
            return olmoe_errorf("%s: sliding_window is not supported (only null)", name);
        c->norm_topk_prob = 1; /* softmax over the selected logits */
    } else if (get_bool(root, name, "norm_topk_prob", 0, &c->norm_topk_prob) != 0) {
        return -1;
    }
    return 0;
}

static int parse_root(json_t *root, const char *name, olmoe_config *c) {
    if (!json_is_object(root)) return olmoe_errorf("%s: not a JSON object", name);
    if (parse_arch(root, name, c) != 0) return -1;

    long v;
#define INT_FIELD(field, lo, hi)                                                \
    do {                                                                        \
        if (get_int(root, name, #field, 1, (lo), (hi), 0, &v) != 0) return -1;  \
        c->field = (int)v;                                                      \
    } while (0)
    INT_FIELD(vocab_size, 2, DIM_MAX);
    INT_FIELD(hidden_size, 1, 1L << 16);
    INT_FIELD(num_hidden_layers, 1, OLMOE_CONFIG_MAX_LAYERS);
    INT_FIELD(num_attention_heads, 1, 4096);
#undef INT_FIELD
    if (parse_arch_fields(root, name, c) != 0) return -1;
    if (get_int(root, name, "num_experts_per_tok", 1, 1, c->num_experts, 0, &v) != 0) return -1;
    c->num_experts_per_tok = (int)v;
    if (get_int(root, name, "num_key_value_heads", 0, 1, c->num_attention_heads,
                c->num_attention_heads, &v) != 0)
        return -1;
    c->num_key_value_heads = (int)v;
    if (c->num_attention_heads % c->num_key_value_heads != 0)
        return olmoe_errorf("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                            name, c->num_attention_heads, c->num_key_value_heads);

    json_t *hd = json_object_get(root, "head_dim");
    if (!hd || json_is_null(hd)) {
        if (c->hidden_size % c->num_attention_heads != 0)
            return olmoe_errorf("%s: hidden_size %d is not a multiple of num_attention_heads %d "
                                "and head_dim is not given",
                                name, c->hidden_size, c->num_attention_heads);
        c->head_dim = c->hidden_size / c->num_attention_heads;
    } else {
        if (get_int(root, name, "head_dim", 1, 2, 1L << 14, 0, &v) != 0) return -1;
        c->head_dim = (int)v;
    }
    if (c->head_dim % 2 != 0)
        return olmoe_errorf("%s: head_dim %d is odd; rotary embeddings need an even one", name,
                            c->head_dim);
    if ((long)c->num_attention_heads * c->head_dim > (1L << 18))
        return olmoe_errorf("%s: num_attention_heads x head_dim is too large", name);

    json_t *eps = json_object_get(root, "rms_norm_eps");
    if (!eps || json_is_null(eps)) return olmoe_errorf("%s: missing field 'rms_norm_eps'", name);
    if (get_number(eps, name, "rms_norm_eps", &c->rms_norm_eps) != 0) return -1;
    if (!(c->rms_norm_eps > 0 && c->rms_norm_eps < 1))
        return olmoe_errorf("%s: field 'rms_norm_eps' must be in (0, 1)", name);

    if (parse_rope(root, name, c) != 0) return -1;

    json_t *clip = json_object_get(root, "clip_qkv");
    c->has_clip_qkv = 0;
    c->clip_qkv = 0;
    if (clip && !json_is_null(clip) && c->arch != OLMOE_ARCH_OLMOE)
        return olmoe_errorf("%s: clip_qkv is an OLMoE field; %s has none", name,
                            olmoe_arch_name(c->arch));
    if (clip && !json_is_null(clip)) {
        if (get_number(clip, name, "clip_qkv", &c->clip_qkv) != 0) return -1;
        if (!(c->clip_qkv > 0)) return olmoe_errorf("%s: field 'clip_qkv' must be > 0 or null", name);
        c->has_clip_qkv = 1;
    }
    if (get_bool(root, name, "tie_word_embeddings", 0, &c->tie_word_embeddings) != 0) return -1;
    json_t *act = json_object_get(root, "hidden_act");
    if (act && !json_is_null(act) &&
        (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0))
        return olmoe_errorf("%s: hidden_act must be \"silu\"", name);
    if (get_int(root, name, "max_position_embeddings", 0, 1, 1L << 30, 0, &v) != 0) return -1;
    c->max_position_embeddings = v;
    if (get_token_id(root, name, "eos_token_id", &c->eos_token_id) != 0) return -1;
    if (get_token_id(root, name, "pad_token_id", &c->pad_token_id) != 0) return -1;
    return 0;
}

int olmoe_config_parse(const char *text, size_t len, const char *name, olmoe_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return olmoe_errorf("%s: bad JSON at line %d column %d: %s", name, jerr.line, jerr.column,
                            jerr.text);
    int rc = parse_root(root, name, cfg);
    json_decref(root);
    if (rc != 0) return -1;
    cfg->json = xmalloc(len + 1);
    memcpy(cfg->json, text, len);
    cfg->json[len] = '\0';
    return 0;
}

int olmoe_config_load(const char *path, olmoe_config *cfg) {
    char *text;
    size_t len;
    memset(cfg, 0, sizeof *cfg);
    if (olmoe_read_file(path, &text, &len) != 0) return -1;
    int rc = olmoe_config_parse(text, len, path, cfg);
    free(text);
    return rc;
}

int olmoe_config_ffn_max(const olmoe_config *c) {
    int m = c->intermediate_size;
    if (c->dense_intermediate_size > m) m = c->dense_intermediate_size;
    if (c->shared_intermediate_size > m) m = c->shared_intermediate_size;
    return m;
}

void olmoe_config_free(olmoe_config *cfg) {
    free(cfg->json);
    cfg->json = NULL;
}
