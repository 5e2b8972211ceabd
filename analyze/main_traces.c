/* main_traces.c: olmoe-traces, inspecting, checking and exporting traces
 * (olmoe-trace(5)). Subcommands come from a table, git style; export kinds
 * from a second table, so a new kind (e.g. "text", through the tokenizer) is
 * one function and one row. merge joins shard traces (traces/merge*.c). */
#include "common.h"
#include "main_traces.h"
#include "engine.h"
#include "replay.h"
#include "traces.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: olmoe-traces COMMAND [ARGS]\n"
    "\n"
    "Inspect, check and export olmoe traces (the HDF5 files olmoe-capture writes,\n"
    "described in olmoe-trace(5)).\n";

static olmoe_trace *open_or_die(const char *path) {
    olmoe_trace *t = olmoe_trace_open(path);
    if (!t) die("%s", olmoe_error());
    return t;
}

/* ---- info ---- */
static void print_model(const olmoe_trace_meta *m) {
    json_t *cfg = json_loads(m->config_json, 0, NULL);
    const char *type = cfg ? json_string_value(json_object_get(cfg, "model_type")) : NULL;
    printf("model:          %s, %d layers x %d experts, top-%d (norm_topk_prob %d), hidden %d, "
           "vocab %d\n", type ? type : "(config without model_type)", m->n_layers, m->n_experts,
           m->top_k, m->norm_topk_prob, m->hidden_size, m->vocab_size);
    json_decref(cfg);
}

static void print_storage(olmoe_trace *t) {
    static const char *const names[] = {"/tokens", "/router_logits", "/baseline/nll",
                                        "/baseline/argmax", "/residual/attn", "/windows",
                                        "/documents"};
    hid_t f = olmoe_trace_hid(t);
    printf("sizes on disk: ");
    int first = 1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (olmoe_h5_exists(f, names[i]) <= 0) continue;
        hid_t ds = H5Dopen2(f, names[i], H5P_DEFAULT);
        if (ds < 0) continue;
        char b[32];
        printf("%s%s %s", first ? " " : ", ", names[i],
               olmoe_fmt_bytes((double)H5Dget_storage_size(ds), b, sizeof b));
        first = 0;
        H5Dclose(ds);
    }
    printf("\n");
}

/* a shard of a sharded capture, or a merged trace (traces/merge*.c) */
static void print_shards(olmoe_trace *t) {
    hid_t f = olmoe_trace_hid(t);
    int64_t i = 0, n = 0, a = 0, b = 0, w = 0;
    if (olmoe_h5_has_attr(f, ".", OLMOE_ATTR_SHARD_INDEX) > 0 &&
        olmoe_h5_get_attr_i64(f, ".", OLMOE_ATTR_SHARD_INDEX, &i) == 0 &&
        olmoe_h5_get_attr_i64(f, ".", OLMOE_ATTR_SHARD_COUNT, &n) == 0 &&
        olmoe_h5_get_attr_i64(f, ".", OLMOE_ATTR_SHARD_STORED_BEGIN, &a) == 0 &&
        olmoe_h5_get_attr_i64(f, ".", OLMOE_ATTR_SHARD_STORED_END, &b) == 0 &&
        olmoe_h5_get_attr_i64(f, ".", OLMOE_ATTR_RUN_TOKENS, &w) == 0)
        printf("shard:          %lld/%lld, positions [%lld, %lld) of the run's %lld (olmoe-traces "
               "merge joins the shards)\n", (long long)i, (long long)n, (long long)a, (long long)b,
               (long long)w);
    char *from = NULL;
    if (olmoe_h5_has_attr(f, ".", OLMOE_ATTR_MERGED_SHARDS) > 0 &&
        olmoe_h5_get_attr_i64(f, ".", OLMOE_ATTR_MERGED_SHARDS, &n) == 0) {
        printf("merged:         from %lld shards", (long long)n);
        if (olmoe_h5_has_attr(f, ".", OLMOE_ATTR_MERGED_FROM) > 0 &&
            olmoe_h5_get_attr_str(f, ".", OLMOE_ATTR_MERGED_FROM, &from) == 0) {
            for (char *c = from; *c; c++)
                if (*c == '\n') *c = ' ';
            printf(", read in place through virtual datasets: %s", from);
        } else {
            printf(" (copied)");
        }
        printf("\n");
    }
    free(from);
    H5Eclear2(H5E_DEFAULT);
}

