/* fig_analyze.c: figures of stored olmoe-analyze results (olmoe-analyze(1),
 * "HDF5 results"): co-activation and cross-layer flow heatmaps, domain
 * specialization bars (the OLMoE paper's figure), token specialization bars,
 * and router saturation lines from compare. */
#include "report_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* reads dataset name of result a, which must have rank dimensions; NULL + message */
static void *get(const olmoe_report_data *d, const olmoe_report_analysis *a, const char *name,
                 olmoe_h5_kind kind, int rank, int64_t *dims) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", a->path, name);
    hid_t h = d->h5[a->input];
    int e = olmoe_h5_exists(h, p);
    if (e != 1) {
        olmoe_errorf("%s: /%s is missing", d->inputs[a->input], p);
        return NULL;
    }
    void *out;
    int r;
    int64_t dd[OLMOE_H5_MAX_RANK];
    if (olmoe_h5_read_alloc(h, p, kind, &out, &r, dd) != 0) {
        olmoe_error_prefix("%s", d->inputs[a->input]);
        return NULL;
    }
    if (r != rank) {
        free(out);
        olmoe_errorf("%s: /%s has rank %d, expected %d", d->inputs[a->input], p, r, rank);
        return NULL;
    }
    for (int i = 0; i < rank; i++) dims[i] = dd[i];
    return out;
}

/* the datasets a figure needs */
typedef struct {
    const char *name;
    olmoe_h5_kind kind;
    int rank;
} dataset;

/* reads the n datasets ds of result a into out[i], their dimensions into
 * dims[i]; -1 + message when one fails, nothing left allocated */
static int get_all(const olmoe_report_data *d, const olmoe_report_analysis *a, const dataset *ds, int n,
                   void **out, int64_t (*dims)[3]) {
    for (int i = 0; i < n; i++) {
        out[i] = get(d, a, ds[i].name, ds[i].kind, ds[i].rank, dims[i]);
        if (!out[i]) {
            while (i-- > 0) free(out[i]);
            return -1;
        }
    }
    return 0;
}

static void fig_name(const rep_out *o, const olmoe_report_analysis *a, char *buf, size_t n) {
    char safe[64];
    rep_safe_name(a->name, safe, sizeof safe);
    snprintf(buf, n, "%s_%s", a->analysis, safe);
    int clash = 1;
    for (int k = 2; clash; k++) {
        clash = 0;
        for (int i = 0; i < o->n_figs; i++)
            if (!strcmp(o->figs[i].name, buf)) clash = 1;
        if (clash) snprintf(buf, n, "%s_%s_%d", a->analysis, safe, k);
    }
}

/* starts the figure of analysis a, which report.md shows under it */
static FILE *analysis_fig_begin(rep_out *o, const olmoe_report_analysis *a, const char *name, const char *title,
                                int w, int h) {
    FILE *gp = rep_fig_begin(o, name, "analyze", title, w, h);
    if (gp) snprintf(o->figs[o->n_figs - 1].key, sizeof o->figs[0].key, "%s", a->path);
    return gp;
}

/* the k-th of shown indices spread evenly over 0..n-1 (all of them when shown == n) */
static int spread(int k, int shown, int n) {
    return shown == n ? k : (int)lround((double)k * (n - 1) / (shown - 1));
}

/* co-activation or flow: P(expert j | expert i) per block (a layer, or a pair of layers) */
typedef struct {
    double *prob;       /* [B, E, E] */
    int32_t *from, *to; /* [B] the block's layers */
    double *lift;       /* [B] */
    int B, E;
} pairs_data;

static void pairs_free(pairs_data *p) {
    free(p->prob);
    free(p->from);
    free(p->to);
    free(p->lift);
}

/* 0 read, -1 + message */
static int read_pairs(const olmoe_report_data *d, const olmoe_report_analysis *a, pairs_data *p) {
    static const dataset ds[] = {{"prob", OLMOE_H5_F64, 3},
                                 {"layer_from", OLMOE_H5_I32, 1},
                                 {"layer_to", OLMOE_H5_I32, 1},
                                 {"lift", OLMOE_H5_F64, 1}};
    void *v[4];
    int64_t dims[4][3];
    memset(p, 0, sizeof *p);
    if (get_all(d, a, ds, 4, v, dims) != 0) return -1;
    p->prob = v[0], p->from = v[1], p->to = v[2], p->lift = v[3];
    p->B = (int)dims[0][0], p->E = (int)dims[0][1];
    if (dims[0][2] != p->E || dims[1][0] != p->B || dims[2][0] != p->B || dims[3][0] != p->B)
        return olmoe_errorf("%s: /%s: datasets of different sizes", d->inputs[a->input], a->path);
    return 0;
}

