/* verify.c: olmoe_trace_verify, every rule of olmoe-trace(5) checked on a
 * file: first the schema (attributes, dataset names, shapes, types), then
 * the consistency of the data (windows tiling [0, N), nll NaN exactly at
 * each window's last position, tokens in the vocabulary, finite logits,
 * documents inside the stream, the stored perplexity). Each broken rule is
 * one line; a rule broken at many positions is one line with the count and
 * the first position. Data are read in blocks, so memory stays flat.
 *
 * A trace whose capture was killed (complete = 0) is valid when its
 * committed part is: rows past the last committed window (uncommitted data,
 * window rows still holding the fill value -1) are not problems. */
#include "internal.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_ELEMS (1 << 22) /* floats per read block */


void trace_problem(trace_problems *p, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = p->prefix ? snprintf(msg, sizeof msg, "%s: ", p->prefix) : 0;
    if (k < 0 || (size_t)k >= sizeof msg) k = 0;
    vsnprintf(msg + k, sizeof msg - (size_t)k, fmt, ap);
    va_end(ap);
    p->n++;
    if (p->fn) p->fn(p->ctx, msg);
}

/* a rule broken at several positions: counted, reported once */
typedef struct {
    int64_t count, first;
} tally;
static void tally_add(tally *t, int64_t pos) {
    if (t->count++ == 0) t->first = pos;
}
static void tally_report(trace_problems *v, const tally *t, const char *what) {
    if (t->count)
        trace_problem(v, "%s at %lld position%s (first: %lld)", what, (long long)t->count,
                t->count == 1 ? "" : "s", (long long)t->first);
}

/* ---- schema: attributes ---- */
typedef struct {
    olmoe_trace_meta m;
    char *owned[24];
    int sizes_ok; /* n_layers, n_experts, vocab_size (and hidden_size) usable */
    int complete;
    int64_t n_tokens, n_windows, n_scored;
    double nll_sum, perplexity;
} vattrs;

/* attribute name of class cls (and byte size, 0 = any), present: 1, else reports */
static int attr_is(trace_problems *v, hid_t f, const char *name, H5T_class_t cls, size_t size) {
    int e = olmoe_h5_has_attr(f, ".", name);
    if (e <= 0) {
        trace_problem(v, "root attribute '%s' is missing", name);
        return 0;
    }
    hid_t a = H5Aopen(f, name, H5P_DEFAULT), ty = a >= 0 ? H5Aget_type(a) : -1;
    int ok = ty >= 0 && H5Tget_class(ty) == cls && (size == 0 || H5Tget_size(ty) == size);
    olmoe_h5_close_id(ty);
    olmoe_h5_close_id(a);
    H5Eclear2(H5E_DEFAULT);
    if (!ok)
        trace_problem(v, "root attribute '%s' should be %s", name,
                cls == H5T_STRING ? "a string"
                : cls == H5T_FLOAT ? "float64"
                : size == 8       ? "int64"
                                  : "int32");
    return ok;
}

