/* fig_analyze.c: figures of stored olmoe-analyze results (olmoe-analyze(1),
 * "HDF5 results"): co-activation and cross-layer flow heatmaps, domain
 * specialization bars (the OLMoE paper's figure), token specialization bars,
 * and router saturation lines from compare. */
#include "report_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void grid_of(int n, int *rows, int *cols) {
    if (n <= 3) {
        *rows = 1;
        *cols = n;
        return;
    }
    int c = 1;
    while (c * c < n) c++;
    *cols = c;
    *rows = (n + c - 1) / c;
}

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

/* co-activation and flow: one E x E heatmap per block */
static int pairs_fig(rep_out *o, const olmoe_report_data *d, const olmoe_report_analysis *a, int flow) {
    int64_t dp[3], db[1], dl[1], dlift[1];
    double *prob = get(d, a, "prob", OLMOE_H5_F64, 3, dp);
    int32_t *from = prob ? get(d, a, "layer_from", OLMOE_H5_I32, 1, db) : NULL;
    int32_t *to = from ? get(d, a, "layer_to", OLMOE_H5_I32, 1, dl) : NULL;
    double *lift = to ? get(d, a, "lift", OLMOE_H5_F64, 1, dlift) : NULL;
    int rc = -1;
    char name[128], file[160], q[1024];
    if (!lift) goto out;
    const int B = (int)dp[0], E = (int)dp[1];
    if (dp[2] != E || db[0] != B || dl[0] != B || dlift[0] != B) {
        olmoe_errorf("%s: /%s: datasets of different sizes", d->inputs[a->input], a->path);
        goto out;
    }
    if (B == 0) {
        rc = 0;
        goto out;
    }
    int shown = B > 16 ? 16 : B; /* at most 16 panels, spread over the blocks */
    fig_name(o, a, name, sizeof name);
    snprintf(file, sizeof file, "%s.dat", name);
    FILE *f = rep_file(o, file);
    if (!f) goto out;
    fprintf(f, "# %s: %s, one block per %s (gnuplot: index N)%s\n# expert_i expert_j p\n", name,
            flow ? "P(expert j at the next layer | expert i)" : "P(expert j selected | expert i selected)",
            flow ? "pair of layers" : "layer", flow ? "" : "; the diagonal (always 1) is written as 0");
    double top = 0;
    int *blk = xmalloc((size_t)shown * sizeof *blk);
    for (int s = 0; s < shown; s++) blk[s] = shown == B ? s : (int)lround((double)s * (B - 1) / (shown - 1));
    for (int s = 0; s < shown; s++) {
        int b = blk[s];
        fprintf(f, "%s# layer %d -> %d\n", s ? "\n\n" : "", from[b], to[b]);
        for (int i = 0; i < E; i++) {
            for (int j = 0; j < E; j++) {
                double v = prob[((size_t)b * E + i) * E + j];
                if (!flow && i == j) v = 0;
                if (!isfinite(v)) v = 0;
                if (v > top) top = v;
                fprintf(f, "%d %d %.6g\n", i, j, v);
            }
            fputc('\n', f);
        }
    }
    if (rep_close(f, file)) {
        free(blk);
        goto out;
    }
    int rows, cols;
    grid_of(shown, &rows, &cols);
    int w = cols == 1 ? 800 : 480 * cols + 190, h = cols == 1 ? 700 : 430 * rows + 90;
    char title[400];
    snprintf(title, sizeof title, "%s under %s%s",
             flow ? "Cross-layer flow: P(expert j at the next layer | expert i)"
                  : "Expert co-activation: P(j selected | i selected)",
             a->name, flow ? "" : " (diagonal left out)");
    FILE *gp = rep_fig_begin(o, name, "analyze", title, w, h);
    if (!gp) {
        free(blk);
        goto out;
    }
    snprintf(o->figs[o->n_figs - 1].key, sizeof o->figs[0].key, "%s", a->path);
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
        if (flow) snprintf(t, sizeof t, "layer %d → %d (lift %.2f)", from[b], to[b], lift[b]);
        else snprintf(t, sizeof t, "layer %d (lift %.2f)", from[b], lift[b]);
        fprintf(gp, "set title %s font ',11'\n", rep_gq(t, q, sizeof q));
        fprintf(gp, "set xlabel %s\nset ylabel %s\n", s + cols >= shown ? (flow ? "'expert j (next layer)'" : "'expert j'") : "''",
                s % cols == 0 ? "'expert i'" : "''");
        if (s == shown - 1)
            fprintf(gp, "set colorbox user origin screen %.3f, screen 0.25 size screen 0.015, screen 0.5\n"
                        "set cblabel '%s' font ',11'\n",
                    1 - 140.0 / w, flow ? "P(j next | i)" : "P(j | i)");
        fprintf(gp, "plot '%s' index %d u 2:1:3 w image notitle\n", file, s);
    }
    fprintf(gp, "unset multiplot\n");
    free(blk);
    rc = rep_fig_end(o, gp);
out:
    free(prob);
    free(from);
    free(to);
    free(lift);
    return rc;
}

/* the paper's domain specialization: per layer, the share of each group's
 * tokens routed to each expert, for the largest groups, over a uniform line */
