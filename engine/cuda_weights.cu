/* cuda_weights.cu: uploads a checkpoint to the GPU once, in bf16 (see
 * cuda_weights.h). BF16 tensors are copied as they are; F32 and F16 ones are
 * converted on the host (F16 exactly to fp32, then fp32 to bf16 rounding to
 * nearest even, as torch's .to(torch.bfloat16)). Bytes go through two pinned
 * staging buffers so that reading the mmapped files overlaps the copies. */
#include "cuda_util.h"
#include "cuda_weights.h"

#include <stdlib.h>
#include <string.h>

extern "C" {
#include "ops_cpu.h"
#include "traces.h" /* olmoe_bf16_from_f32_n */
}

#define STAGE_ELEMS ((size_t)16 << 20) /* bf16 elements per staging buffer (32 MiB) */
#define ALIGN 256

typedef struct {
    olmoe_bf16 *host[2];  /* pinned [STAGE_ELEMS] */
    cudaEvent_t done[2];  /* the copy out of host[i] finished */
    cudaStream_t stream;
    int next;
    float *f32;           /* [STAGE_ELEMS] conversion scratch */
} uploader;

static size_t numel(const olmoe_tensor *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

/* n elements of t from element off, as bf16, to dst on the device */
static int put(uploader *up, olmoe_bf16 *dst, const olmoe_tensor *t, size_t off, size_t n) {
    size_t esz = olmoe_st_dtype_size(t->dtype);
    const unsigned char *src = (const unsigned char *)t->data + off * esz;
    for (size_t done = 0; done < n;) {
        size_t m = n - done < STAGE_ELEMS ? n - done : STAGE_ELEMS;
        int b = up->next;
        up->next ^= 1;
        CUDA_TRY(cudaEventSynchronize(up->done[b]));
        olmoe_bf16 *h = up->host[b];
        if (t->dtype == OLMOE_ST_BF16) {
            memcpy(h, src + done * esz, m * 2);
        } else {
            olmoe_convert_to_f32(src + done * esz, t->dtype, m, up->f32);
            olmoe_bf16_from_f32_n(h, up->f32, m); /* traces/float16.c */
        }
        CUDA_TRY(cudaMemcpyAsync(dst + done, h, m * 2, cudaMemcpyHostToDevice, up->stream));
        CUDA_TRY(cudaEventRecord(up->done[b], up->stream));
        done += m;
    }
    return 0;
}

static int put_all(uploader *up, olmoe_bf16 *dst, const olmoe_tensor *t) { return put(up, dst, t, 0, numel(t)); }

/* the layout: every tensor 256-byte aligned; with base NULL only counts */
typedef struct {
    char *base;
    size_t off;
} carve;

static olmoe_bf16 *take(carve *cv, size_t elems) {
    size_t at = (cv->off + ALIGN - 1) / ALIGN * ALIGN;
    cv->off = at + elems * 2;
    return cv->base ? (olmoe_bf16 *)(cv->base + at) : NULL;
}

static void layout(const olmoe_config *c, carve *cv, olmoe_cuda_weights *w) {
    size_t V = c->vocab_size, D = c->hidden_size, I = c->intermediate_size, E = c->num_experts;
    size_t QD = (size_t)c->num_attention_heads * c->head_dim, KD = (size_t)c->num_key_value_heads * c->head_dim;
    w->embed = take(cv, V * D);
    w->final_norm = take(cv, D);
    w->lm_head = c->tie_word_embeddings ? w->embed : take(cv, V * D);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        olmoe_cuda_layer *L = &w->layers[l];
        L->input_norm = take(cv, D);
        L->wqkv = take(cv, (QD + 2 * KD) * D);
        L->q_norm = take(cv, QD);
        L->k_norm = take(cv, KD);
        L->wo = take(cv, D * QD);
        L->post_norm = take(cv, D);
        L->router = take(cv, E * D);
        L->wgu = take(cv, E * 2 * I * D);
        L->wd = take(cv, E * D * I);
    }
}

size_t olmoe_cuda_weights_bytes(const olmoe_config *c) {
    olmoe_cuda_weights w;
    memset(&w, 0, sizeof w);
    w.layers = (olmoe_cuda_layer *)xcalloc(c->num_hidden_layers, sizeof *w.layers);
    carve cv = {NULL, 0};
    layout(c, &cv, &w);
    free(w.layers);
    return cv.off;
}

