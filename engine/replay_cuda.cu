/* replay_cuda.cu: the CUDA replay backend (replay_cuda.h says what it
 * computes). Built on the CUDA engine's pieces (cuda_*.cu): the bf16
 * weights uploaded once, cuBLASLt GEMMs with one algorithm per kind, the row
 * kernels and the expert grouping; only the attention is missing, replaced by
 * the chunk's stored residuals.
 *
 * Memory on the GPU: the weights, the loaded chunk's residuals ([L, T, D]
 * bf16: 64 KiB a token at OLMoE-1B-7B's shapes), the activations of T rows,
 * and the grouped rows of the experts, sized by what a policy actually
 * chooses (grown when a policy chooses more). The driver runs every policy on
 * a chunk before it loads the next, so each chunk is read and uploaded once.
 *
 * Synchronisation per layer: one host read of the experts' row counts
 * (device routing), or the layer's router logits down and the choices up
 * (host routing). Nothing uses floating-point atomics: same input, same bits. */
#include "cuda_state.h"

#include <stdlib.h>
#include <string.h>

extern "C" {
#include "common.h"
#include "cuda_policy.h"
#include "replay_cuda.h"
#include "traces.h"
}

#define STAGE_BYTES ((size_t)64 << 20) /* host staging of residual rows, per buffer */
#define MAX_SLOTS 64                   /* experts per token the combine kernel takes */

typedef struct {
    olmoe_cuda_state s; /* weights, GEMM kinds, streams, workspace (the engine's machinery) */
    int T, K, L, E, D, I, V, lch;
    int n;              /* rows of the loaded chunk */
    int captured;       /* routing = captured: the policy on the chunk's router logits */
    const float *cap_logits; /* [n, L, E] the loaded chunk's (host) */
    int host_topk;      /* OLMOE_REPLAY_HOST=1 */
    olmoe_pool *pool;

    void *arena;        /* every fixed-size device buffer */
    olmoe_bf16 *res;    /* [L, T, D] A_l of the loaded chunk, layer-major */
    int32_t *tok, *tgt; /* [T] */
    olmoe_bf16 *h, *x;  /* [T, D] */
    float *rl;          /* [T, L, E] router logits (row stride L E, as the engine's router GEMM) */
    float *rlc;         /* [T, E] one layer's, contiguous for the copy to the host */
    int32_t *sel_e;     /* [T, K] */
    float *sel_w;       /* [T, K] */
    int32_t *sel_n;     /* [T] */
    int32_t *slot;      /* [T, K] */
    int32_t *blk;       /* [olmoe_cuda_bucket_scratch(T, E)] */
    int32_t *first;     /* [E + 1] */
    int32_t *perm_tok;  /* [T K] */
    float *perm_w;      /* [T K] */
    olmoe_bf16 *lbuf;   /* [lch, V] */
    float *nll;         /* [T] */
    int32_t *am;        /* [T] */

    void *grouped;      /* xg, gu, act of cap rows in one allocation */
    olmoe_bf16 *xg;     /* [cap, D] gathered inputs, then the experts' outputs */
    olmoe_bf16 *gu;     /* [cap, 2I] */
    olmoe_bf16 *act;    /* [cap, I] */
    size_t cap;

    float *h_rl;        /* pinned [T, E] one layer's router logits */
    int32_t *h_ex;      /* pinned [T, K] */
    float *h_w;         /* pinned [T, K] */
    int32_t *h_n;       /* pinned [T] */
    int32_t *h_nl;      /* pinned [L, T] experts per token at each layer (device routing) */
    olmoe_cuda_nulls *nulls; /* the policies' nulls on the device */
    int32_t *h_first;   /* pinned [E + 1] */
    int32_t *h_io;      /* pinned [2T] tokens, targets */
    float *h_nll;       /* pinned [T] */
    int32_t *h_am;      /* pinned [T] */
    int64_t *pos;       /* [T] the stream position of each row (the hook's pos) */
    olmoe_bf16 *stage[2]; /* pinned [stage_rows, L, D] each, laid out [L, rows, D] */
    cudaEvent_t staged[2];
    int stage_rows;
} cuda_replay;

