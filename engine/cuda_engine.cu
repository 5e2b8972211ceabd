/* cuda_engine.cu: the CUDA engine's life cycle (engine_impl.h's ops): picks
 * the device, uploads the weights once in bf16, sizes one activation arena
 * for max_tokens rows, creates the cuBLAS handle and streams, and prints
 * the memory it holds. The forward pass is cuda_forward.cu.
 *
 * Environment (for measurements, bench/NOTES.md): OLMOE_CUDA_ATTN=plain|flash
 * forces an attention kernel, OLMOE_CUDA_EXPERTS=grouped runs the experts
 * through cublasGemmGroupedBatchedEx instead of one GEMM per expert,
 * OLMOE_CUDA_PROFILE=1 times each phase with events and prints a table at
 * close, OLMOE_CUDA_STREAMS=N (1..8, default 4) sets how many streams run
 * the experts' GEMMs side by side. */
#include "cuda_engine.h"
#include "cuda_state.h"

#include <stdlib.h>
#include <string.h>

extern "C" {
#include "common.h"
#include "ops_cpu.h"
}

extern "C" int olmoe_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* no driver or no device: not an error here */
        return 0;
    }
    return n;
}

/* two passes over the same layout: the first sizes the arena, the second carves it */
typedef struct {
    char *base;
    size_t off;
} carver;

static void *take(carver *cv, size_t n, size_t size) {
    size_t at = (cv->off + 255) / 256 * 256;
    cv->off = at + (n ? n : 1) * size;
    return cv->base ? cv->base + at : NULL;
}

static void layout(olmoe_cuda_state *s, carver *cv, const olmoe_config *c) {
    size_t T = s->T, C = s->C, K = s->K, D = c->hidden_size, I = c->intermediate_size, E = c->num_experts;
    size_t L = c->num_hidden_layers, V = c->vocab_size, half = c->head_dim / 2;
    size_t QD = (size_t)c->num_attention_heads * c->head_dim, KD = (size_t)c->num_key_value_heads * c->head_dim;
    size_t lch = T < OLMOE_CUDA_LM_CHUNK ? T : OLMOE_CUDA_LM_CHUNK;
    s->h = (olmoe_bf16 *)take(cv, T * D, 2);
    s->x = (olmoe_bf16 *)take(cv, T * D, 2);
    s->qkv = (olmoe_bf16 *)take(cv, T * (QD + 2 * KD), 2);
    s->att = (olmoe_bf16 *)take(cv, T * QD, 2);
    s->a = (olmoe_bf16 *)take(cv, T * D, 2);
    s->rl = (float *)take(cv, T * L * E, 4);
    s->sel_e = (int32_t *)take(cv, T * K, 4);
    s->sel_w = (float *)take(cv, T * K, 4);
    s->sel_n = (int32_t *)take(cv, T, 4);
    s->slot = (int32_t *)take(cv, T * K, 4);
    s->blk = (int32_t *)take(cv, (size_t)olmoe_cuda_bucket_scratch((int)T, (int)E), 4);
    s->first = (int32_t *)take(cv, E + 1, 4);
    s->perm_tok = (int32_t *)take(cv, T * K, 4);
    s->perm_w = (float *)take(cv, T * K, 4);
    s->xg = (olmoe_bf16 *)take(cv, T * K * D, 2);
    s->gu = (olmoe_bf16 *)take(cv, T * K * 2 * I, 2);
    s->act = (olmoe_bf16 *)take(cv, T * K * I, 2);
    s->lbuf = (olmoe_bf16 *)take(cv, lch * V, 2);
    s->nll = (float *)take(cv, T, 4);
    s->am = (int32_t *)take(cv, T, 4);
    s->io = (int32_t *)take(cv, 5 * T, 4);
    s->cos_t = (float *)take(cv, C * half, 4);
    s->sin_t = (float *)take(cv, C * half, 4);
    s->gptr = (const void **)take(cv, 6 * E, sizeof(void *));
}