static int upload(const olmoe_model *m, olmoe_cuda_weights *w, uploader *up) {
    const olmoe_config *c = &m->cfg;
    size_t D = c->hidden_size, I = c->intermediate_size, E = c->num_experts;
    size_t QD = (size_t)c->num_attention_heads * c->head_dim, KD = (size_t)c->num_key_value_heads * c->head_dim;
    if (put_all(up, w->embed, &m->embed) || put_all(up, w->final_norm, &m->final_norm)) return -1;
    if (!c->tie_word_embeddings && put_all(up, w->lm_head, &m->lm_head)) return -1;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const olmoe_layer_tensors *T = &m->layers[l];
        olmoe_cuda_layer *L = &w->layers[l];
        if (put_all(up, L->input_norm, &T->input_norm) || put_all(up, L->wqkv, &T->wq) ||
            put_all(up, L->wqkv + QD * D, &T->wk) || put_all(up, L->wqkv + (QD + KD) * D, &T->wv) ||
            put_all(up, L->q_norm, &T->q_norm) || put_all(up, L->k_norm, &T->k_norm) ||
            put_all(up, L->wo, &T->wo) || put_all(up, L->post_norm, &T->post_norm) ||
            put_all(up, L->router, &T->router))
            return -1;
        if (T->fused) {
            if (put_all(up, L->wgu, &T->gate_up) || put_all(up, L->wd, &T->down_all)) return -1;
        } else {
            for (size_t e = 0; e < E; e++)
                if (put_all(up, L->wgu + e * 2 * I * D, &T->gate[e]) ||
                    put_all(up, L->wgu + (e * 2 + 1) * I * D, &T->up[e]) ||
                    put_all(up, L->wd + e * D * I, &T->down[e]))
                    return -1;
        }
    }
    CUDA_TRY(cudaStreamSynchronize(up->stream));
    return 0;
}

int olmoe_cuda_weights_upload(const olmoe_model *m, olmoe_cuda_weights *w) {
    const olmoe_config *c = &m->cfg;
    memset(w, 0, sizeof *w);
    w->layers = (olmoe_cuda_layer *)xcalloc(c->num_hidden_layers, sizeof *w->layers);
    carve cv = {NULL, 0};
    layout(c, &cv, w);
    w->bytes = cv.off;
    if (olmoe_cuda_alloc(&w->base, w->bytes, "cuda", "", "for the weights") != 0) {
        free(w->layers);
        w->layers = NULL;
        return -1;
    }
    cv.base = (char *)w->base;
    cv.off = 0;
    layout(c, &cv, w);

    uploader up;
    memset(&up, 0, sizeof up);
    int rc = -1;
    up.f32 = (float *)xmalloc(STAGE_ELEMS * sizeof(float));
    if (cudaStreamCreateWithFlags(&up.stream, cudaStreamNonBlocking) == cudaSuccess &&
        cudaHostAlloc((void **)&up.host[0], STAGE_ELEMS * 2, cudaHostAllocDefault) == cudaSuccess &&
        cudaHostAlloc((void **)&up.host[1], STAGE_ELEMS * 2, cudaHostAllocDefault) == cudaSuccess &&
        cudaEventCreateWithFlags(&up.done[0], cudaEventDisableTiming) == cudaSuccess &&
        cudaEventCreateWithFlags(&up.done[1], cudaEventDisableTiming) == cudaSuccess) {
        rc = upload(m, w, &up);
    } else {
        olmoe_errorf("cuda: cannot set up the weight upload: %s", cudaGetErrorString(cudaGetLastError()));
    }
    if (up.stream) cudaStreamSynchronize(up.stream);
    for (int i = 0; i < 2; i++) {
        if (up.host[i]) cudaFreeHost(up.host[i]);
        if (up.done[i]) cudaEventDestroy(up.done[i]);
    }
    if (up.stream) cudaStreamDestroy(up.stream);
    free(up.f32);
    if (rc != 0) olmoe_cuda_weights_free(w);
    return rc;
}

void olmoe_cuda_weights_free(olmoe_cuda_weights *w) {
    if (w->base) cudaFree(w->base);
    free(w->layers);
    memset(w, 0, sizeof *w);
}