/* ---- life cycle ---- */

static void *carve(char *base, size_t *off, size_t n, size_t size) {
    size_t at = (*off + 255) / 256 * 256;
    *off = at + (n ? n : 1) * size;
    return base ? base + at : NULL;
}

static size_t layout(cuda_replay *r, char *base) {
    size_t T = r->T, K = r->K, L = r->L, E = r->E, D = r->D, V = r->V, off = 0;
    r->res = (olmoe_bf16 *)carve(base, &off, L * T * D, 2);
    r->tok = (int32_t *)carve(base, &off, T, 4);
    r->tgt = (int32_t *)carve(base, &off, T, 4);
    r->h = (olmoe_bf16 *)carve(base, &off, T * D, 2);
    r->x = (olmoe_bf16 *)carve(base, &off, T * D, 2);
    r->rl = (float *)carve(base, &off, T * L * E, 4);
    r->rlc = (float *)carve(base, &off, T * E, 4);
    r->sel_e = (int32_t *)carve(base, &off, T * K, 4);
    r->sel_w = (float *)carve(base, &off, T * K, 4);
    r->sel_n = (int32_t *)carve(base, &off, T, 4);
    r->slot = (int32_t *)carve(base, &off, T * K, 4);
    r->blk = (int32_t *)carve(base, &off, (size_t)olmoe_cuda_bucket_scratch((int)T, (int)E), 4);
    r->first = (int32_t *)carve(base, &off, E + 1, 4);
    r->perm_tok = (int32_t *)carve(base, &off, T * K, 4);
    r->perm_w = (float *)carve(base, &off, T * K, 4);
    r->lbuf = (olmoe_bf16 *)carve(base, &off, (size_t)r->lch * V, 2);
    r->nll = (float *)carve(base, &off, T, 4);
    r->am = (int32_t *)carve(base, &off, T, 4);
    return off;
}

static void release(cuda_replay *r) {
    olmoe_cuda_state *s = &r->s;
    if (s->stream) cudaStreamSynchronize(s->stream);
    for (int i = 1; i < s->n_streams; i++)
        if (s->xs[i]) cudaStreamSynchronize(s->xs[i]);
    olmoe_cuda_gemm_free(s);
    if (s->blas) cublasDestroy(s->blas);
    if (s->workspace) cudaFree(s->workspace);
    if (r->arena) cudaFree(r->arena);
    if (r->grouped) cudaFree(r->grouped);
    olmoe_cuda_nulls_free(r->nulls);
    void *pinned[] = {r->h_rl, r->h_ex, r->h_w, r->h_n, r->h_nl, r->h_first, r->h_io, r->h_nll, r->h_am, r->stage[0],
                      r->stage[1]};
    for (size_t i = 0; i < sizeof pinned / sizeof *pinned; i++)
        if (pinned[i]) cudaFreeHost(pinned[i]);
    free(r->pos);
    for (int i = 0; i < 2; i++)
        if (r->staged[i]) cudaEventDestroy(r->staged[i]);
    if (s->ev_fork) cudaEventDestroy(s->ev_fork);
    for (int i = 1; i < s->n_streams; i++) {
        if (s->xs[i]) cudaStreamDestroy(s->xs[i]);
        if (s->ev_join[i]) cudaEventDestroy(s->ev_join[i]);
    }
    if (s->stream) cudaStreamDestroy(s->stream);
    olmoe_cuda_weights_free(&s->w);
    olmoe_pool_close(r->pool);
    cudaGetLastError();
    free(r);
}

static int host_alloc(void *p, size_t bytes) {
    CUDA_TRY(cudaHostAlloc((void **)p, bytes ? bytes : 1, cudaHostAllocDefault));
    return 0;
}

/* the shapes of the backend's chunks and policies, checked against what its
 * kernels take */
