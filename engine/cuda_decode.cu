/* cuda_decode.cu: incremental decoding on the CUDA engine (model.h,
 * olmoe_engine_decode_*; decode_impl.h's ops).
 *
 * Each layer's cache holds the fused q|k|v rows of every position so far,
 * after q/k norm, clamp and RoPE: the layout of the forward pass's qkv
 * buffer. A step's QKV GEMM writes its new rows straight into the cache and
 * the forward pass's own attention kernel then runs over the cache as one
 * window, so it computes attention for every row of the sequence (the
 * earlier rows' q are kept for that) and the step keeps its new rows. That
 * is O(length) rows of attention per step where O(1) would do, but each
 * row's attention is exactly what a full forward pass computes for it (the
 * kernel's work for a row does not depend on the window's length), so only
 * the GEMMs, whose algorithms cuBLASLt picks per shape, can make a step
 * differ from recomputation, and only in bf16 rounding. Everything after
 * attention is the forward pass's code on the step's rows: o_proj, the
 * fused norms, routing on the GPU (or through the hook on the host), the
 * expert GEMMs, the combine; then lm_head for the last row only.
 *
 * Memory: L x max_ctx x (QD + 2 KD) bf16 for the cache plus max_ctx x QD
 * for the attention output. */
#include "cuda_state.h"

#include <stdlib.h>
#include <string.h>

extern "C" {
#include "decode_impl.h"
}

typedef struct {
    olmoe_bf16 *cache; /* [L, C, QD + 2 KD] */
    olmoe_bf16 *att;   /* [C, QD] */
    int32_t *h_sel;    /* [L, 2K + 1]: the last row's experts, weights (float bits), count */
    uint16_t *h_logits; /* [V] bf16 */
} cuda_kv;

static int kv_open(olmoe_decode *d) {
    olmoe_engine *e = d->e;
    olmoe_cuda_state *s = (olmoe_cuda_state *)e->impl;
    const olmoe_config *c = &e->model->cfg;
    size_t L = c->num_hidden_layers, C = (size_t)d->cap, K = s->K, V = c->vocab_size;
    size_t QD = (size_t)c->num_attention_heads * c->head_dim, KD = (size_t)c->num_key_value_heads * c->head_dim;
    if (d->cap > s->C) return olmoe_errorf("cuda decode: %d positions, the engine's tables hold %d", d->cap, s->C);
    cuda_kv *kv = (cuda_kv *)xcalloc(1, sizeof *kv);
    d->impl = kv;
    CUDA_TRY(cudaSetDevice(s->device));
    CUDA_TRY(cudaMalloc((void **)&kv->cache, L * C * (QD + 2 * KD) * 2));
    CUDA_TRY(cudaMalloc((void **)&kv->att, C * QD * 2));
    kv->h_sel = (int32_t *)xmalloc(L * (2 * K + 1) * sizeof(int32_t));
    kv->h_logits = (uint16_t *)xmalloc(V * 2);
    return 0;
}

static void kv_close(olmoe_decode *d) {
    cuda_kv *kv = (cuda_kv *)d->impl;
    if (!kv) return;
    olmoe_cuda_state *s = (olmoe_cuda_state *)d->e->impl;
    cudaStreamSynchronize(s->stream);
    if (kv->cache) cudaFree(kv->cache);
    if (kv->att) cudaFree(kv->att);
    cudaGetLastError();
    free(kv->h_sel);
    free(kv->h_logits);
    free(kv);
    d->impl = NULL;
}

/* router GEMM, routing, the experts and their weighted sum (with the next
 * norm) for rows [0, n) of s->x, as olmoe_cuda_forward runs them; the last
 * row's choices are copied to kv->h_sel */
