/* report_load.c: reads every input of olmoe-report into olmoe_report_data:
 * the per-policy results of each kind, /validate, the analyses, the null and
 * the provenance, and checks that they describe one model (L, E). */
#include "report_internal.h"
#include "policy.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const olmoe_report_kind_names[OLMOE_REPORT_KIND_COUNT] = {"replay", "exact", "stats"};

static olmoe_report_policy *policy_get(olmoe_report_data *d, const char *id) {
    for (int i = 0; i < d->n_policies; i++)
        if (!strcmp(d->pol[i].id, id)) return &d->pol[i];
    d->pol = xrealloc(d->pol, (size_t)(d->n_policies + 1) * sizeof *d->pol);
    olmoe_report_policy *p = &d->pol[d->n_policies++];
    memset(p, 0, sizeof *p);
    p->id = xstrdup(id);
    rep_describe_policy(p);
    return p;
}

int olmoe_report_find(const olmoe_report_data *d, const char *id) {
    for (int i = 0; i < d->n_policies; i++)
        if (!strcmp(d->pol[i].id, id)) return i;
    return -1;
}

const olmoe_report_result *olmoe_report_routing(const olmoe_report_policy *p) {
    for (int k = 0; k < OLMOE_REPORT_KIND_COUNT; k++)
        if (p->res[k].present) return &p->res[k];
    return NULL;
}

/* ---- reading one result ---- */

static double *cv_from_load(const int64_t *load, int L, int E) {
    double *cv = xmalloc((size_t)L * sizeof *cv);
    for (int l = 0; l < L; l++) {
        double s = 0, s2 = 0;
        for (int e = 0; e < E; e++) s += (double)load[(size_t)l * E + e];
        double mean = s / E;
        for (int e = 0; e < E; e++) {
            double x = (double)load[(size_t)l * E + e] - mean;
            s2 += x * x;
        }
        cv[l] = mean > 0 ? sqrt(s2 / E) / mean : NAN;
    }
    return cv;
}

/* a group's position in the trace's /groups, unknown names last */
static int group_index(const olmoe_report_data *d, const char *name) {
    for (int g = 0; g < d->n_groups; g++)
        if (!strcmp(d->group_names[g], name)) return g;
    return d->n_groups;
}

/* the group's scalar attributes; stats groups name compute differently */
static int read_scalars(hid_t h, const char *file, const char *g, olmoe_report_kind kind,
                        olmoe_report_result *r) {
    r->routing = rep_attr_str(h, g, "routing");
    r->device = rep_attr_str(h, g, "device");
    r->n_scored = rep_attr_i64(h, g, "n_scored", -1);
    r->seconds = rep_attr_f64(h, g, "seconds");
    r->nll_sum = rep_attr_f64(h, g, "nll_sum");
    r->perplexity = rep_attr_f64(h, g, "perplexity");
    r->accuracy = rep_attr_f64(h, g, "accuracy");
    r->mean_k = rep_attr_f64(h, g, "mean_k");
    r->sd_k = rep_attr_f64(h, g, "sd_k");
    r->share_min_k = rep_attr_f64(h, g, "share_min_k");
    r->share_max_k = rep_attr_f64(h, g, "share_max_k");
    r->compute_saved = rep_attr_f64(h, g, "compute_saved");
    r->tokens_per_second = rep_attr_f64(h, g, "tokens_per_second");
    r->baseline_perplexity = rep_attr_f64(h, g, "baseline_perplexity");
    r->coverage = rep_attr_f64(h, g, "coverage");
    r->load_cv = rep_attr_f64(h, g, "load_cv");
    if (kind == OLMOE_REPORT_STATS && isnan(r->compute_saved)) {
        double f = rep_attr_f64(h, g, "flops_vs_baseline");
        r->compute_saved = 1 - f;
    }
    if (kind != OLMOE_REPORT_STATS && isnan(r->perplexity))
        return olmoe_errorf("%s: /%s has no perplexity attribute", file, g);
    return 0;
}

/* dataset g/name of the given shape (n items of size bytes) in a new
 * buffer, NULL where the file has none; *err set on a read error */