static int cmd_info(int argc, char **argv) {
    static const olmoe_opt opts[] = {OPT_END};
    int n = olmoe_opt_parse(argc, argv, opts,
                            "usage: olmoe-traces info FILE...\n\nSummary of each trace: model, "
                            "checksums, sizes, windows, documents, perplexity, provenance,\nand every stored result with the command that made it.\n");
    if (n < 1) die_usage("info needs a trace file");
    for (int i = 0; i < n; i++) {
        olmoe_trace *t = open_or_die(argv[i]);
        const olmoe_trace_info *in = olmoe_trace_info_of(t);
        const olmoe_trace_meta *m = &in->meta;
        char b[32];
        if (i) printf("\n");
        printf("file:           %s (%s)\n", argv[i], olmoe_fmt_bytes((double)in->file_bytes, b, sizeof b));
        printf("format:         %s %d, %s\n", OLMOE_TRACE_FORMAT, in->format_version,
               in->complete ? "complete" : "INCOMPLETE (capture killed or still running)");
        printf("created:        %s by olmoe %s\n", m->created, m->tool_version);
        printf("command:        %s\n", m->command);
        print_model(m);
        printf("model dir:      %s\n", m->model_dir);
        printf("model checksum: %s\n", m->model_checksum);
        printf("tokenizer:      %s\n", *m->tokenizer_checksum ? m->tokenizer_checksum
                                                               : "(tokens given as ids)");
        printf("policy:         %s\n", m->policy);
        printf("device:         %s (%s)\n", m->device, m->compute_dtype);
        printf("corpus:         %s\n", *m->corpus ? m->corpus : "(none)");
        printf("tokens:         %lld\n", (long long)in->n_tokens);
        printf("windows:        %lld (ctx %d, stride %d)\n", (long long)in->n_windows, m->ctx,
               m->stride);
        printf("documents:      %lld", (long long)in->n_documents);
        if (in->n_groups) {
            char **names;
            int64_t ng;
            if (olmoe_trace_read_groups(t, &names, &ng) != 0) die("%s", olmoe_error());
            printf(" in %lld groups (", (long long)ng);
            for (int64_t g = 0; g < ng; g++) printf("%s%s", g ? ", " : "", names[g]);
            printf(")");
            olmoe_trace_free_groups(names, ng);
        }
        printf("\n");
        double sum = in->nll_sum, ppl = in->perplexity;
        int64_t scored = in->n_scored;
        if (!in->complete) {
            if (olmoe_trace_nll_total(t, &sum, &scored) != 0) die("%s", olmoe_error());
            ppl = scored ? exp(sum / (double)scored) : NAN;
        }
        printf("scored:         %lld\n", (long long)scored);
        printf("perplexity:     %.6f%s\n", ppl, in->complete ? "" : " (so far)");
        printf("router logits:  %s [%lld, %d, %d], chunks of %d rows\n",
               olmoe_trace_dtype_name(m->logits_dtype), (long long)in->n_tokens, m->n_layers,
               m->n_experts, m->chunk_rows);
        if (in->has_residuals)
            printf("residuals:      bfloat16 [%lld, %d, %d]\n", (long long)in->n_tokens,
                   m->n_layers, m->hidden_size);
        else
            printf("residuals:      none (captured without --save-residuals)\n");
        print_storage(t);
        print_shards(t);
        cmd_traces_print_results(argv[i], olmoe_trace_hid(t));
        olmoe_trace_close(t);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) die("stdout: write failed");
    return 0;
}

/* ---- verify ---- */
static void print_problem(void *ctx, const char *msg) {
    (void)ctx;
    printf("%s\n", msg);
}

