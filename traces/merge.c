/* merge.c: shard traces (olmoe-capture --shard i/N) joined into the trace
 * the unsharded capture writes (olmoe-traces merge).
 *
 * Layout: the per-token datasets (/tokens, /router_logits, /baseline/nll,
 * /baseline/argmax, /residual/attn) are HDF5 virtual datasets: rows
 * [stored_begin, stored_end) of the run map to rows [stored_begin - offset,
 * stored_end - offset) of the same dataset in shard i's file, named by a path
 * relative to the merged file's directory (HDF5 looks for a relative source
 * beside the virtual file first), so the set moves together. Their fill values
 * are invalid (token -1, NaN) so that a missing shard reads as garbage that
 * verify reports, never as plausible zeros; olmoe_trace_check_sources names
 * the missing files. /windows and /documents are real datasets in global
 * positions (small), /token, /layer, /expert, /hidden the dimension scales.
 * The totals (n_scored, nll_sum, perplexity) are computed from the merged
 * /baseline/nll in stream order, as the capture's close computes them, so
 * they equal the unsharded run's bit for bit. */
#include "merge_internal.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- paths ---- */
static char *abs_dir_of(const char *file) {
    char *c = xstrdup(file), *r = realpath(dirname(c), NULL);
    if (!r) olmoe_errorf("%s: %s", file, strerror(errno));
    free(c);
    return r;
}

/* the path of to (absolute) from directory dir (absolute), "../" as needed */
static char *relpath(const char *dir, const char *to) {
    size_t i = 0, common = 0;
    while (dir[i] && to[i] && dir[i] == to[i]) {
        if (dir[i] == '/') common = i;
        i++;
    }
    if (!dir[i] && to[i] == '/') common = i; /* dir is a prefix of to */
    else if (!dir[i] && !to[i]) common = i;
    size_t up = 0;
    for (const char *p = dir + common; *p; p++)
        if (*p == '/') up++;
    if (strcmp(dir, "/") == 0) up = 0;
    const char *rest = to + common + (to[common] == '/');
    char *r = xmalloc(3 * up + strlen(rest) + 1);
    r[0] = '\0';
    for (size_t k = 0; k < up; k++) strcat(r, "../");
    strcat(r, rest);
    return r;
}

/* ---- the merged file ---- */
static int set_root_attrs(hid_t f, const mshard *s, int n, const olmoe_trace_merge_opts *o,
                          const char *path) {
    /* the merged file is made now, from the shards' settings */
    if (trace_write_meta_attrs(f, &s[0].in->meta, 1) != 0) return olmoe_error_prefix("%s", path);
    size_t cap = 1;
    for (int i = 0; i < n; i++) cap += strlen(s[i].rel) + 1;
    char *from = xmalloc(cap);
    from[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i) strcat(from, "\n");
        strcat(from, s[i].rel);
    }
    const mshard *a = &s[0];
    int r = olmoe_h5_set_attr_i32(f, ".", TRACE_ATTR_COMPLETE, 0) ||
            olmoe_h5_set_attr_i64(f, ".", TRACE_ATTR_N_TOKENS, a->run_tokens) ||
            olmoe_h5_set_attr_i64(f, ".", TRACE_ATTR_N_WINDOWS, a->run_windows) ||
            olmoe_h5_set_attr_i64(f, ".", TRACE_ATTR_N_SCORED, 0) ||
            olmoe_h5_set_attr_f64(f, ".", TRACE_ATTR_NLL_SUM, 0.0) ||
            olmoe_h5_set_attr_f64(f, ".", TRACE_ATTR_PERPLEXITY, NAN) ||
            olmoe_h5_set_attr_str(f, ".", OLMOE_ATTR_INPUT_CHECKSUM, a->input_sum) ||
            olmoe_h5_set_attr_i64(f, ".", OLMOE_ATTR_INPUT_BYTES, a->input_bytes) ||
            olmoe_h5_set_attr_i64(f, ".", OLMOE_ATTR_MAX_TOKENS, a->max_tokens) ||
            olmoe_h5_set_attr_i64(f, ".", OLMOE_ATTR_BATCH, a->batch) ||
            olmoe_h5_set_attr_i64(f, ".", OLMOE_ATTR_MERGED_SHARDS, n) ||
            olmoe_h5_set_attr_str(f, ".", OLMOE_ATTR_MERGED_FROM, from) ||
            olmoe_h5_set_attr_str(f, ".", OLMOE_ATTR_MERGE_COMMAND, o->command ? o->command : "");
    free(from);
    return r ? olmoe_error_prefix("%s", path) : 0;
}

