/* main_analyze.c: olmoe-analyze coactivation|specialization|flow|compare (and
 * intervals|compare-policies|headroom, main_analyze_paper.c), the
 * OLMoE paper's routing analyses over traces (definitions and the HDF5
 * layout of the results in man/olmoe-analyze.1).
 *
 * Each subcommand opens its trace(s) as a routed source, refuses outputs that
 * exist before any work, runs one streaming analysis, prints its tables and
 * writes --csv, --json and HDF5 (--out FILE or --in-trace) results, each
 * under a temporary name until complete. A subcommand owns its options (an
 * analyze_opts on its stack) and passes them down. */
#include "analyze.h"
#include "common.h"
#include "main_analyze.h"
#include "traces.h"

#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
    "usage: olmoe-analyze <command> TRACE [options]\n"
    "\n"
    "The OLMoE paper's routing analyses over traces, for any routing policy.";

/* ---- options (one set: each subcommand's table lists the ones it takes) ---- */
typedef struct {
    const char *layers, *csv, *json, *out, *name, *tokenizer;
    const char *by, *policy_b, *null_b;
    long top, min_pairs, max_tokens, chunk_rows, min_count, mem, from, to;
    int in_trace, force, quiet, verbose;
    int no_table; /* --json - or --csv -: that output alone on stdout */
    /* the policy options every routing command shares (policy/policy_cli.c);
     * without --policy, the trace's own top-k */
    olmoe_policy_cli cli;
    char *policy; /* their one policy, canonical; NULL when none was given */
} analyze_opts;

static analyze_opts default_opts(void) {
    return (analyze_opts){.top = 10, .min_pairs = 100, .min_count = 10, .mem = 2048,
                          .from = -1, .to = -1};
}

#define OPTS_COMMON(o)                                                                           \
    OPT_LONG_RANGE("max-tokens", &(o)->max_tokens, "N", "analyse the first N tokens (default all)", \
                   1, 1L << 62),                                                                 \
        OPT_LONG_RANGE("top", &(o)->top, "N", "rows of each top list (default 10)", 0, 100000), \
        OPT_STRING("csv", &(o)->csv, "FILE", "write the main table as CSV (-: stdout, no table)"), \
        OPT_STRING("json", &(o)->json, "FILE", "write every result as JSON (-: stdout, no table)"), \
        OPT_STRING("out", &(o)->out, "FILE", "store the results in an HDF5 results file"),       \
        OPT_FLAG("in-trace", &(o)->in_trace, "store the results beside the trace (TRACE.results.h5)"),   \
        OPT_STRING("name", &(o)->name, "NAME", "name of the stored result (default: policy id)"), \
        OPT_FLAG("force", &(o)->force, "overwrite existing outputs and stored results"),         \
        OPT_FLAG("quiet", &(o)->quiet, "no notes or progress on stderr"),                        \
        OPT_FLAG("verbose", &(o)->verbose, "print throughput and peak memory at the end"),       \
        OPT_LONG_RANGE("chunk-rows", &(o)->chunk_rows, "N", "rows read per step (default 1024)", 1, \
                       1L << 24)

/* a subcommand's table: its own options, then room for the policy options */
enum { OWN_OPTS_MAX = 20, OPTS_MAX = OWN_OPTS_MAX + OLMOE_POLICY_CLI_NOPTS + 1 };

/* the one policy of the policy options, canonical, into o->policy */
static void policy_of_cli(analyze_opts *o) {
    if (!o->cli.n_policies) {
        if (olmoe_policy_cli_given(&o->cli))
            die_usage("--kde, --empirical and the policy parameters (--alpha, ...) go with --policy");
        return;
    }
    olmoe_policy_set set = {0};
    if (olmoe_policy_cli_build(&o->cli, &set) != 0) die_usage("%s", olmoe_error());
    if (set.n != 1) die_usage("--policy: one policy, not a set of %d", set.n);
    o->policy = xstrdup(set.items[0].id);
    olmoe_policy_set_free(&set);
}

/* the policy options appended to the subcommand's own (opts: ended by
 * OPT_END, OPTS_MAX long), argv parsed, the policy made canonical; returns
 * the number of positionals */
