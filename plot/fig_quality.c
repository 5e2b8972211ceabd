/* fig_quality.c: the figures about quality against compute: perplexity vs
 * experts per token (quality), the BH alpha sweeps (sweep), and replay
 * against the exact forward pass (fidelity). */
#include "report_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the kind whose perplexities the figures draw: replay when there is any,
 * else exact; -1 when neither */
static int ppl_kind(const olmoe_report_data *d) {
    for (int k = OLMOE_REPORT_REPLAY; k <= OLMOE_REPORT_EXACT; k++)
        for (int i = 0; i < d->n_policies; i++)
            if (d->pol[i].res[k].present) return k;
    return -1;
}

static const char *kind_words(int k) {
    return k == OLMOE_REPORT_REPLAY ? "replay (frozen attention)" : "exact forward";
}

static void put_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) fputc(*s == '"' ? '\'' : *s, f);
    fputc('"', f);
}

/* log scale when the values span more than ratio */
static int wants_log(const double *v, int n, double ratio) {
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i]) && v[i] > 0) {
            if (v[i] < lo) lo = v[i];
            if (v[i] > hi) hi = v[i];
        }
    return hi > 0 && lo < INFINITY && hi / lo > ratio;
}

/* policies by family name, then by mean k (x); ctx = {data, x} */
static int by_family_k(const void *a, const void *b, void *ctx) {
    const olmoe_report_data *d = ((const void *const *)ctx)[0];
    const double *x = ((const void *const *)ctx)[1];
    int i = *(const int *)a, j = *(const int *)b;
    int c = strcmp(d->pol[i].family, d->pol[j].family);
    if (c) return c;
    if (x[i] != x[j]) return x[i] < x[j] ? -1 : (x[i] > x[j] ? 1 : (i > j) - (i < j));
    return (i > j) - (i < j);
}

/* set palette / cbrange / cbtics for the BH alphas (discrete colours) */
static void alpha_palette(FILE *gp, const double *alphas, int na) {
    char col[8];
    fprintf(gp, "set palette defined (");
    for (int i = 0; i < na; i++) {
        rep_ramp(i, na, col);
        fprintf(gp, "%s%d '%s'", i ? ", " : "", i, col);
    }
    if (na == 1) fprintf(gp, ", 1 '%s'", col);
    fprintf(gp, ")\nset palette maxcolors %d\n", na > 1 ? na : 1);
    fprintf(gp, "set cbrange [-0.5:%g]\nset cbtics (", na - 0.5);
    for (int i = 0; i < na; i++) fprintf(gp, "%s'%g' %d", i ? ", " : "", alphas[i], i);
    fprintf(gp, ") scale 0\nset cblabel 'BH α'\nset colorbox user origin graph 1.02, graph 0 size character 1.6, graph 0.5\n");
}

/* what the quality figure is made of */
typedef struct {
    const olmoe_report_data *d;
    int K, n;                 /* the kind plotted, policies */
    double *x, *y;            /* [n] mean k and perplexity of kind K (NaN: none) */
    int *front;               /* [n] on the Pareto front */
    double *alphas, *maxks;   /* the BH alphas and max_k values, na and nm of them */
    int na, nm;
    int n_topk, n_bh, n_other, n_exact, have_base; /* points in each data file */
} quality_ctx;

