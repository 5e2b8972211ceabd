/* main_analyze_paper.c: olmoe-analyze intervals, compare-policies and headroom, the
 * numbers a routing paper quotes from stored results (man/olmoe-analyze.1):
 * paired bootstrap intervals over documents (bootstrap.h) and the headroom of
 * any adaptive policy over the exact top-k ladder (headroom.h). Stored results
 * are read only through replay_h5.c's readers, from the trace's results file
 * (olmoe_results_open: beside it, or the trace itself for an old trace that
 * holds them) and then each --results file in turn. */
#include "common.h"
#include "analyze.h"
#include "main_analyze.h"
#include "policy.h"
#include "traces.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the options of the three subcommands (each table lists the ones it takes),
 * owned by the subcommand and passed down */
typedef struct {
    const char *results[32]; /* --results, in order */
    int n_results;
    const char *kind, *json, *csv, *eps, *write;
    int force, quiet;
    int no_table; /* --json - or --csv -: that output alone on stdout */
    long seed, resamples;
    double write_eps;
} paper_opts;

static paper_opts default_opts(void) {
    return (paper_opts){.eps = "0.01,0.1", .seed = 1, .resamples = 1000, .write_eps = 0.01};
}

static int results_cb(const char *v, void *ctx) {
    paper_opts *o = ctx;
    if (o->n_results == (int)(sizeof o->results / sizeof o->results[0])) return olmoe_errorf("too many --results");
    o->results[o->n_results++] = v;
    return 0;
}

#define OPTS_SOURCES(o)                                                                            \
    OPT_CALLBACK("results", results_cb, (o), "FILE",                                               \
                 "a results file (olmoe-replay --out) searched after the trace (repeatable)"),     \
        OPT_STRING("kind", &(o)->kind, "KIND", "exact (default when stored) or replay")
#define OPTS_BOOT(o)                                                                               \
    OPT_LONG_RANGE("seed", &(o)->seed, "N", "bootstrap seed (default 1)", 0, 1L << 62),           \
        OPT_LONG_RANGE("resamples", &(o)->resamples, "N", "bootstrap resamples (default 1000)", 1, 10000000)
#define OPTS_OUT(o)                                                                                \
    OPT_STRING("json", &(o)->json, "FILE", "write the results as JSON (-: stdout, no table)"),      \
        OPT_STRING("csv", &(o)->csv, "FILE", "write the table as CSV (-: stdout, no table)"),       \
        OPT_FLAG("force", &(o)->force, "overwrite existing outputs"),                              \
        OPT_FLAG("quiet", &(o)->quiet, "no notes or progress on stderr")

/* ---- where stored results are: the trace, then each --results file ---- */
typedef struct {
    olmoe_trace *t;
    hid_t file[33]; /* [0] the trace's results (own_first: a file to close) */
    int n, own_first;
    int64_t N;
    float *base; /* [N] the captured baseline NLL */
} sources;

static void sources_open(sources *s, const char *trace, const paper_opts *o) {
    memset(s, 0, sizeof *s);
    if (!(s->t = olmoe_trace_open(trace))) die("%s", olmoe_error());
    int own = olmoe_results_open(trace, olmoe_trace_hid(s->t), &s->file[s->n++]);
    if (own < 0) die("%s", olmoe_error());
    s->own_first = own;
    /* what olmoe-replay --out writes, or a results file given by name */
    static const char *const formats[] = {OLMOE_REPLAY_FORMAT, OLMOE_RESULTS_FORMAT, NULL};
    for (int i = 0; i < o->n_results; i++) {
        hid_t f = s->file[s->n++] = olmoe_h5_open(o->results[i], 0);
        if (f < 0 || olmoe_h5_check_format(f, o->results[i], formats,
                                           "a results file (olmoe-replay --out)") != 0)
            die("%s", olmoe_error());
    }
    s->N = olmoe_trace_info_of(s->t)->n_tokens;
    s->base = xmalloc(xmul((size_t)(s->N ? s->N : 1), sizeof *s->base));
    if (s->N && olmoe_trace_read_nll(s->t, 0, s->N, s->base) != 0) die("%s", olmoe_error());
}

