/* engine.h: the engine layer, the one public header of engine/. It holds
 * what turns token ids into routing and logits: the checkpoint (config.json,
 * safetensors weights), the tokenizer, the forward pass on the CPU (fp32,
 * OpenBLAS) and on CUDA (bf16, *.cu), incremental decoding with a KV cache,
 * and the replay backends (frozen-attention replay of one chunk under one
 * policy). Its parts are model.h, tokenizer.h and replay_backend.h, included
 * here; every other header of engine/ is internal to it. Capture and analyze
 * sit above it; policies (policy.h) and traces (traces.h) below.
 *
 *   #include "engine.h"
 *   olmoe_model m;
 *   if (olmoe_model_open("models/olmoe-brown", &m) != 0) return -1; // olmoe_error()
 *   olmoe_engine_opts eo = {.device = "cpu", .max_tokens = 2048, .max_ctx = 2048};
 *   olmoe_engine *e;
 *   if (olmoe_engine_open(&m, &eo, &e) != 0) ...;
 *   olmoe_window_io w = {.n = n, .tokens = ids, .nll = nll, .argmax = am};
 *   olmoe_engine_forward(e, &w, 1);
 *   olmoe_engine_close(e);
 *   olmoe_model_close(&m);
 */
#ifndef OLMOE_ENGINE_H
#define OLMOE_ENGINE_H

#include "model.h"
#include "replay_backend.h"
#include "tokenizer.h"

#endif
