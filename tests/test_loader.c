/* test_loader.c: config.json and safetensors loading (capture/config.c,
 * safetensors.c, model.c) on checkpoints written by the test itself: good ones
 * in every layout and dtype (weights compared with what was written), and
 * corrupt ones, each of which must fail with its own message. */
#include "check.h"
#include "model.h"
#include "ops_cpu.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test_capture_tiny.h"

static char *scratch;
static int dir_no;

static char *new_dir(void) {
    char name[32];
    snprintf(name, sizeof name, "m%d", dir_no++);
    char *d = olmoe_path_join(scratch, name);
    tt_mkdir(d);
    return d;
}

static int same_floats(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0;
}

/* every fp32 weight of the loaded model equals what the test wrote */
static void check_weights(const olmoe_model *m, const tt_model *tm, const char *what) {
    const tt_cfg *c = &tm->c;
    size_t V = c->V, D = c->D, I = c->I, E = c->E, QD = (size_t)c->H * c->hd, KD = (size_t)c->KVH * c->hd;
    CHECK(same_floats(m->embed_f32, tm->embed, V * D), "%s: embed", what);
    CHECK(same_floats(m->final_norm_f32, tm->final_norm, D), "%s: final norm", what);
    CHECK(same_floats(m->lm_head_f32, tm->lm_head, V * D), "%s: lm_head", what);
    for (int l = 0; l < c->L; l++) {
        const olmoe_layer_f32 *F = &m->layers_f32[l];
        const tt_layer *T = &tm->layers[l];
        CHECK(same_floats(F->input_norm, T->input_norm, D), "%s: layer %d input norm", what, l);
        CHECK(same_floats(F->wq, T->wq, QD * D) && same_floats(F->wk, T->wk, KD * D) &&
                  same_floats(F->wv, T->wv, KD * D) && same_floats(F->wo, T->wo, D * QD),
              "%s: layer %d attention", what, l);
        CHECK(same_floats(F->q_norm, T->q_norm, QD) && same_floats(F->k_norm, T->k_norm, KD),
              "%s: layer %d q/k norm", what, l);
        CHECK(same_floats(F->post_norm, T->post_norm, D) && same_floats(F->router, T->router, E * D),
              "%s: layer %d post norm/router", what, l);
        for (size_t e = 0; e < E; e++)
            CHECK(same_floats(F->gate[e], T->gate[e], I * D) && same_floats(F->up[e], T->up[e], I * D) &&
                      same_floats(F->down[e], T->down[e], D * I),
                  "%s: layer %d expert %zu", what, l, e);
    }
}

/* the checksum is XXH3-128 of the files' bytes in name order, computed here
 * from the files read back whole */
static void check_checksum(olmoe_model *m, const char *dir, int shards) {
    size_t total = 0, cap = 1 << 20;
    unsigned char *all = xmalloc(cap);
    for (int s = 0; s < (shards > 1 ? shards : 1); s++) {
        char name[64];
        if (shards > 1)
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, shards);
        else
            snprintf(name, sizeof name, "model.safetensors");
        char *p = olmoe_path_join(dir, name), *data;
        size_t len;
        if (olmoe_read_file(p, &data, &len) != 0) die("%s", olmoe_error());
        while (total + len > cap) all = xrealloc(all, cap *= 2);
        memcpy(all + total, data, len);
        total += len;
        free(data);
        free(p);
    }
    olmoe_hash want, got, again;
    olmoe_hash_bytes(all, total, &want);
    free(all);
    CHECK(olmoe_model_checksum(m, &got) == 0, "%s", olmoe_error());
    CHECK(olmoe_model_checksum(m, &again) == 0 && strcmp(got.hex, again.hex) == 0, "cached checksum");
    CHECK(strcmp(got.hex, want.hex) == 0, "checksum %s, want %s", got.hex, want.hex);
    CHECK(olmoe_model_file_bytes(m) == total, "file bytes %zu vs %zu", olmoe_model_file_bytes(m), total);
}