static int is_iso8601(const char *s) {
    const char *pat = "dddd-dd-ddTdd:dd:ddZ";
    if (strlen(s) != strlen(pat)) return 0;
    for (size_t i = 0; pat[i]; i++)
        if (pat[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pat[i]) return 0;
    return 1;
}

/* config.json must parse and agree with the size attributes */
static void check_config(trace_problems *v, const olmoe_trace_meta *m) {
    json_error_t err;
    json_t *root = json_loads(m->config_json ? m->config_json : "", 0, &err);
    if (!root || !json_is_object(root)) {
        trace_problem(v, "root attribute 'config_json' is not a JSON object (%s)",
                root ? "not an object" : err.text);
        json_decref(root);
        return;
    }
    static const struct {
        const char *key;
        size_t off;
    } keys[] = {{"num_hidden_layers", offsetof(olmoe_trace_meta, n_layers)},
                {"num_experts", offsetof(olmoe_trace_meta, n_experts)},
                {"hidden_size", offsetof(olmoe_trace_meta, hidden_size)},
                {"vocab_size", offsetof(olmoe_trace_meta, vocab_size)}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *x = json_object_get(root, keys[i].key);
        int have = *(const int *)((const char *)m + keys[i].off);
        if (x && json_is_integer(x) && json_integer_value(x) != have)
            trace_problem(v, "config_json says %s = %lld, the attribute says %d", keys[i].key,
                    (long long)json_integer_value(x), have);
    }
    json_decref(root);
}

static void check_attrs(trace_problems *v, hid_t f, vattrs *a) {
    int64_t x;
    int ok_sizes = 1;
    for (size_t i = 0; i < trace_attr_count; i++) {
        const trace_attr_desc *d = &trace_attr_table[i];
        char *base = (char *)&a->m + d->off;
        if (d->kind == ATTR_STR) {
            *(const char **)base = "";
            if (attr_is(v, f, d->name, H5T_STRING, 0) &&
                olmoe_h5_get_attr_str(f, ".", d->name, &a->owned[i]) == 0)
                *(const char **)base = a->owned[i];
        } else {
            *(int *)base = 0;
            if (!attr_is(v, f, d->name, H5T_INTEGER, 4) ||
                olmoe_h5_get_attr_i64(f, ".", d->name, &x) != 0) {
                ok_sizes = 0;
                continue;
            }
            *(int *)base = (int)x;
        }
    }
    const olmoe_trace_meta *m = &a->m;
    if (m->n_layers < 1 || m->n_experts < 1 || m->vocab_size < 1 || m->hidden_size < 0) {
        trace_problem(v, "sizes n_layers %d, n_experts %d, vocab_size %d, hidden_size %d: must be positive",
                m->n_layers, m->n_experts, m->vocab_size, m->hidden_size);
        ok_sizes = 0;
    }
    if (ok_sizes && ((int64_t)m->n_layers * m->n_experts > (1 << 24) ||
                     (int64_t)m->n_layers * m->hidden_size > (1 << 28))) {
        trace_problem(v, "sizes n_layers %d, n_experts %d, hidden_size %d are too large", m->n_layers,
                m->n_experts, m->hidden_size);
        ok_sizes = 0;
    }
    a->sizes_ok = ok_sizes;
    if (ok_sizes && (m->top_k < 1 || m->top_k > m->n_experts))
        trace_problem(v, "top_k %d outside 1..n_experts (%d)", m->top_k, m->n_experts);
    if (m->norm_topk_prob != 0 && m->norm_topk_prob != 1)
        trace_problem(v, "norm_topk_prob is %d, not 0 or 1", m->norm_topk_prob);
    if (m->ctx < 1 || m->stride < 0 || m->stride > m->ctx)
        trace_problem(v, "ctx %d / stride %d: need ctx >= 1 and 0 <= stride <= ctx", m->ctx, m->stride);
    if (!*m->model_checksum || !trace_is_hex(m->model_checksum))
        trace_problem(v, "model_checksum '%.40s' is not a hex string", m->model_checksum);
    if (!trace_is_hex(m->tokenizer_checksum))
        trace_problem(v, "tokenizer_checksum '%.40s' is not a hex string", m->tokenizer_checksum);
    if (!is_iso8601(m->created))
        trace_problem(v, "created '%.40s' is not an ISO-8601 UTC time (YYYY-MM-DDTHH:MM:SSZ)", m->created);
    if (strcmp(m->device, "cpu") != 0 && strncmp(m->device, "cuda:", 5) != 0)
        trace_problem(v, "device '%.40s' is neither 'cpu' nor 'cuda:<name>'", m->device);
    if (strcmp(m->compute_dtype, "float32") != 0 && strcmp(m->compute_dtype, "bfloat16") != 0)
        trace_problem(v, "compute_dtype '%.40s' is neither float32 nor bfloat16", m->compute_dtype);
    if (!*m->policy) trace_problem(v, "policy is empty");
    check_config(v, m);

    a->complete = 0;
    if (attr_is(v, f, TRACE_ATTR_COMPLETE, H5T_INTEGER, 4) &&
        olmoe_h5_get_attr_i64(f, ".", TRACE_ATTR_COMPLETE, &x) == 0) {
        if (x != 0 && x != 1) trace_problem(v, "complete is %lld, not 0 or 1", (long long)x);
        a->complete = x == 1;
    }
    a->n_scored = a->n_tokens = a->n_windows = -1;
    a->nll_sum = a->perplexity = NAN;
    if (attr_is(v, f, TRACE_ATTR_N_TOKENS, H5T_INTEGER, 8))
        olmoe_h5_get_attr_i64(f, ".", TRACE_ATTR_N_TOKENS, &a->n_tokens);
    if (attr_is(v, f, TRACE_ATTR_N_WINDOWS, H5T_INTEGER, 8))
        olmoe_h5_get_attr_i64(f, ".", TRACE_ATTR_N_WINDOWS, &a->n_windows);
    if (attr_is(v, f, TRACE_ATTR_N_SCORED, H5T_INTEGER, 8))
        olmoe_h5_get_attr_i64(f, ".", TRACE_ATTR_N_SCORED, &a->n_scored);
    if (attr_is(v, f, TRACE_ATTR_NLL_SUM, H5T_FLOAT, 8))
        olmoe_h5_get_attr_f64(f, ".", TRACE_ATTR_NLL_SUM, &a->nll_sum);
    if (attr_is(v, f, TRACE_ATTR_PERPLEXITY, H5T_FLOAT, 8))
        olmoe_h5_get_attr_f64(f, ".", TRACE_ATTR_PERPLEXITY, &a->perplexity);
    H5Eclear2(H5E_DEFAULT);
}

/* ---- schema: datasets ---- */
typedef enum { T_I32, T_I64, T_F32, T_LOGITS, T_BF16, T_DOCS, T_VSTR } vtype;

typedef struct {
    hid_t ds;
    int64_t rows;
} vds;

static int type_matches(hid_t ty, vtype want) {
    H5T_class_t c = H5Tget_class(ty);
    size_t sz = H5Tget_size(ty), sp, ep, es, mp, ms;
    switch (want) {
    case T_I32: return c == H5T_INTEGER && sz == 4 && H5Tget_sign(ty) == H5T_SGN_2;
    case T_I64: return c == H5T_INTEGER && sz == 8 && H5Tget_sign(ty) == H5T_SGN_2;
    case T_F32:
    case T_LOGITS:
    case T_BF16:
        if (c != H5T_FLOAT || H5Tget_fields(ty, &sp, &ep, &es, &mp, &ms) < 0) return 0;
        if (sz == 4 && es == 8 && ms == 23) return want != T_BF16;
        if (sz == 2 && sp == 15 && ep == 7 && es == 8 && mp == 0 && ms == 7 && H5Tget_ebias(ty) == 127)
            return want != T_F32;
        if (sz == 2 && sp == 15 && ep == 10 && es == 5 && mp == 0 && ms == 10 && H5Tget_ebias(ty) == 15)
            return want == T_LOGITS;
        return 0;
    case T_DOCS: {
        if (c != H5T_COMPOUND || H5Tget_nmembers(ty) != 3) return 0;
        static const char *const names[3] = {"start", "length", "group"};
        static const size_t sizes[3] = {8, 8, 4};
        for (unsigned i = 0; i < 3; i++) {
            int idx = H5Tget_member_index(ty, names[i]);
            if (idx < 0) return 0;
            hid_t mt = H5Tget_member_type(ty, (unsigned)idx);
            int ok = mt >= 0 && H5Tget_class(mt) == H5T_INTEGER && H5Tget_size(mt) == sizes[i];
            olmoe_h5_close_id(mt);
            if (!ok) return 0;
        }
        return 1;
    }
    case T_VSTR: return c == H5T_STRING && H5Tis_variable_str(ty) > 0;
    }
    return 0;
}

static const char *type_name(vtype t) {
    static const char *const n[] = {"int32", "int64", "float32", "float32, float16 or bfloat16",
                                    "bfloat16", "compound {start int64, length int64, group int32}",
                                    "variable-length string"};
    return n[t];
}

/* opens path if present; checks type, rank and the dims after the first
 * (d1, d2 < 0: not checked); missing and required -> problem */
static vds check_ds(trace_problems *v, hid_t f, const char *path, int required, vtype want, int rank,
                    int64_t d1, int64_t d2) {
    vds r = {H5I_INVALID_HID, 0};
    int e = olmoe_h5_exists(f, path);
    if (e <= 0) {
        if (required) trace_problem(v, "%s is missing", path);
        return r;
    }
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds < 0) {
        trace_problem(v, "%s: cannot open: %s", path, olmoe_h5_reason());
        H5Eclear2(H5E_DEFAULT);
        return r;
    }
    hid_t ty = H5Dget_type(ds), sp = H5Dget_space(ds);
    hsize_t dims[4] = {0, 0, 0, 0};
    int rk = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (rk >= 1 && rk <= 4) H5Sget_simple_extent_dims(sp, dims, NULL);
    int ok = 1;
    if (ty < 0 || !type_matches(ty, want)) {
        trace_problem(v, "%s should be %s", path, type_name(want));
        ok = 0;
    }
    if (rk != rank || (rank > 1 && d1 >= 0 && dims[1] != (hsize_t)d1) ||
        (rank > 2 && d2 >= 0 && dims[2] != (hsize_t)d2)) {
        char want_s[64], have_s[96] = "";
        if (rank == 1) snprintf(want_s, sizeof want_s, "[N]");
        else if (rank == 2) snprintf(want_s, sizeof want_s, "[W, %lld]", (long long)d1);
        else snprintf(want_s, sizeof want_s, "[N, %lld, %lld]", (long long)d1, (long long)d2);
        for (int i = 0; i < rk && i < 4; i++) {
            size_t k = strlen(have_s);
            snprintf(have_s + k, sizeof have_s - k, "%s%llu", i ? ", " : "",
                     (unsigned long long)dims[i]);
        }
        trace_problem(v, "%s has shape [%s], expected %s", path, have_s, want_s);
        ok = 0;
    }
    olmoe_h5_close_id(ty);
    olmoe_h5_close_id(sp);
    H5Eclear2(H5E_DEFAULT);
    if (!ok) {
        H5Dclose(ds);
        return r;
    }
    r.ds = ds;
    r.rows = (int64_t)dims[0];
    return r;
}

