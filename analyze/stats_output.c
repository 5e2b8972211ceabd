/* stats_output.c: the stats as a table, JSON (jansson), CSV and HDF5
 * (/stats/<name>/..., the policy id made typable; layout in
 * man/olmoe-replay.1). Every number comes from olmoe_stats_summarize or the
 * raw counts. */
#include "common.h"
#include "stats.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *scope_name(const olmoe_stats *st, int scope) {
    return scope == OLMOE_STATS_ALL ? "all" : st->group_names[scope - 1];
}

void olmoe_stats_print_table(const olmoe_stats *st, FILE *f, int per_layer) {
    fprintf(f, "# %lld tokens x %d layers, baseline top-%d; flops = mean k / baseline k, cover = "
               "share of the baseline's experts kept, Mtl/s = M token-layers per CPU second\n",
            (long long)st->n_tokens, st->n_layers, st->top_k);
    fprintf(f, "%-58s %6s %5s %5s %5s %6s %6s %7s %7s\n", "policy", "mean_k", "sd_k", "@min",
            "@max", "cover", "flops", "load_cv", "Mtl/s");
    for (int p = 0; p < st->n_policies; p++) {
        olmoe_stats_summary s;
        olmoe_stats_summarize(st, p, OLMOE_STATS_ALL, -1, &s);
        double rate = st->pol[p].seconds > 0 ? (double)s.n / st->pol[p].seconds / 1e6 : 0;
        fprintf(f, "%-58s %6.3f %5.2f %5.3f %5.3f %6.4f %6.4f %7.4f %7.2f\n", st->pol[p].policy->id,
                s.mean_k, s.sd_k, s.share_min_k, s.share_max_k, s.coverage, s.flops_vs_baseline,
                s.load_cv, rate);
        if (!per_layer) continue;
        for (int l = 0; l < st->n_layers; l++) {
            olmoe_stats_summarize(st, p, OLMOE_STATS_ALL, l, &s);
            char name[32];
            snprintf(name, sizeof name, "  layer %d", l);
            fprintf(f, "%-58s %6.3f %5.2f %5.3f %5.3f %6.4f %6.4f %7.4f\n", name, s.mean_k, s.sd_k,
                    s.share_min_k, s.share_max_k, s.coverage, s.flops_vs_baseline, s.load_cv);
        }
    }
}

/* ---- JSON ---- */

static json_t *summary_json(const olmoe_stats_summary *s) {
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "token_layers",
                     (json_int_t)s->n, "mean_k", s->mean_k, "sd_k", s->sd_k, "share_min_k",
                     s->share_min_k, "share_max_k", s->share_max_k, "overlap_mean",
                     s->overlap_mean, "coverage", s->coverage, "precision", s->precision,
                     "flops_vs_baseline", s->flops_vs_baseline, "compute_saved",
                     1 - s->flops_vs_baseline, "load_cv", s->load_cv);
}

static json_t *int_array(const int64_t *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer((json_int_t)v[i]));
    return a;
}

/* overall and per-layer summaries of one policy in one scope */
static json_t *scope_json(const olmoe_stats *st, int p, int scope) {
    const olmoe_stats_policy *sp = &st->pol[p];
    const int L = st->n_layers, E = st->n_experts;
    olmoe_stats_summary s;
    olmoe_stats_summarize(st, p, scope, -1, &s);
    json_t *o = summary_json(&s);
    int64_t *hist = xcalloc((size_t)E + 1, sizeof *hist);
    json_t *layers = json_array();
    for (int l = 0; l < L; l++) {
        size_t sl = (size_t)scope * L + (size_t)l;
        const int64_t *h = sp->k_hist + sl * (size_t)(E + 1);
        for (int k = 0; k <= E; k++) hist[k] += h[k];
        olmoe_stats_summarize(st, p, scope, l, &s);
        json_t *lj = summary_json(&s);
        json_object_set_new(lj, "layer", json_integer(l));
        json_object_set_new(lj, "hist", int_array(h, E + 1));
        json_object_set_new(lj, "load", int_array(sp->load + sl * (size_t)E, E));
        json_array_append_new(layers, lj);
    }
    json_object_set_new(o, "hist", int_array(hist, E + 1));
    json_object_set_new(o, "layers", layers);
    free(hist);
    return o;
}

static json_t *params_json(const olmoe_policy *pol) {
    json_t *o = json_object();
    const olmoe_policy_family *f = pol->family;
    for (int i = 0; i < f->n_params; i++) {
        const olmoe_param_info *pi = &olmoe_param_table[f->params[i].id];
        double v = pol->param[f->params[i].id];
        if (pi->type == OLMOE_PARAM_ENUM)
            json_object_set_new(o, pi->name, olmoe_json_str(pi->names[(int)v]));
        else if (pi->type == OLMOE_PARAM_INT)
            json_object_set_new(o, pi->name, json_integer((json_int_t)v));
        else
            json_object_set_new(o, pi->name, json_real(v));
    }
    return o;
}

