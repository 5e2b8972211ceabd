/* analyze_spec_group.c: domain specialization, the OLMoE paper's question of
 * whether experts serve some document groups (Brown genres, domains) more
 * than their share of the text. Each selection of expert e by a token of
 * group g is one event; counts are [layer, expert, group]. */
#include "common.h"
#include "analyze.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void olmoe_analyze_groupspec_free(olmoe_analyze_groupspec *g) {
    if (!g) return;
    for (int i = 0; g->group_names && i < g->G; i++) free(g->group_names[i]);
    free(g->group_names), free(g->layers), free(g->group_tokens), free(g->group_share);
    free(g->count), free(g->share), free(g->lift), free(g->routed_frac), free(g->nmi);
    free(g->max_lift_mean), free(g->mean_selected), free(g->top_e), free(g->top_g);
    memset(g, 0, sizeof *g);
}

typedef struct {
    double lift;
    int64_t count;
    int e, g;
} cell;

static int cell_cmp(const void *a, const void *b) {
    const cell *x = a, *y = b;
    if (x->lift != y->lift) return x->lift > y->lift ? -1 : 1;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    if (x->e != y->e) return x->e < y->e ? -1 : 1;
    return (x->g > y->g) - (x->g < y->g);
}

static void finish(olmoe_analyze_groupspec *o) {
    const int E = o->E, G = o->G;
    int64_t total = 0;
    for (int g = 0; g < G; g++) total += o->group_tokens[g];
    for (int g = 0; g < G; g++) o->group_share[g] = total ? (double)o->group_tokens[g] / total : NAN;
    cell *c = xmalloc(xmul((size_t)E, (size_t)G * sizeof *c));
    for (int li = 0; li < o->n_layers; li++) {
        const int64_t *cnt = o->count + (size_t)li * E * G;
        double *sh = o->share + (size_t)li * E * G, *lf = o->lift + (size_t)li * E * G;
        double *rf = o->routed_frac + (size_t)li * G * E;
        double N = 0, wsum = 0, wlift = 0;
        double *pg = xcalloc((size_t)G, sizeof *pg);
        int nc = 0;
        for (int e = 0; e < E; e++) {
            int64_t se = 0;
            for (int g = 0; g < G; g++) se += cnt[(size_t)e * G + g];
            double best = NAN;
            for (int g = 0; g < G; g++) {
                size_t at = (size_t)e * G + g;
                sh[at] = se ? (double)cnt[at] / (double)se : NAN;
                lf[at] = se && o->group_share[g] > 0 ? sh[at] / o->group_share[g] : NAN;
                rf[(size_t)g * E + e] =
                    o->group_tokens[g] ? (double)cnt[at] / (double)o->group_tokens[g] : NAN;
                if (!isnan(lf[at]) && (isnan(best) || lf[at] > best)) best = lf[at];
                pg[g] += (double)cnt[at];
                if (cnt[at] >= o->min_count && cnt[at] > 0 && !isnan(lf[at]))
                    c[nc++] = (cell){lf[at], cnt[at], e, g};
            }
            N += (double)se;
            if (se && !isnan(best)) wsum += (double)se, wlift += (double)se * best;
        }
        /* mutual information of (expert, group) over selection events, over H(group) */
        double I = 0, H = 0;
        for (int g = 0; g < G; g++)
            if (pg[g] > 0) H -= pg[g] / N * log(pg[g] / N);
        for (int e = 0; e < E; e++) {
            double pe = 0;
            for (int g = 0; g < G; g++) pe += (double)cnt[(size_t)e * G + g];
            for (int g = 0; g < G; g++) {
                double x = (double)cnt[(size_t)e * G + g];
                if (x > 0) I += x / N * log(x * N / (pe * pg[g]));
            }
        }
        free(pg);
        o->nmi[li] = N > 0 && H > 0 ? I / H : NAN;
        o->max_lift_mean[li] = wsum > 0 ? wlift / wsum : NAN;
        o->mean_selected[li] = total ? N / (double)total : NAN;
        qsort(c, (size_t)nc, sizeof *c, cell_cmp);
        for (int t = 0; t < o->top; t++) {
            size_t at = (size_t)li * o->top + t;
            o->top_e[at] = t < nc ? c[t].e : -1;
            o->top_g[at] = t < nc ? c[t].g : -1;
        }
    }
    free(c);
}