/* ---- data ---- */
/* rows [start, start + count) of ds (all of the other axes) into out */
static int read_block(hid_t ds, hid_t mtype, int64_t start, int64_t count, void *out) {
    hid_t fs = H5Dget_space(ds), ms = H5I_INVALID_HID;
    hsize_t dims[3] = {0, 0, 0}, off[3] = {(hsize_t)start, 0, 0}, cnt[3];
    int rk = fs >= 0 ? H5Sget_simple_extent_ndims(fs) : -1, rc = -1;
    if (rk < 1 || rk > 3 || H5Sget_simple_extent_dims(fs, dims, NULL) < 0) goto out;
    hsize_t n = (hsize_t)count;
    cnt[0] = (hsize_t)count;
    for (int i = 1; i < rk; i++) n *= (cnt[i] = dims[i]);
    if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL) < 0) goto out;
    if ((ms = H5Screate_simple(rk, cnt, NULL)) < 0) goto out; /* same shape: fast path */
    if (H5Dread(ds, mtype, ms, fs, H5P_DEFAULT, out) < 0) goto out;
    rc = 0;
out:
    olmoe_h5_close_id(ms);
    olmoe_h5_close_id(fs);
    return rc;
}

static void read_failed(trace_problems *v, const char *path, int64_t start) {
    trace_problem(v, "%s: cannot read rows from %lld: %s", path, (long long)start, olmoe_h5_reason());
    H5Eclear2(H5E_DEFAULT);
}