/* per-token dataset `which` as a virtual dataset over the shards */
static hid_t make_vds(hid_t f, const char *path, const mshard *s, int n, trace_ds which) {
    const char *name = trace_ds_table[which].path;
    hid_t src = s[0].t->ds[which], ty = H5I_INVALID_HID, sp = H5I_INVALID_HID,
          vs = H5I_INVALID_HID, ss = H5I_INVALID_HID, dcpl = H5I_INVALID_HID,
          lcpl = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hsize_t dims[3], sdims[3];
    int rank;
    H5_CHECK(ty = H5Dget_type(src), "%s: %s", s[0].path, name);
    H5_CHECK(sp = H5Dget_space(src), "%s: %s", s[0].path, name);
    H5_CHECK(rank = H5Sget_simple_extent_ndims(sp), "%s: %s", s[0].path, name);
    H5_CHECK(H5Sget_simple_extent_dims(sp, dims, NULL), "%s: %s", s[0].path, name);
    H5Sclose(sp);
    sp = H5I_INVALID_HID;
    dims[0] = (hsize_t)s[0].run_tokens;
    H5_CHECK(vs = H5Screate_simple(rank, dims, NULL), "%s: %s", path, name);
    H5_CHECK(dcpl = H5Pcreate(H5P_DATASET_CREATE), "%s: %s", path, name);
    /* a missing shard reads as invalid data, not as zeros */
    if (which == TDS_TOKENS || which == TDS_ARGMAX) {
        const int32_t fill = -1;
        H5_CHECK(H5Pset_fill_value(dcpl, H5T_NATIVE_INT32, &fill), "%s: %s", path, name);
    } else {
        const float fill = NAN;
        H5_CHECK(H5Pset_fill_value(dcpl, H5T_NATIVE_FLOAT, &fill), "%s: %s", path, name);
    }
    for (int i = 0; i < n; i++) {
        hsize_t off[3] = {(hsize_t)s[i].s_begin, 0, 0}, cnt[3] = {0, dims[1], dims[2]};
        cnt[0] = (hsize_t)(s[i].s_end - s[i].s_begin);
        hsize_t soff[3] = {(hsize_t)(s[i].s_begin - s[i].offset), 0, 0};
        H5_CHECK(H5Sselect_hyperslab(vs, H5S_SELECT_SET, off, NULL, cnt, NULL), "%s: %s", path,
                 name);
        H5_CHECK(sp = H5Dget_space(s[i].t->ds[which]), "%s: %s", s[i].path, name);
        H5_CHECK(H5Sget_simple_extent_dims(sp, sdims, NULL), "%s: %s", s[i].path, name);
        H5Sclose(sp);
        sp = H5I_INVALID_HID;
        /* the extent the writer left (rows may be past n_tokens: never mapped) */
        H5_CHECK(ss = H5Screate_simple(rank, sdims, NULL), "%s: %s", s[i].path, name);
        H5_CHECK(H5Sselect_hyperslab(ss, H5S_SELECT_SET, soff, NULL, cnt, NULL), "%s: %s",
                 s[i].path, name);
        H5_CHECK(H5Pset_virtual(dcpl, vs, s[i].rel, name, ss), "%s: %s: mapping %s", path, name,
                 s[i].rel);
        H5Sclose(ss);
        ss = H5I_INVALID_HID;
    }
    H5_CHECK(H5Sselect_all(vs), "%s: %s", path, name);
    H5_CHECK(lcpl = H5Pcreate(H5P_LINK_CREATE), "%s", path);
    H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1), "%s", path);
    H5_CHECK(ds = H5Dcreate2(f, name, ty, vs, lcpl, dcpl, H5P_DEFAULT), "%s: %s: cannot create",
             path, name);
fail:
    olmoe_h5_close_id(lcpl);
    olmoe_h5_close_id(dcpl);
    olmoe_h5_close_id(ss);
    olmoe_h5_close_id(vs);
    olmoe_h5_close_id(sp);
    olmoe_h5_close_id(ty);
    return ds;
}

/* a fixed dataset of type ftype [rows, cols] (cols 0: rank 1), chunked by
 * rows, filled by put(ctx, start, count, buf) in blocks */