/* the shown blocks' E x E matrices; *top the largest probability written */
static int write_pairs(rep_out *o, const char *name, const char *file, const pairs_data *p, const int *blk,
                       int shown, int flow, double *top) {
    const int E = p->E;
    FILE *f = rep_file(o, file);
    if (!f) return -1;
    fprintf(f, "# %s: %s, one block per %s (gnuplot: index N)%s\n# expert_i expert_j p\n", name,
            flow ? "P(expert j at the next layer | expert i)" : "P(expert j selected | expert i selected)",
            flow ? "pair of layers" : "layer", flow ? "" : "; the diagonal (always 1) is written as 0");
    *top = 0;
    for (int s = 0; s < shown; s++) {
        int b = blk[s];
        rep_block(f, s, "layer %d -> %d", p->from[b], p->to[b]);
        for (int i = 0; i < E; i++) {
            for (int j = 0; j < E; j++) {
                double v = p->prob[((size_t)b * E + i) * E + j];
                if (!flow && i == j) v = 0;
                if (!isfinite(v)) v = 0;
                if (v > *top) *top = v;
                fprintf(f, "%d %d %.6g\n", i, j, v);
            }
            fputc('\n', f);
        }
    }
    return rep_close(f, file);
}

/* a heatmap per shown block on one colour scale [0, top], its colour bar right of the last */
static int pairs_script(rep_out *o, const olmoe_report_analysis *a, const char *name, const char *file,
                        const pairs_data *p, const int *blk, int shown, int flow, double top) {
    const int E = p->E;
    int rows, cols;
    rep_panel_grid(shown, 3, &rows, &cols);
    int w = cols == 1 ? 800 : 480 * cols + 190, h = cols == 1 ? 700 : 430 * rows + 90;
    char title[400], q[1024];
    snprintf(title, sizeof title, "%s under %s%s",
             flow ? "Cross-layer flow: P(expert j at the next layer | expert i)"
                  : "Expert co-activation: P(j selected | i selected)",
             a->name, flow ? "" : " (diagonal left out)");
    FILE *gp = analysis_fig_begin(o, a, name, title, w, h);
    if (!gp) return -1;
    fprintf(gp, "set multiplot layout %d,%d title %s font ',14' margins %.3f,%.3f,%.3f,%.3f spacing %.3f,%.3f\n",
            rows, cols, rep_gq(title, q, sizeof q), 70.0 / w, 1 - 170.0 / w, 60.0 / h, 1 - 80.0 / h,
            60.0 / w, 75.0 / h);
    fprintf(gp, "unset grid\nunset key\nset tics scale 0 font ',9'\nset size ratio -1\n");
    fprintf(gp, "set xrange [-0.5:%g]\nset yrange [%g:-0.5]\nset xtics %d\nset ytics %d\n", E - 0.5,
            E - 0.5, E > 32 ? 16 : 4, E > 32 ? 16 : 4);
    fprintf(gp, "set palette defined (0 '#ffffff', 0.3 '#c6dbef', 0.6 '#4292c6', 1 '#08306b')\n");
    fprintf(gp, "set cbrange [0:%.4g]\nunset colorbox\n", top > 0 ? top : 1);
    for (int s = 0; s < shown; s++) {
        int b = blk[s];
        char t[128];
        if (flow) snprintf(t, sizeof t, "layer %d → %d (lift %.2f)", p->from[b], p->to[b], p->lift[b]);
        else snprintf(t, sizeof t, "layer %d (lift %.2f)", p->from[b], p->lift[b]);
        fprintf(gp, "set title %s font ',11'\n", rep_gq(t, q, sizeof q));
        rep_panel_labels(gp, s, shown, cols, flow ? "'expert j (next layer)'" : "'expert j'", "'expert i'");
        if (s == shown - 1)
            fprintf(gp, "set colorbox user origin screen %.3f, screen 0.25 size screen 0.015, screen 0.5\n"
                        "set cblabel '%s' font ',11'\n",
                    1 - 140.0 / w, flow ? "P(j next | i)" : "P(j | i)");
        fprintf(gp, "plot '%s' index %d u 2:1:3 w image notitle\n", file, s);
    }
    fprintf(gp, "unset multiplot\n");
    return rep_fig_end(o, gp);
}