static int parse_args(analyze_opts *o, olmoe_opt *opts, int argc, char **argv, const char *use) {
    int n = 0;
    while (opts[n].name) n++;
    n += olmoe_policy_cli_options(&o->cli, opts + n, OLMOE_POLICY_CLI_NULL_ALIAS);
    opts[n] = (olmoe_opt)OPT_END;
    int npos = olmoe_opt_parse(argc, argv, opts, use);
    policy_of_cli(o);
    o->no_table = olmoe_out_stdout_taken(o->json, o->csv);
    if (o->no_table < 0) die_usage("%s", olmoe_error());
    return npos;
}

/* the subcommands of one trace: dies unless exactly one is given */
static void one_trace(int npos) {
    if (npos != 1) die_usage(npos ? "one trace, please" : "which trace?");
}

/* ---- what every run shares ---- */
typedef struct {
    const analyze_opts *o;
    const char *analysis; /* result group: /analyze/<analysis>/<typable leaf> */
    char *command;        /* the command line as given, subcommand included */
    olmoe_out csv, json, h5;
    double t0, t_analysis;
    int64_t token_layers;
    char *checksum_a, *checksum_b; /* model checksums, kept past the traces' close */
    int out_append;                /* --out names an existing results file: add to it */
    /* Results added to an existing file (the results file beside the trace
     * with --in-trace, an olmoe-analyze file with --out) are written to a
     * locked copy, renamed into place when complete. */
    olmoe_results stored;
    int stored_live;
} run;

typedef struct {
    void (*print)(const void *res, FILE *f, int top);
    int (*csv)(const void *res, FILE *f);
    json_t *(*json)(const void *res);
    int (*h5)(const void *res, hid_t g);
} kind;

/* the command line as given (the saved argv: the parser moves the
 * positionals to the front) */
static char *saved_command(void) {
    int argc;
    char *const *argv = olmoe_saved_argv(&argc);
    return olmoe_join_argv(argc, (char **)argv);
}

/* --out naming an existing file: results accumulate in one file; anything
 * else (a trace!) is never overwritten */
static void check_out_append(const char *path) {
    static const char *const analyze_format[] = {OLMOE_ANALYZE_FORMAT, NULL};
    hid_t f = olmoe_h5_open(path, 0);
    int ok = f >= 0 && olmoe_h5_check_format(f, path, analyze_format,
                                             "an olmoe-analyze results file (--out adds results only to "
                                             "those; --in-trace stores them beside the trace)") == 0;
    if (f >= 0) olmoe_h5_close(f);
    if (!ok) die("%s", olmoe_error());
}

/* after every usage check: outputs are refused or begun here */
static void run_begin(run *r, const analyze_opts *o, const char *analysis) {
    memset(r, 0, sizeof *r);
    r->o = o;
    r->analysis = analysis;
    olmoe_set_quiet(o->quiet);
    if (o->csv && olmoe_out_begin_text(&r->csv, o->csv, o->force) != 0) die("%s", olmoe_error());
    if (o->json && olmoe_out_begin_text(&r->json, o->json, o->force) != 0) die("%s", olmoe_error());
    if (o->out && olmoe_file_exists(o->out)) {
        check_out_append(o->out);
        r->out_append = 1;
    } else if (o->out && olmoe_out_begin(&r->h5, o->out, o->force) != 0) {
        die("%s", olmoe_error());
    }
    r->command = saved_command();
}

static olmoe_analyze_opts src_opts(const analyze_opts *o, const char *policy,
                                   const char *null_path) {
    olmoe_analyze_opts so = {.policy = policy, .null_path = null_path,
                             .empirical_path = o->cli.empirical, .beta_trace = o->cli.beta_trace,
                             .empirical_max = o->cli.empirical_max, .layers = o->layers,
                             .chunk_rows = o->chunk_rows, .max_tokens = o->max_tokens};
    return so;
}

/* the number of layers of a trace, to check layer options as usage errors */
static int trace_layers(const char *path) {
    olmoe_trace *t = olmoe_trace_open(path);
    if (!t) die("%s", olmoe_error());
    int L = olmoe_trace_info_of(t)->meta.n_layers;
    olmoe_trace_close(t);
    return L;
}