static void sources_close(sources *s) {
    for (int i = s->own_first ? 0 : 1; i < s->n; i++) olmoe_h5_close(s->file[i]);
    olmoe_trace_close(s->t);
    free(s->base);
}

/* the per-token NLL [N] of a stored policy ("baseline": the capture's), or NULL */
static float *find_nll(const sources *s, const char *kind, const char *id) {
    if (strcmp(id, "baseline") == 0) {
        float *b = xmalloc(xmul((size_t)(s->N ? s->N : 1), sizeof *b));
        memcpy(b, s->base, (size_t)s->N * sizeof *b);
        return b;
    }
    olmoe_policy p;
    const char *ids[2] = {id, NULL};
    if (olmoe_policy_parse(id, &p) == 0) ids[1] = p.id; /* a spec: its canonical id */
    for (int k = 0; k < 2; k++)
        for (int i = 0; ids[k] && i < s->n; i++) {
            float *nll = NULL;
            int64_t n = 0;
            int rc = olmoe_replay_h5_read_nll(s->file[i], kind, ids[k], &nll, &n);
            if (rc < 0) die("%s", olmoe_error());
            if (rc == 0) continue;
            if (n != s->N) die("/%s/%s: %lld tokens, the trace %lld", kind, ids[k], (long long)n, (long long)s->N);
            return nll;
        }
    return NULL;
}

static const char *pick_kind(const sources *s, const char *id, const char *given) {
    if (given) {
        if (strcmp(given, "exact") != 0 && strcmp(given, "replay") != 0)
            die_usage("--kind: exact or replay, not '%s'", given);
        return given;
    }
    float *x = find_nll(s, "exact", id), *y = x ? NULL : find_nll(s, "replay", id);
    const char *k = x || !y ? "exact" : "replay"; /* neither: exact, for the message */
    free(x);
    free(y);
    return k;
}

static FILE *out_open(olmoe_out *o, const char *path, int force) {
    if (!path) return NULL;
    if (olmoe_out_begin_text(o, path, force) != 0) die("%s", olmoe_error());
    FILE *f = fopen(o->tmp, "w");
    if (!f) die("%s: cannot write", o->tmp);
    return f;
}

static void out_close(olmoe_out *o, FILE *f) {
    if (!f) return;
    if (olmoe_fclose_out(f, o->final) != 0) die("%s", olmoe_error());
    if (olmoe_out_commit(o) != 0) die("%s", olmoe_error());
}

/* what every subcommand reads and writes: the stored results' sources,
 * --json's document (built whole in memory and written once at the end, so a
 * failure leaves no half document) and --csv (NULL when not given) */
typedef struct {
    sources s;
    olmoe_out oj, oc;
    json_t *json, *rows; /* the document and its "results" array (borrowed) */
    FILE *fc;
} paper_run;

/* --quiet applied, --json and --csv begun (refused when they exist, without
 * --force; "-": stdout, and then no table there), the sources of trace opened */
static void paper_begin(paper_run *p, paper_opts *o, const char *trace) {
    olmoe_set_quiet(o->quiet);
    o->no_table = olmoe_out_stdout_taken(o->json, o->csv);
    if (o->no_table < 0) die_usage("%s", olmoe_error());
    memset(p, 0, sizeof *p);
    if (o->json && olmoe_out_begin_text(&p->oj, o->json, o->force) != 0) die("%s", olmoe_error());
    p->fc = out_open(&p->oc, o->csv, o->force);
    sources_open(&p->s, trace, o);
}

/* the document in full precision (a double's 17 digits), then a newline */
static void json_write(paper_run *p) {
    if (olmoe_json_write(p->json, p->oj.tmp, JSON_INDENT(1) | JSON_REAL_PRECISION(17), p->oj.final) != 0)
        die("%s", olmoe_error());
    if (olmoe_out_commit(&p->oj) != 0) die("%s", olmoe_error());
    json_decref(p->json);
    p->json = p->rows = NULL;
}

static void paper_end(paper_run *p) {
    if (p->json) json_write(p);
    out_close(&p->oc, p->fc);
    sources_close(&p->s);
}

