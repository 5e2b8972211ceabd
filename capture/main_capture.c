/* main_capture.c: olmoe-capture, the model's routing and baseline loss over a
 * token stream, written as an olmoe-trace (docs/DESIGN.md §2, §5).
 *
 * Flow: options -> output name reserved (so a bad one fails before any work)
 * -> model opened and checked -> input documents -> windows -> engine ->
 * batches of windows forwarded and appended to the trace -> close, rename,
 * perplexity on stdout. Any error dies, which removes the partial output. */
#include "capture.h"
#include "common.h"
#include "engine.h"
#include "main_capture.h"
#include "policy.h"
#include "traces.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: olmoe-capture --model DIR (--tokens FILE | --input FILE) --out FILE [options]\n"
    "\n"
    "Runs an OLMoE, Qwen3-MoE, Mixtral or Qwen2-MoE model (config.json's\n"
    "model_type) over token ids (one document per line) or raw text (tokenized\n"
    "with the model's tokenizer.json), records every layer's router logits and\n"
    "the baseline next-token loss in an HDF5 trace, and prints the perplexity.";

/* the command line: every option, filled by the option table (option_table)
 * and owned by main */
typedef struct {
    const char *model_dir, *tokens_path, *out_path, *device;
    long ctx, top_k, batch;
    int force, quiet, save_residuals;
    const char *logits_dtype_s; /* --logits-dtype */
    long compress_level;        /* --compress: deflate level of the big datasets */
    /* ---- --resume, --shard (capture/resume.c, capture/shard.c) ---- */
    int resume;
    const char *shard_spec;
    /* ---- end --resume, --shard ---- */
    /* --input: raw text, tokenized, documents separated by EOS, one stream */
    const char *input_path, *input_format, *input_field, *group_field;
    long max_tokens, stride;
    /* ---- --policy: the exact forward pass under any routing policy (the
     * policy options every routing command shares, policy/policy_cli.c) ---- */
    olmoe_policy_cli cli;
    const char *routing_file;                /* --routing-file: short for --policy file(path=...) */
    char routing_spec[OLMOE_POLICY_ID_MAX]; /* --routing-file as the --policy it stands for */
    /* ---- end --policy ---- */
    olmoe_generate_args gen; /* --generate (main_capture_generate.c) */
    char *model_found;       /* --model resolved to a directory (model_dir points here) */
} capture_opts;

enum { OWN_OPTS = 27 }; /* the options of option_table's own, before the policy options */

/* the option table over *o: its own options, then the policy options, then OPT_END */
static void option_table(capture_opts *o, olmoe_opt *opts) {
    const olmoe_opt own[] = {
        OPT_STRING("model", &o->model_dir, "DIR", "checkpoint directory (config.json, *.safetensors)"),
        OPT_STRING("tokens", &o->tokens_path, "FILE", "token ids as text, one document per line"),
        OPT_STRING("input", &o->input_path, "FILE", "raw text instead of --tokens (see --format)"),
        OPT_STRING("format", &o->input_format, "FMT", "--input is text (one document), lines or jsonl"),
        OPT_STRING("field", &o->input_field, "NAME", "jsonl: the field holding the text (default text)"),
        OPT_STRING("group-field", &o->group_field, "NAME", "jsonl: the field naming each document's group"),
        OPT_LONG_RANGE("max-tokens", &o->max_tokens, "N", "--input: stop the stream after N tokens", 1,
                       (long)INT64_MAX),
        OPT_LONG_RANGE("stride", &o->stride, "S", "--input: windows every S tokens, each scoring its last S",
                       1, 1L << 20),
        OPT_STRING("out", &o->out_path, "FILE", "trace to write (HDF5)"),
        OPT_LONG_RANGE("ctx", &o->ctx, "N", "tokens per window, at most (default: 2048 or max positions)", 1,
                       1L << 20),
        OPT_STRING("device", &o->device, "DEV", "auto (default: cuda when a GPU is present), cpu, cuda[:N]"),
        OPT_LONG_RANGE("top-k", &o->top_k, "K", "experts per token (default: the config's)", 1, 1L << 16),
        OPT_LONG_RANGE("batch", &o->batch, "B", "windows per forward pass (default 1)", 1, 4096),
        OPT_FLAG("save-residuals", &o->save_residuals, "also store attention residuals (for replay)"),
        OPT_STRING("routing-file", &o->routing_file, "FILE",
                   "route as FILE says: short for --policy 'file(path=FILE)'"),
        OPT_STRING("logits-dtype", &o->logits_dtype_s, "DTYPE",
                   "router logits stored as float32 (default), float16 or bfloat16"),
        OPT_LONG_RANGE("compress", &o->compress_level, "N",
                       "gzip (deflate) level 1..9 of the big datasets (default 0: none)", 0, 9),
        OPT_FLAG("resume", &o->resume, "continue the interrupted capture in FILE.partial"),
        OPT_STRING("shard", &o->shard_spec, "I/N", "capture only shard I of N (contiguous windows; "
                   "join with olmoe-traces merge)"),
        /* ---- --generate (capture/generate*.c) ---- */
        OPT_STRING("prompts", &o->gen.prompts, "FILE", "generate: one prompt a line (see --prompt-format)"),
        OPT_LONG_RANGE("generate", &o->gen.n_new, "N", "continue each prompt greedily by N tokens", 1,
                       1L << 20),
        OPT_STRING("prompt-format", &o->gen.prompt_format, "FMT", "--prompts holds text (default) or ids"),
        OPT_FLAG("stop-at-eos", &o->gen.stop_at_eos, "generate: stop a prompt at the EOS token"),
        OPT_FLAG("print-ids", &o->gen.print_ids, "generate: also print the token ids"),
        OPT_FLAG("no-cache", &o->gen.no_cache, "generate: no KV cache, a full forward per token"),
        /* ---- end --generate ---- */
        OPT_FLAG("force", &o->force, "overwrite an existing output"),
        OPT_FLAG("quiet", &o->quiet, "no notes or progress on stderr"),
    };
    _Static_assert(sizeof own / sizeof own[0] == OWN_OPTS, "OWN_OPTS counts the options of own[]");
    memcpy(opts, own, sizeof own);
    int n = OWN_OPTS + olmoe_policy_cli_options(&o->cli, opts + OWN_OPTS, 0);
    opts[n] = (olmoe_opt)OPT_END;
}

