/* cuda_gemm.cu: every GEMM of the forward pass, row-major
 * C[M, N] = A[M, K] . W[N, K]^T with bf16 operands and fp32 accumulation,
 * through cuBLASLt with one algorithm per kind of GEMM (q/k/v, o, router,
 * gate_up, down, lm_head) chosen ONCE at open for a representative M and
 * reused for every M; the layout descriptors are made once too, only their
 * column count changes per call.
 *
 * Why: the experts' GEMMs have a different M (rows per expert) at every call,
 * and cublasGemmEx runs its heuristics on the host for each new shape
 * (~165 us a call, measured: bench/NOTES.md v1), which starved the GPU. A
 * fixed algorithm also makes the bits independent of cuBLAS's heuristic
 * cache. If cuBLASLt refuses the algorithm for some M (alignment of an odd
 * shape), that call falls back to cublasGemmEx. */
#include "cuda_state.h"

#include <string.h>

static const char *const kind_name[OLMOE_G_COUNT] = {"qkv", "o", "router", "gate_up", "down", "lm_head"};

/* the algorithm of a kind, for its representative M; the activation and
 * output layouts are kept and each call only sets their column count */
static int pick(olmoe_cuda_state *s, int kind, int N, int K, cudaDataType_t ct, int M_rep, int ldc) {
    olmoe_cuda_gemm_kind *g = &s->gk[kind];
    g->N = N, g->K = K, g->ct = ct, g->ldb = K, g->ldc = ldc;
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&g->a, CUDA_R_16BF, (uint64_t)K, (uint64_t)N, K));
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&g->b, CUDA_R_16BF, (uint64_t)K, (uint64_t)M_rep, K));
    CUBLAS_TRY(cublasLtMatrixLayoutCreate(&g->c, ct, (uint64_t)N, (uint64_t)M_rep, ldc));
    cublasLtMatmulPreference_t pref;
    CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = s->workspace_bytes;
    uint32_t al = 16; /* rows of a grouped slice are only 16-byte aligned in general */
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al, sizeof al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al, sizeof al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al, sizeof al);
    cublasLtMatmulHeuristicResult_t res;
    int n = 0;
    memset(&res, 0, sizeof res);
    if (cublasLtMatmulAlgoGetHeuristic(s->lt, s->op, g->a, g->b, g->c, g->c, pref, 1, &res, &n) ==
            CUBLAS_STATUS_SUCCESS &&
        n > 0) {
        g->algo = res.algo;
        g->have_algo = 1;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    return 0;
}

int olmoe_cuda_gemm_init(olmoe_cuda_state *s, const olmoe_config *c) {
    CUBLAS_TRY(cublasLtCreate(&s->lt));
    CUBLAS_TRY(cublasLtMatmulDescCreate(&s->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(s->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_TRY(cublasLtMatmulDescSetAttribute(s->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    int D = c->hidden_size, I = c->intermediate_size, E = c->num_experts, L = c->num_hidden_layers;
    int QD = c->num_attention_heads * c->head_dim, KD = c->num_key_value_heads * c->head_dim;
    int T = s->T, rows = T * s->K / E > 0 ? T * s->K / E : 1; /* mean rows per expert */
    int lch = T < OLMOE_CUDA_LM_CHUNK ? T : OLMOE_CUDA_LM_CHUNK;
    if (pick(s, OLMOE_G_QKV, QD + 2 * KD, D, CUDA_R_16BF, T, QD + 2 * KD) ||
        pick(s, OLMOE_G_O, D, QD, CUDA_R_16BF, T, D) || pick(s, OLMOE_G_ROUTER, E, D, CUDA_R_32F, T, L * E) ||
        pick(s, OLMOE_G_GATEUP, 2 * I, D, CUDA_R_16BF, rows, 2 * I) ||
        pick(s, OLMOE_G_DOWN, D, I, CUDA_R_16BF, rows, D) ||
        pick(s, OLMOE_G_LMHEAD, c->vocab_size, D, CUDA_R_16BF, lch, c->vocab_size))
        return -1;
    return 0;
}

void olmoe_cuda_gemm_free(olmoe_cuda_state *s) {
    for (int k = 0; k < OLMOE_G_COUNT; k++) {
        if (s->gk[k].a) cublasLtMatrixLayoutDestroy(s->gk[k].a);
        if (s->gk[k].b) cublasLtMatrixLayoutDestroy(s->gk[k].b);
        if (s->gk[k].c) cublasLtMatrixLayoutDestroy(s->gk[k].c);
    }
    if (s->op) cublasLtMatmulDescDestroy(s->op);
    if (s->lt) cublasLtDestroy(s->lt);
}

int olmoe_cuda_gemm_on(olmoe_cuda_state *s, int si, int kind, int M, const void *A, int lda, const void *W, void *C,
                       int ldc) {
    if (M <= 0) return 0;
    olmoe_cuda_gemm_kind *g = &s->gk[kind];
    const float one = 1.0f, zero = 0.0f;
    cudaStream_t st = si ? s->xs[si] : s->stream;
    if (g->have_algo && lda == g->ldb && ldc == g->ldc) {
        uint64_t cols = (uint64_t)M;
        cublasLtMatrixLayoutSetAttribute(g->b, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof cols);
        cublasLtMatrixLayoutSetAttribute(g->c, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof cols);
        cublasStatus_t rc = cublasLtMatmul(s->lt, s->op, &one, W, g->a, A, g->b, &zero, C, g->c, C, g->c, &g->algo,
                                           (char *)s->workspace + (size_t)si * s->workspace_bytes,
                                           s->workspace_bytes, st);
        if (rc == CUBLAS_STATUS_SUCCESS) return 0;
    }
    g->n_fallback++;
    /* the fallback runs on the main stream: correct (the caller joins every
     * stream before using the results), only not overlapped */
    CUBLAS_TRY(cublasGemmEx(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, g->N, M, g->K, &one, W, CUDA_R_16BF, g->K, A,
                            CUDA_R_16BF, lda, &zero, C, g->ct, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

int olmoe_cuda_gemm(olmoe_cuda_state *s, int kind, int M, const void *A, int lda, const void *W, void *C, int ldc) {
    return olmoe_cuda_gemm_on(s, 0, kind, M, A, lda, W, C, ldc);
}

void olmoe_cuda_gemm_report(const olmoe_cuda_state *s) {
    for (int k = 0; k < OLMOE_G_COUNT; k++)
        if (!s->gk[k].have_algo || s->gk[k].n_fallback)
            notef("cuda: %s GEMM: %s, %ld calls fell back to cublasGemmEx", kind_name[k],
                  s->gk[k].have_algo ? "cuBLASLt algorithm" : "no cuBLASLt algorithm", s->gk[k].n_fallback);
}