typedef struct {
    int64_t N, W;       /* committed positions and windows */
    int tiles;          /* the windows tile [0, N): NaN positions are known */
    int64_t *nan_at;    /* [n_nan] ascending: the last position of each window that stores it */
    int64_t n_nan;
} vwin;

/* The committed windows are those storing from below N (the attribute
 * n_tokens); they must tile [0, N): window 0 stores from 0, each later one
 * from after the previous one's first stored position and no later than
 * its end (earlier cuts it short). Window rows from N on, in an incomplete
 * trace, are what a killed append left and not part of the trace. */
static void check_windows(trace_problems *v, const vds *wd, const vattrs *a, vwin *out) {
    enum { B = 65536 };
    int64_t *rows = xmalloc(B * 3 * sizeof *rows);
    tally malformed = {0, 0}, gap = {0, 0}, back = {0, 0}, order = {0, 0}, too_long = {0, 0},
          past = {0, 0};
    int64_t N = a->n_tokens >= 0 ? a->n_tokens : INT64_MAX;
    int64_t s_prev = 0, end_prev = 0, start_prev = 0, committed = 0, gap_at = 0, gap_want = 0;
    int stop = 0;
    out->nan_at = xmalloc((size_t)(wd->rows > 0 ? wd->rows : 1) * sizeof *out->nan_at);
    out->n_nan = 0;
    for (int64_t k0 = 0; k0 < wd->rows && !stop; k0 += B) {
        int64_t c = wd->rows - k0 < B ? wd->rows - k0 : B;
        if (read_block(wd->ds, H5T_NATIVE_INT64, k0, c, rows) != 0) {
            read_failed(v, "/windows", k0);
            out->tiles = 0;
            break;
        }
        for (int64_t i = 0; i < c && !stop; i++) {
            int64_t k = k0 + i, s = rows[3 * i], l = rows[3 * i + 1], f = rows[3 * i + 2];
            int ok = s >= 0 && l >= 1 && f >= 0 && f < l && s <= INT64_MAX - l;
            if (!ok || s + f >= N) {
                if (!a->complete) { /* uncommitted rows of a killed append */
                    stop = 1;
                    break;
                }
                if (!ok) tally_add(&malformed, k);
                else tally_add(&past, k);
                out->tiles = 0;
                continue;
            }
            int64_t st = s + f;
            if (l > a->m.ctx) tally_add(&too_long, k);
            if (committed > 0 && s < start_prev) tally_add(&order, k);
            if (committed == 0 ? st != 0 : st > end_prev) {
                if (gap.count == 0) gap_at = st, gap_want = committed ? end_prev : 0;
                tally_add(&gap, k);
                out->tiles = 0;
            } else if (committed > 0 && st <= s_prev) {
                tally_add(&back, k);
                out->tiles = 0;
            }
            /* the previous window kept its last position: its next token is not scored */
            if (committed > 0 && st == end_prev) out->nan_at[out->n_nan++] = end_prev - 1;
            s_prev = st;
            end_prev = s + l;
            start_prev = s;
            committed++;
        }
    }
    free(rows);
    int64_t end = committed ? end_prev : 0;
    if (a->n_tokens >= 0) {
        if (a->complete ? a->n_tokens != end : a->n_tokens > end) {
            trace_problem(v, "n_tokens is %lld, the windows cover %lld positions", (long long)a->n_tokens,
                    (long long)end);
            out->tiles = 0;
        }
    } else {
        N = end;
    }
    if (committed && N == end_prev) out->nan_at[out->n_nan++] = end_prev - 1;
    tally_report(v, &malformed, "/windows: malformed row (need start >= 0, length >= 1, "
                                "0 <= stored_from < length): window");
    tally_report(v, &past, "/windows: stores from n_tokens or later: window");
    tally_report(v, &too_long, "/windows: window longer than ctx: window");
    tally_report(v, &order, "/windows: window starts before the previous one: window");
    tally_report(v, &back, "/windows: stores from no later than the previous window did: window");
    if (gap.count)
        trace_problem(v, "/windows: stored ranges do not tile the stream at %lld window%s (first: window "
                "%lld stores from %lld, the previous window ends at %lld: a gap)",
                (long long)gap.count, gap.count == 1 ? "" : "s", (long long)gap.first,
                (long long)gap_at, (long long)gap_want);
    if (a->complete && a->n_windows != committed)
        trace_problem(v, "n_windows is %lld, /windows has %lld rows", (long long)a->n_windows,
                (long long)committed);
    out->N = N < end ? N : end;
    out->W = committed;
}

