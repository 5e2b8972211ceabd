/* main_kde_check.c: olmoe-kde check NULL TRACE, the goodness of fit of a null on a
 * held-out trace (kde_check.h): a table per layer, CSV, and a gnuplot figure
 * (QQ of the non-selected experts' p-values against uniform, and BH
 * discoveries per token against alpha). */
#include "main_kde.h"

#include "common.h"
#include "kde.h"
#include "kde_check.h"
#include "traces.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* check's command line */
typedef struct {
    long top_k, start, max;
    const char *csv, *png;
    int force, quiet;
} check_opts;

enum { CHECK_OPTS = 8 }; /* entries of check's option table, OPT_END included */

static void check_option_table(check_opts *o, olmoe_opt *opts) {
    const olmoe_opt own[CHECK_OPTS] = {
        OPT_LONG_RANGE("top-k", &o->top_k, "K", "experts counted as selected (default: the trace's top-k)", 1, 256),
        OPT_LONG_RANGE("start", &o->start, "N", "first token checked (default 0)", 0, 1L << 62),
        OPT_LONG_RANGE("max-tokens", &o->max, "N", "check at most N tokens (default: to the end)", 1, 1L << 62),
        OPT_STRING("csv", &o->csv, "FILE", "QQ points, tail shares and discoveries as CSV (-: stdout, no table)"),
        OPT_STRING("png", &o->png, "FILE", "draw the QQ plot and the discoveries curve (gnuplot)"),
        OPT_FLAG("force", &o->force, "overwrite existing outputs"),
        OPT_FLAG("quiet", &o->quiet, "no notes or progress on stderr"),
        OPT_END};
    memcpy(opts, own, sizeof own);
}

static void write_csv(FILE *f, const olmoe_kde_check *c) {
    fprintf(f, "what,layer,x,y\n");
    for (int l = 0; l < c->n_layers; l++) {
        if (!c->n[l]) continue;
        fprintf(f, "ks,%d,,%.6g\n", l, c->ks[l]);
        static const double cut[3] = {0.01, 0.05, 0.1};
        for (int j = 0; j < 3; j++) fprintf(f, "below,%d,%g,%.6g\n", l, cut[j], c->share_below[l * 3 + j]);
        for (int q = 0; q < OLMOE_KDE_CHECK_Q; q++) fprintf(f, "qq,%d,%g,%.6g\n", l, (q + 1) / 100.0, c->qq[l * OLMOE_KDE_CHECK_Q + q]);
        for (int a = 0; a < OLMOE_KDE_CHECK_ALPHAS; a++)
            fprintf(f, "discoveries,%d,%g,%.6g\n", l, olmoe_kde_check_alpha[a], c->disc[l * OLMOE_KDE_CHECK_ALPHAS + a]);
    }
}

/* two panels from the CSV: QQ (one line per layer) and discoveries vs alpha */
static int draw(const char *csv, const char *png, const olmoe_kde_check *c, const char *trace) {
    FILE *g = popen("gnuplot 2>&1", "w");
    if (!g) return olmoe_errorf("cannot run gnuplot");
    fprintf(g, "set terminal pngcairo size 1200,520 noenhanced\nset output '%s'\nset datafile separator ','\n"
               "set multiplot layout 1,2 title 'null check on %s: non-selected experts (top-%d) p-values'\n"
               "set key right bottom\nset grid\nset xlabel 'uniform quantile'\nset ylabel 'observed p-value quantile'\n"
               "set title 'QQ against Uniform(0,1)'\n",
            png, trace, c->top_k);
    fprintf(g, "plot [0:1][0:1] x title 'uniform' lw 2 lc rgb 'black'");
    for (int l = 0; l < c->n_layers; l++)
        if (c->n[l])
            fprintf(g, ", '%s' using (strcol(1) eq 'qq' && $2 == %d ? $3 : 1/0):4 with lines lw 2 title 'layer %d (KS %.3f)'",
                    csv, l, l, c->ks[l]);
    fprintf(g, "\nset title 'BH discoveries per token-layer'\nset logscale x\nset xlabel 'alpha'\n"
               "set ylabel 'experts selected (all E, no max_k)'\nset key left top\nplot ");
    for (int l = 0, first = 1; l < c->n_layers; l++)
        if (c->n[l])
            fprintf(g, "%s'%s' using (strcol(1) eq 'discoveries' && $2 == %d ? $3 : 1/0):4 with linespoints lw 2 title 'layer %d'",
                    first ? "" : ", ", csv, l, l), first = 0;
    fprintf(g, "\nunset multiplot\n");
    return pclose(g) == 0 ? 0 : olmoe_errorf("gnuplot failed drawing %s", png);
}