/* usage checks shared by the subcommands (before anything is allocated) */
static int check_usage(const analyze_opts *o, const char *path) {
    if (o->out && o->in_trace) die_usage("--out and --in-trace: choose one place for the results");
    if (o->name && !o->out && !o->in_trace)
        die_usage("--name names a result stored with --out or --in-trace");
    if (o->name && olmoe_analyze_name_check(o->name) != 0) die_usage("--name: %s", olmoe_error());
    int L = trace_layers(path), n = 0;
    if (!o->layers) return L;
    unsigned char *want = xmalloc((size_t)L);
    int bad = olmoe_analyze_parse_layers(o->layers, L, want);
    for (int l = 0; l < L; l++) n += want[l];
    free(want);
    if (bad) die_usage("--%s", olmoe_error());
    return n; /* layers analysed */
}

static olmoe_analyze_src *open_src(const char *path, olmoe_analyze_opts so) {
    olmoe_analyze_src *s = olmoe_analyze_src_open(path, &so);
    if (!s) die("%s", olmoe_error());
    if (!s->info->complete)
        warnf("%s: the trace is incomplete (its capture did not finish): analysing its %lld "
              "committed tokens", path, (long long)s->info->n_tokens);
    return s;
}

/* the name of a stored result, its key (default the policy id); its group
 * is the name made typable (olmoe_analyze_h5_begin) */
static const char *leaf_of(const analyze_opts *o, const olmoe_analyze_src *s) {
    return o->name ? o->name : s->policy.id;
}

/* locks the file results are added to, and refuses an existing stored
 * result now, before the work */
static void check_stored(run *r, const olmoe_analyze_src *s, const char *leaf) {
    const analyze_opts *o = r->o;
    if (!o->in_trace && !r->out_append) return;
    if (!r->stored_live) {
        if (o->in_trace ? olmoe_results_begin(&r->stored, s->path, olmoe_trace_hid(s->trace))
                        : olmoe_h5_update_begin(&r->stored, o->out))
            die("%s", olmoe_error());
        r->stored_live = 1;
    }
    if (o->force) return;
    char *path = NULL;
    int e = olmoe_analyze_h5_find(r->stored.f, r->analysis, leaf, &path);
    if (e < 0) die("%s: %s", r->stored.final, olmoe_error());
    if (e)
        die("%s: /%s exists (use --force to replace it, or --name to store another)",
            r->stored.final, path);
}

/* a subcommand of one trace, up to its analysis: outputs begun, the source
 * opened, an existing stored result refused, the clock started */
static olmoe_analyze_src *begin_one(run *r, const analyze_opts *o, const char *analysis,
                                    const char *path, olmoe_analyze_opts so) {
    run_begin(r, o, analysis);
    olmoe_analyze_src *s = open_src(path, so);
    check_stored(r, s, leaf_of(o, s));
    r->t0 = olmoe_now();
    return s;
}

/* tokenizer.json for decoding: --tokenizer, else the model's when its
 * checksum matches the trace's; NULL when none fits */
static char *find_tokenizer(const analyze_opts *o, const olmoe_analyze_src *s) {
    const char *want = s->info->meta.tokenizer_checksum;
    char *path = o->tokenizer ? xstrdup(o->tokenizer)
                              : (s->info->meta.model_dir && *s->info->meta.model_dir
                                     ? olmoe_path_join(s->info->meta.model_dir, "tokenizer.json")
                                     : NULL);
    if (!path || (!o->tokenizer && !olmoe_file_exists(path))) {
        if (path) notef("%s not found: token ids are not decoded (give --tokenizer)", path);
        free(path);
        return NULL;
    }
    char *data;
    size_t len;
    if (olmoe_read_file(path, &data, &len) != 0) die("%s", olmoe_error());
    olmoe_hash h;
    olmoe_hash_bytes(data, len, &h);
    free(data);
    if (want && *want && strcmp(want, h.hex) != 0) {
        if (o->tokenizer) {
            warnf("%s: not the tokenizer the trace was captured with (checksum %s, trace %s)",
                  path, h.hex, want);
        } else {
            notef("%s: checksum differs from the trace's tokenizer: token ids are not decoded",
                  path);
            free(path);
            return NULL;
        }
    }
    return path;
}