/* quality_topk.dat, quality_bh.dat and quality_other.dat */
static int quality_points(rep_out *o, quality_ctx *c) {
    FILE *f;
    if (!(f = rep_file(o, "quality_topk.dat"))) return -1;
    fprintf(f, "# quality: the top-k ladder (%s)\n# policy k mean_k perplexity\n", kind_words(c->K));
    for (int i = 0; i < c->n; i++) {
        const olmoe_report_policy *p = &c->d->pol[i];
        if (!p->res[c->K].present || strcmp(p->family, "topk") || !strstr(p->id, "norm=model")) continue;
        put_str(f, p->id);
        fprintf(f, " %g ", p->k);
        rep_put_row(f, (double[]){c->x[i], c->y[i]}, 2);
        fputc('\n', f);
        c->n_topk++;
    }
    if (rep_close(f, "quality_topk.dat")) return -1;
    if (!(f = rep_file(o, "quality_bh.dat"))) return -1;
    fprintf(f, "# quality: BH policies (%s); alpha_index and max_k pick colour and shape\n"
               "# policy alpha max_k mean_k perplexity alpha_index\n", kind_words(c->K));
    for (int i = 0; i < c->n; i++) {
        const olmoe_report_policy *p = &c->d->pol[i];
        if (!p->res[c->K].present || strcmp(p->family, "bh")) continue;
        put_str(f, p->id);
        fprintf(f, " %g %d ", p->alpha, p->max_k);
        rep_put_row(f, (double[]){c->x[i], c->y[i]}, 2);
        fprintf(f, " %d\n", rep_index_of(c->alphas, c->na, p->alpha));
        c->n_bh++;
    }
    if (rep_close(f, "quality_bh.dat")) return -1;
    if (!(f = rep_file(o, "quality_other.dat"))) return -1;
    fprintf(f, "# quality: policies of other families (%s)\n# policy family mean_k perplexity\n",
            kind_words(c->K));
    /* by family, then mean k: each family's points joined left to right */
    int *ord = xmalloc(((size_t)c->n + 1) * sizeof *ord), n_ord = 0;
    for (int i = 0; i < c->n; i++) ord[n_ord++] = i;
    const void *ctx[2] = {c->d, c->x};
    qsort_r(ord, (size_t)n_ord, sizeof *ord, by_family_k, ctx);
    for (int oi = 0; oi < n_ord; oi++) {
        int i = ord[oi];
        const olmoe_report_policy *p = &c->d->pol[i];
        if (!p->res[c->K].present || !strcmp(p->family, "bh") ||
            (!strcmp(p->family, "topk") && strstr(p->id, "norm=model")))
            continue;
        put_str(f, p->id);
        fputc(' ', f);
        put_str(f, p->family);
        fputc(' ', f);
        rep_put_row(f, (double[]){c->x[i], c->y[i]}, 2);
        fputc('\n', f);
        c->n_other++;
    }
    free(ord);
    if (rep_close(f, "quality_other.dat")) return -1;
    return 0;
}

/* quality_front.dat, quality_exact.dat (replay plotted) and quality_baseline.dat */
static int quality_lines(rep_out *o, quality_ctx *c) {
    FILE *f;
    if (!(f = rep_file(o, "quality_front.dat"))) return -1;
    fprintf(f, "# quality: the Pareto front (no other policy has fewer experts and lower perplexity),"
               " by mean_k\n# policy mean_k perplexity\n");
    {
        int *ord = xmalloc(((size_t)c->n + 1) * sizeof *ord), m = 0;
        for (int i = 0; i < c->n; i++)
            if (c->front[i]) ord[m++] = i;
        for (int a = 1; a < m; a++) /* insertion sort by x */
            for (int b = a; b > 0 && c->x[ord[b]] < c->x[ord[b - 1]]; b--) {
                int t = ord[b];
                ord[b] = ord[b - 1];
                ord[b - 1] = t;
            }
        for (int a = 0; a < m; a++) {
            put_str(f, c->d->pol[ord[a]].id);
            fputc(' ', f);
            rep_put_row(f, (double[]){c->x[ord[a]], c->y[ord[a]]}, 2);
            fputc('\n', f);
        }
        free(ord);
    }
    if (rep_close(f, "quality_front.dat")) return -1;
    if (c->K == OLMOE_REPORT_REPLAY) {
        if (!(f = rep_file(o, "quality_exact.dat"))) return -1;
        fprintf(f, "# quality: the same policies through the exact forward pass\n# policy mean_k perplexity\n");
        for (int i = 0; i < c->n; i++) {
            const olmoe_report_result *r = &c->d->pol[i].res[OLMOE_REPORT_EXACT];
            if (!r->present) continue;
            put_str(f, c->d->pol[i].id);
            fputc(' ', f);
            rep_put_row(f, (double[]){r->mean_k, r->perplexity}, 2);
            fputc('\n', f);
            c->n_exact++;
        }
        if (rep_close(f, "quality_exact.dat")) return -1;
    }
    c->have_base = isfinite(c->d->baseline_ppl);
    if (c->have_base) {
        if (!(f = rep_file(o, "quality_baseline.dat"))) return -1;
        fprintf(f, "# quality: the captured baseline (the trace's own routing)\n# top_k perplexity\n%d ",
                c->d->top_k);
        rep_put_num(f, c->d->baseline_ppl);
        fputc('\n', f);
        if (rep_close(f, "quality_baseline.dat")) return -1;
    }

    return 0;
}

