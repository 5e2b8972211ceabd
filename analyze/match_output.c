/* match_output.c: the matched-compute table: printed (a perplexity grid of
 * family x target per kind, then one row per point), as CSV, and in HDF5
 * under /match (one row per kind x target x family; the layout is in
 * man/olmoe-replay.1, for the report's plot). */
#include "common.h"
#include "match.h"
#include "traces.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

olmoe_match_row *olmoe_match_add_row(olmoe_match_table *t) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 32;
        t->rows = xrealloc(t->rows, xmul((size_t)t->cap, sizeof *t->rows));
    }
    olmoe_match_row *r = &t->rows[t->n++];
    memset(r, 0, sizeof *r);
    r->perplexity = r->accuracy = r->scored_k = r->delta_vs_topk = r->rel_vs_topk = NAN;
    return r;
}

void olmoe_match_table_free(olmoe_match_table *t) {
    free(t->rows);
    t->rows = NULL;
    t->n = t->cap = 0;
}

static const char *const kinds[] = {"replay", "exact", "calibration"};

static const olmoe_match_row *find(const olmoe_match_table *t, const char *kind, double target,
                                   const char *family) {
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->rows[i].kind, kind) && t->rows[i].target_k == target &&
            !strcmp(t->rows[i].family, family))
            return &t->rows[i];
    return NULL;
}

static void grid(const olmoe_match_table *t, const char *kind, FILE *f) {
    int calib = !strcmp(kind, "calibration");
    fprintf(f, "\n# %s: %s\n", kind,
            calib ? "calibrated parameter (mean experts per token-layer on the calibration data)"
            : !strcmp(kind, "replay")
                ? "perplexity (relative to top-k at the same k) @ the mean k scored, frozen "
                  "attention: optimistic"
                : "perplexity (relative to top-k at the same k) @ the mean k scored, the exact "
                  "forward pass");
    fprintf(f, "%-10s", "family");
    for (int j = 0; j < t->n_targets; j++) {
        char h[32];
        snprintf(h, sizeof h, "k=%g", t->targets[j]);
        fprintf(f, " %-26s", h);
    }
    fputc('\n', f);
    /* families in the order of their first row */
    for (int i = 0; i < t->n; i++) {
        const olmoe_match_row *r0 = &t->rows[i];
        if (strcmp(r0->kind, kind) != 0) continue;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = !strcmp(t->rows[j].kind, kind) && !strcmp(t->rows[j].family, r0->family);
        if (seen) continue;
        fprintf(f, "%-10s", r0->family);
        for (int j = 0; j < t->n_targets; j++) {
            const olmoe_match_row *r = find(t, kind, t->targets[j], r0->family);
            char c[64] = "-";
            if (r && calib) {
                char v[40];
                olmoe_policy_fmt_number(r->param_value, v, sizeof v);
                snprintf(c, sizeof c, "%s=%.8s%s", r->param_name, v, r->reached ? "" : " (no)");
            } else if (r && !isnan(r->perplexity)) {
                /* every scored cell says the mean k the scoring measured */
                if (!r->reached)
                    snprintf(c, sizeof c, "%.2f (not reached) @%.2f", r->perplexity, r->scored_k);
                else if (!isnan(r->rel_vs_topk) && strcmp(r->family, "topk") != 0)
                    snprintf(c, sizeof c, "%.2f (%+.1f%%) @%.2f", r->perplexity,
                             100 * r->rel_vs_topk, r->scored_k);
                else
                    snprintf(c, sizeof c, "%.2f @%.2f", r->perplexity, r->scored_k);
            }
            fprintf(f, " %-26s", c);
        }
        fputc('\n', f);
    }
}

void olmoe_match_print(const olmoe_match_table *t, FILE *f) {
    if (t->calibrated_on && strcmp(t->calibrated_on, "logits") != 0)
        fprintf(f, "# matched compute on %s: parameters calibrated on the mean k the %s run "
                   "itself measures (--calibrate-scored), within %g of each target",
                t->trace, t->calibrated_on, t->tol);
    else
        fprintf(f, "# matched compute on %s: parameters calibrated on %s's captured logits (%lld "
                   "of its %lld tokens%s), mean experts per token-layer within %g of each target",
                t->trace, t->calibration, (long long)t->calib_rows,
                (long long)t->calib_trace_tokens, t->calib_stride > 1 ? ", every few" : "", t->tol);
    fprintf(f, "; max_k=%d where neither a family's spec nor --max-k gives one; \"@x\": the "
               "mean k scored; \"(not reached)\": the nearest point\n",
            t->default_max_k);
    for (int k = 0; k < 3; k++) {
        int any = 0;
        for (int i = 0; i < t->n && !any; i++) any = !strcmp(t->rows[i].kind, kinds[k]);
        if (any) grid(t, kinds[k], f);
    }
    fprintf(f, "\n%-11s %6s %-9s %-24s %8s %8s %10s %9s  %s\n", "kind", "target", "family", "param",
            "mean_k", "scored_k", "perplexity", "delta", "policy");
    for (int i = 0; i < t->n; i++) {
        const olmoe_match_row *r = &t->rows[i];
        char v[40], p[64], sk[16] = "-", pp[16] = "-", dl[16] = "-";
        olmoe_policy_fmt_number(r->param_value, v, sizeof v);
        snprintf(p, sizeof p, "%s=%s", r->param_name, v);
        if (!isnan(r->scored_k)) snprintf(sk, sizeof sk, "%.3f", r->scored_k);
        if (!isnan(r->perplexity)) snprintf(pp, sizeof pp, "%.3f", r->perplexity);
        if (!isnan(r->delta_vs_topk)) snprintf(dl, sizeof dl, "%+.3f", r->delta_vs_topk);
        fprintf(f, "%-11s %6g %-9s %-24s %8.3f %8s %10s %9s  %s\n", r->kind, r->target_k,
                r->family, p, r->achieved_k, sk, pp, dl, r->policy);
    }
    int notes = 0;
    for (int i = 0; i < t->n; i++) {
        const olmoe_match_row *r = &t->rows[i];
        if (r->reached || !r->note[0]) continue;
        int dup = 0;
        for (int j = 0; j < i && !dup; j++)
            dup = !strcmp(t->rows[j].family, r->family) && t->rows[j].target_k == r->target_k;
        if (dup) continue;
        if (!notes++) fprintf(f, "\nnot reached:\n");
        fprintf(f, "  %s at k=%g: %s\n", r->family, r->target_k, r->note);
    }
}