/* ---- --policy ---- */
typedef struct {
    olmoe_policy_set set;
    olmoe_kde_null null;
    olmoe_kde_cdf cdf;
    olmoe_policy_empirical emp;
} policy_state;

/* pvalue=empirical: every logit of --empirical TRACE, as olmoe-replay builds it */
static void load_empirical(const olmoe_policy_cli *cli, const olmoe_config *c,
                           olmoe_policy_empirical *emp) {
    olmoe_trace *t = olmoe_trace_open(cli->empirical);
    if (!t) die("%s", olmoe_error());
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    int L = c->num_hidden_layers, E = c->num_experts;
    if (in->meta.n_layers != L || in->meta.n_experts != E)
        die("%s: a trace of %d layers x %d experts, the model has %d x %d", cli->empirical,
            in->meta.n_layers, in->meta.n_experts, L, E);
    if (olmoe_cmd_empirical(t, in->n_tokens, cli->empirical_max, emp) != 0) die("%s", olmoe_error());
    olmoe_trace_close(t);
}

/* the one policy of --policy, bound to the model (and its nulls); a file
 * policy checks its tokens against the stream's */
static olmoe_policy *make_policy(const capture_opts *o, const olmoe_config *c, policy_state *ps,
                                 const olmoe_token_stream *ts) {
    const olmoe_policy_cli *cli = &o->cli;
    memset(ps, 0, sizeof *ps);
    if (olmoe_policy_cli_build(cli, &ps->set) != 0) die_usage("%s", olmoe_error());
    if (ps->set.n != 1) die_usage("--policy: one policy, not a set of %d", ps->set.n);
    olmoe_policy_model pm = {c->num_hidden_layers, c->num_experts, c->norm_topk_prob, NULL, NULL,
                             ts->tokens, ts->n_tokens};
    olmoe_policy *p = &ps->set.items[0];
    if (olmoe_policy_needs(p, OLMOE_PVALUE_KDE)) {
        if (!cli->kde) die_usage("--policy %s needs --kde NULL.h5 (olmoe-kde fit)", p->id);
        if (olmoe_kde_read(cli->kde, &ps->null) != 0) die("%s", olmoe_error());
        if (olmoe_kde_null_check_depth(&ps->null, cli->kde, o->model_dir, c->num_hidden_layers) != 0)
            die("%s", olmoe_error());
        if (olmoe_kde_cdf_init(&ps->cdf, &ps->null, c->num_hidden_layers) != 0)
            die("%s: %s", cli->kde, olmoe_error());
        pm.null = &ps->cdf;
    } else if (cli->kde) {
        die_usage("--kde: policy %s does not use it", p->id);
    }
    if (olmoe_policy_needs(p, OLMOE_PVALUE_EMPIRICAL)) {
        if (!cli->empirical) die_usage("--policy %s needs --empirical TRACE", p->id);
        load_empirical(cli, c, &ps->emp);
        pm.emp = &ps->emp;
    } else if (cli->empirical) {
        die_usage("--empirical: policy %s does not use it", p->id);
    }
    if (olmoe_policy_bind(p, &pm) != 0) die("%s", olmoe_error());
    return p;
}

static void policy_state_free(policy_state *ps) {
    olmoe_policy_set_free(&ps->set);
    olmoe_kde_cdf_free(&ps->cdf);
    olmoe_kde_null_free(&ps->null);
    olmoe_policy_empirical_free(&ps->emp);
}

/* what --generate's policy needs: the options, and the state the policy
 * lives in until generation is over */
typedef struct {
    const capture_opts *o;
    policy_state ps;
} generate_policy_ctx;

/* --generate builds its policy as the capture does (olmoe_generate_env's make_policy) */
static olmoe_policy *generate_policy(void *ctx, const olmoe_config *c) {
    generate_policy_ctx *g = ctx;
    static const olmoe_token_stream none; /* generation has no trace to route a file by */
    return make_policy(g->o, c, &g->ps, &none);
}
/* ---- end --policy ---- */

/* The input as a token stream with documents. The one place that knows
 * where tokens come from: raw text (--input) will be read here too. */