static void boot(const sources *s, const paper_opts *o, const float *a, const float *b,
                 olmoe_boot_result *r, const char **unit) {
    olmoe_boot_units u;
    if (olmoe_boot_trace_units(s->t, &u) != 0) die("%s", olmoe_error());
    olmoe_boot_units_fill(&u, a, b, s->N);
    if (olmoe_boot_paired(&u, (int)o->resamples, (uint64_t)o->seed, r) != 0) die("%s", olmoe_error());
    *unit = u.unit;
    olmoe_boot_units_free(&u);
}

/* [lo, hi]; an end that is not finite (no JSON form) is null */
static json_t *jpair(double lo, double hi) {
    json_t *a = json_array();
    json_array_append_new(a, olmoe_analyze_jnum(lo));
    json_array_append_new(a, olmoe_analyze_jnum(hi));
    return a;
}

/* with --json, its document begun: {"format": "olmoe-<what>", "trace":
 * trace, "kind": kind, "k_base": k_base (headroom; kind NULL: neither),
 * "results": []} */
static void json_begin(paper_run *p, const char *what, const char *trace, const char *kind, int k_base) {
    if (!p->oj.tmp) return;
    char format[64];
    snprintf(format, sizeof format, "olmoe-%s", what);
    p->json = json_object();
    json_object_set_new(p->json, "format", olmoe_json_str(format));
    json_object_set_new(p->json, "trace", olmoe_json_str(trace));
    if (kind) {
        json_object_set_new(p->json, "kind", olmoe_json_str(kind));
        json_object_set_new(p->json, "k_base", json_integer(k_base));
    }
    p->rows = json_array();
    json_object_set_new(p->json, "results", p->rows);
}

/* one bootstrap row of "results": policy a against the reference b */
static void json_boot(paper_run *p, const char *kind, const char *a, const char *b, const olmoe_boot_result *r,
                      const char *unit) {
    if (!p->rows) return;
    json_t *o = json_object();
    json_object_set_new(o, "kind", olmoe_json_str(kind));
    json_object_set_new(o, "policy", olmoe_json_str(a));
    json_object_set_new(o, "reference", olmoe_json_str(b));
    json_object_set_new(o, "unit", olmoe_json_str(unit));
    json_object_set_new(o, "n_units", json_integer((json_int_t)r->n_units));
    json_object_set_new(o, "n_tokens", json_integer((json_int_t)r->n_tokens));
    json_object_set_new(o, "resamples", json_integer(r->resamples));
    json_object_set_new(o, "seed", json_integer((json_int_t)r->seed));
    json_object_set_new(o, "level", json_real(0.95));
    json_object_set_new(o, "perplexity", olmoe_analyze_jnum(r->ppl_a));
    json_object_set_new(o, "perplexity_ci", jpair(r->ppl_a_lo, r->ppl_a_hi));
    json_object_set_new(o, "reference_perplexity", olmoe_analyze_jnum(r->ppl_b));
    json_object_set_new(o, "reference_perplexity_ci", jpair(r->ppl_b_lo, r->ppl_b_hi));
    json_object_set_new(o, "delta", olmoe_analyze_jnum(r->delta));
    json_object_set_new(o, "delta_ci", jpair(r->delta_lo, r->delta_hi));
    json_object_set_new(o, "delta_nll", olmoe_analyze_jnum(r->dnll));
    json_object_set_new(o, "delta_nll_ci", jpair(r->dnll_lo, r->dnll_hi));
    json_object_set_new(o, "p_value", olmoe_analyze_jnum(r->p_value));
    json_array_append_new(p->rows, o);
}

static const char csv_head[] = "kind,policy,reference,unit,n_units,n_tokens,resamples,seed,perplexity,ppl_lo,ppl_hi,"
                               "reference_perplexity,ref_lo,ref_hi,delta,delta_lo,delta_hi,p_value\n";