static int moe(olmoe_engine *e, olmoe_cuda_state *s, cuda_kv *kv, int l, int n) {
    const olmoe_config *c = &e->model->cfg;
    const int D = c->hidden_size, E = c->num_experts, L = c->num_hidden_layers, I = c->intermediate_size;
    const int K = s->K, LE = L * E;
    const float eps = (float)c->rms_norm_eps;
    const olmoe_cuda_layer *W = &s->w.layers[l];
    cudaStream_t st = s->stream;
    if (olmoe_cuda_gemm(s, OLMOE_G_ROUTER, n, s->x, D, W->router, s->rl + (size_t)l * E, LE) != 0) return -1;
    if (olmoe_cuda_route_layer(e, s, l, n, 0, NULL) != 0) return -1;
    CUDA_TRY(olmoe_cuda_bucket(s->sel_e, s->sel_w, s->sel_n, n, K, E, s->blk, s->first, s->perm_tok, s->perm_w,
                               s->slot, st));
    CUDA_TRY(cudaMemcpyAsync(s->h_first, s->first, (size_t)(E + 1) * sizeof(int32_t), cudaMemcpyDeviceToHost, st));
    int32_t *sel = kv->h_sel + (size_t)l * (2 * K + 1);
    size_t last = (size_t)(n - 1) * K;
    CUDA_TRY(cudaMemcpyAsync(sel, s->sel_e + last, (size_t)K * 4, cudaMemcpyDeviceToHost, st));
    CUDA_TRY(cudaMemcpyAsync(sel + K, s->sel_w + last, (size_t)K * 4, cudaMemcpyDeviceToHost, st));
    CUDA_TRY(cudaMemcpyAsync(sel + 2 * K, s->sel_n + (n - 1), 4, cudaMemcpyDeviceToHost, st));
    CUDA_TRY(cudaStreamSynchronize(st));
    int S = s->h_first[E];
    if (S < 0 || S > n * K) return olmoe_errorf("cuda decode: layer %d: %d grouped rows for %d tokens", l, S, n);
    CUDA_TRY(olmoe_cuda_gather_rows(s->x, D, s->perm_tok, s->first + E, S, s->xg, st));
    if (olmoe_cuda_expert_gemms(s, 0, E, 2 * I, D, W->wgu, s->xg, s->gu) != 0) return -1;
    CUDA_TRY(olmoe_cuda_silu_mul(s->gu, I, s->first + E, S, s->act, st));
    if (olmoe_cuda_expert_gemms(s, 1, E, D, I, W->wd, s->act, s->xg) != 0) return -1;
    const olmoe_bf16 *next = l + 1 < L ? s->w.layers[l + 1].input_norm : s->w.final_norm;
    CUDA_TRY(olmoe_cuda_combine_rmsnorm(s->h, s->xg, s->slot, s->sel_w, s->sel_n, K, next, s->x, n, D, eps, st));
    return 0;
}