static void good_case(tt_cfg c, const char *what) {
    tt_model tm;
    tt_model_make(&tm, &c, 7 + dir_no);
    char *dir = new_dir();
    tt_model_write(&tm, dir);
    olmoe_model m;
    int rc = olmoe_model_open(dir, &m);
    CHECK(rc == 0, "%s: %s", what, olmoe_error());
    if (rc == 0) {
        CHECK(m.cfg.hidden_size == c.D && m.cfg.num_experts == c.E && m.cfg.num_hidden_layers == c.L &&
                  m.cfg.head_dim == c.hd && m.cfg.num_key_value_heads == c.KVH && m.cfg.vocab_size == c.V &&
                  m.cfg.num_experts_per_tok == c.k && m.cfg.norm_topk_prob == c.norm &&
                  m.cfg.tie_word_embeddings == c.tie && m.cfg.has_clip_qkv == (c.clip > 0) &&
                  m.cfg.rope_theta == c.theta && m.cfg.rms_norm_eps == c.eps,
              "%s: config fields", what);
        CHECK(m.layers[0].fused == c.fused, "%s: layout", what);
        CHECK(olmoe_model_load_f32(&m) == 0, "%s: %s", what, olmoe_error());
        CHECK(olmoe_model_load_f32(&m) == 0, "%s: second load_f32", what);
        check_weights(&m, &tm, what);
        if (c.tie) CHECK(m.lm_head_f32 == m.embed_f32, "%s: tied lm_head is the embedding", what);
        check_checksum(&m, dir, c.shards);
        olmoe_model_close(&m);
    }
    free(dir);
    tt_model_free(&tm);
}

static void test_good(void) {
    tt_cfg c = tt_default_cfg();
    good_case(c, "hub f32");
    c.dtype = TT_BF16, c.fused = 1;
    good_case(c, "fused bf16");
    c = tt_default_cfg();
    c.dtype = TT_F16, c.shards = 3, c.rope_params = 1, c.tie = 1;
    good_case(c, "sharded f16 tied");
    c = tt_default_cfg();
    c.KVH = 2, c.hd = 6, c.clip = 2.5, c.norm = 1, c.fused = 1, c.shards = 2;
    good_case(c, "gqa head_dim 6 fused sharded");
}

static void test_f16_exact(void) {
    /* every half-precision bit pattern converts exactly (NaNs stay NaN) */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = olmoe_f16_to_f32((uint16_t)h), b;
        uint16_t hh = (uint16_t)h;
        olmoe_convert_to_f32(&hh, OLMOE_ST_F16, 1, &b);
        if (!(memcmp(&a, &b, 4) == 0 || (isnan(a) && isnan(b)))) bad++;
    }
    CHECK(bad == 0, "%d half values differ from traces' conversion", bad);
}

/* opens dir, which must fail with msg in the message */
static void expect_fail(const char *dir, const char *msg, const char *what) {
    olmoe_model m;
    int rc = olmoe_model_open(dir, &m);
    if (rc == 0) olmoe_model_close(&m);
    CHECK(rc != 0 && strstr(olmoe_error(), msg), "%s: rc %d, message '%s', want '%s'", what, rc,
          rc ? olmoe_error() : "", msg);
}

/* a model directory written from a (modified) tensor list */
static char *dir_with_tensors(const tt_model *tm, tt_tensor *ts, int n) {
    char *dir = new_dir();
    tt_write_config(tm, dir);
    char *p = olmoe_path_join(dir, "model.safetensors");
    tt_write_safetensors(p, ts, n);
    free(p);
    return dir;
}

/* a model directory written from the tensor list, which must fail with msg */
static void expect_fail_tensors(const tt_model *tm, tt_tensor *ts, int n, const char *msg, const char *what) {
    char *d = dir_with_tensors(tm, ts, n);
    expect_fail(d, msg, what);
    free(d);
}