static void release(olmoe_cuda_state *s) {
    if (s->stream) cudaStreamSynchronize(s->stream);
    if (s->copy_stream) cudaStreamSynchronize(s->copy_stream);
    for (int i = 0; i < s->n_pins; i++) cudaHostUnregister(s->pins[i].p);
    olmoe_cuda_gemm_free(s);
    if (s->blas) cublasDestroy(s->blas);
    if (s->arena) cudaFree(s->arena);
    if (s->workspace) cudaFree(s->workspace);
    if (s->stash_res) cudaFree(s->stash_res);
    if (s->stash_hid) cudaFree(s->stash_hid);
    if (s->h_io) cudaFreeHost(s->h_io);
    if (s->h_first) cudaFreeHost(s->h_first);
    if (s->h_rl) cudaFreeHost(s->h_rl);
    if (s->h_sel) cudaFreeHost(s->h_sel);
    if (s->h_gptr) cudaFreeHost((void *)s->h_gptr);
    for (int i = 0; i < s->cap_ev; i++) cudaEventDestroy(s->ev[i]);
    free(s->ev);
    free(s->ev_phase);
    if (s->ev_rl) cudaEventDestroy(s->ev_rl);
    if (s->ev_res) cudaEventDestroy(s->ev_res); 
    olmoe_pool_close(s->pool);
    olmoe_cuda_route_release(s);
    if (s->ev_fork) cudaEventDestroy(s->ev_fork);
    for (int i = 1; i < s->n_streams; i++) {
        if (s->xs[i]) cudaStreamSynchronize(s->xs[i]), cudaStreamDestroy(s->xs[i]);
        if (s->ev_join[i]) cudaEventDestroy(s->ev_join[i]);
    }
    if (s->stream) cudaStreamDestroy(s->stream);
    if (s->copy_stream) cudaStreamDestroy(s->copy_stream);
    olmoe_cuda_weights_free(&s->w);
    cudaGetLastError();
    free(s);
}

static int check_shapes(const olmoe_engine *e) {
    const olmoe_config *c = &e->model->cfg;
    if (c->num_experts > 256) return olmoe_errorf("cuda engine: %d experts; at most 256 supported", c->num_experts);
    if (e->top_k > 64) return olmoe_errorf("cuda engine: top-k %d; at most 64 supported", e->top_k);
    if (c->head_dim % 2) return olmoe_errorf("cuda engine: odd head_dim %d", c->head_dim);
    if ((double)e->max_tokens * e->top_k * c->hidden_size > 2e9 || (double)e->max_tokens * c->vocab_size > 2e12)
        return olmoe_errorf("cuda engine: %d tokens per forward call is too many", e->max_tokens);
    return 0;
}

/* the measurement switches of the environment (this file's header) */
static int read_env(olmoe_cuda_state *s) {
    const char *v = getenv("OLMOE_CUDA_ATTN");
    s->attn_variant = v && !strcmp(v, "plain") ? OLMOE_ATTN_PLAIN : v && !strcmp(v, "flash") ? OLMOE_ATTN_FLASH : OLMOE_ATTN_AUTO;
    v = getenv("OLMOE_CUDA_EXPERTS");
    s->grouped = v && !strcmp(v, "grouped");
    v = getenv("OLMOE_CUDA_PROFILE");
    s->profile = v && *v && strcmp(v, "0");
    return olmoe_cuda_streams_env(&s->n_streams);
}

/* the activation arena for max_tokens rows and max_ctx positions, carved */
static int open_arena(olmoe_engine *e, olmoe_cuda_state *s) {
    const olmoe_config *c = &e->model->cfg;
    s->T = e->max_tokens, s->C = e->max_ctx, s->K = e->top_k;
    carver cv = {NULL, 0};
    layout(s, &cv, c);
    s->arena_bytes = cv.off;
    if (olmoe_cuda_alloc(&s->arena, s->arena_bytes, "cuda", " (try a smaller --batch)",
                         "of activations for %d tokens", s->T) != 0)
        return -1;
    cv.base = (char *)s->arena;
    cv.off = 0;
    layout(s, &cv, c);
    return 0;
}

/* the streams and events of a forward pass, the host routing threads
 * (route_threads, or OLMOE_CUDA_ROUTE_THREADS) and the cuBLAS handle */
