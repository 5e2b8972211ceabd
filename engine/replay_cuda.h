/* replay_cuda.h (internal to engine/): the CUDA replay backend (replay_cuda.cu), one of
 * replay_backend.h's backends, picked by olmoe_replay_backend_open(m, "cuda", ...).
 * Only built when nvcc is found (OLMOE_HAVE_CUDA).
 *
 *   olmoe_replay_backend *b;
 *   if (olmoe_replay_backend_open(&m, "cuda", 16384, 8, OLMOE_ROUTING_RECOMPUTE, &b) != 0)
 *       die("%s", olmoe_error());
 *   olmoe_replay_backend_load(b, &chunk);          // uploads the chunk once
 *   olmoe_replay_backend_run(b, &policy, &out);    // per policy
 *   olmoe_replay_backend_close(b);
 *
 * What it computes is the CUDA engine's bf16 arithmetic (cuda_*.cu)
 * with attention replaced by the chunk's stored A_l: per layer h = bf16(h +
 * A_l), x = rmsnorm(h) * w_post, the router GEMM (fp32 out, rounded to bf16
 * as the engine routes), the policy, the chosen (token, expert) pairs grouped
 * by expert (counts, one scan, a stable scatter) and one GEMM per expert over
 * its rows only (a variable number of experts per token costs no padding),
 * SiLU * up, the weighted sum per token in rank order (bf16, as the engine),
 * then the LM head in blocks of rows with NLL and argmax reduced on the GPU.
 * So replaying the baseline top-k on a trace the CUDA engine captured gives
 * its NLL back up to GEMM blocking.
 *
 * Routing: on the GPU. topk with T = 1 runs the engine's own kernel (so
 * replaying a capture's top-k gives its NLL back bit for bit); every other
 * policy, and every policy with --routing captured (the chunk's stored
 * logits uploaded once), runs engine/cuda_policy.cu, whose decisions and
 * weights are the C reference's bits (tests/gpu/test_policy_gpu.c). A policy
 * the GPU cannot route runs on the host through olmoe_policy_route on every
 * core (one layer's logits copied to pinned memory, the choices copied back).
 *
 * Environment (measurements): OLMOE_REPLAY_THREADS=N host routing threads
 * (default every core), OLMOE_CUDA_STREAMS as for the engine, OLMOE_REPLAY_HOST=1
 * routes every policy on the host (the reference path).
 */
#ifndef OLMOE_REPLAY_CUDA_H
#define OLMOE_REPLAY_CUDA_H

#include "replay_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

extern const olmoe_replay_backend_ops olmoe_replay_cuda_ops;

#ifdef __cplusplus
}
#endif

#endif
