/* main_kde.c: olmoe-kde fit|show|pvalue, per-layer null distributions of
 * router logits (docs/DESIGN.md §7; file layout in man/olmoe-kde.1).
 *
 * fit reads the trace's router logits once (in row chunks), keeping the
 * sample of as many layers at a time as --mem allows, fits each layer and
 * writes null.h5 through a .partial name. */
#include "main_kde.h"
#include "common.h"
#include "kde.h"
#include "traces.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: olmoe-kde <command> [options]\n"
    "\n"
    "Null distributions of router logits, one per layer (Gaussian KDE).";

/* "all" or a list of layers and ranges ("0,3,8-15") into want[0..L) */
static void parse_layers(const char *s, int L, unsigned char *want) {
    if (olmoe_parse_index_list(s, L, want) != 0)
        die_usage("--layers '%s': %s (the trace has %d layers)", s, olmoe_error(), L);
}

/* ---- fit ---- */

/* fit's command line */
typedef struct {
    const char *out, *bw, *layers, *compat;
    long grid, max_tokens, mem;
    int force, quiet, per_expert;
} fit_opts;

enum { FIT_OPTS = 11 }; /* entries of fit's option table, OPT_END included */

static void fit_option_table(fit_opts *o, olmoe_opt *opts) {
    const olmoe_opt own[FIT_OPTS] = {
        OPT_STRING("out", &o->out, "FILE", "null distribution to write (HDF5, required)"),
        OPT_STRING("bandwidth", &o->bw, "RULE", "scott (default), silverman or a number (logits)"),
        OPT_LONG_RANGE("grid", &o->grid, "N", "grid points per layer (default 2048)", 16, 1L << 24),
        OPT_STRING("layers", &o->layers, "LIST", "layers to fit: all (default) or e.g. 0,3,8-15"),
        OPT_LONG_RANGE("max-tokens", &o->max_tokens, "N", "use the first N tokens (default all)", 1,
                       1L << 62),
        OPT_STRING("compat", &o->compat, "prototype", "the seed prototype's construction"),
        OPT_LONG_RANGE("mem", &o->mem, "MIB", "memory for samples (default 4096)", 16, 1L << 30),
        OPT_FLAG("per-expert", &o->per_expert,
                 "a null per layer and expert (each expert's own logits) instead of per layer"),
        OPT_FLAG("force", &o->force, "overwrite an existing output"),
        OPT_FLAG("quiet", &o->quiet, "no notes or progress on stderr"),
        OPT_END};
    memcpy(opts, own, sizeof own);
}

static const char fit_usage[] =
    "usage: olmoe-kde fit TRACE --out FILE [options]\n"
    "\n"
    "Fits, per layer, a Gaussian KDE to all router logits of that layer (all tokens\n"
    "x experts; with --per-expert, per layer and expert: that expert's logits over\n"
    "all tokens) and writes grid, pdf, cdf and summaries to FILE.";

static void print_table(const olmoe_kde_null *null) {
    printf("%5s %6s %10s %9s %9s %9s %9s %9s %9s %9s %9s\n", "layer", "expert", "n", "tokens",
           "bandwidth", "mean", "sd", "q0.01", "q0.5", "q0.99", "KS");
    for (int i = 0; i < null->n_fits; i++) {
        const olmoe_kde_layer *l = &null->fits[i];
        char ex[16] = "all";
        if (l->expert >= 0) snprintf(ex, sizeof ex, "%d", l->expert);
        printf("%5d %6s %10lld %9lld %9.4g %9.4g %9.4g %9.4g %9.4g %9.4g %9.2e\n", l->layer, ex,
               (long long)l->n, (long long)l->n_tokens, l->bandwidth, l->mean, l->sd,
               l->quantiles[1], l->quantiles[4], l->quantiles[7], l->ks);
    }
}

/* the KDE --bandwidth, --compat and --grid ask for (dies on a bad one) */
static olmoe_kde_opts kde_opts_of(const fit_opts *o) {
    olmoe_kde_opts ko = OLMOE_KDE_OPTS_DEFAULT;
    if (strcmp(o->bw, "scott") == 0) {
        ko.rule = OLMOE_KDE_SCOTT;
    } else if (strcmp(o->bw, "silverman") == 0) {
        ko.rule = OLMOE_KDE_SILVERMAN;
    } else {
        ko.rule = OLMOE_KDE_FIXED;
        if (olmoe_parse_double(o->bw, &ko.bandwidth) != 0 || !(ko.bandwidth > 0))
            die_usage("--bandwidth: '%s' is not scott, silverman or a positive number", o->bw);
    }
    if (o->compat) {
        if (strcmp(o->compat, "prototype") != 0)
            die_usage("--compat: '%s' is unknown (the one choice is prototype)", o->compat);
        ko.construction = OLMOE_KDE_PROTOTYPE;
    }
    ko.n_grid = (int)o->grid;
    return ko;
}