/* the x range: every point and the baseline; log scale over a wide range */
static void quality_xrange(FILE *gp, const quality_ctx *c) {
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < c->n; i++)
        if (isfinite(c->x[i]) && c->x[i] > 0) {
            if (c->x[i] < lo) lo = c->x[i];
            if (c->x[i] > hi) hi = c->x[i];
        }
    if (c->have_base && c->d->top_k < lo) lo = c->d->top_k;
    if (c->have_base && c->d->top_k > hi) hi = c->d->top_k;
    if (wants_log(c->x, c->n, 4))
        fprintf(gp, "set logscale x 2\nset xrange [%.6g:%.6g]\n", lo / 1.12, hi * 1.12);
    else if (lo < INFINITY)
        fprintf(gp, "set xrange [%.6g:%.6g]\n", lo - 0.04 * (hi - lo + 1), hi + 0.04 * (hi - lo + 1));
}

/* one entry per family of the other policies */
static void quality_families(FILE *gp, const quality_ctx *c) {
    char q[1024], q2[256];
    char fams[16][32];
    int nf = 0;
    for (int i = 0; i < c->n; i++) {
        const olmoe_report_policy *p = &c->d->pol[i];
        if (!p->res[c->K].present || !strcmp(p->family, "bh") ||
            (!strcmp(p->family, "topk") && strstr(p->id, "norm=model")))
            continue;
        int k = 0;
        while (k < nf && strcmp(fams[k], p->family)) k++;
        if (k < nf || nf == 16) continue;
        snprintf(fams[nf++], sizeof fams[0], "%s", p->family);
        /* shapes after BH's (one per max_k), so no family shares BH's marker; each
         * family's points joined in sweep order (its parameter's order) */
        fprintf(gp, ", \\\n  'quality_other.dat' u (strcol(2) eq %s ? $3 : NaN):4 w lp lw 1.5 pt %d ps 1.9 "
                    "lc rgb '%s' t %s",
                rep_gq(p->family, q2, sizeof q2),
                rep_point_types[(c->nm + k + 1) % rep_n_point_types],
                rep_colors[k % rep_n_colors], rep_gq(p->family, q, sizeof q));
    }
}

