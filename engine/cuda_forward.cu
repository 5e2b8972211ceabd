/* cuda_forward.cu: the OLMoE forward pass on the GPU (docs/DESIGN.md §4) over a
 * batch of windows stacked into T rows, in bf16 with fp32 accumulation.
 *
 * Per layer: one GEMM for q, k, v (stacked weights); q/k norm + clip + RoPE
 * fused; flash attention; o_proj GEMM; residual add fused with the
 * post-attention norm; router GEMM in fp32 straight into the [T, L, E]
 * buffer the trace gets; routing on the GPU (or through the caller's hook on
 * the host); the choices grouped by expert; ONE host read of the 65 counts
 * (the only synchronisation of a layer); gather; per-expert GEMMs issued
 * back to back (or one grouped GEMM); SiLU * up; per-expert down GEMMs; the
 * weighted sum gathered per token in slot order, fused with the residual
 * add and the next norm. Then lm_head in chunks of rows with the NLL and
 * argmax reduced on the GPU. The last layer's router logits go to the host
 * on a second stream while the last experts and the head run.
 *
 * Nothing here uses floating-point atomics and cuBLAS is deterministic on
 * one stream, so the same input gives the same bits. */
#include "cuda_state.h"

#include <stdlib.h>
#include <string.h>

#define MARK(s, ph) olmoe_cuda_mark((s), (ph))

/* Y rows of expert x = X rows of expert x . W[x]^T for every expert that got
 * rows (first: [E + 1] bucket starts), one GEMM each, round-robin over the
 * streams. fork: the other streams wait for what the main stream did so far;
 * join: the main stream waits for their GEMMs. The GEMMs are independent, so
 * the bits do not depend on how they interleave. */
int olmoe_cuda_expert_gemms_streams(olmoe_cuda_state *s, int kind, int E, const int32_t *first, int n_out,
                                    int k_in, const olmoe_bf16 *W, const olmoe_bf16 *X, olmoe_bf16 *Y) {
    int ns = s->n_streams;
    if (ns > 1) {
        CUDA_TRY(cudaEventRecord(s->ev_fork, s->stream));
        for (int i = 1; i < ns; i++) CUDA_TRY(cudaStreamWaitEvent(s->xs[i], s->ev_fork, 0));
    }
    for (int x = 0, i = 0; x < E; x++) {
        int cnt = first[x + 1] - first[x];
        if (cnt <= 0) continue;
        if (olmoe_cuda_gemm_on(s, i, kind, cnt, X + (size_t)first[x] * k_in, k_in, W + (size_t)x * n_out * k_in,
                               Y + (size_t)first[x] * n_out, n_out) != 0)
            return -1;
        i = (i + 1) % ns;
    }
    for (int i = 1; i < ns; i++) {
        CUDA_TRY(cudaEventRecord(s->ev_join[i], s->xs[i]));
        CUDA_TRY(cudaStreamWaitEvent(s->stream, s->ev_join[i], 0));
    }
    return 0;
}

/* the experts' GEMMs for one projection: Y rows of expert x = X rows of
 * expert x . W[x]^T, for the experts that got rows (counts in h_first) */
