/* resume.c: continuing an incomplete trace (killed or aborted capture).
 *
 * The committed part is copied into a fresh trace ("<path>.resume", renamed
 * over path when the copy is complete), which is then returned for appending.
 * Appending to the killed file in place is not safe: a SWMR writer killed
 * mid-flush leaves chunk-index and metadata entries pointing past the end of
 * allocation recorded on disk, and HDF5 would write new data over them (seen
 * as "addr overflow" by the random-kill test). The copy costs one read and one
 * write of the trace, once per resume; the killed file stays untouched until
 * the rename, so a kill during the resume loses nothing. Rows past the last
 * committed window are not copied, so the result equals an uninterrupted run. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* every data-defining field of want must equal the file's */
static int compare_meta(const olmoe_trace *t, const olmoe_trace_meta *want) {
    const olmoe_trace_meta *have = &t->info.meta;
    for (size_t i = 0; i < trace_attr_count; i++) {
        const trace_attr_desc *a = &trace_attr_table[i];
        if (!a->defines_data) continue;
        const char *hb = (const char *)have + a->off, *wb = (const char *)want + a->off;
        if (a->kind == ATTR_STR) {
            const char *h = *(const char *const *)hb, *w = *(const char *const *)wb;
            if (strcmp(h ? h : "", w ? w : "") != 0)
                return olmoe_errorf("%s: cannot resume: attribute '%s' differs (file '%.60s', "
                                    "this run '%.60s')", t->path, a->name, h ? h : "", w ? w : "");
        } else if (*(const int *)hb != *(const int *)wb) {
            return olmoe_errorf("%s: cannot resume: attribute '%s' differs (file %d, this run %d)",
                                t->path, a->name, *(const int *)hb, *(const int *)wb);
        }
    }
    if (have->logits_dtype != want->logits_dtype)
        return olmoe_errorf("%s: cannot resume: router logits are %s in the file, %s in this run",
                            t->path, olmoe_trace_dtype_name(have->logits_dtype),
                            olmoe_trace_dtype_name(want->logits_dtype));
    if (!have->save_residuals != !want->save_residuals)
        return olmoe_errorf("%s: cannot resume: the file %s residuals, this run %s", t->path,
                            have->save_residuals ? "has" : "has no",
                            want->save_residuals ? "saves them" : "does not");
    for (int i = 0; i < want->n_extra; i++) {
        const olmoe_trace_attr *x = &want->extra[i];
        if (!x->defines_data) continue;
        int e = olmoe_h5_has_attr(t->file, ".", x->name);
        if (e < 0) return olmoe_error_prefix("%s", t->path);
        if (!e)
            return olmoe_errorf("%s: cannot resume: the file has no attribute '%s'", t->path,
                                x->name);
        char *s = NULL;
        int64_t v = 0;
        if ((x->str ? olmoe_h5_get_attr_str(t->file, ".", x->name, &s)
                    : olmoe_h5_get_attr_i64(t->file, ".", x->name, &v)) != 0)
            return olmoe_error_prefix("%s", t->path);
        int same = x->str ? strcmp(s, x->str) == 0 : v == x->i64;
        if (!same && strcmp(x->name, OLMOE_ATTR_INPUT_CHECKSUM) == 0)
            olmoe_errorf("%s: cannot resume: the input is not the one the interrupted capture "
                         "read (checksum of its bytes %.32s, this run's %.32s); give it the same "
                         "input", t->path, *s ? s : "not recorded", x->str);
        else if (!same && x->str)
            olmoe_errorf("%s: cannot resume: attribute '%s' differs (file '%.60s', this run "
                         "'%.60s')", t->path, x->name, s, x->str);
        else if (!same)
            olmoe_errorf("%s: cannot resume: attribute '%s' differs (file %lld, this run %lld)",
                         t->path, x->name, (long long)v, (long long)x->i64);
        free(s);
        if (!same) return -1;
    }
    return 0;
}

/* the deflate level of /router_logits (0: none) */
static int gzip_level(olmoe_trace *t) {
    hid_t dcpl = H5Dget_create_plist(t->ds[TDS_ROUTER_LOGITS]);
    int level = 0;
    int nf = dcpl >= 0 ? H5Pget_nfilters(dcpl) : 0;
    for (int i = 0; i < nf; i++) {
        unsigned flags, cd[8], cfg;
        size_t ncd = 8;
        char name[32];
        if (H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, sizeof name, name, &cfg) ==
                H5Z_FILTER_DEFLATE &&
            ncd >= 1)
            level = (int)cd[0];
    }
    olmoe_h5_close_id(dcpl);
    H5Eclear2(H5E_DEFAULT);
    return level;
}

olmoe_trace *olmoe_trace_resume(const char *path, const olmoe_trace_meta *meta) {
    olmoe_h5_init();
    olmoe_trace *old = olmoe_trace_open(path), *t = NULL;
    if (!old) return NULL;
    char *tmp = NULL;
    /* a complete one too: its writer was killed after closing it but before
     * renaming it (olmoe-capture's partial); copied whole, it closes again
     * into the same trace */
    if (compare_meta(old, meta) != 0) goto fail;
    olmoe_trace_meta m = old->info.meta; /* the file's own, provenance included */
    m.gzip = gzip_level(old);
    m.extra = meta->extra; /* the reader keeps none; those defining data were compared */
    m.n_extra = meta->n_extra;
    size_t n = strlen(path);
    tmp = xmalloc(n + sizeof ".resume");
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".resume", sizeof ".resume");
    if (!(t = olmoe_trace_create(tmp, &m))) goto fail;
    if (trace_copy_documents(old, t) != 0 || trace_copy_windows(old, t) != 0) {
        olmoe_error_prefix("%s: resume", path);
        goto fail;
    }
    olmoe_trace_close(old);
    old = NULL;
    if (rename(tmp, path) != 0) {
        olmoe_errorf("%s: cannot rename from %s: %s", path, tmp, strerror(errno));
        goto fail;
    }
    free(t->path);
    t->path = xstrdup(path);
    free(tmp);
    return t;
fail:
    if (t) {
        olmoe_trace_abort(t);
        unlink(tmp);
    }
    free(tmp);
    olmoe_trace_close(old);
    return NULL;
}
