/* write.c: creating a trace, appending windows, documents and groups, and
 * closing it.
 *
 * Crash safety (olmoe-trace(5), "CRASH SAFETY"): the file is created with the
 * HDF5 1.10 format (libver latest), every dataset exists, empty and
 * extendible, before the first window; then the writer enters SWMR mode
 * (H5Fstart_swmr_write), where HDF5 orders its metadata writes so that the
 * file on disk is always one a reader can open. Each append call writes the
 * per-token rows, flushes, then writes the /windows rows that commit them and
 * flushes again: whatever a kill interrupts, the windows prefix that tiles
 * [0, N) describes rows that are all on disk. In SWMR mode nothing but
 * appends and in-place attribute writes happens (every attribute exists from
 * creation on); only group names given after the first window are written
 * at close, as variable-length data. The empty trace (with its header,
 * /groups and /documents, when given) is built under "<path>.creating" and
 * renamed into place, so a file at path always opens and has its header. */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int check_meta(const char *path, const olmoe_trace_meta *m) {
    if (m->n_layers < 1 || m->n_experts < 1 || m->vocab_size < 1)
        return olmoe_errorf("%s: n_layers, n_experts and vocab_size must be positive (%d, %d, %d)",
                            path, m->n_layers, m->n_experts, m->vocab_size);
    if ((int64_t)m->n_layers * m->n_experts > (1 << 24) ||
        (int64_t)m->n_layers * m->hidden_size > (1 << 28))
        return olmoe_errorf("%s: sizes n_layers %d, n_experts %d, hidden_size %d are too large",
                            path, m->n_layers, m->n_experts, m->hidden_size);
    if (m->save_residuals && m->hidden_size < 1)
        return olmoe_errorf("%s: saving residuals needs hidden_size (%d)", path, m->hidden_size);
    if (m->top_k < 1 || m->top_k > m->n_experts)
        return olmoe_errorf("%s: top_k %d outside 1..%d", path, m->top_k, m->n_experts);
    if (m->ctx < 1 || m->stride < 0 || m->stride > m->ctx)
        return olmoe_errorf("%s: bad ctx %d / stride %d", path, m->ctx, m->stride);
    if ((unsigned)m->logits_dtype >= OLMOE_DTYPE_COUNT)
        return olmoe_errorf("%s: bad logits dtype %d", path, (int)m->logits_dtype);
    /* what olmoe_trace_verify would reject is refused now, not found later */
    if (!m->model_checksum || !*m->model_checksum || !trace_is_hex(m->model_checksum) ||
        (m->tokenizer_checksum && !trace_is_hex(m->tokenizer_checksum)))
        return olmoe_errorf("%s: model and tokenizer checksums must be lower-case hex", path);
    if (!m->device || (strcmp(m->device, "cpu") != 0 && strncmp(m->device, "cuda:", 5) != 0))
        return olmoe_errorf("%s: device '%s' is neither 'cpu' nor 'cuda:<name>'", path,
                            m->device ? m->device : "");
    if (!m->compute_dtype ||
        (strcmp(m->compute_dtype, "float32") != 0 && strcmp(m->compute_dtype, "bfloat16") != 0))
        return olmoe_errorf("%s: compute dtype '%s' is neither float32 nor bfloat16", path,
                            m->compute_dtype ? m->compute_dtype : "");
    if (!m->policy || !*m->policy) return olmoe_errorf("%s: no routing policy id", path);
    if (m->chunk_rows < 0 || m->gzip < 0 || m->gzip > 9)
        return olmoe_errorf("%s: bad chunk rows %d / gzip level %d", path, m->chunk_rows, m->gzip);
    return 0;
}

static hid_t logits_file_type(olmoe_trace_dtype d) {
    if (d == OLMOE_DTYPE_BF16) return olmoe_h5_type_bf16();
    if (d == OLMOE_DTYPE_F16) return olmoe_h5_type_f16();
    return H5Tcopy(H5T_IEEE_F32LE);
}

/* An extendible dataset [0, row...] chunked along axis 0. A chunk cache of a
 * few chunks keeps the partly filled last chunk in memory between appends. */
