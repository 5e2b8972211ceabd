/* read.c: opening a trace and reading rows of its datasets.
 *
 * Opening checks what reading relies on (format and version, every required
 * dataset with the rank, row shape and type class the schema says), so that a
 * read never goes out of bounds; olmoe_trace_verify checks the rest. N is the
 * end of the committed windows prefix: after a kill, rows past it are
 * ignored. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW_BLOCK 65536
#define MAX_RANK 3

void trace_free(olmoe_trace *t) {
    if (!t) return;
    for (int i = 0; i < TDS_COUNT; i++) olmoe_h5_close_id(t->ds[i]);
    olmoe_h5_close_id(t->file);
    for (size_t i = 0; i < sizeof t->owned / sizeof t->owned[0]; i++) free(t->owned[i]);
    for (int64_t i = 0; i < t->n_late_groups; i++) free(t->late_groups[i]);
    free(t->late_groups);
    free(t->bf16_buf);
    free(t->path);
    free(t);
}

int trace_ds_rows(olmoe_trace *t, trace_ds which, int64_t *rows) {
    hid_t sp = H5I_INVALID_HID;
    hsize_t d[MAX_RANK];
    *rows = 0;
    if (t->ds[which] <= 0) return 0;
    H5_CHECK(sp = H5Dget_space(t->ds[which]), "%s: %s", t->path, trace_ds_table[which].path);
    int r;
    H5_CHECK(r = H5Sget_simple_extent_ndims(sp), "%s: %s", t->path, trace_ds_table[which].path);
    if (r < 1 || r > MAX_RANK) {
        olmoe_errorf("%s: %s has rank %d", t->path, trace_ds_table[which].path, r);
        goto fail;
    }
    H5_CHECK(H5Sget_simple_extent_dims(sp, d, NULL), "%s: %s", t->path, trace_ds_table[which].path);
    H5Sclose(sp);
    *rows = (int64_t)d[0];
    return 0;
fail:
    olmoe_h5_close_id(sp);
    return -1;
}

/* the dtype of a float dataset: float32, or one of our 2-byte layouts */
static int float_dtype(olmoe_trace *t, trace_ds which, olmoe_trace_dtype *out) {
    const char *name = trace_ds_table[which].path;
    hid_t ty = H5I_INVALID_HID;
    size_t spos, epos, esize, mpos, msize;
    H5_CHECK(ty = H5Dget_type(t->ds[which]), "%s: %s", t->path, name);
    if (H5Tget_class(ty) != H5T_FLOAT) {
        olmoe_errorf("%s: %s is not a float dataset", t->path, name);
        goto fail;
    }
    size_t sz = H5Tget_size(ty);
    H5_CHECK(H5Tget_fields(ty, &spos, &epos, &esize, &mpos, &msize), "%s: %s", t->path, name);
    if (sz == 4 && esize == 8 && msize == 23)
        *out = OLMOE_DTYPE_F32;
    else if (sz == 2 && spos == 15 && epos == 7 && esize == 8 && mpos == 0 && msize == 7)
        *out = OLMOE_DTYPE_BF16;
    else if (sz == 2 && spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10)
        *out = OLMOE_DTYPE_F16;
    else {
        olmoe_errorf("%s: %s: unsupported float type (%zu bytes, %zu exponent bits)", t->path,
                     name, sz, esize);
        goto fail;
    }
    H5Tclose(ty);
    return 0;
fail:
    olmoe_h5_close_id(ty);
    return -1;
}