static int set_shapes(olmoe_replay_backend *b, cuda_replay *r) {
    const olmoe_config *c = &b->model->cfg;
    r->T = b->max_tokens, r->K = b->max_k;
    r->L = c->num_hidden_layers, r->E = c->num_experts, r->D = c->hidden_size;
    r->I = c->intermediate_size, r->V = c->vocab_size;
    r->lch = r->T < OLMOE_CUDA_LM_CHUNK ? r->T : OLMOE_CUDA_LM_CHUNK;
    r->captured = b->routing == OLMOE_ROUTING_CAPTURED;
    if (r->E > 256) return olmoe_errorf("cuda replay: %d experts; at most 256 supported", r->E);
    if (r->K > MAX_SLOTS)
        return olmoe_errorf("cuda replay: policies of up to %d experts per token; the GPU takes at most %d "
                            "(use --device cpu)", r->K, MAX_SLOTS);
    if ((double)r->T * r->K * (r->D > 2 * r->I ? r->D : 2 * r->I) > 4e10)
        return olmoe_errorf("cuda replay: chunks of %d tokens are too many (use a smaller --chunk)", r->T);
    return 0;
}

/* the measurement switches of the environment (replay_cuda.h) and the host
 * routing threads */
static int read_env(cuda_replay *r) {
    const char *v = getenv("OLMOE_REPLAY_HOST");
    r->host_topk = v && *v && strcmp(v, "0");
    long nt = 0;
    v = getenv("OLMOE_REPLAY_THREADS");
    if (v && olmoe_parse_long(v, 1, 4096, &nt) != 0)
        return olmoe_errorf("OLMOE_REPLAY_THREADS=%s: expected 1 to 4096", v);
    if (olmoe_cuda_streams_env(&r->s.n_streams) != 0) return -1;
    r->pool = olmoe_pool_open((int)nt);
    return 0;
}

/* the pinned host buffers: one layer's routing both ways, the chunk's
 * tokens and results, and two staging buffers of residual rows */
static int host_buffers(cuda_replay *r) {
    size_t T = r->T, K = r->K, E = r->E, LD = (size_t)r->L * r->D;
    r->stage_rows = (int)(STAGE_BYTES / (LD * 2));
    if (r->stage_rows < 1) r->stage_rows = 1;
    if (r->stage_rows > r->T) r->stage_rows = r->T;
    if (host_alloc(&r->h_rl, T * E * 4) || host_alloc(&r->h_ex, T * K * 4) || host_alloc(&r->h_w, T * K * 4) ||
        host_alloc(&r->h_n, T * 4) || host_alloc(&r->h_nl, (size_t)r->L * T * 4) || host_alloc(&r->h_first, (E + 1) * 4) || host_alloc(&r->h_io, 2 * T * 4) ||
        host_alloc(&r->h_nll, T * 4) || host_alloc(&r->h_am, T * 4) ||
        host_alloc(&r->stage[0], (size_t)r->stage_rows * LD * 2) ||
        host_alloc(&r->stage[1], (size_t)r->stage_rows * LD * 2))
        return -1;
    for (int i = 0; i < 2; i++) CUDA_TRY(cudaEventCreateWithFlags(&r->staged[i], cudaEventDisableTiming));
    return 0;
}

static int open_state(olmoe_replay_backend *b, cuda_replay *r) {
    const olmoe_config *c = &b->model->cfg;
    olmoe_cuda_state *s = &r->s;
    int dev = 0;
    if (olmoe_cuda_pick_device(b->device, &dev) != 0) return -1;
    CUDA_TRY(cudaSetDevice(dev));
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, dev));
    if (set_shapes(b, r) != 0 || read_env(r) != 0) return -1;
    snprintf(b->device, sizeof b->device, "cuda:%.80s", prop.name);

    double t0 = olmoe_now();
    if (olmoe_cuda_weights_upload(b->model, &s->w) != 0) return -1;
    double t_up = olmoe_now() - t0;
    /* the engine's representative rows per expert: T k / E with the model's k */
    s->T = r->T, s->C = 1;
    s->K = c->num_experts_per_tok >= 1 && c->num_experts_per_tok <= r->K ? c->num_experts_per_tok : r->K;
    if (olmoe_cuda_compute_open(s, c) != 0) return -1;
    size_t bytes = layout(r, NULL);
    if (olmoe_cuda_alloc(&r->arena, bytes, "cuda replay", " (use a smaller --chunk)",
                         "for chunks of %d tokens", r->T) != 0)
        return -1;
    layout(r, (char *)r->arena);
    if (host_buffers(r) != 0) return -1;

    size_t fr = 0, tot = 0;
    CUDA_TRY(cudaMemGetInfo(&fr, &tot));
    char b1[32], b2[32], b3[32], b4[32];
    notef("%s: replay with weights %s in bf16 (uploaded in %.1f s), %s for chunks of %d tokens, "
          "GPU memory in use %s of %s, host routing on %d threads",
          b->device, olmoe_fmt_bytes((double)s->w.bytes, b1, sizeof b1), t_up,
          olmoe_fmt_bytes((double)bytes, b2, sizeof b2), r->T, olmoe_fmt_bytes((double)(tot - fr), b3, sizeof b3),
          olmoe_fmt_bytes((double)tot, b4, sizeof b4), olmoe_pool_threads(r->pool));
    return 0;
}

