/* main_capture_generate.c: olmoe-capture --prompts FILE --generate N, generation
 * mode of the capture command (generate.h). main_capture.c parses the
 * command line (its --policy, --kde, --device, --top-k, --out, --force are
 * shared) and hands over here.
 *
 * Flow: options checked -> output name reserved -> model, policy, tokenizer,
 * prompts -> engine sized for the longest prompt plus N -> each prompt
 * generated and printed -> the output file written and renamed. Errors die,
 * which removes the partial output. */
#include "main_capture.h"

#include <stdlib.h>
#include <string.h>

/* one line whatever the text holds: \n, \t, \\ and \xNN for other controls */
static void print_escaped(FILE *f, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p == '\\')
            fputs("\\\\", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
}

static void print_ids(FILE *f, const int32_t *ids, int n) {
    for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? " " : "", ids[i]);
}

/* decoded text, or NULL without a tokenizer; caller frees */
static char *decode(const olmoe_tokenizer *tok, const int32_t *ids, int n) {
    if (!tok) return NULL;
    char *text;
    size_t len;
    if (olmoe_tokenizer_decode(tok, ids, (size_t)n, 0, &text, &len) != 0) die("%s", olmoe_error());
    return text;
}

static void print_result(int i, const olmoe_prompt *p, const olmoe_generation *g, const char *prompt_text,
                         const char *continuation, int with_ids) {
    printf("[%d] prompt: ", i);
    if (prompt_text)
        print_escaped(stdout, prompt_text);
    else
        print_ids(stdout, p->ids, p->n);
    printf("\n[%d] continuation: ", i);
    if (continuation)
        print_escaped(stdout, continuation);
    else
        print_ids(stdout, g->tokens, g->n);
    if (with_ids) {
        printf("\n[%d] ids: ", i);
        print_ids(stdout, p->ids, p->n);
        printf(" | ");
        print_ids(stdout, g->tokens, g->n);
    }
    long sum = 0;
    int lo = 1 << 30, hi = 0;
    for (size_t j = 0; j < (size_t)g->n * g->L; j++) {
        int k = g->n_experts[j];
        sum += k;
        lo = k < lo ? k : lo;
        hi = k > hi ? k : hi;
    }
    printf("\n[%d] experts: %.2f per token and layer (%d to %d) over %d tokens%s\n", i,
           (double)sum / ((double)g->n * g->L), lo, hi, g->n, g->stopped ? ", stopped at EOS" : "");
}

/* the model's tokenizer.json when there is one; text prompts need it */
static olmoe_tokenizer *open_tokenizer(const char *model_dir, olmoe_prompts_format fmt) {
    char *path = olmoe_path_join(model_dir, "tokenizer.json");
    olmoe_tokenizer *tok = NULL;
    if (olmoe_file_exists(path)) {
        if (olmoe_tokenizer_open(path, &tok) != 0) die("%s", olmoe_error());
    } else if (fmt == OLMOE_PROMPTS_TEXT) {
        die("%s: not found: text prompts need the model's tokenizer (or --prompt-format ids)", path);
    }
    free(path);
    return tok;
}

/* the checks of the command line that need no file; the prompts' format */
static olmoe_prompts_format check_args(const olmoe_generate_env *env) {
    const olmoe_generate_args *a = env->args;
    if (!a->prompts) die_usage("--generate N needs --prompts FILE");
    if (!a->n_new) die_usage("--prompts FILE needs --generate N");
    if (env->stream_options)
        die_usage("--generate: --tokens, --input and the other capture options do not apply");
    if (env->make_policy && env->top_k) die_usage("--policy and --top-k: choose one way to route");
    if (env->policy_options) die_usage("--kde, --empirical and the policy parameters (--alpha, ...) go with --policy");
    olmoe_prompts_format fmt;
    if (olmoe_prompts_parse_format(a->prompt_format, &fmt) != 0) die_usage("--prompt-format: %s", olmoe_error());
    return fmt;
}

/* --stop-at-eos: the id to stop at (the config's, else the tokenizer's), or -1 */
static long stop_id(const olmoe_generate_env *env, const olmoe_config *c, const olmoe_tokenizer *tok) {
    if (!env->args->stop_at_eos) return -1;
    long eos = c->eos_token_id >= 0 ? c->eos_token_id : tok ? olmoe_tokenizer_eos_id(tok) : -1;
    if (eos < 0) die("--stop-at-eos: %s names no eos_token_id (and has no <|endoftext|>)", env->model_dir);
    return eos;
}

/* the engine sized for the longest prompt plus N, routing by the policy or top-k */
static olmoe_engine *open_engine(const olmoe_generate_env *env, olmoe_model *m, olmoe_policy *pol, int k,
                                 const olmoe_prompts *ps, int *longest) {
    const olmoe_config *c = &m->cfg;
    long n_new = env->args->n_new;
    *longest = 0;
    for (int i = 0; i < ps->n; i++) *longest = ps->items[i].n > *longest ? ps->items[i].n : *longest;
    long positions = (long)*longest + n_new - 1;
    if (positions > 1L << 24) die_usage("--generate %ld: %ld positions is too many", n_new, positions);
    if (c->max_position_embeddings && positions > c->max_position_embeddings)
        warnf("%ld positions (prompt and continuation) pass the model's max_position_embeddings %ld", positions,
              c->max_position_embeddings);
    olmoe_engine_opts eo = {.device = env->device, .max_ctx = (int)positions, .max_tokens = (int)positions,
                            .top_k = k};
    if (pol) eo.top_k = olmoe_policy_max_experts(pol), eo.route = olmoe_policy_route_at, eo.route_ctx = pol;
    olmoe_engine *eng;
    if (olmoe_engine_open(m, &eo, &eng) != 0) die("%s", olmoe_error());
    return eng;
}

