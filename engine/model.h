/* model.h (part of engine.h: include engine.h):
 * the OLMoE model engine: config.json, safetensors weights, and the
 * forward pass (docs/DESIGN.md §4) behind an engine interface that a CPU and a CUDA
 * implementation fill in.
 *
 *   olmoe_model m;
 *   if (olmoe_model_open("models/olmoe-brown", &m) != 0) die("%s", olmoe_error());
 *   olmoe_engine_opts eo = {.device = "cpu", .max_tokens = 2048, .max_ctx = 2048};
 *   olmoe_engine *e;
 *   if (olmoe_engine_open(&m, &eo, &e) != 0) die("%s", olmoe_error());
 *   olmoe_window_io w = {.n = n, .tokens = ids, .router_logits = rl, .nll = nll,
 *                        .argmax = am};
 *   if (olmoe_engine_forward(e, &w, 1) != 0) die("%s", olmoe_error());
 *   olmoe_engine_close(e);
 *   olmoe_model_close(&m);
 *
 * Routing goes through an olmoe_route_fn hook (below; docs/DESIGN.md §3), so policies plug in
 * without the engine knowing them; NULL means top-k of the config (or opts.top_k)
 * with the config's norm_topk_prob, ties toward the lower expert index.
 */
#ifndef OLMOE_MODEL_H
#define OLMOE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* ---- config.json ---- */

/* The architectures the engine runs, chosen by config.json's model_type; the
 * per-architecture parts are fields of olmoe_config, set at parse:
 *   olmoe      q/k RMSNorm over the whole projection, clip_qkv, softmax then
 *              top-k (renormalised when norm_topk_prob)
 *   qwen3_moe  GQA, q/k RMSNorm per head, softmax then top-k, renormalised
 *              when norm_topk_prob; dense layers (mlp_only_layers,
 *              decoder_sparse_step)
 *   mixtral    GQA, no q/k norm, top-k with softmax over the selected logits
 *              (= softmax then top-k, always renormalised: norm_topk_prob 1)
 *   qwen2_moe  GQA, q/k/v biases, softmax then top-k (norm_topk_prob), an
 *              always-on shared expert scaled by sigmoid(shared_expert_gate),
 *              dense layers as qwen3_moe */
typedef enum {
    OLMOE_ARCH_OLMOE,
    OLMOE_ARCH_QWEN3_MOE,
    OLMOE_ARCH_MIXTRAL,
    OLMOE_ARCH_QWEN2_MOE,
    OLMOE_ARCH_COUNT
} olmoe_arch;
const char *olmoe_arch_name(olmoe_arch a); /* config.json's model_type */

typedef enum { OLMOE_QK_NORM_NONE, OLMOE_QK_NORM_WHOLE, OLMOE_QK_NORM_HEAD } olmoe_qk_norm;

#define OLMOE_CONFIG_MAX_LAYERS 4096

typedef struct {
    olmoe_arch arch;
    olmoe_qk_norm qk_norm;
    int qkv_bias;            /* q, k and v have biases: 1, 0, or -1: as the checkpoint has */
    int vocab_size;          /* V */
    int hidden_size;         /* D */
    int intermediate_size;   /* I, per routed expert (moe_intermediate_size for Qwen) */
    int dense_intermediate_size;  /* width of a dense layer's MLP; 0 when none */
    int shared_intermediate_size; /* width of the shared expert; 0 when none */
    int n_dense_layers;           /* layers without experts */
    unsigned char dense[OLMOE_CONFIG_MAX_LAYERS]; /* [L] 1: a dense layer (no router) */
    int num_hidden_layers;   /* L */
    int num_attention_heads; /* Hq */
    int num_key_value_heads; /* Hkv (default Hq) */
    int head_dim;            /* hd (default D / Hq) */
    int num_experts;         /* E */
    int num_experts_per_tok; /* k */
    double rms_norm_eps;
    double rope_theta;
    int has_clip_qkv; /* clip_qkv not null */
    double clip_qkv;
    int norm_topk_prob;
    int tie_word_embeddings;
    long max_position_embeddings; /* 0 when absent */
    long eos_token_id;            /* -1 when absent or null */
    long pad_token_id;            /* -1 when absent or null */
    char *json;                   /* the file's text, for provenance */
} olmoe_config;

