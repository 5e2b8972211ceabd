/* merge_copy.c: olmoe-traces merge --copy: the merged virtual trace read
 * through and written as a standard, self-contained trace (the layout an
 * unsharded capture writes), so the shards can be deleted. */
#include "merge_internal.h"

#include <stdlib.h>
#include <string.h>

#define COPY_BYTES ((size_t)64 << 20) /* rows per block: about this much */

static int copy_documents(olmoe_trace *v, olmoe_trace *t) {
    char **names = NULL;
    int64_t ng = 0;
    if (olmoe_trace_read_groups(v, &names, &ng) != 0) return -1;
    int r = olmoe_trace_add_groups(t, (const char *const *)names, ng);
    olmoe_trace_free_groups(names, ng);
    int64_t nd = olmoe_trace_info_of(v)->n_documents;
    enum { B = 65536 };
    olmoe_trace_document *d = xmalloc(B * sizeof *d);
    for (int64_t s = 0; s < nd && r == 0; s += B) {
        int64_t c = nd - s < B ? nd - s : B;
        if (olmoe_trace_read_documents(v, s, c, d) != 0 || olmoe_trace_add_documents(t, d, c) != 0)
            r = -1;
    }
    free(d);
    return r;
}

static int copy_windows(olmoe_trace *v, olmoe_trace *t) {
    const olmoe_trace_info *in = olmoe_trace_info_of(v);
    size_t le = (size_t)in->meta.n_layers * (size_t)in->meta.n_experts;
    size_t ld = in->has_residuals ? (size_t)in->meta.n_layers * (size_t)in->meta.hidden_size : 0;
    int64_t budget = (int64_t)(COPY_BYTES / (12 + 4 * le + 2 * ld)) + 1, cap = 0;
    enum { WB = 4096 };
    olmoe_trace_window *w = xmalloc(WB * sizeof *w);
    int32_t *tok = NULL, *am = NULL;
    float *nll = NULL, *lg = NULL;
    uint16_t *res = NULL;
    int rc = -1;
    for (int64_t w0 = 0; w0 < in->n_windows; w0 += WB) {
        int64_t nw = in->n_windows - w0 < WB ? in->n_windows - w0 : WB;
        if (olmoe_trace_read_windows(v, w0, nw, w) != 0) goto out;
        for (int64_t k = 0; k < nw;) {
            int64_t p0 = w[k].start + w[k].stored_from, rows = 0, nb = 0;
            while (k + nb < nw) {
                int64_t r = w[k + nb].stored_end - w[k + nb].start - w[k + nb].stored_from;
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
            if (olmoe_trace_read_tokens(v, p0, rows, tok) || olmoe_trace_read_argmax(v, p0, rows, am) ||
                olmoe_trace_read_nll(v, p0, rows, nll) ||
                olmoe_trace_read_router_logits(v, p0, rows, lg) ||
                (ld && olmoe_trace_read_residual_bf16(v, p0, rows, res)))
                goto out;
            /* 16-bit logits -> float -> the same 16 bits: exact */
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

int merge_copy(const char *vds, const char *path, const olmoe_trace_attr *extra, int n_extra) {
    olmoe_trace *v = olmoe_trace_open(vds), *t = NULL;
    if (!v) return -1;
    olmoe_trace_meta m = olmoe_trace_info_of(v)->meta;
    m.created = NULL; /* now */
    m.chunk_rows = 0;
    m.extra = extra;
    m.n_extra = n_extra;
    int rc = -1;
    if (!(t = olmoe_trace_create(path, &m))) goto out;
    if (copy_documents(v, t) != 0 || copy_windows(v, t) != 0) {
        olmoe_trace_abort(t);
        goto out;
    }
    rc = olmoe_trace_close(t);
out:
    olmoe_trace_close(v);
    return rc;
}