int olmoe_cuda_expert_gemms(olmoe_cuda_state *s, int which, int E, int n_out, int k_in, const olmoe_bf16 *W,
                            const olmoe_bf16 *X, olmoe_bf16 *Y) {
    const int32_t *first = s->h_first;
    if (!s->grouped) {
        int kind = which == 0 ? OLMOE_G_GATEUP : OLMOE_G_DOWN;
        double t0 = olmoe_now();
        int rc = olmoe_cuda_expert_gemms_streams(s, kind, E, first, n_out, k_in, W, X, Y);
        s->host_expert_s += olmoe_now() - t0;
        return rc;
    }
    enum { G = 256 };
    static cublasOperation_t ta[G], tb[G];
    static int m[G], n[G], k[G], lda[G], ldb[G], ldc[G], gs[G];
    static float alpha[G], beta[G];
    const void **hp = s->h_gptr + (size_t)which * 3 * E, **dp = s->gptr + (size_t)which * 3 * E;
    int g = 0;
    for (int x = 0; x < E; x++) {
        int cnt = first[x + 1] - first[x];
        if (cnt <= 0) continue;
        hp[g] = W + (size_t)x * n_out * k_in;
        hp[E + g] = X + (size_t)first[x] * k_in;
        hp[2 * E + g] = Y + (size_t)first[x] * n_out;
        ta[g] = CUBLAS_OP_T, tb[g] = CUBLAS_OP_N;
        m[g] = n_out, n[g] = cnt, k[g] = k_in, lda[g] = k_in, ldb[g] = k_in, ldc[g] = n_out, gs[g] = 1;
        alpha[g] = 1.0f, beta[g] = 0.0f;
        g++;
    }
    if (g == 0) return 0;
    CUDA_TRY(cudaMemcpyAsync((void *)dp, hp, 3 * (size_t)E * sizeof(void *), cudaMemcpyHostToDevice, s->stream));
    CUBLAS_TRY(cublasGemmGroupedBatchedEx(s->blas, ta, tb, m, n, k, alpha, dp, CUDA_R_16BF, lda, dp + E, CUDA_R_16BF,
                                          ldb, beta, (void *const *)(dp + 2 * E), CUDA_R_16BF, ldc, g, gs,
                                          CUBLAS_COMPUTE_32F));
    return 0;
}

/* a routing hook that is not the default top-k runs on the host, per token,
 * on the bf16-rounded logits; its choices are checked as the CPU engine does */
int olmoe_cuda_route_on_host(olmoe_engine *e, olmoe_cuda_state *s, int l, int T, const int64_t *pos) {
    const olmoe_config *c = &e->model->cfg;
    int E = c->num_experts, L = c->num_hidden_layers, K = s->K;
    float *rl = s->rl + (size_t)l * E;
    if (!s->h_rl) {
        CUDA_TRY(cudaHostAlloc((void **)&s->h_rl, (size_t)s->T * E * sizeof(float), cudaHostAllocDefault));
        CUDA_TRY(cudaHostAlloc((void **)&s->h_sel, ((size_t)2 * s->T * K + s->T) * sizeof(int32_t),
                               cudaHostAllocDefault));
    }
    CUDA_TRY(olmoe_cuda_round_bf16_rows(rl, L * E, E, T, s->stream));
    CUDA_TRY(cudaMemcpy2DAsync(s->h_rl, (size_t)E * sizeof(float), rl, (size_t)L * E * sizeof(float),
                               (size_t)E * sizeof(float), T, cudaMemcpyDeviceToHost, s->stream));
    CUDA_TRY(cudaStreamSynchronize(s->stream));
    int32_t *ex = s->h_sel, *nsel = s->h_sel + 2 * (size_t)s->T * K;
    float *wt = (float *)(s->h_sel + (size_t)s->T * K);
    /* on s->pool's threads when the caller allowed it */
    if (olmoe_route_rows(s->pool, e->route, e->route_ctx, l, pos, s->h_rl, (size_t)E, T, E, K, ex, wt, nsel) != 0)
        return -1;
    size_t tk = (size_t)T * K;
    CUDA_TRY(cudaMemcpyAsync(s->sel_e, ex, tk * 4, cudaMemcpyHostToDevice, s->stream));
    CUDA_TRY(cudaMemcpyAsync(s->sel_w, wt, tk * 4, cudaMemcpyHostToDevice, s->stream));
    CUDA_TRY(cudaMemcpyAsync(s->sel_n, nsel, (size_t)T * 4, cudaMemcpyHostToDevice, s->stream));
    return 0;
}