/* co-activation and flow: one E x E heatmap per block, at most 16 spread over the blocks */
static int pairs_fig(rep_out *o, const olmoe_report_data *d, const olmoe_report_analysis *a, int flow) {
    pairs_data p;
    int rc = read_pairs(d, a, &p);
    if (rc == 0 && p.B > 0) {
        int shown = p.B > 16 ? 16 : p.B;
        int *blk = xmalloc((size_t)shown * sizeof *blk);
        for (int s = 0; s < shown; s++) blk[s] = spread(s, shown, p.B);
        char name[128], file[160];
        fig_name(o, a, name, sizeof name);
        snprintf(file, sizeof file, "%s.dat", name);
        double top;
        rc = write_pairs(o, name, file, &p, blk, shown, flow, &top) != 0
                 ? -1
                 : pairs_script(o, a, name, file, &p, blk, shown, flow, top);
        free(blk);
    }
    pairs_free(&p);
    return rc;
}

/* specialization by group: per layer, the share of each group's tokens routed to each expert */
typedef struct {
    double *rf;      /* [NL, G, E] routed_frac */
    int32_t *layer;  /* [NL] */
    int64_t *gt;     /* [G] group_tokens */
    double *ms;      /* [NL] mean_selected */
    char **gn;       /* [G] group_names */
    int64_t n_gn;
    int NL, G, E;
    /* what is drawn: the largest groups and layers spread over the analysed ones */
    int ng, gsel[4], nls, lsel[4];
} spec_data;

static void spec_free(spec_data *s) {
    free(s->rf);
    free(s->layer);
    free(s->gt);
    free(s->ms);
    rep_free_strings(s->gn, s->gn ? s->n_gn : 0);
}

/* 0 read, -1 + message */
static int read_spec(const olmoe_report_data *d, const olmoe_report_analysis *a, spec_data *s) {
    static const dataset ds[] = {{"routed_frac", OLMOE_H5_F64, 3},
                                 {"layer", OLMOE_H5_I32, 1},
                                 {"group_tokens", OLMOE_H5_I64, 1},
                                 {"mean_selected", OLMOE_H5_F64, 1}};
    void *v[4];
    int64_t dims[4][3];
    char p[600];
    memset(s, 0, sizeof *s);
    if (get_all(d, a, ds, 4, v, dims) != 0) return -1;
    s->rf = v[0], s->layer = v[1], s->gt = v[2], s->ms = v[3];
    snprintf(p, sizeof p, "%s/group_names", a->path);
    if (rep_h5_strings(d->h5[a->input], p, &s->gn, &s->n_gn) != 0) {
        olmoe_error_prefix("%s", d->inputs[a->input]);
        return -1;
    }
    s->NL = (int)dims[0][0], s->G = (int)dims[0][1], s->E = (int)dims[0][2];
    if (dims[1][0] != s->NL || dims[2][0] != s->G || s->n_gn != s->G || dims[3][0] != s->NL)
        return olmoe_errorf("%s: /%s: datasets of different sizes", d->inputs[a->input], a->path);
    return 0;
}

/* the largest groups (at most 4) and up to 4 layers spread over the analysed ones */
static void spec_pick(spec_data *s) {
    s->ng = s->G < 4 ? s->G : 4;
    s->nls = s->NL < 4 ? s->NL : 4;
    int used[4096] = {0};
    for (int k = 0; k < s->ng; k++) {
        int best = -1;
        for (int g = 0; g < s->G && g < 4096; g++)
            if (!used[g] && (best < 0 || s->gt[g] > s->gt[best])) best = g;
        s->gsel[k] = best;
        used[best] = 1;
    }
    for (int k = 0; k < s->nls; k++) s->lsel[k] = spread(k, s->nls, s->NL);
}

/* a block per layer shown: per expert, the picked groups' shares and the uniform share */
static int write_spec(rep_out *o, const char *name, const char *file, const spec_data *s) {
    const int G = s->G, E = s->E;
    FILE *f = rep_file(o, file);
    if (!f) return -1;
    fprintf(f, "# %s: share of each group's tokens routed to each expert (routed_frac), one block per "
               "layer shown (gnuplot: index N)\n# expert", name);
    for (int k = 0; k < s->ng; k++) fprintf(f, " \"%s\"", s->gn[s->gsel[k]]);
    fprintf(f, " uniform(mean_selected/E)\n");
    for (int b = 0; b < s->nls; b++) {
        int l = s->lsel[b];
        rep_block(f, b, "layer %d", s->layer[l]);
        for (int e = 0; e < E; e++) {
            fprintf(f, "%d", e);
            for (int k = 0; k < s->ng; k++) {
                fputc(' ', f);
                rep_put_num(f, s->rf[((size_t)l * G + s->gsel[k]) * E + e]);
            }
            fputc(' ', f);
            rep_put_num(f, s->ms[l] / E);
            fputc('\n', f);
        }
    }
    return rep_close(f, file);
}