int olmoe_analyze_spec_group(olmoe_analyze_src *s, int64_t min_count, int top,
                             olmoe_analyze_groupspec *o) {
    if (!s->opts.want_groups)
        return olmoe_errorf("%s: the source was opened without document groups (a bug)", s->path);
    memset(o, 0, sizeof *o);
    const int E = s->E, G = (int)s->n_groups, NL = s->n_layers, K = s->K, L = s->L;
    o->n_layers = NL, o->E = E, o->G = G, o->top = top, o->min_count = min_count;
    size_t lbt = xmul((size_t)NL, (size_t)(top > 0 ? top : 1)), leg = xmul(xmul((size_t)NL, E), G);
    o->layers = xmalloc((size_t)NL * sizeof *o->layers);
    memcpy(o->layers, s->layers, (size_t)NL * sizeof *o->layers);
    o->group_names = xcalloc((size_t)G, sizeof *o->group_names);
    for (int g = 0; g < G; g++) o->group_names[g] = xstrdup(s->group_names[g]);
    o->group_tokens = xcalloc((size_t)G, sizeof *o->group_tokens);
    o->group_share = xcalloc((size_t)G, sizeof *o->group_share);
    o->count = xcalloc(leg, sizeof *o->count);
    o->share = xcalloc(leg, sizeof *o->share);
    o->lift = xcalloc(leg, sizeof *o->lift);
    o->routed_frac = xcalloc(leg, sizeof *o->routed_frac);
    o->nmi = xcalloc((size_t)NL, sizeof *o->nmi);
    o->max_lift_mean = xcalloc((size_t)NL, sizeof *o->max_lift_mean);
    o->mean_selected = xcalloc((size_t)NL, sizeof *o->mean_selected);
    o->top_e = xcalloc(lbt, sizeof *o->top_e);
    o->top_g = xcalloc(lbt, sizeof *o->top_g);
    olmoe_analyze_chunk c;
    int r;
    olmoe_analyze_src_rewind(s);
    while ((r = olmoe_analyze_src_next(s, &c)) == 1) {
        for (int64_t t = 0; t < c.n; t++) {
            int g = c.group[t];
            if (g < 0) {
                o->no_group_tokens++;
                continue;
            }
            o->group_tokens[g]++;
            for (int li = 0; li < NL; li++) {
                size_t rl = (size_t)t * L + (size_t)s->layers[li];
                const int16_t *sel = c.sel + rl * K;
                int64_t *cnt = o->count + (size_t)li * E * G + g;
                for (int x = 0; x < c.n_sel[rl]; x++) cnt[(size_t)sel[x] * G]++;
            }
        }
    }
    if (r < 0) {
        olmoe_analyze_groupspec_free(o);
        return -1;
    }
    int64_t grouped = 0;
    for (int g = 0; g < G; g++) grouped += o->group_tokens[g];
    if (grouped == 0) {
        olmoe_analyze_groupspec_free(o);
        return olmoe_errorf("%s: no analysed token belongs to a document with a group", s->path);
    }
    finish(o);
    return 0;
}

/* ---- output ---- */

