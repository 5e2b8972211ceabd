/* report_match.c: the matched-compute table of olmoe-replay --match-k
 * (written by analyze/match_output.c), drawn as one line per
 * family (perplexity against experts per token; replay and exact in two
 * panels when both were scored) and tabulated family x target in report.md.
 *
 * /match holds one row per (kind, target, family), datasets [n]: family,
 * param_name, policy, note, kind (strings: kind is "replay", "exact" or
 * "calibration" when nothing was scored), target_k, param_value, achieved_k
 * (mean k on the calibration trace), perplexity, accuracy, scored_k (mean k
 * where scored), delta_vs_topk, rel_vs_topk (float64), reached (int32); its
 * attributes name the calibration and the command. A /match in another
 * layout is skipped with a note, never an error. */
#include "report_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int n;
    char **family, **param_name, **policy, **note, **kind; /* [n] */
    double *target, *param, *achieved, *ppl, *scored_k, *rel; /* [n] */
    int32_t *reached;                                        /* [n] */
} match_data;

static void match_free(match_data *m) {
    char ***s[] = {&m->family, &m->param_name, &m->policy, &m->note, &m->kind};
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) rep_free_strings(*s[i], *s[i] ? m->n : 0);
    free(m->target);
    free(m->param);
    free(m->achieved);
    free(m->ppl);
    free(m->scored_k);
    free(m->rel);
    free(m->reached);
    memset(m, 0, sizeof *m);
}

/* 1 read, 0 not in the known layout (noted), -1 error */
static int read_match(const olmoe_report_data *d, const olmoe_report_analysis *a, match_data *m) {
    memset(m, 0, sizeof *m);
    hid_t h = d->h5[a->input];
    const char *file = d->inputs[a->input];
    char p[600];
    int64_t n = 0, k;
    snprintf(p, sizeof p, "%s/family", a->path);
    if (rep_h5_strings(h, p, &m->family, &n) != 0) goto unknown;
    m->n = (int)n;
    static const char *const sn[] = {"param_name", "policy", "note", "kind"};
    char ***sd[] = {&m->param_name, &m->policy, &m->note, &m->kind};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", a->path, sn[i]);
        if (olmoe_h5_exists(h, p) != 1 || rep_h5_strings(h, p, sd[i], &k) != 0 || k != n) goto unknown;
    }
    static const char *const dn[] = {"target_k", "param_value", "achieved_k", "perplexity", "scored_k", "rel_vs_topk"};
    double **dd[] = {&m->target, &m->param, &m->achieved, &m->ppl, &m->scored_k, &m->rel};
    int64_t dims[1] = {n};
    for (int i = 0; i < 6; i++) {
        *dd[i] = xmalloc(((size_t)n + 1) * sizeof(double));
        snprintf(p, sizeof p, "%s/%s", a->path, dn[i]);
        if (rep_h5_read_shape(h, file, p, OLMOE_H5_F64, 1, dims, *dd[i]) != 1) goto unknown;
    }
    m->reached = xmalloc(((size_t)n + 1) * sizeof *m->reached);
    snprintf(p, sizeof p, "%s/reached", a->path);
    if (rep_h5_read_shape(h, file, p, OLMOE_H5_I32, 1, dims, m->reached) != 1) goto unknown;
    return 1;
unknown:
    notef("%s: /%s: matched-compute results in a layout the report does not know; not drawn", file, a->path);
    match_free(m);
    return 0;
}

/* the scored kinds present, in order: replay, exact */
static int kinds_of(const match_data *m, const char *kinds[2]) {
    int nk = 0;
    static const char *const order[] = {"replay", "exact"};
    for (int o = 0; o < 2; o++)
        for (int i = 0; i < m->n; i++)
            if (!strcmp(m->kind[i], order[o])) {
                kinds[nk++] = order[o];
                break;
            }
    return nk;
}