/* a panel per layer shown: a bar per expert and group, over the uniform line */
static int spec_script(rep_out *o, const olmoe_report_analysis *a, const char *name, const char *file,
                       const spec_data *s) {
    const int ng = s->ng, nls = s->nls;
    char title[400], which[64] = "", q[1024];
    if (ng < s->G) snprintf(which, sizeof which, " (the %d largest of %d groups)", ng, s->G);
    snprintf(title, sizeof title, "Domain specialization under %s: share of each group's tokens routed to each expert%s",
             a->name, which);
    int w = 1500, h = 300 * nls + 120;
    FILE *gp = analysis_fig_begin(o, a, name, title, w, h);
    if (!gp) return -1;
    fprintf(gp, "set multiplot layout %d,1 title %s font ',14' margins %.3f,%.3f,%.3f,%.3f spacing 0,%.3f\n", nls,
            rep_gq(title, q, sizeof q), 90.0 / w, 1 - 190.0 / w, 60.0 / h, 1 - 85.0 / h, 80.0 / h);
    double bw = 0.84 / ng;
    fprintf(gp, "set boxwidth %.4g absolute\nset style fill solid 0.9 noborder\nset grid noxtics\n", bw);
    fprintf(gp, "set xrange [-0.6:%g]\nset xtics %d\nset yrange [0:*]\n", s->E - 0.4, s->E > 32 ? 4 : 1);
    fprintf(gp, "set key outside right top vertical Left reverse font ',10'\n");
    for (int b = 0; b < nls; b++) {
        fprintf(gp, "set title 'layer %d' font ',11'\n%s\n", s->layer[s->lsel[b]], b == 0 ? "set key" : "unset key");
        rep_panel_labels(gp, b, nls, 1, "'expert'", "'share of tokens'");
        fprintf(gp, "plot ");
        for (int k = 0; k < ng; k++)
            fprintf(gp, "'%s' index %d u ($1%+.4f):%d w boxes lc rgb '%s' %s%s, ", file, b, (k - (ng - 1) / 2.0) * bw,
                    k + 2, rep_colors[k % rep_n_colors], b == 0 ? "t " : "",
                    b == 0 ? rep_gq(s->gn[s->gsel[k]], q, sizeof q) : "notitle");
        /* rep_gq's buffer is reused: titles written before the next call */
        fprintf(gp, "'%s' index %d u 1:%d w l dt 2 lw 1.6 lc rgb '#333333' %s\n", file, b, ng + 2,
                b == 0 ? "t 'uniform (k/E)'" : "notitle");
    }
    fprintf(gp, "unset multiplot\n");
    return rep_fig_end(o, gp);
}

/* the paper's domain specialization: per layer, the share of each group's
 * tokens routed to each expert, for the largest groups, over a uniform line */
static int spec_group_fig(rep_out *o, const olmoe_report_data *d, const olmoe_report_analysis *a) {
    spec_data s;
    int rc = read_spec(d, a, &s);
    if (rc == 0 && s.NL > 0 && s.G > 0) {
        spec_pick(&s);
        char name[128], file[160];
        fig_name(o, a, name, sizeof name);
        snprintf(file, sizeof file, "%s.dat", name);
        rc = write_spec(o, name, file, &s) != 0 ? -1 : spec_script(o, a, name, file, &s);
    }
    spec_free(&s);
    return rc;
}

/* one line (or bar group) per layer of a few per-layer numbers */
typedef struct {
    const char *dataset, *title;
} series;