static int cuda_open(olmoe_replay_backend *b) {
    if (olmoe_cuda_check_arch(&b->model->cfg, "the CUDA replay") != 0) return -1;
    cuda_replay *r = (cuda_replay *)xcalloc(1, sizeof *r);
    if (open_state(b, r) != 0) return olmoe_cuda_open_failed(release, r);
    b->impl = r;
    return 0;
}

static void cuda_close(olmoe_replay_backend *b) {
    cuda_replay *r = (cuda_replay *)b->impl;
    if (!r) return;
    olmoe_cuda_gemm_report(&r->s);
    release(r);
    b->impl = NULL;
}

/* ---- load: the chunk's residuals to the GPU, layer-major ---- */

typedef struct {
    const olmoe_replay_chunk *c;
    olmoe_bf16 *dst; /* [L, nr, D] */
    int r0, nr, L, D;
} stage_job;

/* rows [lo, hi) of the block: each layer's row to its place, as bf16 */
static int stage_rows(void *arg, int64_t lo, int64_t hi) {
    const stage_job *j = (const stage_job *)arg;
    size_t D = j->D, L = j->L;
    for (int64_t i = lo; i < hi; i++) {
        size_t row = (size_t)(j->r0 + i);
        for (size_t l = 0; l < L; l++) {
            olmoe_bf16 *d = j->dst + (l * j->nr + (size_t)i) * D;
            if (j->c->residual_bf16)
                memcpy(d, j->c->residual_bf16 + (row * L + l) * D, D * 2);
            else
                olmoe_bf16_from_f32_n(d, j->c->residual + (row * L + l) * D, D);
        }
    }
    return 0;
}

static int cuda_load(olmoe_replay_backend *b, const olmoe_replay_chunk *c) {
    cuda_replay *r = (cuda_replay *)b->impl;
    cudaStream_t st = r->s.stream;
    int n = c->n, T = r->T, D = r->D, L = r->L;
    r->n = n;
    r->cap_logits = c->router_logits;
    if (n == 0) return 0;
    CUDA_TRY(cudaStreamSynchronize(st)); /* h_io may still be in flight from the last load */
    memcpy(r->h_io, c->tokens, (size_t)n * 4);
    if (!r->pos) r->pos = (int64_t *)xmalloc(xmul((size_t)T, sizeof *r->pos));
    for (int i = 0; i < n; i++) r->pos[i] = c->row0 + i;
    memcpy(r->h_io + T, c->target, (size_t)n * 4);
    CUDA_TRY(cudaMemcpyAsync(r->tok, r->h_io, (size_t)n * 4, cudaMemcpyHostToDevice, st));
    CUDA_TRY(cudaMemcpyAsync(r->tgt, r->h_io + T, (size_t)n * 4, cudaMemcpyHostToDevice, st));
    if (r->captured) /* routed on the device from the stored logits, [n, L, E] as rl */
        CUDA_TRY(cudaMemcpyAsync(r->rl, c->router_logits, (size_t)n * L * r->E * 4, cudaMemcpyHostToDevice, st));
    for (int r0 = 0, k = 0; r0 < n; r0 += r->stage_rows, k ^= 1) {
        int nr = n - r0 < r->stage_rows ? n - r0 : r->stage_rows;
        CUDA_TRY(cudaEventSynchronize(r->staged[k])); /* the copy out of this buffer is done */
        stage_job j = {c, r->stage[k], r0, nr, L, D};
        if (olmoe_pool_for(r->pool, nr, stage_rows, &j) != 0) return -1;
        for (int l = 0; l < L; l++)
            CUDA_TRY(cudaMemcpyAsync(r->res + ((size_t)l * T + r0) * D, r->stage[k] + (size_t)l * nr * D,
                                     (size_t)nr * D * 2, cudaMemcpyHostToDevice, st));
        CUDA_TRY(cudaEventRecord(r->staged[k], st));
    }
    CUDA_TRY(cudaStreamSynchronize(st));
    return 0;
}

