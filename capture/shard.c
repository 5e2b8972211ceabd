/* shard.c: which windows a shard runs and how its own sub-stream is laid out
 * (shard.h explains the layout and why the split is by whole batches). */
#include "shard.h"

#include <stdlib.h>
#include <string.h>

int olmoe_shard_plan_make(const olmoe_window *win, int64_t nwin, const olmoe_token_stream *ts,
                          int index, int count, int64_t batch, olmoe_shard_plan *p) {
    memset(p, 0, sizeof *p);
    if (nwin < 1) return olmoe_errorf("the input has no window to capture");
    if (batch < 1) batch = 1;
    p->index = index;
    p->count = count;
    p->run_windows = nwin;
    p->run_tokens = ts->n_tokens;
    p->run_documents = ts->n_docs;
    p->w_begin = 0;
    p->w_end = nwin;
    if (count > 0) {
        int64_t nb = (nwin + batch - 1) / batch;
        if (nb < count)
            return olmoe_errorf("--shard %d/%d: the run has %lld window%s in %lld batch%s of %lld: "
                                "use at most %lld shards", index, count, (long long)nwin,
                                nwin == 1 ? "" : "s", (long long)nb, nb == 1 ? "" : "es",
                                (long long)batch, (long long)nb);
        int64_t b0 = nb * index / count, b1 = nb * (index + 1) / count;
        p->w_begin = b0 * batch;
        p->w_end = b1 * batch < nwin ? b1 * batch : nwin;
    }
    const olmoe_window *f = &win[p->w_begin], *l = &win[p->w_end - 1];
    p->offset = f->start;
    p->stored_begin = f->start + f->stored_from;
    p->stored_end = olmoe_windows_stored_end(win, nwin, p->w_end - 1);
    p->local_tokens = l->start + l->length - p->offset;
    /* documents overlapping [offset, offset + local_tokens), in stream order */
    int64_t lo = p->offset, hi = p->offset + p->local_tokens, d = 0;
    while (d < ts->n_docs && ts->doc_start[d] + ts->doc_length[d] <= lo &&
           !(ts->doc_length[d] == 0 && ts->doc_start[d] >= lo))
        d++;
    p->doc_begin = d;
    while (d < ts->n_docs && ts->doc_start[d] < hi) d++;
    p->doc_end = d;
    return 0;
}

olmoe_window *olmoe_shard_windows(const olmoe_window *win, const olmoe_shard_plan *p) {
    int64_t n = p->w_end - p->w_begin;
    olmoe_window *w = xmalloc(xmul((size_t)n, sizeof *w));
    for (int64_t i = 0; i < n; i++) {
        w[i] = win[p->w_begin + i];
        w[i].start -= p->offset;
    }
    w[0].stored_from = 0; /* the first window of a stream stores all of it */
    return w;
}

void olmoe_shard_stream(const olmoe_token_stream *ts, const olmoe_shard_plan *p,
                        olmoe_token_stream *view) {
    memset(view, 0, sizeof *view);
    view->tokens = ts->tokens + p->offset;
    view->n_tokens = p->local_tokens;
    int64_t nd = p->doc_end - p->doc_begin;
    view->doc_start = xmalloc(xmul((size_t)nd + 1, sizeof *view->doc_start));
    view->doc_length = xmalloc(xmul((size_t)nd + 1, sizeof *view->doc_length));
    view->doc_group = xmalloc(xmul((size_t)nd + 1, sizeof *view->doc_group));
    for (int64_t i = 0; i < nd; i++) {
        int64_t d = p->doc_begin + i, s = ts->doc_start[d], e = s + ts->doc_length[d];
        if (s < p->offset) s = p->offset;
        if (e > p->offset + p->local_tokens) e = p->offset + p->local_tokens;
        view->doc_start[i] = s - p->offset;
        view->doc_length[i] = e - s;
        view->doc_group[i] = ts->doc_group[d];
    }
    view->n_docs = nd;
    view->groups = ts->groups;
    view->n_groups = ts->n_groups;
}

void olmoe_shard_stream_free(olmoe_token_stream *view) {
    free(view->doc_start);
    free(view->doc_length);
    free(view->doc_group);
    memset(view, 0, sizeof *view);
}

int olmoe_shard_attrs(const olmoe_shard_plan *p, const char *input_sum, int64_t input_bytes,
                      int64_t max_tokens, int64_t batch, olmoe_trace_attr out[OLMOE_SHARD_MAX_ATTRS]) {
    int n = 0;
#define PUT(name, v, data) out[n++] = (olmoe_trace_attr){(name), NULL, (v), (data)}
    out[n++] = (olmoe_trace_attr){OLMOE_ATTR_INPUT_CHECKSUM, input_sum, 0, 1};
    PUT(OLMOE_ATTR_INPUT_BYTES, input_bytes, 1);
    PUT(OLMOE_ATTR_MAX_TOKENS, max_tokens, 1);
    PUT(OLMOE_ATTR_BATCH, batch, 1);
    PUT(OLMOE_ATTR_PLANNED_WINDOWS, p->w_end - p->w_begin, 0);
    if (p->count > 0) {
        PUT(OLMOE_ATTR_SHARD_INDEX, p->index, 1);
        PUT(OLMOE_ATTR_SHARD_COUNT, p->count, 1);
        PUT(OLMOE_ATTR_RUN_WINDOWS, p->run_windows, 0);
        PUT(OLMOE_ATTR_RUN_TOKENS, p->run_tokens, 0);
        PUT(OLMOE_ATTR_RUN_DOCUMENTS, p->run_documents, 0);
        PUT(OLMOE_ATTR_SHARD_WINDOW_BEGIN, p->w_begin, 0);
        PUT(OLMOE_ATTR_SHARD_WINDOW_END, p->w_end, 0);
        PUT(OLMOE_ATTR_SHARD_OFFSET, p->offset, 0);
        PUT(OLMOE_ATTR_SHARD_STORED_BEGIN, p->stored_begin, 0);
        PUT(OLMOE_ATTR_SHARD_STORED_END, p->stored_end, 0);
        PUT(OLMOE_ATTR_SHARD_DOCUMENT_BEGIN, p->doc_begin, 0);
    }
#undef PUT
    return n;
}