/* opens the datasets and checks rank, row shape and type class */
static int open_datasets(olmoe_trace *t) {
    const olmoe_trace_meta *m = &t->info.meta;
    hid_t dapl = H5I_INVALID_HID, sp = H5I_INVALID_HID, ty = H5I_INVALID_HID;
    H5_CHECK(dapl = H5Pcreate(H5P_DATASET_ACCESS), "%s", t->path);
    H5_CHECK(H5Pset_chunk_cache(dapl, 521, (size_t)16 << 20, 1.0), "%s", t->path);
    for (int i = 0; i < TDS_COUNT; i++) {
        const trace_ds_desc *d = &trace_ds_table[i];
        olmoe_h5_close_id(t->ds[i]); /* create opened them already */
        t->ds[i] = 0;
        int e = olmoe_h5_exists(t->file, d->path);
        if (e < 0) goto fail_msg;
        if (!e) {
            if (d->required) {
                olmoe_errorf("%s: %s is missing", t->path, d->path);
                goto fail;
            }
            continue;
        }
        H5_CHECK(t->ds[i] = H5Dopen2(t->file, d->path, dapl), "%s: cannot open %s", t->path,
                 d->path);
        hsize_t dims[MAX_RANK] = {0, 0, 0};
        int rank;
        H5_CHECK(sp = H5Dget_space(t->ds[i]), "%s: %s", t->path, d->path);
        H5_CHECK(rank = H5Sget_simple_extent_ndims(sp), "%s: %s", t->path, d->path);
        if (rank > MAX_RANK) rank = MAX_RANK + 1;
        else H5_CHECK(H5Sget_simple_extent_dims(sp, dims, NULL), "%s: %s", t->path, d->path);
        H5Sclose(sp);
        sp = H5I_INVALID_HID;
        H5_CHECK(ty = H5Dget_type(t->ds[i]), "%s: %s", t->path, d->path);
        H5T_class_t cls = H5Tget_class(ty);
        H5Tclose(ty);
        ty = H5I_INVALID_HID;
        int want_rank = 1;
        hsize_t r1 = 0, r2 = 0;
        H5T_class_t want_cls = H5T_INTEGER;
        switch (d->row) {
        case ROW_LE: want_rank = 3, r1 = (hsize_t)m->n_layers, r2 = (hsize_t)m->n_experts; break;
        case ROW_LD: want_rank = 3, r1 = (hsize_t)m->n_layers, r2 = (hsize_t)m->hidden_size; break;
        case ROW_3: want_rank = 2, r1 = 3; break;
        case ROW_COMPOUND: want_cls = H5T_COMPOUND; break;
        case ROW_STRING: want_cls = H5T_STRING; break;
        default: break;
        }
        if (i == TDS_NLL || d->row == ROW_LE || d->row == ROW_LD) want_cls = H5T_FLOAT;
        if (rank != want_rank || (want_rank > 1 && dims[1] != r1) ||
            (want_rank > 2 && dims[2] != r2)) {
            olmoe_errorf("%s: %s has shape [%s], expected rank %d%s", t->path, d->path,
                         rank > MAX_RANK ? "..." : (rank == 1 ? "N" : rank == 2 ? "N, x" : "N, x, y"),
                         want_rank,
                         d->row == ROW_LE ? " [N, n_layers, n_experts]"
                         : d->row == ROW_LD ? " [N, n_layers, hidden_size]"
                         : d->row == ROW_3 ? " [W, 3]" : " [N]");
            goto fail;
        }
        if (cls != want_cls) {
            olmoe_errorf("%s: %s has the wrong type class", t->path, d->path);
            goto fail;
        }
    }
    H5Pclose(dapl);
    return 0;
fail_msg:
    olmoe_error_prefix("%s", t->path);
fail:
    olmoe_h5_close_id(ty);
    olmoe_h5_close_id(sp);
    olmoe_h5_close_id(dapl);
    return -1;
}