/* ---- run: one policy over the loaded chunk ---- */

/* the grouped rows' buffers hold at least S rows (the stream is idle here) */
static int ensure_cap(cuda_replay *r, size_t S) {
    if (S <= r->cap) return 0;
    size_t want = r->cap ? r->cap + r->cap / 2 : S;
    if (want < S) want = S;
    size_t most = (size_t)r->T * r->K;
    if (want > most) want = most;
    CUDA_TRY(cudaDeviceSynchronize()); /* kernels of the last layer may still read them */
    if (r->grouped) CUDA_TRY(cudaFree(r->grouped));
    r->grouped = NULL, r->cap = 0;
    size_t D = r->D, I = r->I, bytes = want * (D + 3 * I) * 2 + 3 * 256;
    cudaError_t err = cudaMalloc(&r->grouped, bytes);
    if (err != cudaSuccess) {
        char b1[32];
        return olmoe_errorf("cuda replay: cannot allocate %s for %zu grouped rows: %s (use a smaller --chunk)",
                            olmoe_fmt_bytes((double)bytes, b1, sizeof b1), want, cudaGetErrorString(err));
    }
    size_t off = 0;
    r->xg = (olmoe_bf16 *)carve((char *)r->grouped, &off, want * D, 2);
    r->gu = (olmoe_bf16 *)carve((char *)r->grouped, &off, want * 2 * I, 2);
    r->act = (olmoe_bf16 *)carve((char *)r->grouped, &off, want * I, 2);
    r->cap = want;
    return 0;
}

/* the experts' GEMMs of one projection over the rows grouped by expert
 * (counts in h_first), as the engine runs them */
static int expert_gemms(cuda_replay *r, int kind, int n_out, int k_in, const olmoe_bf16 *W, const olmoe_bf16 *X,
                        olmoe_bf16 *Y) {
    return olmoe_cuda_expert_gemms_streams(&r->s, kind, r->E, r->h_first, n_out, k_in, W, X, Y);
}

/* the policy on the host, on every core: logits rows (ld apart) -> choices
 * uploaded, counts into h_first, experts per token into the output */