int rep_fig_quality(rep_out *o, const olmoe_report_data *d) {
    int K = ppl_kind(d);
    if (K < 0) return 0;
    const int n = d->n_policies;
    quality_ctx qc = {.d = d, .K = K, .n = n}, *c = &qc;
    c->x = xmalloc(((size_t)n + 1) * sizeof *c->x);
    c->y = xmalloc(((size_t)n + 1) * sizeof *c->y);
    c->front = xcalloc((size_t)n + 1, sizeof *c->front);
    for (int i = 0; i < n; i++) {
        const olmoe_report_result *r = &d->pol[i].res[K];
        c->x[i] = r->present ? r->mean_k : NAN;
        c->y[i] = r->present ? r->perplexity : NAN;
    }
    rep_pareto(c->x, c->y, n, c->front);
    c->alphas = xmalloc(((size_t)n + 1) * sizeof *c->alphas);
    c->maxks = xmalloc(((size_t)n + 1) * sizeof *c->maxks);
    c->na = rep_bh_alphas(d, c->alphas);
    c->nm = rep_bh_maxks(d, c->maxks);
    int rc = -1;
    char q[1024];
    if (quality_points(o, c) != 0 || quality_lines(o, c) != 0) goto out;
    char title[400];
    snprintf(title, sizeof title, "Quality vs compute: perplexity against experts per token, %s",
             kind_words(c->K));
    FILE *gp = rep_fig_begin(o, "quality", "quality", title, 1280, 820);
    if (!gp) goto out;
    fprintf(gp, "set title %s\n", rep_gq(title, q, sizeof q));
    fprintf(gp, "set xlabel 'experts per token and layer (mean; baseline %d)'\n", c->d->top_k);
    fprintf(gp, "set ylabel 'perplexity (%s, lower is better)'\n", kind_words(c->K));
    quality_xrange(gp, c);
    if (wants_log(c->y, c->n, 3)) fprintf(gp, "set logscale y\nset ylabel 'perplexity (log scale; %s)'\n", kind_words(c->K));
    fprintf(gp, "set key at screen 0.765, graph 1 left top vertical Left reverse\n");
    fprintf(gp, "set rmargin at screen 0.74\nset offsets 0, 0, graph 0.04, graph 0.04\n");
    if (c->n_bh) alpha_palette(gp, c->alphas, c->na);
    else fprintf(gp, "unset colorbox\n");
    if (c->have_base)
        fprintf(gp, "set arrow 1 from graph 0, first %.10g to graph 1, first %.10g nohead dt 2 lw 1.2 "
                    "lc rgb '#d62728' back\n",
                c->d->baseline_ppl, c->d->baseline_ppl);
    fprintf(gp, "plot 'quality_front.dat' u 2:3 w l lw 10 lc rgb '#fcd9b6' t 'Pareto front'");
    if (c->n_topk)
        fprintf(gp, ", \\\n  'quality_topk.dat' u 3:4 w lp lw 2 pt 6 ps 1.6 lc rgb 'black' t 'top-k ladder'"
                    ", \\\n  'quality_topk.dat' u 3:4:(sprintf('k=%%g', $2)) w labels offset char 1.2,0.9 "
                    "font ',10' tc rgb '#303030' notitle");
    for (int j = 0; c->n_bh && j < c->nm; j++) {
        int pt = rep_point_types[j % rep_n_point_types];
        fprintf(gp, ", \\\n  'quality_bh.dat' u ($3==%g ? $4 : NaN):5:6 w p pt %d ps 2.1 lc palette notitle",
                c->maxks[j], pt);
        fprintf(gp, ", \\\n  NaN w p pt %d ps 2.1 lc rgb '#505050' t 'BH max_k=%g (colour: alpha)'", pt,
                c->maxks[j]);
    }
    if (c->n_other) quality_families(gp, c);
    if (c->n_exact)
        fprintf(gp, ", \\\n  'quality_exact.dat' u 2:3 w p pt 6 ps 2.6 lw 1.6 lc rgb '#009E73' "
                    "t 'exact forward (same policy)'");
    if (c->have_base)
        fprintf(gp, ", \\\n  'quality_baseline.dat' u 1:2 w p pt 3 ps 3.2 lw 2.6 lc rgb '#d62728' "
                    "t 'baseline top-%d (capture)'",
                c->d->top_k);
    fprintf(gp, "\n");
    rc = rep_fig_end(o, gp);
out:
    free(c->x);
    free(c->y);
    free(c->front);
    free(c->alphas);
    free(c->maxks);
    return rc;
}

/* ---- alpha sweeps ---- */

/* what the sweep figure is made of */
typedef struct {
    const olmoe_report_data *d;
    int *series, ns; /* [ns] the first policy of each series */
    int K;           /* the kind whose perplexities are drawn (-1: none) */
    int any_ppl;     /* some policy of a series has a perplexity */
    int only_maxk;   /* the series differ only in max_k: labelled by it */
} sweep_ctx;

static int routed_bh(const olmoe_report_policy *p) { return !strcmp(p->family, "bh") && olmoe_report_routing(p); }