static hid_t make_ds(hid_t f, const char *path, hid_t type, int rank, const hsize_t *row,
                     hsize_t chunk_rows, int gzip, const void *fill, hid_t fill_type) {
    hid_t sp = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, dapl = H5I_INVALID_HID,
          lcpl = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hsize_t dims[3] = {0, 0, 0}, maxd[3] = {H5S_UNLIMITED, 0, 0}, chunk[3] = {chunk_rows, 0, 0};
    size_t row_bytes = H5Tget_size(type);
    for (int i = 1; i < rank; i++) {
        dims[i] = maxd[i] = chunk[i] = row[i - 1];
        row_bytes *= (size_t)row[i - 1];
    }
    size_t cache = 3 * chunk_rows * row_bytes;
    if (cache < ((size_t)1 << 20)) cache = (size_t)1 << 20;
    H5_CHECK(sp = H5Screate_simple(rank, dims, maxd), "%s: dataspace", path);
    H5_CHECK(dcpl = H5Pcreate(H5P_DATASET_CREATE), "%s", path);
    H5_CHECK(H5Pset_chunk(dcpl, rank, chunk), "%s: chunking", path);
    if (gzip) {
        H5_CHECK(H5Pset_shuffle(dcpl), "%s: shuffle", path);
        H5_CHECK(H5Pset_deflate(dcpl, (unsigned)gzip), "%s: deflate", path);
    }
    if (fill) H5_CHECK(H5Pset_fill_value(dcpl, fill_type, fill), "%s: fill value", path);
    H5_CHECK(dapl = H5Pcreate(H5P_DATASET_ACCESS), "%s", path);
    H5_CHECK(H5Pset_chunk_cache(dapl, 521, cache, 1.0), "%s: chunk cache", path);
    H5_CHECK(lcpl = H5Pcreate(H5P_LINK_CREATE), "%s", path);
    H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1), "%s", path);
    H5_CHECK(ds = H5Dcreate2(f, path, type, sp, lcpl, dcpl, dapl), "%s: cannot create", path);
    H5Pclose(lcpl);
    H5Pclose(dapl);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return ds;
fail:
    olmoe_h5_close_id(lcpl);
    olmoe_h5_close_id(dapl);
    olmoe_h5_close_id(dcpl);
    olmoe_h5_close_id(sp);
    return H5I_INVALID_HID;
}

/* a fixed dimension scale /name = 0..n-1 */
static hid_t make_scale(hid_t f, const char *name, int n) {
    hid_t ds = H5I_INVALID_HID;
    int32_t *v = xmalloc((size_t)n * sizeof *v);
    for (int i = 0; i < n; i++) v[i] = i;
    int64_t d = n;
    if (olmoe_h5_write(f, name, OLMOE_H5_I32, 1, &d, v) != 0) goto fail;
    H5_CHECK(ds = H5Dopen2(f, name, H5P_DEFAULT), "%s", name);
    H5_CHECK(H5DSset_scale(ds, name), "%s: dimension scale", name);
    free(v);
    return ds;
fail:
    free(v);
    olmoe_h5_close_id(ds);
    return H5I_INVALID_HID;
}

static int attach(hid_t ds, hid_t scale, unsigned dim, const char *what) {
    H5_CHECK(H5DSattach_scale(ds, scale, dim), "%s: attaching dimension scale %u", what, dim);
    return 0;
fail:
    return -1;
}

static int write_root_attrs(olmoe_trace *t, const olmoe_trace_meta *m) {
    hid_t f = t->file;
    if (trace_write_meta_attrs(f, m, 0) != 0) return olmoe_error_prefix("%s", t->path);
    /* placeholders, so the schema does not change at close */
    if (olmoe_h5_set_attr_i32(f, ".", TRACE_ATTR_COMPLETE, 0) ||
        olmoe_h5_set_attr_i64(f, ".", TRACE_ATTR_N_TOKENS, 0) ||
        olmoe_h5_set_attr_i64(f, ".", TRACE_ATTR_N_WINDOWS, 0) ||
        olmoe_h5_set_attr_i64(f, ".", TRACE_ATTR_N_SCORED, 0) ||
        olmoe_h5_set_attr_f64(f, ".", TRACE_ATTR_NLL_SUM, 0.0) ||
        olmoe_h5_set_attr_f64(f, ".", TRACE_ATTR_PERPLEXITY, NAN))
        return olmoe_error_prefix("%s", t->path);
    for (int i = 0; i < m->n_extra; i++) {
        const olmoe_trace_attr *x = &m->extra[i];
        if (!x->name || !*x->name || olmoe_h5_has_attr(f, ".", x->name) != 0)
            return olmoe_errorf("%s: extra attribute '%s' is unnamed or already written",
                                t->path, x->name ? x->name : "");
        if ((x->str ? olmoe_h5_set_attr_str(f, ".", x->name, x->str)
                    : olmoe_h5_set_attr_i64(f, ".", x->name, x->i64)) != 0)
            return olmoe_error_prefix("%s", t->path);
    }
    return 0;
}