/* a model directory whose model.safetensors has this exact header and data */
static char *dir_with_raw(const tt_model *tm, const char *header, uint64_t hlen, size_t data_bytes) {
    char *dir = new_dir();
    tt_write_config(tm, dir);
    char *p = olmoe_path_join(dir, "model.safetensors");
    void *data = xcalloc(1, data_bytes + 1);
    tt_write_raw(p, hlen, header, strlen(header), data, data_bytes);
    free(data);
    free(p);
    return dir;
}

static void test_corrupt_files(void) {
    tt_cfg c = tt_default_cfg();
    tt_model tm;
    tt_model_make(&tm, &c, 99);
    int n;
    tt_tensor *ts = tt_model_tensors(&tm, &n);
    char *d;

    /* a good file, then truncated inside the header and inside the data */
    d = dir_with_tensors(&tm, ts, n);
    char *p = olmoe_path_join(d, "model.safetensors");
    struct stat st;
    stat(p, &st);
    CHECK(truncate(p, st.st_size - 5) == 0, "truncate");
    expect_fail(d, "outside the data area", "truncated data");
    CHECK(truncate(p, 40) == 0, "truncate");
    expect_fail(d, "runs past the end of the file", "truncated header");
    CHECK(truncate(p, 5) == 0, "truncate");
    expect_fail(d, "too short for a safetensors file", "5-byte file");
    free(p);
    free(d);

    /* each header (with that many data bytes) fails with its message */
    static const struct {
        const char *header;
        size_t data_bytes;
        const char *msg, *what;
    } raw[] = {
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}",
         8, "model.safetensors: bad header JSON", "bad JSON"},
        {"[1, 2]",
         0, "header is not a JSON object", "array header"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}",
         8, "tensor 'a' has data_offsets [0, 16] outside the data area (8 bytes)", "offsets outside"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]}}",
         8, "tensor 'a' holds 8 bytes, its shape and dtype need 12", "shape vs bytes"},
        {"{\"a\": {\"dtype\": \"I64\", \"shape\": [1], \"data_offsets\": [0, 8]}}",
         8, "model.safetensors: tensor 'a' has dtype I64; only F32, BF16 and F16 are supported", "bad dtype"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
         12, "tensors 'a' and 'b' overlap", "overlap"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
         " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
         8, "duplicate", "duplicate name"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}",
         4, "tensor 'a' has a bad shape entry 0", "negative dim"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4]}}",
         4, "tensor 'a' needs data_offsets [begin, end]", "one offset"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}",
         8, "outside the data area", "reversed offsets"},
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
        d = dir_with_raw(&tm, raw[i].header, strlen(raw[i].header), raw[i].data_bytes);
        expect_fail(d, raw[i].msg, raw[i].what);
        free(d);
    }

    tt_tensors_free(&tm, ts, n);
    tt_model_free(&tm);
}

static int find_tensor(tt_tensor *ts, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(ts[i].name, name) == 0) return i;
    die("test: no tensor %s", name);
}

