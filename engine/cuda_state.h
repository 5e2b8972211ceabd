/* cuda_state.h (internal to the engine .cu files): the CUDA engine's state, shared
 * by cuda_engine.cu (open, close, buffers), cuda_setup.cu (the opening both
 * the engine and replay_cuda.cu do) and cuda_forward.cu (the forward pass). Activations live in one device arena sized at open for max_tokens
 * rows (T) and max_ctx; host staging is pinned. */
#ifndef OLMOE_CUDA_STATE_H
#define OLMOE_CUDA_STATE_H

#include <cublasLt.h>
#include <cublas_v2.h>

#include "cuda_util.h"
#include "cuda_weights.h"

extern "C" {
#include "engine_impl.h"
}

#define OLMOE_CUDA_LM_CHUNK 2048 /* rows per lm_head GEMM */
#define OLMOE_CUDA_MAX_PINS 8
#define OLMOE_CUDA_PHASES 16

/* the kinds of GEMM of a forward pass, each with its own cuBLASLt algorithm */
enum { OLMOE_G_QKV, OLMOE_G_O, OLMOE_G_ROUTER, OLMOE_G_GATEUP, OLMOE_G_DOWN, OLMOE_G_LMHEAD, OLMOE_G_COUNT };

#define OLMOE_CUDA_MAX_STREAMS 8

typedef struct {
    int N, K;                 /* output columns, reduction length */
    cudaDataType_t ct;        /* output type */
    cublasLtMatrixLayout_t a; /* the weights [K x N] col-major */
    cublasLtMatrixLayout_t b, c; /* activations [K x M], output [N x M]; M set per call */
    int ldb, ldc;
    cublasLtMatmulAlgo_t algo;
    int have_algo;
    long n_fallback; /* calls cuBLASLt refused (cublasGemmEx ran them) */
} olmoe_cuda_gemm_kind;

typedef struct {
    int device;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    cublasLtMatmulDesc_t op; /* C = W^T-op . X, fp32 compute */
    olmoe_cuda_gemm_kind gk[OLMOE_G_COUNT];
    cudaStream_t stream;      /* all compute */
    cudaStream_t copy_stream; /* router logits to the host, overlapping the last layer */
    /* the experts' GEMMs are short (~35 us): n_streams streams run them side
     * by side so one GEMM's tail overlaps the next one's start
     * (OLMOE_CUDA_STREAMS, default 4; stream 0 is the main stream) */
    int n_streams;
    cudaStream_t xs[OLMOE_CUDA_MAX_STREAMS];
    cudaEvent_t ev_fork, ev_join[OLMOE_CUDA_MAX_STREAMS];
    double host_expert_s; /* host time spent issuing the experts' GEMMs (profile) */
    cudaEvent_t ev_rl;        /* the last layer's router logits are final */
    void *workspace;          /* cuBLAS workspace: n_streams slices of workspace_bytes */
    size_t workspace_bytes;
    olmoe_cuda_weights w;
    int T, C, K;              /* max rows, max window length, slots per token */

    void *arena;
    size_t arena_bytes;
    olmoe_bf16 *h;      /* [T, D] residual stream */
    olmoe_bf16 *x;      /* [T, D] normed input of the current sublayer */
    olmoe_bf16 *qkv;    /* [T, QD + 2 KD] */
    olmoe_bf16 *att;    /* [T, QD] attention output before o_proj */
    olmoe_bf16 *a;      /* [T, D] o_proj output */
    float *rl;          /* [T, L, E] router logits of every layer */
    int32_t *sel_e;     /* [T, K] */
    float *sel_w;       /* [T, K] */
    int32_t *sel_n;     /* [T] */
    int32_t *slot;      /* [T, K] grouped row of each choice */
    int32_t *blk;       /* [olmoe_cuda_bucket_scratch(T, E)] */
    int32_t *first;     /* [E + 1] */
    int32_t *perm_tok;  /* [T*K] */
    float *perm_w;      /* [T*K] */
    olmoe_bf16 *xg;     /* [T*K, D] gathered inputs, then the experts' outputs */
    olmoe_bf16 *gu;     /* [T*K, 2I] */
    olmoe_bf16 *act;    /* [T*K, I] */
    olmoe_bf16 *lbuf;   /* [LM_CHUNK, V] bf16 logits of a chunk of rows */
    float *nll;         /* [T] */
    int32_t *am;        /* [T] */
    int32_t *io;        /* [5T]: tokens, positions, targets, window offsets, window lengths */
    float *cos_t;       /* [C, hd/2] */
    float *sin_t;       /* [C, hd/2] */
    const void **gptr;  /* [2][3E] device pointer arrays of the grouped GEMMs */

    olmoe_bf16 *stash_res; /* [T, L, D] attention residuals, allocated when asked */
    olmoe_bf16 *stash_hid; /* [T, L + 1, D] residual stream, allocated when asked */

    int32_t *h_io;    /* pinned [5T] */
    int32_t *h_first; /* pinned [E + 1] */
    float *h_rl;      /* pinned [T, E] (routing hooks) */
    int32_t *h_sel;   /* pinned [T, K] experts, [T, K] weights (as floats), [T] counts */
    const void **h_gptr; /* pinned [2][3E] */

    struct {
        void *p;
        size_t n;
    } pins[OLMOE_CUDA_MAX_PINS]; /* caller buffers registered as pinned */
    int n_pins;

    int attn_variant; /* OLMOE_ATTN_* (OLMOE_CUDA_ATTN=plain|flash) */
    int grouped;      /* experts through cublasGemmGroupedBatchedEx (OLMOE_CUDA_EXPERTS=grouped) */

    /* OLMOE_CUDA_PROFILE=1: events between phases, summed per phase */
    int profile;
    cudaEvent_t *ev;
    int *ev_phase;
    int n_ev, cap_ev;
    double phase_ms[OLMOE_CUDA_PHASES];
    long n_forward, n_rows;

    /* ---- host routing and bf16 residuals ---- */
    struct olmoe_pool *pool; /* host routing threads (route_threads > 1), else NULL */
    cudaEvent_t ev_res;      /* a layer's attention residual is stashed: copy it out */

    /* ---- routing on the GPU and what it chose (cuda_forward_route.cu) ---- */
    struct olmoe_cuda_nulls *nulls; /* device copies of the policies' nulls */
    int32_t *h_rn;           /* pinned [L, T] experts chosen per layer and row */
    int32_t *h_re;           /* pinned [L, T, K] which, in rank order */
    cudaEvent_t ev_sel;      /* a layer's choices are made: copy them out */
    cudaEvent_t ev_selc;     /* ... and copied: the next layer may route */

} olmoe_cuda_state;