static int per_layer_fig(rep_out *o, const olmoe_report_data *d, const olmoe_report_analysis *a,
                         const series *s, int ns, int bars, const char *title, const char *ylabel) {
    int64_t dl[1], dv[1];
    int32_t *layer = get(d, a, "layer", OLMOE_H5_I32, 1, dl);
    double *v[8] = {0};
    int rc = -1;
    char name[128], file[160], q[1024];
    if (!layer) goto out;
    for (int k = 0; k < ns; k++) {
        v[k] = get(d, a, s[k].dataset, OLMOE_H5_F64, 1, dv);
        if (!v[k]) goto out;
        if (dv[0] != dl[0]) {
            olmoe_errorf("%s: /%s/%s: %lld values for %lld layers", d->inputs[a->input], a->path, s[k].dataset,
                         (long long)dv[0], (long long)dl[0]);
            goto out;
        }
    }
    const int NL = (int)dl[0];
    if (NL == 0) {
        rc = 0;
        goto out;
    }
    fig_name(o, a, name, sizeof name);
    snprintf(file, sizeof file, "%s.dat", name);
    FILE *f = rep_file(o, file);
    if (!f) goto out;
    fprintf(f, "# %s: %s\n# layer", name, title);
    for (int k = 0; k < ns; k++) fprintf(f, " %s", s[k].dataset);
    fputc('\n', f);
    for (int l = 0; l < NL; l++) {
        fprintf(f, "%d", layer[l]);
        for (int k = 0; k < ns; k++) {
            fputc(' ', f);
            rep_put_num(f, v[k][l]);
        }
        fputc('\n', f);
    }
    if (rep_close(f, file)) goto out;
    char full[400];
    snprintf(full, sizeof full, "%s (%s)", title, a->name);
    FILE *gp = analysis_fig_begin(o, a, name, full, 1200, 700);
    if (!gp) goto out;
    fprintf(gp, "set title %s\nset xlabel 'layer'\nset ylabel %s\n", rep_gq(full, q, sizeof q),
            rep_gq(ylabel, q + 512, sizeof q - 512));
    int lo = layer[0], hi = layer[NL - 1];
    fprintf(gp, "set xrange [%g:%g]\nset xtics 1\nset yrange [%s]\n"
                "set bmargin %d\nset key at screen 0.5, screen 0.015 center bottom vertical Left reverse\n",
            lo - 0.6, hi + 0.6, bars ? "0:1.05" : "*<0:1.02", ns + 5);
    if (hi - lo > 16) fprintf(gp, "set xtics 2\n");
    if (bars) {
        double bw = 0.8 / ns;
        fprintf(gp, "set boxwidth %.4g absolute\nset style fill solid 0.9 noborder\nset grid noxtics\n", bw);
    }
    fprintf(gp, "plot ");
    for (int k = 0; k < ns; k++) {
        if (bars)
            fprintf(gp, "%s'%s' u ($1%+.4f):%d w boxes lc rgb '%s' t %s", k ? ", " : "", file,
                    (k - (ns - 1) / 2.0) * (0.8 / ns), k + 2, rep_colors[k % rep_n_colors],
                    rep_gq(s[k].title, q, sizeof q));
        else
            fprintf(gp, "%s'%s' u 1:%d w lp lw 2 pt %d ps 1.5 lc rgb '%s' t %s", k ? ", " : "", file, k + 2,
                    rep_point_types[k % rep_n_point_types], rep_colors[k % rep_n_colors],
                    rep_gq(s[k].title, q, sizeof q));
    }
    fprintf(gp, "\n");
    rc = rep_fig_end(o, gp);
out:
    free(layer);
    for (int k = 0; k < ns; k++) free(v[k]);
    return rc;
}

int rep_fig_analyze(rep_out *o, const olmoe_report_data *d) {
    for (int i = 0; i < d->n_analyses; i++) {
        const olmoe_report_analysis *a = &d->an[i];
        int rc = 0;
        if (!strcmp(a->analysis, "coactivation")) {
            rc = pairs_fig(o, d, a, 0);
        } else if (!strcmp(a->analysis, "flow")) {
            rc = pairs_fig(o, d, a, 1);
        } else if (!strcmp(a->analysis, "specialization_group")) {
            rc = spec_group_fig(o, d, a);
        } else if (!strcmp(a->analysis, "specialization_token")) {
            static const series s[] = {
                {"mean_top_share", "share routed to the top expert (weighted by occurrences)"},
                {"mean_top_share_ids", "the same, each token id counted once"},
                {"uniform_share", "without specialization (mean k / E)"}};
            rc = per_layer_fig(o, d, a, s, 3, 1, "Token-id specialization: share of an id's occurrences routed to its top expert",
                               "share of occurrences");
        } else if (!strcmp(a->analysis, "compare")) {
            static const series s[] = {{"overlap", "top-k overlap |A∩B| / k"},
                                       {"top1_agree", "same first expert"},
                                       {"exact_agree", "same set"},
                                       {"spearman", "Spearman ρ of the logits"}};
            rc = per_layer_fig(o, d, a, s, 4, 0, "Router saturation: agreement of two traces' routing",
                               "agreement (share of tokens; ρ)");
        } else {
            notef("%s: /%s: an analysis the report does not draw", d->inputs[a->input], a->path);
        }
        if (rc != 0) return -1;
    }
    return 0;
}
