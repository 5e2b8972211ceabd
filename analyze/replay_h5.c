/* replay_h5.c: replay and exact results in HDF5, as man/olmoe-replay.1 lays
 * them out: /replay/<name>/ and /exact/<name>/, the policy id made typable
 * (olmoe_result_new_path; the id itself in attribute "policy"), each with
 * its attributes, per-token nll, argmax and experts, k_hist, load,
 * mean_k_layer, groups/<name>/), and /validate. The generic olmoe_h5_*
 * helpers write everything except the two kinds they lack (uint8,
 * variable-length strings), written here directly. */
#include "common.h"
#include "replay.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void close_id(hid_t id) {
    if (id < 0) return;
    H5Idec_ref(id);
}

/* experts uint8 [N, L] */
static int write_u8(hid_t loc, const char *path, int64_t n, int64_t m, const uint8_t *data) {
    hid_t sp = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hsize_t d[2] = {(hsize_t)n, (hsize_t)m};
    H5_CHECK(sp = H5Screate_simple(2, d, NULL), "%s", path);
    H5_CHECK(ds = H5Dcreate2(loc, path, H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "%s", path);
    if (n * m > 0) H5_CHECK(H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "%s", path);
    H5Dclose(ds);
    H5Sclose(sp);
    return 0;
fail:
    close_id(ds);
    close_id(sp);
    return -1;
}

/* a group name from free text: HDF5 link names may not hold '/' or be "." */
static void safe_name(char *out, size_t cap, const char *in) {
    snprintf(out, cap, "%s", in);
    for (char *p = out; *p; p++)
        if (*p == '/') *p = '_';
    if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0 || !out[0]) snprintf(out, cap, "_");
}

static int summary_attrs(hid_t loc, const char *g, const olmoe_replay_summary *s, int full) {
    if (olmoe_h5_set_attr_f64(loc, g, "perplexity", s->perplexity) ||
        olmoe_h5_set_attr_i64(loc, g, "n_scored", s->n_scored) ||
        olmoe_h5_set_attr_f64(loc, g, "mean_k", s->mean_k) ||
        olmoe_h5_set_attr_f64(loc, g, "accuracy", s->accuracy))
        return -1;
    if (!full) return 0;
    if (olmoe_h5_set_attr_f64(loc, g, "nll_sum", s->nll_sum) ||
        olmoe_h5_set_attr_f64(loc, g, "sd_k", s->sd_k) ||
        olmoe_h5_set_attr_f64(loc, g, "share_min_k", s->share_min_k) ||
        olmoe_h5_set_attr_f64(loc, g, "share_max_k", s->share_max_k) ||
        olmoe_h5_set_attr_f64(loc, g, "compute_saved", s->compute_saved))
        return -1;
    return 0;
}

/* the result into group g (its typable name, olmoe_result_new_path) */
static int write_result(const olmoe_replay_run *r, const olmoe_replay_result *res, hid_t loc,
                        const char *g) {
    char p[OLMOE_POLICY_ID_MAX + 300];
    int L = r->n_layers, E = r->n_experts;
    int64_t N = r->n_tokens;
    if (olmoe_h5_make_groups(loc, g) != 0) return -1;
    if (olmoe_h5_set_attr_str(loc, g, "policy", res->policy->id) ||
        olmoe_h5_set_attr_str(loc, g, "kind", olmoe_replay_kind_name(res->kind)) ||
        olmoe_h5_set_attr_str(loc, g, "routing", olmoe_replay_routing_name(res->routing)) ||
        olmoe_h5_set_attr_str(loc, g, "device", res->device) ||
        olmoe_h5_set_attr_f64(loc, g, "seconds", res->seconds) ||
        olmoe_h5_set_attr_f64(loc, g, "cpu_seconds", res->cpu_seconds) ||
        summary_attrs(loc, g, &res->all, 1) ||
        olmoe_h5_set_attr_f64(loc, g, "tokens_per_second",
                              res->seconds > 0 ? (double)N / res->seconds : NAN) ||
        olmoe_h5_set_attr_f64(loc, g, "baseline_perplexity", r->baseline_perplexity) ||
        olmoe_h5_set_attr_i64(loc, g, "n_tokens", N) ||
        olmoe_h5_set_attr_i32(loc, g, "baseline_top_k", r->top_k))
        return -1;
    int64_t dn[1] = {N}, dl[1] = {L}, dh[2] = {L, E + 1}, de[2] = {L, E};
    snprintf(p, sizeof p, "%s/nll", g);
    if (olmoe_h5_write(loc, p, OLMOE_H5_F32, 1, dn, res->nll) != 0) return -1;
    snprintf(p, sizeof p, "%s/argmax", g);
    if (olmoe_h5_write(loc, p, OLMOE_H5_I32, 1, dn, res->argmax) != 0) return -1;
    snprintf(p, sizeof p, "%s/experts", g);
    if (write_u8(loc, p, N, L, res->experts) != 0) return -1;
    snprintf(p, sizeof p, "%s/k_hist", g);
    if (olmoe_h5_write(loc, p, OLMOE_H5_I64, 2, dh, res->k_hist) != 0) return -1;
    snprintf(p, sizeof p, "%s/load", g);
    if (olmoe_h5_write(loc, p, OLMOE_H5_I64, 2, de, res->load) != 0) return -1;
    snprintf(p, sizeof p, "%s/mean_k_layer", g);
    if (olmoe_h5_write(loc, p, OLMOE_H5_F64, 1, dl, res->mean_k_layer) != 0) return -1;
    for (int k = 0; k < r->n_groups; k++) {
        char name[256];
        safe_name(name, sizeof name, r->group_names[k]);
        snprintf(p, sizeof p, "%s/groups/%s", g, name);
        if (olmoe_h5_make_groups(loc, p) != 0 || summary_attrs(loc, p, &res->group[k], 0) != 0)
            return -1;
    }
    return 0;
}

