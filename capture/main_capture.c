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

static const char *model_dir, *tokens_path, *out_path, *device = "auto";
static long ctx = 0, top_k = 0, batch = 1;
static int force, quiet, save_residuals;
static const char *logits_dtype_s = "float32"; /* --logits-dtype */
static long compress_level = 0;                /* --compress: deflate level of the big datasets */
/* ---- --resume, --shard (capture/resume.c, capture/shard.c) ---- */
static int resume;
static const char *shard_spec;
/* ---- end --resume, --shard ---- */
/* --input: raw text, tokenized, documents separated by EOS, one stream */
static const char *input_path, *input_format, *input_field, *group_field;
static long max_tokens = 0, stride = 0;
static olmoe_hash tokenizer_sum;
/* ---- --policy: the exact forward pass under any routing policy (the
 * policy options every routing command shares, policy/policy_cli.c) ---- */
static olmoe_policy_cli cli;
static const char *routing_file; /* --routing-file: short for --policy file(path=...) */
/* ---- end --policy ---- */
static olmoe_generate_args gen_args; /* --generate (main_capture_generate.c) */

static const olmoe_opt own_opts[] = {
    OPT_STRING("model", &model_dir, "DIR", "checkpoint directory (config.json, *.safetensors)"),
    OPT_STRING("tokens", &tokens_path, "FILE", "token ids as text, one document per line"),
    OPT_STRING("input", &input_path, "FILE", "raw text instead of --tokens (see --format)"),
    OPT_STRING("format", &input_format, "FMT", "--input is text (one document), lines or jsonl"),
    OPT_STRING("field", &input_field, "NAME", "jsonl: the field holding the text (default text)"),
    OPT_STRING("group-field", &group_field, "NAME", "jsonl: the field naming each document's group"),
    OPT_LONG_RANGE("max-tokens", &max_tokens, "N", "--input: stop the stream after N tokens", 1,
                   (long)INT64_MAX),
    OPT_LONG_RANGE("stride", &stride, "S", "--input: windows every S tokens, each scoring its last S",
                   1, 1L << 20),
    OPT_STRING("out", &out_path, "FILE", "trace to write (HDF5)"),
    OPT_LONG_RANGE("ctx", &ctx, "N", "tokens per window, at most (default: 2048 or max positions)", 1, 1L << 20),
    OPT_STRING("device", &device, "DEV", "auto (default: cuda when a GPU is present), cpu, cuda[:N]"),
    OPT_LONG_RANGE("top-k", &top_k, "K", "experts per token (default: the config's)", 1, 1L << 16),
    OPT_LONG_RANGE("batch", &batch, "B", "windows per forward pass (default 1)", 1, 4096),
    OPT_FLAG("save-residuals", &save_residuals, "also store attention residuals (for replay)"),
    OPT_STRING("routing-file", &routing_file, "FILE", "route as FILE says: short for --policy 'file(path=FILE)'"),
    OPT_STRING("logits-dtype", &logits_dtype_s, "DTYPE",
               "router logits stored as float32 (default), float16 or bfloat16"),
    OPT_LONG_RANGE("compress", &compress_level, "N",
                   "gzip (deflate) level 1..9 of the big datasets (default 0: none)", 0, 9),
    OPT_FLAG("resume", &resume, "continue the interrupted capture in FILE.partial"),
    OPT_STRING("shard", &shard_spec, "I/N", "capture only shard I of N (contiguous windows; "
               "join with olmoe-traces merge)"),
    /* ---- --generate (capture/generate*.c) ---- */
    OPT_STRING("prompts", &gen_args.prompts, "FILE", "generate: one prompt a line (see --prompt-format)"),
    OPT_LONG_RANGE("generate", &gen_args.n_new, "N", "continue each prompt greedily by N tokens", 1,
                   1L << 20),
    OPT_STRING("prompt-format", &gen_args.prompt_format, "FMT", "--prompts holds text (default) or ids"),
    OPT_FLAG("stop-at-eos", &gen_args.stop_at_eos, "generate: stop a prompt at the EOS token"),
    OPT_FLAG("print-ids", &gen_args.print_ids, "generate: also print the token ids"),
    OPT_FLAG("no-cache", &gen_args.no_cache, "generate: no KV cache, a full forward per token"),
    /* ---- end --generate ---- */
    OPT_FLAG("force", &force, "overwrite an existing output"),
    OPT_FLAG("quiet", &quiet, "no notes or progress on stderr"),
    OPT_END};

