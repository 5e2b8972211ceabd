/* schema.c: the trace schema as data (olmoe-trace(5) in tables): the datasets
 * and the root attributes that mirror olmoe_trace_meta. Create, open, resume,
 * verify (and merge, later) walk these tables instead of repeating names. */
#include "internal.h"

#include <stddef.h>
#include <string.h>
#include <time.h>

const trace_ds_desc trace_ds_table[TDS_COUNT] = {
    [TDS_TOKENS] = {"/tokens", 1, 1, ROW_SCALAR},
    [TDS_TOKEN_SCALE] = {"/token", 1, 1, ROW_SCALAR},
    [TDS_ROUTER_LOGITS] = {"/router_logits", 1, 1, ROW_LE},
    [TDS_NLL] = {"/baseline/nll", 1, 1, ROW_SCALAR},
    [TDS_ARGMAX] = {"/baseline/argmax", 1, 1, ROW_SCALAR},
    [TDS_RESIDUAL] = {"/residual/attn", 1, 0, ROW_LD},
    [TDS_WINDOWS] = {"/windows", 0, 1, ROW_3},
    [TDS_DOCUMENTS] = {"/documents", 0, 0, ROW_COMPOUND},
    [TDS_GROUPS] = {"/groups", 0, 0, ROW_STRING},
};

#define S(f, d) {#f, ATTR_STR, offsetof(olmoe_trace_meta, f), d}
#define I(f, d) {#f, ATTR_I32, offsetof(olmoe_trace_meta, f), d}
const trace_attr_desc trace_attr_table[] = {
    S(tool_version, 0),   S(command, 0),        S(created, 0),
    S(config_json, 1),    S(model_checksum, 1), S(tokenizer_checksum, 1),
    S(model_dir, 0),      I(n_layers, 1),       I(n_experts, 1),
    I(hidden_size, 1),    I(vocab_size, 1),     I(top_k, 1),
    I(norm_topk_prob, 1), S(policy, 1),         I(ctx, 1),
    I(stride, 1),         S(device, 1),         S(compute_dtype, 1),
    S(corpus, 0),
};
#undef S
#undef I
const size_t trace_attr_count = sizeof trace_attr_table / sizeof trace_attr_table[0];

size_t trace_row_elems(const olmoe_trace_info *in, trace_ds which) {
    switch (trace_ds_table[which].row) {
    case ROW_LE: return (size_t)in->meta.n_layers * (size_t)in->meta.n_experts;
    case ROW_LD: return (size_t)in->meta.n_layers * (size_t)in->meta.hidden_size;
    case ROW_3: return 3;
    default: return 1;
    }
}

hid_t trace_doc_mem_type(void) {
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(olmoe_trace_document));
    if (t < 0) return t;
    if (H5Tinsert(t, "start", offsetof(olmoe_trace_document, start), H5T_NATIVE_INT64) < 0 ||
        H5Tinsert(t, "length", offsetof(olmoe_trace_document, length), H5T_NATIVE_INT64) < 0 ||
        H5Tinsert(t, "group", offsetof(olmoe_trace_document, group), H5T_NATIVE_INT32) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

hid_t trace_doc_file_type(void) {
    hid_t t = H5Tcreate(H5T_COMPOUND, 20);
    if (t < 0) return t;
    if (H5Tinsert(t, "start", 0, H5T_STD_I64LE) < 0 ||
        H5Tinsert(t, "length", 8, H5T_STD_I64LE) < 0 ||
        H5Tinsert(t, "group", 16, H5T_STD_I32LE) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* A window row continues the tiling when it is well formed and stores from
 * a position after the previous window's first stored one and no later than
 * that window's end (earlier cuts the previous window short). */
void trace_tiling_feed(trace_tiling *s, const olmoe_trace_window *w, int64_t n) {
    for (int64_t k = 0; k < n && !s->stopped; k++) {
        const olmoe_trace_window *x = &w[k];
        if (x->start < 0 || x->length < 1 || x->stored_from < 0 || x->stored_from >= x->length ||
            x->start > INT64_MAX - x->length) {
            s->stopped = 1;
            break;
        }
        int64_t st = x->start + x->stored_from;
        if (st >= s->limit) { /* not committed (or past N) */
            s->stopped = 1;
            break;
        }
        if (s->n == 0 ? st != 0
                      : (st <= s->s_prev || st > s->end_prev || x->start < s->start_prev)) {
            s->stopped = 1;
            s->broken = 1;
            break;
        }
        if (s->n > 0 && st < s->end_prev) s->n_cut++;
        s->s_prev = st;
        s->end_prev = x->start + x->length;
        s->start_prev = x->start;
        s->n++;
    }
}

void trace_windows_from_rows(olmoe_trace_window *w, const int64_t *rows, int64_t n) {
    for (int64_t k = 0; k < n; k++) {
        w[k].start = rows[3 * k];
        w[k].length = rows[3 * k + 1];
        w[k].stored_from = rows[3 * k + 2];
        w[k].stored_end = 0;
    }
}

int trace_is_hex(const char *s) {
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return 0;
    return 1;
}

int trace_write_meta_attrs(hid_t f, const olmoe_trace_meta *m, int stamp_now) {
    char now[32];
    time_t sec = time(NULL);
    struct tm tm;
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&sec, &tm));
    if (olmoe_h5_set_attr_str(f, ".", "format", OLMOE_TRACE_FORMAT) ||
        olmoe_h5_set_attr_i32(f, ".", "format_version", OLMOE_TRACE_FORMAT_VERSION))
        return -1;
    for (size_t i = 0; i < trace_attr_count; i++) {
        const trace_attr_desc *a = &trace_attr_table[i];
        const char *base = (const char *)m + a->off;
        int r;
        if (a->kind == ATTR_STR) {
            const char *v = *(const char *const *)base;
            if ((!v || stamp_now) && strcmp(a->name, "created") == 0) v = now;
            if (!v && strcmp(a->name, "tool_version") == 0) v = OLMOE_VERSION;
            r = olmoe_h5_set_attr_str(f, ".", a->name, v ? v : "");
        } else {
            r = olmoe_h5_set_attr_i32(f, ".", a->name, *(const int *)base);
        }
        if (r != 0) return -1;
    }
    return 0;
}