/* the families in order of first appearance (top-k first in the table) */
static int families_of(const match_data *m, const char **fam, int max) {
    int nf = 0;
    for (int i = 0; i < m->n; i++) {
        int j = 0;
        while (j < nf && strcmp(fam[j], m->family[i])) j++;
        if (j == nf && nf < max) fam[nf++] = m->family[i];
    }
    return nf;
}

/* one /match result with its scored kinds and families, as the figure and the table read it */
typedef struct {
    match_data m;
    const char *kinds[2], *fam[32];
    int nk, nf;
} match_view;

/* the i-th /match of the report: 1 read, 0 not in the known layout (noted), -1 error */
static int open_match(const olmoe_report_data *d, int i, match_view *v) {
    int rr = read_match(d, &d->match[i], &v->m);
    if (rr != 1) return rr;
    v->nk = kinds_of(&v->m, v->kinds);
    v->nf = families_of(&v->m, v->fam, 32);
    return 1;
}

/* a block per kind and family; *lo, *hi the range of the mean ks drawn */
static int write_match(rep_out *o, const match_view *v, const char *name, const char *file, double *lo,
                       double *hi) {
    const match_data *m = &v->m;
    FILE *f = rep_file(o, file);
    if (!f) return -1;
    fprintf(f, "# %s: matched compute, one block per kind and family (gnuplot: index N), in order:", name);
    for (int k = 0; k < v->nk; k++)
        for (int a = 0; a < v->nf; a++) fprintf(f, " %s/%s", v->kinds[k], v->fam[a]);
    fprintf(f, "\n# target_k mean_k perplexity param_value reached\n");
    *lo = INFINITY, *hi = -INFINITY;
    int blk = 0;
    for (int k = 0; k < v->nk; k++)
        for (int a = 0; a < v->nf; a++) {
            rep_block(f, blk++, "%s %s", v->kinds[k], v->fam[a]);
            for (int r = 0; r < m->n; r++) {
                if (strcmp(m->kind[r], v->kinds[k]) || strcmp(m->family[r], v->fam[a])) continue;
                double x = isfinite(m->scored_k[r]) ? m->scored_k[r] : m->achieved[r];
                if (isfinite(x) && x > 0) {
                    if (x < *lo) *lo = x;
                    if (x > *hi) *hi = x;
                }
                rep_put_row(f, (double[]){m->target[r], x, m->ppl[r], m->param[r]}, 4);
                fprintf(f, " %d\n", m->reached[r]);
            }
        }
    return rep_close(f, file);
}

/* the targets (dotted, so that a point scored off its target shows it) and
 * the ranges: x over the mean ks [lo, hi], y over every perplexity */
static void match_axes(FILE *gp, const match_data *m, double lo, double hi) {
    double tgv[64];
    int ntg = rep_distinct(m->target, m->n < 64 ? m->n : 64, tgv);
    for (int t = 0; t < ntg; t++)
        fprintf(gp, "set arrow from %.6g, graph 0 to %.6g, graph 1 nohead dt 3 lc rgb '#999999'\n",
                tgv[t], tgv[t]);
    if (lo < INFINITY) fprintf(gp, "set xrange [%.6g:%.6g]\n", lo / 1.15, hi * 1.15);
    double ylo = INFINITY, yhi = -INFINITY;
    for (int r = 0; r < m->n; r++)
        if (isfinite(m->ppl[r])) {
            if (m->ppl[r] < ylo) ylo = m->ppl[r];
            if (m->ppl[r] > yhi) yhi = m->ppl[r];
        }
    if (ylo < yhi) {
        double pad = 0.05 * (yhi - ylo);
        fprintf(gp, "set yrange [%.6g:%.6g]\n", ylo - pad, yhi + pad);
    }
    fprintf(gp, "set logscale x 2\nset offsets 0, 0, 0, 0\n");
}