static void load_documents(const capture_opts *o, const olmoe_config *cfg, olmoe_token_stream *ts,
                           olmoe_hash *tokenizer_sum) {
    if (!o->input_path) {
        if (olmoe_token_ids_read(o->tokens_path, cfg->vocab_size, ts) != 0) die("%s", olmoe_error());
        return;
    }
    char *tok = olmoe_path_join(o->model_dir, "tokenizer.json");
    olmoe_corpus_input in = {.path = o->input_path, .format = o->input_format, .field = o->input_field,
                             .group_field = o->group_field, .max_tokens = o->max_tokens,
                             .tokenizer = tok, .vocab_size = cfg->vocab_size,
                             .eos_id = cfg->eos_token_id};
    if (olmoe_corpus_input_read(&in, ts, tokenizer_sum) != 0) die("%s", olmoe_error());
    free(tok);
}

/* --tokens: windows per document; --input: the whole stream cut into windows
 * of ctx, or sliding ones with --stride (docs/DESIGN.md §9) */
static void make_windows(const capture_opts *o, const olmoe_token_stream *ts, olmoe_window **win,
                         int64_t *nwin) {
    int64_t zero = 0, n = ts->n_tokens;
    int r = !o->input_path ? olmoe_windows_documents(ts->doc_start, ts->doc_length, ts->n_docs, o->ctx,
                                                     win, nwin)
            : o->stride    ? olmoe_windows_stride(n, o->ctx, o->stride, win, nwin)
                           : olmoe_windows_documents(&zero, &n, 1, o->ctx, win, nwin);
    if (r != 0) die("%s", olmoe_error());
}

/* per-batch host buffers, rows of all windows of a batch back to back */
typedef struct {
    float *router_logits; /* [B*ctx, L, E] */
    float *nll;           /* [B*ctx] */
    int32_t *argmax;      /* [B*ctx] */
    uint16_t *residual;   /* [B*ctx, L, D] bfloat16 bits, or NULL (the CUDA engine
                           * copies them as they are, no fp32 round trip) */
    size_t bytes;
} batch_buffers;

static void buffers_init(batch_buffers *b, const olmoe_config *c, size_t rows, int save_residuals) {
    size_t L = c->num_hidden_layers, E = c->num_experts, D = c->hidden_size;
    /* the two big ones own their pages: the CUDA engine may page-lock them */
    b->router_logits = olmoe_engine_host_alloc(xmul(xmul(rows, L * E), sizeof(float)));
    b->nll = xmalloc(xmul(rows, sizeof(float)));
    b->argmax = xmalloc(xmul(rows, sizeof(int32_t)));
    b->residual = save_residuals ? olmoe_engine_host_alloc(xmul(xmul(rows, L * D), sizeof(uint16_t))) : NULL;
    b->bytes = rows * (L * E * 4 + 8 + (save_residuals ? L * D * 2 : 0));
}

static void offer_buffers(olmoe_engine *eng, batch_buffers *b, const olmoe_config *c, size_t rows) {
    size_t L = c->num_hidden_layers, E = c->num_experts, D = c->hidden_size;
    olmoe_engine_host_buffer(eng, b->router_logits, rows * L * E * sizeof(float));
    if (b->residual) olmoe_engine_host_buffer(eng, b->residual, rows * L * D * sizeof(uint16_t));
}

static void buffers_free(batch_buffers *b) {
    free(b->router_logits);
    free(b->nll);
    free(b->argmax);
    free(b->residual);
}

/* ---- the writer thread: batch i is packed and appended to the
 * trace while batch i+1 runs on the device, each from its own buffers ---- */

/* what the writer appends to, and the loss it sums on the way */
typedef struct {
    olmoe_trace *tr;
    const olmoe_window *win;
    int64_t nwin;
    const olmoe_token_stream *ts;
    int L, E, D;
    double nll_sum;
    int64_t n_scored;
    olmoe_progress prog;
} writer;

typedef struct {
    batch_buffers bb;
    olmoe_window_io *io;    /* [batch] */
    olmoe_trace_window *tw; /* [batch] */
    int64_t w0;
    int nb;
    writer *wr;
} append_job;

/* the stored part of each window, packed so one append takes the batch */
static int append_batch(void *arg) {
    append_job *j = arg;
    writer *wr = j->wr;
    batch_buffers *bb = &j->bb;
    size_t L = wr->L, E = wr->E, D = wr->D, packed = 0;
    for (int b = 0; b < j->nb; b++) {
        int64_t wi = j->w0 + b;
        const olmoe_window *w = &wr->win[wi];
        int64_t lo = w->stored_from, hi = olmoe_windows_stored_end(wr->win, wr->nwin, wi) - w->start;
        size_t n = (size_t)(hi - lo);
        if (bb->router_logits + packed * L * E != j->io[b].router_logits + lo * L * E) {
            /* windows stored whole are already packed: no 64 MB copy per batch */
            memmove(bb->router_logits + packed * L * E, j->io[b].router_logits + lo * L * E,
                    n * L * E * sizeof(float));
            memmove(bb->nll + packed, j->io[b].nll + lo, n * sizeof(float));
            memmove(bb->argmax + packed, j->io[b].argmax + lo, n * sizeof(int32_t));
            if (bb->residual)
                memmove(bb->residual + packed * L * D, j->io[b].attn_residual_bf16 + lo * L * D,
                        n * L * D * sizeof(uint16_t));
        }
        for (size_t i = 0; i < n; i++)
            if (!isnan(bb->nll[packed + i])) wr->nll_sum += bb->nll[packed + i], wr->n_scored++;
        j->tw[b] = (olmoe_trace_window){w->start, w->length, w->stored_from, w->start + hi};
        packed += n;
    }
    const olmoe_window *w0 = &wr->win[j->w0], *wl = &wr->win[j->w0 + j->nb - 1];
    olmoe_trace_rows rows = {
        .tokens = wr->ts->tokens + w0->start + w0->stored_from,
        .router_logits = bb->router_logits,
        .nll = bb->nll,
        .argmax = bb->argmax,
        .residual_bf16 = bb->residual,
    };
    if (olmoe_trace_append_windows(wr->tr, j->nb, j->tw, &rows) != 0) return -1;
    olmoe_progress_step(&wr->prog, (double)(wl->start + wl->length));
    return 0;
}
/* ---- end of the writer thread ---- */