static void test_binding_errors(void) {
    tt_cfg c = tt_default_cfg();
    tt_model tm;
    tt_model_make(&tm, &c, 5);
    int n;
    tt_tensor *ts = tt_model_tensors(&tm, &n);

    /* wrong shape (same bytes): the message the style guide quotes */
    int g = find_tensor(ts, n, "model.layers.1.mlp.gate.weight");
    ts[g].shape[0] = 2 * c.E, ts[g].shape[1] = c.D / 2;
    expect_fail_tensors(&tm, ts, n,
                        "model.safetensors: tensor 'model.layers.1.mlp.gate.weight' has shape [16, 16], config says [8, 32]",
                        "wrong shape");
    ts[g].shape[0] = c.E, ts[g].shape[1] = c.D;

    /* missing: drop one tensor */
    int kn = find_tensor(ts, n, "model.layers.0.self_attn.k_norm.weight");
    tt_tensor save = ts[kn];
    ts[kn] = ts[n - 1];
    expect_fail_tensors(&tm, ts, n - 1,
                        "model.safetensors: missing tensor 'model.layers.0.self_attn.k_norm.weight'",
                        "missing");
    ts[kn] = save;

    /* unexpected: one more */
    tt_tensor *more = xmalloc((n + 1) * sizeof *more);
    memcpy(more, ts, n * sizeof *ts);
    more[n] = ts[find_tensor(ts, n, "model.norm.weight")];
    snprintf(more[n].name, sizeof more[n].name, "model.layers.0.mlp.shared_expert.weight");
    expect_fail_tensors(&tm, more, n + 1,
                        "model.safetensors: unexpected tensor 'model.layers.0.mlp.shared_expert.weight'",
                        "unexpected");
    /* an expert beyond num_experts is unexpected too */
    more[n] = ts[find_tensor(ts, n, "model.layers.0.mlp.experts.0.up_proj.weight")];
    snprintf(more[n].name, sizeof more[n].name, "model.layers.0.mlp.experts.8.up_proj.weight");
    expect_fail_tensors(&tm, more, n + 1,
                        "unexpected tensor 'model.layers.0.mlp.experts.8.up_proj.weight'",
                        "extra expert");
    free(more);

    /* lm_head missing while not tied */
    int lm = find_tensor(ts, n, "lm_head.weight");
    save = ts[lm];
    ts[lm] = ts[n - 1];
    ts[n - 1] = save;
    expect_fail_tensors(&tm, ts, n - 1, "missing tensor 'lm_head.weight'", "no lm_head");

    /* a fused layer with the wrong expert count */
    tt_cfg cf = c;
    cf.fused = 1;
    tt_model tf;
    tt_model_make(&tf, &cf, 6);
    int nf;
    tt_tensor *tsf = tt_model_tensors(&tf, &nf);
    int gu = find_tensor(tsf, nf, "model.layers.0.mlp.experts.gate_up_proj");
    tsf[gu].shape[0] = c.E / 2, tsf[gu].shape[1] = 4 * c.I;
    expect_fail_tensors(&tf, tsf, nf,
                        "tensor 'model.layers.0.mlp.experts.gate_up_proj' has shape [4, 96, 32], config says [8, 48, 32]",
                        "fused shape");
    tt_tensors_free(&tf, tsf, nf);
    tt_model_free(&tf);

    tt_tensors_free(&tm, ts, n);
    tt_model_free(&tm);
}

/* the index orig with model.norm.weight mapped to shard (removed when NULL)
 * written to idx: opening dir must fail with msg */
static void index_case(const json_t *orig, const char *idx, const char *dir, const char *shard, const char *msg,
                       const char *what) {
    json_t *j = json_deep_copy(orig);
    if (shard)
        json_object_set_new(json_object_get(j, "weight_map"), "model.norm.weight", json_string(shard));
    else
        json_object_del(json_object_get(j, "weight_map"), "model.norm.weight");
    json_dump_file(j, idx, 0);
    json_decref(j);
    expect_fail(dir, msg, what);
}