static int create_datasets(olmoe_trace *t, const olmoe_trace_meta *m) {
    hid_t f = t->file, lt = H5I_INVALID_HID, bt = H5I_INVALID_HID, st = H5I_INVALID_HID,
          dft = H5I_INVALID_HID, dmt = H5I_INVALID_HID;
    hid_t s_layer = H5I_INVALID_HID, s_expert = H5I_INVALID_HID, s_hidden = H5I_INVALID_HID;
    hsize_t cr = (hsize_t)(m->chunk_rows ? m->chunk_rows : OLMOE_TRACE_CHUNK_ROWS);
    hsize_t le[2] = {(hsize_t)m->n_layers, (hsize_t)m->n_experts};
    hsize_t ld[2] = {(hsize_t)m->n_layers, (hsize_t)(m->hidden_size > 0 ? m->hidden_size : 1)};
    hsize_t three[1] = {3};
    const int64_t fill_w = -1;
    const float nan = NAN;
    const olmoe_trace_document fill_doc = {-1, -1, -1};
    hid_t *ds = t->ds;
    int rc = -1;

    H5_CHECK(lt = logits_file_type(m->logits_dtype), "%s: logits type", t->path);
    if ((ds[TDS_TOKEN_SCALE] = make_ds(f, "token", H5T_STD_I64LE, 1, NULL, cr, 0, NULL, 0)) < 0 ||
        (ds[TDS_TOKENS] = make_ds(f, "tokens", H5T_STD_I32LE, 1, NULL, cr, 0, NULL, 0)) < 0 ||
        (ds[TDS_ROUTER_LOGITS] = make_ds(f, "router_logits", lt, 3, le, cr, m->gzip, NULL, 0)) < 0 ||
        (ds[TDS_NLL] = make_ds(f, "baseline/nll", H5T_IEEE_F32LE, 1, NULL, cr, 0, &nan,
                               H5T_NATIVE_FLOAT)) < 0 ||
        (ds[TDS_ARGMAX] = make_ds(f, "baseline/argmax", H5T_STD_I32LE, 1, NULL, cr, 0, NULL, 0)) < 0 ||
        (ds[TDS_WINDOWS] = make_ds(f, "windows", H5T_STD_I64LE, 2, three, 256, 0, &fill_w,
                                   H5T_NATIVE_INT64)) < 0)
        goto fail;
    H5_CHECK(dft = trace_doc_file_type(), "%s: documents type", t->path);
    H5_CHECK(dmt = trace_doc_mem_type(), "%s: documents type", t->path);
    if ((ds[TDS_DOCUMENTS] = make_ds(f, "documents", dft, 1, NULL, 1024, 0, &fill_doc, dmt)) < 0)
        goto fail;
    H5_CHECK(st = trace_vstr_type(), "%s: string type", t->path);
    if ((ds[TDS_GROUPS] = make_ds(f, "groups", st, 1, NULL, 64, 0, NULL, 0)) < 0) goto fail;
    if (trace_dims_make(f, ds[TDS_WINDOWS], ds[TDS_DOCUMENTS], ds[TDS_GROUPS]) != 0) goto fail;
    if (m->save_residuals) {
        /* residual rows are big (L * D * 2 bytes): keep chunks near 4 MiB */
        size_t row = (size_t)m->n_layers * (size_t)m->hidden_size * 2;
        hsize_t rr = (hsize_t)((4u << 20) / row);
        if (rr < 1) rr = 1;
        if (rr > cr) rr = cr;
        H5_CHECK(bt = olmoe_h5_type_bf16(), "%s: bfloat16 type", t->path);
        if ((ds[TDS_RESIDUAL] = make_ds(f, "residual/attn", bt, 3, ld, rr, m->gzip, NULL, 0)) < 0)
            goto fail;
    }
    H5_CHECK(H5DSset_scale(ds[TDS_TOKEN_SCALE], "token"), "%s: /token: dimension scale", t->path);
    if ((s_layer = make_scale(f, "layer", m->n_layers)) < 0 ||
        (s_expert = make_scale(f, "expert", m->n_experts)) < 0)
        goto fail;
    if (m->save_residuals && (s_hidden = make_scale(f, "hidden", m->hidden_size)) < 0) goto fail;
    hid_t tok = ds[TDS_TOKEN_SCALE];
    if (attach(ds[TDS_TOKENS], tok, 0, "/tokens") || attach(ds[TDS_NLL], tok, 0, "/baseline/nll") ||
        attach(ds[TDS_ARGMAX], tok, 0, "/baseline/argmax") ||
        attach(ds[TDS_ROUTER_LOGITS], tok, 0, "/router_logits") ||
        attach(ds[TDS_ROUTER_LOGITS], s_layer, 1, "/router_logits") ||
        attach(ds[TDS_ROUTER_LOGITS], s_expert, 2, "/router_logits"))
        goto fail;
    if (m->save_residuals &&
        (attach(ds[TDS_RESIDUAL], tok, 0, "/residual/attn") ||
         attach(ds[TDS_RESIDUAL], s_layer, 1, "/residual/attn") ||
         attach(ds[TDS_RESIDUAL], s_hidden, 2, "/residual/attn")))
        goto fail;
    rc = 0;
fail:
    if (rc) olmoe_error_prefix("%s", t->path);
    olmoe_h5_close_id(s_hidden);
    olmoe_h5_close_id(s_expert);
    olmoe_h5_close_id(s_layer);
    olmoe_h5_close_id(st);
    olmoe_h5_close_id(dmt);
    olmoe_h5_close_id(dft);
    olmoe_h5_close_id(bt);
    olmoe_h5_close_id(lt);
    return rc;
}