/* bf16 device rows [n, width] (row stride = width) to float host rows */
static int stash_to_host(olmoe_cuda_state *s, const olmoe_bf16 *src, size_t elems, float *dst) {
    uint16_t *tmp = (uint16_t *)xmalloc(elems * 2);
    cudaError_t err = cudaMemcpyAsync(tmp, src, elems * 2, cudaMemcpyDeviceToHost, s->stream);
    if (err == cudaSuccess) err = cudaStreamSynchronize(s->stream);
    for (size_t i = 0; err == cudaSuccess && i < elems; i++) {
        uint32_t u = (uint32_t)tmp[i] << 16;
        memcpy(&dst[i], &u, 4);
    }
    free(tmp);
    CUDA_TRY(err);
    return 0;
}

static int ensure_stash(olmoe_bf16 **p, size_t elems) {
    if (!*p) CUDA_TRY(cudaMalloc((void **)p, elems * 2));
    return 0;
}

/* lm_head over chunks of rows, NLL and argmax on the GPU; full logits only
 * for windows that asked for them */
static int head(olmoe_engine *e, olmoe_cuda_state *s, olmoe_window_io *w, int nw, int T, const int32_t *d_tgt,
                int want_logits) {
    const olmoe_config *c = &e->model->cfg;
    int D = c->hidden_size, V = c->vocab_size;
    int lch = s->T < OLMOE_CUDA_LM_CHUNK ? s->T : OLMOE_CUDA_LM_CHUNK;
    uint16_t *tmp = want_logits ? (uint16_t *)xmalloc((size_t)lch * V * 2) : NULL;
    for (int c0 = 0; c0 < T; c0 += lch) {
        int nc = T - c0 < lch ? T - c0 : lch;
        if (olmoe_cuda_gemm(s, OLMOE_G_LMHEAD, nc, s->x + (size_t)c0 * D, D, s->w.lm_head, s->lbuf, V) != 0) goto fail;
        MARK(s, PH_LMHEAD);
        cudaError_t rc = olmoe_cuda_lm_head_reduce(s->lbuf, V, nc, d_tgt + c0, s->nll + c0, s->am + c0, s->stream);
        if (rc != cudaSuccess) {
            olmoe_errorf("cuda: lm_head reduce: %s", cudaGetErrorString(rc));
            goto fail;
        }
        MARK(s, PH_HEADRED);
        if (!want_logits) continue;
        if (cudaMemcpyAsync(tmp, s->lbuf, (size_t)nc * V * 2, cudaMemcpyDeviceToHost, s->stream) != cudaSuccess ||
            cudaStreamSynchronize(s->stream) != cudaSuccess) {
            olmoe_errorf("cuda: copying logits: %s", cudaGetErrorString(cudaGetLastError()));
            goto fail;
        }
        for (int b = 0, off = 0; b < nw; off += w[b].n, b++) {
            if (!w[b].logits) continue;
            for (int r = off > c0 ? off : c0; r < off + w[b].n && r < c0 + nc; r++)
                for (int v = 0; v < V; v++) {
                    uint32_t u = (uint32_t)tmp[(size_t)(r - c0) * V + v] << 16;
                    memcpy(&w[b].logits[(size_t)(r - off) * V + v], &u, 4);
                }
        }
    }
    free(tmp);
    return 0;
fail:
    free(tmp);
    return -1;
}

/* router logits of every window to the caller, on the copy stream once the
 * last layer's routing is done (early), or on the main stream at the end */
static int copy_router_logits(olmoe_cuda_state *s, olmoe_window_io *w, int nw, int LE, cudaStream_t st) {
    for (int b = 0, off = 0; b < nw; off += w[b].n, b++)
        if (w[b].router_logits)
            CUDA_TRY(cudaMemcpyAsync(w[b].router_logits, s->rl + (size_t)off * LE, (size_t)w[b].n * LE * sizeof(float),
                                     cudaMemcpyDeviceToHost, st));
    return 0;
}

