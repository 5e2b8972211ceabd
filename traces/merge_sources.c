/* merge_sources.c: the source files of a merged trace's virtual datasets.
 * HDF5 reads a missing source as fill values without an error (NaN, -1), so
 * every open of a trace (olmoe_trace_open: info, export, replay, analyze,
 * kde...) and verify ask here that every shard a merged trace maps is beside
 * it, opens, and is the complete trace of the same model that was merged. */
#include "merge_internal.h"

#include <libgen.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>


/* where HDF5 looks for a relative source first: beside the virtual file */
static char *resolve(const char *vfile, const char *src) {
    if (src[0] == '/') return xstrdup(src);
    char *c = xstrdup(vfile);
    char *p = olmoe_path_join(dirname(c), src);
    free(c);
    return p;
}

static void check_file(trace_problems *r, const char *path, const char *shown, const char *ds,
                       int64_t need_rows, const char *model_checksum) {
    if (!olmoe_file_exists(path)) {
        trace_problem(r, "%s: source of %s is missing (the shards must stay beside the merged trace, "
                "or merge them again with olmoe-traces merge --copy)", shown, ds);
        return;
    }
    olmoe_trace *t = olmoe_trace_open(path);
    if (!t) {
        trace_problem(r, "%s: source of %s does not open: %s", shown, ds, olmoe_error());
        return;
    }
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    if (!in->complete)
        trace_problem(r, "%s: source of %s is incomplete", shown, ds);
    else if (strcmp(in->meta.model_checksum, model_checksum) != 0)
        trace_problem(r, "%s: source of %s is from another model (checksum %s)", shown, ds,
                in->meta.model_checksum);
    else if (in->n_tokens < need_rows)
        trace_problem(r, "%s: source of %s holds %lld rows, the merged trace maps %lld", shown, ds,
                (long long)in->n_tokens, (long long)need_rows);
    olmoe_trace_close(t);
}

/* the check of the trace path, open as f */
static int64_t check_sources(hid_t f, const char *path, olmoe_trace_report_fn report, void *ctx) {
    trace_problems r = {report, ctx, NULL, 0};
    char *model = NULL;
    if (olmoe_h5_has_attr(f, ".", "model_checksum") > 0)
        olmoe_h5_get_attr_str(f, ".", "model_checksum", &model);
    char **seen = NULL;
    size_t n_seen = 0;
    for (int i = 0; i < TDS_COUNT; i++) {
        const char *name = trace_ds_table[i].path;
        if (!trace_ds_table[i].per_token || olmoe_h5_exists(f, name) <= 0) continue;
        hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
        hid_t dcpl = ds >= 0 ? H5Dget_create_plist(ds) : H5I_INVALID_HID;
        size_t count = 0;
        if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_VIRTUAL && H5Pget_virtual_count(dcpl, &count) >= 0) {
            for (size_t k = 0; k < count; k++) {
                ssize_t len = H5Pget_virtual_filename(dcpl, k, NULL, 0);
                if (len < 0) continue;
                char *src = xmalloc((size_t)len + 1);
                H5Pget_virtual_filename(dcpl, k, src, (size_t)len + 1);
                hid_t ss = H5Pget_virtual_srcspace(dcpl, k);
                hsize_t lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0};
                int64_t need = 0;
                if (ss >= 0 && H5Sget_select_bounds(ss, lo, hi) >= 0) need = (int64_t)hi[0] + 1;
                olmoe_h5_close_id(ss);
                int dup = strcmp(src, ".") == 0;
                for (size_t j = 0; j < n_seen && !dup; j++) dup = strcmp(seen[j], src) == 0;
                if (!dup) {
                    char *full = resolve(path, src);
                    check_file(&r, full, src, name, need, model ? model : "");
                    free(full);
                    seen = xrealloc(seen, (n_seen + 1) * sizeof *seen);
                    seen[n_seen++] = src;
                } else {
                    free(src);
                }
            }
        }
        olmoe_h5_close_id(dcpl);
        olmoe_h5_close_id(ds);
        H5Eclear2(H5E_DEFAULT);
    }
    for (size_t j = 0; j < n_seen; j++) free(seen[j]);
    free(seen);
    free(model);
    return r.n;
}

int64_t olmoe_trace_check_sources(const char *path, olmoe_trace_report_fn report, void *ctx) {
    olmoe_h5_init();
    hid_t f = olmoe_h5_open(path, 0);
    if (f < 0) {
        trace_problems r = {report, ctx, NULL, 0};
        trace_problem(&r, "%s", olmoe_error());
        return r.n;
    }
    int64_t n = check_sources(f, path, report, ctx);
    H5Fclose(f);
    return n;
}

static void keep_first(void *ctx, const char *msg) {
    char *first = ctx;
    if (!*first) snprintf(first, 1024, "%s", msg);
}

int trace_check_sources_open(olmoe_trace *t) {
    int any = 0;
    for (int i = 0; i < TDS_COUNT && !any; i++) {
        if (!trace_ds_table[i].per_token || t->ds[i] <= 0) continue;
        hid_t dcpl = H5Dget_create_plist(t->ds[i]);
        any = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_VIRTUAL;
        olmoe_h5_close_id(dcpl);
    }
    H5Eclear2(H5E_DEFAULT);
    if (!any) return 0;
    char first[1024] = "";
    int64_t n = check_sources(t->file, t->path, keep_first, first);
    if (n == 0) return 0;
    if (n > 1) return olmoe_errorf("%s: %s (and %lld more problems: olmoe-traces verify lists them)",
                                   t->path, first, (long long)(n - 1));
    return olmoe_errorf("%s: %s", t->path, first);
}