/* Parses config.json text; name is what messages call it ("DIR/config.json"). */
int olmoe_config_parse(const char *text, size_t len, const char *name, olmoe_config *cfg);
int olmoe_config_load(const char *path, olmoe_config *cfg);
void olmoe_config_free(olmoe_config *cfg);
/* the widest feed-forward of any kind (routed, shared or dense expert) */
int olmoe_config_ffn_max(const olmoe_config *cfg);

/* ---- weights ---- */

typedef enum { OLMOE_ST_F32, OLMOE_ST_BF16, OLMOE_ST_F16, OLMOE_ST_DTYPE_COUNT } olmoe_st_dtype;
const char *olmoe_st_dtype_name(olmoe_st_dtype t); /* "F32", "BF16", "F16" */
size_t olmoe_st_dtype_size(olmoe_st_dtype t);

#define OLMOE_MAX_DIMS 8

/* A tensor as stored in the checkpoint: bytes inside the mmapped file. */
typedef struct {
    const char *name; /* owned by the checkpoint */
    const void *data;
    olmoe_st_dtype dtype;
    int ndim;
    int64_t shape[OLMOE_MAX_DIMS];
    size_t nbytes;
} olmoe_tensor;

/* Expert weights come in two layouts: the hub's one tensor per expert and
 * projection, or transformers v5's fused [E, 2I, D] gate_up (gate rows first)
 * and [E, D, I] down. Both are described by the per-expert views below. */
typedef struct {
    olmoe_tensor input_norm; /* [D] */
    olmoe_tensor wq;         /* [Hq*hd, D] */
    olmoe_tensor wk;         /* [Hkv*hd, D] */
    olmoe_tensor wv;         /* [Hkv*hd, D] */
    olmoe_tensor wo;         /* [D, Hq*hd] */
    olmoe_tensor q_norm;     /* [Hq*hd] */
    olmoe_tensor k_norm;     /* [Hkv*hd] */
    olmoe_tensor post_norm;  /* [D] */
    olmoe_tensor router;     /* [E, D]; absent in a dense layer */
    olmoe_tensor q_bias;     /* [Hq*hd] when qkv_bias */
    olmoe_tensor k_bias;     /* [Hkv*hd] when qkv_bias */
    olmoe_tensor v_bias;     /* [Hkv*hd] when qkv_bias */
    olmoe_tensor mlp_gate;   /* [F, D] the dense MLP, or the shared expert (F its width) */
    olmoe_tensor mlp_up;     /* [F, D] */
    olmoe_tensor mlp_down;   /* [D, F] */
    olmoe_tensor shared_gate; /* [1, D] the shared expert's sigmoid gate */
    int fused;               /* which expert layout the checkpoint uses */
    olmoe_tensor gate_up;    /* [E, 2I, D] when fused */
    olmoe_tensor down_all;   /* [E, D, I] when fused */
    olmoe_tensor *gate;      /* [E] of [I, D] when not fused */
    olmoe_tensor *up;        /* [E] of [I, D] when not fused */
    olmoe_tensor *down;      /* [E] of [D, I] when not fused */
} olmoe_layer_tensors;

/* fp32 copies (or aliases of aligned F32 data) for the CPU path */
typedef struct {
    const float *input_norm; /* [D] */
    const float *wq;         /* [Hq*hd, D] */
    const float *wk;         /* [Hkv*hd, D] */
    const float *wv;         /* [Hkv*hd, D] */
    const float *wo;         /* [D, Hq*hd] */
    const float *q_norm;     /* [Hq*hd] */
    const float *k_norm;     /* [Hkv*hd] */
    const float *post_norm;  /* [D] */
    const float *router;     /* [E, D]; NULL in a dense layer */
    const float *q_bias;     /* [Hq*hd] or NULL */
    const float *k_bias;     /* [Hkv*hd] or NULL */
    const float *v_bias;     /* [Hkv*hd] or NULL */
    const float *mlp_gate;   /* [F, D] dense MLP or shared expert, or NULL */
    const float *mlp_up;     /* [F, D] */
    const float *mlp_down;   /* [D, F] */
    const float *shared_gate; /* [D] or NULL */
    const float **gate;      /* [E] of [I, D] */
    const float **up;        /* [E] of [I, D] */
    const float **down;      /* [E] of [D, I] */
} olmoe_layer_f32;