/* --input without --format: JSON lines when the name says so (.jsonl,
 * .json), else text */
static const char *detect_format(const char *path, const char *given) {
    if (given || !path) return given;
    size_t n = strlen(path);
    int json = (n >= 6 && strcmp(path + n - 6, ".jsonl") == 0) ||
               (n >= 5 && strcmp(path + n - 5, ".json") == 0);
    if (json) {
        notef("--input %s: read as JSON lines (--format jsonl; --format text reads it as text)", path);
        return "jsonl";
    }
    return NULL;
}

/* --model as an absolute directory (stored in the trace, so that later
 * commands find it from anywhere); without it, the bundled model */
static char *resolve_model(const char *name) {
    if (!name) {
        char *dir = olmoe_model_bundled_dir(OLMOE_MODEL_DEFAULT);
        if (!dir)
            die_usage("--model DIR is required (a checkpoint directory; the bundled model %s is "
                      "not installed: make install)", OLMOE_MODEL_DEFAULT);
        return dir;
    }
    char *dir = olmoe_model_find(name);
    if (!dir) die("%s", olmoe_error());
    return dir;
}

/* --routing-file FILE: the policy file(path=FILE), as --policy gives it */
static void add_routing_file(capture_opts *o) {
    if (!o->routing_file) return;
    if (o->cli.n_policies) die_usage("--routing-file and --policy: choose one");
    if (strpbrk(o->routing_file, ",)"))
        die_usage("--routing-file '%s': the name cannot hold ',' or ')'", o->routing_file);
    if ((size_t)snprintf(o->routing_spec, sizeof o->routing_spec, "file(path=%s)", o->routing_file) >=
        sizeof o->routing_spec)
        die_usage("--routing-file: path too long");
    o->cli.policies[o->cli.n_policies++] = o->routing_spec;
}

/* the command line into *o (both modes): the options, --model resolved,
 * --routing-file as its --policy */
static void parse_options(capture_opts *o, int argc, char **argv) {
    olmoe_opt opts[OWN_OPTS + OLMOE_POLICY_CLI_NOPTS + 1];
    option_table(o, opts);
    int npos = olmoe_opt_parse(argc, argv, opts, usage);
    if (npos > 0) die_usage("unexpected argument '%s'", argv[0]);
    o->model_dir = o->model_found = resolve_model(o->model_dir);
    add_routing_file(o);
}

/* --generate: generation mode (main_capture_generate.c); its exit status */
static int generate(const capture_opts *o, const char *command) {
    generate_policy_ctx g = {.o = o};
    const olmoe_policy_cli *cli = &o->cli;
    int status = cmd_capture_generate(&(olmoe_generate_env){
        .model_dir = o->model_dir, .device = o->device, .out_path = o->out_path, .command = command,
        .force = o->force, .quiet = o->quiet, .top_k = o->top_k,
        .stream_options = o->tokens_path || o->input_path || o->save_residuals,
        .policy_options = !cli->n_policies && olmoe_policy_cli_given(cli),
        .make_policy = cli->n_policies ? generate_policy : NULL, .policy_ctx = &g, .args = &o->gen});
    policy_state_free(&g.ps);
    return status;
}

/* the checks of the command line that need no file (capture mode); the
 * --shard index and count, the dtype of the stored router logits */
static void check_args(const capture_opts *o, int *shard_i, int *shard_n,
                       olmoe_trace_dtype *logits_dtype) {
    if (!o->tokens_path == !o->input_path) die_usage("give one of --tokens FILE and --input FILE");
    if (!o->input_path && (o->input_format || o->input_field || o->group_field || o->max_tokens || o->stride))
        die_usage("--format, --field, --group-field, --max-tokens and --stride need --input");
    if (olmoe_trace_dtype_parse(o->logits_dtype_s, logits_dtype) != 0)
        die_usage("--logits-dtype: %s", olmoe_error());
    if (!o->out_path) die_usage("--out FILE is required");
    if (olmoe_out_is_stdout(o->out_path))
        die_usage("--out -: a trace is an HDF5 file, not for standard output; name a file");
    if (o->cli.n_policies && o->top_k) die_usage("--policy and --top-k: choose one way to route");
    if (!o->cli.n_policies && olmoe_policy_cli_given(&o->cli))
        die_usage("--kde, --empirical and the policy parameters (--alpha, ...) go with --policy");
    if (o->shard_spec && olmoe_parse_shard(o->shard_spec, shard_i, shard_n) != 0)
        die_usage("%s", olmoe_error());
    if (o->resume && o->force) die_usage("--resume and --force: choose one");
}