static int route_host(cuda_replay *r, const olmoe_policy *p, int l, int Kp, olmoe_replay_out *o) {
    cudaStream_t st = r->s.stream;
    int T = r->n, E = r->E, L = r->L;
    const float *lg;
    size_t ld;
    if (r->captured) {
        /* the last layer's choices may still be on their way up from h_ex */
        CUDA_TRY(cudaStreamSynchronize(st));
        lg = r->cap_logits + (size_t)l * E, ld = (size_t)L * E;
    } else {
        /* rounded to bf16 as the engine routes (and as the trace stores them) */
        CUDA_TRY(olmoe_cuda_round_bf16_rows(r->rl + (size_t)l * E, L * E, E, T, st));
        /* gathered on the device first: one plain copy down, not T short rows */
        CUDA_TRY(cudaMemcpy2DAsync(r->rlc, (size_t)E * 4, r->rl + (size_t)l * E, (size_t)L * E * 4, (size_t)E * 4, T,
                                   cudaMemcpyDeviceToDevice, st));
        CUDA_TRY(cudaMemcpyAsync(r->h_rl, r->rlc, (size_t)T * E * 4, cudaMemcpyDeviceToHost, st));
        CUDA_TRY(cudaStreamSynchronize(st));
        lg = r->h_rl, ld = (size_t)E;
    }
    if (olmoe_route_rows(r->pool, olmoe_policy_route_at, (void *)p, l, r->pos, lg, ld, T, E, Kp, r->h_ex, r->h_w, r->h_n) != 0)
        return -1;
    int32_t *cnt = r->h_first + 1;
    memset(r->h_first, 0, (size_t)(E + 1) * 4);
    for (int t = 0; t < T; t++) {
        int n = r->h_n[t];
        o->n_experts[(size_t)t * L + l] = (uint8_t)n;
        for (int j = 0; j < n; j++) cnt[r->h_ex[(size_t)t * Kp + j]]++;
    }
    for (int e = 0; e < E; e++) r->h_first[e + 1] += r->h_first[e];
    size_t tk = (size_t)T * Kp;
    CUDA_TRY(cudaMemcpyAsync(r->sel_e, r->h_ex, tk * 4, cudaMemcpyHostToDevice, st));
    CUDA_TRY(cudaMemcpyAsync(r->sel_w, r->h_w, tk * 4, cudaMemcpyHostToDevice, st));
    CUDA_TRY(cudaMemcpyAsync(r->sel_n, r->h_n, (size_t)T * 4, cudaMemcpyHostToDevice, st));
    CUDA_TRY(olmoe_cuda_bucket(r->sel_e, r->sel_w, r->sel_n, T, Kp, E, r->blk, r->first, r->perm_tok, r->perm_w,
                               r->slot, st));
    return 0;
}

static int engine_topk(const cuda_replay *r, const olmoe_policy *p) {
    return !r->captured && strcmp(p->family->name, "topk") == 0 && p->T == 1.0f;
}

/* OLMOE_REPLAY_HOST=1 routes every policy on the host (the reference) */
static int on_device(const cuda_replay *r, const olmoe_policy *p) {
    return !r->host_topk && olmoe_cuda_policy_supported(p, r->K);
}

/* on the GPU: top-k with T = 1 by the engine's own kernel (so replaying a
 * capture's top-k gives its bits back), any other policy by cuda_policy.cu;
 * then the grouping and the one read of the counts */
static int route_device(cuda_replay *r, const olmoe_policy *p, int Kp, int norm, int l) {
    cudaStream_t st = r->s.stream;
    int T = r->n, E = r->E, L = r->L;
    float *rl = r->rl + (size_t)l * E;
    if (engine_topk(r, p)) {
        CUDA_TRY(olmoe_cuda_route_topk(rl, L * E, E, Kp, norm, r->sel_e, r->sel_w, r->sel_n, T, st));
    } else {
        /* recomputed logits are rounded to bf16 as the engine routes; stored ones are as stored */
        if (!r->captured) CUDA_TRY(olmoe_cuda_round_bf16_rows(rl, L * E, E, T, st));
        if (olmoe_cuda_policy_route(&r->nulls, p, l, rl, L * E, T, Kp, r->sel_e, r->sel_w, r->sel_n, st) != 0)
            return olmoe_error_prefix("layer %d", l);
    }
    CUDA_TRY(olmoe_cuda_bucket(r->sel_e, r->sel_w, r->sel_n, T, Kp, E, r->blk, r->first, r->perm_tok, r->perm_w,
                               r->slot, st));
    CUDA_TRY(cudaMemcpyAsync(r->h_nl + (size_t)l * r->T, r->sel_n, (size_t)T * 4, cudaMemcpyDeviceToHost, st));
    CUDA_TRY(cudaMemcpyAsync(r->h_first, r->first, (size_t)(E + 1) * 4, cudaMemcpyDeviceToHost, st));
    CUDA_TRY(cudaStreamSynchronize(st));
    return 0;
}