static void *read_optional(hid_t h, const char *file, const char *g, const char *name, olmoe_h5_kind type,
                           int rank, const int64_t *dims, size_t n, size_t size, int *err) {
    char ds[OLMOE_POLICY_ID_MAX + 128];
    snprintf(ds, sizeof ds, "%s/%s", g, name);
    void *buf = xmalloc(xmul(n, size));
    int rc = rep_h5_read_shape(h, file, ds, type, rank, dims, buf);
    if (rc < 0) *err = 1;
    if (rc <= 0) free(buf), buf = NULL;
    return buf;
}

/* per-layer arrays: k histogram, expert load, mean k and load CV per layer
 * (the CV from the load where a file has none) */
static int read_layer_arrays(hid_t h, const char *file, const char *g, olmoe_report_kind kind, int L, int E,
                             olmoe_report_result *r) {
    int64_t dh[2] = {L, E + 1}, dl[2] = {L, E}, d1[1] = {L};
    int err = 0;
    const char *mean_k = kind == OLMOE_REPORT_STATS ? "mean_k" : "mean_k_layer";
    size_t LE = (size_t)L * E;
    r->k_hist = read_optional(h, file, g, "k_hist", OLMOE_H5_I64, 2, dh, LE + L, sizeof(int64_t), &err);
    if (!err) r->load = read_optional(h, file, g, "load", OLMOE_H5_I64, 2, dl, LE, sizeof(int64_t), &err);
    if (!err)
        r->mean_k_layer = read_optional(h, file, g, mean_k, OLMOE_H5_F64, 1, d1, (size_t)L, sizeof(double), &err);
    if (!err)
        r->load_cv_layer =
            read_optional(h, file, g, "load_cv", OLMOE_H5_F64, 1, d1, (size_t)L, sizeof(double), &err);
    if (err) return -1;
    if (!r->load_cv_layer && r->load) r->load_cv_layer = cv_from_load(r->load, L, E);
    if (isnan(r->load_cv) && r->load_cv_layer) { /* over all layers: the mean of the layers' */
        double s = 0;
        for (int l = 0; l < L; l++) s += r->load_cv_layer[l];
        r->load_cv = s / L;
    }
    return 0;
}

static void alloc_group_rows(olmoe_report_result *r, int n) {
    r->n_groups = n;
    r->group_ppl = xmalloc(((size_t)n + 1) * sizeof(double));
    r->group_mean_k = xmalloc(((size_t)n + 1) * sizeof(double));
    r->group_acc = xmalloc(((size_t)n + 1) * sizeof(double));
    r->group_n = xmalloc(((size_t)n + 1) * sizeof(int64_t));
}

/* a replay or exact result's document groups (g/groups/<name>), in the
 * trace's order of /groups (the listing is alphabetical) */
static int read_doc_groups(olmoe_report_data *d, hid_t h, const char *file, const char *g,
                           olmoe_report_result *r) {
    char ds[OLMOE_POLICY_ID_MAX + 128];
    char **names;
    int n;
    snprintf(ds, sizeof ds, "%s/groups", g);
    if (olmoe_h5_links(h, ds, &names, &n) != 0) return olmoe_error_prefix("%s", file);
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++) {
            int ia = group_index(d, names[a]), ib = group_index(d, names[b]);
            if (ib < ia) {
                char *t = names[a];
                names[a] = names[b];
                names[b] = t;
            }
        }
    alloc_group_rows(r, n);
    r->group_names = names;
    for (int i = 0; i < n; i++) {
        char gg[OLMOE_POLICY_ID_MAX + 512];
        snprintf(gg, sizeof gg, "%s/groups/%s", g, names[i]);
        r->group_ppl[i] = rep_attr_f64(h, gg, "perplexity");
        r->group_mean_k[i] = rep_attr_f64(h, gg, "mean_k");
        r->group_acc[i] = rep_attr_f64(h, gg, "accuracy");
        r->group_n[i] = rep_attr_i64(h, gg, "n_scored", -1);
    }
    return 0;
}

/* a stats result's groups: mean k per group from g/group_mean_k [G, L];
 * stats has no loss, so perplexity and accuracy are NaN */