/* every prompt continued and printed as it is done, gens[i] and its text
 * conts[i] (NULL without a tokenizer) kept for the output file; whether
 * every one ran with the KV cache */
static int generate_all(const olmoe_generate_env *env, olmoe_engine *eng, const olmoe_tokenizer *tok,
                        const olmoe_prompts *ps, long eos, olmoe_generation *gens, char **conts) {
    const olmoe_generate_args *a = env->args;
    olmoe_generate_opts go = {.n_new = (int)a->n_new, .stop_id = (int32_t)eos, .recompute = a->no_cache};
    double secs = 0;
    long n_gen = 0;
    int cached = 1;
    for (int i = 0; i < ps->n; i++) {
        const olmoe_prompt *p = &ps->items[i];
        if (olmoe_generate(eng, p->ids, p->n, &go, &gens[i]) != 0)
            die("%s:%ld: %s", a->prompts, p->line, olmoe_error());
        conts[i] = decode(tok, gens[i].tokens, gens[i].n);
        char *ptext = p->text ? xstrdup(p->text) : decode(tok, p->ids, p->n);
        print_result(i, p, &gens[i], ptext, conts[i], a->print_ids);
        free(ptext);
        if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");
        secs += gens[i].seconds;
        n_gen += gens[i].n;
        cached &= gens[i].cached;
    }
    notef("%ld tokens generated in %.2f s (%.1f tokens/s, %s)", n_gen, secs, secs > 0 ? (double)n_gen / secs : 0.0,
          cached ? "KV cache" : "recomputing the whole sequence per token");
    return cached;
}

/* --out: the prompts, their continuations and what made them, written and renamed */
static void write_output(const olmoe_generate_env *env, olmoe_out *out, olmoe_model *m, const olmoe_engine *eng,
                         const olmoe_tokenizer *tok, const char *policy, long eos, int cached,
                         const olmoe_prompts *ps, const olmoe_generation *gens, char **conts) {
    const olmoe_config *c = &m->cfg;
    olmoe_hash sum;
    if (olmoe_model_checksum(m, &sum) != 0) die("%s", olmoe_error());
    olmoe_generate_meta meta = {
        .command = env->command, .model_dir = env->model_dir, .model_checksum = sum.hex,
        .tokenizer_checksum = tok ? olmoe_tokenizer_checksum(tok) : "", .config_json = c->json,
        .policy = policy, .device = olmoe_engine_device(eng),
        .compute_dtype = olmoe_engine_compute_dtype(eng), .n_layers = c->num_hidden_layers,
        .n_experts = c->num_experts, .max_k = olmoe_engine_max_experts(eng), .n_new = (int)env->args->n_new,
        .stop_at_eos = env->args->stop_at_eos, .kv_cache = cached, .eos_id = eos};
    if (olmoe_generate_write(out->tmp, &meta, ps, gens, conts) != 0) die("%s", olmoe_error());
    if (olmoe_out_commit(out) != 0) die("%s", olmoe_error());
}

int cmd_capture_generate(const olmoe_generate_env *env) {
    const olmoe_generate_args *a = env->args;
    olmoe_prompts_format fmt = check_args(env);
    olmoe_set_quiet(env->quiet);

    olmoe_out out;
    if (env->out_path && olmoe_out_begin(&out, env->out_path, env->force) != 0) die("%s", olmoe_error());
    olmoe_model m;
    if (olmoe_model_open(env->model_dir, &m) != 0) die("%s", olmoe_error());
    const olmoe_config *c = &m.cfg;
    int L = c->num_hidden_layers, E = c->num_experts;
    if (env->top_k > E) die_usage("--top-k %ld: the model has %d experts", env->top_k, E);
    int k = env->top_k ? (int)env->top_k : c->num_experts_per_tok;
    olmoe_policy *pol = env->make_policy ? env->make_policy(env->policy_ctx, c) : NULL;
    olmoe_tokenizer *tok = open_tokenizer(env->model_dir, fmt);
    olmoe_prompts ps;
    if (olmoe_prompts_read(a->prompts, fmt, tok, c->vocab_size, &ps) != 0) die("%s", olmoe_error());
    long eos = stop_id(env, c, tok);

    int longest;
    olmoe_engine *eng = open_engine(env, &m, pol, k, &ps, &longest);
    char policy[OLMOE_POLICY_ID_MAX];
    snprintf(policy, sizeof policy, "topk(k=%d,norm=model)", k);
    if (pol) snprintf(policy, sizeof policy, "%s", pol->id);
    notef("%s: %d layers x %d experts, routing %s on %s; %d prompts (longest %d tokens), %ld new tokens each",
          env->model_dir, L, E, policy, olmoe_engine_device(eng), ps.n, longest, a->n_new);

    olmoe_generation *gens = xcalloc((size_t)ps.n, sizeof *gens);
    char **conts = xcalloc((size_t)ps.n, sizeof *conts);
    int cached = generate_all(env, eng, tok, &ps, eos, gens, conts);
    if (env->out_path) write_output(env, &out, &m, eng, tok, policy, eos, cached, &ps, gens, conts);

    for (int i = 0; i < ps.n; i++) {
        olmoe_generation_free(&gens[i]);
        free(conts[i]);
    }
    free(gens);
    free(conts);
    olmoe_engine_close(eng);
    olmoe_prompts_free(&ps);
    olmoe_tokenizer_close(tok);
    olmoe_model_close(&m);
    return 0;
}