/* what a trace needs of the model, and --top-k within its experts */
static void check_model(const capture_opts *o, const olmoe_config *c) {
    /* kde, stats and the analyses read every layer's router logits as routing */
    if (c->n_dense_layers)
        die("%s: %d of its %d layers are dense (mlp_only_layers, decoder_sparse_step); a trace "
            "needs a router at every layer",
            o->model_dir, c->n_dense_layers, c->num_hidden_layers);
    if (o->top_k > c->num_experts)
        die_usage("--top-k %ld: the model has %d experts", o->top_k, c->num_experts);
}

/* --ctx, by default the model's trained context up to 2048: RoPE runs past
 * it, but those positions were never trained, so the numbers would describe
 * extrapolation, not the model */
static void set_ctx(capture_opts *o, const olmoe_config *c) {
    if (!o->ctx) o->ctx = c->max_position_embeddings && c->max_position_embeddings < 2048
                              ? c->max_position_embeddings : 2048;
    else if (c->max_position_embeddings && o->ctx > c->max_position_embeddings)
        die_usage("--ctx %ld is beyond the model's max_position_embeddings %ld", o->ctx,
                  c->max_position_embeddings);
    if (o->stride && o->stride >= o->ctx) die_usage("--stride %ld must be below --ctx %ld", o->stride, o->ctx);
}

/* one capture: what it reads, runs and writes, from the output name reserved
 * to the trace closed */
typedef struct {
    int shard_i, shard_n;          /* --shard, 0/0 without */
    olmoe_trace_dtype logits_dtype;
    olmoe_capture_out out;         /* <out>.partial, kept for --resume once it holds windows */
    olmoe_model m;
    int k;                         /* experts per token of top-k routing */
    olmoe_token_stream ts;         /* this process's stream (its shard's with --shard) */
    olmoe_token_stream run_ts;     /* the whole run's */
    olmoe_shard_plan plan;
    olmoe_window *win;             /* this process's windows */
    int64_t nwin, longest;
    olmoe_hash tokenizer_sum;      /* --input: the tokenizer.json that cut it */
    olmoe_hash input_sum;          /* what identifies the input */
    int64_t input_bytes;
    policy_state ps;
    olmoe_policy *pol;             /* --policy, or NULL: top-k */
    olmoe_engine *eng;
    append_job jobs[2];            /* double-buffered for the writer thread */
    writer wr;
    olmoe_trace *tr;
    double t0, t1;                 /* when the first batch started, and ended */
    int64_t tok1;                  /* the tokens the first batch covered */
} capture_run;

/* the windows of the run (the longest in r->longest), then of this process
 * (--shard: a capture of its own sub-stream, r->ts becoming that stream;
 * unsharded, the whole run); the run's stream stays in r->run_ts
 * (capture/shard.h) */
static void shard_windows(const capture_opts *o, capture_run *r) {
    olmoe_window *run_win;
    int64_t run_nwin;
    olmoe_shard_plan *plan = &r->plan;
    make_windows(o, &r->ts, &run_win, &run_nwin);
    r->longest = 0; /* a window of n tokens scores n - 1 of them */
    for (int64_t i = 0; i < run_nwin; i++)
        if (run_win[i].length > r->longest) r->longest = run_win[i].length;
    if (r->longest < 2)
        die("no token would be scored: every window holds fewer than 2 tokens (--ctx %ld%s)", o->ctx,
            o->max_tokens ? ", --max-tokens" : "");
    if (olmoe_shard_plan_make(run_win, run_nwin, &r->ts, r->shard_i, r->shard_n, o->batch, plan) != 0)
        die("%s", olmoe_error());
    r->win = olmoe_shard_windows(run_win, plan);
    r->nwin = plan->w_end - plan->w_begin;
    free(run_win);
    r->run_ts = r->ts;
    olmoe_shard_stream(&r->run_ts, plan, &r->ts);
    if (r->shard_n)
        notef("shard %d/%d: windows [%lld, %lld) of %lld, positions [%lld, %lld) of %lld", r->shard_i,
              r->shard_n, (long long)plan->w_begin, (long long)plan->w_end, (long long)plan->run_windows,
              (long long)plan->stored_begin, (long long)plan->stored_end, (long long)plan->run_tokens);
}

/* what is about to run, and the memory it takes, on stderr */
static void describe(const capture_opts *o, const capture_run *r) {
    const olmoe_config *c = &r->m.cfg;
    char b1[32], b2[32], b3[32], b4[32];
    char routing[OLMOE_POLICY_ID_MAX + 16];
    if (r->pol)
        snprintf(routing, sizeof routing, "policy %s", r->pol->id);
    else
        snprintf(routing, sizeof routing, "top-%d%s", r->k, c->norm_topk_prob ? ", renormalised" : "");
    notef("%s: %d layers x %d experts (%s), weights %s on disk, %s converted to fp32",
          o->model_dir, c->num_hidden_layers, c->num_experts, routing,
          olmoe_fmt_bytes((double)olmoe_model_file_bytes(&r->m), b1, sizeof b1),
          olmoe_fmt_bytes((double)r->m.f32_bytes, b2, sizeof b2));
    notef("%s: %lld tokens in %lld documents, %lld windows of at most %ld; activations %s, "
          "output buffers %s (batch %ld)",
          o->input_path ? o->input_path : o->tokens_path, (long long)r->ts.n_tokens,
          (long long)r->ts.n_docs, (long long)r->nwin, o->ctx,
          olmoe_fmt_bytes((double)olmoe_engine_activation_bytes(r->eng), b3, sizeof b3),
          olmoe_fmt_bytes((double)(2 * r->jobs[0].bb.bytes), b4, sizeof b4), o->batch);
}