static int write_validation(const olmoe_replay_validation *v, hid_t loc) {
    int64_t d[1] = {v->n};
    if (olmoe_h5_make_groups(loc, "validate") != 0) return -1;
    if (olmoe_h5_write_strings(loc, "validate/policy", v->policy, v->n) != 0) return -1;
    const struct {
        const char *name;
        const double *col;
    } cols[] = {{"validate/replay_ppl", v->replay_ppl},         {"validate/exact_ppl", v->exact_ppl},
                {"validate/rel_diff", v->rel_diff},             {"validate/nll_corr", v->nll_corr},
                {"validate/nll_mad", v->nll_mad},               {"validate/replay_seconds", v->replay_seconds},
                {"validate/exact_seconds", v->exact_seconds}};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++)
        if (olmoe_h5_write(loc, cols[i].name, OLMOE_H5_F64, 1, d, cols[i].col) != 0) return -1;
    if (olmoe_h5_set_attr_i32(loc, "validate", "ranking_agrees", v->ranking_agrees) ||
        olmoe_h5_set_attr_f64(loc, "validate", "kendall_tau", v->kendall_tau) ||
        olmoe_h5_set_attr_i32(loc, "validate", "discordant_pairs", v->n_discordant) ||
        olmoe_h5_set_attr_f64(loc, "validate", "widest_discordant_gap", v->widest_discordant))
        return -1;
    return 0;
}

static int self_check_attrs(const olmoe_replay_run *r, hid_t loc) {
    const olmoe_replay_selfcheck *s = &r->self;
    if (!s->done || olmoe_h5_exists(loc, "replay") != 1) return 0;
    if (olmoe_h5_set_attr_str(loc, "replay", "self_check_policy", s->policy) ||
        olmoe_h5_set_attr_str(loc, "replay", "self_check_residual_dtype", s->residual_dtype) ||
        olmoe_h5_set_attr_f64(loc, "replay", "self_check_max_abs_nll_diff", s->max_abs_diff) ||
        olmoe_h5_set_attr_f64(loc, "replay", "self_check_max_rel_nll_diff", s->max_rel_diff) ||
        olmoe_h5_set_attr_f64(loc, "replay", "self_check_mean_abs_nll_diff", s->mean_abs_diff) ||
        olmoe_h5_set_attr_f64(loc, "replay", "self_check_ppl_rel_diff", s->ppl_rel_diff) ||
        olmoe_h5_set_attr_f64(loc, "replay", "self_check_mean_nll_rel_diff", s->nll_rel_diff))
        return -1;
    return 0;
}