static int cuda_run(olmoe_replay_backend *b, const olmoe_policy *p, olmoe_replay_out *o) {
    cuda_replay *r = (cuda_replay *)b->impl;
    olmoe_cuda_state *s = &r->s;
    const olmoe_config *c = &b->model->cfg;
    const olmoe_cuda_weights *W = &s->w;
    cudaStream_t st = s->stream;
    int T = r->n, L = r->L, E = r->E, D = r->D, I = r->I, V = r->V;
    float eps = (float)c->rms_norm_eps;
    int dev = on_device(r, p);
    int Kp = dev && engine_topk(r, p) ? p->k : olmoe_policy_max_experts(p);
    int norm = p->norm == OLMOE_NORM_SELECTED || p->model.norm_topk_prob;
    if (Kp < 1 || Kp > r->K)
        return olmoe_errorf("policy %s may choose %d experts; the backend was opened for %d", p->id, Kp, r->K);
    if (T == 0) return 0;

    CUDA_TRY(olmoe_cuda_embed_rmsnorm(r->tok, W->embed, W->final_norm, r->h, r->x, T, D, eps, st));
    for (int l = 0; l < L; l++) {
        const olmoe_cuda_layer *Wl = &W->layers[l];
        CUDA_TRY(olmoe_cuda_add_rmsnorm(r->h, r->res + (size_t)l * r->T * D, Wl->post_norm, r->x, T, D, eps, st));
        if (!r->captured && olmoe_cuda_gemm(s, OLMOE_G_ROUTER, T, r->x, D, Wl->router, r->rl + (size_t)l * E, L * E))
            return -1;
        if ((dev ? route_device(r, p, Kp, norm, l) : route_host(r, p, l, Kp, o)) != 0) return -1;
        int S = r->h_first[E];
        if (S < 0 || S > T * Kp) return olmoe_errorf("cuda replay: layer %d: %d grouped rows for %d tokens", l, S, T);
        for (int e = 0; e < E; e++) o->load[(size_t)l * E + e] += r->h_first[e + 1] - r->h_first[e];
        if (ensure_cap(r, (size_t)S) != 0) return -1;
        CUDA_TRY(olmoe_cuda_gather_rows(r->x, D, r->perm_tok, r->first + E, S, r->xg, st));
        if (expert_gemms(r, OLMOE_G_GATEUP, 2 * I, D, Wl->wgu, r->xg, r->gu) != 0) return -1;
        CUDA_TRY(olmoe_cuda_silu_mul(r->gu, I, r->first + E, S, r->act, st));
        if (expert_gemms(r, OLMOE_G_DOWN, D, I, Wl->wd, r->act, r->xg) != 0) return -1;
        /* h += the weighted sum; x = the final norm of h (only the last layer's is used) */
        CUDA_TRY(olmoe_cuda_combine_rmsnorm(r->h, r->xg, r->slot, r->sel_w, r->sel_n, Kp, W->final_norm, r->x, T, D,
                                            eps, st));
    }
    for (int c0 = 0; c0 < T; c0 += r->lch) {
        int nc = T - c0 < r->lch ? T - c0 : r->lch;
        if (olmoe_cuda_gemm(s, OLMOE_G_LMHEAD, nc, r->x + (size_t)c0 * D, D, W->lm_head, r->lbuf, V) != 0) return -1;
        CUDA_TRY(olmoe_cuda_lm_head_reduce(r->lbuf, V, nc, r->tgt + c0, r->nll + c0, r->am + c0, st));
    }
    CUDA_TRY(cudaMemcpyAsync(r->h_nll, r->nll, (size_t)T * 4, cudaMemcpyDeviceToHost, st));
    CUDA_TRY(cudaMemcpyAsync(r->h_am, r->am, (size_t)T * 4, cudaMemcpyDeviceToHost, st));
    CUDA_TRY(cudaStreamSynchronize(st));
    memcpy(o->nll, r->h_nll, (size_t)T * 4);
    if (dev) /* the counts the device routing chose, copied at each layer */
        for (int l = 0; l < L; l++)
            for (int t = 0; t < T; t++) o->n_experts[(size_t)t * L + l] = (uint8_t)r->h_nl[(size_t)l * r->T + t];
    memcpy(o->argmax, r->h_am, (size_t)T * 4);
    return 0;
}

extern "C" const olmoe_replay_backend_ops olmoe_replay_cuda_ops = {"cuda", cuda_open, cuda_load, cuda_run, cuda_close};