/* the partial trace, created with the stream's groups and documents (the
 * header goes in before the partial appears: any partial has it) or
 * (--resume) continued after its *done windows: a partial of an earlier
 * version killed before its header was on disk lacks it, and its resume
 * writes it (a partial holding another header is refused) */
static olmoe_trace *open_trace(const capture_opts *o, capture_run *r, const olmoe_trace_meta *meta,
                               const char *resume_cmd, int64_t *done) {
    olmoe_trace *tr;
    olmoe_capture_out *out = &r->out;
    const olmoe_token_stream *ts = &r->ts;
    olmoe_trace_document *docs = xmalloc(xmul((size_t)ts->n_docs + 1, sizeof *docs));
    for (int64_t d = 0; d < ts->n_docs; d++)
        docs[d] = (olmoe_trace_document){ts->doc_start[d], ts->doc_length[d], ts->doc_group[d]};
    if (o->resume) {
        if (!(tr = olmoe_trace_resume(out->partial, meta)) ||
            olmoe_capture_resume_check(tr, r->win, r->nwin, done) != 0 ||
            olmoe_trace_nll_total(tr, &r->wr.nll_sum, &r->wr.n_scored) != 0)
            die("%s", olmoe_error());
        olmoe_capture_out_keep(out, resume_cmd);
        notef("%s: resuming after %lld of %lld windows", out->partial, (long long)*done,
              (long long)r->nwin);
    } else {
        olmoe_trace_header hd = {(const char *const *)ts->groups, ts->n_groups, docs, ts->n_docs};
        if (!(tr = olmoe_trace_create_with_header(out->partial, meta, &hd))) die("%s", olmoe_error());
    }
    const olmoe_trace_info *have = olmoe_trace_info_of(tr);
    if (o->resume && ((have->n_groups && have->n_groups != ts->n_groups) ||
                      (have->n_documents && have->n_documents != ts->n_docs)))
        die("%s: cannot resume: it holds %lld groups and %lld documents, this run has %lld and %lld",
            out->partial, (long long)have->n_groups, (long long)have->n_documents,
            (long long)ts->n_groups, (long long)ts->n_docs);
    if (o->resume && !have->n_groups && ts->n_groups &&
        olmoe_trace_add_groups(tr, (const char *const *)ts->groups, ts->n_groups) != 0)
        die("%s", olmoe_error());
    if (o->resume && !have->n_documents && ts->n_docs &&
        olmoe_trace_add_documents(tr, docs, ts->n_docs) != 0)
        die("%s", olmoe_error());
    free(docs);
    return tr;
}

/* what the root attributes point to (fill_meta) */
typedef struct {
    olmoe_hash sum;
    char policy[OLMOE_POLICY_ID_MAX];
    olmoe_trace_attr extra[OLMOE_SHARD_MAX_ATTRS + 4];
} meta_store;

/* the trace's root attributes, their strings in *ms */
static void fill_meta(const capture_opts *o, capture_run *r, const char *command,
                      olmoe_trace_meta *meta, meta_store *ms) {
    const olmoe_config *c = &r->m.cfg;
    const olmoe_policy *pol = r->pol;
    if (olmoe_model_checksum(&r->m, &ms->sum) != 0) die("%s", olmoe_error());
    snprintf(ms->policy, sizeof ms->policy, "topk(k=%d,norm=model)", r->k);
    if (pol) snprintf(ms->policy, sizeof ms->policy, "%s", pol->id);
    *meta = (olmoe_trace_meta){
        .command = command,
        .config_json = c->json,
        .model_checksum = ms->sum.hex,
        .tokenizer_checksum = o->input_path ? r->tokenizer_sum.hex : "",
        .model_dir = o->model_dir,
        .policy = ms->policy,
        .device = olmoe_engine_device(r->eng),
        .compute_dtype = olmoe_engine_compute_dtype(r->eng),
        .corpus = o->input_path ? o->input_path : o->tokens_path,
        .n_layers = c->num_hidden_layers,
        .n_experts = c->num_experts,
        .hidden_size = c->hidden_size,
        .vocab_size = c->vocab_size,
        .top_k = r->k,
        .norm_topk_prob = c->norm_topk_prob,
        .ctx = (int)o->ctx,
        .stride = (int)o->stride,
        .logits_dtype = r->logits_dtype,
        .save_residuals = o->save_residuals,
        .gzip = (int)o->compress_level,
    };
    meta->extra = ms->extra;
    meta->n_extra = olmoe_shard_attrs(&r->plan, r->input_sum.hex, r->input_bytes, o->max_tokens,
                                      o->batch, ms->extra);
    /* both change the trace, so resume must refuse a change of either: the
     * group field names /groups, and --policy routes through the policy
     * code, whose numbers differ from the default top-k path even for the
     * same top-k */
    ms->extra[meta->n_extra++] =
        (olmoe_trace_attr){OLMOE_ATTR_GROUP_FIELD, o->group_field ? o->group_field : "", 0, 1};
    ms->extra[meta->n_extra++] =
        (olmoe_trace_attr){OLMOE_ATTR_ROUTING_PATH, pol ? "policy" : "topk", 0, 1};
    /* the architecture (config_json says it too) and its always-on experts, which
     * policies never route and experts-per-token counts leave out */
    ms->extra[meta->n_extra++] = (olmoe_trace_attr){"architecture", olmoe_arch_name(c->arch), 0, 0};
    ms->extra[meta->n_extra++] =
        (olmoe_trace_attr){"shared_experts", NULL, c->shared_intermediate_size ? 1 : 0, 0};
}