int olmoe_match_write_csv(const olmoe_match_table *t, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return olmoe_errorf("%s: %s", path, strerror(errno));
    fprintf(f, "kind,target_k,family,param_name,param_value,achieved_k,reached,scored_k,perplexity,"
               "accuracy,delta_vs_topk,rel_vs_topk,policy,note\n");
    for (int i = 0; i < t->n; i++) {
        const olmoe_match_row *r = &t->rows[i];
        olmoe_csv_field(f, r->kind);
        fprintf(f, ",%.17g,", r->target_k);
        olmoe_csv_field(f, r->family);
        fputc(',', f);
        olmoe_csv_field(f, r->param_name);
        fprintf(f, ",%.17g,%.17g,%d,%.17g,%.17g,%.17g,%.17g,%.17g,", r->param_value, r->achieved_k,
                r->reached, r->scored_k, r->perplexity, r->accuracy, r->delta_vs_topk,
                r->rel_vs_topk);
        olmoe_csv_field(f, r->policy);
        fputc(',', f);
        olmoe_csv_field(f, r->note);
        fputc('\n', f);
    }
    if (fclose(f) != 0) return olmoe_errorf("%s: %s", path, strerror(errno));
    return 0;
}

int olmoe_match_write_h5(const olmoe_match_table *t, hid_t loc, int replace) {
    int e = olmoe_h5_exists(loc, "match");
    if (e < 0) return -1;
    if (e && !replace) return olmoe_errorf("/match already exists (--force replaces it)");
    if (e && olmoe_h5_delete(loc, "match") != 0) return -1;
    if (olmoe_h5_make_groups(loc, "match") != 0) return -1;
    int n = t->n, rc = -1;
    const char **s = xmalloc(xmul((size_t)(n ? n : 1), sizeof *s));
    double *v = xmalloc(xmul((size_t)(n ? n : 1), sizeof *v));
    int32_t *iv = xmalloc(xmul((size_t)(n ? n : 1), sizeof *iv));
    int64_t dims[1] = {n};
    hid_t g = H5Gopen2(loc, "match", H5P_DEFAULT);
    if (g < 0) {
        olmoe_errorf("/match: cannot open the group");
        goto done;
    }
#define STRS(name, expr)                                                   \
    for (int i = 0; i < n; i++) s[i] = t->rows[i].expr;                    \
    if (olmoe_h5_write_strings(g, name, (char *const *)s, n) != 0) goto done;
#define NUMS(name, expr)                                                   \
    for (int i = 0; i < n; i++) v[i] = t->rows[i].expr;                    \
    if (olmoe_h5_write(g, name, OLMOE_H5_F64, 1, dims, v) != 0) goto done;
    STRS("family", family);
    NUMS("target_k", target_k);
    STRS("param_name", param_name);
    NUMS("param_value", param_value);
    STRS("policy", policy);
    NUMS("achieved_k", achieved_k);
    for (int i = 0; i < n; i++) iv[i] = t->rows[i].reached;
    if (olmoe_h5_write(g, "reached", OLMOE_H5_I32, 1, dims, iv) != 0) goto done;
    STRS("note", note);
    STRS("kind", kind);
    NUMS("perplexity", perplexity);
    NUMS("accuracy", accuracy);
    NUMS("scored_k", scored_k);
    NUMS("delta_vs_topk", delta_vs_topk);
    NUMS("rel_vs_topk", rel_vs_topk);
#undef STRS
#undef NUMS
    char created[32];
    time_t now = time(NULL);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    if (olmoe_h5_set_attr_str(loc, "match", "trace", t->trace) != 0 ||
        olmoe_h5_set_attr_str(loc, "match", "calibration", t->calibration) != 0 ||
        olmoe_h5_set_attr_str(loc, "match", "calibration_checksum", t->calib_checksum) != 0 ||
        olmoe_h5_set_attr_i64(loc, "match", "calibration_tokens", t->calib_rows) != 0 ||
        olmoe_h5_set_attr_i64(loc, "match", "calibration_stride", t->calib_stride) != 0 ||
        olmoe_h5_set_attr_f64(loc, "match", "tolerance", t->tol) != 0 ||
        olmoe_h5_set_attr_str(loc, "match", "calibrated_on",
                              t->calibrated_on ? t->calibrated_on : "logits") != 0 ||
        olmoe_h5_set_attr_i32(loc, "match", "default_max_k", t->default_max_k) != 0 ||
        olmoe_h5_set_attr_str(loc, "match", "command", t->command ? t->command : "") != 0 ||
        olmoe_h5_set_attr_str(loc, "match", "created", created) != 0)
        goto done;
    rc = 0;
done:
    if (g >= 0) H5Gclose(g);
    free(s);
    free(v);
    free(iv);
    return rc == 0 ? 0 : olmoe_error_prefix("/match");
}
