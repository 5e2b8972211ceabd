/* cuda_weights.h (internal to the engine .cu files): the model's weights on the GPU,
 * in bf16 whatever the checkpoint's dtype, in one allocation carved per
 * tensor. Layout changes from the checkpoint, made once at upload:
 * q, k, v projections stacked into one [QD + 2 KD, D] matrix (one GEMM);
 * each expert's gate and up stacked into [2I, D] (gate rows first, as
 * transformers v5's fused gate_up_proj), experts back to back.
 *
 *   olmoe_cuda_weights w;
 *   if (olmoe_cuda_weights_upload(&model, &w) != 0) return -1;
 *   ... w.layers[l].wqkv ...
 *   olmoe_cuda_weights_free(&w);
 */
#ifndef OLMOE_CUDA_WEIGHTS_H
#define OLMOE_CUDA_WEIGHTS_H

#include <stddef.h>

#include "cuda_ops.h"

extern "C" {
#include "model.h"
}

typedef struct {
    olmoe_bf16 *input_norm; /* [D] */
    olmoe_bf16 *wqkv;       /* [QD + 2 KD, D] */
    olmoe_bf16 *q_norm;     /* [QD] */
    olmoe_bf16 *k_norm;     /* [KD] */
    olmoe_bf16 *wo;         /* [D, QD] */
    olmoe_bf16 *post_norm;  /* [D] */
    olmoe_bf16 *router;     /* [E, D] */
    olmoe_bf16 *wgu;        /* [E, 2I, D] */
    olmoe_bf16 *wd;         /* [E, D, I] */
} olmoe_cuda_layer;

typedef struct {
    void *base; /* the one device allocation */
    size_t bytes;
    olmoe_bf16 *embed;      /* [V, D] */
    olmoe_bf16 *final_norm; /* [D] */
    olmoe_bf16 *lm_head;    /* [V, D]; the embedding when tied */
    olmoe_cuda_layer *layers; /* [L] */
} olmoe_cuda_weights;

/* bytes the upload will allocate */
size_t olmoe_cuda_weights_bytes(const olmoe_config *c);
int olmoe_cuda_weights_upload(const olmoe_model *m, olmoe_cuda_weights *w);
void olmoe_cuda_weights_free(olmoe_cuda_weights *w);

#endif