typedef int (*fill_fn)(void *ctx, int64_t start, int64_t count, void *buf);
static hid_t make_real(hid_t f, const char *path, const char *name, hid_t ftype, hid_t mtype,
                       int64_t rows, int cols, size_t elem, fill_fn put, void *ctx) {
    hid_t sp = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, ds = H5I_INVALID_HID,
          fs = H5I_INVALID_HID, ms = H5I_INVALID_HID;
    int rank = cols ? 2 : 1;
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols},
            chunk[2] = {(hsize_t)(rows < 4096 ? rows : 4096), (hsize_t)cols};
    enum { B = 65536 };
    void *buf = xmalloc(xmul(B, elem * (size_t)(cols ? cols : 1)));
    H5_CHECK(sp = H5Screate_simple(rank, dims, NULL), "%s: %s", path, name);
    H5_CHECK(dcpl = H5Pcreate(H5P_DATASET_CREATE), "%s: %s", path, name);
    if (rows > 0) H5_CHECK(H5Pset_chunk(dcpl, rank, chunk), "%s: %s", path, name);
    H5_CHECK(ds = H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT),
             "%s: %s: cannot create", path, name);
    for (int64_t s = 0; s < rows; s += B) {
        hsize_t off[2] = {(hsize_t)s, 0}, cnt[2] = {(hsize_t)(rows - s < B ? rows - s : B),
                                                   (hsize_t)cols};
        if (put(ctx, s, (int64_t)cnt[0], buf) != 0) goto fail_quiet;
        H5_CHECK(fs = H5Dget_space(ds), "%s: %s", path, name);
        H5_CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL), "%s: %s", path,
                 name);
        H5_CHECK(ms = H5Screate_simple(rank, cnt, NULL), "%s: %s", path, name);
        H5_CHECK(H5Dwrite(ds, mtype, ms, fs, H5P_DEFAULT, buf), "%s: %s: cannot write", path, name);
        H5Sclose(ms);
        H5Sclose(fs);
        ms = fs = H5I_INVALID_HID;
    }
    free(buf);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return ds;
fail:
fail_quiet:
    free(buf);
    olmoe_h5_close_id(ms);
    olmoe_h5_close_id(fs);
    olmoe_h5_close_id(ds);
    olmoe_h5_close_id(dcpl);
    olmoe_h5_close_id(sp);
    return H5I_INVALID_HID;
}

static int put_positions(void *ctx, int64_t start, int64_t count, void *buf) {
    (void)ctx;
    for (int64_t i = 0; i < count; i++) ((int64_t *)buf)[i] = start + i;
    return 0;
}

static int put_index(void *ctx, int64_t start, int64_t count, void *buf) {
    (void)ctx;
    for (int64_t i = 0; i < count; i++) ((int32_t *)buf)[i] = (int32_t)(start + i);
    return 0;
}

/* /windows in global positions, block by block across the shards */
typedef struct {
    mshard *s;
    int n;
} wctx;

static int put_windows(void *ctx, int64_t start, int64_t count, void *buf) {
    wctx *c = ctx;
    int64_t *rows = buf;
    olmoe_trace_window w[256];
    for (int64_t k = 0; k < count;) {
        int64_t g = start + k;
        int i = 0;
        while (i < c->n - 1 && g >= c->s[i].w_end) i++;
        mshard *s = &c->s[i];
        int64_t lw = g - s->w_begin, m = s->w_end - g;
        if (m > count - k) m = count - k;
        if (m > 256) m = 256;
        if (olmoe_trace_read_windows(s->t, lw, m, w) != 0) return -1;
        for (int64_t j = 0; j < m; j++) {
            int64_t st = w[j].start + s->offset;
            rows[3 * (k + j)] = st;
            rows[3 * (k + j) + 1] = w[j].length;
            /* the shard stored its first window whole; the run stores it from here */
            rows[3 * (k + j) + 2] = lw + j == 0 ? s->s_begin - st : w[j].stored_from;
        }
        k += m;
    }
    return 0;
}

/* The run's documents: each shard has those overlapping its stream, clipped
 * to it; within its part [s_begin, s_end) the pieces are the run's, and a
 * document is the union of its pieces. */