static void csv_boot(FILE *f, const char *kind, const char *a, const char *b, const olmoe_boot_result *r,
                     const char *unit) {
    fprintf(f, "%s,", kind);
    olmoe_csv_field(f, a);
    fputc(',', f);
    olmoe_csv_field(f, b);
    fprintf(f, ",%s,%lld,%lld,%d,%llu,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g,%.6g\n", unit,
            (long long)r->n_units, (long long)r->n_tokens, r->resamples, (unsigned long long)r->seed, r->ppl_a,
            r->ppl_a_lo, r->ppl_a_hi, r->ppl_b, r->ppl_b_lo, r->ppl_b_hi, r->delta, r->delta_lo, r->delta_hi,
            r->p_value);
}

/* ---- compare-policies TRACE A B ---- */
int olmoe_cmd_compare_policies(int argc, char **argv) {
    paper_opts o = default_opts();
    const olmoe_opt opts[] = {OPTS_SOURCES(&o), OPTS_BOOT(&o), OPTS_OUT(&o), OPT_END};
    int npos = olmoe_opt_parse(argc, argv, opts,
                               "usage: olmoe-analyze compare-policies TRACE A B [options]\n\n"
                               "A paired bootstrap over documents (windows when the trace has none) of\n"
                               "two stored policies' perplexities (ids or specs; 'baseline' is the\n"
                               "capture's): B against A, 95 % intervals and a two-sided p-value.");
    if (npos != 3) die_usage("a trace and two policies, please (olmoe-analyze compare-policies TRACE A B)");
    paper_run p;
    paper_begin(&p, &o, argv[0]);
    json_begin(&p, "compare-policies", argv[0], NULL, 0);
    const char *kind = pick_kind(&p.s, strcmp(argv[1], "baseline") ? argv[1] : argv[2], o.kind);
    float *a = find_nll(&p.s, kind, argv[1]), *b = find_nll(&p.s, kind, argv[2]);
    if (!a || !b)
        die("%s: no %s results for %s (run olmoe-replay%s first)", argv[0], kind, a ? argv[2] : argv[1],
            strcmp(kind, "exact") == 0 ? " --exact" : "");
    olmoe_boot_result r;
    const char *unit;
    boot(&p.s, &o, b, a, &r, &unit);
    if (!o.no_table) {
        printf("# %s: B = %s against A = %s, paired bootstrap over %lld %ss (%lld tokens), %d resamples, seed %ld\n",
               kind, argv[2], argv[1], (long long)r.n_units, unit, (long long)r.n_tokens, r.resamples, o.seed);
        printf("A perplexity %.4f [%.4f, %.4f]\n", r.ppl_b, r.ppl_b_lo, r.ppl_b_hi);
        printf("B perplexity %.4f [%.4f, %.4f]\n", r.ppl_a, r.ppl_a_lo, r.ppl_a_hi);
        printf("B/A - 1 %+.3f %% [%+.3f %%, %+.3f %%], mean NLL difference %+.5f [%+.5f, %+.5f] nats, p = %.4g\n",
               100 * r.delta, 100 * r.delta_lo, 100 * r.delta_hi, r.dnll, r.dnll_lo, r.dnll_hi, r.p_value);
        printf("%s\n", r.delta_lo > 0 || r.delta_hi < 0 ? "the interval excludes 0: the difference is supported"
                                                        : "the interval holds 0: no difference is shown");
    }
    json_boot(&p, kind, argv[2], argv[1], &r, unit);
    if (p.fc) fputs(csv_head, p.fc), csv_boot(p.fc, kind, argv[2], argv[1], &r, unit);
    free(a);
    free(b);
    paper_end(&p);
    return 0;
}

