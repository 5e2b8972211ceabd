/* copy.c: a trace's groups, documents, windows and rows copied into a new
 * trace, in blocks of about COPY_BYTES; resume (the committed part of a
 * killed capture) and merge --copy (a virtual trace made standalone) share it. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define COPY_BYTES ((size_t)64 << 20) /* rows per copy block: about this much */

int trace_copy_documents(olmoe_trace *old, olmoe_trace *t) {
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

int trace_copy_windows(olmoe_trace *old, olmoe_trace *t) {
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