static int kv_step(olmoe_decode *d, const int32_t *tokens, int n, olmoe_decode_io *io) {
    cuda_kv *kv = (cuda_kv *)d->impl;
    olmoe_engine *e = d->e;
    olmoe_cuda_state *s = (olmoe_cuda_state *)e->impl;
    const olmoe_config *c = &e->model->cfg;
    const int D = c->hidden_size, E = c->num_experts, L = c->num_hidden_layers, V = c->vocab_size;
    const int Hq = c->num_attention_heads, Hkv = c->num_key_value_heads, hd = c->head_dim;
    const int QD = Hq * hd, KD = Hkv * hd, LD = QD + 2 * KD, K = s->K, LE = L * E, past = d->len;
    const float eps = (float)c->rms_norm_eps, clip = c->has_clip_qkv ? (float)c->clip_qkv : 0.0f;
    const size_t C = (size_t)d->cap;
    cudaStream_t st = s->stream;

    /* token ids, positions past.., no targets, one window over the cache */
    int32_t *tok = s->h_io, *pos = tok + s->T, *tgt = pos + s->T, *woff = tgt + s->T, *wlen = woff + s->T;
    for (int i = 0; i < n; i++) tok[i] = tokens[i], pos[i] = past + i, tgt[i] = -1;
    woff[0] = 0, wlen[0] = past + n;
    CUDA_TRY(cudaMemcpyAsync(s->io, s->h_io, (size_t)5 * s->T * sizeof(int32_t), cudaMemcpyHostToDevice, st));
    const int32_t *d_tok = s->io, *d_pos = s->io + s->T, *d_tgt = s->io + 2 * s->T;
    const int32_t *d_woff = s->io + 3 * s->T, *d_wlen = s->io + 4 * s->T;

    CUDA_TRY(olmoe_cuda_embed_rmsnorm(d_tok, s->w.embed, s->w.layers[0].input_norm, s->h, s->x, n, D, eps, st));
    for (int l = 0; l < L; l++) {
        const olmoe_cuda_layer *W = &s->w.layers[l];
        olmoe_bf16 *cl = kv->cache + (size_t)l * C * LD, *rows = cl + (size_t)past * LD;
        if (olmoe_cuda_gemm(s, OLMOE_G_QKV, n, s->x, D, W->wqkv, rows, LD) != 0) return -1;
        CUDA_TRY(olmoe_cuda_qk_norm_rope(rows, LD, QD, KD, hd, W->q_norm, W->k_norm, s->cos_t, s->sin_t, d_pos, eps,
                                         clip, n, st));
        CUDA_TRY(olmoe_cuda_attention(cl, LD, Hq, Hkv, hd, kv->att, d_woff, d_wlen, 1, past + n, s->attn_variant, st));
        if (olmoe_cuda_gemm(s, OLMOE_G_O, n, kv->att + (size_t)past * QD, QD, W->wo, s->a, D) != 0) return -1;
        CUDA_TRY(olmoe_cuda_add_rmsnorm(s->h, s->a, W->post_norm, s->x, n, D, eps, st));
        if (moe(e, s, kv, l, n) != 0) return -1;
    }
    /* the head of the last row: s->x holds the final norm after the last combine */
    if (olmoe_cuda_gemm(s, OLMOE_G_LMHEAD, 1, s->x + (size_t)(n - 1) * D, D, s->w.lm_head, s->lbuf, V) != 0)
        return -1;
    CUDA_TRY(olmoe_cuda_lm_head_reduce(s->lbuf, V, 1, d_tgt, s->nll, s->am, st));
    int32_t am = -1;
    CUDA_TRY(cudaMemcpyAsync(&am, s->am, 4, cudaMemcpyDeviceToHost, st));
    if (io->logits) CUDA_TRY(cudaMemcpyAsync(kv->h_logits, s->lbuf, (size_t)V * 2, cudaMemcpyDeviceToHost, st));
    if (io->router_logits)
        CUDA_TRY(cudaMemcpyAsync(io->router_logits, s->rl + (size_t)(n - 1) * LE, (size_t)LE * sizeof(float),
                                 cudaMemcpyDeviceToHost, st));
    CUDA_TRY(cudaStreamSynchronize(st));
    io->argmax = am;
    if (io->logits)
        for (int v = 0; v < V; v++) {
            uint32_t u = (uint32_t)kv->h_logits[v] << 16;
            memcpy(&io->logits[v], &u, 4);
        }
    for (int l = 0; l < L; l++) {
        const int32_t *sel = kv->h_sel + (size_t)l * (2 * K + 1);
        int k = sel[2 * K];
        if (k < 1 || k > K) return olmoe_errorf("cuda decode: layer %d: %d experts chosen", l, k);
        if (io->n_experts) io->n_experts[l] = k;
        for (int j = 0; j < k; j++) {
            if (io->experts) io->experts[(size_t)l * K + j] = sel[j];
            if (io->weights) memcpy(&io->weights[(size_t)l * K + j], &sel[K + j], 4);
        }
    }
    return 0;
}

extern "C" const olmoe_decode_ops olmoe_decode_cuda_ops = {"cuda", kv_open, kv_step, kv_close};