/* every value of a float dataset [N, ...] finite */
static void check_finite(trace_problems *v, const vds *d, const char *path, int64_t N, size_t row) {
    if (d->ds < 0 || N <= 0 || row == 0) return;
    hid_t ty = H5Dget_type(d->ds);
    size_t sz = ty >= 0 ? H5Tget_size(ty) : 4, ep = 0, es = 0, x;
    if (ty >= 0) H5Tget_fields(ty, &x, &ep, &es, &x, &x);
    int64_t rows = BLOCK_ELEMS / (int64_t)row;
    if (rows < 1) rows = 1;
    void *buf = xmalloc(xmul((size_t)rows, row * 4));
    tally bad = {0, 0};
    uint16_t emask = (uint16_t)(((1u << es) - 1) << ep);
    for (int64_t s = 0; s < N; s += rows) {
        int64_t c = N - s < rows ? N - s : rows;
        size_t n = (size_t)c * row;
        if (sz == 2) {
            if (read_block(d->ds, ty, s, c, buf) != 0) {
                read_failed(v, path, s);
                break;
            }
            const uint16_t *h = buf;
            for (size_t i = 0; i < n; i++)
                if ((h[i] & emask) == emask) tally_add(&bad, s + (int64_t)(i / row));
        } else {
            if (read_block(d->ds, H5T_NATIVE_FLOAT, s, c, buf) != 0) {
                read_failed(v, path, s);
                break;
            }
            const float *f = buf;
            for (size_t i = 0; i < n; i++)
                if (!isfinite(f[i])) tally_add(&bad, s + (int64_t)(i / row));
        }
    }
    char what[128];
    snprintf(what, sizeof what, "%s: value not finite", path);
    tally_report(v, &bad, what);
    free(buf);
    olmoe_h5_close_id(ty);
}

/* an integer dataset's values over [0, N), read as int64: in [0, hi), or
 * (hi = 0) each equal to its position; what names the broken rule */
static void check_int_rows(trace_problems *v, const vds *d, const char *path, int64_t N, int64_t hi,
                           const char *what) {
    if (d->ds < 0) return;
    enum { B = 1 << 20 };
    int64_t *buf = xmalloc(B * sizeof *buf);
    tally bad = {0, 0};
    for (int64_t s = 0; s < N; s += B) {
        int64_t c = N - s < B ? N - s : B;
        if (read_block(d->ds, H5T_NATIVE_INT64, s, c, buf) != 0) {
            read_failed(v, path, s);
            break;
        }
        for (int64_t i = 0; i < c; i++)
            if (hi ? buf[i] < 0 || buf[i] >= hi : buf[i] != s + i) tally_add(&bad, s + i);
    }
    tally_report(v, &bad, what);
    free(buf);
}

/* int32 dataset values in [0, hi) over [0, N) */
static void check_ids(trace_problems *v, const vds *d, const char *path, int64_t N, int64_t hi,
                      const char *what) {
    char msg[160];
    snprintf(msg, sizeof msg, "%s: %s outside [0, %lld)", path, what, (long long)hi);
    check_int_rows(v, d, path, N, hi, msg);
}