/* the series: BH policies grouped by sweep key, with at least two alphas;
 * the first policy of each into series, their number returned */
static int sweep_series(const olmoe_report_data *d, int *series) {
    int ns = 0;
    for (int i = 0; i < d->n_policies; i++) {
        const olmoe_report_policy *p = &d->pol[i];
        if (!routed_bh(p)) continue;
        int seen = 0, count = 0;
        for (int j = 0; j < d->n_policies; j++)
            if (routed_bh(&d->pol[j]) && !strcmp(d->pol[j].sweep_key, p->sweep_key)) {
                if (j < i) seen = 1;
                count++;
            }
        if (!seen && count >= 2) series[ns++] = i;
    }
    return ns;
}

/* do the series differ only in max_k? */
static int differ_in_maxk_only(const olmoe_report_data *d, const int *series, int ns) {
    for (int s = 1; s < ns; s++) {
        const char *a = d->pol[series[0]].sweep_key, *b = d->pol[series[s]].sweep_key;
        const char *ma = strstr(a, "max_k="), *mb = strstr(b, "max_k=");
        if (!ma || !mb) return 0;
        size_t la = (size_t)(ma - a), lb = (size_t)(mb - b);
        if (la != lb || strncmp(a, b, la) || strcmp(ma + strcspn(ma, ",)"), mb + strcspn(mb, ",)"))) return 0;
    }
    return 1;
}

/* sweep.dat: a block per series, a row per alpha */
static int write_sweep(rep_out *o, sweep_ctx *c) {
    const olmoe_report_data *d = c->d;
    FILE *f = rep_file(o, "sweep.dat");
    if (!f) return -1;
    fprintf(f, "# sweep: BH policies by alpha, one block per series (gnuplot: index N)\n"
               "# alpha mean_k perplexity policy\n");
    for (int s = 0; s < c->ns; s++) {
        const olmoe_report_policy *p0 = &d->pol[c->series[s]];
        rep_block(f, s, "series %d: %s", s, p0->sweep_key);
        for (int j = 0; j < d->n_policies; j++) {
            const olmoe_report_policy *p = &d->pol[j];
            if (strcmp(p->family, "bh") || strcmp(p->sweep_key, p0->sweep_key)) continue;
            const olmoe_report_result *r = olmoe_report_routing(p);
            if (!r) continue;
            double ppl = c->K >= 0 && p->res[c->K].present ? p->res[c->K].perplexity : NAN;
            if (isfinite(ppl)) c->any_ppl = 1;
            fprintf(f, "%g ", p->alpha);
            rep_put_row(f, (double[]){r->mean_k, ppl}, 2);
            fputc(' ', f);
            put_str(f, p->id);
            fputc('\n', f);
        }
    }
    return rep_close(f, "sweep.dat");
}

/* the x axis: every BH alpha, a tic each, on a log scale */
static void sweep_xaxis(FILE *gp, const olmoe_report_data *d) {
    const int n = d->n_policies;
    double amin = INFINITY, amax = -INFINITY;
    for (int i = 0; i < n; i++)
        if (!strcmp(d->pol[i].family, "bh") && isfinite(d->pol[i].alpha)) {
            if (d->pol[i].alpha < amin) amin = d->pol[i].alpha;
            if (d->pol[i].alpha > amax) amax = d->pol[i].alpha;
        }
    fprintf(gp, "set xrange [%.6g:%.6g]\n", amin / 1.4, amax * 1.4);
    double *al = xmalloc(((size_t)n + 1) * sizeof *al), *va = xmalloc(((size_t)n + 1) * sizeof *va);
    int nv = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(d->pol[i].family, "bh")) va[nv++] = d->pol[i].alpha;
    int na = rep_distinct(va, nv, al);
    fprintf(gp, "set xtics (");
    for (int i = 0; i < na; i++) fprintf(gp, "%s%g", i ? ", " : "", al[i]);
    fprintf(gp, ")\n");
    free(al);
    free(va);
}