static int start_swmr(olmoe_trace *t);

olmoe_trace *olmoe_trace_create(const char *path, const olmoe_trace_meta *meta) {
    return olmoe_trace_create_with_header(path, meta, NULL);
}

olmoe_trace *olmoe_trace_create_with_header(const char *path, const olmoe_trace_meta *meta,
                                            const olmoe_trace_header *h) {
    olmoe_h5_init();
    hid_t fapl = H5I_INVALID_HID;
    char *tmp = NULL;
    if (check_meta(path, meta) != 0) return NULL;
    olmoe_trace *t = xcalloc(1, sizeof *t);
    t->path = xstrdup(path);
    t->writer = t->writable = 1;
    t->file = H5I_INVALID_HID;
    H5_CHECK(fapl = H5Pcreate(H5P_FILE_ACCESS), "%s", path);
    /* SWMR needs the 1.10 file format (readable by HDF5 >= 1.10, h5py included) */
    H5_CHECK(H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), "%s", path);
    /* closing the file closes everything in it: the SWMR mark is cleared
     * on disk at close even if an id leaked */
    H5_CHECK(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), "%s", path);
    size_t n = strlen(path);
    tmp = xmalloc(n + sizeof ".creating");
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".creating", sizeof ".creating");
    H5_CHECK(t->file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl), "%s: cannot create", path);
    H5Pclose(fapl);
    fapl = H5I_INVALID_HID;
    if (write_root_attrs(t, meta) != 0 || create_datasets(t, meta) != 0) goto fail;
    if (h && (olmoe_trace_add_groups(t, h->groups, h->n_groups) != 0 ||
              olmoe_trace_add_documents(t, h->documents, h->n_documents) != 0))
        goto fail;
    /* SWMR from here on: a file at path is always in a state readers open */
    if (start_swmr(t) != 0) goto fail;
    if (rename(tmp, path) != 0) {
        olmoe_errorf("%s: cannot rename from %s: %s", path, tmp, strerror(errno));
        goto fail;
    }
    free(tmp);
    tmp = NULL;
    if (trace_load(t) != 0) goto fail;
    return t;
fail:
    olmoe_h5_close_id(fapl);
    trace_free(t);
    if (tmp) unlink(tmp);
    free(tmp);
    return NULL;
}

/* ---- appending ---- */
/* grows a dataset by count rows at row start and writes them from buf */
static int put_rows(olmoe_trace *t, trace_ds which, hid_t mtype, int64_t start, int64_t count,
                    const void *buf) {
    const char *name = trace_ds_table[which].path;
    hid_t ds = t->ds[which], fs = H5I_INVALID_HID, ms = H5I_INVALID_HID;
    hsize_t dims[3], off[3] = {(hsize_t)start, 0, 0}, cnt[3];
    int rank;
    H5_CHECK(fs = H5Dget_space(ds), "%s: %s", t->path, name);
    H5_CHECK(rank = H5Sget_simple_extent_ndims(fs), "%s: %s", t->path, name);
    H5_CHECK(H5Sget_simple_extent_dims(fs, dims, NULL), "%s: %s", t->path, name);
    H5Sclose(fs);
    fs = H5I_INVALID_HID;
    dims[0] = (hsize_t)(start + count);
    H5_CHECK(H5Dset_extent(ds, dims), "%s: %s: cannot grow to %lld rows", t->path, name,
             (long long)(start + count));
    hsize_t n = (hsize_t)count;
    cnt[0] = (hsize_t)count;
    for (int i = 1; i < rank; i++) {
        cnt[i] = dims[i];
        n *= dims[i];
    }
    H5_CHECK(fs = H5Dget_space(ds), "%s: %s", t->path, name);
    H5_CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL), "%s: %s", t->path,
             name);
    /* the memory space has the selection's shape: with a flat one HDF5 maps
     * chunks element by element (10x slower for 64 MB of router logits;
     * bench/NOTES.md) */
    (void)n;
    H5_CHECK(ms = H5Screate_simple(rank, cnt, NULL), "%s: %s", t->path, name);
    H5_CHECK(H5Dwrite(ds, mtype, ms, fs, H5P_DEFAULT, buf), "%s: %s: cannot write rows [%lld, %lld)",
             t->path, name, (long long)start, (long long)(start + count));
    H5Sclose(ms);
    H5Sclose(fs);
    return 0;