typedef struct olmoe_checkpoint olmoe_checkpoint; /* safetensors files, opaque */

typedef struct {
    olmoe_config cfg;
    char *dir;
    olmoe_checkpoint *ckpt;
    olmoe_tensor embed;          /* [V, D] */
    olmoe_tensor final_norm;     /* [D] */
    olmoe_tensor lm_head;        /* [V, D]; the embedding when tied */
    olmoe_layer_tensors *layers; /* [L] */
    /* filled by olmoe_model_load_f32 */
    const float *embed_f32;      /* [V, D] */
    const float *final_norm_f32; /* [D] */
    const float *lm_head_f32;    /* [V, D] */
    olmoe_layer_f32 *layers_f32; /* [L] */
    void **owned;                /* converted buffers to free */
    int n_owned, cap_owned;
    size_t f32_bytes; /* memory the conversion allocated */
    olmoe_hash checksum;
    int have_checksum;
} olmoe_model;

/* Reads DIR/config.json and DIR/model.safetensors (or the shards listed in
 * DIR/model.safetensors.index.json), validates every header and binds every
 * tensor to the config's shapes. No weight bytes are read yet (mmap). */
int olmoe_model_open(const char *dir, olmoe_model *m);
/* Converts (or aliases) every weight to fp32 for the CPU path; idempotent. */
int olmoe_model_load_f32(olmoe_model *m);
/* XXH3-128 over the bytes of every safetensors file, in file-name order;
 * computed once and cached (the files can be 14 GB). */
int olmoe_model_checksum(olmoe_model *m, olmoe_hash *out);
/* total bytes of the safetensors files */
size_t olmoe_model_file_bytes(const olmoe_model *m);
void olmoe_model_close(olmoe_model *m);

/* What --model names, as an absolute directory (model_find.c): a directory,
 * or the name of a bundled model (PREFIX/share/olmoe-routing/models/NAME,
 * or $OLMOE_DATADIR/models/NAME). NULL + a message that says what --model
 * needs and how to get a checkpoint. Caller frees. */
char *olmoe_model_find(const char *name);
/* The model of a command that reads a trace: --model when given (as
 * olmoe_model_find), else the directory the trace recorded (whose weights'
 * checksum the caller checks against the trace's). NULL + message. */
char *olmoe_model_for_trace(const char *given, const char *recorded, const char *trace_path);
/* the bundled model NAME's directory, or NULL when it is not installed */
char *olmoe_model_bundled_dir(const char *name);
/* the model used when --model is not given (and no trace names one) */
#define OLMOE_MODEL_DEFAULT "olmoe-brown"

/* ---- routing ---- */

/* The routing hook: given one token's router logits at one layer, choose 1..max_k
 * experts and their weights; return the count, or -1 after olmoe_errorf.
 * pos is the token's position in the caller's token stream
 * (olmoe_window_io.stream_pos1 - 1 + its index in the window), or -1 when the
 * caller gave none; only hooks that route from a stored decision per token
 * (a routing file) need it. */
typedef int (*olmoe_route_fn)(void *ctx, int layer, int64_t pos, const float *logits /*[E]*/,
                              int E, int *experts /*[max_k]*/, float *weights /*[max_k]*/);

/* the default hook: top-k of softmax(logits), ties toward the lower index,
 * weights p_e (renormalised over the k chosen when norm) */
typedef struct {
    int k;
    int norm;
} olmoe_topk_route;
int olmoe_route_topk(void *ctx /* olmoe_topk_route* */, int layer, int64_t pos, const float *logits,
                     int E, int *experts, float *weights);

