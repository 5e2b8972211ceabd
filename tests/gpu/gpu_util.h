/* gpu_util.h: helpers of the GPU tests: checked device buffers (poisoned
 * with NaN bytes before a kernel runs, so an unwritten output cannot pass),
 * bf16 arrays on the host, a seeded generator, and the normalised error
 * ||out - ref|| / ||ref|| the tolerances are stated in.
 *
 *   uint16_t *d = gpu_alloc(n * 2);            // poisoned
 *   gpu_put(d, host, n * 2); gpu_get(host, d, n * 2);
 *   double e = nerr_f(out, ref, n);            // NaN in out gives +inf
 */
#ifndef GPU_UTIL_H
#define GPU_UTIL_H

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "engine.h"
#include "traces.h" /* olmoe_bf16_from_f32 / olmoe_bf16_to_f32 */

/* the CUDA engine's kernels are OLMoE's: fixtures of other architectures
 * (config.json's model_type) are checked on the CPU engine only */
static inline int gpu_fixture_runs_on_cuda(const char *dir, const char *name) {
    char *p = olmoe_path_join(dir, "config.json");
    olmoe_config c;
    int rc = olmoe_config_load(p, &c), ok = rc == 0 && c.arch == OLMOE_ARCH_OLMOE;
    if (rc == 0) {
        if (!ok) printf("# %-18s not on the GPU: the CUDA engine runs olmoe only, this is %s\n", name,
                        olmoe_arch_name(c.arch));
        olmoe_config_free(&c);
    }
    free(p);
    return ok;
}

#define GPU_OK(call)                                                                          \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess) die("%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
    } while (0)

static void *gpu_allocs[4096];
static int gpu_n_allocs;

/* device memory filled with 0xff bytes: NaN as float and as bf16, -1 as int */
static inline void *gpu_alloc(size_t bytes) {
    void *p;
    GPU_OK(cudaMalloc(&p, bytes ? bytes : 1));
    GPU_OK(cudaMemset(p, 0xff, bytes ? bytes : 1));
    if (gpu_n_allocs < 4096) gpu_allocs[gpu_n_allocs++] = p;
    return p;
}

static inline void gpu_free_all(void) {
    for (int i = 0; i < gpu_n_allocs; i++) cudaFree(gpu_allocs[i]);
    gpu_n_allocs = 0;
}

static inline void gpu_put(void *d, const void *h, size_t bytes) { GPU_OK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice)); }
static inline void gpu_get(void *h, const void *d, size_t bytes) { GPU_OK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost)); }
static inline void *gpu_dup(const void *h, size_t bytes) {
    void *d = gpu_alloc(bytes);
    gpu_put(d, h, bytes);
    return d;
}
static inline void gpu_sync(const char *what) {
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) die("%s: %s", what, cudaGetErrorString(e));
}

static uint64_t gpu_rng = 0x243f6a8885a308d3ull;
static inline double rnd_u(void) { /* splitmix64 -> [0, 1) */
    uint64_t z = (gpu_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}
static inline double rnd_n(void) { /* standard normal, Box-Muller */
    double u = rnd_u(), v = rnd_u();
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static inline float bfr(float x) { return olmoe_bf16_to_f32(olmoe_bf16_from_f32(x)); }

/* n bf16 values ~ N(center, scale^2), and their float values */
static inline uint16_t *rand_bf16(size_t n, double center, double scale, float *as_float) {
    uint16_t *p = xmalloc(n * 2 + 2);
    for (size_t i = 0; i < n; i++) {
        p[i] = olmoe_bf16_from_f32((float)(center + scale * rnd_n()));
        if (as_float) as_float[i] = olmoe_bf16_to_f32(p[i]);
    }
    return p;
}

static inline void bf16_to_float(const uint16_t *b, float *f, size_t n) {
    for (size_t i = 0; i < n; i++) f[i] = olmoe_bf16_to_f32(b[i]);
}

/* ||out - ref|| / ||ref||; any NaN or inf in out gives +inf */
static inline double nerr_f(const float *out, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(out[i])) return INFINITY;
        double d = (double)out[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline double nerr_bf(const uint16_t *out, const float *ref, size_t n) {
    float *o = xmalloc(n * sizeof *o + 4);
    bf16_to_float(out, o, n);
    double e = nerr_f(o, ref, n);
    free(o);
    return e;
}

static inline int gpu_present(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n > 0;
}

#endif