static void set_attrs(hid_t g, const run *r, const olmoe_analyze_src *a, const olmoe_analyze_src *b) {
    /* a's trace may be closed by now (--in-trace): its strings are in r */
    char created[32];
    time_t now = time(NULL);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    if (olmoe_h5_set_attr_str(g, ".", "format", OLMOE_ANALYZE_FORMAT) ||
        olmoe_h5_set_attr_i32(g, ".", "format_version", OLMOE_ANALYZE_FORMAT_VERSION) ||
        olmoe_h5_set_attr_str(g, ".", "analysis", r->analysis) ||
        olmoe_h5_set_attr_str(g, ".", "trace", a->path) ||
        olmoe_h5_set_attr_str(g, ".", "policy", a->policy.id) ||
        olmoe_h5_set_attr_str(g, ".", "model_checksum", r->checksum_a) ||
        olmoe_h5_set_attr_i64(g, ".", "n_tokens", a->n_tokens) ||
        olmoe_h5_set_attr_i32(g, ".", "n_experts", a->E) ||
        olmoe_h5_set_attr_str(g, ".", "command", r->command) ||
        olmoe_h5_set_attr_str(g, ".", "created", created) ||
        olmoe_h5_set_attr_str(g, ".", "tool_version", OLMOE_VERSION) ||
        (b && (olmoe_h5_set_attr_str(g, ".", "trace_b", b->path) ||
               olmoe_h5_set_attr_str(g, ".", "policy_b", b->policy.id) ||
               olmoe_h5_set_attr_str(g, ".", "model_checksum_b", r->checksum_b))))
        die("%s", olmoe_error());
}

static void store_into(hid_t f, const char *file, const run *r, const kind *k, const void *res,
                       const char *leaf, const olmoe_analyze_src *a, const olmoe_analyze_src *b) {
    olmoe_hash ta, tb;
    olmoe_input in[2] = {{"trace", a->path, ta.hex}, {"trace_b", b ? b->path : "", tb.hex}};
    if (olmoe_trace_identity(olmoe_trace_hid(a->trace), &ta) != 0 ||
        (b && olmoe_trace_identity(olmoe_trace_hid(b->trace), &tb) != 0))
        die("%s", olmoe_error());
    hid_t g;
    if (olmoe_results_provenance(f, in, b ? 2 : 1) != 0 ||
        olmoe_analyze_h5_begin(f, r->analysis, leaf, r->o->force, &g) != 0 || k->h5(res, g) != 0)
        die("%s: %s", file, olmoe_error());
    set_attrs(g, r, a, b);
    if (olmoe_analyze_h5_commit(f, r->analysis, leaf, r->o->force, g) != 0)
        die("%s: %s", file, olmoe_error());
}

static void store_h5(const char *file, const run *r, const kind *k, const void *res,
                     const char *leaf, const olmoe_analyze_src *a, const olmoe_analyze_src *b) {
    hid_t f = olmoe_h5_create(file);
    if (f < 0) die("%s", olmoe_error());
    if (olmoe_h5_set_attr_str(f, ".", "format", OLMOE_ANALYZE_FORMAT) ||
        olmoe_h5_set_attr_i32(f, ".", "format_version", OLMOE_ANALYZE_FORMAT_VERSION) ||
        olmoe_h5_set_attr_str(f, ".", "tool_version", OLMOE_VERSION))
        die("%s: %s", file, olmoe_error());
    store_into(f, file, r, k, res, leaf, a, b);
    if (olmoe_results_mark_last(f) != 0) die("%s: %s", file, olmoe_error());
    if (olmoe_h5_close(f) != 0) die("%s", olmoe_error()); /* the message names the file */
}

static void write_json(run *r, const kind *k, const void *res, const olmoe_analyze_src *a,
                       const olmoe_analyze_src *b) {
    json_t *root = json_object(), *body = k->json(res);
    json_object_set_new(root, "format", olmoe_json_str(OLMOE_ANALYZE_FORMAT));
    json_object_set_new(root, "format_version", json_integer(OLMOE_ANALYZE_FORMAT_VERSION));
    json_object_set_new(root, "analysis", olmoe_json_str(r->analysis));
    json_object_set_new(root, "trace", olmoe_json_str(a->path));
    json_object_set_new(root, "policy", olmoe_json_str(a->policy.id));
    if (b) {
        json_object_set_new(root, "trace_b", olmoe_json_str(b->path));
        json_object_set_new(root, "policy_b", olmoe_json_str(b->policy.id));
    }
    json_object_set_new(root, "n_tokens", json_integer(a->n_tokens));
    json_object_set_new(root, "n_experts", json_integer(a->E));
    json_object_set_new(root, "command", olmoe_json_str(r->command));
    json_object_update(root, body);
    json_decref(body);
    if (olmoe_json_write(root, r->json.tmp, JSON_INDENT(1) | JSON_COMPACT, r->json.final) != 0)
        die("%s", olmoe_error());
    json_decref(root);
    if (olmoe_out_commit(&r->json) != 0) die("%s", olmoe_error());
}