/* ---- intervals TRACE: every stored policy against the baseline ---- */
/* the rows of one kind stored in one file of p's sources */
static void interval_rows(paper_run *p, const paper_opts *o, const char *kind, hid_t file) {
    char **ids;
    int n;
    if (olmoe_replay_h5_ids(file, kind, &ids, &n) != 0) die("%s", olmoe_error());
    for (int i = 0; i < n; i++) {
        float *a = NULL;
        int64_t na = 0;
        if (olmoe_replay_h5_read_nll(file, kind, ids[i], &a, &na) != 1 || na != p->s.N) {
            free(a), free(ids[i]);
            continue;
        }
        olmoe_boot_result r;
        const char *unit;
        boot(&p->s, o, a, p->s.base, &r, &unit);
        if (!o->no_table)
            printf("%-6s %s  %.4f [%.4f, %.4f]  %+.3f %% [%+.3f, %+.3f]  %.3g\n", kind, ids[i], r.ppl_a,
                   r.ppl_a_lo, r.ppl_a_hi, 100 * r.delta, 100 * r.delta_lo, 100 * r.delta_hi, r.p_value);
        json_boot(p, kind, ids[i], "baseline", &r, unit);
        if (p->fc) csv_boot(p->fc, kind, ids[i], "baseline", &r, unit);
        free(a), free(ids[i]);
    }
    free(ids);
}

int olmoe_cmd_intervals(int argc, char **argv) {
    paper_opts o = default_opts();
    const olmoe_opt opts[] = {OPTS_SOURCES(&o), OPTS_BOOT(&o), OPTS_OUT(&o), OPT_END};
    int npos = olmoe_opt_parse(argc, argv, opts,
                               "usage: olmoe-analyze intervals TRACE [options]\n\n"
                               "Every stored replay and exact result: perplexity and its ratio to the\n"
                               "captured baseline, with 95 % paired bootstrap intervals over documents.");
    if (npos != 1) die_usage("one trace, please (olmoe-analyze intervals TRACE)");
    paper_run p;
    paper_begin(&p, &o, argv[0]);
    json_begin(&p, "intervals", argv[0], NULL, 0);
    if (p.fc) fputs(csv_head, p.fc);
    if (!o.no_table) printf("kind   policy  perplexity [95 %%]  vs baseline [95 %%]  p\n");
    for (int k = 0; k < 2; k++) {
        const char *kind = k ? "replay" : "exact";
        if (o.kind && strcmp(o.kind, kind) != 0) continue;
        for (int f = 0; f < p.s.n; f++) interval_rows(&p, &o, kind, p.s.file[f]);
    }
    paper_end(&p);
    return 0;
}

/* ---- headroom TRACE ---- */
static void find_ladder(const sources *s, const char *kind, int k_base, olmoe_headroom_in *in,
                        float **owned) {
    memset(in, 0, sizeof *in);
    for (int k = 1; k < k_base && in->n_k < OLMOE_HEADROOM_MAX_K; k++) {
        char id[64];
        snprintf(id, sizeof id, "topk(k=%d,norm=model)", k);
        float *x = find_nll(s, kind, id);
        if (!x) continue;
        owned[in->n_k] = x;
        in->ks[in->n_k] = k;
        in->nll[in->n_k++] = x;
    }
    in->base = s->base, in->k_base = k_base, in->N = s->N;
}

/* per token, the top-k* of the trace's router logits at every layer (-1
 * padded to k_base); unscored tokens keep the baseline's k */