/* one fit: the trace, what is fitted, and how many layers a pass over the
 * trace samples */
typedef struct {
    olmoe_trace *t;
    const char *path;
    olmoe_kde_opts ko;
    const unsigned char *want; /* [L] layers to fit */
    int L, E, per_expert;
    int64_t ntok;
    size_t per_layer; /* values per layer sample: ntok x E */
    int nwant, group, passes;
} fit_run;

/* as many layers per pass as --mem holds (at least one), and says so */
static void plan_passes(fit_run *r, long mem_mib) {
    size_t budget = (size_t)mem_mib << 20;
    int group = (int)(budget / xmul(r->per_layer, sizeof(float)));
    if (group < 1) group = 1;
    r->nwant = 0;
    for (int l = 0; l < r->L; l++) r->nwant += r->want[l];
    if (group > r->nwant) group = r->nwant;
    r->group = group;
    r->passes = (r->nwant + group - 1) / group;
    char b1[32];
    notef("fitting %d layer(s) on %lld tokens x %d experts (%s per layer), %d pass(es) over the "
          "trace",
          r->nwant, (long long)r->ntok, r->E,
          olmoe_fmt_bytes((double)r->per_layer * 4, b1, sizeof b1), r->passes);
}

/* the null's provenance, and room for its fits */
static void null_begin(olmoe_kde_null *null, const fit_run *r, const fit_opts *o,
                       const olmoe_trace_info *in) {
    memset(null, 0, sizeof *null);
    null->n_layers = r->L;
    null->n_experts = r->E;
    null->max_tokens = o->max_tokens;
    snprintf(null->construction, sizeof null->construction, "%s", o->compat ? "prototype" : "kde");
    snprintf(null->rule, sizeof null->rule, "%s",
             r->ko.rule == OLMOE_KDE_SCOTT ? "scott"
                                           : (r->ko.rule == OLMOE_KDE_SILVERMAN ? "silverman" : "fixed"));
    snprintf(null->source, sizeof null->source, "%s", r->path);
    snprintf(null->model_checksum, sizeof null->model_checksum, "%s", in->meta.model_checksum);
    null->per_expert = r->per_expert;
    null->fits = xcalloc(xmul((size_t)r->nwant, r->per_expert ? (size_t)r->E : 1), sizeof *null->fits);
}

/* one pass over the trace: the logits of layers which[0..ng) into sample[g] */
static void read_samples(const fit_run *r, const int *which, int ng, float **sample, float *chunk,
                         int64_t rows, olmoe_progress *prog, int pass) {
    const int L = r->L, E = r->E;
    for (int64_t s = 0; s < r->ntok; s += rows) {
        int64_t n = r->ntok - s < rows ? r->ntok - s : rows;
        if (olmoe_trace_read_router_logits(r->t, s, n, chunk) != 0) die("%s", olmoe_error());
        for (int g = 0; g < ng; g++)
            for (int64_t i = 0; i < n; i++)
                memcpy(sample[g] + (size_t)(s + i) * E, chunk + ((size_t)i * L + (size_t)which[g]) * E,
                       (size_t)E * sizeof(float));
        olmoe_progress_step(prog, (double)pass * r->ntok + s + n);
    }
}

/* fits the sampled layers (per expert: each expert's column) into null */
static void fit_samples(const fit_run *r, const int *which, int ng, float **sample, float *column,
                        olmoe_kde_null *null) {
    const int E = r->E;
    for (int g = 0; g < ng; g++) {
        for (int e = 0; e < (r->per_expert ? E : 1); e++) {
            olmoe_kde_layer *fit = &null->fits[null->n_fits];
            int rc;
            if (r->per_expert) { /* expert e's logits over the tokens */
                for (int64_t i = 0; i < r->ntok; i++) column[i] = sample[g][(size_t)i * E + e];
                rc = olmoe_kde_fit(column, (size_t)r->ntok, &r->ko, fit);
            } else {
                rc = olmoe_kde_fit(sample[g], r->per_layer, &r->ko, fit);
            }
            if (rc != 0)
                die("%s: layer %d%s%.0d: %s", r->path, which[g], r->per_expert ? ", expert " : "",
                    r->per_expert ? e : 0, olmoe_error());
            fit->layer = which[g];
            fit->expert = r->per_expert ? e : -1;
            fit->n_tokens = r->ntok;
            null->n_fits++;
        }
    }
}