void olmoe_analyze_groupspec_print(const olmoe_analyze_groupspec *o, FILE *f) {
    const int E = o->E, G = o->G;
    int w = 5;
    for (int g = 0; g < G; g++)
        if ((int)strlen(o->group_names[g]) > w) w = (int)strlen(o->group_names[g]);
    if (w > 40) w = 40;
    fprintf(f, "# groups\n%-*s %10s %8s\n", w, "group", "tokens", "share");
    for (int g = 0; g < G; g++)
        fprintf(f, "%-*.*s %10lld %8.4f\n", w, w, o->group_names[g], (long long)o->group_tokens[g],
                o->group_share[g]);
    if (o->no_group_tokens) fprintf(f, "(%lld tokens in no group are left out)\n",
                                    (long long)o->no_group_tokens);
    fprintf(f, "\n# per layer\n%5s %8s %8s %13s\n", "layer", "experts", "nmi", "max_lift_mean");
    for (int li = 0; li < o->n_layers; li++)
        fprintf(f, "%5d %8.3f %8.4f %13.3f\n", o->layers[li], o->mean_selected[li], o->nmi[li],
                o->max_lift_mean[li]);
    if (o->top <= 0) return;
    fprintf(f, "\n# most specialised experts: share of the expert's selections from the group "
               "vs the group's share of tokens (cells of >= %lld selections)\n",
            (long long)o->min_count);
    fprintf(f, "%5s %6s %-*s %10s %8s %8s %7s\n", "layer", "expert", w, "group", "count", "share",
            "g_share", "lift");
    for (int li = 0; li < o->n_layers; li++)
        for (int t = 0; t < o->top; t++) {
            size_t at = (size_t)li * o->top + t;
            int e = o->top_e[at], g = o->top_g[at];
            if (e < 0) break;
            size_t c = ((size_t)li * E + e) * G + g;
            fprintf(f, "%5d %6d %-*.*s %10lld %8.4f %8.4f %7.3f\n", o->layers[li], e, w, w,
                    o->group_names[g], (long long)o->count[c], o->share[c], o->group_share[g],
                    o->lift[c]);
        }
}

static void csv_num(FILE *f, double v, int last) {
    if (!isnan(v)) fprintf(f, "%.9g", v);
    fputc(last ? '\n' : ',', f);
}

int olmoe_analyze_groupspec_csv(const olmoe_analyze_groupspec *o, FILE *f) {
    const int E = o->E, G = o->G;
    fprintf(f, "layer,expert,group,count,share,group_share,lift,routed_frac\n");
    for (int li = 0; li < o->n_layers; li++)
        for (int e = 0; e < E; e++)
            for (int g = 0; g < G; g++) {
                size_t at = ((size_t)li * E + e) * G + g;
                fprintf(f, "%d,%d,", o->layers[li], e);
                olmoe_analyze_csv_str(f, o->group_names[g]);
                fprintf(f, ",%lld,", (long long)o->count[at]);
                csv_num(f, o->share[at], 0);
                csv_num(f, o->group_share[g], 0);
                csv_num(f, o->lift[at], 0);
                csv_num(f, o->routed_frac[((size_t)li * G + g) * E + e], 1);
            }
    return ferror(f) ? -1 : 0;
}

static json_t *matrix(const double *m, int rows, int cols) {
    json_t *a = json_array();
    for (int i = 0; i < rows; i++) {
        json_t *r = json_array();
        for (int j = 0; j < cols; j++) json_array_append_new(r, olmoe_analyze_jnum(m[(size_t)i * cols + j]));
        json_array_append_new(a, r);
    }
    return a;
}