/* the plot of kind k: a line per family, its unreached targets ringed */
static void match_plot(FILE *gp, const match_view *v, const char *file, int k) {
    const int two = v->nk > 1, nf = v->nf;
    char q[1024];
    if (two)
        fprintf(gp, "set title '%s'\n%s", k ? "exact: the full forward pass" : "replay: frozen attention (optimistic)",
                k ? "unset key\n" : "");
    fprintf(gp, "plot ");
    for (int a = 0, j = 0; a < nf; a++) {
        int topk = !strcmp(v->fam[a], "topk");
        const char *col = topk ? "#000000" : rep_colors[j % rep_n_colors];
        int pt = topk ? 7 : rep_point_types[(j + 1) % 6]; /* filled shapes; open rings mark misses */
        j += !topk;
        char t[160];
        snprintf(t, sizeof t, "%s%s%s", v->fam[a], two ? "" : " ", two ? "" : v->kinds[k]);
        fprintf(gp, "%s'%s' index %d u 2:3 w lp lw 2 pt %d ps 1.6 lc rgb '%s' t %s", a ? ", \\\n  " : "", file,
                k * nf + a, pt, col, rep_gq(t, q, sizeof q));
        /* targets a family cannot reach: the nearest policy, ringed */
        fprintf(gp, ", \\\n  '%s' index %d u 2:($5 > 0 ? NaN : $3) w p pt 6 ps 3 lw 1.5 lc rgb '#d62728' notitle",
                file, k * nf + a);
    }
    int unreached = 0;
    for (int r = 0; r < v->m.n; r++) unreached |= !v->m.reached[r];
    if (unreached && k == 0)
        fprintf(gp, ", \\\n  NaN w p pt 6 ps 3 lw 1.5 lc rgb '#d62728' t 'target not reached (nearest)'");
    fprintf(gp, "\n");
}

/* the figure of the i-th /match, which has scored kinds */
static int match_fig(rep_out *o, const match_view *v, int i) {
    char name[96], file[128], q[1024];
    if (i == 0) snprintf(name, sizeof name, "match");
    else snprintf(name, sizeof name, "match_%d", i + 1);
    snprintf(file, sizeof file, "%s.dat", name);
    double lo, hi;
    if (write_match(o, v, name, file, &lo, &hi) != 0) return -1;
    /* with both kinds, a panel each on one perplexity scale: fourteen
     * lines in one panel hide each other, and a shared scale shows how
     * optimistic replay is */
    int two = v->nk > 1;
    char title[400];
    snprintf(title, sizeof title, "Matched compute: perplexity of each family at equal experts per token%s%s%s",
             two ? "" : " (", two ? "" : v->kinds[0], two ? "" : ")");
    FILE *gp = rep_fig_begin(o, name, "match", title, two ? 1600 : 1280, two ? 760 : 800);
    if (!gp) return -1;
    if (two)
        /* the key in the first panel's top right, which falling lines leave empty */
        fprintf(gp, "set multiplot layout 1,2 title %s font ',14' margins 0.06,0.98,0.11,0.86 spacing 0.06,0\n"
                    "set key inside right top vertical Left reverse\n",
                rep_gq(title, q, sizeof q));
    else
        fprintf(gp, "set title %s\nset key outside right top vertical Left reverse\n", rep_gq(title, q, sizeof q));
    fprintf(gp, "set xlabel 'experts per token and layer (mean, as scored; dotted: the targets)'\n"
                "set ylabel 'perplexity'\n");
    match_axes(gp, &v->m, lo, hi);
    for (int k = 0; k < v->nk; k++) match_plot(gp, v, file, k);
    if (two) fprintf(gp, "unset multiplot\n");
    return rep_fig_end(o, gp);
}

/* calls fn(d, v, i, ctx) on each /match i in the known layout; stops at the first error */
static int each_match(const olmoe_report_data *d,
                      int (*fn)(const olmoe_report_data *d, const match_view *v, int i, void *ctx), void *ctx) {
    for (int i = 0; i < d->n_matches; i++) {
        match_view v;
        int rr = open_match(d, i, &v);
        if (rr < 0) return -1;
        if (rr == 0) continue;
        int rc = fn(d, &v, i, ctx);
        match_free(&v.m);
        if (rc != 0) return -1;
    }
    return 0;
}