fail:
    olmoe_h5_close_id(ms);
    olmoe_h5_close_id(fs);
    return -1;
}

static int check_rows(olmoe_trace *t, int64_t nw, const olmoe_trace_window *w,
                      const olmoe_trace_rows *r, int64_t *n_rows) {
    const olmoe_trace_meta *m = &t->info.meta;
    int64_t end = t->info.n_tokens, prev = t->last_start, n = 0;
    if (!r || !r->tokens || !r->router_logits || !r->nll || !r->argmax)
        return olmoe_errorf("%s: append: tokens, router_logits, nll and argmax are required", t->path);
    if (m->save_residuals && !r->residual && !r->residual_bf16)
        return olmoe_errorf("%s: append: this trace saves residuals and none were given", t->path);
    for (int64_t k = 0; k < nw; k++) {
        const olmoe_trace_window *x = &w[k];
        if (x->start < 0 || x->length < 1 || x->stored_from < 0 || x->stored_from >= x->length ||
            x->length > m->ctx)
            return olmoe_errorf("%s: window %lld (start %lld, length %lld, stored_from %lld) is "
                                "malformed (ctx %d)", t->path, (long long)(t->info.n_windows + k),
                                (long long)x->start, (long long)x->length,
                                (long long)x->stored_from, m->ctx);
        int64_t st = x->start + x->stored_from, wend = x->start + x->length;
        int64_t se = x->stored_end ? x->stored_end : wend;
        if (st != end || x->start < prev)
            return olmoe_errorf("%s: window %lld stores from position %lld, expected %lld", t->path,
                                (long long)(t->info.n_windows + k), (long long)st, (long long)end);
        if (se <= st || se > wend)
            return olmoe_errorf("%s: window %lld: stored_end %lld outside (%lld, %lld]", t->path,
                                (long long)(t->info.n_windows + k), (long long)se, (long long)st,
                                (long long)wend);
        int64_t rows = se - st;
        for (int64_t i = 0; i < rows; i++) {
            float v = r->nll[n + i];
            int last = st + i == wend - 1; /* its next token is outside the window */
            if (last ? !isnan(v) : !(isfinite(v) && v >= 0))
                return olmoe_errorf("%s: window %lld: nll %g at position %lld (%s)", t->path,
                                    (long long)(t->info.n_windows + k), (double)v,
                                    (long long)(end + i),
                                    last ? "the window's last position must be NaN"
                                         : "must be finite and >= 0");
        }
        end += rows;
        prev = x->start;
        n += rows;
    }
    for (int64_t i = 0; i < n; i++) {
        if (r->tokens[i] < 0 || r->tokens[i] >= m->vocab_size)
            return olmoe_errorf("%s: token %d at position %lld is outside the vocabulary (%d)",
                                t->path, r->tokens[i], (long long)(t->info.n_tokens + i),
                                m->vocab_size);
        if (r->argmax[i] < 0 || r->argmax[i] >= m->vocab_size)
            return olmoe_errorf("%s: argmax %d at position %lld is outside the vocabulary (%d)",
                                t->path, r->argmax[i], (long long)(t->info.n_tokens + i),
                                m->vocab_size);
    }
    size_t ne = (size_t)n * trace_row_elems(&t->info, TDS_ROUTER_LOGITS);
    for (size_t i = 0; i < ne; i++) {
        float v = r->router_logits[i];
        int bad = !isfinite(v);
        if (!bad && m->logits_dtype == OLMOE_DTYPE_F16) bad = isinf(olmoe_f16_to_f32(olmoe_f16_from_f32(v)));
        if (!bad && m->logits_dtype == OLMOE_DTYPE_BF16) bad = isinf(olmoe_bf16_to_f32(olmoe_bf16_from_f32(v)));
        if (bad)
            return olmoe_errorf("%s: router logit %g at position %lld is not finite%s", t->path,
                                (double)v, (long long)(t->info.n_tokens + (int64_t)(i /
                                trace_row_elems(&t->info, TDS_ROUTER_LOGITS))),
                                isfinite(v) ? " as float16 (use float32 logits)" : "");
    }
    *n_rows = n;
    return 0;
}