static int cmd_verify(int argc, char **argv) {
    static const olmoe_opt opts[] = {OPT_END};
    int n = olmoe_opt_parse(argc, argv, opts,
                            "usage: olmoe-traces verify FILE...\n\nChecks each trace against "
                            "olmoe-trace(5): prints one line per problem and exits 1 if any,\n"
                            "else prints 'ok'. A trace of a killed capture is ok when its "
                            "committed windows are.\n");
    if (n < 1) die_usage("verify needs a trace file");
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        /* a merged trace: the shards its virtual datasets read must be there
         * (HDF5 reads a missing one as fill values), before its data is read */
        int64_t p = olmoe_trace_check_sources(argv[i], print_problem, NULL);
        if (!p) p = olmoe_trace_verify(argv[i], print_problem, NULL);
        total += p;
        if (p) {
            fprintf(stderr, "%s: %s: %lld problem%s\n", olmoe_prog(), argv[i], (long long)p,
                    p == 1 ? "" : "s");
            continue;
        }
        olmoe_trace *t = open_or_die(argv[i]);
        const olmoe_trace_info *in = olmoe_trace_info_of(t);
        hid_t f = olmoe_trace_hid(t);
        int64_t planned = -1, merged = 0;
        if (olmoe_h5_has_attr(f, ".", OLMOE_ATTR_PLANNED_WINDOWS) > 0)
            olmoe_h5_get_attr_i64(f, ".", OLMOE_ATTR_PLANNED_WINDOWS, &planned);
        if (olmoe_h5_has_attr(f, ".", OLMOE_ATTR_MERGED_SHARDS) > 0)
            olmoe_h5_get_attr_i64(f, ".", OLMOE_ATTR_MERGED_SHARDS, &merged);
        char of[48] = "";
        if (planned >= 0) snprintf(of, sizeof of, " of %lld", (long long)planned);
        if (!in->complete)
            printf("%s: ok (incomplete: %lld%s windows, %lld tokens committed; olmoe-capture "
                   "--resume continues it)\n", argv[i], (long long)in->n_windows, of,
                   (long long)in->n_tokens);
        else if (merged)
            printf("%s: ok (merged from %lld shards)\n", argv[i], (long long)merged);
        else
            printf("%s: ok\n", argv[i]);
        olmoe_trace_close(t);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) die("stdout: write failed");
    return total ? 1 : 0;
}

/* ---- export ---- */
typedef struct {
    olmoe_trace *t;
    const olmoe_trace_info *in;
    FILE *out;
    int csv;
    int64_t start, count; /* rows of what is exported */
    const char *tokenizer; /* --tokenizer, else the trace's model_dir/tokenizer.json */
    olmoe_decisions_opts decisions; /* --what decisions: --kind, --results */
    long decisions_top;             /* --top */
    olmoe_policy_cli decisions_cli; /* --policy and the options of every routing command */
} export_ctx;

static void put_raw(export_ctx *x, const void *p, size_t size, size_t n) {
    if (fwrite(p, size, n, x->out) != n) die("export: write failed");
}

/* the per-token kinds share the loop: a block of rows, then print or dump */
static int export_rows(export_ctx *x, const char *header, size_t row_elems, int is_float,
                       int (*rd)(olmoe_trace *, int64_t, int64_t, void *)) {
    int64_t B = 65536 / (int64_t)(row_elems ? row_elems : 1);
    if (B < 1) B = 1;
    void *buf = xmalloc(xmul((size_t)B, row_elems * 4));
    const olmoe_trace_meta *m = &x->in->meta;
    if (x->csv) fprintf(x->out, "%s\n", header);
    for (int64_t s = x->start; s < x->start + x->count; s += B) {
        int64_t c = x->start + x->count - s < B ? x->start + x->count - s : B;
        if (rd(x->t, s, c, buf) != 0) die("%s", olmoe_error());
        if (!x->csv) {
            put_raw(x, buf, 4, (size_t)c * row_elems);
            continue;
        }
        for (int64_t i = 0; i < c; i++) {
            if (row_elems == 1) {
                if (is_float)
                    fprintf(x->out, "%lld,%.9g\n", (long long)(s + i), (double)((float *)buf)[i]);
                else
                    fprintf(x->out, "%lld,%d\n", (long long)(s + i), ((int32_t *)buf)[i]);
                continue;
            }
            const float *r = (const float *)buf + (size_t)i * row_elems;
            for (int l = 0; l < m->n_layers; l++) {
                fprintf(x->out, "%lld,%d", (long long)(s + i), l);
                for (int e = 0; e < m->n_experts; e++)
                    fprintf(x->out, ",%.9g", (double)r[(size_t)l * (size_t)m->n_experts + (size_t)e]);
                fputc('\n', x->out);
            }
        }
    }
    free(buf);
    return 0;
}

