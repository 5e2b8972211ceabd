/* fig_null.c: the null distributions of --kde, one panel per fitted layer:
 * the KDE density over a histogram of the logits it was fitted on, the KDE
 * CDF against the empirical CDF (KS distance in each panel's title), and the
 * upper tail 1 - CDF on a log scale, where BH's small p-values come from.
 * The logits are streamed from the trace in chunks; the empirical CDF is
 * exact at the null's grid points (counts of logits per grid cell). */
#include "report_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NBINS 80
#define CHUNK 2048

/* the trace whose logits the null came from: the provenance trace when it is
 * of the same model, else the null's source when that opens */
static olmoe_trace *logits_trace(const olmoe_report_data *d, int *own) {
    *own = 0;
    if (d->trace) {
        const char *sum = olmoe_trace_info_of(d->trace)->meta.model_checksum;
        if (!*d->null.model_checksum || !strcmp(sum, d->null.model_checksum)) return d->trace;
    }
    if (*d->null.source && olmoe_file_exists(d->null.source)) {
        olmoe_trace *t = olmoe_trace_open(d->null.source);
        if (t && olmoe_trace_info_of(t)->meta.n_layers == d->null.n_layers &&
            olmoe_trace_info_of(t)->meta.n_experts == d->null.n_experts) {
            *own = 1;
            return t;
        }
        olmoe_trace_close(t);
    }
    return NULL;
}

typedef struct {
    int64_t *hist; /* [F, NBINS] */
    int64_t *cell; /* [F, G] logits in [grid[i], grid[i+1]) (the last cell: >= grid[G-1]) */
    int64_t *below; /* [F] logits below grid[0] */
    int64_t n;     /* logits per layer */
} null_counts;

static int count_logits(olmoe_trace *t, const olmoe_kde_null *nl, null_counts *c) {
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    const int L = in->meta.n_layers, E = in->meta.n_experts, F = nl->n_fits;
    int64_t N = in->n_tokens;
    for (int f = 0; f < F; f++) /* the tokens the null was fitted on */
        if (nl->fits[f].n_tokens > 0 && nl->fits[f].n_tokens < N) N = nl->fits[f].n_tokens;
    int G = nl->fits[0].n_grid;
    c->hist = xcalloc(xmul((size_t)F, NBINS), sizeof *c->hist);
    c->cell = xcalloc(xmul((size_t)F, (size_t)G), sizeof *c->cell);
    c->below = xcalloc((size_t)F, sizeof *c->below);
    c->n = N * E;
    float *buf = xmalloc(xmul((size_t)CHUNK * L, (size_t)E * sizeof *buf));
    int rc = 0;
    for (int64_t s = 0; s < N && rc == 0; s += CHUNK) {
        int64_t m = N - s < CHUNK ? N - s : CHUNK;
        if (olmoe_trace_read_router_logits(t, s, m, buf) != 0) {
            rc = -1;
            break;
        }
        for (int f = 0; f < F; f++) {
            const olmoe_kde_layer *fl = &nl->fits[f];
            double lo = fl->min, w = (fl->max - fl->min) / NBINS;
            double g0 = fl->grid[0], dx = (fl->grid[fl->n_grid - 1] - g0) / (fl->n_grid - 1);
            int64_t *h = c->hist + (size_t)f * NBINS, *cl = c->cell + (size_t)f * G;
            for (int64_t r = 0; r < m; r++) {
                const float *x = buf + ((size_t)r * L + fl->layer) * E;
                for (int e = 0; e < E; e++) {
                    double v = x[e];
                    if (!isfinite(v)) continue;
                    int b = w > 0 ? (int)floor((v - lo) / w) : 0;
                    h[b < 0 ? 0 : b >= NBINS ? NBINS - 1 : b]++;
                    double ci = floor((v - g0) / dx);
                    if (ci < 0) c->below[f]++;
                    else cl[ci >= G - 1 ? G - 1 : (int)ci]++;
                }
            }
        }
    }
    free(buf);
    return rc;
}

static void fmt_count(double n, char *buf, size_t len) {
    if (n >= 1e6) snprintf(buf, len, "%.2fM", n / 1e6);
    else if (n >= 1e3) snprintf(buf, len, "%.1fk", n / 1e3);
    else snprintf(buf, len, "%.0f", n);
}