/* ---- many rows at once, on a thread pool (host routing of the CUDA
 * engine and of the CUDA replay; cuda_route_rows.cu, built with CUDA only) ---- */
#define OLMOE_ROUTE_ROWS_MAX_K 256
struct olmoe_pool;
/* Routes rows t in [0, T) (logits + t * ld) through fn on the pool's threads
 * (NULL or a pool of one: in the caller; with more threads fn must be
 * thread-safe, as olmoe_policy_route is) and checks each choice as the
 * engines do (1..K experts in [0, E), no repeats). Writes ex, w [T, K] (slots
 * past a row's count: -1 and 0) and n [T]. 0, or -1 + message. */
int olmoe_route_rows(struct olmoe_pool *pool, olmoe_route_fn fn, void *ctx, int layer,
                     const int64_t *pos /*[T], or NULL: -1 each*/,
                     const float *logits /*[T, ld]*/, size_t ld, int T, int E, int K,
                     int32_t *ex /*[T, K]*/, float *w /*[T, K]*/, int32_t *n /*[T]*/);
/* ---- end of many rows ---- */

/* ---- the engine ---- */

typedef struct {
    const char *device;    /* "cpu" (default) or "cuda" */
    int max_tokens;        /* most tokens in one forward call (all windows together) */
    int max_ctx;           /* longest window */
    int top_k;             /* 0: num_experts_per_tok; also max_k of the hook */
    olmoe_route_fn route;  /* NULL: olmoe_route_topk with top_k, norm_topk_prob */
    void *route_ctx;
    /* threads that call a routing hook at once on the CUDA engine's
     * host-routed layers (0 or 1: the caller's thread only; -1: every core).
     * More than one needs a thread-safe hook (olmoe_policy_route is).
     * OLMOE_CUDA_ROUTE_THREADS=N overrides it. */
    int route_threads;
} olmoe_engine_opts;

/* One window of a forward call: positions 0..n-1. Output arrays are the
 * caller's; NULL ones are not computed or not copied. */
typedef struct {
    int n;
    const int32_t *tokens; /* [n] */
    float *router_logits;  /* [n, L, E] raw gate logits */
    float *logits;         /* [n, V] */
    float *nll;            /* [n] NLL of tokens[i+1]; NaN at i = n-1 */
    int32_t *argmax;       /* [n] */
    float *attn_residual;  /* [n, L, D] o_proj output added to the residual stream */
    float *hidden;         /* [n, L+1, D] residual entering each layer, then before the final norm */
    /* attn_residual as bfloat16 bits (what the trace stores): the
     * CUDA engine copies its bf16 values as they are; others round their fp32
     * values to nearest even. Either or both of the two may be given. */
    uint16_t *attn_residual_bf16; /* [n, L, D] */
    /* 1 + the stream position of tokens[0], passed on to the routing hook
     * (pos); 0 (the default): not given, the hook gets pos -1 */
    int64_t stream_pos1;
    /* what the routing chose at each layer, filled by the CUDA engine only
     * (others leave them as they are): how many experts, and which in rank
     * order, -1 padded to olmoe_engine_max_experts */
    uint8_t *n_experts;    /* [n, L] */
    int32_t *experts;      /* [n, L, max_experts] */
} olmoe_window_io;

typedef struct olmoe_engine olmoe_engine;

int olmoe_engine_open(olmoe_model *m, const olmoe_engine_opts *opts, olmoe_engine **out);
/* Runs n_windows windows with sum of n <= max_tokens and each n <= max_ctx. */
int olmoe_engine_forward(olmoe_engine *e, olmoe_window_io *w, int n_windows);
const char *olmoe_engine_device(const olmoe_engine *e);        /* "cpu", "cuda:<name>" */
const char *olmoe_engine_compute_dtype(const olmoe_engine *e); /* "float32", "bfloat16" */
size_t olmoe_engine_activation_bytes(const olmoe_engine *e);
/* Offers the engine a buffer from olmoe_engine_host_alloc(bytes) that the
 * caller will pass as router_logits or attn_residual_bf16. A GPU engine
 * page-locks it once, so that its copies run beside the next layers; other
 * buffers are copied through pageable memory, correct but synchronous.
 * (Locking a malloc'd buffer could lock its neighbours' pages too.) Never
 * fails: 1 if taken, else 0. The buffer must outlive the engine. */