/* writes every output, closes the sources and reports; a and b are closed */
static int run_end(run *r, const kind *k, const void *res, olmoe_analyze_src *a,
                   olmoe_analyze_src *b, const char *leaf) {
    const analyze_opts *o = r->o;
    r->t_analysis = olmoe_now() - r->t0;
    double routed = a->seconds + (b ? b->seconds : 0);
    r->checksum_a = xstrdup(a->info->meta.model_checksum);
    r->checksum_b = xstrdup(b ? b->info->meta.model_checksum : "");
    if (!o->no_table) {
        k->print(res, stdout, (int)o->top);
        if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");
    }
    if (o->csv) {
        FILE *f = fopen(r->csv.tmp, "w");
        if (!f || k->csv(res, f) != 0 || fclose(f) != 0) die("%s: cannot write", r->csv.final);
        if (olmoe_out_commit(&r->csv) != 0) die("%s", olmoe_error());
    }
    if (o->json) write_json(r, k, res, a, b);
    if (r->stored_live) { /* --in-trace, or --out naming an existing results file */
        store_into(r->stored.f, r->stored.final, r, k, res, leaf, a, b);
        if (olmoe_results_commit(&r->stored) != 0) die("%s", olmoe_error());
        r->stored_live = 0;
    } else if (o->out) {
        store_h5(r->h5.tmp, r, k, res, leaf, a, b);
        if (olmoe_out_commit(&r->h5) != 0) die("%s", olmoe_error());
    }
    if (o->verbose) {
        char mem[32];
        fprintf(stderr, "%s: %s: %lld token-layers in %.3f s (%.3g M token-layers/s; %.3f s "
                "reading and routing), peak memory %s\n", olmoe_prog(), r->analysis,
                (long long)r->token_layers, r->t_analysis,
                r->t_analysis > 0 ? r->token_layers / r->t_analysis / 1e6 : 0.0, routed,
                olmoe_fmt_bytes(olmoe_analyze_peak_rss(), mem, sizeof mem));
    }
    olmoe_analyze_src_close(a);
    olmoe_analyze_src_close(b);
    free(r->command);
    free(r->checksum_a);
    free(r->checksum_b);
    return 0;
}


static void header(const analyze_opts *o, const char *what, const olmoe_analyze_src *s) {
    if (o->no_table) return;
    printf("# %s of %s: policy %s, %lld tokens, %d of %d layers\n", what, s->path, s->policy.id,
           (long long)s->n_tokens, s->n_layers, s->L);
}

/* ---- coactivation ---- */
static void pairs_print(const void *r, FILE *f, int top) { olmoe_analyze_pairs_print(r, f, top); }
static int pairs_csv(const void *r, FILE *f) { return olmoe_analyze_pairs_csv(r, f); }
static json_t *pairs_json(const void *r) { return olmoe_analyze_pairs_json(r); }
static int pairs_h5(const void *r, hid_t g) { return olmoe_analyze_pairs_h5(r, g); }
static const kind pairs_kind = {pairs_print, pairs_csv, pairs_json, pairs_h5};

#define OPT_MIN_PAIRS(o)                                                                  \
    OPT_LONG_RANGE("min-count", &(o)->min_pairs, "N",                                     \
                   "top pairs: experts i selected >= N times (default 100)", 1, 1L << 62)
#define OPT_LAYERS(o, what)                                                               \
    OPT_STRING("layers", &(o)->layers, "LIST", what ": all (default) or e.g. 0,3,8-15")