/* the KDE of each layer on its grid, every step-th point and always the last */
static int write_kde(rep_out *o, const olmoe_kde_null *nl, int step) {
    const int F = nl->n_fits, G = nl->fits[0].n_grid;
    FILE *f = rep_file(o, "null_kde.dat");
    if (!f) return -1;
    fprintf(f, "# null: the KDE of each fitted layer on its grid (every %d-th point), one block per "
               "layer (gnuplot: index N)\n# logit pdf cdf upper_tail(1-cdf)\n", step);
    for (int k = 0; k < F; k++) {
        const olmoe_kde_layer *fl = &nl->fits[k];
        rep_block(f, k, "layer %d", fl->layer);
        for (int i = 0; i < G; i += step) {
            fprintf(f, "%.8g %.8g %.8g %.8g\n", fl->grid[i], fl->pdf[i], fl->cdf[i], 1 - fl->cdf[i]);
            if (i + step >= G && i != G - 1) i = G - 1 - step; /* always end on the last point */
        }
    }
    return rep_close(f, "null_kde.dat");
}

/* the histogram of each layer's logits, as a density and as counts */
static int write_hist(rep_out *o, const olmoe_kde_null *nl, const null_counts *c) {
    FILE *f = rep_file(o, "null_hist.dat");
    if (!f) return -1;
    fprintf(f, "# null: histogram of the router logits (%d bins over the sample's range), one "
               "block per layer\n# bin_center density count\n", NBINS);
    for (int k = 0; k < nl->n_fits; k++) {
        const olmoe_kde_layer *fl = &nl->fits[k];
        double w = (fl->max - fl->min) / NBINS;
        rep_block(f, k, "layer %d", fl->layer);
        for (int b = 0; b < NBINS; b++) {
            int64_t cnt = c->hist[(size_t)k * NBINS + b];
            fprintf(f, "%.8g %.8g %lld\n", fl->min + (b + 0.5) * w,
                    c->n > 0 && w > 0 ? (double)cnt / ((double)c->n * w) : 0.0, (long long)cnt);
        }
    }
    return rep_close(f, "null_hist.dat");
}

/* the empirical CDF of each layer's logits at the KDE's grid points (those of write_kde) */
static int write_ecdf(rep_out *o, const olmoe_kde_null *nl, const null_counts *c, int step) {
    const int G = nl->fits[0].n_grid;
    FILE *f = rep_file(o, "null_ecdf.dat");
    if (!f) return -1;
    fprintf(f, "# null: empirical CDF of the logits at the KDE grid points (share of logits below "
               "each), one block per layer\n# logit ecdf upper_tail(1-ecdf)\n");
    for (int k = 0; k < nl->n_fits; k++) {
        const olmoe_kde_layer *fl = &nl->fits[k];
        const int64_t *cl = c->cell + (size_t)k * G;
        rep_block(f, k, "layer %d", fl->layer);
        int64_t cum = c->below[k];
        for (int i = 0; i < G; i++) {
            if (i % step == 0 || i == G - 1) {
                double e = c->n > 0 ? (double)cum / (double)c->n : NAN;
                fprintf(f, "%.8g %.8g ", fl->grid[i], e);
                rep_put_num(f, 1 - e > 0 ? 1 - e : NAN);
                fputc('\n', f);
            }
            cum += cl[i];
        }
    }
    return rep_close(f, "null_ecdf.dat");
}

/* the three figures: density, CDF, upper tail */
enum { NULL_PDF, NULL_CDF, NULL_TAIL };

static void null_title(const olmoe_kde_null *nl, int fig, int logits, char *title, size_t n) {
    char tok[32];
    fmt_count((double)nl->fits[0].n_tokens, tok, sizeof tok);
    if (fig == NULL_PDF)
        snprintf(title, n, "Null distributions of router logits: KDE (%s bandwidth) over %s", nl->rule,
                 logits ? "the logits' histogram" : "(logits not at hand)");
    else if (fig == NULL_CDF)
        snprintf(title, n, "Null CDFs: KDE against the empirical CDF of the logits (%s tokens)", tok);
    else
        snprintf(title, n, "Null upper tails: 1 − CDF, where BH's p-values come from (log scale)");
}

/* the range where the data of layer fl are: the tails of the grid are 4
 * bandwidths of nothing; the upper tail from the median */
static void null_xrange(FILE *gp, const olmoe_kde_layer *fl, int fig) {
    double lo = fl->quantiles[0] - 0.5 * (fl->quantiles[8] - fl->quantiles[0]);
    double hi = fl->quantiles[8] + 0.5 * (fl->quantiles[8] - fl->quantiles[0]);
    if (lo < fl->grid[0]) lo = fl->grid[0];
    if (hi > fl->grid[fl->n_grid - 1]) hi = fl->grid[fl->n_grid - 1];
    if (fig == NULL_TAIL) lo = fl->quantiles[4];
    fprintf(gp, "set xrange [%.6g:%.6g]\n", lo, hi);
}

