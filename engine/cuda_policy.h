/* cuda_policy.h (internal to engine/): every routing policy family (policy/policy.h) decided on the
 * GPU, one warp per token row, for the CUDA engine, the CUDA replay backend
 * and the GPU tests. policy/ is the reference: the kernel (cuda_policy.cu)
 * follows its definitions operation by operation (the same fp32 softmax with
 * the exp rounded once from double, the same 64-bit keys, so ties go to the
 * lower index, the same clamps and the same fp32/double arithmetic with no
 * fused multiply-adds), so device and host decisions are the same bits;
 * tests/gpu/test_policy_gpu.c counts any difference.
 *
 *   olmoe_cuda_nulls *nulls = NULL;   // device copies of kde/empirical nulls, made on first use
 *   if (olmoe_cuda_policy_route(&nulls, pol, layer, d_logits, ld, T, K, d_e, d_w, d_n, stream) != 0)
 *       ...olmoe_error()...
 *   olmoe_cuda_nulls_free(nulls);
 *
 * Every pointer but pol is device memory. Rows t in [0, T) are logits +
 * t * ld (E = the policy's model's experts, at most OLMOE_POLICY_MAX_E); the
 * output is as olmoe_route_rows writes it: sel_e, sel_w [T, K] in rank order
 * (slots past the count: -1 and 0), sel_n [T]. */
#ifndef OLMOE_CUDA_POLICY_H
#define OLMOE_CUDA_POLICY_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "policy.h"

typedef struct olmoe_cuda_nulls olmoe_cuda_nulls;

/* 1 when the GPU routes this bound policy into K slots per token, else 0 */
int olmoe_cuda_policy_supported(const olmoe_policy *p, int K);
/* 0, or -1 + message (unsupported policy, allocation, launch) */
int olmoe_cuda_policy_route(olmoe_cuda_nulls **nulls, const olmoe_policy *p, int layer,
                            const float *logits /*[T, ld]*/, int ld, int T, int K,
                            int32_t *sel_e /*[T, K]*/, float *sel_w /*[T, K]*/,
                            int32_t *sel_n /*[T]*/, cudaStream_t s);
void olmoe_cuda_nulls_free(olmoe_cuda_nulls *n);

#ifdef __cplusplus
}
#endif

#endif
