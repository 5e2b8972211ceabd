/* windows.c: cutting a token stream into evaluation windows (see windows.h
 * for the two modes and which window stores which position). */
#include "windows.h"

#include "common.h"

#include <stdlib.h>

static void push(olmoe_window **w, int64_t *n, int64_t *cap, int64_t start, int64_t len, int64_t sf) {
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        *w = xrealloc(*w, xmul((size_t)*cap, sizeof **w));
    }
    (*w)[(*n)++] = (olmoe_window){start, len, sf};
}

int olmoe_windows_documents(const int64_t *doc_start, const int64_t *doc_length, int64_t n_docs,
                            int64_t ctx, olmoe_window **out, int64_t *n_out) {
    if (ctx < 1) return olmoe_errorf("ctx %lld must be positive", (long long)ctx);
    olmoe_window *w = NULL;
    int64_t n = 0, cap = 0, prev_end = 0;
    for (int64_t d = 0; d < n_docs; d++) {
        if (doc_length[d] < 0 || doc_start[d] < prev_end) {
            free(w);
            return olmoe_errorf("document %lld (start %lld, length %lld) overlaps the one before it "
                                "or has a negative length",
                                (long long)d, (long long)doc_start[d], (long long)doc_length[d]);
        }
        for (int64_t at = 0; at < doc_length[d]; at += ctx) {
            int64_t len = doc_length[d] - at < ctx ? doc_length[d] - at : ctx;
            push(&w, &n, &cap, doc_start[d] + at, len, 0);
        }
        prev_end = doc_start[d] + doc_length[d];
    }
    *out = w;
    *n_out = n;
    return 0;
}

int olmoe_windows_stride(int64_t n_tokens, int64_t ctx, int64_t stride, olmoe_window **out,
                         int64_t *n_out) {
    if (ctx < 2) return olmoe_errorf("ctx %lld: sliding windows need ctx >= 2", (long long)ctx);
    if (stride < 1 || stride >= ctx)
        return olmoe_errorf("stride %lld must be in [1, ctx) = [1, %lld)", (long long)stride,
                            (long long)ctx);
    olmoe_window *w = NULL;
    int64_t n = 0, cap = 0, prev_end = 0;
    /* transformers' loop: begin += stride until a window reaches the end;
     * each later window scores the tokens from prev_end on, i.e. the
     * positions from prev_end - 1 */
    for (int64_t begin = 0; begin < n_tokens; begin += stride) {
        int64_t end = begin + ctx < n_tokens ? begin + ctx : n_tokens;
        push(&w, &n, &cap, begin, end - begin, n == 0 ? 0 : prev_end - 1 - begin);
        prev_end = end;
        if (end == n_tokens) break;
    }
    *out = w;
    *n_out = n;
    return 0;
}

int64_t olmoe_windows_stored_end(const olmoe_window *w, int64_t n, int64_t i) {
    if (i + 1 < n && w[i + 1].start + w[i + 1].stored_from < w[i].start + w[i].length)
        return w[i + 1].start + w[i + 1].stored_from;
    return w[i].start + w[i].length;
}
