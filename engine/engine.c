/* engine.c: the one place that picks a forward-pass implementation for a
 * device and checks what every implementation relies on. */
#include "engine_impl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "traces.h" /* olmoe_bf16_from_f32_n */

#ifdef OLMOE_HAVE_CUDA /* ---- the CUDA engine ---- */
#include "cuda_engine.h"
#endif

static int pick_ops(const char *device, const olmoe_engine_ops **out) {
    if (!device || strcmp(device, "cpu") == 0) {
        *out = &olmoe_engine_cpu_ops;
        return 0;
    }
    /* ---- the CUDA engine: "auto" is cuda when a GPU is present ---- */
    if (strcmp(device, "auto") == 0) {
#ifdef OLMOE_HAVE_CUDA
        *out = olmoe_cuda_device_count() > 0 ? &olmoe_engine_cuda_ops : &olmoe_engine_cpu_ops;
#else
        *out = &olmoe_engine_cpu_ops;
#endif
        return 0;
    }
    if (strcmp(device, "cuda") == 0 || strncmp(device, "cuda:", 5) == 0) {
#ifdef OLMOE_HAVE_CUDA
        *out = &olmoe_engine_cuda_ops;
        return 0;
#else
        return olmoe_errorf("device '%s': built without CUDA (make CUDA=1 builds it); "
                            "use --device cpu",
                            device);
#endif
    }
    return olmoe_errorf("unknown device '%s' (auto, cpu, cuda or cuda:N)", device);
}

void olmoe_engine_set_route(olmoe_engine *e, olmoe_route_fn route, void *ctx) {
    e->route = route ? route : olmoe_route_topk;
    e->route_ctx = route ? ctx : &e->topk;
}

int olmoe_engine_open(olmoe_model *m, const olmoe_engine_opts *o, olmoe_engine **out) {
    const olmoe_config *c = &m->cfg;
    const olmoe_engine_ops *ops = NULL;
    if (pick_ops(o->device, &ops) != 0) return -1;
    if (o->max_ctx < 1 || o->max_tokens < o->max_ctx)
        return olmoe_errorf("engine needs 1 <= max_ctx (%d) <= max_tokens (%d)", o->max_ctx,
                            o->max_tokens);
    int k = o->top_k ? o->top_k : c->num_experts_per_tok;
    if (k < 1 || k > c->num_experts)
        return olmoe_errorf("top-k %d is outside [1, %d] (num_experts)", k, c->num_experts);
    olmoe_engine *e = xcalloc(1, sizeof *e);
    e->ops = ops;
    e->model = m;
    e->max_tokens = o->max_tokens;
    e->max_ctx = o->max_ctx;
    e->top_k = k;
    e->topk.k = k;
    e->topk.norm = c->norm_topk_prob;
    e->route = o->route ? o->route : olmoe_route_topk;
    e->route_ctx = o->route ? o->route_ctx : &e->topk;
    e->route_threads = o->route_threads; 
    /* the CUDA engine reads "cuda:N" from here to pick the GPU */
    snprintf(e->device, sizeof e->device, "%s",
             o->device && strncmp(o->device, "cuda:", 5) == 0 ? o->device : ops->name);
    e->compute_dtype = "float32";
    e->route_pos = xmalloc(xmul((size_t)o->max_tokens, sizeof *e->route_pos));
    if (ops->open(e) != 0) {
        free(e->route_pos);
        free(e);
        return -1;
    }
    *out = e;
    return 0;
}

/* ---- bf16 residuals from an engine that writes fp32 ones ---- */
static int forward_bf16_residuals(olmoe_engine *e, olmoe_window_io *w, int nw) {
    const olmoe_config *c = &e->model->cfg;
    size_t LD = (size_t)c->num_hidden_layers * (size_t)c->hidden_size;
    float **tmp = xcalloc((size_t)nw, sizeof *tmp);
    for (int b = 0; b < nw; b++)
        if (w[b].attn_residual_bf16 && !w[b].attn_residual)
            w[b].attn_residual = tmp[b] = xmalloc(xmul(xmul((size_t)w[b].n, LD), sizeof(float)));
    int rc = e->ops->forward(e, w, nw);
    for (int b = 0; b < nw; b++) {
        if (rc == 0 && w[b].attn_residual_bf16)
            olmoe_bf16_from_f32_n(w[b].attn_residual_bf16, w[b].attn_residual, (size_t)w[b].n * LD);
        if (tmp[b]) w[b].attn_residual = NULL;
        free(tmp[b]);
    }
    free(tmp);
    return rc;
}
/* ---- end of bf16 residuals ---- */

int olmoe_engine_forward(olmoe_engine *e, olmoe_window_io *w, int n_windows) {
    long total = 0;
    int V = e->model->cfg.vocab_size;
    for (int b = 0; b < n_windows; b++) {
        if (w[b].n < 1 || w[b].n > e->max_ctx)
            return olmoe_errorf("window of %d tokens; this engine takes 1 to %d", w[b].n, e->max_ctx);
        total += w[b].n;
        for (int i = 0; i < w[b].n; i++)
            if (w[b].tokens[i] < 0 || w[b].tokens[i] >= V)
                return olmoe_errorf("token id %d is outside the vocabulary [0, %d)", w[b].tokens[i], V);
    }
    if (total > e->max_tokens)
        return olmoe_errorf("%ld tokens in one forward call; this engine takes at most %d", total,
                            e->max_tokens);
    if (n_windows <= 0) return 0;
    for (int b = 0, t = 0; b < n_windows; t += w[b].n, b++)
        for (int i = 0; i < w[b].n; i++)
            e->route_pos[t + i] = w[b].stream_pos1 > 0 ? w[b].stream_pos1 - 1 + i : -1;
    if (!e->ops->bf16_residuals)
        for (int b = 0; b < n_windows; b++)
            if (w[b].attn_residual_bf16) return forward_bf16_residuals(e, w, n_windows);
    return e->ops->forward(e, w, n_windows);
}

const char *olmoe_engine_device(const olmoe_engine *e) { return e->device; }
const olmoe_model *olmoe_engine_model(const olmoe_engine *e) { return e->model; }
int olmoe_engine_max_tokens(const olmoe_engine *e) { return e->max_tokens; }
const char *olmoe_engine_compute_dtype(const olmoe_engine *e) { return e->compute_dtype; }
size_t olmoe_engine_activation_bytes(const olmoe_engine *e) { return e->activation_bytes; }

#define HOST_PAGE ((size_t)4096)

int olmoe_engine_host_buffer(olmoe_engine *e, void *p, size_t bytes) {
    if (!e->ops->host_buffer || !p || !bytes || (uintptr_t)p % HOST_PAGE) return 0;
    return e->ops->host_buffer(e, p, (bytes + HOST_PAGE - 1) / HOST_PAGE * HOST_PAGE);
}

void *olmoe_engine_host_alloc(size_t bytes) {
    size_t n = (bytes + HOST_PAGE - 1) / HOST_PAGE * HOST_PAGE;
    void *p = aligned_alloc(HOST_PAGE, n ? n : HOST_PAGE);
    if (!p) die("out of memory allocating %zu bytes", bytes);
    return p;
}

void olmoe_engine_close(olmoe_engine *e) {
    if (!e) return;
    e->ops->close(e);
    free(e->route_pos);
    free(e);
}