static int load_attrs(olmoe_trace *t) {
    hid_t f = t->file;
    static const char *const trace_format[] = {OLMOE_TRACE_FORMAT, NULL};
    int64_t v;
    if (olmoe_h5_check_format(f, t->path, trace_format, "an olmoe trace") != 0) return -1;
    if (olmoe_h5_get_attr_i64(f, ".", "format_version", &v) != 0)
        return olmoe_error_prefix("%s", t->path);
    if (v != OLMOE_TRACE_FORMAT_VERSION)
        return olmoe_errorf("%s: olmoe-trace format version %lld; this olmoe (%s) reads version %d: "
                            "%s", t->path, (long long)v, OLMOE_VERSION, OLMOE_TRACE_FORMAT_VERSION,
                            v > OLMOE_TRACE_FORMAT_VERSION ? "use a newer olmoe"
                                                           : "capture it again or use an older olmoe");
    t->info.format_version = (int)v;
    for (size_t i = 0; i < trace_attr_count; i++) {
        const trace_attr_desc *a = &trace_attr_table[i];
        char *base = (char *)&t->info.meta + a->off;
        if (a->kind == ATTR_STR) {
            if (olmoe_h5_get_attr_str(f, ".", a->name, &t->owned[i]) != 0)
                return olmoe_error_prefix("%s", t->path);
            *(const char **)base = t->owned[i];
        } else {
            if (olmoe_h5_get_attr_i64(f, ".", a->name, &v) != 0)
                return olmoe_error_prefix("%s", t->path);
            if (v < 0 || v > INT32_MAX)
                return olmoe_errorf("%s: attribute '%s' = %lld is out of range", t->path, a->name,
                                    (long long)v);
            *(int *)base = (int)v;
        }
    }
    const olmoe_trace_meta *m = &t->info.meta;
    if (m->n_layers < 1 || m->n_experts < 1 || m->vocab_size < 1)
        return olmoe_errorf("%s: n_layers, n_experts and vocab_size must be positive", t->path);
    /* a row must fit in memory many times over: refuse absurd sizes early */
    if ((int64_t)m->n_layers * m->n_experts > (1 << 24) ||
        (int64_t)m->n_layers * m->hidden_size > (1 << 28))
        return olmoe_errorf("%s: sizes n_layers %d, n_experts %d, hidden_size %d are too large",
                            t->path, m->n_layers, m->n_experts, m->hidden_size);
    if (olmoe_h5_get_attr_i64(f, ".", TRACE_ATTR_COMPLETE, &v) != 0)
        return olmoe_error_prefix("%s", t->path);
    t->info.complete = v == 1;
    t->info.n_scored = -1;
    t->info.nll_sum = t->info.perplexity = NAN;
    if (t->info.complete) {
        if (olmoe_h5_get_attr_i64(f, ".", TRACE_ATTR_N_SCORED, &t->info.n_scored) ||
            olmoe_h5_get_attr_f64(f, ".", TRACE_ATTR_NLL_SUM, &t->info.nll_sum) ||
            olmoe_h5_get_attr_f64(f, ".", TRACE_ATTR_PERPLEXITY, &t->info.perplexity))
            return olmoe_error_prefix("%s", t->path);
    }
    return 0;
}

/* N is the attribute n_tokens (rewritten after every append: the commit
 * record); the committed windows are those storing from below it, and they
 * must tile [0, N). Complete traces have no others. */
static int load_windows(olmoe_trace *t) {
    int64_t W, N;
    if (trace_ds_rows(t, TDS_WINDOWS, &W) != 0) return -1;
    if (olmoe_h5_get_attr_i64(t->file, ".", TRACE_ATTR_N_TOKENS, &N) != 0)
        return olmoe_error_prefix("%s", t->path);
    if (N < 0) return olmoe_errorf("%s: n_tokens is %lld", t->path, (long long)N);
    trace_tiling s;
    memset(&s, 0, sizeof s);
    s.limit = N;
    int64_t *rows = xmalloc(WINDOW_BLOCK * 3 * sizeof *rows);
    olmoe_trace_window *w = xmalloc(WINDOW_BLOCK * sizeof *w);
    int rc = -1;
    t->info.n_windows = W; /* lets trace_read_rows read them all */
    for (int64_t k = 0; k < W && !s.stopped; k += WINDOW_BLOCK) {
        int64_t c = W - k < WINDOW_BLOCK ? W - k : WINDOW_BLOCK;
        if (trace_read_rows(t, TDS_WINDOWS, H5T_NATIVE_INT64, k, c, -1, rows) != 0) goto out;
        trace_windows_from_rows(w, rows, c);
        trace_tiling_feed(&s, w, c);
    }
    if (s.broken) {
        olmoe_errorf("%s: /windows row %lld does not continue the stored ranges (run "
                     "olmoe-traces verify)", t->path, (long long)s.n);
        goto out;
    }
    if (N > 0 && (s.n == 0 || N > s.end_prev)) {
        olmoe_errorf("%s: n_tokens %lld is past the end of the windows (%lld; run olmoe-traces "
                     "verify)", t->path, (long long)N, (long long)(s.n ? s.end_prev : 0));
        goto out;
    }
    if (t->info.complete && (s.n != W || N != s.end_prev)) {
        olmoe_errorf("%s: /windows and n_tokens (%lld) disagree (run olmoe-traces verify)",
                     t->path, (long long)N);
        goto out;
    }
    t->info.n_windows = s.n;
    t->info.n_tokens = N;
    t->info.n_cut = s.n_cut + (s.n && N < s.end_prev);
    t->last_start = s.start_prev;
    t->last_end = s.n ? s.end_prev : 0;
    t->win_rows_on_disk = W;
    rc = 0;
out:
    free(rows);
    free(w);
    return rc;
}