/* 16-bit copy of n floats in t's scratch buffer */
static uint16_t *to_half(olmoe_trace *t, const float *src, size_t n, int bf16) {
    if (t->bf16_cap < n) {
        free(t->bf16_buf);
        t->bf16_buf = xmalloc(xmul(n, sizeof *t->bf16_buf));
        t->bf16_cap = n;
    }
    if (bf16)
        olmoe_bf16_from_f32_n(t->bf16_buf, src, n);
    else
        olmoe_f16_from_f32_n(t->bf16_buf, src, n);
    return t->bf16_buf;
}

static int update_attr(olmoe_trace *t, const char *name, hid_t mtype, const void *value);

static int start_swmr(olmoe_trace *t) {
    H5_CHECK(H5Fflush(t->file, H5F_SCOPE_GLOBAL), "%s: flush", t->path);
    H5_CHECK(H5Fstart_swmr_write(t->file), "%s: cannot start SWMR writing", t->path);
    t->swmr = 1;
    return 0;
fail:
    return -1;
}

int olmoe_trace_append_windows(olmoe_trace *t, int64_t nw, const olmoe_trace_window *w,
                               const olmoe_trace_rows *r) {
    olmoe_h5_init();
    int64_t n = 0, N = t->info.n_tokens;
    hid_t lt = H5I_INVALID_HID, bt = H5I_INVALID_HID;
    int64_t *pos = NULL, *wrows = NULL;
    if (!t->writer) return olmoe_errorf("%s: not opened for writing", t->path);
    if (t->failed) return olmoe_errorf("%s: an earlier write failed; no more appends", t->path);
    if (nw < 0) return olmoe_errorf("%s: negative window count", t->path);
    if (nw == 0) return 0;
    if (check_rows(t, nw, w, r, &n) != 0) return -1;
    if (!t->swmr && start_swmr(t) != 0) goto fail;
    t->failed = 1; /* until every write below succeeded */
    const olmoe_trace_meta *m = &t->info.meta;
    size_t nle = (size_t)n * trace_row_elems(&t->info, TDS_ROUTER_LOGITS);
    pos = xmalloc(xmul((size_t)n, sizeof *pos));
    for (int64_t i = 0; i < n; i++) pos[i] = N + i;
    if (put_rows(t, TDS_TOKEN_SCALE, H5T_NATIVE_INT64, N, n, pos) ||
        put_rows(t, TDS_TOKENS, H5T_NATIVE_INT32, N, n, r->tokens) ||
        put_rows(t, TDS_NLL, H5T_NATIVE_FLOAT, N, n, r->nll) ||
        put_rows(t, TDS_ARGMAX, H5T_NATIVE_INT32, N, n, r->argmax))
        goto fail;
    if (m->logits_dtype == OLMOE_DTYPE_F32) {
        if (put_rows(t, TDS_ROUTER_LOGITS, H5T_NATIVE_FLOAT, N, n, r->router_logits)) goto fail;
    } else {
        int bf = m->logits_dtype == OLMOE_DTYPE_BF16;
        H5_CHECK(lt = bf ? olmoe_h5_type_bf16() : olmoe_h5_type_f16(), "%s: type", t->path);
        if (put_rows(t, TDS_ROUTER_LOGITS, lt, N, n, to_half(t, r->router_logits, nle, bf)))
            goto fail;
    }
    if (m->save_residuals) {
        size_t nld = (size_t)n * trace_row_elems(&t->info, TDS_RESIDUAL);
        const uint16_t *res = r->residual_bf16 ? r->residual_bf16 : to_half(t, r->residual, nld, 1);
        H5_CHECK(bt = olmoe_h5_type_bf16(), "%s: type", t->path);
        if (put_rows(t, TDS_RESIDUAL, bt, N, n, res)) goto fail;
    }
    /* the rows are on disk before any window row points at them */
    H5_CHECK(H5Fflush(t->file, H5F_SCOPE_GLOBAL), "%s: flush", t->path);
    wrows = xmalloc(xmul((size_t)nw, 3 * sizeof *wrows));
    for (int64_t k = 0; k < nw; k++) {
        wrows[3 * k] = w[k].start;
        wrows[3 * k + 1] = w[k].length;
        wrows[3 * k + 2] = w[k].stored_from;
    }
    if (put_rows(t, TDS_WINDOWS, H5T_NATIVE_INT64, t->info.n_windows, nw, wrows) || trace_dims_sync(t->file))
        goto fail;
    H5_CHECK(H5Fflush(t->file, H5F_SCOPE_GLOBAL), "%s: flush", t->path);
    /* the commit: n_tokens, rewritten in place, says which windows count */
    int64_t nwin = t->info.n_windows + nw, ntok = N + n;
    if (update_attr(t, TRACE_ATTR_N_WINDOWS, H5T_NATIVE_INT64, &nwin) ||
        update_attr(t, TRACE_ATTR_N_TOKENS, H5T_NATIVE_INT64, &ntok))
        goto fail;
    H5_CHECK(H5Fflush(t->file, H5F_SCOPE_GLOBAL), "%s: flush", t->path);
    t->failed = 0;
    for (int64_t k = 0; k < nw; k++)
        if (w[k].stored_end && w[k].stored_end < w[k].start + w[k].length) t->info.n_cut++;
    t->info.n_tokens = ntok;
    t->info.n_windows = nwin;
    t->rows_on_disk = t->info.n_tokens;
    t->win_rows_on_disk = t->info.n_windows;
    t->last_start = w[nw - 1].start;
    t->last_end = w[nw - 1].start + w[nw - 1].length;
    olmoe_h5_close_id(bt);
    olmoe_h5_close_id(lt);
    free(pos);
    free(wrows);
    return 0;
fail:
    olmoe_h5_close_id(bt);
    olmoe_h5_close_id(lt);
    free(pos);
    free(wrows);
    return -1;
}