static int cmd_coactivation(int argc, char **argv) {
    analyze_opts o = default_opts();
    olmoe_opt opts[OPTS_MAX] = {OPT_MIN_PAIRS(&o), OPT_LAYERS(&o, "layers to analyse"),
                                OPTS_COMMON(&o), OPT_END};
    one_trace(parse_args(&o, opts, argc, argv,
                         "usage: olmoe-analyze coactivation TRACE [options]\n\n"
                         "Per layer, P(expert j selected | expert i selected) over tokens,\n"
                         "the most co-activated pairs and a summary (olmoe-analyze(1))."));
    check_usage(&o, argv[0]);
    run r;
    olmoe_analyze_src *s =
        begin_one(&r, &o, "coactivation", argv[0], src_opts(&o, o.policy, o.cli.kde));
    olmoe_analyze_pairs p;
    if (olmoe_analyze_coactivation(s, (int)o.top, o.min_pairs, &p) != 0) die("%s", olmoe_error());
    r.token_layers = s->n_tokens * s->n_layers;
    header(&o, "co-activation", s);
    run_end(&r, &pairs_kind, &p, s, NULL, leaf_of(&o, s));
    olmoe_analyze_pairs_free(&p);
    free(o.policy);
    return 0;
}

/* ---- flow ---- */
/* flow's own checks of --from, --to and --layers; --to defaults to --from + 1 */
static void check_flow_layers(analyze_opts *o, const char *path) {
    if (o->to >= 0 && o->from < 0) die_usage("--to needs --from");
    if (o->from >= 0 && o->layers) die_usage("--layers and --from: give one or the other");
    int n_layers = check_usage(o, path), L = trace_layers(path);
    if (o->from < 0 && n_layers < 2) die_usage("flow needs two layers (--layers gives one)");
    if (o->from >= 0) {
        if (o->to < 0) o->to = o->from + 1;
        if (o->from >= L || o->to >= L)
            die_usage("--from %ld --to %ld: %s has layers 0..%d", o->from, o->to, path, L - 1);
    }
}

static int cmd_flow(int argc, char **argv) {
    analyze_opts o = default_opts();
    olmoe_opt opts[OPTS_MAX] = {
        OPT_MIN_PAIRS(&o),
        OPT_LONG_RANGE("from", &o.from, "L", "first layer of the pair", 0, 1L << 20),
        OPT_LONG_RANGE("to", &o.to, "M", "second layer (default L + 1)", 0, 1L << 20),
        OPT_STRING("layers", &o.layers, "LIST", "without --from: each consecutive pair of these"),
        OPTS_COMMON(&o), OPT_END};
    one_trace(parse_args(&o, opts, argc, argv,
                         "usage: olmoe-analyze flow TRACE [--from L [--to M]] [options]\n\n"
                         "How often expert i at layer L is followed by expert j at layer M\n"
                         "for the same token (rows normalised); without --from, every pair\n"
                         "of consecutive analysed layers."));
    check_flow_layers(&o, argv[0]);
    char lay[64];
    olmoe_analyze_opts so = src_opts(&o, o.policy, o.cli.kde);
    if (o.from >= 0) {
        snprintf(lay, sizeof lay, "%ld,%ld", o.from, o.to);
        so.layers = lay;
    }
    run r;
    olmoe_analyze_src *s = begin_one(&r, &o, "flow", argv[0], so);
    int *from = xmalloc((size_t)s->L * sizeof *from), *to = xmalloc((size_t)s->L * sizeof *to);
    int n = 0;
    if (o.from >= 0) from[0] = (int)o.from, to[0] = (int)o.to, n = 1;
    else
        for (int i = 0; i + 1 < s->n_layers; i++) from[n] = s->layers[i], to[n++] = s->layers[i + 1];
    olmoe_analyze_pairs p;
    if (olmoe_analyze_flow(s, n, from, to, (int)o.top, o.min_pairs, &p) != 0) die("%s", olmoe_error());
    r.token_layers = s->n_tokens * s->n_layers;
    header(&o, "flow", s);
    run_end(&r, &pairs_kind, &p, s, NULL, leaf_of(&o, s));
    olmoe_analyze_pairs_free(&p);
    free(from);
    free(to);
    free(o.policy);
    return 0;
}

/* ---- specialization ---- */
static void group_print(const void *r, FILE *f, int top) {
    (void)top;
    olmoe_analyze_groupspec_print(r, f);
}
static int group_csv(const void *r, FILE *f) { return olmoe_analyze_groupspec_csv(r, f); }
static json_t *group_json(const void *r) { return olmoe_analyze_groupspec_json(r); }
static int group_h5(const void *r, hid_t g) { return olmoe_analyze_groupspec_h5(r, g); }
static const kind group_kind = {group_print, group_csv, group_json, group_h5};
static void token_print(const void *r, FILE *f, int top) {
    (void)top;
    olmoe_analyze_tokenspec_print(r, f);
}
static int token_csv(const void *r, FILE *f) { return olmoe_analyze_tokenspec_csv(r, f); }
static json_t *token_json(const void *r) { return olmoe_analyze_tokenspec_json(r); }
static int token_h5(const void *r, hid_t g) { return olmoe_analyze_tokenspec_h5(r, g); }
static const kind token_kind = {token_print, token_csv, token_json, token_h5};