static void write_routing(const sources *s, const olmoe_headroom *h, int k_base, const char *path,
                          int force) {
    const olmoe_trace_info *in = olmoe_trace_info_of(s->t);
    int L = in->meta.n_layers, E = in->meta.n_experts;
    int64_t N = s->N, C = 1024;
    olmoe_policy p;
    char spec[32];
    snprintf(spec, sizeof spec, "topk(k=%d)", k_base);
    olmoe_policy_model m = {L, E, in->meta.norm_topk_prob, NULL, NULL, NULL, 0};
    if (olmoe_policy_parse(spec, &p) != 0 || olmoe_policy_bind(&p, &m) != 0) die("%s", olmoe_error());
    int32_t *ex = xmalloc(xmul(xmul((size_t)N, (size_t)L * k_base), sizeof *ex)), *tok = xmalloc(xmul((size_t)N, 4));
    float *lg = xmalloc(xmul((size_t)C * L * E, sizeof *lg));
    int rank[OLMOE_POLICY_MAX_E];
    if (olmoe_trace_read_tokens(s->t, 0, N, tok) != 0) die("%s", olmoe_error());
    for (int64_t s0 = 0; s0 < N; s0 += C) {
        int64_t n = N - s0 < C ? N - s0 : C;
        if (olmoe_trace_read_router_logits(s->t, s0, n, lg) != 0) die("%s", olmoe_error());
        for (int64_t i = 0; i < n; i++) {
            int k = h->kstar[s0 + i] ? h->kstar[s0 + i] : k_base;
            for (int l = 0; l < L; l++) {
                olmoe_policy_route(&p, l, lg + ((size_t)i * L + l) * E, E, rank, NULL);
                int32_t *row = ex + ((size_t)(s0 + i) * L + l) * k_base;
                for (int j = 0; j < k_base; j++) row[j] = j < k ? rank[j] : -1;
            }
        }
    }
    olmoe_out o;
    if (olmoe_out_begin(&o, path, force) != 0) die("%s", olmoe_error());
    hid_t f = olmoe_h5_create(o.tmp);
    int64_t d3[3] = {N, L, k_base}, d1[1] = {N};
    if (f < 0 || olmoe_h5_set_attr_str(f, ".", "format", "olmoe-routing") || olmoe_h5_set_attr_i32(f, ".", "version", 1) ||
        olmoe_h5_set_attr_f64(f, ".", "eps", h->eps) ||
        olmoe_h5_set_attr_str(f, ".", "made_by", "olmoe-analyze headroom: per token the smallest k of the exact ladder within eps") ||
        olmoe_h5_write(f, "tokens", OLMOE_H5_I32, 1, d1, tok) || olmoe_h5_write(f, "experts", OLMOE_H5_I32, 3, d3, ex) ||
        olmoe_h5_close(f) != 0 || olmoe_out_commit(&o) != 0)
        die("%s", olmoe_error());
    free(ex), free(tok), free(lg);
}


/* --eps: the tolerances of a comma-separated list (at most max) into eps;
 * returns how many */
static int parse_eps(const char *list, double *eps, int max) {
    int n_eps = 0;
    for (const char *e = list; *e && n_eps < max;) {
        char buf[64];
        size_t l = strcspn(e, ",");
        snprintf(buf, sizeof buf, "%.*s", (int)(l < 63 ? l : 63), e);
        if (olmoe_parse_double(buf, &eps[n_eps]) != 0 || !(eps[n_eps] >= 0)) die_usage("--eps: '%s' is not a tolerance >= 0", buf);
        n_eps++;
        e += l + (e[l] == ',');
    }
    return n_eps;
}

/* the "results" item of the oracle h: the shares as token counts per k */
static json_t *headroom_json(const olmoe_headroom_in *in, int k_base, const olmoe_headroom *h) {
    json_t *o = json_object(), *ks = json_array(), *tokens = json_array();
    for (int j = 0; j <= in->n_k; j++) {
        json_array_append_new(ks, json_integer(j < in->n_k ? in->ks[j] : k_base));
        json_array_append_new(tokens, json_integer((json_int_t)h->count[j]));
    }
    json_object_set_new(o, "eps", olmoe_analyze_jnum(h->eps));
    json_object_set_new(o, "n_scored", json_integer((json_int_t)h->n_scored));
    json_object_set_new(o, "mean_k", olmoe_analyze_jnum(h->mean_k));
    json_object_set_new(o, "ppl_oracle", olmoe_analyze_jnum(h->ppl_oracle));
    json_object_set_new(o, "ppl_baseline", olmoe_analyze_jnum(h->ppl_base));
    json_object_set_new(o, "k", ks);
    json_object_set_new(o, "tokens", tokens);
    return o;
}