static int build_documents(mshard *s, int n, olmoe_trace_document **out) {
    int64_t nd = s[0].run_documents;
    olmoe_trace_document *d = xmalloc(xmul((size_t)nd + 1, sizeof *d));
    for (int64_t k = 0; k < nd; k++) d[k] = (olmoe_trace_document){-1, -1, -2};
    enum { B = 4096 };
    olmoe_trace_document *buf = xmalloc(B * sizeof *buf);
    int rc = -1;
    for (int i = 0; i < n; i++) {
        int64_t m = s[i].in->n_documents;
        for (int64_t b = 0; b < m; b += B) {
            int64_t c = m - b < B ? m - b : B;
            if (olmoe_trace_read_documents(s[i].t, b, c, buf) != 0) goto out;
            for (int64_t j = 0; j < c; j++) {
                int64_t k = s[i].d_begin + b + j;
                int64_t lo = buf[j].start + s[i].offset, hi = lo + buf[j].length;
                if (lo < s[i].s_begin) lo = s[i].s_begin;
                if (hi > s[i].s_end) hi = s[i].s_end;
                if (hi < lo || (hi == lo && buf[j].length > 0)) continue; /* not in its part */
                if (k >= nd) {
                    olmoe_errorf("%s: document %lld is past the run's %lld", s[i].path,
                                 (long long)k, (long long)nd);
                    goto out;
                }
                if (d[k].group == -2) {
                    d[k] = (olmoe_trace_document){lo, hi - lo, buf[j].group};
                    continue;
                }
                if (lo != d[k].start + d[k].length || buf[j].group != d[k].group) {
                    olmoe_errorf("%s: document %lld does not continue its piece in the shard "
                                 "before", s[i].path, (long long)k);
                    goto out;
                }
                d[k].length = hi - d[k].start;
            }
        }
    }
    for (int64_t k = 0; k < nd; k++)
        if (d[k].group == -2) {
            olmoe_errorf("document %lld of %lld is in no shard's part", (long long)k, (long long)nd);
            goto out;
        }
    rc = 0;
out:
    free(buf);
    if (rc) free(d);
    else *out = d;
    return rc;
}

typedef struct {
    const olmoe_trace_document *d;
} dctx;

static int put_documents(void *ctx, int64_t start, int64_t count, void *buf) {
    memcpy(buf, ((dctx *)ctx)->d + start, (size_t)count * sizeof(olmoe_trace_document));
    return 0;
}