/* panel k of figure fig: layer k's KDE, over its logits when they are at hand */
static void null_panel(FILE *gp, const olmoe_kde_null *nl, int fig, int k, int cols, int logits) {
    const olmoe_kde_layer *fl = &nl->fits[k];
    char pt[160], nn[32], q[1024];
    fmt_count((double)fl->n, nn, sizeof nn);
    if (fig == NULL_CDF)
        snprintf(pt, sizeof pt, "layer %d: KS %.2e (n = %s)", fl->layer, fl->ks, nn);
    else
        snprintf(pt, sizeof pt, "layer %d (KS %.2e, h = %.3g)", fl->layer, fl->ks, fl->bandwidth);
    fprintf(gp, "set title %s font ',11'\n", rep_gq(pt, q, sizeof q));
    null_xrange(gp, fl, fig);
    rep_panel_labels(gp, k, nl->n_fits, cols, "'router logit'",
                     fig == NULL_PDF ? "'density'" : fig == NULL_CDF ? "'P(logit ≤ x)'" : "'P(logit > x)'");
    const char *key = k == 0 ? "" : "notitle";
    fprintf(gp, "%s\n", k == 0 ? "set key" : "unset key");
    if (fig == NULL_PDF) {
        if (logits)
            fprintf(gp, "set boxwidth %.8g absolute\nplot 'null_hist.dat' index %d u 1:2 w boxes "
                        "fs solid 0.75 noborder lc rgb '#9ecae1' %s%s, ",
                    (fl->max - fl->min) / NBINS, k, key, k == 0 ? " t 'logits (histogram)'" : "");
        else
            fprintf(gp, "plot ");
        fprintf(gp, "'null_kde.dat' index %d u 1:2 w l lw 2.2 lc rgb '#D55E00' %s%s\n", k, key,
                k == 0 ? " t 'KDE'" : "");
        return;
    }
    fprintf(gp, "plot ");
    if (logits)
        fprintf(gp, "'null_ecdf.dat' index %d u 1:%d w steps lw 3.5 lc rgb '#9ecae1' %s%s, ", k,
                fig == NULL_CDF ? 2 : 3, key, k == 0 ? " t 'empirical'" : "");
    fprintf(gp, "'null_kde.dat' index %d u 1:%d w l lw 1.6 lc rgb '#D55E00' %s%s\n", k,
            fig == NULL_CDF ? 3 : 4, key, k == 0 ? " t 'KDE'" : "");
}

/* figure fig: a panel per fitted layer */
static int null_fig(rep_out *o, const olmoe_kde_null *nl, int fig, int logits) {
    static const char *const names[] = {"null_pdf", "null_cdf", "null_tail"};
    int rows, cols;
    rep_panel_grid(nl->n_fits, 3, &rows, &cols);
    int w = cols <= 2 ? 560 * cols + 100 : 440 * cols, h = 330 * rows + 110;
    char title[400];
    null_title(nl, fig, logits, title, sizeof title);
    FILE *gp = rep_fig_begin(o, names[fig], "null", title, w, h);
    if (!gp) return -1;
    rep_panel_layout(gp, rows, cols, title, w, h, 85, 75);
    fprintf(gp, "set key top left font ',10' box opaque\n");
    if (fig == NULL_TAIL) fprintf(gp, "set logscale y\nset format y '1e%%T'\nset yrange [1e-6:1.5]\nset key top right\n");
    if (fig == NULL_CDF) fprintf(gp, "set yrange [0:1]\n");
    for (int k = 0; k < nl->n_fits; k++) null_panel(gp, nl, fig, k, cols, logits);
    fprintf(gp, "unset multiplot\n");
    return rep_fig_end(o, gp);
}

int rep_fig_null(rep_out *o, const olmoe_report_data *d) {
    if (!d->has_null || d->null.n_fits == 0) return 0;
    const olmoe_kde_null *nl = &d->null;
    const int F = nl->n_fits, G = nl->fits[0].n_grid;
    for (int f = 1; f < F; f++)
        if (nl->fits[f].n_grid != G) return olmoe_errorf("%s: layers with different grid sizes", d->kde_path);
    int own = 0, rc = -1;
    olmoe_trace *t = logits_trace(d, &own);
    null_counts c = {0};
    if (!t)
        notef("%s: the trace it was fitted on (%s) is not at hand: the null figures show the KDE "
              "without the logits' histogram and empirical CDF",
              d->kde_path, *nl->source ? nl->source : "unknown");
    else if (count_logits(t, nl, &c) != 0)
        goto out;
    int step = G > 600 ? (G + 511) / 512 : 1; /* the data files keep about 512 points a layer */
    if (write_kde(o, nl, step) != 0) goto out;
    if (t && (write_hist(o, nl, &c) != 0 || write_ecdf(o, nl, &c, step) != 0)) goto out;
    for (int fig = NULL_PDF; fig <= NULL_TAIL; fig++)
        if (null_fig(o, nl, fig, t != NULL) != 0) goto out;
    rc = 0;
out:
    free(c.hist);
    free(c.cell);
    free(c.below);
    if (own) olmoe_trace_close(t);
    return rc;
}