int trace_load(olmoe_trace *t) {
    if (load_attrs(t) != 0 || open_datasets(t) != 0) return -1;
    if (float_dtype(t, TDS_ROUTER_LOGITS, &t->info.meta.logits_dtype) != 0) return -1;
    t->info.has_residuals = t->info.meta.save_residuals = t->ds[TDS_RESIDUAL] > 0;
    if (t->info.has_residuals) {
        olmoe_trace_dtype d;
        if (float_dtype(t, TDS_RESIDUAL, &d) != 0) return -1;
        if (d != OLMOE_DTYPE_BF16)
            return olmoe_errorf("%s: /residual/attn is %s, expected bfloat16", t->path,
                                olmoe_trace_dtype_name(d));
    }
    if (load_windows(t) != 0) return -1;
    int64_t rows = INT64_MAX;
    for (int i = 0; i < TDS_COUNT; i++) {
        int64_t r;
        if (!trace_ds_table[i].per_token || t->ds[i] <= 0) continue;
        if (trace_ds_rows(t, (trace_ds)i, &r) != 0) return -1;
        if (r < t->info.n_tokens)
            return olmoe_errorf("%s: %s has %lld rows, the windows cover %lld positions", t->path,
                                trace_ds_table[i].path, (long long)r, (long long)t->info.n_tokens);
        if (r < rows) rows = r;
    }
    t->rows_on_disk = rows;
    if (trace_ds_rows(t, TDS_DOCUMENTS, &t->info.n_documents) != 0 ||
        trace_ds_rows(t, TDS_GROUPS, &t->info.n_groups) != 0)
        return -1;
    hid_t dcpl = H5Dget_create_plist(t->ds[TDS_ROUTER_LOGITS]);
    hsize_t chunk[MAX_RANK];
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, MAX_RANK, chunk) >= 1)
        t->info.meta.chunk_rows = (int)chunk[0];
    olmoe_h5_close_id(dcpl);
    hsize_t size = 0;
    if (!t->writer && H5Fget_filesize(t->file, &size) >= 0) t->info.file_bytes = (int64_t)size;
    H5Eclear2(H5E_DEFAULT);
    return 0;
}

static olmoe_trace *open_trace(const char *path, int writable) {
    olmoe_h5_init();
    olmoe_trace *t = xcalloc(1, sizeof *t);
    t->path = xstrdup(path);
    t->writable = writable;
    t->file = olmoe_h5_open(path, writable);
    /* the results beside it are the trace's too, there yet or not */
    char *results = olmoe_results_path(path);
    olmoe_input_add(results);
    free(results);
    if (t->file < 0) {
        if (writable && strstr(olmoe_error(), "marked open by a writer"))
            olmoe_errorf("%s: marked open by a writer (a running or killed capture?): resume a "
                         "killed one with olmoe-capture --resume", path);
        trace_free(t);
        return NULL;
    }
    if (trace_load(t) != 0 || trace_check_sources_open(t) != 0) {
        trace_free(t);
        return NULL;
    }
    return t;
}