static int open_streams(olmoe_engine *e, olmoe_cuda_state *s) {
    CUDA_TRY(cudaStreamCreateWithFlags(&s->copy_stream, cudaStreamNonBlocking));
    CUDA_TRY(cudaEventCreateWithFlags(&s->ev_rl, cudaEventDisableTiming));
    /* ---- residuals copied out per layer; host routing threads ---- */
    CUDA_TRY(cudaEventCreateWithFlags(&s->ev_res, cudaEventDisableTiming));
    long rt = e->route_threads;
    const char *v = getenv("OLMOE_CUDA_ROUTE_THREADS");
    if (v && olmoe_parse_long(v, -1, 4096, &rt) != 0)
        return olmoe_errorf("OLMOE_CUDA_ROUTE_THREADS=%s: expected -1 (every core) to 4096", v);
    if (rt < 0 || rt > 1) s->pool = olmoe_pool_open((int)rt);
    return olmoe_cuda_compute_open(s, &e->model->cfg);
}

/* pinned host staging, and the RoPE angles in fp32 as transformers computes
 * them, once for max_ctx */
static int host_and_rope(olmoe_cuda_state *s, const olmoe_config *c) {
    size_t E = c->num_experts, T = s->T;
    CUDA_TRY(cudaHostAlloc((void **)&s->h_io, 5 * T * sizeof(int32_t), cudaHostAllocDefault));
    CUDA_TRY(cudaHostAlloc((void **)&s->h_first, (E + 1) * sizeof(int32_t), cudaHostAllocDefault));
    CUDA_TRY(cudaHostAlloc((void **)&s->h_gptr, 6 * E * sizeof(void *), cudaHostAllocDefault));
    size_t half = c->head_dim / 2, n = (size_t)s->C * half;
    float *ct = (float *)xmalloc(2 * n * sizeof(float));
    olmoe_rope_table(s->C, c->head_dim, c->rope_theta, ct, ct + n);
    cudaError_t err = cudaMemcpy(s->cos_t, ct, n * sizeof(float), cudaMemcpyHostToDevice);
    if (err == cudaSuccess) err = cudaMemcpy(s->sin_t, ct + n, n * sizeof(float), cudaMemcpyHostToDevice);
    free(ct);
    CUDA_TRY(err);
    return 0;
}

static int open_state(olmoe_engine *e, olmoe_cuda_state *s) {
    CUDA_TRY(cudaSetDevice(s->device));
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, s->device));
    snprintf(e->device, sizeof e->device, "cuda:%.80s", prop.name);
    e->compute_dtype = "bfloat16";
    if (read_env(s) != 0) return -1;

    size_t free0 = 0, total = 0;
    CUDA_TRY(cudaMemGetInfo(&free0, &total));
    double t0 = olmoe_now();
    if (olmoe_cuda_weights_upload(e->model, &s->w) != 0) return -1;
    double t_up = olmoe_now() - t0;
    if (open_arena(e, s) != 0 || open_streams(e, s) != 0 || host_and_rope(s, &e->model->cfg) != 0) return -1;

    size_t free1 = 0;
    CUDA_TRY(cudaMemGetInfo(&free1, &total));
    e->activation_bytes = s->arena_bytes;
    char b1[32], b2[32], b3[32], b4[32];
    notef("%s: weights %s in bf16 (uploaded in %.1f s), activations %s for %d tokens, GPU memory in use %s of %s",
          e->device, olmoe_fmt_bytes((double)s->w.bytes, b1, sizeof b1), t_up,
          olmoe_fmt_bytes((double)s->arena_bytes, b2, sizeof b2), s->T,
          olmoe_fmt_bytes((double)(total - free1), b3, sizeof b3), olmoe_fmt_bytes((double)total, b4, sizeof b4));
    (void)free0;
    return 0;
}

