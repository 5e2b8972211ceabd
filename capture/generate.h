/* generate.h (part of capture.h: include capture.h):
 * greedy generation under a routing policy, the qualitative
 * check of olmoe-capture --prompts FILE --generate N continues
 * each prompt with the argmax token N times (as transformers' generate with
 * do_sample=False and min_new_tokens = max_new_tokens), through the
 * engine's KV cache (model.h, olmoe_engine_decode_*), and records which
 * experts every generated token used.
 *
 *   olmoe_prompts ps;
 *   if (olmoe_prompts_read("prompts.txt", OLMOE_PROMPTS_TEXT, tok, V, &ps) != 0)
 *       die("%s", olmoe_error());
 *   olmoe_generate_opts go = {.n_new = 24, .stop_id = -1};
 *   olmoe_generation g;
 *   if (olmoe_generate(eng, ps.items[0].ids, ps.items[0].n, &go, &g) != 0)
 *       die("%s", olmoe_error());
 *   ... g.tokens[i], g.n_experts[i * L + l], g.experts[(i * L + l) * max_k + j] ...
 *   olmoe_generation_free(&g);
 *   olmoe_prompts_free(&ps);
 *
 * Row i of the routing arrays is the routing of the forward position that
 * PREDICTED generated token i: the prompt's last position for i = 0, the
 * position of generated token i-1 after that. So the rows are exactly the
 * n forward positions generation ran (the last generated token is never fed
 * back), and row i is the compute spent to produce token i.
 */
#ifndef OLMOE_GENERATE_H
#define OLMOE_GENERATE_H

#include <stdint.h>

#include "engine.h"
#include "policy.h"

/* ---- prompts: one a line ---- */
typedef enum { OLMOE_PROMPTS_TEXT, OLMOE_PROMPTS_IDS, OLMOE_PROMPTS_FORMAT_COUNT } olmoe_prompts_format;
/* "text", "ids" */
int olmoe_prompts_parse_format(const char *s, olmoe_prompts_format *out);

typedef struct {
    char *text;  /* the line as given (text format), NULL for ids */
    int32_t *ids; /* [n] */
    int n;
    long line;   /* 1-based line in the file */
} olmoe_prompt;

typedef struct {
    olmoe_prompt *items; /* [n] */
    int n;
} olmoe_prompts;

/* Text: each line without its line end is a prompt, encoded by tok (which
 * must not be NULL); ids: decimal token ids separated by blanks. Blank lines
 * (spaces and tabs only) are skipped; no prompt at all is an error, and so is
 * an id at or above vocab_size. Messages name FILE:LINE. */
int olmoe_prompts_read(const char *path, olmoe_prompts_format fmt, olmoe_tokenizer *tok,
                       int vocab_size, olmoe_prompts *out);
void olmoe_prompts_free(olmoe_prompts *p);

/* ---- one prompt's continuation ---- */
typedef struct {
    int n_new;       /* tokens to generate, >= 1 */
    int32_t stop_id; /* stop after generating this id (EOS), -1: never stop early */
    int recompute;   /* 1: no KV cache, a full forward pass per token (the reference) */
} olmoe_generate_opts;

typedef struct {
    int n;                /* tokens generated: n_new, fewer only when stop_id came */
    int L, max_k;         /* layers, row width of experts/weights */
    int stopped;          /* 1 when the last token is stop_id */
    int cached;           /* 1 when the KV cache ran, 0 when it recomputed */
    int32_t *tokens;      /* [n] */
    uint8_t *n_experts;   /* [n, L] experts used (see the top of this file) */
    int16_t *experts;     /* [n, L, max_k] which, in the policy's rank order, -1 padded */
    float *weights;       /* [n, L, max_k] their weights, 0 padded */
    double seconds;       /* wall time, prefill included */
} olmoe_generation;

/* Prefills prompt[0..n_prompt) (in pieces of the engine's max_tokens) and
 * generates; the engine's max_ctx must hold n_prompt + n_new - 1 positions. */
int olmoe_generate(olmoe_engine *e, const int32_t *prompt, int n_prompt, const olmoe_generate_opts *o,
                   olmoe_generation *g);
void olmoe_generation_free(olmoe_generation *g);

/* ---- the output file (generate_h5.c), layout in olmoe-capture(1) ---- */
typedef struct {
    const char *command, *model_dir, *model_checksum, *tokenizer_checksum, *config_json;
    const char *policy, *device, *compute_dtype;
    int n_layers, n_experts, max_k, n_new, stop_at_eos, kv_cache;
    long eos_id;
} olmoe_generate_meta;

/* Writes a new file (path truncated: olmoe_out_begin first). texts[i] and
 * continuations[i] may be NULL (ids without a tokenizer). */
int olmoe_generate_write(const char *path, const olmoe_generate_meta *m, const olmoe_prompts *ps,
                         const olmoe_generation *gens /*[ps->n]*/,
                         char *const *continuations /*[ps->n]*/);

#define OLMOE_GENERATE_FORMAT "olmoe-generate"
#define OLMOE_GENERATE_FORMAT_VERSION 1

#endif