/* ---- bf16 attention residuals straight to the caller ---- */
/* whether every window's bf16 residual buffer lies in one pinned range */
static int residual_bf16_pinned(olmoe_cuda_state *s, olmoe_window_io *w, int nw, size_t LD) {
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    size_t sum = 0;
    for (int b = 0; b < nw; b++) {
        if (!w[b].attn_residual_bf16) continue;
        uintptr_t a = (uintptr_t)w[b].attn_residual_bf16, z = a + (size_t)w[b].n * LD * 2;
        lo = a < lo ? a : lo;
        hi = z > hi ? z : hi;
        sum += z - a;
    }
    if (!sum || hi - lo > 2 * sum) return 0;
    return olmoe_cuda_pinned(s, (const void *)lo, hi - lo);
}

/* layer l's stashed residual rows of every window into its bf16 buffer, on
 * the copy stream once the main stream has stashed them: the copies run
 * beside the next layers */
static int residual_bf16_layer(olmoe_cuda_state *s, olmoe_window_io *w, int nw, int l, int L, int D) {
    CUDA_TRY(cudaEventRecord(s->ev_res, s->stream));
    CUDA_TRY(cudaStreamWaitEvent(s->copy_stream, s->ev_res, 0));
    size_t pitch = (size_t)L * D * 2;
    for (int b = 0, off = 0; b < nw; off += w[b].n, b++)
        if (w[b].attn_residual_bf16)
            CUDA_TRY(cudaMemcpy2DAsync(w[b].attn_residual_bf16 + (size_t)l * D, pitch,
                                       s->stash_res + ((size_t)off * L + l) * D, pitch, (size_t)D * 2, w[b].n,
                                       cudaMemcpyDeviceToHost, s->copy_stream));
    return 0;
}
/* ---- end of bf16 residuals ---- */

/* whether every window's router logits lie in one pinned range */
static int router_logits_pinned(olmoe_cuda_state *s, olmoe_window_io *w, int nw, int LE) {
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    size_t sum = 0;
    for (int b = 0; b < nw; b++) {
        if (!w[b].router_logits) continue;
        uintptr_t a = (uintptr_t)w[b].router_logits, z = a + (size_t)w[b].n * LE * sizeof(float);
        lo = a < lo ? a : lo;
        hi = z > hi ? z : hi;
        sum += z - a;
    }
    if (!sum || hi - lo > 2 * sum) return 0; /* scattered buffers: not worth pinning */
    return olmoe_cuda_pinned(s, (const void *)lo, hi - lo);
}

static void profile_collect(olmoe_cuda_state *s, int T) {
    if (!s->profile) return;
    for (int i = 1; i < s->n_ev; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, s->ev[i - 1], s->ev[i]) == cudaSuccess && s->ev_phase[i] >= 0)
            s->phase_ms[s->ev_phase[i]] += ms;
    }
    cudaGetLastError();
    s->n_ev = 0;
    s->n_forward++;
    s->n_rows += T;
}

/* one forward call: its windows stacked into T rows, and what they ask for */
typedef struct {
    olmoe_window_io *w;
    int nw, T, max_len;
    int want_res, want_hid, want_logits, want_routes;
    int early;     /* router logits copied out during the last layer (pinned) */
    int res_early; /* bf16 residuals copied out layer by layer (pinned) */
    const int32_t *woff; /* host [nw]: each window's first row */
    const int32_t *d_tok, *d_pos, *d_tgt, *d_woff, *d_wlen; /* device [T] each */
} fwd_rows;

/* token ids, positions, next-token targets and windows, in one upload; the
 * stashes the windows ask for, and whether their outputs are pinned */