static int write_groups(hid_t f, const char *path, mshard *s0) {
    char **names = NULL;
    int64_t ng = 0;
    hid_t st = H5I_INVALID_HID, sp = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    int rc = -1;
    if (olmoe_trace_read_groups(s0->t, &names, &ng) != 0) return -1;
    hsize_t d = (hsize_t)ng;
    H5_CHECK(st = trace_vstr_type(), "%s: /groups", path);
    H5_CHECK(sp = H5Screate_simple(1, &d, NULL), "%s: /groups", path);
    H5_CHECK(ds = H5Dcreate2(f, "groups", st, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
             "%s: /groups: cannot create", path);
    if (ng) H5_CHECK(H5Dwrite(ds, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, names), "%s: /groups", path);
    rc = 0;
fail:
    olmoe_h5_close_id(ds);
    olmoe_h5_close_id(sp);
    olmoe_h5_close_id(st);
    olmoe_trace_free_groups(names, ng);
    return rc;
}

static int scale(hid_t ds, const char *name, const char *path) {
    H5_CHECK(H5DSset_scale(ds, name), "%s: /%s: dimension scale", path, name);
    return 0;
fail:
    return -1;
}

static int attach(hid_t ds, hid_t sc, unsigned dim, const char *what, const char *path) {
    H5_CHECK(H5DSattach_scale(ds, sc, dim), "%s: %s: attaching dimension scale %u", path, what, dim);
    return 0;
fail:
    return -1;
}

/* the merged virtual trace at path, totals not yet set (complete = 0) */
static int write_merged(const char *path, mshard *s, int n, const olmoe_trace_merge_opts *o) {
    hid_t fapl = H5I_INVALID_HID, f = H5I_INVALID_HID;
    hid_t ds[TDS_COUNT], sc_tok = H5I_INVALID_HID, sc_l = H5I_INVALID_HID,
          sc_e = H5I_INVALID_HID, sc_h = H5I_INVALID_HID, dt = H5I_INVALID_HID,
          dm = H5I_INVALID_HID;
    olmoe_trace_document *docs = NULL;
    const olmoe_trace_meta *m = &s[0].in->meta;
    int rc = -1, res = s[0].in->has_residuals;
    for (int i = 0; i < TDS_COUNT; i++) ds[i] = H5I_INVALID_HID;
    H5_CHECK(fapl = H5Pcreate(H5P_FILE_ACCESS), "%s", path);
    H5_CHECK(H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), "%s", path);
    H5_CHECK(f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl), "%s: cannot create", path);
    if (set_root_attrs(f, s, n, o, path) != 0) goto out;
    const trace_ds per_token[] = {TDS_TOKENS, TDS_ROUTER_LOGITS, TDS_NLL, TDS_ARGMAX, TDS_RESIDUAL};
    for (size_t i = 0; i < sizeof per_token / sizeof per_token[0]; i++) {
        trace_ds w = per_token[i];
        if (w == TDS_RESIDUAL && !res) continue;
        if ((ds[w] = make_vds(f, path, s, n, w)) < 0) goto out;
    }
    wctx wc = {s, n};
    if ((sc_tok = make_real(f, path, "token", H5T_STD_I64LE, H5T_NATIVE_INT64, s[0].run_tokens, 0,
                            8, put_positions, NULL)) < 0 ||
        (sc_l = make_real(f, path, "layer", H5T_STD_I32LE, H5T_NATIVE_INT32, m->n_layers, 0, 4,
                          put_index, NULL)) < 0 ||
        (sc_e = make_real(f, path, "expert", H5T_STD_I32LE, H5T_NATIVE_INT32, m->n_experts, 0, 4,
                          put_index, NULL)) < 0 ||
        (res && (sc_h = make_real(f, path, "hidden", H5T_STD_I32LE, H5T_NATIVE_INT32,
                                  m->hidden_size, 0, 4, put_index, NULL)) < 0) ||
        (ds[TDS_WINDOWS] = make_real(f, path, "windows", H5T_STD_I64LE, H5T_NATIVE_INT64,
                                     s[0].run_windows, 3, 8, put_windows, &wc)) < 0)
        goto out;
    if (build_documents(s, n, &docs) != 0) goto out;
    dctx dc = {docs};
    H5_CHECK(dt = trace_doc_file_type(), "%s: documents type", path);
    H5_CHECK(dm = trace_doc_mem_type(), "%s: documents type", path);
    if ((ds[TDS_DOCUMENTS] = make_real(f, path, "documents", dt, dm, s[0].run_documents, 0,
                                       sizeof(olmoe_trace_document), put_documents, &dc)) < 0 ||
        write_groups(f, path, &s[0]) != 0)
        goto out;
    hid_t gr = H5I_INVALID_HID;
    H5_CHECK(gr = H5Dopen2(f, "groups", H5P_DEFAULT), "%s: /groups", path);
    int dims_rc = trace_dims_make(f, ds[TDS_WINDOWS], ds[TDS_DOCUMENTS], gr);
    H5Dclose(gr);
    if (dims_rc != 0 || trace_dims_sync(f) != 0) goto out;
    if (scale(sc_tok, "token", path) || scale(sc_l, "layer", path) ||
        scale(sc_e, "expert", path) || (res && scale(sc_h, "hidden", path)) ||
        attach(ds[TDS_TOKENS], sc_tok, 0, "/tokens", path) ||
        attach(ds[TDS_NLL], sc_tok, 0, "/baseline/nll", path) ||
        attach(ds[TDS_ARGMAX], sc_tok, 0, "/baseline/argmax", path) ||
        attach(ds[TDS_ROUTER_LOGITS], sc_tok, 0, "/router_logits", path) ||
        attach(ds[TDS_ROUTER_LOGITS], sc_l, 1, "/router_logits", path) ||
        attach(ds[TDS_ROUTER_LOGITS], sc_e, 2, "/router_logits", path))
        goto out;
    if (res && (attach(ds[TDS_RESIDUAL], sc_tok, 0, "/residual/attn", path) ||
                attach(ds[TDS_RESIDUAL], sc_l, 1, "/residual/attn", path) ||
                attach(ds[TDS_RESIDUAL], sc_h, 2, "/residual/attn", path)))
        goto out;
    rc = 0;
    goto out;
fail:
    rc = -1;
out:
    free(docs);
    olmoe_h5_close_id(dm);
    olmoe_h5_close_id(dt);
    for (int i = 0; i < TDS_COUNT; i++) olmoe_h5_close_id(ds[i]);
    olmoe_h5_close_id(sc_h);
    olmoe_h5_close_id(sc_e);
    olmoe_h5_close_id(sc_l);
    olmoe_h5_close_id(sc_tok);
    olmoe_h5_close_id(fapl);
    if (f > 0 && H5Fclose(f) < 0 && rc == 0)
        rc = olmoe_h5_failf(__FILE__, __LINE__, "H5Fclose()", "%s: close", path);
    return rc;
}