static int rd_tokens(olmoe_trace *t, int64_t s, int64_t c, void *o) { return olmoe_trace_read_tokens(t, s, c, o); }
static int rd_nll(olmoe_trace *t, int64_t s, int64_t c, void *o) { return olmoe_trace_read_nll(t, s, c, o); }
static int rd_argmax(olmoe_trace *t, int64_t s, int64_t c, void *o) { return olmoe_trace_read_argmax(t, s, c, o); }
static int rd_logits(olmoe_trace *t, int64_t s, int64_t c, void *o) { return olmoe_trace_read_router_logits(t, s, c, o); }

static int ex_tokens(export_ctx *x) { return export_rows(x, "position,token", 1, 0, rd_tokens); }
static int ex_nll(export_ctx *x) { return export_rows(x, "position,nll", 1, 1, rd_nll); }
static int ex_argmax(export_ctx *x) { return export_rows(x, "position,argmax", 1, 0, rd_argmax); }
static int ex_logits(export_ctx *x) {
    const olmoe_trace_meta *m = &x->in->meta;
    size_t cap = 32 + (size_t)m->n_experts * 12;
    char *h = xmalloc(cap);
    size_t k = (size_t)snprintf(h, cap, "position,layer");
    for (int e = 0; e < m->n_experts && k < cap; e++) k += (size_t)snprintf(h + k, cap - k, ",e%d", e);
    int r = export_rows(x, h, (size_t)m->n_layers * (size_t)m->n_experts, 1, rd_logits);
    free(h);
    return r;
}

static int ex_windows(export_ctx *x) {
    int64_t n = x->in->n_windows;
    if (x->csv) fprintf(x->out, "window,start,length,stored_from\n");
    olmoe_trace_window w[1024];
    for (int64_t s = 0; s < n; s += 1024) {
        int64_t c = n - s < 1024 ? n - s : 1024;
        if (olmoe_trace_read_windows(x->t, s, c, w) != 0) die("%s", olmoe_error());
        for (int64_t i = 0; i < c; i++) {
            if (x->csv) {
                fprintf(x->out, "%lld,%lld,%lld,%lld\n", (long long)(s + i), (long long)w[i].start,
                        (long long)w[i].length, (long long)w[i].stored_from);
            } else {
                int64_t r[3] = {w[i].start, w[i].length, w[i].stored_from};
                put_raw(x, r, 8, 3);
            }
        }
    }
    return 0;
}

/* ---- text: the tokens decoded by the tokenizer the trace was captured with ---- */


/* csv: position,token,text with each token's own text (HF's decode([id]));
 * raw: the text of the whole range, decoded at once (UTF-8) */