/* /token = 0..N-1 */
static void check_positions(trace_problems *v, const vds *d, int64_t N) {
    check_int_rows(v, d, "/token", N, 0, "/token: value differs from its position");
}

/* NaN exactly at each window's last position; sums the others */
static void check_nll(trace_problems *v, const vds *d, const vwin *w, const vattrs *a) {
    if (d->ds < 0) return;
    enum { B = 1 << 20 };
    float *buf = xmalloc(B * sizeof *buf);
    tally nan_scored = {0, 0}, not_nan = {0, 0}, bad = {0, 0};
    double sum = 0;
    int64_t count = 0, wi = 0, N = w->N;
    for (int64_t s = 0; s < N; s += B) {
        int64_t c = N - s < B ? N - s : B;
        if (read_block(d->ds, H5T_NATIVE_FLOAT, s, c, buf) != 0) {
            read_failed(v, "/baseline/nll", s);
            free(buf);
            return;
        }
        for (int64_t i = 0; i < c; i++) {
            int64_t p = s + i;
            float x = buf[i];
            while (w->tiles && wi < w->n_nan && w->nan_at[wi] < p) wi++;
            int last = w->tiles && wi < w->n_nan && w->nan_at[wi] == p;
            if (isfinite(x)) {
                sum += x;
                count++;
                if (x < 0) tally_add(&bad, p);
            } else if (!isnan(x)) {
                tally_add(&bad, p);
            }
            if (!w->tiles) continue;
            if (last && !isnan(x)) tally_add(&not_nan, p);
            if (!last && isnan(x)) tally_add(&nan_scored, p);
        }
    }
    free(buf);
    tally_report(v, &nan_scored, "/baseline/nll: NaN where the next token is scored");
    tally_report(v, &not_nan, "/baseline/nll: not NaN at the last position of a window");
    tally_report(v, &bad, "/baseline/nll: negative or infinite");
    if (!a->complete) return;
    if (a->n_scored != count)
        trace_problem(v, "n_scored is %lld, /baseline/nll holds %lld finite values", (long long)a->n_scored,
                (long long)count);
    if (w->tiles && count != w->N - w->n_nan && nan_scored.count + not_nan.count == 0)
        trace_problem(v, "%lld scored positions, expected %lld (N less the windows' last positions)",
                (long long)count, (long long)(w->N - w->n_nan));
    if (!(fabs(a->nll_sum - sum) <= 1e-9 * fmax(1.0, fabs(sum))))
        trace_problem(v, "nll_sum is %.17g, the sum of /baseline/nll is %.17g", a->nll_sum, sum);
    double ppl = count ? exp(sum / (double)count) : NAN;
    if (count ? !(fabs(a->perplexity - ppl) <= 1e-9 * ppl) : !isnan(a->perplexity))
        trace_problem(v, "perplexity is %.17g, exp(mean nll) of /baseline/nll is %.17g", a->perplexity, ppl);
}

static void check_documents(trace_problems *v, const vds *d, int64_t N, int64_t n_groups, int complete) {
    if (d->ds < 0 || d->rows == 0) return;
    enum { B = 65536 };
    hid_t mt = trace_doc_mem_type();
    olmoe_trace_document *buf = xmalloc(B * sizeof *buf);
    tally bad = {0, 0}, outside = {0, 0}, group = {0, 0}, tail = {0, 0};
    int in_tail = 0;
    for (int64_t s = 0; s < d->rows; s += B) {
        int64_t c = d->rows - s < B ? d->rows - s : B;
        if (mt < 0 || read_block(d->ds, mt, s, c, buf) != 0) {
            read_failed(v, "/documents", s);
            break;
        }
        for (int64_t i = 0; i < c; i++) {
            const olmoe_trace_document *x = &buf[i];
            if (!complete && x->start == -1 && x->length == -1 && x->group == -1) {
                in_tail = 1;
                continue;
            }
            if (in_tail) tally_add(&tail, s + i);
            if (x->start < 0 || x->length < 0 || x->start > INT64_MAX - x->length)
                tally_add(&bad, s + i);
            else if (complete && x->start + x->length > N)
                tally_add(&outside, s + i);
            if (x->group < -1 || x->group >= n_groups) tally_add(&group, s + i);
        }
    }
    char msg[128];
    tally_report(v, &bad, "/documents: negative start or length: document");
    snprintf(msg, sizeof msg, "/documents: range outside [0, %lld): document", (long long)N);
    tally_report(v, &outside, msg);
    snprintf(msg, sizeof msg, "/documents: group outside -1..%lld: document", (long long)n_groups - 1);
    tally_report(v, &group, msg);
    tally_report(v, &tail, "/documents: written row after unwritten (fill) rows: document");
    olmoe_h5_close_id(mt);
    free(buf);
}

