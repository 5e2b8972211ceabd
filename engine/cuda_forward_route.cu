/* cuda_forward_route.cu: the CUDA engine's routing of one layer. The default
 * top-k runs the engine's own kernel (cuda_route.cu); a bound policy passed as
 * olmoe_policy_route_at's ctx runs on the GPU (cuda_policy.cu) on the
 * bf16-rounded logits, as the host hook would see them; any other hook runs
 * on the host (cuda_forward.cu's olmoe_cuda_route_on_host), one round trip a
 * layer. When the caller asks for the choices (olmoe_window_io.n_experts /
 * experts), each layer's are copied to pinned memory on the copy stream,
 * beside the layer's experts, and spread into the windows at the end. */
#include "cuda_ops.h"
#include "cuda_state.h"

#include <string.h>

extern "C" {
#include "cuda_policy.h"
#include "policy.h"
}

static int default_route(const olmoe_engine *e) {
    return e->route == olmoe_route_topk && e->route_ctx == (const void *)&e->topk;
}

/* this layer's choices to h_rn / h_re on the copy stream; the next layer's
 * routing waits for the copy (ev_selc) before it overwrites them */
static int copy_out(olmoe_engine *e, olmoe_cuda_state *s, int l, int T) {
    size_t K = (size_t)s->K, L = (size_t)e->model->cfg.num_hidden_layers, R = (size_t)s->T;
    if (!s->h_rn) {
        CUDA_TRY(cudaHostAlloc((void **)&s->h_rn, L * R * 4, cudaHostAllocDefault));
        CUDA_TRY(cudaHostAlloc((void **)&s->h_re, L * R * K * 4, cudaHostAllocDefault));
        CUDA_TRY(cudaEventCreateWithFlags(&s->ev_sel, cudaEventDisableTiming));
        CUDA_TRY(cudaEventCreateWithFlags(&s->ev_selc, cudaEventDisableTiming));
    }
    cudaStream_t cs = s->copy_stream;
    CUDA_TRY(cudaEventRecord(s->ev_sel, s->stream));
    CUDA_TRY(cudaStreamWaitEvent(cs, s->ev_sel, 0));
    CUDA_TRY(cudaMemcpyAsync(s->h_rn + (size_t)l * R, s->sel_n, (size_t)T * 4, cudaMemcpyDeviceToHost, cs));
    CUDA_TRY(cudaMemcpyAsync(s->h_re + (size_t)l * R * K, s->sel_e, (size_t)T * K * 4, cudaMemcpyDeviceToHost, cs));
    CUDA_TRY(cudaEventRecord(s->ev_selc, cs));
    return 0;
}

int olmoe_cuda_route_layer(olmoe_engine *e, olmoe_cuda_state *s, int l, int T, int want, const int64_t *pos) {
    const olmoe_config *c = &e->model->cfg;
    const int E = c->num_experts, LE = c->num_hidden_layers * E, K = s->K;
    cudaStream_t st = s->stream;
    float *rl = s->rl + (size_t)l * E;
    if (want && l > 0) CUDA_TRY(cudaStreamWaitEvent(st, s->ev_selc, 0));
    if (default_route(e)) {
        CUDA_TRY(olmoe_cuda_route_topk(rl, LE, E, K, e->topk.norm, s->sel_e, s->sel_w, s->sel_n, T, st));
    } else if (e->route == olmoe_policy_route_at &&
               olmoe_cuda_policy_supported((const olmoe_policy *)e->route_ctx, K)) {
        const olmoe_policy *p = (const olmoe_policy *)e->route_ctx;
        if (p->model.n_experts != E) return olmoe_errorf("cuda: policy %s is bound to %d experts, the model has %d",
                                                         p->id, p->model.n_experts, E);
        CUDA_TRY(olmoe_cuda_round_bf16_rows(rl, LE, E, T, st));
        if (olmoe_cuda_policy_route(&s->nulls, p, l, rl, LE, T, K, s->sel_e, s->sel_w, s->sel_n, st) != 0)
            return olmoe_error_prefix("layer %d", l);
    } else if (olmoe_cuda_route_on_host(e, s, l, T, pos) != 0) {
        return -1;
    }
    return want ? copy_out(e, s, l, T) : 0;
}

void olmoe_cuda_routes_out(olmoe_engine *e, olmoe_cuda_state *s, olmoe_window_io *w, int nw, const int32_t *woff) {
    const size_t L = (size_t)e->model->cfg.num_hidden_layers, K = (size_t)s->K, R = (size_t)s->T;
    for (int b = 0; b < nw; b++) {
        if (!w[b].n_experts && !w[b].experts) continue;
        for (size_t i = 0; i < (size_t)w[b].n; i++) {
            size_t row = (size_t)woff[b] + i;
            for (size_t l = 0; l < L; l++) {
                if (w[b].n_experts) w[b].n_experts[i * L + l] = (uint8_t)s->h_rn[l * R + row];
                if (w[b].experts)
                    memcpy(w[b].experts + (i * L + l) * K, s->h_re + (l * R + row) * K, K * 4);
            }
        }
    }
}

void olmoe_cuda_route_release(olmoe_cuda_state *s) {
    olmoe_cuda_nulls_free(s->nulls);
    s->nulls = NULL;
    if (s->h_rn) cudaFreeHost(s->h_rn);
    if (s->h_re) cudaFreeHost(s->h_re);
    if (s->ev_sel) cudaEventDestroy(s->ev_sel);
    if (s->ev_selc) cudaEventDestroy(s->ev_selc);
    s->h_rn = s->h_re = NULL;
    s->ev_sel = s->ev_selc = NULL;
}