int olmoe_replay_h5_conflict(hid_t loc, olmoe_policy *const *pol, int n, int do_replay,
                             int do_exact, int validate, const char **which) {
    static char path[OLMOE_POLICY_ID_MAX + 16];
    for (int k = 0; k < 2; k++) {
        if (!(k ? do_exact : do_replay)) continue;
        for (int i = 0; i < n; i++) {
            char *g = NULL;
            int e = olmoe_result_find(loc, k ? "exact" : "replay", pol[i]->id, &g);
            free(g);
            if (e < 0) return -1;
            if (e) {
                snprintf(path, sizeof path, "%s/%s", k ? "exact" : "replay", pol[i]->id);
                *which = path;
                return 1;
            }
        }
    }
    if (validate) {
        int e = olmoe_h5_exists(loc, "validate");
        if (e < 0) return -1;
        if (e) {
            *which = "validate";
            return 1;
        }
    }
    return 0;
}

int olmoe_replay_write_h5(const olmoe_replay_run *r, const olmoe_replay_validation *v, hid_t loc,
                          int replace) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    for (int i = 0; i < r->n_results; i++) {
        const olmoe_replay_result *res = &r->res[i];
        if (!res->stored) continue;
        const char *kind = olmoe_replay_kind_name(res->kind), *id = res->policy->id;
        char *old = NULL, *g = NULL;
        int e = olmoe_result_find(loc, kind, id, &old);
        if (e < 0) return -1;
        /* the one replaced leaves its name free for the new one */
        int rc = e && !replace ? olmoe_errorf("/%s/%s already exists (--force replaces it)", kind, id)
                 : e && olmoe_h5_delete(loc, old) != 0 ? -1
                 : olmoe_result_new_path(loc, kind, id, &g);
        if (rc == 0 && write_result(r, res, loc, g) != 0) rc = olmoe_error_prefix("/%s", g);
        free(old);
        free(g);
        if (rc != 0) return -1;
    }
    if (v) {
        int e = olmoe_h5_exists(loc, "validate");
        if (e < 0) return -1;
        if (e && !replace) return olmoe_errorf("/validate already exists (--force replaces it)");
        if (e && olmoe_h5_delete(loc, "validate") != 0) return -1;
        if (write_validation(v, loc) != 0) return olmoe_error_prefix("/validate");
    }
    return self_check_attrs(r, loc);
}

int olmoe_replay_results_attrs(hid_t f, const char *trace_path, const char *model_dir,
                               const char *command) {
    if (olmoe_h5_set_attr_str(f, ".", "format", OLMOE_REPLAY_FORMAT) != 0 ||
        olmoe_h5_set_attr_i32(f, ".", "format_version", OLMOE_REPLAY_FORMAT_VERSION) != 0 ||
        olmoe_h5_set_attr_str(f, ".", "trace", trace_path) != 0 ||
        olmoe_h5_set_attr_str(f, ".", "model_dir", model_dir ? model_dir : "") != 0 ||
        olmoe_h5_set_attr_str(f, ".", "command", command) != 0)
        return -1;
    return 0;
}

/* ---- reading stored results back (every reader of them goes through here) ---- */

int olmoe_replay_h5_read_nll(hid_t loc, const char *kind, const char *id, float **nll, int64_t *n) {
    char *g = NULL, *p = NULL;
    int e = olmoe_result_find(loc, kind, id, &g);
    if (e == 1) {
        p = xmalloc(strlen(g) + sizeof "/nll");
        sprintf(p, "%s/nll", g);
        e = olmoe_h5_exists(loc, p);
    }
    int rank;
    int64_t d[OLMOE_H5_MAX_RANK];
    if (e == 1 && olmoe_h5_read_alloc(loc, p, OLMOE_H5_F32, (void **)nll, &rank, d) != 0) e = -1;
    if (e == 1 && rank != 1) {
        free(*nll);
        *nll = NULL;
        e = olmoe_errorf("/%s: rank %d, expected 1", p, rank);
    }
    if (e == 1) *n = d[0];
    free(g);
    free(p);
    return e;
}

int olmoe_replay_h5_ids(hid_t loc, const char *kind, char ***ids, int *n) {
    olmoe_result_group *g;
    *ids = NULL, *n = 0;
    if (olmoe_result_groups(loc, kind, &g, n) != 0) return -1;
    *ids = xmalloc(xmul((size_t)*n + 1, sizeof **ids));
    for (int i = 0; i < *n; i++) (*ids)[i] = g[i].spec, g[i].spec = NULL;
    olmoe_result_groups_free(g, *n);
    return 0;
}