static int ex_text(export_ctx *x) {
    const olmoe_trace_meta *m = &x->in->meta;
    char *path = x->tokenizer ? xstrdup(x->tokenizer)
                                  : olmoe_path_join(m->model_dir, "tokenizer.json");
    olmoe_tokenizer *tok;
    if (olmoe_tokenizer_open(path, &tok) != 0)
        die("%s%s", olmoe_error(), x->tokenizer ? "" : " (give --tokenizer FILE)");
    const char *want = m->tokenizer_checksum ? m->tokenizer_checksum : "";
    if (want[0] && strcmp(want, olmoe_tokenizer_checksum(tok)) != 0)
        die("%s: checksum %s, but the trace was captured with tokenizer %s", path,
            olmoe_tokenizer_checksum(tok), want);
    int32_t *ids = xmalloc(xmul((size_t)x->count + 1, sizeof *ids));
    if (x->count && olmoe_trace_read_tokens(x->t, x->start, x->count, ids) != 0)
        die("%s", olmoe_error());
    char *text;
    size_t len;
    if (x->csv) {
        fprintf(x->out, "position,token,text\n");
        for (int64_t i = 0; i < x->count; i++) {
            olmoe_tokenizer_decode(tok, ids + i, 1, 0, &text, &len);
            fprintf(x->out, "%lld,%d,", (long long)(x->start + i), ids[i]);
            olmoe_csv_quoted(x->out, text, len);
            fputc('\n', x->out);
            free(text);
        }
    } else {
        olmoe_tokenizer_decode(tok, ids, (size_t)x->count, 0, &text, &len);
        put_raw(x, text, 1, len);
        free(text);
    }
    free(ids);
    free(path);
    olmoe_tokenizer_close(tok);
    return 0;
}

/* ---- decisions: where a policy spends or saves experts (
 * analyze/replay_decisions.c) ---- */
/* the policy of --policy and the parameter options, canonical; a spec that
 * does not make a policy ("bh" without alpha) is looked up as a family */
static const char *decisions_policy(olmoe_policy_cli *cli) {
    if (cli->kde || cli->empirical || cli->beta_trace || cli->empirical_max_given)
        die_usage("--kde, --empirical, --empirical-max and --beta-trace: export reads stored "
                  "results and needs none of them");
    if (cli->n_policies != 1) die_usage("--what decisions needs --policy ID or SPEC (one)");
    olmoe_policy_set set = {0};
    if (olmoe_policy_cli_build(cli, &set) != 0) {
        int params = 0;
        for (int i = 0; i < OLMOE_PARAM_COUNT; i++) params |= cli->value[i] != NULL;
        if (params) die_usage("%s", olmoe_error());
        return xstrdup(cli->policies[0]);
    }
    if (set.n != 1) die_usage("--policy: one policy, not a set of %d", set.n);
    const char *id = xstrdup(set.items[0].id);
    olmoe_policy_set_free(&set);
    return id;
}

static int ex_decisions(export_ctx *x) {
    if (!x->csv) die_usage("--what decisions is csv only");
    x->decisions.policy_id = decisions_policy(&x->decisions_cli);
    x->decisions.start = x->start;
    x->decisions.count = x->count;
    x->decisions.tokenizer = x->tokenizer;
    x->decisions.top = (int)x->decisions_top;
    int rc = olmoe_replay_export_decisions(x->t, &x->decisions, x->out);
    free((void *)x->decisions.policy_id);
    x->decisions.policy_id = NULL;
    if (rc != 0) die("%s", olmoe_error());
    return 0;
}
/* ---- end decisions ---- */

typedef struct {
    const char *name;
    int (*fn)(export_ctx *x);
    int per_token; /* --start/--count select positions */
    const char *help;
} exporter;

static const exporter exporters[] = {
    {"tokens", ex_tokens, 1, "token ids: csv position,token; raw int32 [count]"},
    {"nll", ex_nll, 1, "baseline NLL: csv position,nll (nan: not scored); raw float32 [count]"},
    {"argmax", ex_argmax, 1, "baseline argmax: csv position,argmax; raw int32 [count]"},
    {"logits", ex_logits, 1, "router logits: csv position,layer,e0..; raw float32 [count, L, E]"},
    {"text", ex_text, 1, "decoded text: csv position,token,text; raw the range's UTF-8 text"},
    {"windows", ex_windows, 0, "windows: csv window,start,length,stored_from; raw int64 [W, 3]"},
    {"decisions", ex_decisions, 0,
     "a policy's tokens of most changed NLL: csv position,context,next,nll_policy,..."},
    {NULL, NULL, 0, NULL},
};

