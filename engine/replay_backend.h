/* replay_backend.h (part of engine.h: include engine.h): the replay backends,
 * the per-chunk compute of frozen-attention replay (analyze/replay.h drives
 * them over a trace). One chunk of tokens is loaded once, then run under each
 * policy; the CPU backend is replay_cpu.c, the CUDA one replay_cuda.cu.
 *
 *   olmoe_replay_backend *b;
 *   if (olmoe_replay_backend_open(&m, "cpu", 4096, 8, OLMOE_ROUTING_RECOMPUTE, &b) != 0)
 *       return -1;                                  // olmoe_error() says why
 *   olmoe_replay_backend_load(b, &chunk);
 *   olmoe_replay_backend_run(b, policy, &out);      // per policy
 *   olmoe_replay_backend_close(b);
 */
#ifndef OLMOE_REPLAY_BACKEND_H
#define OLMOE_REPLAY_BACKEND_H

#include <stdint.h>

#include "model.h"
#include "policy.h"

typedef enum { OLMOE_ROUTING_RECOMPUTE = 0, OLMOE_ROUTING_CAPTURED } olmoe_replay_routing;
const char *olmoe_replay_routing_name(olmoe_replay_routing r); /* "recompute", "captured" */

/* ---- the backend: one chunk of tokens under one policy ---- */

/* One chunk's inputs, rows in stream order. Exactly one of residual and
 * residual_bf16 is given; router_logits only for routing = captured. */
typedef struct {
    int n;                         /* T rows */
    const int32_t *tokens;         /* [T] the token at each row */
    const int32_t *target;         /* [T] the next token where scored, else -1 */
    const float *residual;         /* [T, L, D] A_l in fp32, or NULL */
    const uint16_t *residual_bf16; /* [T, L, D] A_l as bfloat16 bits, or NULL */
    const float *router_logits;    /* [T, L, E] captured router logits, or NULL */
    int64_t row0;                  /* the trace row (stream position) of row 0 */
} olmoe_replay_chunk;

/* One policy's outputs for the loaded chunk (caller's arrays). */
typedef struct {
    float *nll;         /* [T] NLL of target; NaN where target < 0 */
    int32_t *argmax;    /* [T] argmax of the logits (always) */
    uint8_t *n_experts; /* [T, L] experts the policy used */
    int64_t *load;      /* [L, E] token-layers routed to each expert, added to */
} olmoe_replay_out;

typedef struct olmoe_replay_backend olmoe_replay_backend;

typedef struct {
    const char *name; /* "cpu", "cuda" */
    /* allocates b->impl for chunks of b->max_tokens rows and b->max_k experts */
    int (*open)(olmoe_replay_backend *b);
    /* takes a chunk (a device backend uploads it once here, for every policy) */
    int (*load)(olmoe_replay_backend *b, const olmoe_replay_chunk *c);
    /* the loaded chunk under one bound policy. Experts are grouped by the
     * experts chosen, so a variable number per token costs no padding. */
    int (*run)(olmoe_replay_backend *b, const olmoe_policy *p, olmoe_replay_out *o);
    void (*close)(olmoe_replay_backend *b);
} olmoe_replay_backend_ops;

struct olmoe_replay_backend {
    const olmoe_replay_backend_ops *ops;
    void *impl;
    olmoe_model *model;
    int max_tokens;                /* most rows in a chunk */
    int max_k;                     /* most experts a policy may choose */
    olmoe_replay_routing routing;
    const olmoe_replay_chunk *chunk; /* the loaded chunk (the caller's arrays) */
    char device[96];
};

extern const olmoe_replay_backend_ops olmoe_replay_cpu_ops;

/* "auto": "cuda" when built with CUDA and a GPU is present, else "cpu";
 * any other name as it is */
const char *olmoe_device_resolve(const char *device);

/* device "cpu" (or NULL) or "cuda" (fails with "not built" in a build
 * without nvcc). max_k must be in 1..min(E, 255) (experts are stored as uint8). */
int olmoe_replay_backend_open(olmoe_model *m, const char *device, int max_tokens, int max_k,
                              olmoe_replay_routing routing, olmoe_replay_backend **out);
int olmoe_replay_backend_load(olmoe_replay_backend *b, const olmoe_replay_chunk *c);
int olmoe_replay_backend_run(olmoe_replay_backend *b, const olmoe_policy *p,
                             olmoe_replay_out *o);
void olmoe_replay_backend_close(olmoe_replay_backend *b);

#endif