enum {
    PH_START = -1,
    PH_NORM = 0, PH_QKV, PH_ROPE, PH_ATTN, PH_OPROJ, PH_ROUTER, PH_ROUTE, PH_SYNC, PH_GATHER, PH_GATEUP,
    PH_SILU, PH_DOWN, PH_COMBINE, PH_LMHEAD, PH_HEADRED, PH_COPY, PH_COUNT
};

/* cuda_gemm.cu: C[M, N] (row stride ldc) = A[M, K] (row stride lda) . W[N, K]^T */
int olmoe_cuda_gemm_init(olmoe_cuda_state *s, const olmoe_config *c);
int olmoe_cuda_gemm(olmoe_cuda_state *s, int kind, int M, const void *A, int lda, const void *W, void *C, int ldc);
/* the same on stream xs[si] with its own workspace (si 0 = the main stream) */
int olmoe_cuda_gemm_on(olmoe_cuda_state *s, int si, int kind, int M, const void *A, int lda, const void *W, void *C,
                       int ldc);
void olmoe_cuda_gemm_report(const olmoe_cuda_state *s);
void olmoe_cuda_gemm_free(olmoe_cuda_state *s);
/* cuda_setup.cu: what the engine and the replay both do when they open.
 * who names the one refusing ("the CUDA engine") */
int olmoe_cuda_check_arch(const olmoe_config *c, const char *who);
/* "cuda" (device 0) or "cuda:N" into *dev */
int olmoe_cuda_pick_device(const char *name, int *dev);
/* OLMOE_CUDA_STREAMS (1..OLMOE_CUDA_MAX_STREAMS, default 4) into *n */
int olmoe_cuda_streams_env(int *n);
/* the cuBLAS workspace (32 MiB a stream), the compute stream, the experts'
 * streams (s->n_streams) and their events, the cuBLAS handle on the compute
 * stream and the GEMM kinds (for s->T rows, s->K slots) */
int olmoe_cuda_compute_open(olmoe_cuda_state *s, const olmoe_config *c);
/* after an open that failed: what it made released (release(p)), its
 * message kept whatever the release does */
template <typename T> static inline int olmoe_cuda_open_failed(void (*release)(T *), T *p) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", olmoe_error());
    release(p);
    return olmoe_errorf("%s", msg);
}
/* cuda_engine.cu */
int olmoe_cuda_pinned(olmoe_cuda_state *s, const void *p, size_t n); /* 1 if [p, p+n) is pinned */
void olmoe_cuda_mark(olmoe_cuda_state *s, int phase);
/* cuda_forward.cu */
int olmoe_cuda_forward(olmoe_engine *e, olmoe_window_io *w, int nw);
/* pieces of a layer the KV-cache decoder (cuda_decode.cu) shares: the experts'
 * GEMMs of one projection (which 0: gate_up, 1: down) over the rows grouped
 * by expert (counts in h_first), and a routing hook run on the host */
int olmoe_cuda_expert_gemms(olmoe_cuda_state *s, int which, int E, int n_out, int k_in, const olmoe_bf16 *W,
                            const olmoe_bf16 *X, olmoe_bf16 *Y);
/* the same with one GEMM per expert on the state's streams, bucket starts
 * given (the replay backend's own); kind OLMOE_G_GATEUP or OLMOE_G_DOWN */
int olmoe_cuda_expert_gemms_streams(olmoe_cuda_state *s, int kind, int E, const int32_t *first, int n_out,
                                    int k_in, const olmoe_bf16 *W, const olmoe_bf16 *X, olmoe_bf16 *Y);
/* pos: the hook's pos of each of the T rows, or NULL (-1 each) */
int olmoe_cuda_route_on_host(olmoe_engine *e, olmoe_cuda_state *s, int l, int T, const int64_t *pos);
/* cuda_forward_route.cu: one layer's routing into sel_e/sel_w/sel_n: the
 * default top-k or a policy (olmoe_policy_route_at's ctx) on the GPU, any other
 * hook on the host; with want, the choices are copied out for
 * olmoe_cuda_routes_out (rows of the windows' n_experts / experts); pos as
 * for olmoe_cuda_route_on_host */
int olmoe_cuda_route_layer(olmoe_engine *e, olmoe_cuda_state *s, int l, int T, int want, const int64_t *pos);
/* after the forward's last synchronisation: into the windows that ask */
void olmoe_cuda_routes_out(olmoe_engine *e, olmoe_cuda_state *s, olmoe_window_io *w, int nw, const int32_t *woff);
void olmoe_cuda_route_release(olmoe_cuda_state *s);

#endif