/* a series' key: its max_k, or its label without the alpha */
static void series_label(const olmoe_report_policy *p0, int only_maxk, char *lab, size_t n) {
    if (only_maxk) {
        snprintf(lab, n, "max_k=%d", p0->max_k);
        return;
    }
    snprintf(lab, n, "%s", p0->label);
    char *a = strstr(lab, " α=");
    if (a) {
        char *e = a + strlen(" α=");
        e += strcspn(e, " ");
        memmove(a, e, strlen(e) + 1);
    }
}

/* panel 0 experts per token, panel 1 perplexity: a line per series */
static void sweep_panel(FILE *gp, const sweep_ctx *c, int panel, const double *maxks, int nm) {
    char q[1024];
    if (panel == 0) {
        fprintf(gp, "set ylabel 'experts per token and layer (mean)'\n");
        if (c->any_ppl) fprintf(gp, "set title 'experts per token'\n");
    } else {
        fprintf(gp, "set ylabel 'perplexity, %s'\nset title 'perplexity'\nunset key\n", kind_words(c->K));
    }
    fprintf(gp, "plot ");
    for (int s = 0; s < c->ns; s++) {
        const olmoe_report_policy *p0 = &c->d->pol[c->series[s]];
        char lab[200];
        series_label(p0, c->only_maxk, lab, sizeof lab);
        int mi = rep_index_of(maxks, nm, p0->max_k);
        fprintf(gp, "%s'sweep.dat' index %d u 1:%d w lp lw 2 pt %d ps 1.6 lc rgb '%s' t %s", s ? ", \\\n  " : "",
                s, panel ? 3 : 2, rep_point_types[(mi < 0 ? s : mi) % rep_n_point_types],
                rep_colors[(mi < 0 ? s : mi) % rep_n_colors], rep_gq(lab, q, sizeof q));
    }
    fprintf(gp, "\n");
}

static int sweep_fig(rep_out *o, const sweep_ctx *c) {
    char q[1024];
    const char *title = c->any_ppl ? "BH alpha sweeps: experts per token and perplexity against alpha"
                                   : "BH alpha sweeps: experts per token against alpha";
    FILE *gp = rep_fig_begin(o, "sweep", "sweep", title, c->any_ppl ? 1500 : 1000, 700);
    if (!gp) return -1;
    if (c->any_ppl)
        fprintf(gp, "set multiplot layout 1,2 title %s font ',14' margins 0.07,0.98,0.11,0.80 spacing 0.09,0\n",
                rep_gq(title, q, sizeof q));
    else
        fprintf(gp, "set title %s\nset tmargin 7\n", rep_gq(title, q, sizeof q));
    sweep_xaxis(gp, c->d);
    fprintf(gp, "set logscale x\nset xlabel 'BH α (log scale)'\n"
                "set key at screen 0.5, screen %s center top horizontal width 2\n"
                "set offsets 0, 0, graph 0.05, graph 0.05\n", c->any_ppl ? "0.905" : "0.915");
    double *maxks = xmalloc(((size_t)c->d->n_policies + 1) * sizeof *maxks);
    int nm = rep_bh_maxks(c->d, maxks);
    for (int panel = 0; panel < 1 + c->any_ppl; panel++) sweep_panel(gp, c, panel, maxks, nm);
    free(maxks);
    if (c->any_ppl) fprintf(gp, "unset multiplot\n");
    return rep_fig_end(o, gp);
}

int rep_fig_sweep(rep_out *o, const olmoe_report_data *d) {
    sweep_ctx c = {.d = d, .K = ppl_kind(d)};
    c.series = xmalloc(((size_t)d->n_policies + 1) * sizeof *c.series);
    c.ns = sweep_series(d, c.series);
    int rc = 0;
    if (c.ns > 0) {
        c.only_maxk = differ_in_maxk_only(d, c.series, c.ns);
        rc = write_sweep(o, &c) != 0 ? -1 : sweep_fig(o, &c);
    }
    free(c.series);
    return rc;
}

/* ---- replay against exact ---- */

/* the policies scored both ways: from /validate when present, else from the
 * /replay and /exact results (ids borrowed from d) */