/* the windows after the first done forwarded batch by batch, each batch
 * appended by the writer thread while the next runs; the signal that
 * stopped it at a batch boundary, or 0 (r->t1, r->tok1: when the first
 * batch was done and the tokens it covered) */
static int run_batches(const capture_opts *o, capture_run *r, olmoe_worker *wk, int64_t done,
                       const char *resume_cmd) {
    int stop = 0;
    const olmoe_window *win = r->win;
    int64_t nwin = r->nwin, batch = o->batch;
    for (int64_t w0 = done, it = 0, nb = 0; w0 < nwin; w0 += nb, it++) {
        if ((stop = olmoe_capture_batch_boundary())) break;
        append_job *j = &r->jobs[it & 1];
        /* batches are the run's windows [b * batch, (b + 1) * batch), also in a
         * shard or a resumed run: each window is forwarded in the same company
         * (the GEMM shapes decide the rounding), so the results are identical */
        int64_t g = r->plan.w_begin + w0, bend = (g / batch + 1) * batch - r->plan.w_begin;
        nb = (bend < nwin ? bend : nwin) - w0;
        size_t row = 0;
        for (int b = 0; b < nb; b++) {
            const olmoe_window *w = &win[w0 + b];
            j->io[b] = (olmoe_window_io){
                .n = (int)w->length,
                .tokens = r->ts.tokens + w->start,
                /* the position in the run's stream, sharded or not: what a
                 * routing file is indexed by */
                .stream_pos1 = r->plan.offset + w->start + 1,
                .router_logits = j->bb.router_logits + row * r->wr.L * r->wr.E,
                .nll = j->bb.nll + row,
                .argmax = j->bb.argmax + row,
                .attn_residual_bf16 = j->bb.residual ? j->bb.residual + row * r->wr.L * r->wr.D : NULL,
            };
            row += (size_t)w->length;
        }
        if (olmoe_engine_forward(r->eng, j->io, nb) != 0) die("%s", olmoe_error());
        j->w0 = w0, j->nb = nb;
        if (olmoe_worker_submit(wk, append_batch, j) != 0) die("%s", olmoe_error());
        if (it == 1) olmoe_capture_out_keep(&r->out, resume_cmd); /* batch 0 is committed */
        if (it == 0) r->t1 = olmoe_now(), r->tok1 = win[w0 + nb - 1].start + win[w0 + nb - 1].length;
    }
    return stop;
}

/* the checks, the output name reserved (so a bad one fails before any work),
 * the model, the documents and their windows, the policy, the input's
 * checksum: all the run needs before the engine */
static void prepare(capture_opts *o, capture_run *r) {
    check_args(o, &r->shard_i, &r->shard_n, &r->logits_dtype);
    olmoe_set_quiet(o->quiet);
    o->input_format = detect_format(o->input_path, o->input_format);
    /* <out>.partial, kept for --resume once it holds windows (capture/resume.c) */
    if (olmoe_capture_out_begin(&r->out, o->out_path, o->force, o->resume) != 0) die("%s", olmoe_error());
    if (olmoe_model_open(o->model_dir, &r->m) != 0) die("%s", olmoe_error());
    const olmoe_config *c = &r->m.cfg;
    check_model(o, c);
    r->k = o->top_k ? (int)o->top_k : c->num_experts_per_tok;
    set_ctx(o, c);
    load_documents(o, c, &r->ts, &r->tokenizer_sum);
    shard_windows(o, r);
    const olmoe_policy_cli *cli = &o->cli;
    /* bound to the run's whole stream: a routing file covers the run, and a
     * shard routes by the run's positions (run_batches) */
    r->pol = cli->n_policies ? make_policy(o, c, &r->ps, &r->run_ts) : NULL;
    const char *input = o->input_path ? o->input_path : o->tokens_path;
    if (olmoe_file_checksum(input, &r->input_sum, &r->input_bytes) != 0) die("%s", olmoe_error());
    if (r->input_bytes < 0) /* a pipe, read once: what identifies it is the bytes it gave */
        r->input_sum = r->run_ts.input_sum, r->input_bytes = r->run_ts.input_bytes;
}

/* the engine sized for a batch of the longest window, routing by the policy
 * or top-k, and the writer's two sets of buffers offered to it */
static void open_engine(const capture_opts *o, capture_run *r) {
    const olmoe_config *c = &r->m.cfg;
    olmoe_policy *pol = r->pol;
    olmoe_engine_opts eo = {.device = o->device, .max_ctx = (int)r->longest, .top_k = r->k};
    if (pol) /* the engine's max_k is the most the policy can choose */
        eo.top_k = olmoe_policy_max_experts(pol), eo.route = olmoe_policy_route_at, eo.route_ctx = pol,
        eo.route_threads = -1; /* policies are thread-safe: route on every core */
    eo.max_tokens = (int)(r->longest * (o->batch < r->nwin ? o->batch : r->nwin));
    if (olmoe_engine_open(&r->m, &eo, &r->eng) != 0) die("%s", olmoe_error());
    for (int i = 0; i < 2; i++) {
        append_job *j = &r->jobs[i];
        buffers_init(&j->bb, c, (size_t)eo.max_tokens, o->save_residuals);
        offer_buffers(r->eng, &j->bb, c, (size_t)eo.max_tokens);
        j->io = xcalloc((size_t)o->batch, sizeof *j->io);
        j->tw = xcalloc((size_t)o->batch, sizeof *j->tw);
        j->wr = &r->wr;
    }
}

