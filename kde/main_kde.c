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
    if (!s || strcmp(s, "all") == 0) {
        memset(want, 1, (size_t)L);
        return;
    }
    memset(want, 0, (size_t)L);
    char *copy = xstrdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long a, b;
        char *dash = strchr(tok, '-');
        if (dash) *dash = '\0';
        if (olmoe_parse_long(tok, 0, L - 1, &a) != 0 ||
            (dash && olmoe_parse_long(dash + 1, a, L - 1, &b) != 0))
            die_usage("--layers: '%s': %s (the trace has %d layers)", s, olmoe_error(), L);
        if (!dash) b = a;
        for (long l = a; l <= b; l++) want[l] = 1;
    }
    free(copy);
}

/* ---- fit ---- */

static const char *fit_out, *fit_bw = "scott", *fit_layers, *fit_compat;
static long fit_grid = 0, fit_max_tokens = 0, fit_mem = 4096;
static int fit_force, fit_quiet, fit_per_expert;

static const olmoe_opt fit_opts[] = {
    OPT_STRING("out", &fit_out, "FILE", "null distribution to write (HDF5, required)"),
    OPT_STRING("bandwidth", &fit_bw, "RULE", "scott (default), silverman or a number (logits)"),
    OPT_LONG_RANGE("grid", &fit_grid, "N", "grid points per layer (default 2048)", 16, 1L << 24),
    OPT_STRING("layers", &fit_layers, "LIST", "layers to fit: all (default) or e.g. 0,3,8-15"),
    OPT_LONG_RANGE("max-tokens", &fit_max_tokens, "N", "use the first N tokens (default all)", 1,
                   1L << 62),
    OPT_STRING("compat", &fit_compat, "prototype", "the seed prototype's construction"),
    OPT_LONG_RANGE("mem", &fit_mem, "MIB", "memory for samples (default 4096)", 16, 1L << 30),
    OPT_FLAG("per-expert", &fit_per_expert,
             "a null per layer and expert (each expert's own logits) instead of per layer"),
    OPT_FLAG("force", &fit_force, "overwrite an existing output"),
    OPT_FLAG("quiet", &fit_quiet, "no progress or table"),
    OPT_END};

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