int olmoe_engine_host_buffer(olmoe_engine *e, void *p, size_t bytes);
/* a buffer of whole pages, owning them (free it with free()) */
void *olmoe_engine_host_alloc(size_t bytes);
void olmoe_engine_close(olmoe_engine *e);
/* Replaces the routing hook between forward calls (NULL: the default top-k);
 * the policy must choose at most olmoe_engine_max_experts. The CUDA engine
 * routes olmoe_policy_route with a bound policy as ctx on the GPU
 * (engine/cuda_policy.h), any other hook on the host. */
void olmoe_engine_set_route(olmoe_engine *e, olmoe_route_fn route, void *ctx);
/* the most experts its routing may choose per token (top_k, or the policy's
 * max_k): the row width of olmoe_decode_io's experts and weights */
int olmoe_engine_max_experts(const olmoe_engine *e);
/* the model it was opened on, and the most rows one forward call takes */
const olmoe_model *olmoe_engine_model(const olmoe_engine *e);
int olmoe_engine_max_tokens(const olmoe_engine *e);

/* ---- incremental decoding: one sequence with a KV cache (generation) ----
 *
 *   olmoe_decode *d;
 *   if (olmoe_engine_decode_begin(e, OLMOE_DECODE_AUTO, &d) != 0) die("%s", olmoe_error());
 *   olmoe_decode_io io = {.n_experts = ne, .experts = ex, .weights = wt};
 *   if (olmoe_engine_decode_step(d, prompt, n, &io) != 0) ...;   // prefill
 *   for (i = 0; i < N; i++) {
 *       gen[i] = io.argmax;                                       // greedy
 *       if (i + 1 < N && olmoe_engine_decode_step(d, &gen[i], 1, &io) != 0) ...;
 *   }
 *   olmoe_engine_decode_end(d);
 *
 * Each step appends its tokens at the next positions of the sequence (up to
 * the engine's max_ctx in all, at most max_tokens per step), attending to
 * the keys and values the earlier steps cached, and returns what the LAST
 * appended position gives. The CPU engine caches fp32 keys and values: its
 * results equal olmoe_engine_forward over the whole sequence up to fp32
 * rounding (the GEMMs see other shapes, so bits may differ); the CUDA engine
 * caches bf16 q|k|v rows (cuda_decode.cu). An engine with
 * no cache of its own, or OLMOE_DECODE_RECOMPUTE, runs olmoe_engine_forward
 * over the whole sequence at every step (the reference: O(n) times slower);
 * olmoe_engine_decode_cached says which one runs. The engine runs one step
 * or forward at a time; a decode owns only its cache. */
typedef struct {
    int32_t argmax;        /* out: first argmax of the last position's logits */
    float *logits;         /* [V] the last position's logits, or NULL */
    float *router_logits;  /* [L, E] its raw gate logits, or NULL */
    int32_t *n_experts;    /* [L] how many experts the routing chose, or NULL */
    int32_t *experts;      /* [L, max_k] which, in the hook's order, -1 padded, or NULL */
    float *weights;        /* [L, max_k] their weights, 0 padded, or NULL */
} olmoe_decode_io;

typedef struct olmoe_decode olmoe_decode;

enum { OLMOE_DECODE_AUTO = 0, OLMOE_DECODE_RECOMPUTE = 1 };
int olmoe_engine_decode_begin(olmoe_engine *e, int mode, olmoe_decode **out);
int olmoe_engine_decode_step(olmoe_decode *d, const int32_t *tokens /*[n]*/, int n,
                             olmoe_decode_io *io);
int olmoe_engine_decode_length(const olmoe_decode *d); /* positions so far */
int olmoe_engine_decode_cached(const olmoe_decode *d); /* 1: KV cache, 0: recomputes */
void olmoe_engine_decode_end(olmoe_decode *d);

#endif