/* every wanted layer, group layers per pass over the trace */
static void fit_layers(const fit_run *r, olmoe_kde_null *null) {
    const int64_t rows = 1024;
    float *column = r->per_expert ? xmalloc(xmul((size_t)r->ntok, sizeof(float))) : NULL;
    float *chunk = xmalloc(xmul(xmul((size_t)rows, (size_t)r->L), (size_t)r->E * sizeof(float)));
    float **sample = xcalloc((size_t)r->group, sizeof *sample);
    int *which = xmalloc((size_t)r->group * sizeof *which);
    for (int g = 0; g < r->group; g++) sample[g] = xmalloc_big(xmul(r->per_layer, sizeof(float)));
    olmoe_progress prog;
    olmoe_progress_begin(&prog, "tokens", (double)r->ntok * r->passes);
    double t0 = olmoe_now(), t_read = 0;
    int next = 0;
    for (int pass = 0; pass < r->passes; pass++) {
        int ng = 0;
        while (ng < r->group && next < r->L) {
            if (r->want[next]) which[ng++] = next;
            next++;
        }
        double tr = olmoe_now();
        read_samples(r, which, ng, sample, chunk, rows, &prog, pass);
        t_read += olmoe_now() - tr;
        fit_samples(r, which, ng, sample, column, null);
    }
    olmoe_progress_end(&prog);
    double el = olmoe_now() - t0;
    notef("fitted in %.2f s (%.2f s reading the trace), %.1f M values/s", el, t_read,
          (double)r->per_layer * r->nwant / el / 1e6);
    free(column);
    for (int g = 0; g < r->group; g++) free(sample[g]);
    free(sample);
    free(which);
    free(chunk);
}

static int cmd_fit(int argc, char **argv) {
    char *command = olmoe_join_argv(argc + 1, argv - 1);
    fit_opts o = {.bw = "scott", .mem = 4096};
    olmoe_opt opts[FIT_OPTS];
    fit_option_table(&o, opts);
    int npos = olmoe_opt_parse(argc, argv, opts, fit_usage);
    if (npos != 1) die_usage(npos ? "one trace, please" : "which trace? (olmoe-kde fit TRACE --out FILE)");
    if (!o.out) die_usage("--out FILE is required");
    olmoe_set_quiet(o.quiet);
    fit_run r = {.path = argv[0], .ko = kde_opts_of(&o), .per_expert = o.per_expert};

    r.t = olmoe_trace_open(r.path);
    if (!r.t) die("%s", olmoe_error());
    const olmoe_trace_info *in = olmoe_trace_info_of(r.t);
    r.L = in->meta.n_layers;
    r.E = in->meta.n_experts;
    unsigned char *want = xmalloc((size_t)r.L);
    parse_layers(o.layers, r.L, want);
    r.want = want;
    r.ntok = in->n_tokens;
    if (o.max_tokens > 0 && o.max_tokens < r.ntok) r.ntok = o.max_tokens;
    if (r.ntok < 1) die("%s: the trace has no tokens", r.path);
    if (!in->complete) warnf("%s: the trace is incomplete (its capture did not finish)", r.path);

    olmoe_out out;
    if (olmoe_out_begin(&out, o.out, o.force) != 0) die("%s", olmoe_error());
    r.per_layer = xmul((size_t)r.ntok, (size_t)r.E);
    plan_passes(&r, o.mem);
    olmoe_kde_null null;
    null_begin(&null, &r, &o, in);
    fit_layers(&r, &null);
    olmoe_trace_close(r.t);

    if (olmoe_kde_write(out.tmp, &null, command) != 0) die("%s", olmoe_error());
    if (olmoe_out_commit(&out) != 0) die("%s", olmoe_error());
    printf("# %s: %d layer(s) from %lld tokens of %s (%s, %s bandwidth, %d grid points)\n", o.out,
           null.n_fits, (long long)r.ntok, r.path, null.construction, null.rule, null.fits[0].n_grid);
    print_table(&null);
    olmoe_kde_null_free(&null);
    free(want);
    free(command);
    if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");
    return 0;
}

/* ---- show ---- */

static const olmoe_opt show_opts[] = {OPT_END};

static int cmd_show(int argc, char **argv) {
    int npos = olmoe_opt_parse(argc, argv, show_opts,
                               "usage: olmoe-kde show NULL.h5\n\nPrints a null distribution's "
                               "provenance and a table of its layers.");
    if (npos != 1) die_usage("one null distribution file, please");
    olmoe_kde_null null;
    if (olmoe_kde_read(argv[0], &null) != 0) die("%s", olmoe_error());
    int64_t tokens = null.fits[0].n_tokens;
    printf("# %s: %s construction, %s bandwidth, %d grid points, %d of %d layers\n", argv[0],
           null.construction, null.rule, null.fits[0].n_grid, null.n_fits, null.n_layers);
    printf("# from %s, %lld tokens x %d experts per layer%s\n", null.source, (long long)tokens,
           null.n_experts, null.max_tokens ? " (--max-tokens)" : "");
    print_table(&null);
    olmoe_kde_null_free(&null);
    if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");
    return 0;
}