olmoe_trace *olmoe_trace_open(const char *path) { return open_trace(path, 0); }
olmoe_trace *olmoe_trace_open_rw(const char *path) { return open_trace(path, 1); }

const olmoe_trace_info *olmoe_trace_info_of(const olmoe_trace *t) { return &t->info; }
const char *olmoe_trace_path(const olmoe_trace *t) { return t->path; }
hid_t olmoe_trace_hid(const olmoe_trace *t) { return t->file; }

/* ---- rows ---- */
int trace_read_rows(olmoe_trace *t, trace_ds which, hid_t mtype, int64_t start, int64_t count,
                    int layer, void *out) {
    olmoe_h5_init();
    const trace_ds_desc *d = &trace_ds_table[which];
    hid_t fs = H5I_INVALID_HID, ms = H5I_INVALID_HID;
    int64_t limit = d->per_token ? t->info.n_tokens
                    : which == TDS_WINDOWS ? t->info.n_windows
                    : which == TDS_DOCUMENTS ? t->info.n_documents : t->info.n_groups;
    if (t->ds[which] <= 0) {
        if (which == TDS_RESIDUAL)
            return olmoe_errorf("%s: no residuals (captured without --save-residuals)", t->path);
        return olmoe_errorf("%s: %s is absent", t->path, d->path);
    }
    if (start < 0 || count < 0 || start > limit || count > limit - start)
        return olmoe_errorf("%s: %s: rows [%lld, %lld) outside [0, %lld)", t->path, d->path,
                            (long long)start, (long long)(start + count), (long long)limit);
    if (count == 0) return 0;
    hsize_t dims[MAX_RANK], off[MAX_RANK] = {(hsize_t)start, 0, 0}, cnt[MAX_RANK];
    int rank;
    H5_CHECK(fs = H5Dget_space(t->ds[which]), "%s: %s", t->path, d->path);
    H5_CHECK(rank = H5Sget_simple_extent_ndims(fs), "%s: %s", t->path, d->path);
    H5_CHECK(H5Sget_simple_extent_dims(fs, dims, NULL), "%s: %s", t->path, d->path);
    hsize_t n = (hsize_t)count;
    cnt[0] = (hsize_t)count;
    for (int i = 1; i < rank; i++) cnt[i] = dims[i];
    if (layer >= 0) {
        if (rank < 2 || (hsize_t)layer >= dims[1]) {
            olmoe_errorf("%s: %s: layer %d outside 0..%lld", t->path, d->path, layer,
                         rank < 2 ? -1LL : (long long)dims[1] - 1);
            goto fail;
        }
        off[1] = (hsize_t)layer;
        cnt[1] = 1;
    }
    for (int i = 1; i < rank; i++) n *= cnt[i];
    H5_CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL), "%s: %s", t->path,
             d->path);
    /* the memory space has the selection's shape: with any other shape HDF5
     * maps elements to chunks one by one (20x slower) */
    H5_CHECK(ms = H5Screate_simple(rank, cnt, NULL), "%s: %s", t->path, d->path);
    H5_CHECK(H5Dread(t->ds[which], mtype, ms, fs, H5P_DEFAULT, out),
             "%s: %s: cannot read rows [%lld, %lld)", t->path, d->path, (long long)start,
             (long long)(start + count));
    H5Sclose(ms);
    H5Sclose(fs);
    return 0;
fail:
    olmoe_h5_close_id(ms);
    olmoe_h5_close_id(fs);
    return -1;
}

/* float rows of a dataset stored as float32, float16 or bfloat16: halves are
 * read raw and widened here (exact, and much faster than HDF5's soft
 * conversion) */