int olmoe_stats_write_json(const olmoe_stats *st, const char *path, const char *trace_path,
                           const char *kde_path) {
    json_t *root = json_pack(
        "{s:s, s:i, s:o, s:o, s:I, s:i, s:i, s:i, s:f}", "format", OLMOE_STATS_FORMAT,
        "format_version", OLMOE_STATS_FORMAT_VERSION, "trace", olmoe_json_str(trace_path),
        "kde", olmoe_json_str(kde_path), "n_tokens", (json_int_t)st->n_tokens, "n_layers",
        st->n_layers, "n_experts", st->n_experts, "baseline_top_k", st->top_k, "seconds",
        st->seconds_total);
    json_object_set_new(
        root, "definitions",
        json_pack("{s:s, s:s, s:s, s:s, s:s}", "hist", "hist[k]: token-layers that used k experts",
                  "coverage", "sum |S and B| / (token-layers * baseline_top_k), B = baseline top-k",
                  "precision", "mean of |S and B| / |S|", "flops_vs_baseline",
                  "mean_k / baseline_top_k (expert FLOPs scale with the number of experts)",
                  "load_cv", "sd / mean of the per-expert load of a layer; overall: mean over layers"));
    json_t *groups = json_array();
    for (int g = 1; g < st->n_scopes; g++)
        json_array_append_new(groups, olmoe_json_str(st->group_names[g - 1]));
    json_object_set_new(root, "groups", groups);
    json_t *pols = json_array();
    for (int p = 0; p < st->n_policies; p++) {
        const olmoe_stats_policy *sp = &st->pol[p];
        olmoe_stats_summary s;
        olmoe_stats_summarize(st, p, OLMOE_STATS_ALL, -1, &s);
        json_t *pj = json_pack("{s:o, s:s, s:o, s:i, s:i, s:f, s:f}", "id",
                               olmoe_json_str(sp->policy->id), "family", sp->policy->family->name,
                               "params", params_json(sp->policy), "min_k", sp->min_k, "max_k", sp->max_k, "seconds", sp->seconds,
                               "token_layers_per_s", sp->seconds > 0 ? (double)s.n / sp->seconds : 0.0);
        json_object_set_new(pj, "overall", scope_json(st, p, OLMOE_STATS_ALL));
        json_t *gj = json_array();
        for (int g = 1; g < st->n_scopes; g++) {
            json_t *one = scope_json(st, p, g);
            json_object_set_new(one, "group", olmoe_json_str(st->group_names[g - 1]));
            json_array_append_new(gj, one);
        }
        json_object_set_new(pj, "groups", gj);
        json_array_append_new(pols, pj);
    }
    json_object_set_new(root, "policies", pols);
    int rc = olmoe_json_write(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(10), path);
    json_decref(root);
    return rc;
}

/* ---- CSV ---- */

int olmoe_stats_write_csv(const olmoe_stats *st, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return olmoe_errorf("%s: cannot create", path);
    fprintf(f, "policy,group,layer,token_layers,mean_k,sd_k,share_min_k,share_max_k,overlap_mean,"
               "coverage,precision,flops_vs_baseline,load_cv\n");
    for (int p = 0; p < st->n_policies; p++)
        for (int g = 0; g < st->n_scopes; g++)
            for (int l = -1; l < st->n_layers; l++) {
                olmoe_stats_summary s;
                olmoe_stats_summarize(st, p, g, l, &s);
                olmoe_csv_field(f, st->pol[p].policy->id);
                fputc(',', f);
                olmoe_csv_field(f, scope_name(st, g));
                if (l < 0)
                    fprintf(f, ",all");
                else
                    fprintf(f, ",%d", l);
                fprintf(f, ",%lld,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g\n",
                        (long long)s.n, s.mean_k, s.sd_k, s.share_min_k, s.share_max_k,
                        s.overlap_mean, s.coverage, s.precision, s.flops_vs_baseline, s.load_cv);
            }
    return olmoe_fclose_out(f, path);
}

/* ---- HDF5 ---- */

/* the group stats/<name> for policy id, made empty: an existing one is
 * refused unless replace, else deleted, leaving its name free for the new */
static int claim_group(hid_t loc, const char *id, int replace, char *g, size_t n) {
    char *path = NULL;
    int ex = olmoe_result_find(loc, "stats", id, &path);
    if (ex < 0) return -1;
    if (ex && !replace) {
        char file[512] = "";
        H5Fget_name(loc, file, sizeof file);
        free(path);
        return olmoe_errorf("%s: /stats/%s already exists (--force replaces it)", file, id);
    }
    int del = ex ? olmoe_h5_delete(loc, path) : 0;
    free(path);
    if (del != 0 || olmoe_result_new_path(loc, "stats", id, &path) != 0) return -1;
    snprintf(g, n, "%s", path);
    free(path);
    return olmoe_h5_make_groups(loc, g);
}