static int cmd_fit(int argc, char **argv) {
    char *command = olmoe_join_argv(argc + 1, argv - 1);
    int npos = olmoe_opt_parse(argc, argv, fit_opts, fit_usage);
    if (npos != 1) die_usage(npos ? "one trace, please" : "which trace? (olmoe-kde fit TRACE --out FILE)");
    if (!fit_out) die_usage("--out FILE is required");
    olmoe_quiet = fit_quiet;
    olmoe_kde_opts ko = OLMOE_KDE_OPTS_DEFAULT;
    if (strcmp(fit_bw, "scott") == 0) {
        ko.rule = OLMOE_KDE_SCOTT;
    } else if (strcmp(fit_bw, "silverman") == 0) {
        ko.rule = OLMOE_KDE_SILVERMAN;
    } else {
        ko.rule = OLMOE_KDE_FIXED;
        if (olmoe_parse_double(fit_bw, &ko.bandwidth) != 0 || !(ko.bandwidth > 0))
            die_usage("--bandwidth: '%s' is not scott, silverman or a positive number", fit_bw);
    }
    if (fit_compat) {
        if (strcmp(fit_compat, "prototype") != 0)
            die_usage("--compat: '%s' is unknown (the one choice is prototype)", fit_compat);
        ko.construction = OLMOE_KDE_PROTOTYPE;
    }
    ko.n_grid = (int)fit_grid;

    const char *path = argv[0];
    olmoe_trace *t = olmoe_trace_open(path);
    if (!t) die("%s", olmoe_error());
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    const int L = in->meta.n_layers, E = in->meta.n_experts;
    unsigned char *want = xmalloc((size_t)L);
    parse_layers(fit_layers, L, want);
    int64_t ntok = in->n_tokens;
    if (fit_max_tokens > 0 && fit_max_tokens < ntok) ntok = fit_max_tokens;
    if (ntok < 1) die("%s: the trace has no tokens", path);
    if (!in->complete) warnf("%s: the trace is incomplete (its capture did not finish)", path);

    olmoe_out out;
    if (olmoe_out_begin(&out, fit_out, fit_force) != 0) die("%s", olmoe_error());

    size_t per_layer = xmul((size_t)ntok, (size_t)E); /* values per layer sample */
    size_t budget = (size_t)fit_mem << 20;
    int group = (int)(budget / xmul(per_layer, sizeof(float)));
    if (group < 1) group = 1;
    int nwant = 0;
    for (int l = 0; l < L; l++) nwant += want[l];
    if (group > nwant) group = nwant;
    int passes = (nwant + group - 1) / group;
    char b1[32];
    notef("fitting %d layer(s) on %lld tokens x %d experts (%s per layer), %d pass(es) over the "
          "trace",
          nwant, (long long)ntok, E, olmoe_fmt_bytes((double)per_layer * 4, b1, sizeof b1), passes);

    olmoe_kde_null null;
    memset(&null, 0, sizeof null);
    null.n_layers = L;
    null.n_experts = E;
    null.max_tokens = fit_max_tokens;
    snprintf(null.construction, sizeof null.construction, "%s", fit_compat ? "prototype" : "kde");
    snprintf(null.rule, sizeof null.rule, "%s",
             ko.rule == OLMOE_KDE_SCOTT ? "scott" : (ko.rule == OLMOE_KDE_SILVERMAN ? "silverman" : "fixed"));
    snprintf(null.source, sizeof null.source, "%s", path);
    snprintf(null.model_checksum, sizeof null.model_checksum, "%s", in->meta.model_checksum);
    null.per_expert = fit_per_expert;
    null.fits = xcalloc(xmul((size_t)nwant, fit_per_expert ? (size_t)E : 1), sizeof *null.fits);
    float *column = fit_per_expert ? xmalloc(xmul((size_t)ntok, sizeof(float))) : NULL;

    const int64_t rows = 1024;
    float *chunk = xmalloc(xmul(xmul((size_t)rows, (size_t)L), (size_t)E * sizeof(float)));
    float **sample = xcalloc((size_t)group, sizeof *sample);
    int *which = xmalloc((size_t)group * sizeof *which);
    for (int g = 0; g < group; g++) sample[g] = xmalloc_big(xmul(per_layer, sizeof(float)));
    olmoe_progress prog;
    olmoe_progress_begin(&prog, "tokens", (double)ntok * passes);
    double t0 = olmoe_now(), t_read = 0;
    int next = 0;
    for (int pass = 0; pass < passes; pass++) {
        int ng = 0;
        while (ng < group && next < L) {
            if (want[next]) which[ng++] = next;
            next++;
        }
        double tr = olmoe_now();
        for (int64_t s = 0; s < ntok; s += rows) {
            int64_t n = ntok - s < rows ? ntok - s : rows;
            if (olmoe_trace_read_router_logits(t, s, n, chunk) != 0) die("%s", olmoe_error());
            for (int g = 0; g < ng; g++)
                for (int64_t r = 0; r < n; r++)
                    memcpy(sample[g] + (size_t)(s + r) * E,
                           chunk + ((size_t)r * L + (size_t)which[g]) * E, (size_t)E * sizeof(float));
            olmoe_progress_step(&prog, (double)pass * ntok + s + n);
        }
        t_read += olmoe_now() - tr;
        for (int g = 0; g < ng; g++) {
            for (int e = 0; e < (fit_per_expert ? E : 1); e++) {
                olmoe_kde_layer *fit = &null.fits[null.n_fits];
                int rc;
                if (fit_per_expert) { /* expert e's logits over the tokens */
                    for (int64_t r = 0; r < ntok; r++) column[r] = sample[g][(size_t)r * E + e];
                    rc = olmoe_kde_fit(column, (size_t)ntok, &ko, fit);
                } else {
                    rc = olmoe_kde_fit(sample[g], per_layer, &ko, fit);
                }
                if (rc != 0)
                    die("%s: layer %d%s%.0d: %s", path, which[g], fit_per_expert ? ", expert " : "",
                        fit_per_expert ? e : 0, olmoe_error());
                fit->layer = which[g];
                fit->expert = fit_per_expert ? e : -1;
                fit->n_tokens = ntok;
                null.n_fits++;
            }
        }
    }
    olmoe_progress_end(&prog);
    double el = olmoe_now() - t0;
    notef("fitted in %.2f s (%.2f s reading the trace), %.1f M values/s", el, t_read,
          (double)per_layer * nwant / el / 1e6);
    free(column);
    for (int g = 0; g < group; g++) free(sample[g]);
    free(sample);
    free(which);
    free(chunk);
    olmoe_trace_close(t);

    if (olmoe_kde_write(out.tmp, &null, command) != 0) die("%s", olmoe_error());
    if (olmoe_out_commit(&out) != 0) die("%s", olmoe_error());
    if (!fit_quiet) {
        printf("# %s: %d layer(s) from %lld tokens of %s (%s, %s bandwidth, %d grid points)\n",
               fit_out, null.n_fits, (long long)ntok, path, null.construction, null.rule,
               null.fits[0].n_grid);
        print_table(&null);
    }
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

static long pv_layer = -1, pv_expert = -1;
static double pv_floor = 1e-7;
static const olmoe_opt pvalue_opts[] = {
    OPT_LONG_RANGE("layer", &pv_layer, "L", "model layer (required)", 0, 1L << 20),
    OPT_LONG_RANGE("expert", &pv_expert, "E", "expert (required for a per-expert null)", 0, 1L << 20),
    OPT_DOUBLE("floor", &pv_floor, "X", "clamp to [X, 1 - X] (default 1e-7)"),
    OPT_END};

static int cmd_pvalue(int argc, char **argv) {
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
    int npos = olmoe_opt_parse(n, av, pvalue_opts,
                               "usage: olmoe-kde pvalue NULL.h5 --layer L X [X ...]\n\n"
                               "Prints 1 - CDF(X) of the layer's null for each logit X, as the\n"
                               "bh policy computes it (interpolated, clamped).");
    if (npos < 2) die_usage("need a null distribution file and at least one logit");
    if (pv_layer < 0) die_usage("--layer L is required");
    if (!(pv_floor > 0 && pv_floor < 0.5)) die_usage("--floor must be in (0, 0.5)");
    olmoe_kde_null null;
    if (olmoe_kde_read(av[0], &null) != 0) die("%s", olmoe_error());
    if (pv_layer >= null.n_layers || !olmoe_kde_null_layer(&null, (int)pv_layer))
        die("%s: no fit for layer %ld (fitted: %d of %d layers)", av[0], pv_layer, null.n_fits,
            null.n_layers);
    if (null.per_expert && (pv_expert < 0 || pv_expert >= null.n_experts))
        die_usage("%s is a per-expert null: --expert 0..%d, please", av[0], null.n_experts - 1);
    if (!null.per_expert && pv_expert >= 0) die_usage("--expert: %s is one null per layer", av[0]);
    olmoe_kde_cdf cdf;
    if (olmoe_kde_cdf_init(&cdf, &null, null.n_layers) != 0) die("%s: %s", av[0], olmoe_error());
    for (int i = 1; i < npos; i++) {
        double x;
        if (olmoe_parse_double(av[i], &x) != 0) die_usage("'%s' is not a number", av[i]);
        printf("%.9g\n", (double)olmoe_kde_cdf_pvalue_expert(&cdf, (int)pv_layer,
                                                             pv_expert < 0 ? 0 : (int)pv_expert,
                                                             (float)x, (float)pv_floor));
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