json_t *olmoe_analyze_groupspec_json(const olmoe_analyze_groupspec *o) {
    const int E = o->E, G = o->G;
    json_t *root = json_object(), *groups = json_array(), *layers = json_array();
    for (int g = 0; g < G; g++)
        json_array_append_new(groups, json_pack("{s:o,s:I,s:o}", "name", olmoe_json_str(o->group_names[g]),
                                                "tokens", (json_int_t)o->group_tokens[g], "share",
                                                olmoe_analyze_jnum(o->group_share[g])));
    for (int li = 0; li < o->n_layers; li++) {
        json_t *l = json_object(), *top = json_array(), *cnt = json_array();
        for (int t = 0; t < o->top; t++) {
            size_t at = (size_t)li * o->top + t;
            int e = o->top_e[at], g = o->top_g[at];
            if (e < 0) break;
            size_t c = ((size_t)li * E + e) * G + g;
            json_array_append_new(top, json_pack("{s:i,s:o,s:I,s:o,s:o}", "expert", e, "group",
                                                 olmoe_json_str(o->group_names[g]), "count", (json_int_t)o->count[c],
                                                 "share", olmoe_analyze_jnum(o->share[c]), "lift",
                                                 olmoe_analyze_jnum(o->lift[c])));
        }
        for (int e = 0; e < E; e++) {
            json_t *r = json_array();
            for (int g = 0; g < G; g++)
                json_array_append_new(r, json_integer(o->count[((size_t)li * E + e) * G + g]));
            json_array_append_new(cnt, r);
        }
        json_object_set_new(l, "layer", json_integer(o->layers[li]));
        json_object_set_new(l, "mean_selected", olmoe_analyze_jnum(o->mean_selected[li]));
        json_object_set_new(l, "nmi", olmoe_analyze_jnum(o->nmi[li]));
        json_object_set_new(l, "max_lift_mean", olmoe_analyze_jnum(o->max_lift_mean[li]));
        json_object_set_new(l, "top", top);
        json_object_set_new(l, "count", cnt);
        json_object_set_new(l, "share", matrix(o->share + (size_t)li * E * G, E, G));
        json_object_set_new(l, "lift", matrix(o->lift + (size_t)li * E * G, E, G));
        json_object_set_new(l, "routed_frac", matrix(o->routed_frac + (size_t)li * G * E, G, E));
        json_array_append_new(layers, l);
    }
    json_object_set_new(root, "min_count", json_integer(o->min_count));
    json_object_set_new(root, "no_group_tokens", json_integer(o->no_group_tokens));
    json_object_set_new(root, "groups", groups);
    json_object_set_new(root, "layers", layers);
    return root;
}

int olmoe_analyze_groupspec_h5(const olmoe_analyze_groupspec *o, hid_t g) {
    const int64_t NL = o->n_layers, E = o->E, G = o->G, T = o->top;
    int64_t d1[1] = {NL}, dg[1] = {G}, d3[3] = {NL, E, G}, d3t[3] = {NL, G, E}, dt[3] = {NL, T, 2};
    int32_t *cells = xmalloc(xmul((size_t)(NL * T * 2 + 1), sizeof *cells));
    for (int64_t x = 0; x < NL * T; x++) cells[2 * x] = o->top_e[x], cells[2 * x + 1] = o->top_g[x];
    int rc = -1;
    OLMOE_TRY(olmoe_h5_write(g, "layer", OLMOE_H5_I32, 1, d1, o->layers));
    OLMOE_TRY(olmoe_h5_write_strings(g, "group_names", o->group_names, G));
    OLMOE_TRY(olmoe_h5_write(g, "group_tokens", OLMOE_H5_I64, 1, dg, o->group_tokens));
    OLMOE_TRY(olmoe_h5_write(g, "group_share", OLMOE_H5_F64, 1, dg, o->group_share));
    OLMOE_TRY(olmoe_h5_write(g, "count", OLMOE_H5_I64, 3, d3, o->count));
    OLMOE_TRY(olmoe_h5_write(g, "share", OLMOE_H5_F64, 3, d3, o->share));
    OLMOE_TRY(olmoe_h5_write(g, "lift", OLMOE_H5_F64, 3, d3, o->lift));
    OLMOE_TRY(olmoe_h5_write(g, "routed_frac", OLMOE_H5_F64, 3, d3t, o->routed_frac));
    OLMOE_TRY(olmoe_h5_write(g, "nmi", OLMOE_H5_F64, 1, d1, o->nmi));
    OLMOE_TRY(olmoe_h5_write(g, "max_lift_mean", OLMOE_H5_F64, 1, d1, o->max_lift_mean));
    OLMOE_TRY(olmoe_h5_write(g, "mean_selected", OLMOE_H5_F64, 1, d1, o->mean_selected));
    if (T > 0) OLMOE_TRY(olmoe_h5_write(g, "top_cells", OLMOE_H5_I32, 3, dt, cells));
    OLMOE_TRY(olmoe_h5_set_attr_i64(g, ".", "no_group_tokens", o->no_group_tokens));
    OLMOE_TRY(olmoe_h5_set_attr_i64(g, ".", "min_count", o->min_count));
    rc = 0;
fail:
    free(cells);
    return rc;
}