static int cuda_open(olmoe_engine *e) {
    if (olmoe_cuda_check_arch(&e->model->cfg, "the CUDA engine") != 0 || check_shapes(e) != 0) return -1;
    olmoe_cuda_state *s = (olmoe_cuda_state *)xcalloc(1, sizeof *s);
    const char *name = e->device[0] ? e->device : "cuda"; /* "cuda" or "cuda:N", as asked */
    if (olmoe_cuda_pick_device(name, &s->device) != 0 || open_state(e, s) != 0)
        return olmoe_cuda_open_failed(release, s);
    e->impl = s;
    return 0;
}

static void print_profile(olmoe_cuda_state *s) {
    static const char *names[PH_COUNT] = {"norms",      "qkv gemm", "qk norm+rope", "attention", "o gemm",
                                          "router gemm", "route",    "host sync",    "gather",    "gate_up gemms",
                                          "silu*up",    "down gemms", "combine+norm", "lm_head gemm", "head reduce",
                                          "copies"};
    double tot = 0;
    for (int i = 0; i < PH_COUNT; i++) tot += s->phase_ms[i];
    if (s->n_forward == 0 || tot <= 0) return;
    fprintf(stderr, "cuda profile: %ld forward calls, %ld rows, %.2f ms per call (GPU), %.2f ms per call issuing "
            "the experts' GEMMs (host), %d streams\n", s->n_forward, s->n_rows, tot / s->n_forward,
            1e3 * s->host_expert_s / s->n_forward, s->n_streams);
    for (int i = 0; i < PH_COUNT; i++)
        fprintf(stderr, "  %-14s %9.3f ms/call %6.1f%%\n", names[i], s->phase_ms[i] / s->n_forward,
                100.0 * s->phase_ms[i] / tot);
}

static void cuda_close(olmoe_engine *e) {
    olmoe_cuda_state *s = (olmoe_cuda_state *)e->impl;
    if (!s) return;
    if (s->profile) print_profile(s);
    olmoe_cuda_gemm_report(s);
    release(s);
    e->impl = NULL;
}

/* Whether [p, p+n) lies in a buffer the caller handed to
 * olmoe_engine_host_buffer (page-locked at that call): copies into it run
 * asynchronously. Caller memory is never locked otherwise: a locked page
 * range that reached into a neighbouring allocation made copies into that
 * neighbour fail ("invalid argument": a host range half locked, half not). */
int olmoe_cuda_pinned(olmoe_cuda_state *s, const void *p, size_t n) {
    uintptr_t a = (uintptr_t)p, b = a + n;
    for (int i = 0; i < s->n_pins; i++) {
        uintptr_t pa = (uintptr_t)s->pins[i].p, pb = pa + s->pins[i].n;
        if (a >= pa && b <= pb) return 1;
    }
    return 0;
}

static int cuda_host_buffer(olmoe_engine *e, void *p, size_t n) {
    olmoe_cuda_state *s = (olmoe_cuda_state *)e->impl;
    if (s->n_pins == OLMOE_CUDA_MAX_PINS) return 0;
    if (cudaHostRegister(p, n, cudaHostRegisterDefault) != cudaSuccess) {
        cudaGetLastError(); /* not fatal: copies stay synchronous */
        return 0;
    }
    s->pins[s->n_pins].p = p;
    s->pins[s->n_pins].n = n;
    s->n_pins++;
    return 1;
}

void olmoe_cuda_mark(olmoe_cuda_state *s, int phase) {
    if (!s->profile) return;
    if (s->n_ev == s->cap_ev) {
        s->cap_ev = s->cap_ev ? 2 * s->cap_ev : 512;
        s->ev = (cudaEvent_t *)xrealloc(s->ev, s->cap_ev * sizeof *s->ev);
        s->ev_phase = (int *)xrealloc(s->ev_phase, s->cap_ev * sizeof *s->ev_phase);
        for (int i = s->n_ev; i < s->cap_ev; i++) cudaEventCreate(&s->ev[i]);
    }
    cudaEventRecord(s->ev[s->n_ev], s->stream);
    s->ev_phase[s->n_ev++] = phase;
}

/* bf16_residuals = 1: attn_residual_bf16 is copied from the device as it is */
extern "C" const olmoe_engine_ops olmoe_engine_cuda_ops = {"cuda", cuda_open, olmoe_cuda_forward, cuda_close, 1,
                                                                cuda_host_buffer};