/* calibration only: nothing scored, nothing to draw */
static int draw_match(const olmoe_report_data *d, const match_view *v, int i, void *o) {
    (void)d;
    return v->nk ? match_fig(o, v, i) : 0;
}

int rep_fig_match(rep_out *o, const olmoe_report_data *d) { return each_match(d, draw_match, o); }

/* the table cell of family fam at target tg for kind: perplexity, the mean k
 * scored, Δ vs top-k, the parameter; the nearest point when unreached */
static void match_cell(FILE *md, const match_data *m, const char *fam, double tg, const char *kind) {
    int r = -1;
    for (int z = 0; z < m->n; z++)
        if (!strcmp(m->family[z], fam) && m->target[z] == tg && !strcmp(m->kind[z], kind)) r = z;
    if (r < 0) {
        fprintf(md, " – |");
        return;
    }
    if (!m->reached[r]) { /* the nearest point still tells where the family stands */
        if (isfinite(m->ppl[r])) fprintf(md, " %.4f,", m->ppl[r]);
        fprintf(md, " not reached (nearest k %.3f", m->achieved[r]);
        if (isfinite(m->scored_k[r])) fprintf(md, ", scored at k %.3f", m->scored_k[r]);
        fprintf(md, ") |");
        return;
    }
    if (isfinite(m->ppl[r])) fprintf(md, " %.4f", m->ppl[r]);
    else fprintf(md, " k %.3f", m->achieved[r]);
    /* what was scored, beside the target it was calibrated to */
    if (isfinite(m->scored_k[r])) fprintf(md, " @ k %.3f", m->scored_k[r]);
    if (isfinite(m->rel[r]) && strcmp(fam, "topk")) fprintf(md, " (%+.2f %%)", 100 * m->rel[r]);
    if (isfinite(m->param[r]) && *m->param_name[r]) fprintf(md, " %s=%.4g", m->param_name[r], m->param[r]);
    fprintf(md, " |");
}

/* the tables of the i-th /match: per scored kind, family x target */
static int match_tables(const olmoe_report_data *d, const match_view *v, int i, void *ctx) {
    FILE *md = ctx;
    const match_data *m = &v->m;
    double tg[64];
    int nt = rep_distinct(m->target, m->n < 64 ? m->n : 64, tg);
    char *cmd = rep_attr_str(d->h5[d->match[i].input], d->match[i].path, "command");
    char *cal = rep_attr_str(d->h5[d->match[i].input], d->match[i].path, "calibration");
    fprintf(md, "\nFrom `/match` of `%s`: each family's parameter calibrated on `%s` until its mean "
                "experts per token-layer is the target; cells give perplexity, relative to top-k at "
                "the same k, the mean k the scoring measured (@ k; the target is the column's), and the "
                "parameter.%s%s%s\n",
            d->inputs[d->match[i].input], *cal ? cal : "the calibration trace", *cmd ? " Command: `" : "", cmd,
            *cmd ? "`." : "");
    free(cmd);
    free(cal);
    for (int k = 0; k < (v->nk ? v->nk : 1); k++) {
        const char *kind = v->nk ? v->kinds[k] : "calibration";
        fprintf(md, "\n**Matched compute, %s**\n\n| family |", kind);
        for (int t = 0; t < nt; t++) fprintf(md, " k = %g |", tg[t]);
        fprintf(md, "\n| --- |");
        for (int t = 0; t < nt; t++) fprintf(md, " ---: |");
        fputc('\n', md);
        for (int a = 0; a < v->nf; a++) {
            fprintf(md, "| %s |", v->fam[a]);
            for (int t = 0; t < nt; t++) match_cell(md, m, v->fam[a], tg[t], kind);
            fputc('\n', md);
        }
    }
    return 0;
}

/* report.md: per scored kind, family x target: perplexity, Δ vs top-k, the parameter */
int rep_match_table(FILE *md, const olmoe_report_data *d) {
    return each_match(d, match_tables, md);
}
