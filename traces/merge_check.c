/* merge_check.c: reading shard traces for olmoe_trace_merge and checking
 * that they are the complete, distinct parts of one run (same model,
 * tokenizer, settings and input), tiling its windows and positions without
 * gap or overlap. */
#include "merge_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static int get_i64(mshard *s, const char *name, int64_t *v) {
    hid_t f = olmoe_trace_hid(s->t);
    int e = olmoe_h5_has_attr(f, ".", name);
    if (e < 0) return olmoe_error_prefix("%s", s->path);
    if (!e) return olmoe_errorf("%s: attribute '%s' is missing", s->path, name);
    if (olmoe_h5_get_attr_i64(f, ".", name, v) != 0) return olmoe_error_prefix("%s", s->path);
    return 0;
}

int merge_shard_open(mshard *s, const char *path) {
    memset(s, 0, sizeof *s);
    s->path = path;
    if (!(s->t = olmoe_trace_open(path))) return -1;
    s->in = olmoe_trace_info_of(s->t);
    hid_t f = olmoe_trace_hid(s->t);
    int e = olmoe_h5_has_attr(f, ".", OLMOE_ATTR_SHARD_INDEX);
    if (e < 0) return olmoe_error_prefix("%s", path);
    if (!e)
        return olmoe_errorf("%s: not a shard (no attribute '%s': captured without --shard)", path,
                            OLMOE_ATTR_SHARD_INDEX);
    if (!s->in->complete)
        return olmoe_errorf("%s: incomplete (%lld windows committed): finish it with "
                            "olmoe-capture --resume", path, (long long)s->in->n_windows);
    if (get_i64(s, OLMOE_ATTR_SHARD_INDEX, &s->index) || get_i64(s, OLMOE_ATTR_SHARD_COUNT, &s->count) ||
        get_i64(s, OLMOE_ATTR_RUN_WINDOWS, &s->run_windows) ||
        get_i64(s, OLMOE_ATTR_RUN_TOKENS, &s->run_tokens) ||
        get_i64(s, OLMOE_ATTR_RUN_DOCUMENTS, &s->run_documents) ||
        get_i64(s, OLMOE_ATTR_SHARD_WINDOW_BEGIN, &s->w_begin) ||
        get_i64(s, OLMOE_ATTR_SHARD_WINDOW_END, &s->w_end) ||
        get_i64(s, OLMOE_ATTR_SHARD_OFFSET, &s->offset) ||
        get_i64(s, OLMOE_ATTR_SHARD_STORED_BEGIN, &s->s_begin) ||
        get_i64(s, OLMOE_ATTR_SHARD_STORED_END, &s->s_end) ||
        get_i64(s, OLMOE_ATTR_SHARD_DOCUMENT_BEGIN, &s->d_begin) ||
        get_i64(s, OLMOE_ATTR_INPUT_BYTES, &s->input_bytes) ||
        get_i64(s, OLMOE_ATTR_MAX_TOKENS, &s->max_tokens) || get_i64(s, OLMOE_ATTR_BATCH, &s->batch))
        return -1;
    if (olmoe_h5_get_attr_str(f, ".", OLMOE_ATTR_INPUT_CHECKSUM, &s->input_sum) != 0)
        return olmoe_error_prefix("%s", path);
    /* the plan must describe this file: what the merge maps is then in it */
    const olmoe_trace_info *in = s->in;
    int64_t nw = s->w_end - s->w_begin;
    if (s->count < 1 || s->index < 0 || s->index >= s->count || s->w_begin < 0 || nw < 1 ||
        s->w_end > s->run_windows || s->offset < 0 || s->s_begin < s->offset ||
        s->s_end <= s->s_begin || s->s_end > s->run_tokens || s->d_begin < 0 ||
        s->d_begin > s->run_documents || in->n_documents > s->run_documents - s->d_begin)
        return olmoe_errorf("%s: the shard attributes are inconsistent (shard %lld/%lld, windows "
                            "[%lld, %lld) of %lld, positions [%lld, %lld) of %lld from %lld)", path,
                            (long long)s->index, (long long)s->count, (long long)s->w_begin,
                            (long long)s->w_end, (long long)s->run_windows, (long long)s->s_begin,
                            (long long)s->s_end, (long long)s->run_tokens, (long long)s->offset);
    if (in->n_windows != nw || in->n_tokens < s->s_end - s->offset)
        return olmoe_errorf("%s: holds %lld windows and %lld positions, its shard attributes say "
                            "%lld windows and positions up to %lld", path, (long long)in->n_windows,
                            (long long)in->n_tokens, (long long)nw, (long long)(s->s_end - s->offset));
    return 0;
}

void merge_shard_close(mshard *s) {
    olmoe_trace_close(s->t);
    free(s->input_sum);
    free(s->rel);
    memset(s, 0, sizeof *s);
}