static int read_floats(olmoe_trace *t, trace_ds which, olmoe_trace_dtype dt, int64_t start,
                       int64_t count, int layer, float *out) {
    if (dt == OLMOE_DTYPE_F32)
        return trace_read_rows(t, which, H5T_NATIVE_FLOAT, start, count, layer, out);
    size_t row = trace_row_elems(&t->info, which);
    if (layer >= 0) row /= (size_t)t->info.meta.n_layers;
    size_t n = (count > 0 ? (size_t)count : 0) * row;
    if (t->bf16_cap < n) {
        free(t->bf16_buf);
        t->bf16_buf = xmalloc(xmul(n, sizeof *t->bf16_buf));
        t->bf16_cap = n;
    }
    hid_t ht = dt == OLMOE_DTYPE_BF16 ? olmoe_h5_type_bf16() : olmoe_h5_type_f16();
    if (ht < 0) return -1;
    int r = trace_read_rows(t, which, ht, start, count, layer, t->bf16_buf);
    H5Tclose(ht);
    if (r != 0) return -1;
    if (dt == OLMOE_DTYPE_BF16)
        olmoe_bf16_to_f32_n(out, t->bf16_buf, n);
    else
        olmoe_f16_to_f32_n(out, t->bf16_buf, n);
    return 0;
}

int olmoe_trace_read_tokens(olmoe_trace *t, int64_t start, int64_t count, int32_t *out) {
    return trace_read_rows(t, TDS_TOKENS, H5T_NATIVE_INT32, start, count, -1, out);
}

int olmoe_trace_read_router_logits(olmoe_trace *t, int64_t start, int64_t count, float *out) {
    return read_floats(t, TDS_ROUTER_LOGITS, t->info.meta.logits_dtype, start, count, -1, out);
}

/* Whole rows in blocks, then the layer picked out here: a selection strided
 * inside the chunks makes HDF5 walk it element by element (7x slower). */
int olmoe_trace_read_router_logits_layer(olmoe_trace *t, int layer, int64_t start,
                                         int64_t count, float *out) {
    const olmoe_trace_meta *m = &t->info.meta;
    if (layer < 0 || layer >= m->n_layers)
        return olmoe_errorf("%s: layer %d outside 0..%d", t->path, layer, m->n_layers - 1);
    if (start < 0 || count < 0 || start > t->info.n_tokens || count > t->info.n_tokens - start)
        return olmoe_errorf("%s: /router_logits: rows [%lld, %lld) outside [0, %lld)", t->path,
                            (long long)start, (long long)(start + count),
                            (long long)t->info.n_tokens);
    size_t E = (size_t)m->n_experts, row = (size_t)m->n_layers * E;
    int64_t B = (int64_t)(((size_t)4 << 20) / (row * sizeof(float))) + 1;
    float *buf = xmalloc(xmul((size_t)(count < B ? count : B) + 1, row * sizeof *buf));
    int rc = 0;
    for (int64_t s = 0; s < count && rc == 0; s += B) {
        int64_t c = count - s < B ? count - s : B;
        rc = read_floats(t, TDS_ROUTER_LOGITS, m->logits_dtype, start + s, c, -1, buf);
        for (int64_t i = 0; rc == 0 && i < c; i++)
            memcpy(out + (size_t)(s + i) * E, buf + (size_t)i * row + (size_t)layer * E,
                   E * sizeof *out);
    }
    free(buf);
    return rc;
}

int olmoe_trace_read_nll(olmoe_trace *t, int64_t start, int64_t count, float *out) {
    return trace_read_rows(t, TDS_NLL, H5T_NATIVE_FLOAT, start, count, -1, out);
}

int olmoe_trace_read_argmax(olmoe_trace *t, int64_t start, int64_t count, int32_t *out) {
    return trace_read_rows(t, TDS_ARGMAX, H5T_NATIVE_INT32, start, count, -1, out);
}

int olmoe_trace_read_residual(olmoe_trace *t, int64_t start, int64_t count, float *out) {
    return read_floats(t, TDS_RESIDUAL, OLMOE_DTYPE_BF16, start, count, -1, out);
}