static int read_stats_groups(olmoe_report_data *d, hid_t h, const char *file, const char *g,
                             olmoe_report_result *r) {
    char ds[OLMOE_POLICY_ID_MAX + 128];
    int G = d->n_groups, L = d->L, rc;
    int64_t d2[2] = {G, L};
    double *gm = xmalloc(xmul((size_t)G * L, sizeof *gm));
    snprintf(ds, sizeof ds, "%s/group_mean_k", g);
    if ((rc = rep_h5_read_shape(h, file, ds, OLMOE_H5_F64, 2, d2, gm)) < 0) {
        free(gm);
        return -1;
    }
    if (rc == 1) {
        alloc_group_rows(r, G);
        r->group_names = xcalloc((size_t)G, sizeof *r->group_names);
        for (int i = 0; i < G; i++) {
            double s = 0; /* every layer counts the same tokens: the mean of the layers' means */
            for (int l = 0; l < L; l++) s += gm[(size_t)i * L + l];
            r->group_names[i] = xstrdup(d->group_names[i]);
            r->group_mean_k[i] = s / L;
            r->group_ppl[i] = r->group_acc[i] = NAN;
            r->group_n[i] = -1;
        }
    }
    free(gm);
    return 0;
}

/* the result in group path ("replay/topk_k_4_norm_model", olmoe_result_groups) */
static int read_result(olmoe_report_data *d, int input, olmoe_report_kind kind, const char *path,
                       olmoe_report_result *r) {
    hid_t h = d->h5[input];
    const char *file = d->inputs[input];
    r->present = 1;
    r->file = file;
    if (read_scalars(h, file, path, kind, r) != 0 || read_layer_arrays(h, file, path, kind, d->L, d->E, r) != 0)
        return -1;
    if (kind != OLMOE_REPORT_STATS) return read_doc_groups(d, h, file, path, r);
    return d->n_groups > 0 ? read_stats_groups(d, h, file, path, r) : 0;
}

static void free_result(olmoe_report_result *r) {
    free(r->routing);
    free(r->device);
    free(r->k_hist);
    free(r->load);
    free(r->mean_k_layer);
    free(r->load_cv_layer);
    rep_free_strings(r->group_names, r->n_groups);
    free(r->group_ppl);
    free(r->group_mean_k);
    free(r->group_acc);
    free(r->group_n);
}

/* ---- inputs ---- */