static int upload_rows(olmoe_cuda_state *s, const olmoe_config *c, olmoe_window_io *w, int nw, fwd_rows *r) {
    const int D = c->hidden_size, L = c->num_hidden_layers, LE = L * c->num_experts;
    cudaStream_t st = s->stream;
    int32_t *tok = s->h_io, *pos = tok + s->T, *tgt = pos + s->T, *woff = tgt + s->T, *wlen = woff + s->T;
    memset(r, 0, sizeof *r);
    r->w = w, r->nw = nw, r->woff = woff;
    for (int b = 0; b < nw; b++) {
        int n = w[b].n;
        for (int i = 0; i < n; i++) {
            tok[r->T + i] = w[b].tokens[i];
            pos[r->T + i] = i;
            tgt[r->T + i] = i + 1 < n ? w[b].tokens[i + 1] : -1;
        }
        woff[b] = r->T, wlen[b] = n;
        r->T += n;
        r->max_len = n > r->max_len ? n : r->max_len;
        r->want_res |= w[b].attn_residual != NULL || w[b].attn_residual_bf16 != NULL;
        r->want_hid |= w[b].hidden != NULL;
        r->want_logits |= w[b].logits != NULL;
    }
    CUDA_TRY(cudaMemcpyAsync(s->io, s->h_io, (size_t)5 * s->T * sizeof(int32_t), cudaMemcpyHostToDevice, st));
    r->d_tok = s->io, r->d_pos = s->io + s->T, r->d_tgt = s->io + 2 * s->T;
    r->d_woff = s->io + 3 * s->T, r->d_wlen = s->io + 4 * s->T;
    if (r->want_res && ensure_stash(&s->stash_res, (size_t)s->T * L * D) != 0) return -1;
    if (r->want_hid && ensure_stash(&s->stash_hid, (size_t)s->T * (L + 1) * D) != 0) return -1;
    r->early = router_logits_pinned(s, w, nw, LE);
    r->res_early = r->want_res && residual_bf16_pinned(s, w, nw, (size_t)L * D);
    for (int b = 0; b < nw; b++) r->want_routes |= w[b].n_experts != NULL || w[b].experts != NULL;
    return 0;
}

/* layer l's attention sublayer: h (stashed first when asked) through q, k, v,
 * q/k norm + RoPE, attention and o_proj into a (stashed when asked), then h
 * += a fused with the post-attention norm into x */
static int attention_block(olmoe_cuda_state *s, const olmoe_config *c, int l, const fwd_rows *r) {
    const int D = c->hidden_size, L = c->num_hidden_layers, T = r->T;
    const int Hq = c->num_attention_heads, Hkv = c->num_key_value_heads, hd = c->head_dim;
    const int QD = Hq * hd, KD = Hkv * hd, LD = QD + 2 * KD;
    const float eps = (float)c->rms_norm_eps, clip = c->has_clip_qkv ? (float)c->clip_qkv : 0.0f;
    const olmoe_cuda_layer *W = &s->w.layers[l];
    cudaStream_t st = s->stream;
    if (r->want_hid)
        CUDA_TRY(cudaMemcpy2DAsync(s->stash_hid + (size_t)l * D, (size_t)(L + 1) * D * 2, s->h, (size_t)D * 2,
                                   (size_t)D * 2, T, cudaMemcpyDeviceToDevice, st));
    if (olmoe_cuda_gemm(s, OLMOE_G_QKV, T, s->x, D, W->wqkv, s->qkv, LD) != 0) return -1;
    MARK(s, PH_QKV);
    CUDA_TRY(olmoe_cuda_qk_norm_rope(s->qkv, LD, QD, KD, hd, W->q_norm, W->k_norm, s->cos_t, s->sin_t, r->d_pos,
                                     eps, clip, T, st));
    MARK(s, PH_ROPE);
    CUDA_TRY(olmoe_cuda_attention(s->qkv, LD, Hq, Hkv, hd, s->att, r->d_woff, r->d_wlen, r->nw, r->max_len,
                                  s->attn_variant, st));
    MARK(s, PH_ATTN);
    if (olmoe_cuda_gemm(s, OLMOE_G_O, T, s->att, QD, W->wo, s->a, D) != 0) return -1;
    MARK(s, PH_OPROJ);
    if (r->want_res)
        CUDA_TRY(cudaMemcpy2DAsync(s->stash_res + (size_t)l * D, (size_t)L * D * 2, s->a, (size_t)D * 2,
                                   (size_t)D * 2, T, cudaMemcpyDeviceToDevice, st));
    if (r->res_early && residual_bf16_layer(s, r->w, r->nw, l, L, D) != 0) return -1;
    CUDA_TRY(olmoe_cuda_add_rmsnorm(s->h, s->a, W->post_norm, s->x, T, D, eps, st));
    MARK(s, PH_NORM);
    return 0;
}

