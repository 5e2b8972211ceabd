/* decode_impl.h (internal to engine/): what an incremental decoder (a KV
 * cache for one sequence, model.h's olmoe_engine_decode_*) provides.
 * decode.c owns the checks every decoder relies on, the padding of the
 * caller's outputs and the recomputing fallback, and picks the decoder of
 * the engine's device: forward_cpu_kv.c for the CPU engine,
 * cuda_decode.cu for the CUDA one. */
#ifndef OLMOE_DECODE_IMPL_H
#define OLMOE_DECODE_IMPL_H

#include "engine_impl.h"

typedef struct olmoe_decode_ops {
    const char *name;
    /* allocates d->impl (the cache for d->cap positions) */
    int (*open)(olmoe_decode *d);
    /* tokens already checked: 1 <= n <= max_tokens, d->len + n <= d->cap,
     * ids < V; io's experts are pre-filled with -1 and weights with 0, so a
     * decoder writes the chosen entries only */
    int (*step)(olmoe_decode *d, const int32_t *tokens, int n, olmoe_decode_io *io);
    void (*close)(olmoe_decode *d);
} olmoe_decode_ops;

struct olmoe_decode {
    const olmoe_decode_ops *ops;
    olmoe_engine *e;
    void *impl;
    int len; /* positions decoded so far */
    int cap; /* the most positions: the engine's max_ctx */
};

extern const olmoe_decode_ops olmoe_decode_cpu_ops;
#ifdef OLMOE_HAVE_CUDA
extern const olmoe_decode_ops olmoe_decode_cuda_ops;
#endif

#endif