static int open_input(olmoe_report_data *d, int i, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return olmoe_errorf("%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return olmoe_errorf("%s: not a file", path);
    hid_t h = olmoe_h5_open(path, 0);
    if (h < 0) return -1; /* its message names the path and why: not HDF5, truncated, denied */
    char *fmt = rep_attr_str(h, ".", "format");
    int rc = 0;
    if (!strcmp(fmt, OLMOE_TRACE_FORMAT)) {
        olmoe_h5_close(h);
        d->traces[i] = olmoe_trace_open(path);
        /* its results: the results file beside it, or what an old trace holds */
        if (!d->traces[i] ||
            olmoe_results_open(path, olmoe_trace_hid(d->traces[i]), &d->h5[i]) < 0)
            rc = -1;
    } else if (!strcmp(fmt, OLMOE_KDE_FORMAT)) {
        olmoe_h5_close(h);
        rc = olmoe_errorf("%s: is a null distribution (olmoe-kde), not results: give it with --kde", path);
    } else {
        d->h5[i] = h;
    }
    free(fmt);
    return rc;
}

/* L and E: the first trace's, else the first result's k_hist or load shape */
static int find_shape(olmoe_report_data *d) {
    for (int i = 0; i < d->n_inputs; i++)
        if (d->traces[i]) {
            const olmoe_trace_info *in = olmoe_trace_info_of(d->traces[i]);
            d->L = in->meta.n_layers;
            d->E = in->meta.n_experts;
            d->top_k = in->meta.top_k;
            return 0;
        }
    for (int i = 0; i < d->n_inputs; i++)
        for (int k = 0; k < OLMOE_REPORT_KIND_COUNT; k++) {
            olmoe_result_group *g;
            int n;
            if (olmoe_result_groups(d->h5[i], olmoe_report_kind_names[k], &g, &n) != 0)
                return olmoe_error_prefix("%s", d->inputs[i]);
            for (int j = 0; j < n && !d->L; j++) {
                char p[OLMOE_POLICY_ID_MAX + 64];
                int r;
                int64_t dims[OLMOE_H5_MAX_RANK];
                snprintf(p, sizeof p, "%s/load", g[j].path);
                if (olmoe_h5_exists(d->h5[i], p) == 1 && olmoe_h5_shape(d->h5[i], p, &r, dims) == 0 &&
                    r == 2) {
                    d->L = (int)dims[0];
                    d->E = (int)dims[1];
                }
                if (k == OLMOE_REPORT_STATS && !d->top_k)
                    d->top_k = (int)rep_attr_i64(d->h5[i], g[j].path, "baseline_top_k", 0);
            }
            olmoe_result_groups_free(g, n);
            if (d->L) return 0;
        }
    return 0;
}

/* group names: the trace's /groups, else a results file's "groups" attribute
 * (a JSON array, olmoe-replay --out) */
static int find_groups(olmoe_report_data *d) {
    for (int i = 0; i < d->n_inputs; i++)
        if (d->traces[i]) {
            int64_t n;
            if (olmoe_trace_read_groups(d->traces[i], &d->group_names, &n) != 0) return -1;
            d->n_groups = (int)n;
            return 0;
        }
    for (int i = 0; i < d->n_inputs; i++) {
        char *s = rep_attr_str(d->h5[i], ".", "groups");
        json_error_t err;
        json_t *a = *s ? json_loads(s, 0, &err) : NULL;
        free(s);
        if (!json_is_array(a)) {
            json_decref(a);
            continue;
        }
        d->n_groups = (int)json_array_size(a);
        d->group_names = xcalloc((size_t)d->n_groups + 1, sizeof *d->group_names);
        for (int g = 0; g < d->n_groups; g++) {
            const char *v = json_string_value(json_array_get(a, (size_t)g));
            d->group_names[g] = xstrdup(v ? v : "?");
        }
        json_decref(a);
        return 0;
    }
    return 0;
}

static int read_results(olmoe_report_data *d) {
    for (int i = 0; i < d->n_inputs; i++)
        for (int k = 0; k < OLMOE_REPORT_KIND_COUNT; k++) {
            olmoe_result_group *g;
            int n;
            if (olmoe_result_groups(d->h5[i], olmoe_report_kind_names[k], &g, &n) != 0)
                return olmoe_error_prefix("%s", d->inputs[i]);
            int rc = 0;
            for (int j = 0; j < n && rc == 0; j++) {
                size_t len = strlen(g[j].spec);
                if (len > 8 && !strcmp(g[j].spec + len - 8, ".partial")) continue;
                olmoe_report_policy *p = policy_get(d, g[j].spec);
                if (p->res[k].present) {
                    warnf("%s: /%s/%s is also in %s; using the first", d->inputs[i],
                          olmoe_report_kind_names[k], g[j].spec, p->res[k].file);
                    continue;
                }
                rc = read_result(d, i, (olmoe_report_kind)k, g[j].path, &p->res[k]);
            }
            olmoe_result_groups_free(g, n);
            if (rc) return -1;
        }
    return 0;
}

/* the self-check olmoe-replay stores on /replay: top-k replayed against the capture */
static void read_replay_check(olmoe_report_data *d) {
    for (int i = 0; i < d->n_inputs && !d->replay_check; i++) {
        if (olmoe_h5_has_attr(d->h5[i], "replay", "self_check_policy") != 1) continue;
        char *pol = rep_attr_str(d->h5[i], "replay", "self_check_policy");
        char *dt = rep_attr_str(d->h5[i], "replay", "self_check_residual_dtype");
        double mx = rep_attr_f64(d->h5[i], "replay", "self_check_max_abs_nll_diff");
        double mean = rep_attr_f64(d->h5[i], "replay", "self_check_mean_abs_nll_diff");
        double rel = rep_attr_f64(d->h5[i], "replay", "self_check_ppl_rel_diff");
        char buf[512];
        snprintf(buf, sizeof buf,
                 "Self-check: `%s` replayed from the captured %s residuals gives per-token NLL within "
                 "%.3g of the capture (mean %.3g), perplexity %+.2e relative.",
                 pol, *dt ? dt : "attention", mx, mean, rel);
        d->replay_check = xstrdup(buf);
        free(pol);
        free(dt);
    }
}

static void validate_free(olmoe_report_validate *v) {
    rep_free_strings(v->policy, v->n);
    free(v->replay_ppl);
    free(v->exact_ppl);
    free(v->rel_diff);
    free(v->nll_corr);
    free(v->nll_mad);
    free(v->replay_seconds);
    free(v->exact_seconds);
}

/* one input's /validate into v; 0 and v->present 0 when it has none */
static int read_validate_one(olmoe_report_data *d, int i, olmoe_report_validate *v) {
    memset(v, 0, sizeof *v);
    v->ranking_agrees = -1;
    v->kendall_tau = NAN;
    hid_t h = d->h5[i];
    int e = olmoe_h5_exists(h, "validate/policy");
    if (e < 0) return olmoe_error_prefix("%s", d->inputs[i]);
    if (!e) return 0;
    int64_t n;
    if (rep_h5_strings(h, "validate/policy", &v->policy, &n) != 0)
        return olmoe_error_prefix("%s", d->inputs[i]);
    v->present = 1;
    v->file = d->inputs[i];
    v->n = (int)n;
    double **cols[] = {&v->replay_ppl, &v->exact_ppl, &v->rel_diff, &v->nll_corr,
                       &v->nll_mad, &v->replay_seconds, &v->exact_seconds};
    static const char *const names[] = {"replay_ppl", "exact_ppl", "rel_diff", "nll_corr",
                                        "nll_mad", "replay_seconds", "exact_seconds"};
    for (int c = 0; c < 7; c++) {
        *cols[c] = xmalloc(((size_t)n + 1) * sizeof(double));
        char p[64];
        snprintf(p, sizeof p, "validate/%s", names[c]);
        int64_t dims[1] = {n};
        int rc = rep_h5_read_shape(h, d->inputs[i], p, OLMOE_H5_F64, 1, dims, *cols[c]);
        if (rc < 0) return -1;
        if (rc == 0)
            for (int64_t j = 0; j < n; j++) (*cols[c])[j] = NAN;
    }
    v->ranking_agrees = (int)rep_attr_i64(h, "validate", "ranking_agrees", -1);
    v->kendall_tau = rep_attr_f64(h, "validate", "kendall_tau");
    return 0;
}

/* every input's /validate (a sweep each, e.g. seed and the top-k ladder):
 * the first one found is d->val, the others d->more_val */
static int read_validate(olmoe_report_data *d) {
    d->val.ranking_agrees = -1;
    d->val.kendall_tau = NAN;
    for (int i = 0; i < d->n_inputs; i++) {
        olmoe_report_validate v;
        if (read_validate_one(d, i, &v) != 0) {
            validate_free(&v);
            return -1;
        }
        if (!v.present) continue;
        if (!d->val.present) {
            d->val = v;
            continue;
        }
        d->more_val = xrealloc(d->more_val, ((size_t)d->n_more_val + 1) * sizeof *d->more_val);
        d->more_val[d->n_more_val++] = v;
    }
    return 0;
}

/* the results of one analysis in input i, by name (result_names.c) */
static int read_analysis(olmoe_report_data *d, int i, const char *analysis) {
    char *kind = xmalloc(strlen(analysis) + sizeof "analyze/");
    sprintf(kind, "analyze/%s", analysis);
    olmoe_result_group *g;
    int n;
    int rc = olmoe_result_groups(d->h5[i], kind, &g, &n);
    free(kind);
    if (rc != 0) return -1;
    for (int j = 0; j < n; j++) {
        d->an = xrealloc(d->an, (size_t)(d->n_analyses + 1) * sizeof *d->an);
        olmoe_report_analysis *r = &d->an[d->n_analyses++];
        r->analysis = xstrdup(analysis);
        r->name = g[j].spec, g[j].spec = NULL;
        r->input = i;
        r->path = g[j].path, g[j].path = NULL;
    }
    olmoe_result_groups_free(g, n);
    return 0;
}

/* stored tables: /analyze/<analysis>/<name> and /match */
static int read_stored(olmoe_report_data *d) {
    for (int i = 0; i < d->n_inputs; i++) {
        char **an;
        int na;
        if (olmoe_h5_links(d->h5[i], "analyze", &an, &na) != 0) return olmoe_error_prefix("%s", d->inputs[i]);
        int rc = 0;
        for (int a = 0; a < na && rc == 0; a++) rc = read_analysis(d, i, an[a]);
        olmoe_h5_links_free(an, na);
        if (rc != 0) return olmoe_error_prefix("%s", d->inputs[i]);
        /* /match: one table per input (olmoe-replay --match-k) */
        int e = olmoe_h5_exists(d->h5[i], "match");
        if (e < 0) return olmoe_error_prefix("%s", d->inputs[i]);
        if (e) {
            d->match = xrealloc(d->match, (size_t)(d->n_matches + 1) * sizeof *d->match);
            olmoe_report_analysis *r = &d->match[d->n_matches++];
            r->analysis = xstrdup("match");
            r->name = xstrdup(d->inputs[i]);
            r->input = i;
            r->path = xstrdup("match");
        }
    }
    return 0;
}

static void add_command(olmoe_report_data *d, const char *what, const char *cmd) {
    if (!cmd || !*cmd) return;
    for (int i = 0; i < d->n_commands; i++)
        if (!strcmp(d->cmd[i].command, cmd)) return;
    d->cmd = xrealloc(d->cmd, (size_t)(d->n_commands + 1) * sizeof *d->cmd);
    d->cmd[d->n_commands].what = xstrdup(what);
    d->cmd[d->n_commands].command = xstrdup(cmd);
    d->n_commands++;
}

/* the provenance trace: the first trace input, else the trace a results file
 * or the null names, when it opens */
static void find_provenance(olmoe_report_data *d) {
    for (int i = 0; i < d->n_inputs; i++)
        if (d->traces[i]) {
            d->trace = d->traces[i];
            d->trace_path = xstrdup(d->inputs[i]);
            return;
        }
    for (int i = 0; i <= d->n_inputs; i++) {
        char *p = i < d->n_inputs ? rep_attr_str(d->h5[i], ".", "trace")
                                  : xstrdup(d->has_null ? d->null.source : "");
        if (*p && olmoe_file_exists(p)) {
            olmoe_trace *t = olmoe_trace_open(p);
            if (t) {
                d->trace = t;
                d->own_trace = 1;
                d->trace_path = p;
                return;
            }
        }
        free(p);
    }
}

static void collect_commands(olmoe_report_data *d) {
    if (d->trace) add_command(d, "capture", olmoe_trace_info_of(d->trace)->meta.command);
    for (int i = 0; i < d->n_inputs; i++) {
        if (!d->traces[i]) {
            char *c = rep_attr_str(d->h5[i], ".", "command");
            char *f = rep_attr_str(d->h5[i], ".", "format");
            char what[256];
            snprintf(what, sizeof what, "%s (%s)", *f ? f : "results", d->inputs[i]);
            add_command(d, what, c);
            free(c);
            free(f);
        }
    }
    /* results that record their command line (optional: the contracts do not ask for it) */
    for (int i = 0; i < d->n_policies; i++)
        for (int k = 0; k < OLMOE_REPORT_KIND_COUNT; k++) {
            const olmoe_report_result *r = &d->pol[i].res[k];
            if (!r->present) continue;
            int in = 0;
            while (in < d->n_inputs && strcmp(d->inputs[in], r->file)) in++;
            if (in == d->n_inputs) continue;
            char *g = NULL;
            if (olmoe_result_find(d->h5[in], olmoe_report_kind_names[k], d->pol[i].id, &g) != 1) {
                free(g);
                continue;
            }
            char *c = rep_attr_str(d->h5[in], g, "command");
            add_command(d, olmoe_report_kind_names[k], c);
            free(c);
            free(g);
        }
    for (int a = 0; a < d->n_analyses; a++) {
        char *c = rep_attr_str(d->h5[d->an[a].input], d->an[a].path, "command");
        char what[256];
        snprintf(what, sizeof what, "analyze %s", d->an[a].analysis);
        add_command(d, what, c);
        free(c);
    }
    for (int m = 0; m < d->n_matches; m++) {
        char *c = rep_attr_str(d->h5[d->match[m].input], d->match[m].path, "command");
        add_command(d, "replay --match-k", c);
        free(c);
    }
    if (d->has_null) {
        hid_t h = olmoe_h5_open(d->kde_path, 0);
        if (h >= 0) {
            char *c = rep_attr_str(h, ".", "command");
            add_command(d, "kde fit", c);
            free(c);
            olmoe_h5_close(h);
        }
    }
}

static int select_policies(olmoe_report_data *d, const olmoe_report_opts *o) {
    if (o->n_policy_args > 0) {
        for (int i = 0; i < o->n_policy_args; i++) {
            olmoe_policy pol;
            const char *id = o->policies[i];
            if (olmoe_policy_parse(id, &pol) == 0) id = pol.id;
            int k = olmoe_report_find(d, id);
            if (k < 0)
                return olmoe_errorf("--policy %s: no results for it in the input%s (policies: %d, "
                                    "e.g. %s)",
                                    id, d->n_inputs > 1 ? "s" : "", d->n_policies,
                                    d->n_policies ? d->pol[0].id : "none");
            d->pol[k].selected = 1;
        }
    } else {
        olmoe_policy_set set = {0};
        if (olmoe_policy_set_add_sweep(&set, "seed") != 0) return -1;
        for (int i = 0; i < set.n; i++) {
            int k = olmoe_report_find(d, set.items[i].id);
            if (k >= 0) d->pol[k].selected = 1;
        }
        olmoe_policy_set_free(&set);
        int n = 0;
        for (int i = 0; i < d->n_policies; i++) n += d->pol[i].selected;
        if (n == 0) { /* no seed policy: the first 25 in report order */
            for (int i = 0; i < d->n_policies && i < 25; i++) d->pol[i].selected = 1;
            if (d->n_policies > 25)
                notef("no policy of the seed set in the results: the per-policy figures show "
                      "the first 25 of %d (choose with --policy)", d->n_policies);
        }
    }
    d->n_selected = 0;
    for (int i = 0; i < d->n_policies; i++) d->n_selected += d->pol[i].selected;
    return 0;
}

int olmoe_report_load(olmoe_report_data *d, const olmoe_report_opts *o) {
    memset(d, 0, sizeof *d);
    d->baseline_ppl = NAN;
    if (o->n_inputs < 1) return olmoe_errorf("no input given");
    d->n_inputs = o->n_inputs;
    d->inputs = xcalloc((size_t)o->n_inputs, sizeof *d->inputs);
    d->h5 = xcalloc((size_t)o->n_inputs, sizeof *d->h5);
    d->traces = xcalloc((size_t)o->n_inputs, sizeof *d->traces);
    for (int i = 0; i < o->n_inputs; i++) d->h5[i] = H5I_INVALID_HID;
    for (int i = 0; i < o->n_inputs; i++) {
        d->inputs[i] = xstrdup(o->inputs[i]);
        if (open_input(d, i, o->inputs[i]) != 0) return -1;
    }
    if (find_shape(d) != 0 || find_groups(d) != 0) return -1;
    if (read_results(d) != 0 || read_validate(d) != 0 || read_stored(d) != 0) return -1;
    read_replay_check(d);
    if (o->kde) {
        d->kde_path = xstrdup(o->kde);
        if (olmoe_kde_read(o->kde, &d->null) != 0) return -1;
        d->has_null = 1;
        if (!d->L) {
            d->L = d->null.n_layers;
            d->E = d->null.n_experts;
        } else if (d->null.n_layers != d->L || d->null.n_experts != d->E) {
            return olmoe_errorf("%s: null of a model with %d layers x %d experts, the results have "
                                "%d x %d",
                                o->kde, d->null.n_layers, d->null.n_experts, d->L, d->E);
        }
    }
    if (d->n_policies == 0 && !d->val.present && d->n_analyses == 0 && d->n_matches == 0 &&
        !d->has_null)
        return olmoe_errorf("%s: no results to report (no /replay, /exact, /stats, /validate, "
                            "/analyze or /match; run olmoe-replay with --store or --out first)",
                            d->inputs[0]);
    find_provenance(d);
    if (d->trace) {
        const olmoe_trace_info *in = olmoe_trace_info_of(d->trace);
        if (!d->top_k) d->top_k = in->meta.top_k;
        if (in->meta.n_layers != d->L || in->meta.n_experts != d->E)
            return olmoe_errorf("%s: trace of %d layers x %d experts, the results have %d x %d",
                                d->trace_path, in->meta.n_layers, in->meta.n_experts, d->L, d->E);
        if (in->complete) d->baseline_ppl = in->perplexity;
        if (d->has_null && *d->null.model_checksum &&
            strcmp(d->null.model_checksum, in->meta.model_checksum) != 0)
            warnf("%s: null fitted on another model's trace (checksum %s, the trace's %s)", o->kde,
                  d->null.model_checksum, in->meta.model_checksum);
    }
    if (!d->top_k) d->top_k = 8;
    char b[64];
    snprintf(b, sizeof b, "topk(k=%d,norm=model)", d->top_k);
    d->baseline_id = xstrdup(b);
    for (int i = 0; i < d->n_policies && isnan(d->baseline_ppl); i++)
        for (int k = 0; k < OLMOE_REPORT_STATS; k++)
            if (d->pol[i].res[k].present && isfinite(d->pol[i].res[k].baseline_perplexity)) {
                d->baseline_ppl = d->pol[i].res[k].baseline_perplexity;
                break;
            }
    if (d->n_policies > 1) qsort(d->pol, (size_t)d->n_policies, sizeof *d->pol, rep_cmp_policy);
    collect_commands(d);
    if (rep_load_records(d) != 0) return -1;
    return select_policies(d, o);
}

void olmoe_report_data_free(olmoe_report_data *d) {
    for (int i = 0; i < d->n_policies; i++) {
        for (int k = 0; k < OLMOE_REPORT_KIND_COUNT; k++) free_result(&d->pol[i].res[k]);
        free(d->pol[i].id);
        free(d->pol[i].sweep_key);
    }
    free(d->pol);
    validate_free(&d->val);
    for (int i = 0; i < d->n_more_val; i++) validate_free(&d->more_val[i]);
    free(d->more_val);
    for (int a = 0; a < d->n_analyses; a++) {
        free(d->an[a].analysis);
        free(d->an[a].name);
        free(d->an[a].path);
    }
    free(d->an);
    for (int a = 0; a < d->n_matches; a++) {
        free(d->match[a].analysis);
        free(d->match[a].name);
        free(d->match[a].path);
    }
    free(d->match);
    for (int i = 0; i < d->n_commands; i++) {
        free(d->cmd[i].what);
        free(d->cmd[i].command);
    }
    free(d->cmd);
    rep_free_records(d);
    if (d->group_names) {
        for (int g = 0; g < d->n_groups; g++) free(d->group_names[g]);
        free(d->group_names);
    }
    if (d->own_trace) olmoe_trace_close(d->trace);
    for (int i = 0; i < d->n_inputs; i++) {
        int own = d->h5 && d->h5[i] >= 0 &&
                  !(d->traces && d->traces[i] && d->h5[i] == olmoe_trace_hid(d->traces[i]));
        if (own) olmoe_h5_close(d->h5[i]);
        if (d->traces && d->traces[i]) olmoe_trace_close(d->traces[i]);
        free(d->inputs[i]);
    }
    free(d->inputs);
    free(d->h5);
    free(d->traces);
    free(d->trace_path);
    free(d->replay_check);
    free(d->baseline_id);
    free(d->kde_path);
    if (d->has_null) olmoe_kde_null_free(&d->null);
    memset(d, 0, sizeof *d);
}