static void check_groups(trace_problems *v, const vds *d) {
    if (d->ds < 0 || d->rows == 0) return;
    if (d->rows > (int64_t)1 << 24) {
        trace_problem(v, "/groups: %lld names is too many", (long long)d->rows);
        return;
    }
    hid_t st = trace_vstr_type();
    char **names = xcalloc((size_t)d->rows, sizeof *names);
    if (st < 0 || read_block(d->ds, st, 0, d->rows, names) != 0) {
        read_failed(v, "/groups", 0);
    } else {
        for (int64_t i = 0; i < d->rows; i++)
            if (!names[i] || !*names[i]) {
                trace_problem(v, "/groups: name %lld is empty", (long long)i);
                break;
            }
        hsize_t n = (hsize_t)d->rows;
        hid_t sp = H5Screate_simple(1, &n, NULL);
        H5Dvlen_reclaim(st, sp, H5P_DEFAULT, names);
        olmoe_h5_close_id(sp);
    }
    olmoe_h5_close_id(st);
    free(names);
}

/* the scale /name of length n, attached to ds at axis idx */
static void check_scale(trace_problems *v, hid_t f, const char *name, int64_t n, hid_t ds, const char *dsname,
                        unsigned idx) {
    char path[32];
    snprintf(path, sizeof path, "/%s", name);
    if (olmoe_h5_exists(f, path) <= 0) {
        trace_problem(v, "dimension scale %s is missing", path);
        return;
    }
    hid_t s = H5Dopen2(f, path, H5P_DEFAULT);
    if (s < 0 || H5DSis_scale(s) <= 0) {
        trace_problem(v, "%s is not a dimension scale", path);
    } else {
        int64_t dims[OLMOE_H5_MAX_RANK];
        int rank;
        if (n >= 0 && (olmoe_h5_shape(f, path, &rank, dims) != 0 || rank != 1 || dims[0] != n))
            trace_problem(v, "dimension scale %s should have %lld entries", path, (long long)n);
        if (ds >= 0 && H5DSis_attached(ds, s, idx) <= 0)
            trace_problem(v, "dimension scale %s is not attached to %s axis %u", path, dsname, idx);
    }
    olmoe_h5_close_id(s);
    H5Eclear2(H5E_DEFAULT);
}

/* the format name and version this code checks; 0 (reported) if not */
static int check_format(trace_problems *v, hid_t f) {
    char *fmt = NULL;
    int64_t ver = 0;
    int ok = 0;
    if (olmoe_h5_has_attr(f, ".", "format") <= 0 || olmoe_h5_get_attr_str(f, ".", "format", &fmt)) {
        trace_problem(v, "not an olmoe trace (no string attribute 'format')");
    } else if (strcmp(fmt, OLMOE_TRACE_FORMAT) != 0) {
        trace_problem(v, "format is '%s', not '%s'", fmt, OLMOE_TRACE_FORMAT);
    } else if (!attr_is(v, f, "format_version", H5T_INTEGER, 4) ||
               olmoe_h5_get_attr_i64(f, ".", "format_version", &ver) != 0) {
        /* reported by attr_is, or unreadable */
    } else if (ver != OLMOE_TRACE_FORMAT_VERSION) {
        trace_problem(v, "format version %lld; this olmoe (%s) checks version %d: %s", (long long)ver,
                OLMOE_VERSION, OLMOE_TRACE_FORMAT_VERSION,
                ver > OLMOE_TRACE_FORMAT_VERSION ? "use a newer olmoe-traces"
                                                 : "capture it again or use an older olmoe-traces");
    } else {
        ok = 1;
    }
    free(fmt);
    return ok;
}

/* every dataset of the schema opened when present with its type and shape */
static void open_datasets(trace_problems *v, hid_t f, const olmoe_trace_meta *m, vds *d /*[TDS_COUNT]*/) {
    d[TDS_TOKENS] = check_ds(v, f, "/tokens", 1, T_I32, 1, -1, -1);
    d[TDS_TOKEN_SCALE] = check_ds(v, f, "/token", 1, T_I64, 1, -1, -1);
    d[TDS_ROUTER_LOGITS] = check_ds(v, f, "/router_logits", 1, T_LOGITS, 3, m->n_layers, m->n_experts);
    d[TDS_NLL] = check_ds(v, f, "/baseline/nll", 1, T_F32, 1, -1, -1);
    d[TDS_ARGMAX] = check_ds(v, f, "/baseline/argmax", 1, T_I32, 1, -1, -1);
    d[TDS_RESIDUAL] = check_ds(v, f, "/residual/attn", 0, T_BF16, 3, m->n_layers, m->hidden_size);
    d[TDS_WINDOWS] = check_ds(v, f, "/windows", 1, T_I64, 2, 3, -1);
    d[TDS_DOCUMENTS] = check_ds(v, f, "/documents", 0, T_DOCS, 1, -1, -1);
    d[TDS_GROUPS] = check_ds(v, f, "/groups", 0, T_VSTR, 1, -1, -1);
}