int olmoe_kde_cmd_check(int argc, char **argv) {
    check_opts o = {0};
    olmoe_opt opts[CHECK_OPTS];
    check_option_table(&o, opts);
    int npos = olmoe_opt_parse(argc, argv, opts,
                               "usage: olmoe-kde check NULL.h5 TRACE [options]\n\n"
                               "Goodness of fit of a null on a (held-out) trace: per layer, the p-values\n"
                               "of the experts its top-k does not select against Uniform(0,1) (KS\n"
                               "distance, QQ, tail shares), and BH discoveries per token against alpha.");
    if (npos != 2) die_usage("a null distribution and a trace, please (olmoe-kde check NULL.h5 TRACE)");
    if (o.png && (!o.csv || olmoe_out_is_stdout(o.csv)))
        die_usage("--png draws from the CSV: give --csv FILE too");
    olmoe_set_quiet(o.quiet);
    int table = !olmoe_out_is_stdout(o.csv); /* --csv -: the CSV alone on stdout */
    olmoe_out oc, op;
    FILE *fc = NULL;
    if (o.csv) {
        if (olmoe_out_begin_text(&oc, o.csv, o.force) != 0) die("%s", olmoe_error());
        if (!(fc = fopen(oc.tmp, "w"))) die("%s: cannot write", oc.tmp);
    }
    if (o.png && olmoe_out_begin(&op, o.png, o.force) != 0) die("%s", olmoe_error());
    olmoe_kde_null null;
    if (olmoe_kde_read(argv[0], &null) != 0) die("%s", olmoe_error());
    olmoe_trace *t = olmoe_trace_open(argv[1]);
    if (!t) die("%s", olmoe_error());
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    /* as olmoe-replay --kde: a null of another depth is another model's */
    if (olmoe_kde_null_check_depth(&null, argv[0], argv[1], in->meta.n_layers) != 0) die("%s", olmoe_error());
    olmoe_kde_cdf cdf;
    if (olmoe_kde_cdf_init(&cdf, &null, in->meta.n_layers) != 0) die("%s: %s", argv[0], olmoe_error());
    olmoe_kde_check c;
    int K = o.top_k ? (int)o.top_k : in->meta.top_k;
    if (olmoe_kde_check_run(&cdf, t, K, o.start, o.max, &c) != 0) die("%s: %s", argv[1], olmoe_error());
    if (table) {
        printf("# %s on %s, tokens [%lld, %lld): p-values of the %d non-selected experts (top-%d selected)\n",
               argv[0], argv[1], (long long)c.first, (long long)(c.first + c.n_tokens), c.n_experts - K, K);
        printf("%5s %10s %8s %8s %8s %8s  BH discoveries per token at alpha 0.01 0.05 0.1 0.2\n", "layer", "n", "KS",
               "<0.01", "<0.05", "<0.1");
        for (int l = 0; l < c.n_layers; l++)
            if (c.n[l]) {
                const double *d = c.disc + (size_t)l * OLMOE_KDE_CHECK_ALPHAS;
                printf("%5d %10lld %8.4f %8.4f %8.4f %8.4f  %.3f %.3f %.3f %.3f\n", l, (long long)c.n[l], c.ks[l],
                       c.share_below[l * 3], c.share_below[l * 3 + 1], c.share_below[l * 3 + 2], d[3], d[5], d[6], d[7]);
            }
    }
    if (fc) {
        write_csv(fc, &c);
        if (olmoe_fclose_out(fc, o.csv) != 0) die("%s", olmoe_error());
        if (olmoe_out_commit(&oc) != 0) die("%s", olmoe_error());
    }
    if (o.png) {
        if (draw(o.csv, op.tmp, &c, argv[1]) != 0 || olmoe_out_commit(&op) != 0) die("%s", olmoe_error());
    }
    olmoe_kde_check_free(&c);
    olmoe_kde_cdf_free(&cdf);
    olmoe_kde_null_free(&null);
    olmoe_trace_close(t);
    return 0;
}