int olmoe_trace_append_window(olmoe_trace *t, const olmoe_trace_window *w,
                              const olmoe_trace_rows *rows) {
    return olmoe_trace_append_windows(t, 1, w, rows);
}

/* ---- documents and groups ---- */
int olmoe_trace_add_groups(olmoe_trace *t, const char *const *names, int64_t n) {
    olmoe_h5_init();
    hid_t st = H5I_INVALID_HID;
    if (!t->writer) return olmoe_errorf("%s: not opened for writing", t->path);
    if (n < 0) return olmoe_errorf("%s: negative group count", t->path);
    for (int64_t i = 0; i < n; i++)
        if (!names[i]) return olmoe_errorf("%s: group %lld has no name", t->path, (long long)i);
    if (n == 0) return 0;
    if (t->info.n_windows > 0) {
        /* variable-length data live in the global heap, whose writes SWMR
         * does not order: once windows are committed, a kill must not be
         * able to touch the file outside the appends, so keep them for close */
        t->late_groups = xrealloc(t->late_groups, xmul((size_t)(t->n_late_groups + n),
                                                       sizeof *t->late_groups));
        for (int64_t i = 0; i < n; i++) t->late_groups[t->n_late_groups++] = xstrdup(names[i]);
        t->info.n_groups += n;
        return 0;
    }
    H5_CHECK(st = trace_vstr_type(), "%s: string type", t->path);
    if (put_rows(t, TDS_GROUPS, st, t->info.n_groups, n, names) != 0) goto fail;
    H5_CHECK(H5Fflush(t->file, H5F_SCOPE_GLOBAL), "%s: flush", t->path);
    t->info.n_groups += n;
    H5Tclose(st);
    return 0;
fail:
    olmoe_h5_close_id(st);
    return -1;
}

int olmoe_trace_add_documents(olmoe_trace *t, const olmoe_trace_document *docs, int64_t n) {
    olmoe_h5_init();
    hid_t mt = H5I_INVALID_HID;
    if (!t->writer) return olmoe_errorf("%s: not opened for writing", t->path);
    if (n < 0) return olmoe_errorf("%s: negative document count", t->path);
    for (int64_t i = 0; i < n; i++) {
        const olmoe_trace_document *d = &docs[i];
        if (d->start < 0 || d->length < 0 || d->start > INT64_MAX - d->length)
            return olmoe_errorf("%s: document %lld: bad range (start %lld, length %lld)", t->path,
                                (long long)(t->info.n_documents + i), (long long)d->start,
                                (long long)d->length);
        if (d->group < -1 || d->group >= t->info.n_groups)
            return olmoe_errorf("%s: document %lld: group %d outside -1..%lld", t->path,
                                (long long)(t->info.n_documents + i), d->group,
                                (long long)(t->info.n_groups - 1));
    }
    if (n == 0) return 0;
    H5_CHECK(mt = trace_doc_mem_type(), "%s: documents type", t->path);
    if (put_rows(t, TDS_DOCUMENTS, mt, t->info.n_documents, n, docs) != 0 || trace_dims_sync(t->file) != 0)
        goto fail;
    if (t->swmr) H5_CHECK(H5Fflush(t->file, H5F_SCOPE_GLOBAL), "%s: flush", t->path);
    t->info.n_documents += n;
    H5Tclose(mt);
    return 0;
fail:
    olmoe_h5_close_id(mt);
    return -1;
}

/* ---- closing ---- */
static void close_datasets(olmoe_trace *t) {
    for (int i = 0; i < TDS_COUNT; i++) {
        olmoe_h5_close_id(t->ds[i]);
        t->ds[i] = 0;
    }
}

