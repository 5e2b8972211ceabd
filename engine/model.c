/* model.c: binds a checkpoint's tensors to the config (docs/DESIGN.md §4 names),
 * accepting the hub's per-expert layout and transformers v5's fused one, and
 * converts weights to fp32 for the CPU path. Every tensor of the checkpoint
 * must be used: an unexpected one means the config and weights disagree. */
#include "model.h"
#include "ops_cpu.h"
#include "safetensors.h"
#include "traces.h" /* the float16 and bfloat16 conversions */

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

static void fmt_shape(char *buf, size_t n, const int64_t *shape, int ndim) {
    size_t at = 0;
    at += snprintf(buf + at, n - at, "[");
    for (int d = 0; d < ndim && at < n; d++)
        at += snprintf(buf + at, n - at, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

/* finds name, checks its shape against the config's, marks it used */
static int bind(olmoe_checkpoint *ck, olmoe_tensor *out, int ndim, const int64_t *shape,
                const char *fmt, ...) OLMOE_PRINTF(5, 6);
static int bind(olmoe_checkpoint *ck, olmoe_tensor *out, int ndim, const int64_t *shape,
                const char *fmt, ...) {
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    olmoe_st_tensor *t = olmoe_ckpt_find(ck, name);
    if (!t) return olmoe_errorf("%s: missing tensor '%s'", ck->label, name);
    int same = t->t.ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->t.shape[d] == shape[d];
    if (!same) {
        char got[128], want[128];
        fmt_shape(got, sizeof got, t->t.shape, t->t.ndim);
        fmt_shape(want, sizeof want, shape, ndim);
        return olmoe_errorf("%s: tensor '%s' has shape %s, config says %s",
                            olmoe_ckpt_file_label(ck, t), name, got, want);
    }
    t->used = 1;
    *out = t->t;
    return 0;
}

#define S1(a) ((const int64_t[]){(a)})
#define S2(a, b) ((const int64_t[]){(a), (b)})
#define S3(a, b, c) ((const int64_t[]){(a), (b), (c)})

/* the routed experts of layer l under prefix ("model.layers.N.mlp" or Mixtral's
 * "model.layers.N.block_sparse_moe"): fused (transformers v5) or one tensor per
 * expert, named gate/up/down_proj or, for Mixtral, w1/w3/w2 */
static int bind_experts(olmoe_model *m, olmoe_layer_tensors *L, const char *pre) {
    const olmoe_config *c = &m->cfg;
    olmoe_checkpoint *ck = m->ckpt;
    int64_t D = c->hidden_size, I = c->intermediate_size, E = c->num_experts;
    char fused_name[192];
    snprintf(fused_name, sizeof fused_name, "%s.experts.gate_up_proj", pre);
    L->fused = olmoe_ckpt_find(ck, fused_name) != NULL;
    if (L->fused)
        return bind(ck, &L->gate_up, 3, S3(E, 2 * I, D), "%s", fused_name) ||
               bind(ck, &L->down_all, 3, S3(E, D, I), "%s.experts.down_proj", pre);
    int w = c->arch == OLMOE_ARCH_MIXTRAL;
    const char *gn = w ? "w1" : "gate_proj", *un = w ? "w3" : "up_proj", *dn = w ? "w2" : "down_proj";
    L->gate = xcalloc(E, sizeof *L->gate);
    L->up = xcalloc(E, sizeof *L->up);
    L->down = xcalloc(E, sizeof *L->down);
    for (int e = 0; e < E; e++)
        if (bind(ck, &L->gate[e], 2, S2(I, D), "%s.experts.%d.%s.weight", pre, e, gn) ||
            bind(ck, &L->up[e], 2, S2(I, D), "%s.experts.%d.%s.weight", pre, e, un) ||
            bind(ck, &L->down[e], 2, S2(D, I), "%s.experts.%d.%s.weight", pre, e, dn))
            return -1;
    return 0;
}

/* a plain SwiGLU MLP of width F under prefix (a dense layer or the shared expert) */
static int bind_mlp(olmoe_checkpoint *ck, olmoe_layer_tensors *L, int64_t D, int64_t F,
                    const char *pre) {
    return bind(ck, &L->mlp_gate, 2, S2(F, D), "%s.gate_proj.weight", pre) ||
           bind(ck, &L->mlp_up, 2, S2(F, D), "%s.up_proj.weight", pre) ||
           bind(ck, &L->mlp_down, 2, S2(D, F), "%s.down_proj.weight", pre);
}

static int bind_attention(olmoe_model *m, int l) {
    const olmoe_config *c = &m->cfg;
    olmoe_checkpoint *ck = m->ckpt;
    olmoe_layer_tensors *L = &m->layers[l];
    int64_t D = c->hidden_size;
    int64_t QD = (int64_t)c->num_attention_heads * c->head_dim;
    int64_t KD = (int64_t)c->num_key_value_heads * c->head_dim;
    const char *p = "model.layers";
    if (bind(ck, &L->input_norm, 1, S1(D), "%s.%d.input_layernorm.weight", p, l) ||
        bind(ck, &L->wq, 2, S2(QD, D), "%s.%d.self_attn.q_proj.weight", p, l) ||
        bind(ck, &L->wk, 2, S2(KD, D), "%s.%d.self_attn.k_proj.weight", p, l) ||
        bind(ck, &L->wv, 2, S2(KD, D), "%s.%d.self_attn.v_proj.weight", p, l) ||
        bind(ck, &L->wo, 2, S2(D, QD), "%s.%d.self_attn.o_proj.weight", p, l) ||
        bind(ck, &L->post_norm, 1, S1(D), "%s.%d.post_attention_layernorm.weight", p, l))
        return -1;
    if (c->qk_norm != OLMOE_QK_NORM_NONE) {
        int head = c->qk_norm == OLMOE_QK_NORM_HEAD;
        if (bind(ck, &L->q_norm, 1, S1(head ? c->head_dim : QD), "%s.%d.self_attn.q_norm.weight", p,
                 l) ||
            bind(ck, &L->k_norm, 1, S1(head ? c->head_dim : KD), "%s.%d.self_attn.k_norm.weight", p,
                 l))
            return -1;
    }
    char bias_name[160];
    snprintf(bias_name, sizeof bias_name, "%s.%d.self_attn.q_proj.bias", p, l);
    int bias = c->qkv_bias < 0 ? olmoe_ckpt_find(ck, bias_name) != NULL : c->qkv_bias;
    if (bias &&
        (bind(ck, &L->q_bias, 1, S1(QD), "%s.%d.self_attn.q_proj.bias", p, l) ||
         bind(ck, &L->k_bias, 1, S1(KD), "%s.%d.self_attn.k_proj.bias", p, l) ||
         bind(ck, &L->v_bias, 1, S1(KD), "%s.%d.self_attn.v_proj.bias", p, l)))
        return -1;
    return 0;
}

static int bind_layer(olmoe_model *m, int l) {
    const olmoe_config *c = &m->cfg;
    olmoe_checkpoint *ck = m->ckpt;
    olmoe_layer_tensors *L = &m->layers[l];
    int64_t D = c->hidden_size, E = c->num_experts;
    if (bind_attention(m, l) != 0) return -1;
    char pre[128];
    snprintf(pre, sizeof pre, "model.layers.%d.mlp", l);
    if (c->dense[l]) return bind_mlp(ck, L, D, c->dense_intermediate_size, pre);
    if (c->arch == OLMOE_ARCH_MIXTRAL) {
        /* the hub's name for the block, unless the checkpoint uses v5's */
        char router[160];
        snprintf(router, sizeof router, "%s.gate.weight", pre);
        if (!olmoe_ckpt_find(ck, router)) snprintf(pre, sizeof pre, "model.layers.%d.block_sparse_moe", l);
    }
    if (bind(ck, &L->router, 2, S2(E, D), "%s.gate.weight", pre) != 0 || bind_experts(m, L, pre) != 0)
        return -1;
    if (c->shared_intermediate_size) {
        char sh[160];
        snprintf(sh, sizeof sh, "%s.shared_expert", pre);
        if (bind_mlp(ck, L, D, c->shared_intermediate_size, sh) != 0 ||
            bind(ck, &L->shared_gate, 2, S2(1, D), "%s.shared_expert_gate.weight", pre) != 0)
            return -1;
    }
    return 0;
}

static int bind_all(olmoe_model *m) {
    const olmoe_config *c = &m->cfg;
    olmoe_checkpoint *ck = m->ckpt;
    int64_t V = c->vocab_size, D = c->hidden_size;
    if (bind(ck, &m->embed, 2, S2(V, D), "model.embed_tokens.weight") ||
        bind(ck, &m->final_norm, 1, S1(D), "model.norm.weight"))
        return -1;
    m->layers = xcalloc(c->num_hidden_layers, sizeof *m->layers);
    for (int l = 0; l < c->num_hidden_layers; l++)
        if (bind_layer(m, l) != 0) return -1;
    if (c->tie_word_embeddings) {
        /* HF ties after loading, so a stored lm_head is ignored; it must still fit */
        if (olmoe_ckpt_find(ck, "lm_head.weight") &&
            bind(ck, &m->lm_head, 2, S2(V, D), "lm_head.weight") != 0)
            return -1;
        m->lm_head = m->embed;
    } else if (bind(ck, &m->lm_head, 2, S2(V, D), "lm_head.weight") != 0) {
        return -1;
    }
    for (int i = 0; i < ck->n_tensors; i++)
        if (!ck->tensors[i].used)
            return olmoe_errorf("%s: unexpected tensor '%s' (not part of a %s model with this "
                                "config.json)",
                                olmoe_ckpt_file_label(ck, &ck->tensors[i]), ck->tensors[i].name,
                                olmoe_arch_name(c->arch));
    return 0;
}

int olmoe_model_open(const char *dir, olmoe_model *m) {
    memset(m, 0, sizeof *m);
    struct stat st;
    if (stat(dir, &st) != 0) return olmoe_errorf("%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return olmoe_errorf("%s: not a model directory", dir);
    m->dir = xstrdup(dir);
    char *cfg_path = olmoe_path_join(dir, "config.json");
    int rc = olmoe_config_load(cfg_path, &m->cfg);
    free(cfg_path);
    if (rc == 0) rc = olmoe_ckpt_open_dir(dir, &m->ckpt);
    if (rc == 0) rc = bind_all(m);
    if (rc != 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", olmoe_error());
        olmoe_model_close(m);
        return olmoe_errorf("%s", msg);
    }
    return 0;
}

/* ---- fp32 ---- */

void olmoe_convert_to_f32(const void *src, olmoe_st_dtype dt, size_t n, float *dst) {
    const unsigned char *s = src;
    if (dt == OLMOE_ST_F32) {
        memcpy(dst, src, n * 4);
        return;
    }
    /* the conversions of traces/float16.c; safetensors is little-endian, as
     * are we. A tensor at an odd offset is copied to alignment first. */
    uint16_t tmp[4096];
    for (size_t i = 0; i < n;) {
        size_t m = n - i < 4096 ? n - i : 4096;
        const uint16_t *v = (const uint16_t *)(s + 2 * i);
        if ((uintptr_t)v % sizeof *v) v = memcpy(tmp, s + 2 * i, 2 * m);
        if (dt == OLMOE_ST_BF16) olmoe_bf16_to_f32_n(dst + i, v, m);
        else olmoe_f16_to_f32_n(dst + i, v, m);
        i += m;
    }
}

void *olmoe_big_alloc(size_t bytes) {
    /* large buffers on transparent huge pages: converting 14 GB of weights
     * otherwise costs millions of page faults */
    const size_t huge = (size_t)2 << 20;
    if (bytes < 2 * huge) return xmalloc(bytes);
    size_t rounded = (bytes + huge - 1) & ~(huge - 1);
    void *p = aligned_alloc(huge, rounded);
    if (!p) {
        char b[32];
        die("out of memory allocating %s", olmoe_fmt_bytes((double)bytes, b, sizeof b));
    }
    madvise(p, rounded, MADV_HUGEPAGE);
    return p;
}

/* n elements starting at element off of t, as fp32: an alias when the
 * checkpoint already holds aligned fp32, else a converted copy the model owns */
static const float *f32_view(olmoe_model *m, const olmoe_tensor *t, size_t off, size_t n) {
    const unsigned char *p = (const unsigned char *)t->data + off * olmoe_st_dtype_size(t->dtype);
    if (t->dtype == OLMOE_ST_F32 && ((uintptr_t)p % sizeof(float)) == 0) return (const float *)p;
    float *buf = olmoe_big_alloc(xmul(n, sizeof(float)));
    olmoe_convert_to_f32(p, t->dtype, n, buf);
    if (m->n_owned == m->cap_owned) {
        m->cap_owned = m->cap_owned ? 2 * m->cap_owned : 64;
        m->owned = xrealloc(m->owned, m->cap_owned * sizeof *m->owned);
    }
    m->owned[m->n_owned++] = buf;
    m->f32_bytes += n * sizeof(float);
    return buf;
}

static size_t numel(const olmoe_tensor *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

#define WHOLE(m, t) f32_view((m), &(t), 0, numel(&(t)))
/* a tensor the layer may lack (bound only for some architectures or layers) */
#define MAYBE(m, t) ((t).data ? WHOLE(m, t) : NULL)

int olmoe_model_load_f32(olmoe_model *m) {
    if (m->layers_f32) return 0;
    const olmoe_config *c = &m->cfg;
    size_t E = c->num_experts, I = c->intermediate_size, D = c->hidden_size;
    m->embed_f32 = WHOLE(m, m->embed);
    m->final_norm_f32 = WHOLE(m, m->final_norm);
    m->lm_head_f32 = c->tie_word_embeddings ? m->embed_f32 : WHOLE(m, m->lm_head);
    m->layers_f32 = xcalloc(c->num_hidden_layers, sizeof *m->layers_f32);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        olmoe_layer_tensors *T = &m->layers[l];
        olmoe_layer_f32 *F = &m->layers_f32[l];
        F->input_norm = WHOLE(m, T->input_norm);
        F->wq = WHOLE(m, T->wq);
        F->wk = WHOLE(m, T->wk);
        F->wv = WHOLE(m, T->wv);
        F->wo = WHOLE(m, T->wo);
        F->q_norm = MAYBE(m, T->q_norm);
        F->k_norm = MAYBE(m, T->k_norm);
        F->post_norm = WHOLE(m, T->post_norm);
        F->q_bias = MAYBE(m, T->q_bias);
        F->k_bias = MAYBE(m, T->k_bias);
        F->v_bias = MAYBE(m, T->v_bias);
        F->mlp_gate = MAYBE(m, T->mlp_gate);
        F->mlp_up = MAYBE(m, T->mlp_up);
        F->mlp_down = MAYBE(m, T->mlp_down);
        F->shared_gate = MAYBE(m, T->shared_gate);
        if (c->dense[l]) continue; /* no router, no experts */
        F->router = WHOLE(m, T->router);
        F->gate = xcalloc(E, sizeof *F->gate);
        F->up = xcalloc(E, sizeof *F->up);
        F->down = xcalloc(E, sizeof *F->down);
        for (size_t e = 0; e < E; e++) {
            if (T->fused) {
                /* one conversion per expert keeps the views independent of the layout */
                F->gate[e] = f32_view(m, &T->gate_up, e * 2 * I * D, I * D);
                F->up[e] = f32_view(m, &T->gate_up, (e * 2 + 1) * I * D, I * D);
                F->down[e] = f32_view(m, &T->down_all, e * D * I, D * I);
            } else {
                F->gate[e] = WHOLE(m, T->gate[e]);
                F->up[e] = WHOLE(m, T->up[e]);
                F->down[e] = WHOLE(m, T->down[e]);
            }
        }
    }
    return 0;
}

int olmoe_model_checksum(olmoe_model *m, olmoe_hash *out) {
    if (!m->ckpt) return olmoe_errorf("model is not open");
    if (!m->have_checksum) {
        olmoe_ckpt_checksum(m->ckpt, &m->checksum);
        m->have_checksum = 1;
    }
    *out = m->checksum;
    return 0;
}

size_t olmoe_model_file_bytes(const olmoe_model *m) { return m->ckpt ? olmoe_ckpt_bytes(m->ckpt) : 0; }

void olmoe_model_close(olmoe_model *m) {
    if (m->layers) {
        for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
            free(m->layers[l].gate);
            free(m->layers[l].up);
            free(m->layers[l].down);
        }
    }
    if (m->layers_f32) {
        for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
            free(m->layers_f32[l].gate);
            free(m->layers_f32[l].up);
            free(m->layers_f32[l].down);
        }
    }
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->layers_f32);
    olmoe_ckpt_close(m->ckpt);
    olmoe_config_free(&m->cfg);
    free(m->dir);
    memset(m, 0, sizeof *m);
}