/* the windows, and the positions every per-token dataset covers (w->N:
 * the windows' positions, cut to the shortest dataset so that what is there
 * is checked) */
static void check_rows(trace_problems *v, const vds *d, const vattrs *a, vwin *w) {
    if (d[TDS_WINDOWS].ds >= 0)
        check_windows(v, &d[TDS_WINDOWS], a, w);
    else
        w->tiles = 0;
    int64_t N = w->N;
    for (int i = 0; i < TDS_COUNT; i++) {
        if (!trace_ds_table[i].per_token || d[i].ds < 0) continue;
        if (d[i].rows < N || (a->complete && w->tiles && d[i].rows != N))
            trace_problem(v, "%s has %lld rows, the windows cover %lld positions", trace_ds_table[i].path,
                    (long long)d[i].rows, (long long)N);
        if (d[i].rows < N) N = d[i].rows;
    }
    w->N = N;
}

/* the values of each dataset over [0, w->N) */
static void check_values(trace_problems *v, const vds *d, const vattrs *a, const vwin *w) {
    const olmoe_trace_meta *m = &a->m;
    const int64_t N = w->N;
    check_ids(v, &d[TDS_TOKENS], "/tokens", N, m->vocab_size, "token id");
    check_ids(v, &d[TDS_ARGMAX], "/baseline/argmax", N, m->vocab_size, "token id");
    check_positions(v, &d[TDS_TOKEN_SCALE], N);
    check_nll(v, &d[TDS_NLL], w, a);
    check_finite(v, &d[TDS_ROUTER_LOGITS], "/router_logits", N,
                 (size_t)m->n_layers * (size_t)m->n_experts);
    check_finite(v, &d[TDS_RESIDUAL], "/residual/attn", N,
                 (size_t)m->n_layers * (size_t)m->hidden_size);
    check_documents(v, &d[TDS_DOCUMENTS], N, d[TDS_GROUPS].ds >= 0 ? d[TDS_GROUPS].rows : 0,
                    a->complete);
    check_groups(v, &d[TDS_GROUPS]);
}

/* the dimension scales and what each is attached to */
static void check_scales(trace_problems *v, hid_t f, const vds *d, const olmoe_trace_meta *m) {
    hid_t lg = d[TDS_ROUTER_LOGITS].ds;
    check_scale(v, f, "token", -1, d[TDS_TOKENS].ds, "/tokens", 0);
    check_scale(v, f, "token", -1, lg, "/router_logits", 0);
    check_scale(v, f, "layer", m->n_layers, lg, "/router_logits", 1);
    check_scale(v, f, "expert", m->n_experts, lg, "/router_logits", 2);
    check_scale(v, f, "token", -1, d[TDS_NLL].ds, "/baseline/nll", 0);
    check_scale(v, f, "token", -1, d[TDS_ARGMAX].ds, "/baseline/argmax", 0);
    if (d[TDS_RESIDUAL].ds >= 0) {
        check_scale(v, f, "layer", m->n_layers, d[TDS_RESIDUAL].ds, "/residual/attn", 1);
        check_scale(v, f, "hidden", m->hidden_size, d[TDS_RESIDUAL].ds, "/residual/attn", 2);
    }
}

int64_t olmoe_trace_verify(const char *path, olmoe_trace_report_fn report, void *ctx) {
    olmoe_h5_init();
    trace_problems v = {report, ctx, path, 0};
    hid_t f = olmoe_h5_open(path, 0);
    if (f < 0) {
        if (report) report(ctx, olmoe_error());
        return 1;
    }
    vattrs a;
    memset(&a, 0, sizeof a);
    if (!check_format(&v, f)) goto done;
    check_attrs(&v, f, &a);
    if (!a.sizes_ok) goto done; /* shapes cannot be checked without the sizes */
    vds d[TDS_COUNT];
    open_datasets(&v, f, &a.m, d);
    vwin w = {0, 0, 1, NULL, 0};
    check_rows(&v, d, &a, &w);
    check_values(&v, d, &a, &w);
    check_scales(&v, f, d, &a.m);
    free(w.nan_at);
    for (int i = 0; i < TDS_COUNT; i++) olmoe_h5_close_id(d[i].ds);
    v.n += olmoe_trace_verify_usable(path, f, a.complete, w.N, report, ctx);
done:
    for (size_t i = 0; i < sizeof a.owned / sizeof a.owned[0]; i++) free(a.owned[i]);
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    return v.n;
}