typedef struct {
    int n;
    const char **ids; /* [n] */
    double *ex, *re;  /* [n] exact and replay perplexity */
} fidelity_pts;

static void fidelity_points(const olmoe_report_data *d, fidelity_pts *p) {
    const olmoe_report_validate *v = &d->val;
    int cap = v->present ? v->n : d->n_policies;
    p->n = 0;
    p->ids = xcalloc((size_t)cap + 1, sizeof *p->ids);
    p->ex = xmalloc(((size_t)cap + 1) * sizeof *p->ex);
    p->re = xmalloc(((size_t)cap + 1) * sizeof *p->re);
    for (int i = 0; v->present && i < v->n; i++, p->n++) {
        p->ids[p->n] = v->policy[i];
        p->ex[p->n] = v->exact_ppl[i];
        p->re[p->n] = v->replay_ppl[i];
    }
    for (int i = 0; !v->present && i < d->n_policies; i++)
        if (d->pol[i].res[OLMOE_REPORT_REPLAY].present && d->pol[i].res[OLMOE_REPORT_EXACT].present) {
            p->ids[p->n] = d->pol[i].id;
            p->ex[p->n] = d->pol[i].res[OLMOE_REPORT_EXACT].perplexity;
            p->re[p->n] = d->pol[i].res[OLMOE_REPORT_REPLAY].perplexity;
            p->n++;
        }
}

static const char *family_of(const olmoe_report_data *d, const char *id) {
    int k = olmoe_report_find(d, id);
    return k >= 0 ? d->pol[k].family : "?";
}

/* fidelity.dat, a row per policy; *lo, *hi the range of its perplexities */
static int write_fidelity(rep_out *o, const olmoe_report_data *d, const fidelity_pts *p, double *lo, double *hi) {
    FILE *f = rep_file(o, "fidelity.dat");
    if (!f) return -1;
    fprintf(f, "# fidelity: replay (frozen attention) against the exact forward pass, from %s\n"
               "# index policy label exact_ppl replay_ppl rel_diff_percent family\n",
            d->val.present ? "/validate" : "the /replay and /exact results");
    *lo = INFINITY, *hi = -INFINITY;
    for (int i = 0; i < p->n; i++) {
        int k = olmoe_report_find(d, p->ids[i]);
        fprintf(f, "%d ", i);
        put_str(f, p->ids[i]);
        fputc(' ', f);
        put_str(f, k >= 0 ? d->pol[k].label : p->ids[i]);
        fputc(' ', f);
        rep_put_row(f, (double[]){p->ex[i], p->re[i], 100.0 * (p->re[i] / p->ex[i] - 1)}, 3);
        fputc(' ', f);
        put_str(f, family_of(d, p->ids[i]));
        fputc('\n', f);
        for (int z = 0; z < 2; z++) {
            double w = z ? p->re[i] : p->ex[i];
            if (isfinite(w) && w > 0) {
                if (w < *lo) *lo = w;
                if (w > *hi) *hi = w;
            }
        }
    }
    return rep_close(f, "fidelity.dat");
}