/* layer l's experts: the router GEMM and the routing (the last layer's
 * logits sent to the host early when pinned), the choices grouped by expert,
 * the one synchronisation of a layer (the experts' row counts), the experts'
 * GEMMs, then h += their weighted sum fused with the next norm into x */
static int experts_block(olmoe_engine *e, olmoe_cuda_state *s, const olmoe_config *c, int l, const fwd_rows *r) {
    const int D = c->hidden_size, E = c->num_experts, L = c->num_hidden_layers, I = c->intermediate_size;
    const int K = s->K, LE = L * E, T = r->T;
    const float eps = (float)c->rms_norm_eps;
    const olmoe_cuda_layer *W = &s->w.layers[l];
    cudaStream_t st = s->stream;
    if (olmoe_cuda_gemm(s, OLMOE_G_ROUTER, T, s->x, D, W->router, s->rl + (size_t)l * E, LE) != 0) return -1;
    MARK(s, PH_ROUTER);
    if (olmoe_cuda_route_layer(e, s, l, T, r->want_routes, e->route_pos) != 0) return -1;
    if (l == L - 1 && r->early) {
        CUDA_TRY(cudaEventRecord(s->ev_rl, st));
        CUDA_TRY(cudaStreamWaitEvent(s->copy_stream, s->ev_rl, 0));
        if (copy_router_logits(s, r->w, r->nw, LE, s->copy_stream) != 0) return -1;
    }
    CUDA_TRY(olmoe_cuda_bucket(s->sel_e, s->sel_w, s->sel_n, T, K, E, s->blk, s->first, s->perm_tok, s->perm_w,
                               s->slot, st));
    MARK(s, PH_ROUTE);
    /* the one synchronisation of a layer: the experts' row counts */
    CUDA_TRY(cudaMemcpyAsync(s->h_first, s->first, (size_t)(E + 1) * sizeof(int32_t), cudaMemcpyDeviceToHost, st));
    MARK(s, PH_SYNC);
    CUDA_TRY(cudaStreamSynchronize(st));
    int S = s->h_first[E];
    if (S < 0 || S > T * K) return olmoe_errorf("cuda: layer %d: %d grouped rows for %d tokens", l, S, T);
    CUDA_TRY(olmoe_cuda_gather_rows(s->x, D, s->perm_tok, s->first + E, S, s->xg, st));
    MARK(s, PH_GATHER);
    if (olmoe_cuda_expert_gemms(s, 0, E, 2 * I, D, W->wgu, s->xg, s->gu) != 0) return -1;
    MARK(s, PH_GATEUP);
    CUDA_TRY(olmoe_cuda_silu_mul(s->gu, I, s->first + E, S, s->act, st));
    MARK(s, PH_SILU);
    if (olmoe_cuda_expert_gemms(s, 1, E, D, I, W->wd, s->act, s->xg) != 0) return -1;
    MARK(s, PH_DOWN);
    const olmoe_bf16 *next = l + 1 < L ? s->w.layers[l + 1].input_norm : s->w.final_norm;
    CUDA_TRY(olmoe_cuda_combine_rmsnorm(s->h, s->xg, s->slot, s->sel_w, s->sel_n, K, next, s->x, T, D, eps, st));
    MARK(s, PH_COMBINE);
    return 0;
}