static void test_shards(void) {
    tt_cfg c = tt_default_cfg();
    c.shards = 2;
    tt_model tm;
    tt_model_make(&tm, &c, 11);
    char *d = new_dir();
    tt_model_write(&tm, d);
    char *idx = olmoe_path_join(d, "model.safetensors.index.json"), *text;
    size_t len;
    if (olmoe_read_file(idx, &text, &len) != 0) die("%s", olmoe_error());
    json_t *orig = json_loads(text, 0, NULL);
    free(text);

    /* a tensor mapped to the wrong shard */
    index_case(orig, idx, d, "model-00001-of-00002.safetensors",
               "model.safetensors.index.json: tensor 'model.norm.weight' is listed in "
               "model-00001-of-00002.safetensors, which does not hold it",
               "wrong shard");
    /* a tensor the index does not list */
    index_case(orig, idx, d, NULL,
               "model-00002-of-00002.safetensors: tensor 'model.norm.weight' is not listed in "
               "model.safetensors.index.json",
               "unlisted");
    /* a shard that is not there */
    index_case(orig, idx, d, "gone.safetensors", "gone.safetensors: No such file", "missing shard");
    /* a shard name that leaves the directory */
    index_case(orig, idx, d, "../x.safetensors", "is not a file name in the model directory", "path escape");
    tt_write_text(idx, "{\"weight_map\": 3}");
    expect_fail(d, "no weight_map object", "no weight_map");
    tt_write_text(idx, "{\"weight_map\": {");
    expect_fail(d, "model.safetensors.index.json: bad JSON", "bad index JSON");
    unlink(idx);
    expect_fail(d, "no model.safetensors or model.safetensors.index.json", "no weights");
    json_decref(orig);
    free(idx);
    free(d);
    tt_model_free(&tm);

    char *nodir = olmoe_path_join(scratch, "does-not-exist");
    expect_fail(nodir, "does-not-exist: No such file or directory", "no directory");
    free(nodir);
}

/* config.json text with one field replaced (or removed when value is NULL) */
static void config_case_arch(int arch, const char *key, const char *value, const char *msg) {
    tt_cfg c = tt_default_cfg();
    c.arch = arch;
    if (arch == TT_QWEN2) c.SI = 16;
    tt_model tm;
    memset(&tm, 0, sizeof tm);
    tm.c = c;
    char *d = new_dir();
    tt_write_config(&tm, d);
    char *p = olmoe_path_join(d, "config.json");
    json_t *j = json_load_file(p, 0, NULL);
    if (value)
        json_object_set_new(j, key, json_loads(value, JSON_DECODE_ANY, NULL));
    else
        json_object_del(j, key);
    json_dump_file(j, p, 0);
    json_decref(j);
    olmoe_config cfg;
    int rc = olmoe_config_load(p, &cfg);
    if (rc == 0) olmoe_config_free(&cfg);
    CHECK(rc != 0 && strstr(olmoe_error(), msg) && strstr(olmoe_error(), "config.json"),
          "%s=%s: rc %d, message '%s', want '%s'", key, value ? value : "(removed)", rc, rc ? olmoe_error() : "", msg);
    free(p);
    free(d);
}

static void config_case(const char *key, const char *value, const char *msg) {
    config_case_arch(TT_OLMOE, key, value, msg);
}

/* each architecture's parts the engine does not have are refused by name */
static void test_config_arch(void) {
    config_case_arch(TT_QWEN3, "use_sliding_window", "true", "use_sliding_window true is not supported");
    config_case_arch(TT_QWEN3, "attention_bias", "true", "attention_bias true is not supported");
    config_case_arch(TT_QWEN3, "clip_qkv", "8.0", "clip_qkv is an OLMoE field; qwen3_moe has none");
    config_case_arch(TT_QWEN3, "mlp_only_layers", "[0, 2]", "mlp_only_layers[1] is not a layer index");
    config_case_arch(TT_QWEN3, "mlp_only_layers", "[0, 1]", "every layer is dense");
    config_case_arch(TT_QWEN3, "moe_intermediate_size", NULL, "missing field 'moe_intermediate_size'");
    config_case_arch(TT_QWEN3, "rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4.0}",
                     "rope_scaling.rope_type 'yarn' is not supported");
    config_case_arch(TT_MIXTRAL, "sliding_window", "4096", "sliding_window is not supported");
    config_case_arch(TT_MIXTRAL, "num_local_experts", NULL, "missing field 'num_local_experts'");
    config_case_arch(TT_QWEN3, "num_experts", NULL, "missing field 'num_experts'");
    config_case_arch(TT_QWEN2, "shared_expert_intermediate_size", NULL,
                     "missing field 'shared_expert_intermediate_size'");
    config_case_arch(TT_QWEN2, "decoder_sparse_step", "0", "field 'decoder_sparse_step' is 0");
}

