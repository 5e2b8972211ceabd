/* engine_impl.h (internal to engine/): what an engine implementation
 * provides. engine.c owns the checks common to every device (options, window
 * sizes, token ids, the default routing hook) and dispatches here; the CPU
 * engine is forward_cpu.c. A CUDA engine defines olmoe_engine_cuda_ops in a
 * engine/ .cu file and is enabled in engine.c's pick_ops(). */
#ifndef OLMOE_ENGINE_IMPL_H
#define OLMOE_ENGINE_IMPL_H

#include "model.h"

typedef struct olmoe_engine_ops {
    const char *name; /* "cpu", "cuda" */
    /* allocates e->impl, sets e->device, e->compute_dtype, e->activation_bytes */
    int (*open)(olmoe_engine *e);
    /* windows already checked: n >= 1, sum n <= max_tokens, n <= max_ctx, ids < V */
    int (*forward)(olmoe_engine *e, olmoe_window_io *w, int n_windows);
    void (*close)(olmoe_engine *e);
    /* 1 if forward fills olmoe_window_io.attn_residual_bf16 itself
     * (else engine.c fills it from fp32 residuals) */
    int bf16_residuals;
    /* optional: olmoe_engine_host_buffer */
    int (*host_buffer)(olmoe_engine *e, void *p, size_t bytes);
} olmoe_engine_ops;

struct olmoe_engine {
    const olmoe_engine_ops *ops;
    void *impl;
    olmoe_model *model;
    int max_tokens, max_ctx, top_k;
    olmoe_route_fn route;
    void *route_ctx;
    olmoe_topk_route topk; /* ctx of the default hook */
    int route_threads;     /* opts.route_threads */
    int64_t *route_pos;    /* [max_tokens] the hook's pos of each token of a forward call */
    char device[96];
    const char *compute_dtype;
    size_t activation_bytes;
};

extern const olmoe_engine_ops olmoe_engine_cpu_ops;

#endif