/* the oracle at one tolerance: a line on stdout, a --json item and --csv rows */
static void headroom_rows(paper_run *p, const paper_opts *o, const olmoe_headroom_in *in, int k_base,
                          double eps) {
    olmoe_headroom h;
    if (olmoe_headroom_compute(in, eps, &h) != 0) die("%s", olmoe_error());
    if (!o->no_table) {
        printf("eps %g: mean k %.3f, oracle perplexity %.4f (baseline %.4f, %+.2f %%) over %lld tokens; k:", eps,
               h.mean_k, h.ppl_oracle, h.ppl_base, 100 * (h.ppl_oracle / h.ppl_base - 1), (long long)h.n_scored);
        for (int j = 0; j <= in->n_k; j++)
            printf(" %d: %.1f %%", j < in->n_k ? in->ks[j] : k_base, 100.0 * (double)h.count[j] / (double)h.n_scored);
        printf("\n");
    }
    if (p->rows) json_array_append_new(p->rows, headroom_json(in, k_base, &h));
    for (int j = 0; p->fc && j <= in->n_k; j++)
        fprintf(p->fc, "%g,%lld,%.6f,%.6f,%.6f,%d,%lld,%.6f\n", eps, (long long)h.n_scored, h.mean_k, h.ppl_oracle,
                h.ppl_base, j < in->n_k ? in->ks[j] : k_base, (long long)h.count[j],
                (double)h.count[j] / (double)h.n_scored);
    olmoe_headroom_free(&h);
}

int olmoe_cmd_headroom(int argc, char **argv) {
    paper_opts o = default_opts();
    const olmoe_opt opts[] = {
        OPTS_SOURCES(&o),
        OPT_STRING("eps", &o.eps, "LIST", "tolerances in nats (default 0.01,0.1)"),
        OPT_STRING("write-routing", &o.write, "FILE", "write the oracle of --write-eps as a routing file"),
        OPT_DOUBLE("write-eps", &o.write_eps, "X", "the tolerance of the oracle written (default 0.01)"),
        OPTS_OUT(&o),
        OPT_END};
    int npos = olmoe_opt_parse(argc, argv, opts,
                               "usage: olmoe-analyze headroom TRACE [options]\n\n"
                               "From the stored exact top-k ladder (olmoe-replay --exact --sweep topk):\n"
                               "per token the smallest k whose NLL is within eps of the baseline's, the\n"
                               "distribution of that k, its mean and the perplexity of that oracle.");
    if (npos != 1) die_usage("one trace, please (olmoe-analyze headroom TRACE)");
    double eps[16];
    int n_eps = parse_eps(o.eps, eps, 16);
    if (!(o.write_eps >= 0)) die_usage("--write-eps must be >= 0");
    olmoe_out ow;
    if (o.write) { /* refused early; written at the end */
        if (olmoe_out_begin(&ow, o.write, o.force) != 0) die("%s", olmoe_error());
        olmoe_out_abort(&ow);
    }
    paper_run p;
    paper_begin(&p, &o, argv[0]);
    const char *ladder_kind = o.kind ? o.kind : "exact";
    int k_base = olmoe_trace_info_of(p.s.t)->meta.top_k;
    olmoe_headroom_in in;
    float *owned[OLMOE_HEADROOM_MAX_K] = {0};
    find_ladder(&p.s, ladder_kind, k_base, &in, owned);
    if (in.n_k == 0)
        die("%s: no stored %s top-k results below k=%d (run olmoe-replay %s --exact --sweep topk)", argv[0],
            ladder_kind, k_base, argv[0]);
    if (!o.no_table) {
        printf("# headroom of %s over the %s ladder k =", argv[0], ladder_kind);
        for (int j = 0; j < in.n_k; j++) printf(" %d", in.ks[j]);
        printf(" (baseline k = %d)\n", k_base);
    }
    json_begin(&p, "headroom", argv[0], ladder_kind, k_base);
    if (p.fc) fprintf(p.fc, "eps,n_scored,mean_k,ppl_oracle,ppl_baseline,k,tokens,share\n");
    for (int e = 0; e < n_eps; e++) headroom_rows(&p, &o, &in, k_base, eps[e]);
    if (o.write) {
        olmoe_headroom h;
        if (olmoe_headroom_compute(&in, o.write_eps, &h) != 0) die("%s", olmoe_error());
        write_routing(&p.s, &h, k_base, o.write, o.force);
        notef("wrote %s: the oracle of eps %g (mean k %.3f); score it with olmoe-replay %s --exact "
              "--routing-file %s", o.write, o.write_eps, h.mean_k, argv[0], o.write);
        olmoe_headroom_free(&h);
    }
    for (int j = 0; j < in.n_k; j++) free(owned[j]);
    paper_end(&p);
    return 0;
}