/* the trace opened (or resumed) under its root attributes, then every window
 * not yet in it forwarded and appended; the signal that stopped the run at a
 * batch boundary, or 0 */
static int capture_windows(const capture_opts *o, capture_run *r, const char *command,
                           const char *resume_cmd) {
    const olmoe_config *c = &r->m.cfg;
    olmoe_trace_meta meta;
    meta_store ms;
    fill_meta(o, r, command, &meta, &ms);
    /* from here on SIGINT/SIGTERM stop at a batch boundary, keeping the partial */
    olmoe_capture_signals_install();
    int64_t done = 0; /* windows already in the partial (--resume) */
    r->tr = open_trace(o, r, &meta, resume_cmd, &done);

    writer *wr = &r->wr;
    wr->tr = r->tr, wr->win = r->win, wr->nwin = r->nwin, wr->ts = &r->ts;
    wr->L = c->num_hidden_layers, wr->E = c->num_experts, wr->D = c->hidden_size;
    olmoe_worker wk;
    if (olmoe_worker_start(&wk) != 0) die("%s", olmoe_error());
    r->t0 = olmoe_now();
    olmoe_progress_begin(&wr->prog, "tokens", (double)r->ts.n_tokens);
    int stop = run_batches(o, r, &wk, done, resume_cmd);
    if (olmoe_worker_wait(&wk) != 0) die("%s", olmoe_error());
    olmoe_worker_stop(&wk);
    olmoe_progress_end(&wr->prog);
    return stop;
}

/* SIGINT/SIGTERM stopped the run: the partial stays (complete = 0), the
 * command that continues it goes to stderr, and the signal is raised again */
static void interrupted(capture_run *r, const char *resume_cmd, int sig) {
    int64_t kept = olmoe_trace_info_of(r->tr)->n_windows;
    if (olmoe_trace_abort(r->tr) != 0) die("%s", olmoe_error());
    olmoe_capture_out_keep(&r->out, resume_cmd);
    fprintf(stderr, "%s: interrupted: %lld of %lld windows are in %s; continue with:\n  %s\n",
            olmoe_prog(), (long long)kept, (long long)r->nwin, r->out.partial, resume_cmd);
    olmoe_capture_signals_reraise(sig);
}

/* the trace closed and renamed into place, the perplexity on stdout */
static void finish(const capture_opts *o, capture_run *r) {
    double t2 = olmoe_now(), secs = t2 - r->t0;
    if (r->nwin > o->batch && t2 > r->t1)
        notef("steady state: %.1f tokens/s after the first batch (trace written)",
              (double)(r->ts.n_tokens - r->tok1) / (t2 - r->t1));
    double nll_sum = r->wr.nll_sum;
    int64_t n_scored = r->wr.n_scored;
    if (olmoe_trace_close(r->tr) != 0) die("%s", olmoe_error());
    if (olmoe_capture_out_commit(&r->out) != 0) die("%s", olmoe_error());

    double ppl = n_scored ? exp(nll_sum / (double)n_scored) : NAN;
    printf("perplexity %.6f over %lld scored tokens (%lld windows), %.1f tokens/s on %s\n", ppl,
           (long long)n_scored, (long long)r->nwin, secs > 0 ? (double)r->ts.n_tokens / secs : 0.0,
           olmoe_engine_device(r->eng));
    if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");
}

static void capture_run_free(capture_run *r) {
    olmoe_engine_close(r->eng); /* before the buffers: it may have pinned them */
    for (int i = 0; i < 2; i++) {
        buffers_free(&r->jobs[i].bb);
        free(r->jobs[i].io);
        free(r->jobs[i].tw);
    }
    free(r->win);
    olmoe_shard_stream_free(&r->ts);
    olmoe_token_stream_free(&r->run_ts);
    olmoe_capture_out_free(&r->out);
    if (r->pol) policy_state_free(&r->ps);
    olmoe_model_close(&r->m);
}

int main(int argc, char **argv) {
    olmoe_set_prog(argv[0]);
    olmoe_save_argv(argc, argv);
    char *command = olmoe_join_argv(argc, argv);
    char *resume_cmd = olmoe_capture_resume_command(argc, argv); /* before argv is reordered */
    capture_opts o = {.device = "auto", .batch = 1, .logits_dtype_s = "float32"};
    parse_options(&o, argc, argv);
    int status = 0;
    if (o.gen.prompts || o.gen.n_new) { /* --generate */
        status = generate(&o, command);
    } else {
        capture_run r = {0};
        prepare(&o, &r);
        open_engine(&o, &r);
        describe(&o, &r);
        int stop = capture_windows(&o, &r, command, resume_cmd);
        if (stop) interrupted(&r, resume_cmd, stop);
        finish(&o, &r);
        capture_run_free(&r);
    }
    free(o.model_found);
    free(resume_cmd);
    free(command);
    return status;
}