#define OPT_TOKENIZER(o)                                                                  \
    OPT_STRING("tokenizer", &(o)->tokenizer, "FILE",                                      \
               "tokenizer.json to decode ids (default: the model's)")

/* --by token: the token ids each expert serves most, decoded when a
 * tokenizer fits */
static void spec_by_token(run *r, olmoe_analyze_src *s) {
    const analyze_opts *o = r->o;
    olmoe_analyze_tokenspec t;
    if (olmoe_analyze_spec_token(s, o->min_count, o->top > 0 ? (int)o->top : 1,
                                 (size_t)o->mem << 20, &t) != 0)
        die("%s", olmoe_error());
    char *tok = find_tokenizer(o, s);
    if (tok && olmoe_analyze_decode_ids(tok, t.ids, t.n_ids, &t.text) != 0) die("%s", olmoe_error());
    free(tok);
    header(o, "token specialization", s);
    run_end(r, &token_kind, &t, s, NULL, leaf_of(o, s));
    olmoe_analyze_tokenspec_free(&t);
}

static int cmd_specialization(int argc, char **argv) {
    analyze_opts o = default_opts();
    olmoe_opt opts[OPTS_MAX] = {
        OPT_STRING("by", &o.by, "group|token", "by document group or by token id (required)"),
        OPT_LONG_RANGE("min-count", &o.min_count, "N",
                       "token ids seen >= N times; top cells of >= N selections (default 10)", 1,
                       1L << 62),
        OPT_TOKENIZER(&o),
        OPT_LONG_RANGE("mem", &o.mem, "MIB", "--by token: memory for counters (default 2048)", 1,
                       1L << 30),
        OPT_LAYERS(&o, "layers to analyse"), OPTS_COMMON(&o), OPT_END};
    one_trace(parse_args(&o, opts, argc, argv,
                         "usage: olmoe-analyze specialization TRACE --by group|token [options]\n\n"
                         "--by group: how much of each expert's work comes from each document\n"
                         "group, against the group's share of the text (domain specialization).\n"
                         "--by token: how consistently each token id goes to one expert, and\n"
                         "the token ids each expert serves most exclusively."));
    if (!o.by) die_usage("--by group or --by token, please");
    int by_group = strcmp(o.by, "group") == 0;
    if (!by_group && strcmp(o.by, "token") != 0) die_usage("--by '%s': group or token", o.by);
    check_usage(&o, argv[0]);
    olmoe_analyze_opts so = src_opts(&o, o.policy, o.cli.kde);
    so.want_groups = by_group;
    run r;
    olmoe_analyze_src *s = begin_one(
        &r, &o, by_group ? "specialization_group" : "specialization_token", argv[0], so);
    r.token_layers = s->n_tokens * s->n_layers;
    if (by_group) {
        olmoe_analyze_groupspec g;
        if (olmoe_analyze_spec_group(s, o.min_count, (int)o.top, &g) != 0) die("%s", olmoe_error());
        header(&o, "domain specialization", s);
        run_end(&r, &group_kind, &g, s, NULL, leaf_of(&o, s));
        olmoe_analyze_groupspec_free(&g);
    } else {
        spec_by_token(&r, s);
    }
    free(o.policy);
    return 0;
}

/* ---- compare ---- */
static int null_b_cb(const char *value, void *ctx) {
    warnf("--null-b is deprecated: say --kde-b %s", value);
    *(const char **)ctx = value;
    return 0;
}

static void cmp_print(const void *r, FILE *f, int top) {
    (void)top;
    olmoe_analyze_compare_print(r, f);
}
static int cmp_csv(const void *r, FILE *f) { return olmoe_analyze_compare_csv(r, f); }
static json_t *cmp_json(const void *r) { return olmoe_analyze_compare_json(r); }
static int cmp_h5(const void *r, hid_t g) { return olmoe_analyze_compare_h5(r, g); }
static const kind cmp_kind = {cmp_print, cmp_csv, cmp_json, cmp_h5};