/* The close-time totals, from the merged /baseline/nll in stream order.
 * HDF5 opens a virtual dataset's sources with the access of the file that
 * maps them: reading through a file open for writing would open the shards
 * for writing too, marking them open by a writer, and a kill then would
 * leave every input shard marked. So the totals are read from a read-only
 * open, and the file is opened for writing only to set attributes, which
 * touch no source. */
static int finish(const char *path) {
    olmoe_trace *t = olmoe_trace_open(path);
    if (!t) return -1;
    double sum;
    int64_t scored;
    int rc = olmoe_trace_nll_total(t, &sum, &scored);
    olmoe_trace_close(t);
    if (rc != 0) return -1;
    double ppl = scored > 0 ? exp(sum / (double)scored) : NAN;
    hid_t f = olmoe_h5_open(path, 1);
    if (f < 0) return -1;
    if (olmoe_h5_set_attr_i64(f, ".", TRACE_ATTR_N_SCORED, scored) ||
        olmoe_h5_set_attr_f64(f, ".", TRACE_ATTR_NLL_SUM, sum) ||
        olmoe_h5_set_attr_f64(f, ".", TRACE_ATTR_PERPLEXITY, ppl) ||
        olmoe_h5_set_attr_i32(f, ".", TRACE_ATTR_COMPLETE, 1))
        rc = olmoe_error_prefix("%s", path);
    if (H5Fclose(f) < 0 && rc == 0)
        rc = olmoe_h5_failf(__FILE__, __LINE__, "H5Fclose()", "%s: close", path);
    return rc;
}

int olmoe_trace_merge(const char *path, const char *final_name, const char *const *shards, int n,
                      const olmoe_trace_merge_opts *o) {
    olmoe_h5_init();
    olmoe_trace_merge_opts none = {0};
    if (!o) o = &none;
    if (n < 1) return olmoe_errorf("merge: no shard traces given");
    mshard *s = xcalloc((size_t)n, sizeof *s);
    char *dir = NULL, *fin = NULL, *vds = NULL;
    int rc = -1;
    for (int i = 0; i < n; i++)
        if (merge_shard_open(&s[i], shards[i]) != 0) goto out;
    if (merge_check_run(s, n) != 0) goto out;
    if (!(dir = abs_dir_of(final_name))) goto out;
    fin = realpath(final_name, NULL); /* NULL when it does not exist yet */
    for (int i = 0; i < n; i++) {
        char *a = realpath(s[i].path, NULL);
        if (!a) {
            olmoe_errorf("%s: %s", s[i].path, strerror(errno));
            goto out;
        }
        if (fin && strcmp(a, fin) == 0) {
            free(a);
            olmoe_errorf("%s: the output is one of the shards", final_name);
            goto out;
        }
        s[i].rel = relpath(dir, a);
        free(a);
    }
    if (!o->copy) {
        if (write_merged(path, s, n, o) != 0) goto out;
        /* reading through the virtual datasets opens the shards anew: a file
         * this process still holds open would not be opened again */
        for (int i = 0; i < n; i++) olmoe_trace_close(s[i].t), s[i].t = NULL;
        if (finish(path) != 0) goto out;
    } else {
        size_t k = strlen(path);
        vds = xmalloc(k + sizeof ".vds");
        memcpy(vds, path, k);
        memcpy(vds + k, ".vds", sizeof ".vds");
        olmoe_cleanup_add(vds);
        const mshard *a = &s[0];
        const olmoe_trace_attr extra[] = {
            {OLMOE_ATTR_INPUT_CHECKSUM, a->input_sum, 0, 1},
            {OLMOE_ATTR_INPUT_BYTES, NULL, a->input_bytes, 1},
            {OLMOE_ATTR_MAX_TOKENS, NULL, a->max_tokens, 1},
            {OLMOE_ATTR_BATCH, NULL, a->batch, 1},
            {OLMOE_ATTR_MERGED_SHARDS, NULL, n, 0},
            {OLMOE_ATTR_MERGE_COMMAND, o->command ? o->command : "", 0, 0},
        };
        int r = write_merged(vds, s, n, o) != 0;
        for (int i = 0; i < n; i++) olmoe_trace_close(s[i].t), s[i].t = NULL;
        r = r || merge_copy(vds, path, extra, (int)(sizeof extra / sizeof extra[0])) != 0;
        unlink(vds);
        olmoe_cleanup_remove(vds);
        if (r) goto out;
    }
    rc = 0;
out:
    for (int i = 0; i < n; i++) merge_shard_close(&s[i]);
    free(s);
    free(dir);
    free(fin);
    free(vds);
    return rc;
}