static int write_attrs(hid_t loc, const char *g, const olmoe_stats *st, int p, const char *trace_path,
                       const char *created) {
    const olmoe_stats_policy *sp = &st->pol[p];
    olmoe_stats_summary s;
    olmoe_stats_summarize(st, p, OLMOE_STATS_ALL, -1, &s);
    OLMOE_TRY(olmoe_h5_set_attr_str(loc, g, "policy", sp->policy->id));
    OLMOE_TRY(olmoe_h5_set_attr_str(loc, g, "family", sp->policy->family->name));
    OLMOE_TRY(olmoe_h5_set_attr_str(loc, g, "trace", trace_path));
    OLMOE_TRY(olmoe_h5_set_attr_str(loc, g, "created", created));
    OLMOE_TRY(olmoe_h5_set_attr_i64(loc, g, "n_tokens", st->n_tokens));
    OLMOE_TRY(olmoe_h5_set_attr_i32(loc, g, "baseline_top_k", st->top_k));
    OLMOE_TRY(olmoe_h5_set_attr_i32(loc, g, "min_k", sp->min_k));
    OLMOE_TRY(olmoe_h5_set_attr_i32(loc, g, "max_k", sp->max_k));
    const struct { const char *name; double v; } attrs[] = {
        {"mean_k", s.mean_k}, {"sd_k", s.sd_k}, {"share_min_k", s.share_min_k},
        {"share_max_k", s.share_max_k}, {"overlap_mean", s.overlap_mean},
        {"coverage", s.coverage}, {"precision", s.precision},
        {"flops_vs_baseline", s.flops_vs_baseline}, {"load_cv", s.load_cv}};
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++)
        OLMOE_TRY(olmoe_h5_set_attr_f64(loc, g, attrs[i].name, attrs[i].v));
    return 0;
fail:
    return -1;
}

/* raw counts (scope 0 as [L, ...], groups as [G, L, ...]) and the per-layer
 * summaries [L] (groups: [G, L]); col is scratch of 7 * S * L doubles */
static int write_arrays(hid_t loc, const char *g, const olmoe_stats *st, int p, double *col) {
    const int L = st->n_layers, E = st->n_experts, S = st->n_scopes, G = S - 1;
    const olmoe_stats_policy *sp = &st->pol[p];
    static const char *const names[] = {"mean_k", "sd_k", "share_min_k", "share_max_k",
                                        "coverage", "precision", "load_cv"};
    char ds[OLMOE_POLICY_ID_MAX + 80];
    int64_t dh[3] = {L, E + 1}, dl[2] = {L, E}, d1[1] = {L};
    snprintf(ds, sizeof ds, "%s/k_hist", g);
    OLMOE_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_I64, 2, dh, sp->k_hist));
    snprintf(ds, sizeof ds, "%s/load", g);
    OLMOE_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_I64, 2, dl, sp->load));
    snprintf(ds, sizeof ds, "%s/overlap_sum", g);
    OLMOE_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_I64, 1, d1, sp->overlap));
    for (int sc = 0; sc < S; sc++)
        for (int l = 0; l < L; l++) {
            olmoe_stats_summary s;
            olmoe_stats_summarize(st, p, sc, l, &s);
            double v[7] = {s.mean_k, s.sd_k, s.share_min_k, s.share_max_k, s.coverage, s.precision, s.load_cv};
            for (int m = 0; m < 7; m++) col[((size_t)m * S + sc) * L + l] = v[m];
        }
    for (int m = 0; m < 7; m++) {
        snprintf(ds, sizeof ds, "%s/%s", g, names[m]);
        OLMOE_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_F64, 1, d1, col + (size_t)m * S * L));
    }
    if (G > 0) {
        int64_t gh[3] = {G, L, E + 1}, gl[3] = {G, L, E}, g2[2] = {G, L};
        size_t off_h = (size_t)L * (E + 1), off_l = (size_t)L * E;
        snprintf(ds, sizeof ds, "%s/group_k_hist", g);
        OLMOE_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_I64, 3, gh, sp->k_hist + off_h));
        snprintf(ds, sizeof ds, "%s/group_load", g);
        OLMOE_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_I64, 3, gl, sp->load + off_l));
        for (int m = 0; m < 7; m++) {
            snprintf(ds, sizeof ds, "%s/group_%s", g, names[m]);
            OLMOE_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_F64, 2, g2, col + ((size_t)m * S + 1) * L));
        }
    }
    return 0;
fail:
    return -1;
}

int olmoe_stats_write_h5(const olmoe_stats *st, hid_t loc, const char *trace_path, int replace) {
    char created[32];
    time_t now = time(NULL);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    double *col = xmalloc(xmul((size_t)st->n_scopes * st->n_layers, 9 * sizeof *col));
    int rc = -1;
    for (int p = 0; p < st->n_policies; p++) {
        char g[OLMOE_POLICY_ID_MAX + 48];
        OLMOE_TRY(claim_group(loc, st->pol[p].policy->id, replace, g, sizeof g));
        OLMOE_TRY(write_attrs(loc, g, st, p, trace_path, created));
        OLMOE_TRY(write_arrays(loc, g, st, p, col));
    }
    rc = 0;
fail:
    free(col);
    return rc;
}