static int cmd_export(int argc, char **argv) {
    const char *what = NULL, *format = "csv", *outp = NULL;
    long start = 0, count = -1;
    int force = 0;
    export_ctx x = {.out = stdout, .decisions = {.top = 20, .context = 8, .count = -1},
                    .decisions_top = 20};
    const olmoe_opt own[] = {
        OPT_STRING("what", &what, "KIND", "tokens, text, nll, argmax, logits, windows or decisions"),
        OPT_STRING("tokenizer", &x.tokenizer, "FILE",
                   "text: tokenizer.json (default: the trace's model_dir)"),
        OPT_STRING("format", &format, "FMT", "csv (default) or raw (little-endian binary)"),
        OPT_STRING("out", &outp, "FILE", "write to FILE instead of stdout (-: stdout)"),
        OPT_FLAG("force", &force, "overwrite an existing --out file"),
        OPT_LONG_RANGE("start", &start, "N", "first position (per-token kinds)", 0, LONG_MAX),
        OPT_LONG_RANGE("count", &count, "N", "positions to export (default: to the end)", 0, LONG_MAX),
        OPT_STRING("kind", &x.decisions.kind, "KIND", "decisions: replay or exact (default: replay if present)"),
        OPT_STRING("results", &x.decisions.results, "FILE", "decisions: olmoe-replay --out file (default: TRACE.results.h5)"),
        OPT_LONG_RANGE("top", &x.decisions_top, "N", "decisions: tokens to print (default 20)", 1, 1L << 30),
        OPT_END};
    enum { OWN = sizeof own / sizeof own[0] - 1 };
    olmoe_opt opts[OWN + OLMOE_POLICY_CLI_NOPTS + 1];
    memcpy(opts, own, sizeof own);
    int nopt = OWN + olmoe_policy_cli_options(&x.decisions_cli, opts + OWN, 0);
    opts[nopt] = (olmoe_opt)OPT_END;
    int n = olmoe_opt_parse(argc, argv, opts,
                            "usage: olmoe-traces export FILE --what KIND [--format csv|raw] "
                            "[--out F]\n\nWrites one dataset of a trace as CSV or raw binary.\n");
    if (n != 1) die_usage("export needs exactly one trace file");
    if (!what) die_usage("export needs --what (tokens, text, nll, argmax, logits, windows, decisions)");
    const exporter *ex = NULL;
    for (const exporter *e = exporters; e->name; e++)
        if (strcmp(e->name, what) == 0) ex = e;
    if (!ex)
        die_usage("--what: unknown kind '%s' (tokens, text, nll, argmax, logits, windows, decisions)", what);
    if (x.tokenizer && ex->fn != ex_text && ex->fn != ex_decisions)
        die_usage("--tokenizer goes with --what text or decisions");
    if ((olmoe_policy_cli_given(&x.decisions_cli) || x.decisions.kind || x.decisions.results) &&
        ex->fn != ex_decisions)
        die_usage("--policy, its options, --kind and --results go with --what decisions");
    if (x.decisions.kind && strcmp(x.decisions.kind, "replay") != 0 &&
        strcmp(x.decisions.kind, "exact") != 0)
        die_usage("--kind: '%s' is neither replay nor exact", x.decisions.kind);
    int csv = strcmp(format, "csv") == 0;
    if (!csv && strcmp(format, "raw") != 0) die_usage("--format: '%s' is neither csv nor raw", format);
    if (olmoe_out_is_stdout(outp)) outp = NULL; /* as every text output: "-" is stdout */
    if (!csv && !outp && isatty(STDOUT_FILENO))
        die_usage("raw output to a terminal: give --out FILE or redirect");
    x.t = open_or_die(argv[0]);
    x.csv = csv;
    x.start = start;
    x.in = olmoe_trace_info_of(x.t);
    if (ex->per_token || ex->fn == ex_decisions) { /* decisions: among these positions */
        if (start > x.in->n_tokens)
            die("%s: --start %ld is past the end (%lld tokens)", argv[0], start,
                (long long)x.in->n_tokens);
        x.count = count < 0 || count > x.in->n_tokens - start ? x.in->n_tokens - start : count;
    }
    olmoe_out o = {NULL, NULL, 0};
    if (outp) {
        if (olmoe_out_begin(&o, outp, force) != 0) die("%s", olmoe_error());
        if (!(x.out = fopen(o.tmp, csv ? "w" : "wb"))) die("%s: %s", o.tmp, strerror(errno));
    }
    ex->fn(&x);
    if (fflush(x.out) != 0 || ferror(x.out)) die("%s: write failed", outp ? outp : "stdout");
    if (outp) {
        if (fclose(x.out) != 0) die("%s: write failed", outp);
        if (olmoe_out_commit(&o) != 0) die("%s", olmoe_error());
    }
    olmoe_trace_close(x.t);
    return 0;
}

