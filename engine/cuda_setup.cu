/* cuda_setup.cu: what the CUDA engine (cuda_engine.cu) and the CUDA replay
 * (replay_cuda.cu) both do when they open: refuse a checkpoint whose
 * architecture the kernels do not run, pick the device a name asks for,
 * read OLMOE_CUDA_STREAMS, allocate device memory with a message that says
 * how much and for what, and create the compute stream, the experts'
 * streams, the cuBLAS handle and the GEMM kinds. */
#include "cuda_engine.h"
#include "cuda_state.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "common.h"
}

int olmoe_cuda_check_arch(const olmoe_config *c, const char *who) {
    if (c->arch != OLMOE_ARCH_OLMOE) /* its kernels are OLMoE's: whole-projection q/k norm, no biases */
        return olmoe_errorf("%s runs olmoe checkpoints only, this one is %s: use --device cpu", who,
                            olmoe_arch_name(c->arch));
    return 0;
}

int olmoe_cuda_pick_device(const char *name, int *dev) {
    int n = olmoe_cuda_device_count();
    if (n == 0) return olmoe_errorf("device '%s': no CUDA GPU found (or no driver)", name);
    *dev = 0;
    if (strncmp(name, "cuda:", 5) == 0) {
        long v;
        if (olmoe_parse_long(name + 5, 0, n - 1, &v) != 0)
            return olmoe_errorf("device '%s': expected cuda:N with N in 0..%d", name, n - 1);
        *dev = (int)v;
    }
    return 0;
}

int olmoe_cuda_streams_env(int *n) {
    long ns = 4;
    const char *v = getenv("OLMOE_CUDA_STREAMS");
    if (v && olmoe_parse_long(v, 1, OLMOE_CUDA_MAX_STREAMS, &ns) != 0)
        return olmoe_errorf("OLMOE_CUDA_STREAMS=%s: expected 1 to %d", v, OLMOE_CUDA_MAX_STREAMS);
    *n = (int)ns;
    return 0;
}

int olmoe_cuda_alloc(void **p, size_t bytes, const char *who, const char *hint, const char *what, ...) {
    cudaError_t err = cudaMalloc(p, bytes);
    if (err == cudaSuccess) return 0;
    char size[32], for_what[256];
    va_list ap;
    va_start(ap, what);
    vsnprintf(for_what, sizeof for_what, what, ap);
    va_end(ap);
    *p = NULL;
    return olmoe_errorf("%s: cannot allocate %s %s: %s%s", who, olmoe_fmt_bytes((double)bytes, size, sizeof size),
                        for_what, cudaGetErrorString(err), hint);
}

int olmoe_cuda_compute_open(olmoe_cuda_state *s, const olmoe_config *c) {
    s->workspace_bytes = (size_t)32 << 20; /* per stream */
    CUDA_TRY(cudaMalloc(&s->workspace, s->workspace_bytes * s->n_streams));
    CUDA_TRY(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    CUDA_TRY(cudaEventCreateWithFlags(&s->ev_fork, cudaEventDisableTiming));
    for (int i = 1; i < s->n_streams; i++) {
        CUDA_TRY(cudaStreamCreateWithFlags(&s->xs[i], cudaStreamNonBlocking));
        CUDA_TRY(cudaEventCreateWithFlags(&s->ev_join[i], cudaEventDisableTiming));
    }
    CUBLAS_TRY(cublasCreate(&s->blas));
    CUBLAS_TRY(cublasSetStream(s->blas, s->stream));
    CUBLAS_TRY(cublasSetWorkspace(s->blas, s->workspace, s->workspace_bytes));
    return olmoe_cuda_gemm_init(s, c);
}