/* what the windows asked for, to the host: NLL, argmax and router logits on
 * the compute stream, then after both streams are done the routing, the
 * residuals and the hidden states */
static int copy_out(olmoe_engine *e, olmoe_cuda_state *s, const olmoe_config *c, const fwd_rows *r) {
    const int D = c->hidden_size, L = c->num_hidden_layers, LE = L * c->num_experts;
    olmoe_window_io *w = r->w;
    cudaStream_t st = s->stream;
    for (int b = 0; b < r->nw; b++) {
        size_t off = (size_t)r->woff[b], n = (size_t)w[b].n;
        if (w[b].nll) CUDA_TRY(cudaMemcpyAsync(w[b].nll, s->nll + off, n * 4, cudaMemcpyDeviceToHost, st));
        if (w[b].argmax) CUDA_TRY(cudaMemcpyAsync(w[b].argmax, s->am + off, n * 4, cudaMemcpyDeviceToHost, st));
    }
    if (!r->early && copy_router_logits(s, w, r->nw, LE, st) != 0) return -1;
    MARK(s, PH_COPY);
    CUDA_TRY(cudaStreamSynchronize(st));
    CUDA_TRY(cudaStreamSynchronize(s->copy_stream));
    if (r->want_routes) olmoe_cuda_routes_out(e, s, w, r->nw, r->woff);
    for (int b = 0; b < r->nw; b++) {
        size_t off = (size_t)r->woff[b], n = (size_t)w[b].n;
        if (w[b].attn_residual &&
            stash_to_host(s, s->stash_res + off * L * D, n * L * D, w[b].attn_residual) != 0)
            return -1;
        if (w[b].attn_residual_bf16 && !r->res_early) /* pageable: one plain copy */
            CUDA_TRY(cudaMemcpy(w[b].attn_residual_bf16, s->stash_res + off * L * D, n * L * D * 2,
                                cudaMemcpyDeviceToHost));
        if (w[b].hidden && stash_to_host(s, s->stash_hid + off * (L + 1) * D, n * (L + 1) * D, w[b].hidden) != 0)
            return -1;
    }
    return 0;
}

int olmoe_cuda_forward(olmoe_engine *e, olmoe_window_io *w, int nw) {
    olmoe_cuda_state *s = (olmoe_cuda_state *)e->impl;
    const olmoe_config *c = &e->model->cfg;
    const int D = c->hidden_size, L = c->num_hidden_layers;
    const float eps = (float)c->rms_norm_eps;
    cudaStream_t st = s->stream;
    fwd_rows r;
    if (upload_rows(s, c, w, nw, &r) != 0) return -1;

    MARK(s, PH_START);
    CUDA_TRY(olmoe_cuda_embed_rmsnorm(r.d_tok, s->w.embed, s->w.layers[0].input_norm, s->h, s->x, r.T, D, eps, st));
    MARK(s, PH_NORM);
    for (int l = 0; l < L; l++)
        if (attention_block(s, c, l, &r) != 0 || experts_block(e, s, c, l, &r) != 0) return -1;
    if (r.want_hid)
        CUDA_TRY(cudaMemcpy2DAsync(s->stash_hid + (size_t)L * D, (size_t)(L + 1) * D * 2, s->h, (size_t)D * 2,
                                   (size_t)D * 2, r.T, cudaMemcpyDeviceToDevice, st));
    int any_head = 0;
    for (int b = 0; b < nw; b++) any_head |= w[b].nll || w[b].argmax || w[b].logits;
    if (any_head && head(e, s, w, nw, r.T, r.d_tgt, r.want_logits) != 0) return -1;
    if (copy_out(e, s, c, &r) != 0) return -1;
    profile_collect(s, r.T);
    return 0;
}