static void test_config(void) {
    config_case("model_type", "\"llama\"",
                "model_type \"llama\" is not supported (supported: olmoe, qwen3_moe, mixtral, qwen2_moe)");
    config_case("model_type", NULL, "missing field 'model_type'");
    config_case("hidden_size", NULL, "missing field 'hidden_size'");
    config_case("hidden_size", "32.5", "field 'hidden_size' must be an integer");
    config_case("vocab_size", "0", "field 'vocab_size' is 0, must be in");
    config_case("num_experts_per_tok", "9", "field 'num_experts_per_tok' is 9, must be in [1, 8]");
    config_case("num_key_value_heads", "3", "num_attention_heads 4 is not a multiple of num_key_value_heads 3");
    config_case("head_dim", "7", "head_dim 7 is odd");
    config_case("rms_norm_eps", "\"x\"", "field 'rms_norm_eps' must be a number");
    config_case("rope_theta", NULL, "missing field 'rope_theta'");
    config_case("rope_scaling", "{\"rope_type\": \"linear\", \"factor\": 2.0}",
                "rope_scaling.rope_type 'linear' is not supported");
    config_case("rope_parameters", "{\"rope_type\": \"yarn\", \"rope_theta\": 10000.0}",
                "rope_parameters.rope_type 'yarn' is not supported");
    config_case("clip_qkv", "-1", "field 'clip_qkv' must be > 0 or null");
    config_case("clip_qkv", "\"big\"", "field 'clip_qkv' must be a number");
    config_case("norm_topk_prob", "1", "field 'norm_topk_prob' must be true or false");
    config_case("attention_bias", "true", "attention_bias true is not supported");
    config_case("hidden_act", "\"gelu\"", "hidden_act must be \"silu\"");
    config_case("eos_token_id", "\"x\"", "field 'eos_token_id' must be a token id");

    olmoe_config cfg;
    const char *bad = "{\"model_type\": \"olmoe\",";
    CHECK(olmoe_config_parse(bad, strlen(bad), "x/config.json", &cfg) != 0 &&
              strstr(olmoe_error(), "x/config.json: bad JSON at line 1"),
          "bad JSON: %s", olmoe_error());
    /* rope theta from rope_parameters, eos as a list, head_dim default */
    const char *ok = "{\"model_type\": \"olmoe\", \"vocab_size\": 10, \"hidden_size\": 8, \"intermediate_size\": 4,"
                     " \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_experts\": 4,"
                     " \"num_experts_per_tok\": 2, \"rms_norm_eps\": 1e-6,"
                     " \"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": \"default\"},"
                     " \"eos_token_id\": [3, 4], \"pad_token_id\": null}";
    int rc = olmoe_config_parse(ok, strlen(ok), "ok", &cfg);
    CHECK(rc == 0, "%s", olmoe_error());
    if (rc == 0) {
        CHECK(cfg.rope_theta == 500000.0 && cfg.head_dim == 4 && cfg.num_key_value_heads == 2 &&
                  cfg.eos_token_id == 3 && cfg.pad_token_id == -1 && !cfg.has_clip_qkv && !cfg.norm_topk_prob &&
                  !cfg.tie_word_embeddings && cfg.rms_norm_eps == 1e-6 && strcmp(cfg.json, ok) == 0,
              "parsed fields");
        olmoe_config_free(&cfg);
    }
}

int main(void) {
    scratch = tt_tmpdir();
    RUN(test_good);
    RUN(test_f16_exact);
    RUN(test_corrupt_files);
    RUN(test_binding_errors);
    RUN(test_shards);
    RUN(test_config);
    RUN(test_config_arch);
    tt_rmdir(scratch);
    free(scratch);
    return check_summary();
}