int olmoe_trace_read_residual_bf16(olmoe_trace *t, int64_t start, int64_t count, uint16_t *out) {
    hid_t ht = olmoe_h5_type_bf16();
    if (ht < 0) return -1;
    int r = trace_read_rows(t, TDS_RESIDUAL, ht, start, count, -1, out);
    H5Tclose(ht);
    return r;
}

int olmoe_trace_read_windows(olmoe_trace *t, int64_t start, int64_t count,
                             olmoe_trace_window *out) {
    if (count <= 0) return trace_read_rows(t, TDS_WINDOWS, H5T_NATIVE_INT64, start, count, -1, NULL);
    /* one more row, when there is one, gives the last one's stored end */
    int64_t more = start >= 0 && count <= t->info.n_windows - start &&
                   start + count < t->info.n_windows;
    int64_t *rows = xmalloc(xmul((size_t)(count + more), 3 * sizeof *rows));
    int r = trace_read_rows(t, TDS_WINDOWS, H5T_NATIVE_INT64, start, count + more, -1, rows);
    if (r == 0) {
        trace_windows_from_rows(out, rows, count);
        for (int64_t k = 0; k < count; k++) {
            int64_t end = out[k].start + out[k].length, next;
            if (k + 1 < count)
                next = out[k + 1].start + out[k + 1].stored_from;
            else if (more)
                next = rows[3 * count] + rows[3 * count + 2];
            else
                next = t->info.n_tokens;
            out[k].stored_end = next < end ? next : end;
        }
    }
    free(rows);
    return r;
}

int olmoe_trace_read_documents(olmoe_trace *t, int64_t start, int64_t count,
                               olmoe_trace_document *out) {
    hid_t mt = trace_doc_mem_type();
    if (mt < 0) return olmoe_errorf("%s: documents type", t->path);
    int r = trace_read_rows(t, TDS_DOCUMENTS, mt, start, count, -1, out);
    H5Tclose(mt);
    return r;
}

int olmoe_trace_read_groups(olmoe_trace *t, char ***names, int64_t *n) {
    *names = NULL;
    *n = 0;
    int64_t g = t->info.n_groups;
    if (t->ds[TDS_GROUPS] <= 0 || g == 0) return 0;
    if (g > (int64_t)1 << 24) return olmoe_errorf("%s: /groups: %lld names is too many", t->path,
                                                  (long long)g);
    hid_t st = trace_vstr_type(), sp = H5I_INVALID_HID;
    char **raw = xcalloc((size_t)g, sizeof *raw);
    if (st < 0) {
        free(raw);
        return olmoe_errorf("%s: string type", t->path);
    }
    if (trace_read_rows(t, TDS_GROUPS, st, 0, g, -1, raw) != 0) goto fail;
    char **out = xmalloc((size_t)g * sizeof *out);
    for (int64_t i = 0; i < g; i++) out[i] = xstrdup(raw[i] ? raw[i] : "");
    hsize_t hg = (hsize_t)g;
    sp = H5Screate_simple(1, &hg, NULL);
    if (sp >= 0) H5Dvlen_reclaim(st, sp, H5P_DEFAULT, raw);
    olmoe_h5_close_id(sp);
    H5Tclose(st);
    free(raw);
    *names = out;
    *n = g;
    return 0;
fail:
    H5Tclose(st);
    free(raw);
    return -1;
}

void olmoe_trace_free_groups(char **names, int64_t n) {
    if (!names) return;
    for (int64_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

int olmoe_trace_nll_total(olmoe_trace *t, double *nll_sum, int64_t *n_scored) {
    enum { B = 65536 };
    float *buf = xmalloc(B * sizeof *buf);
    double s = 0;
    int64_t c = 0, N = t->info.n_tokens;
    for (int64_t k = 0; k < N; k += B) {
        int64_t m = N - k < B ? N - k : B;
        if (olmoe_trace_read_nll(t, k, m, buf) != 0) {
            free(buf);
            return -1;
        }
        for (int64_t i = 0; i < m; i++)
            if (isfinite(buf[i])) {
                s += buf[i];
                c++;
            }
    }
    free(buf);
    *nll_sum = s;
    *n_scored = c;
    return 0;
}