/* every data-defining attribute of b equals a's */
static int same_run(const mshard *a, const mshard *b) {
    const olmoe_trace_meta *x = &a->in->meta, *y = &b->in->meta;
    for (size_t i = 0; i < trace_attr_count; i++) {
        const trace_attr_desc *d = &trace_attr_table[i];
        if (!d->defines_data) continue;
        const char *xb = (const char *)x + d->off, *yb = (const char *)y + d->off;
        if (d->kind == ATTR_STR) {
            const char *u = *(const char *const *)xb, *v = *(const char *const *)yb;
            if (strcmp(u ? u : "", v ? v : "") != 0)
                return olmoe_errorf("%s and %s: attribute '%s' differs ('%.40s', '%.40s'): not "
                                    "shards of one run", a->path, b->path, d->name, u ? u : "",
                                    v ? v : "");
        } else if (*(const int *)xb != *(const int *)yb) {
            return olmoe_errorf("%s and %s: attribute '%s' differs (%d, %d): not shards of one run",
                                a->path, b->path, d->name, *(const int *)xb, *(const int *)yb);
        }
    }
    if (x->logits_dtype != y->logits_dtype || a->in->has_residuals != b->in->has_residuals)
        return olmoe_errorf("%s and %s: router logits dtype or residuals differ: not shards of "
                            "one run", a->path, b->path);
    if (strcmp(a->input_sum, b->input_sum) != 0 || a->input_bytes != b->input_bytes)
        return olmoe_errorf("%s and %s: attribute '%s' differs: captured from different inputs",
                            a->path, b->path, OLMOE_ATTR_INPUT_CHECKSUM);
    const struct { const char *name; int64_t u, v; } ints[] = {
        {OLMOE_ATTR_SHARD_COUNT, a->count, b->count},
        {OLMOE_ATTR_MAX_TOKENS, a->max_tokens, b->max_tokens},
        {OLMOE_ATTR_BATCH, a->batch, b->batch},
        {OLMOE_ATTR_RUN_WINDOWS, a->run_windows, b->run_windows},
        {OLMOE_ATTR_RUN_TOKENS, a->run_tokens, b->run_tokens},
        {OLMOE_ATTR_RUN_DOCUMENTS, a->run_documents, b->run_documents},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (ints[i].u != ints[i].v)
            return olmoe_errorf("%s and %s: attribute '%s' differs (%lld, %lld): not shards of "
                                "one run", a->path, b->path, ints[i].name, (long long)ints[i].u,
                                (long long)ints[i].v);
    return 0;
}

static int same_groups(mshard *a, mshard *b) {
    char **ga = NULL, **gb = NULL;
    int64_t na = 0, nb = 0;
    int r = 0;
    if (olmoe_trace_read_groups(a->t, &ga, &na) != 0 || olmoe_trace_read_groups(b->t, &gb, &nb) != 0)
        r = -1;
    else if (na != nb)
        r = olmoe_errorf("%s and %s: %lld and %lld groups: not shards of one run", a->path,
                         b->path, (long long)na, (long long)nb);
    for (int64_t i = 0; r == 0 && i < na; i++)
        if (strcmp(ga[i], gb[i]) != 0)
            r = olmoe_errorf("%s and %s: group %lld is '%s' and '%s': not shards of one run",
                             a->path, b->path, (long long)i, ga[i], gb[i]);
    olmoe_trace_free_groups(ga, na);
    olmoe_trace_free_groups(gb, nb);
    return r;
}

static int by_index(const void *a, const void *b) {
    const mshard *x = a, *y = b;
    return (x->index > y->index) - (x->index < y->index);
}

int merge_check_run(mshard *s, int n) {
    for (int i = 1; i < n; i++)
        if (same_run(&s[0], &s[i]) != 0 || same_groups(&s[0], &s[i]) != 0) return -1;
    if (s[0].count != n) {
        /* name what is missing or extra */
        char have[512] = "";
        int *seen = xcalloc((size_t)s[0].count, sizeof *seen);
        for (int i = 0; i < n; i++) seen[s[i].index] = 1;
        size_t k = 0;
        for (int64_t i = 0; i < s[0].count && k < sizeof have - 32; i++)
            if (!seen[i]) k += (size_t)snprintf(have + k, sizeof have - k, "%s%lld", k ? ", " : "",
                                                (long long)i);
        free(seen);
        return olmoe_errorf("a run of %lld shards, %d given%s%s", (long long)s[0].count, n,
                            k ? ": missing " : "", have);
    }
    qsort(s, (size_t)n, sizeof *s, by_index);
    for (int i = 1; i < n; i++)
        if (s[i].index == s[i - 1].index)
            return olmoe_errorf("%s and %s: both are shard %lld/%lld", s[i - 1].path, s[i].path,
                                (long long)s[i].index, (long long)s[i].count);
    for (int i = 0; i < n; i++) {
        int64_t wb = i ? s[i - 1].w_end : 0, pb = i ? s[i - 1].s_end : 0;
        if (s[i].w_begin != wb || s[i].s_begin != pb)
            return olmoe_errorf("%s: shard %lld starts at window %lld, position %lld; the shards "
                                "before end at window %lld, position %lld (a gap or overlap)",
                                s[i].path, (long long)s[i].index, (long long)s[i].w_begin,
                                (long long)s[i].s_begin, (long long)wb, (long long)pb);
    }
    const mshard *l = &s[n - 1];
    if (l->w_end != l->run_windows || l->s_end != l->run_tokens)
        return olmoe_errorf("%s: the last shard ends at window %lld, position %lld; the run has "
                            "%lld windows, %lld positions", l->path, (long long)l->w_end,
                            (long long)l->s_end, (long long)l->run_windows, (long long)l->run_tokens);
    return 0;
}