/* the two sources of compare: a with the policy options, b with --policy-b
 * and --kde-b (else --kde); b is checked to have a's layers first */
static void open_pair(const analyze_opts *o, const char *path_a, const char *path_b,
                      olmoe_analyze_src **a, olmoe_analyze_src **b) {
    olmoe_analyze_opts sa = src_opts(o, o->policy, o->cli.kde),
                       sb = src_opts(o, o->policy_b, o->null_b);
    sa.want_logits = sb.want_logits = 1;
    if (!o->null_b) sb.null_path = o->cli.kde;
    *a = open_src(path_a, sa);
    if (trace_layers(path_b) != (*a)->L)
        die("%s has %d layers, %s has %d: compare needs traces of the same architecture", path_a,
            (*a)->L, path_b, trace_layers(path_b));
    *b = open_src(path_b, sb);
}

static int cmd_compare(int argc, char **argv) {
    analyze_opts o = default_opts();
    olmoe_opt opts[OPTS_MAX] = {
        OPT_STRING("policy-b", &o.policy_b, "SPEC", "policy for the second trace (default: its top-k)"),
        OPT_STRING("kde-b", &o.null_b, "FILE", "pvalue=kde: the null for the second trace's policy"),
        OPT_CALLBACK("null-b", null_b_cb, &o.null_b, "FILE", "deprecated name of --kde-b"),
        OPT_LAYERS(&o, "layers to compare"), OPT_TOKENIZER(&o), OPTS_COMMON(&o), OPT_END};
    int npos = parse_args(&o, opts, argc, argv,
                          "usage: olmoe-analyze compare A.h5 B.h5 [options]\n\n"
                          "Two traces of the same tokens: per layer the overlap of the selected\n"
                          "sets (router saturation), the Spearman correlation of the router\n"
                          "logits, and the positions where the routing differs most.");
    if (npos != 2) die_usage("two traces, please (olmoe-analyze compare A.h5 B.h5)");
    check_usage(&o, argv[0]);
    run r;
    run_begin(&r, &o, "compare");
    olmoe_analyze_src *a, *b;
    open_pair(&o, argv[0], argv[1], &a, &b);
    char *bcopy = xstrdup(argv[1]), *leaf = xstrdup(o.name ? o.name : basename(bcopy));
    check_stored(&r, a, leaf);
    r.t0 = olmoe_now();
    olmoe_analyze_compare c;
    if (olmoe_analyze_compare_run(a, b, (int)o.top, &c) != 0) die("%s", olmoe_error());
    r.token_layers = a->n_tokens * a->n_layers;
    char *tok = find_tokenizer(&o, a);
    if (tok && olmoe_analyze_decode_ids(tok, c.worst_token, c.n_worst, &c.worst_text) != 0)
        die("%s", olmoe_error());
    free(tok);
    if (!o.no_table)
        printf("# compare %s (policy %s) with %s (policy %s): %lld tokens, %d of %d layers\n",
               a->path, a->policy.id, b->path, b->policy.id, (long long)a->n_tokens, a->n_layers,
               a->L);
    run_end(&r, &cmp_kind, &c, a, b, leaf);
    olmoe_analyze_compare_free(&c);
    free(bcopy);
    free(leaf);
    free(o.policy);
    return 0;
}

static const olmoe_subcmd cmds[] = {
    {"coactivation", cmd_coactivation, "P(expert j | expert i) per layer, top pairs"},
    {"specialization", cmd_specialization, "domain (--by group) or token-id (--by token) specialization"},
    {"flow", cmd_flow, "expert i at layer L followed by expert j at layer M"},
    {"compare", cmd_compare, "two traces of the same tokens: overlap, rank correlation"},
    {"intervals", olmoe_cmd_intervals, "stored results' perplexity vs the baseline, bootstrap intervals"},
    {"compare-policies", olmoe_cmd_compare_policies, "two stored policies: a paired bootstrap test"},
    {"headroom", olmoe_cmd_headroom, "the exact top-k ladder: per token the smallest k within eps"},
    {NULL, NULL, NULL}};

int main(int argc, char **argv) {
    olmoe_set_prog(argv[0]);
    olmoe_save_argv(argc, argv);
    return olmoe_subcmd_run(argc, argv, cmds, usage);
}