/* ---- pvalue ---- */

/* pvalue's command line */
typedef struct {
    long layer, expert;
    double floor;
} pvalue_opts;

enum { PVALUE_OPTS = 4 }; /* entries of pvalue's option table, OPT_END included */

static void pvalue_option_table(pvalue_opts *o, olmoe_opt *opts) {
    const olmoe_opt own[PVALUE_OPTS] = {
        OPT_LONG_RANGE("layer", &o->layer, "L", "model layer (required)", 0, 1L << 20),
        OPT_LONG_RANGE("expert", &o->expert, "E", "expert (required for a per-expert null)", 0, 1L << 20),
        OPT_DOUBLE("floor", &o->floor, "X", "clamp to [X, 1 - X] (default 1e-7)"),
        OPT_END};
    memcpy(opts, own, sizeof own);
}

static int cmd_pvalue(int argc, char **argv) {
    pvalue_opts o = {.layer = -1, .expert = -1, .floor = 1e-7};
    olmoe_opt opts[PVALUE_OPTS];
    pvalue_option_table(&o, opts);
    /* negative logits are values, not options: a leading space makes them
     * positionals for the option parser (the number parsers skip it) */
    char **av = xmalloc(((size_t)argc + 1) * sizeof *av);
    char **owned = xcalloc((size_t)argc + 1, sizeof *owned); /* av permutes: free from here */
    int n = argc;
    double dummy;
    for (int i = 0; i < argc; i++) {
        av[i] = argv[i];
        if (i > 0 && argv[i][0] == '-' && argv[i][1] && olmoe_parse_double(argv[i], &dummy) == 0) {
            size_t len = strlen(argv[i]);
            av[i] = owned[i] = xmalloc(len + 2);
            av[i][0] = ' ';
            memcpy(av[i] + 1, argv[i], len + 1);
        }
    }
    av[n] = NULL;
    int npos = olmoe_opt_parse(n, av, opts,
                               "usage: olmoe-kde pvalue NULL.h5 --layer L X [X ...]\n\n"
                               "Prints 1 - CDF(X) of the layer's null for each logit X, as the\n"
                               "bh policy computes it (interpolated, clamped).");
    if (npos < 2) die_usage("need a null distribution file and at least one logit");
    if (o.layer < 0) die_usage("--layer L is required");
    if (!(o.floor > 0 && o.floor < 0.5)) die_usage("--floor must be in (0, 0.5)");
    olmoe_kde_null null;
    if (olmoe_kde_read(av[0], &null) != 0) die("%s", olmoe_error());
    if (o.layer >= null.n_layers || !olmoe_kde_null_layer(&null, (int)o.layer))
        die("%s: no fit for layer %ld (fitted: %d of %d layers)", av[0], o.layer, null.n_fits,
            null.n_layers);
    if (null.per_expert && (o.expert < 0 || o.expert >= null.n_experts))
        die_usage("%s is a per-expert null: --expert 0..%d, please", av[0], null.n_experts - 1);
    if (!null.per_expert && o.expert >= 0) die_usage("--expert: %s is one null per layer", av[0]);
    olmoe_kde_cdf cdf;
    if (olmoe_kde_cdf_init(&cdf, &null, null.n_layers) != 0) die("%s: %s", av[0], olmoe_error());
    for (int i = 1; i < npos; i++) {
        double x;
        if (olmoe_parse_double(av[i], &x) != 0) die_usage("'%s' is not a number", av[i]);
        printf("%.9g\n", (double)olmoe_kde_cdf_pvalue_expert(&cdf, (int)o.layer,
                                                             o.expert < 0 ? 0 : (int)o.expert,
                                                             (float)x, (float)o.floor));
    }
    olmoe_kde_cdf_free(&cdf);
    olmoe_kde_null_free(&null);
    for (int i = 0; i < argc; i++) free(owned[i]);
    free(owned);
    free(av);
    if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");
    return 0;
}

static const olmoe_subcmd cmds[] = {
    {"fit", cmd_fit, "fit per-layer null distributions to a trace's router logits"},
    {"show", cmd_show, "print a null distribution's summary table"},
    {"pvalue", cmd_pvalue, "p-value of logits under a layer's null"},
    {"check", olmoe_kde_cmd_check, "goodness of fit of a null on a held-out trace (QQ, KS, BH discoveries)"},
    {NULL, NULL, NULL}};

int main(int argc, char **argv) {
    olmoe_set_prog(argv[0]);
    olmoe_save_argv(argc, argv);
    /* HDF5 1.10 crashes in its exit-time cleanup after an H5Fclose that failed
     * (full disk: "File too large"); every file we open is closed explicitly,
     * so its at-exit handler has nothing to do. Must precede any HDF5 call. */
    H5dont_atexit();
    return olmoe_subcmd_run(argc, argv, cmds, usage);
}