/* ---- --policy ---- */
typedef struct {
    olmoe_policy_set set;
    olmoe_kde_null null;
    olmoe_kde_cdf cdf;
    olmoe_policy_empirical emp;
} policy_state;

/* pvalue=empirical: every logit of --empirical TRACE, as olmoe-replay builds it */
static void load_empirical(const olmoe_config *c, olmoe_policy_empirical *emp) {
    olmoe_trace *t = olmoe_trace_open(cli.empirical);
    if (!t) die("%s", olmoe_error());
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    int L = c->num_hidden_layers, E = c->num_experts;
    if (in->meta.n_layers != L || in->meta.n_experts != E)
        die("%s: a trace of %d layers x %d experts, the model has %d x %d", cli.empirical,
            in->meta.n_layers, in->meta.n_experts, L, E);
    if (olmoe_cmd_empirical(t, in->n_tokens, cli.empirical_max, emp) != 0) die("%s", olmoe_error());
    olmoe_trace_close(t);
}

/* the one policy of --policy, bound to the model (and its nulls); a file
 * policy checks its tokens against the stream's */
static olmoe_policy *make_policy(const olmoe_config *c, policy_state *ps, const olmoe_token_stream *ts) {
    memset(ps, 0, sizeof *ps);
    if (olmoe_policy_cli_build(&cli, &ps->set) != 0) die_usage("%s", olmoe_error());
    if (ps->set.n != 1) die_usage("--policy: one policy, not a set of %d", ps->set.n);
    olmoe_policy_model pm = {c->num_hidden_layers, c->num_experts, c->norm_topk_prob, NULL, NULL,
                             ts->tokens, ts->n_tokens};
    olmoe_policy *p = &ps->set.items[0];
    if (olmoe_policy_needs(p, OLMOE_PVALUE_KDE)) {
        if (!cli.kde) die_usage("--policy %s needs --kde NULL.h5 (olmoe-kde fit)", p->id);
        if (olmoe_kde_read(cli.kde, &ps->null) != 0) die("%s", olmoe_error());
        if (ps->null.n_layers != c->num_hidden_layers)
            die("%s: fitted to a model of %d layers, %s has %d", cli.kde, ps->null.n_layers,
                model_dir, c->num_hidden_layers);
        if (olmoe_kde_cdf_init(&ps->cdf, &ps->null, c->num_hidden_layers) != 0)
            die("%s: %s", cli.kde, olmoe_error());
        pm.null = &ps->cdf;
    } else if (cli.kde) {
        die_usage("--kde: policy %s does not use it", p->id);
    }
    if (olmoe_policy_needs(p, OLMOE_PVALUE_EMPIRICAL)) {
        if (!cli.empirical) die_usage("--policy %s needs --empirical TRACE", p->id);
        load_empirical(c, &ps->emp);
        pm.emp = &ps->emp;
    } else if (cli.empirical) {
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

/* --generate builds its policy as the capture does (its state lives to exit) */
static olmoe_policy *generate_policy(const olmoe_config *c) {
    static policy_state ps;
    static const olmoe_token_stream none; /* generation has no trace to route a file by */
    return make_policy(c, &ps, &none);
}
/* ---- end --policy ---- */

/* The input as a token stream with documents. The one place that knows
 * where tokens come from: raw text (--input) will be read here too. */
static void load_documents(const olmoe_config *cfg, olmoe_token_stream *ts) {
    if (!input_path) {
        if (olmoe_token_ids_read(tokens_path, cfg->vocab_size, ts) != 0) die("%s", olmoe_error());
        return;
    }
    char *tok = olmoe_path_join(model_dir, "tokenizer.json");
    olmoe_corpus_input in = {.path = input_path, .format = input_format, .field = input_field,
                             .group_field = group_field, .max_tokens = max_tokens,
                             .tokenizer = tok, .vocab_size = cfg->vocab_size,
                             .eos_id = cfg->eos_token_id};
    if (olmoe_corpus_input_read(&in, ts, &tokenizer_sum) != 0) die("%s", olmoe_error());
    free(tok);
}

/* --tokens: windows per document; --input: the whole stream cut into windows
 * of ctx, or sliding ones with --stride (docs/DESIGN.md §9) */
static void make_windows(const olmoe_token_stream *ts, olmoe_window **win, int64_t *nwin) {
    int64_t zero = 0, n = ts->n_tokens;
    int r = !input_path ? olmoe_windows_documents(ts->doc_start, ts->doc_length, ts->n_docs, ctx,
                                                  win, nwin)
            : stride    ? olmoe_windows_stride(n, ctx, stride, win, nwin)
                        : olmoe_windows_documents(&zero, &n, 1, ctx, win, nwin);
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

static void buffers_init(batch_buffers *b, const olmoe_config *c, size_t rows) {
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
typedef struct {
    batch_buffers bb;
    olmoe_window_io *io;    /* [batch] */
    olmoe_trace_window *tw; /* [batch] */
    int64_t w0;
    int nb;
} append_job;

static struct {
    olmoe_trace *tr;
    const olmoe_window *win;
    int64_t nwin;
    const olmoe_token_stream *ts;
    int L, E, D;
    double nll_sum;
    int64_t n_scored;
    olmoe_progress prog;
} wr;

/* the stored part of each window, packed so one append takes the batch */
static int append_batch(void *arg) {
    append_job *j = arg;
    batch_buffers *bb = &j->bb;
    size_t L = wr.L, E = wr.E, D = wr.D, packed = 0;
    for (int b = 0; b < j->nb; b++) {
        int64_t wi = j->w0 + b;
        const olmoe_window *w = &wr.win[wi];
        int64_t lo = w->stored_from, hi = olmoe_windows_stored_end(wr.win, wr.nwin, wi) - w->start;
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
            if (!isnan(bb->nll[packed + i])) wr.nll_sum += bb->nll[packed + i], wr.n_scored++;
        j->tw[b] = (olmoe_trace_window){w->start, w->length, w->stored_from, w->start + hi};
        packed += n;
    }
    const olmoe_window *w0 = &wr.win[j->w0], *wl = &wr.win[j->w0 + j->nb - 1];
    olmoe_trace_rows rows = {
        .tokens = wr.ts->tokens + w0->start + w0->stored_from,
        .router_logits = bb->router_logits,
        .nll = bb->nll,
        .argmax = bb->argmax,
        .residual_bf16 = bb->residual,
    };
    if (olmoe_trace_append_windows(wr.tr, j->nb, j->tw, &rows) != 0) return -1;
    olmoe_progress_step(&wr.prog, (double)(wl->start + wl->length));
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
static const char *resolve_model(const char *name) {
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
static void add_routing_file(void) {
    static char routing_spec[OLMOE_POLICY_ID_MAX];
    if (!routing_file) return;
    if (cli.n_policies) die_usage("--routing-file and --policy: choose one");
    if (strpbrk(routing_file, ",)")) die_usage("--routing-file '%s': the name cannot hold ',' or ')'", routing_file);
    if ((size_t)snprintf(routing_spec, sizeof routing_spec, "file(path=%s)", routing_file) >= sizeof routing_spec)
        die_usage("--routing-file: path too long");
    cli.policies[cli.n_policies++] = routing_spec;
}

/* the checks of the command line that need no file (capture mode); the
 * --shard index and count, the dtype of the stored router logits */
static void check_args(int *shard_i, int *shard_n, olmoe_trace_dtype *logits_dtype) {
    if (!tokens_path == !input_path) die_usage("give one of --tokens FILE and --input FILE");
    if (!input_path && (input_format || input_field || group_field || max_tokens || stride))
        die_usage("--format, --field, --group-field, --max-tokens and --stride need --input");
    if (olmoe_trace_dtype_parse(logits_dtype_s, logits_dtype) != 0)
        die_usage("--logits-dtype: %s", olmoe_error());
    if (!out_path) die_usage("--out FILE is required");
    if (cli.n_policies && top_k) die_usage("--policy and --top-k: choose one way to route");
    if (!cli.n_policies && olmoe_policy_cli_given(&cli))
        die_usage("--kde, --empirical and the policy parameters (--alpha, ...) go with --policy");
    if (shard_spec && olmoe_parse_shard(shard_spec, shard_i, shard_n) != 0)
        die_usage("%s", olmoe_error());
    if (resume && force) die_usage("--resume and --force: choose one");
}

/* what a trace needs of the model, and --top-k within its experts */
static void check_model(const olmoe_config *c) {
    /* kde, stats and the analyses read every layer's router logits as routing */
    if (c->n_dense_layers)
        die("%s: %d of its %d layers are dense (mlp_only_layers, decoder_sparse_step); a trace "
            "needs a router at every layer",
            model_dir, c->n_dense_layers, c->num_hidden_layers);
    if (top_k > c->num_experts) die_usage("--top-k %ld: the model has %d experts", top_k, c->num_experts);
}

/* --ctx, by default the model's trained context up to 2048: RoPE runs past
 * it, but those positions were never trained, so the numbers would describe
 * extrapolation, not the model */
static void set_ctx(const olmoe_config *c) {
    if (!ctx) ctx = c->max_position_embeddings && c->max_position_embeddings < 2048
                        ? c->max_position_embeddings : 2048;
    else if (c->max_position_embeddings && ctx > c->max_position_embeddings)
        die_usage("--ctx %ld is beyond the model's max_position_embeddings %ld", ctx,
                  c->max_position_embeddings);
    if (stride && stride >= ctx) die_usage("--stride %ld must be below --ctx %ld", stride, ctx);
}

/* the windows of the run (the longest in *longest), then of this process
 * (--shard: a capture of its
 * own sub-stream, *ts becoming that stream; unsharded, the whole run); the
 * run's stream stays in *run_ts (capture/shard.h) */
static void shard_windows(olmoe_token_stream *ts, int shard_i, int shard_n, olmoe_shard_plan *plan,
                          olmoe_token_stream *run_ts, olmoe_window **win, int64_t *nwin,
                          int64_t *longest) {
    olmoe_window *run_win;
    int64_t run_nwin;
    make_windows(ts, &run_win, &run_nwin);
    *longest = 0; /* a window of n tokens scores n - 1 of them */
    for (int64_t i = 0; i < run_nwin; i++)
        if (run_win[i].length > *longest) *longest = run_win[i].length;
    if (*longest < 2)
        die("no token would be scored: every window holds fewer than 2 tokens (--ctx %ld%s)", ctx,
            max_tokens ? ", --max-tokens" : "");
    if (olmoe_shard_plan_make(run_win, run_nwin, ts, shard_i, shard_n, batch, plan) != 0)
        die("%s", olmoe_error());
    *win = olmoe_shard_windows(run_win, plan);
    *nwin = plan->w_end - plan->w_begin;
    free(run_win);
    *run_ts = *ts;
    olmoe_shard_stream(run_ts, plan, ts);
    if (shard_n)
        notef("shard %d/%d: windows [%lld, %lld) of %lld, positions [%lld, %lld) of %lld", shard_i,
              shard_n, (long long)plan->w_begin, (long long)plan->w_end, (long long)plan->run_windows,
              (long long)plan->stored_begin, (long long)plan->stored_end, (long long)plan->run_tokens);
}

/* what is about to run, and the memory it takes, on stderr */
static void describe(const olmoe_model *m, const olmoe_engine *eng, const olmoe_policy *pol, int k,
                     const olmoe_token_stream *ts, int64_t nwin, size_t buffer_bytes) {
    const olmoe_config *c = &m->cfg;
    char b1[32], b2[32], b3[32], b4[32];
    char routing[OLMOE_POLICY_ID_MAX + 16];
    if (pol)
        snprintf(routing, sizeof routing, "policy %s", pol->id);
    else
        snprintf(routing, sizeof routing, "top-%d%s", k, c->norm_topk_prob ? ", renormalised" : "");
    notef("%s: %d layers x %d experts (%s), weights %s on disk, %s converted to fp32",
          model_dir, c->num_hidden_layers, c->num_experts, routing,
          olmoe_fmt_bytes((double)olmoe_model_file_bytes(m), b1, sizeof b1),
          olmoe_fmt_bytes((double)m->f32_bytes, b2, sizeof b2));
    notef("%s: %lld tokens in %lld documents, %lld windows of at most %ld; activations %s, "
          "output buffers %s (batch %ld)",
          input_path ? input_path : tokens_path, (long long)ts->n_tokens, (long long)ts->n_docs,
          (long long)nwin, ctx,
          olmoe_fmt_bytes((double)olmoe_engine_activation_bytes(eng), b3, sizeof b3),
          olmoe_fmt_bytes((double)(2 * buffer_bytes), b4, sizeof b4), batch);
}

/* the partial trace, created with the stream's groups and documents (the
 * header goes in before the partial appears: any partial has it) or
 * (--resume) continued after its *done windows: a partial of an earlier
 * version killed before its header was on disk lacks it, and its resume
 * writes it (a partial holding another header is refused) */
static olmoe_trace *open_trace(olmoe_capture_out *out, const olmoe_trace_meta *meta,
                               const olmoe_token_stream *ts, const olmoe_window *win, int64_t nwin,
                               const char *resume_cmd, int64_t *done) {
    olmoe_trace *tr;
    olmoe_trace_document *docs = xmalloc(xmul((size_t)ts->n_docs + 1, sizeof *docs));
    for (int64_t d = 0; d < ts->n_docs; d++)
        docs[d] = (olmoe_trace_document){ts->doc_start[d], ts->doc_length[d], ts->doc_group[d]};
    if (resume) {
        if (!(tr = olmoe_trace_resume(out->partial, meta)) ||
            olmoe_capture_resume_check(tr, win, nwin, done) != 0 ||
            olmoe_trace_nll_total(tr, &wr.nll_sum, &wr.n_scored) != 0)
            die("%s", olmoe_error());
        olmoe_capture_out_keep(out, resume_cmd);
        notef("%s: resuming after %lld of %lld windows", out->partial, (long long)*done,
              (long long)nwin);
    } else {
        olmoe_trace_header hd = {(const char *const *)ts->groups, ts->n_groups, docs, ts->n_docs};
        if (!(tr = olmoe_trace_create_with_header(out->partial, meta, &hd))) die("%s", olmoe_error());
    }
    const olmoe_trace_info *have = olmoe_trace_info_of(tr);
    if (resume && ((have->n_groups && have->n_groups != ts->n_groups) ||
                   (have->n_documents && have->n_documents != ts->n_docs)))
        die("%s: cannot resume: it holds %lld groups and %lld documents, this run has %lld and %lld",
            out->partial, (long long)have->n_groups, (long long)have->n_documents,
            (long long)ts->n_groups, (long long)ts->n_docs);
    if (resume && !have->n_groups && ts->n_groups &&
        olmoe_trace_add_groups(tr, (const char *const *)ts->groups, ts->n_groups) != 0)
        die("%s", olmoe_error());
    if (resume && !have->n_documents && ts->n_docs &&
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
static void fill_meta(olmoe_trace_meta *meta, meta_store *ms, olmoe_model *m,
                      const olmoe_engine *eng, const olmoe_policy *pol, int k, const char *command,
                      const olmoe_shard_plan *plan, const olmoe_hash *input_sum,
                      int64_t input_bytes, olmoe_trace_dtype logits_dtype) {
    const olmoe_config *c = &m->cfg;
    if (olmoe_model_checksum(m, &ms->sum) != 0) die("%s", olmoe_error());
    snprintf(ms->policy, sizeof ms->policy, "topk(k=%d,norm=model)", k);
    if (pol) snprintf(ms->policy, sizeof ms->policy, "%s", pol->id);
    *meta = (olmoe_trace_meta){
        .command = command,
        .config_json = c->json,
        .model_checksum = ms->sum.hex,
        .tokenizer_checksum = input_path ? tokenizer_sum.hex : "",
        .model_dir = model_dir,
        .policy = ms->policy,
        .device = olmoe_engine_device(eng),
        .compute_dtype = olmoe_engine_compute_dtype(eng),
        .corpus = input_path ? input_path : tokens_path,
        .n_layers = c->num_hidden_layers,
        .n_experts = c->num_experts,
        .hidden_size = c->hidden_size,
        .vocab_size = c->vocab_size,
        .top_k = k,
        .norm_topk_prob = c->norm_topk_prob,
        .ctx = (int)ctx,
        .stride = (int)stride,
        .logits_dtype = logits_dtype,
        .save_residuals = save_residuals,
        .gzip = (int)compress_level,
    };
    meta->extra = ms->extra;
    meta->n_extra = olmoe_shard_attrs(plan, input_sum->hex, input_bytes, max_tokens, batch, ms->extra);
    /* both change the trace, so resume must refuse a change of either: the
     * group field names /groups, and --policy routes through the policy
     * code, whose numbers differ from the default top-k path even for the
     * same top-k */
    ms->extra[meta->n_extra++] =
        (olmoe_trace_attr){OLMOE_ATTR_GROUP_FIELD, group_field ? group_field : "", 0, 1};
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
 * stopped it at a batch boundary, or 0 (*t1, *tok1: when the first batch
 * was done and the tokens it covered) */
static int run_batches(olmoe_engine *eng, append_job jobs[2], olmoe_worker *wk,
                       const olmoe_shard_plan *plan, const olmoe_window *win, int64_t nwin,
                       const olmoe_token_stream *ts, int64_t done, olmoe_capture_out *out,
                       const char *resume_cmd, double *t1, int64_t *tok1) {
    int stop = 0;
    for (int64_t w0 = done, it = 0, nb = 0; w0 < nwin; w0 += nb, it++) {
        if ((stop = olmoe_capture_batch_boundary())) break;
        append_job *j = &jobs[it & 1];
        /* batches are the run's windows [b * batch, (b + 1) * batch), also in a
         * shard or a resumed run: each window is forwarded in the same company
         * (the GEMM shapes decide the rounding), so the results are identical */
        int64_t g = plan->w_begin + w0, bend = (g / batch + 1) * batch - plan->w_begin;
        nb = (bend < nwin ? bend : nwin) - w0;
        size_t row = 0;
        for (int b = 0; b < nb; b++) {
            const olmoe_window *w = &win[w0 + b];
            j->io[b] = (olmoe_window_io){
                .n = (int)w->length,
                .tokens = ts->tokens + w->start,
                .stream_pos1 = w->start + 1,
                .router_logits = j->bb.router_logits + row * wr.L * wr.E,
                .nll = j->bb.nll + row,
                .argmax = j->bb.argmax + row,
                .attn_residual_bf16 = j->bb.residual ? j->bb.residual + row * wr.L * wr.D : NULL,
            };
            row += (size_t)w->length;
        }
        if (olmoe_engine_forward(eng, j->io, nb) != 0) die("%s", olmoe_error());
        j->w0 = w0, j->nb = nb;
        if (olmoe_worker_submit(wk, append_batch, j) != 0) die("%s", olmoe_error());
        if (it == 1) olmoe_capture_out_keep(out, resume_cmd); /* batch 0 is committed */
        if (it == 0) *t1 = olmoe_now(), *tok1 = win[w0 + nb - 1].start + win[w0 + nb - 1].length;
    }
    return stop;
}

int main(int argc, char **argv) {
    olmoe_set_prog(argv[0]);
    olmoe_save_argv(argc, argv);
    char *command = olmoe_join_argv(argc, argv);
    char *resume_cmd = olmoe_capture_resume_command(argc, argv); /* before argv is reordered */
    enum { OWN = sizeof own_opts / sizeof own_opts[0] - 1 };
    olmoe_opt opts[OWN + OLMOE_POLICY_CLI_NOPTS + 1];
    memcpy(opts, own_opts, sizeof own_opts);
    int nopt = OWN + olmoe_policy_cli_options(&cli, opts + OWN, 0);
    opts[nopt] = (olmoe_opt)OPT_END;
    int npos = olmoe_opt_parse(argc, argv, opts, usage);
    if (npos > 0) die_usage("unexpected argument '%s'", argv[0]);
    model_dir = resolve_model(model_dir);
    add_routing_file();
    if (gen_args.prompts || gen_args.n_new) /* --generate */
        exit(cmd_capture_generate(&(olmoe_generate_env){
            .model_dir = model_dir, .device = device, .out_path = out_path, .command = command, .force = force,
            .quiet = quiet, .top_k = top_k, .stream_options = tokens_path || input_path || save_residuals,
            .policy_options = !cli.n_policies && olmoe_policy_cli_given(&cli),
            .make_policy = cli.n_policies ? generate_policy : NULL, .args = &gen_args}));
    int shard_i = 0, shard_n = 0;
    olmoe_trace_dtype logits_dtype;
    check_args(&shard_i, &shard_n, &logits_dtype);
    olmoe_quiet = quiet;
    input_format = detect_format(input_path, input_format);

    /* <out>.partial, kept for --resume once it holds windows (capture/resume.c) */
    olmoe_capture_out out;
    if (olmoe_capture_out_begin(&out, out_path, force, resume) != 0) die("%s", olmoe_error());

    olmoe_model m;
    if (olmoe_model_open(model_dir, &m) != 0) die("%s", olmoe_error());
    const olmoe_config *c = &m.cfg;
    int L = c->num_hidden_layers, E = c->num_experts, D = c->hidden_size;
    check_model(c);
    int k = top_k ? (int)top_k : c->num_experts_per_tok;
    policy_state ps;
    set_ctx(c);

    olmoe_token_stream ts;
    load_documents(c, &ts);
    olmoe_window *win;
    int64_t nwin;
    olmoe_shard_plan plan;
    olmoe_token_stream run_ts;
    int64_t longest;
    shard_windows(&ts, shard_i, shard_n, &plan, &run_ts, &win, &nwin, &longest);
    if (cli.n_policies && shard_n && strncmp(cli.policies[0], "file", 4) == 0)
        die_usage("--policy %s: a routing file is for a whole run, not --shard", cli.policies[0]);
    olmoe_policy *pol = cli.n_policies ? make_policy(c, &ps, &ts) : NULL;
    olmoe_hash input_sum;
    int64_t input_bytes;
    if (olmoe_file_checksum(input_path ? input_path : tokens_path, &input_sum, &input_bytes) != 0)
        die("%s", olmoe_error());
    if (input_bytes < 0) /* a pipe, read once: what identifies it is the bytes it gave */
        input_sum = run_ts.input_sum, input_bytes = run_ts.input_bytes;

    olmoe_engine_opts eo = {.device = device, .max_ctx = (int)longest, .top_k = k};
    if (pol) /* the engine's max_k is the most the policy can choose */
        eo.top_k = olmoe_policy_max_experts(pol), eo.route = olmoe_policy_route_at, eo.route_ctx = pol,
        eo.route_threads = -1; /* policies are thread-safe: route on every core */
    eo.max_tokens = (int)(longest * (batch < nwin ? batch : nwin));
    olmoe_engine *eng;
    if (olmoe_engine_open(&m, &eo, &eng) != 0) die("%s", olmoe_error());
    append_job jobs[2]; /* double-buffered for the writer thread */
    for (int i = 0; i < 2; i++) {
        buffers_init(&jobs[i].bb, c, (size_t)eo.max_tokens);
        offer_buffers(eng, &jobs[i].bb, c, (size_t)eo.max_tokens);
        jobs[i].io = xcalloc((size_t)batch, sizeof *jobs[i].io);
        jobs[i].tw = xcalloc((size_t)batch, sizeof *jobs[i].tw);
    }
    describe(&m, eng, pol, k, &ts, nwin, jobs[0].bb.bytes);

    olmoe_trace_meta meta;
    meta_store ms;
    fill_meta(&meta, &ms, &m, eng, pol, k, command, &plan, &input_sum, input_bytes,
              logits_dtype);
    /* from here on SIGINT/SIGTERM stop at a batch boundary, keeping the partial */
    olmoe_capture_signals_install();
    int64_t done = 0; /* windows already in the partial (--resume) */
    olmoe_trace *tr = open_trace(&out, &meta, &ts, win, nwin, resume_cmd, &done);

    wr.tr = tr, wr.win = win, wr.nwin = nwin, wr.ts = &ts, wr.L = L, wr.E = E, wr.D = D;
    olmoe_worker wk;
    if (olmoe_worker_start(&wk) != 0) die("%s", olmoe_error());
    double t0 = olmoe_now(), t1 = 0;
    int64_t tok1 = 0;
    olmoe_progress_begin(&wr.prog, "tokens", (double)ts.n_tokens);
    int stop = run_batches(eng, jobs, &wk, &plan, win, nwin, &ts, done, &out, resume_cmd, &t1, &tok1);
    if (olmoe_worker_wait(&wk) != 0) die("%s", olmoe_error());
    olmoe_worker_stop(&wk);
    olmoe_progress_end(&wr.prog);
    if (stop) { /* SIGINT/SIGTERM: the partial stays, complete = 0 */
        int64_t kept = olmoe_trace_info_of(tr)->n_windows;
        if (olmoe_trace_abort(tr) != 0) die("%s", olmoe_error());
        olmoe_capture_out_keep(&out, resume_cmd);
        fprintf(stderr, "%s: interrupted: %lld of %lld windows are in %s; continue with:\n  %s\n",
                olmoe_prog(), (long long)kept, (long long)nwin, out.partial, resume_cmd);
        olmoe_capture_signals_reraise(stop);
    }
    double t2 = olmoe_now(), secs = t2 - t0;
    if (nwin > batch && t2 > t1)
        notef("steady state: %.1f tokens/s after the first batch (trace written)",
              (double)(ts.n_tokens - tok1) / (t2 - t1));
    double nll_sum = wr.nll_sum;
    int64_t n_scored = wr.n_scored;
    if (olmoe_trace_close(tr) != 0) die("%s", olmoe_error());
    if (olmoe_capture_out_commit(&out) != 0) die("%s", olmoe_error());

    double ppl = n_scored ? exp(nll_sum / (double)n_scored) : NAN;
    printf("perplexity %.6f over %lld scored tokens (%lld windows), %.1f tokens/s on %s\n", ppl,
           (long long)n_scored, (long long)nwin, secs > 0 ? (double)ts.n_tokens / secs : 0.0,
           olmoe_engine_device(eng));
    if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");

    olmoe_engine_close(eng); /* before the buffers: it may have pinned them */
    for (int i = 0; i < 2; i++) {
        buffers_free(&jobs[i].bb);
        free(jobs[i].io);
        free(jobs[i].tw);
    }
    free(win);
    olmoe_shard_stream_free(&ts);
    olmoe_token_stream_free(&run_ts);
    olmoe_capture_out_free(&out);
    free(resume_cmd);
    if (pol) policy_state_free(&ps);
    olmoe_model_close(&m);
    free(command);
    return 0;
}