static int spec_group_fig(rep_out *o, const olmoe_report_data *d, const olmoe_report_analysis *a) {
    int64_t dr[3], dl[1], dg[1], dm[1], dn;
    double *rf = get(d, a, "routed_frac", OLMOE_H5_F64, 3, dr);
    int32_t *layer = rf ? get(d, a, "layer", OLMOE_H5_I32, 1, dl) : NULL;
    int64_t *gt = layer ? get(d, a, "group_tokens", OLMOE_H5_I64, 1, dg) : NULL;
    double *ms = gt ? get(d, a, "mean_selected", OLMOE_H5_F64, 1, dm) : NULL;
    char **gn = NULL, p[600], name[128], file[160], q[1024];
    int rc = -1;
    if (!ms) goto out;
    snprintf(p, sizeof p, "%s/group_names", a->path);
    if (rep_h5_strings(d->h5[a->input], p, &gn, &dn) != 0) {
        olmoe_error_prefix("%s", d->inputs[a->input]);
        goto out;
    }
    const int NL = (int)dr[0], G = (int)dr[1], E = (int)dr[2];
    if (dl[0] != NL || dg[0] != G || dn != G || dm[0] != NL) {
        olmoe_errorf("%s: /%s: datasets of different sizes", d->inputs[a->input], a->path);
        goto out;
    }
    if (NL == 0 || G == 0) {
        rc = 0;
        goto out;
    }
    /* the largest groups (at most 4) and up to 4 layers spread over the analysed ones */
    int ng = G < 4 ? G : 4, gsel[4], nls = NL < 4 ? NL : 4, lsel[4];
    int used[4096] = {0};
    for (int k = 0; k < ng; k++) {
        int best = -1;
        for (int g = 0; g < G && g < 4096; g++)
            if (!used[g] && (best < 0 || gt[g] > gt[best])) best = g;
        gsel[k] = best;
        used[best] = 1;
    }
    for (int k = 0; k < nls; k++) lsel[k] = nls == NL ? k : (int)lround((double)k * (NL - 1) / (nls - 1));
    fig_name(o, a, name, sizeof name);
    snprintf(file, sizeof file, "%s.dat", name);
    FILE *f = rep_file(o, file);
    if (!f) goto out;
    fprintf(f, "# %s: share of each group's tokens routed to each expert (routed_frac), one block per "
               "layer shown (gnuplot: index N)\n# expert", name);
    for (int k = 0; k < ng; k++) fprintf(f, " \"%s\"", gn[gsel[k]]);
    fprintf(f, " uniform(mean_selected/E)\n");
    for (int s = 0; s < nls; s++) {
        int l = lsel[s];
        fprintf(f, "%s# layer %d\n", s ? "\n\n" : "", layer[l]);
        for (int e = 0; e < E; e++) {
            fprintf(f, "%d", e);
            for (int k = 0; k < ng; k++) {
                fputc(' ', f);
                rep_put_num(f, rf[((size_t)l * G + gsel[k]) * E + e]);
            }
            fputc(' ', f);
            rep_put_num(f, ms[l] / E);
            fputc('\n', f);
        }
    }
    if (rep_close(f, file)) goto out;
    char title[400];
    char which[64] = "";
    if (ng < G) snprintf(which, sizeof which, " (the %d largest of %d groups)", ng, G);
    snprintf(title, sizeof title, "Domain specialization under %s: share of each group's tokens routed to each expert%s",
             a->name, which);
    int w = 1500, h = 300 * nls + 120;
    FILE *gp = rep_fig_begin(o, name, "analyze", title, w, h);
    if (!gp) goto out;
    snprintf(o->figs[o->n_figs - 1].key, sizeof o->figs[0].key, "%s", a->path);
    fprintf(gp, "set multiplot layout %d,1 title %s font ',14' margins %.3f,%.3f,%.3f,%.3f spacing 0,%.3f\n", nls,
            rep_gq(title, q, sizeof q), 90.0 / w, 1 - 190.0 / w, 60.0 / h, 1 - 85.0 / h, 80.0 / h);
    double bw = 0.84 / ng;
    fprintf(gp, "set boxwidth %.4g absolute\nset style fill solid 0.9 noborder\nset grid noxtics\n", bw);
    fprintf(gp, "set xrange [-0.6:%g]\nset xtics %d\nset yrange [0:*]\n", E - 0.4, E > 32 ? 4 : 1);
    fprintf(gp, "set key outside right top vertical Left reverse font ',10'\n");
    for (int s = 0; s < nls; s++) {
        fprintf(gp, "set title 'layer %d' font ',11'\n%s\n", layer[lsel[s]], s == 0 ? "set key" : "unset key");
        fprintf(gp, "set xlabel %s\nset ylabel 'share of tokens'\n", s == nls - 1 ? "'expert'" : "''");
        fprintf(gp, "plot ");
        for (int k = 0; k < ng; k++)
            fprintf(gp, "'%s' index %d u ($1%+.4f):%d w boxes lc rgb '%s' %s%s, ", file, s, (k - (ng - 1) / 2.0) * bw,
                    k + 2, rep_colors[k % rep_n_colors], s == 0 ? "t " : "",
                    s == 0 ? rep_gq(gn[gsel[k]], q, sizeof q) : "notitle");
        /* rep_gq's buffer is reused: titles written before the next call */
        fprintf(gp, "'%s' index %d u 1:%d w l dt 2 lw 1.6 lc rgb '#333333' %s\n", file, s, ng + 2,
                s == 0 ? "t 'uniform (k/E)'" : "notitle");
    }
    fprintf(gp, "unset multiplot\n");
    rc = rep_fig_end(o, gp);
out:
    free(rf);
    free(layer);
    free(gt);
    free(ms);
    rep_free_strings(gn, gn ? dn : 0);
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
    FILE *gp = rep_fig_begin(o, name, "analyze", full, 1200, 700);
    if (!gp) goto out;
    snprintf(o->figs[o->n_figs - 1].key, sizeof o->figs[0].key, "%s", a->path);
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