/* the left panel: replay against exact perplexity, a point per policy, by family */
static void fidelity_scatter(FILE *gp, const olmoe_report_data *d, const fidelity_pts *p, double lo, double hi) {
    double a = lo / 1.08, b = hi * 1.08;
    fprintf(gp, "set title 'perplexity of each policy'\nset size ratio -1\n");
    if (hi / lo > 3) fprintf(gp, "set logscale xy\n");
    fprintf(gp, "set xrange [%.6g:%.6g]\nset yrange [%.6g:%.6g]\n", a, b, a, b);
    fprintf(gp, "set xlabel 'exact forward perplexity'\nset ylabel 'replay perplexity'\nset key top left\n");
    int nf[3] = {0, 0, 0}; /* top-k, BH, other: only series with points (else gnuplot warns) */
    for (int i = 0; i < p->n; i++) {
        const char *fam = family_of(d, p->ids[i]);
        nf[!strcmp(fam, "topk") ? 0 : !strcmp(fam, "bh") ? 1 : 2]++;
    }
    fprintf(gp, "plot x w l dt 2 lw 1.5 lc rgb '#808080' t 'replay = exact'");
    if (nf[0])
        fprintf(gp, ", \\\n  'fidelity.dat' u (strcol(7) eq 'topk' ? $4 : NaN):5 w p pt 7 ps 1.8 lc rgb 'black' t 'top-k'");
    if (nf[1])
        fprintf(gp, ", \\\n  'fidelity.dat' u (strcol(7) eq 'bh' ? $4 : NaN):5 w p pt 5 ps 1.7 lc rgb '%s' t 'BH'",
                rep_colors[0]);
    if (nf[2])
        fprintf(gp, ", \\\n  'fidelity.dat' u (strcol(7) ne 'bh' && strcol(7) ne 'topk' ? $4 : NaN):5 w p pt 9 ps 1.8 "
                    "lc rgb '%s' t 'other'", rep_colors[1]);
    fprintf(gp, "\n");
}

/* the right panel: replay / exact - 1, a bar per policy */
static void fidelity_bars(FILE *gp, const fidelity_pts *p) {
    fprintf(gp, "unset logscale\nset size noratio\nset autoscale\nset title 'replay / exact − 1'\n");
    double rlo = 0, rhi = 0;
    for (int i = 0; i < p->n; i++) {
        double r = 100.0 * (p->re[i] / p->ex[i] - 1);
        if (isfinite(r) && r < rlo) rlo = r;
        if (isfinite(r) && r > rhi) rhi = r;
    }
    double pad = 0.08 * (rhi - rlo) + 1e-3;
    fprintf(gp, "set yrange [%.6g:%.6g]\n", rlo < 0 ? rlo - pad : 0, rhi > 0 ? rhi + pad : 0);
    fprintf(gp, "set xlabel ''\nset ylabel 'relative difference (%%, negative: replay optimistic)'\n"
                "set xzeroaxis lt -1 lw 1\nunset key\n");
    fprintf(gp, "set xrange [-0.7:%g]\nset xtics rotate by 60 right font ',%d'\nset boxwidth 0.7\n"
                "set bmargin 10\nset grid noxtics\n",
            p->n - 0.3, p->n > 30 ? 8 : 10);
    fprintf(gp, "plot 'fidelity.dat' u 1:6:xtic(3) w boxes lc rgb '%s' notitle\n", rep_colors[0]);
}

static int fidelity_fig(rep_out *o, const olmoe_report_data *d, const fidelity_pts *p, double lo, double hi) {
    const olmoe_report_validate *v = &d->val;
    char title[400], extra[96] = "", q[1024];
    if (v->present && v->ranking_agrees >= 0)
        snprintf(extra, sizeof extra, " (ranking %s, Kendall τ %.3f)",
                 v->ranking_agrees ? "agrees" : "differs", v->kendall_tau);
    snprintf(title, sizeof title, "Replay fidelity: frozen-attention replay vs exact forward%s", extra);
    FILE *gp = rep_fig_begin(o, "fidelity", "fidelity", title, 1500, 720);
    if (!gp) return -1;
    fprintf(gp, "set multiplot layout 1,2 title %s font ',14'\n", rep_gq(title, q, sizeof q));
    if (!(lo < INFINITY)) lo = 1, hi = 10;
    fidelity_scatter(gp, d, p, lo, hi);
    fidelity_bars(gp, p);
    fprintf(gp, "unset multiplot\n");
    return rep_fig_end(o, gp);
}

int rep_fig_fidelity(rep_out *o, const olmoe_report_data *d) {
    fidelity_pts p;
    fidelity_points(d, &p);
    double lo, hi;
    int rc = 0;
    if (p.n > 0) rc = write_fidelity(o, d, &p, &lo, &hi) != 0 ? -1 : fidelity_fig(o, d, &p, lo, hi);
    free(p.ids);
    free(p.ex);
    free(p.re);
    return rc;
}
