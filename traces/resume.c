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

#define COPY_BYTES ((size_t)64 << 20) /* rows per copy block: about this much */

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
        if (!same && x->str)
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

static int copy_groups_documents(olmoe_trace *old, olmoe_trace *t) {
    char **names = NULL;
    int64_t ng = 0;
    if (olmoe_trace_read_groups(old, &names, &ng) != 0) return -1;
    int r = olmoe_trace_add_groups(t, (const char *const *)names, ng);
    olmoe_trace_free_groups(names, ng);
    if (r != 0) return -1;
    enum { B = 65536 };
    olmoe_trace_document *d = xmalloc(B * sizeof *d);
    for (int64_t s = 0; s < old->info.n_documents && r == 0; s += B) {
        int64_t c = old->info.n_documents - s < B ? old->info.n_documents - s : B;
        int64_t keep = c;
        if (olmoe_trace_read_documents(old, s, c, d) != 0) r = -1;
        /* rows a killed writer extended but never wrote hold the fill value */
        while (r == 0 && keep > 0 && d[keep - 1].start == -1 && d[keep - 1].length == -1) keep--;
        if (r == 0 && olmoe_trace_add_documents(t, d, keep) != 0) r = -1;
    }
    free(d);
    return r;
}

/* the committed windows and their rows, in blocks of about COPY_BYTES */
static int copy_windows(olmoe_trace *old, olmoe_trace *t) {
    const olmoe_trace_info *in = &old->info;
    size_t le = trace_row_elems(in, TDS_ROUTER_LOGITS);
    size_t ld = in->has_residuals ? trace_row_elems(in, TDS_RESIDUAL) : 0;
    size_t row_bytes = 12 + 4 * le + 2 * ld;
    int64_t budget = (int64_t)(COPY_BYTES / row_bytes) + 1, cap = 0;
    enum { WB = 4096 };
    olmoe_trace_window *w = xmalloc(WB * sizeof *w);
    int32_t *tok = NULL, *am = NULL;
    float *nll = NULL, *lg = NULL;
    uint16_t *res = NULL;
    int rc = -1;
    for (int64_t w0 = 0; w0 < in->n_windows; w0 += WB) {
        int64_t nw = in->n_windows - w0 < WB ? in->n_windows - w0 : WB;
        if (olmoe_trace_read_windows(old, w0, nw, w) != 0) goto out;
        for (int64_t k = 0; k < nw;) {
            int64_t p0 = w[k].start + w[k].stored_from, rows = 0, nb = 0;
            /* stored_end is filled on reading, also for a window cut short */
            while (k + nb < nw) {
                const olmoe_trace_window *x = &w[k + nb];
                int64_t r = x->stored_end - x->start - x->stored_from;
                if (nb > 0 && rows + r > budget) break;
                rows += r;
                nb++;
            }
            if (rows > cap) {
                cap = rows;
                tok = xrealloc(tok, xmul((size_t)cap, sizeof *tok));
                am = xrealloc(am, xmul((size_t)cap, sizeof *am));
                nll = xrealloc(nll, xmul((size_t)cap, sizeof *nll));
                lg = xrealloc(lg, xmul((size_t)cap, le * sizeof *lg));
                if (ld) res = xrealloc(res, xmul((size_t)cap, ld * sizeof *res));
            }
            if (olmoe_trace_read_tokens(old, p0, rows, tok) || olmoe_trace_read_argmax(old, p0, rows, am) ||
                olmoe_trace_read_nll(old, p0, rows, nll) ||
                olmoe_trace_read_router_logits(old, p0, rows, lg) ||
                (ld && olmoe_trace_read_residual_bf16(old, p0, rows, res)))
                goto out;
            /* float16/bfloat16 -> float -> the same 16 bits: exact */
            olmoe_trace_rows r = {tok, lg, nll, am, NULL, ld ? res : NULL};
            if (olmoe_trace_append_windows(t, nb, &w[k], &r) != 0) goto out;
            k += nb;
        }
    }
    rc = 0;
out:
    free(w);
    free(tok);
    free(am);
    free(nll);
    free(lg);
    free(res);
    return rc;
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
    if (copy_groups_documents(old, t) != 0 || copy_windows(old, t) != 0) {
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