/* rewrites an existing scalar attribute of the root in place: no object is
 * created or deleted, which keeps the SWMR session's on-disk state valid */
static int update_attr(olmoe_trace *t, const char *name, hid_t mtype, const void *value) {
    hid_t a = H5I_INVALID_HID;
    H5_CHECK(a = H5Aopen(t->file, name, H5P_DEFAULT), "%s: attribute '%s'", t->path, name);
    H5_CHECK(H5Awrite(a, mtype, value), "%s: cannot write attribute '%s'", t->path, name);
    H5Aclose(a);
    return 0;
fail:
    olmoe_h5_close_id(a);
    return -1;
}

/* The close-time data, still in the SWMR session: late group names, the
 * totals, then (after a flush) complete = 1. A kill before that flush leaves
 * complete = 0 and every window intact. */
static int finish(olmoe_trace *t, double nll_sum, int64_t n_scored) {
    hid_t st = H5I_INVALID_HID;
    if (t->n_late_groups) {
        int64_t old = t->info.n_groups - t->n_late_groups;
        H5_CHECK(st = trace_vstr_type(), "%s: string type", t->path);
        if (put_rows(t, TDS_GROUPS, st, old, t->n_late_groups, t->late_groups) != 0) goto fail;
    }
    if (trace_dims_sync(t->file) != 0) goto fail;
    double ppl = n_scored > 0 ? exp(nll_sum / (double)n_scored) : NAN;
    const int32_t one = 1;
    if (update_attr(t, TRACE_ATTR_N_TOKENS, H5T_NATIVE_INT64, &t->info.n_tokens) ||
        update_attr(t, TRACE_ATTR_N_WINDOWS, H5T_NATIVE_INT64, &t->info.n_windows) ||
        update_attr(t, TRACE_ATTR_N_SCORED, H5T_NATIVE_INT64, &n_scored) ||
        update_attr(t, TRACE_ATTR_NLL_SUM, H5T_NATIVE_DOUBLE, &nll_sum) ||
        update_attr(t, TRACE_ATTR_PERPLEXITY, H5T_NATIVE_DOUBLE, &ppl))
        goto fail;
    H5_CHECK(H5Fflush(t->file, H5F_SCOPE_GLOBAL), "%s: flush", t->path);
    if (update_attr(t, TRACE_ATTR_COMPLETE, H5T_NATIVE_INT32, &one)) goto fail;
    H5_CHECK(H5Fflush(t->file, H5F_SCOPE_GLOBAL), "%s: flush", t->path);
    olmoe_h5_close_id(st);
    return 0;
fail:
    olmoe_h5_close_id(st);
    return -1;
}

static int close_file(olmoe_trace *t) {
    close_datasets(t);
    hid_t f = t->file;
    t->file = H5I_INVALID_HID;
    if (f > 0) H5_CHECK(H5Fclose(f), "%s: close", t->path);
    return 0;
fail:
    return -1;
}

int olmoe_trace_close(olmoe_trace *t) {
    olmoe_h5_init();
    if (!t) return 0;
    if (!t->writer) {
        int r = close_file(t);
        trace_free(t);
        return r;
    }
    if (t->failed) {
        char *path = xstrdup(t->path);
        olmoe_trace_abort(t);
        olmoe_errorf("%s: an earlier write failed: the trace is left incomplete", path);
        free(path);
        return -1;
    }
    if (t->info.n_windows && t->info.n_tokens < t->last_end) {
        char *path = xstrdup(t->path);
        int64_t N = t->info.n_tokens, e = t->last_end;
        olmoe_trace_abort(t);
        olmoe_errorf("%s: the last window is cut short at %lld but no window stores positions "
                     "[%lld, %lld): the trace is left incomplete", path, (long long)N, (long long)N,
                     (long long)e);
        free(path);
        return -1;
    }
    double nll_sum = 0;
    int64_t n_scored = 0;
    int rc = -1;
    if (olmoe_trace_nll_total(t, &nll_sum, &n_scored) == 0 && finish(t, nll_sum, n_scored) == 0)
        rc = 0;
    if (close_file(t) != 0) rc = -1;
    trace_free(t);
    return rc;
}

int olmoe_trace_abort(olmoe_trace *t) {
    olmoe_h5_init();
    if (!t) return 0;
    int rc = 0;
    if (t->writer && t->file > 0 && H5Fflush(t->file, H5F_SCOPE_GLOBAL) < 0)
        rc = olmoe_h5_failf(__FILE__, __LINE__, "H5Fflush()", "%s: flush", t->path);
    if (close_file(t) != 0) rc = -1;
    trace_free(t);
    return rc;
}