/* ---- merge: shard traces joined (traces/merge*.c) ---- */
static int cmd_merge(int argc, char **argv) {
    int force = 0, copy = 0, quiet = 0;
    const olmoe_opt opts[] = {
        OPT_FLAG("copy", &copy, "copy the data into OUT (self-contained) instead of virtual datasets"),
        OPT_FLAG("force", &force, "overwrite an existing OUT"),
        OPT_FLAG("quiet", &quiet, "no notes or progress on stderr"),
        OPT_END};
    char *command = olmoe_join_argv(argc, argv);
    int n = olmoe_opt_parse(argc, argv, opts,
                            "usage: olmoe-traces merge OUT SHARD... [--copy] [--force]\n\n"
                            "Joins the shard traces of olmoe-capture --shard i/N (all N, any "
                            "order) into OUT,\nthe trace the unsharded capture writes. OUT reads "
                            "the shards through HDF5\nvirtual datasets: keep them beside it (paths "
                            "are stored relative to OUT),\nor give --copy.\n");
    if (n < 2) die_usage("merge needs OUT and at least one shard trace");
    olmoe_set_quiet(quiet);
    olmoe_out o;
    if (olmoe_out_begin(&o, argv[0], force) != 0) die("%s", olmoe_error());
    char *full = xmalloc(strlen(command) + 32);
    sprintf(full, "olmoe-traces %s", command);
    olmoe_trace_merge_opts mo = {.command = full, .copy = copy};
    if (olmoe_trace_merge(o.tmp, argv[0], (const char *const *)argv + 1, n - 1, &mo) != 0)
        die("%s", olmoe_error());
    if (olmoe_out_commit(&o) != 0) die("%s", olmoe_error());
    { /* the summary line is the command's result: --quiet keeps it */
        olmoe_trace *t = open_or_die(argv[0]);
        const olmoe_trace_info *in = olmoe_trace_info_of(t);
        printf("%s: %d shards merged%s: %lld tokens, %lld windows, perplexity %.6f over %lld "
               "scored tokens\n", argv[0], n - 1, copy ? " (copied)" : " (virtual datasets)",
               (long long)in->n_tokens, (long long)in->n_windows, in->perplexity,
               (long long)in->n_scored);
        olmoe_trace_close(t);
        if (fflush(stdout) != 0 || ferror(stdout)) die("stdout: write failed");
    }
    free(full);
    free(command);
    return 0;
}

static const olmoe_subcmd cmds[] = {
    {"info", cmd_info, "summary: model, checksums, tokens, windows, documents, perplexity"},
    {"verify", cmd_verify, "check traces against olmoe-trace(5); exit 1 on any problem"},
    {"export", cmd_export, "write tokens, text, nll, argmax, router logits, windows or a policy's decisions"},
    {"merge", cmd_merge, "join the shard traces of olmoe-capture --shard into one trace"},
    {NULL, NULL, NULL},
};

int main(int argc, char **argv) {
    olmoe_set_prog(argv[0]);
    olmoe_save_argv(argc, argv);
    return olmoe_subcmd_run(argc, argv, cmds, usage);
}
