/* capture.h: the capture layer, the one public header of capture/ (above the
 * engine, beside analyze/): what olmoe-capture runs on top of the engine:
 * corpora made into a token stream (corpus.h), the stream cut into windows
 * (windows.h), shards and resume (shard.h), and greedy generation under a
 * policy (generate.h). The parts are included here; main_capture.c is the
 * command.
 *
 *   #include "capture.h"
 *   olmoe_prompts ps;
 *   if (olmoe_prompts_read("prompts.txt", OLMOE_PROMPTS_TEXT, tok, V, &ps) != 0)
 *       return -1;                                   // olmoe_error() says why
 *   olmoe_generate_opts go = {.n_new = 24, .stop_id = -1};
 *   olmoe_generation g;
 *   if (olmoe_generate(eng, ps.items[0].ids, ps.items[0].n, &go, &g) != 0) return -1;
 *   olmoe_generation_free(&g);
 *   olmoe_prompts_free(&ps);
 */
#ifndef OLMOE_CAPTURE_H
#define OLMOE_CAPTURE_H

#include "corpus.h"
#include "generate.h"
#include "shard.h"
#include "windows.h"

#endif
