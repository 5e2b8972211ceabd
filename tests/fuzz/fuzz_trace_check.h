/* fuzz_trace_check.h: one HDF5 file image through every trace reader, for
 * fuzz_trace (images it builds) and fuzz_trace_image (raw bytes). The image
 *   - is opened in memory (core driver, H5LTopen_file_image) the way
 *     olmoe_trace_open opens a path: the handle is filled by trace_load of
 *     traces/internal.h, the one internal these tests use;
 *   - is written to a scratch file for olmoe_trace_open and
 *     olmoe_trace_verify, which only take paths.
 * A trace that opens is read everywhere (every dataset, every layer, blocks
 * of rows, windows, documents, groups, the nll total) into buffers sized from
 * what the handle reports, so ASan sees any read the reported sizes do not
 * cover. The two opens must agree, and a file that does not open must have a
 * problem in verify's eyes (verify checks a superset of open's rules). */
#ifndef OLMOE_FUZZ_TRACE_CHECK_H
#define OLMOE_FUZZ_TRACE_CHECK_H

#include "fuzz.h"
#include "internal.h"

#include <hdf5_hl.h>

/* reads everything through the public API; returns 0 when every read worked */
static int trace_read_all(olmoe_trace *t) {
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    int64_t N = in->n_tokens, L = in->meta.n_layers, E = in->meta.n_experts;
    int64_t D = in->meta.hidden_size;
    FUZZ_ASSERT(N >= 0 && in->n_windows >= 0 && L >= 1 && E >= 1, "info N %lld W %lld L %lld E %lld",
                (long long)N, (long long)in->n_windows, (long long)L, (long long)E);
    if (L * E > (1 << 16) || (in->has_residuals && L * D > (1 << 16))) return 0;
    int bad = 0;
    enum { B = 5 };
    int32_t ibuf[B];
    float *lg = malloc(sizeof(float) * B * (size_t)L * (size_t)E);
    float *res = in->has_residuals ? malloc(sizeof(float) * B * (size_t)L * (size_t)D) : NULL;
    uint16_t *rb = in->has_residuals ? malloc(2 * B * (size_t)L * (size_t)D) : NULL;
    if (!lg || (in->has_residuals && (!res || !rb))) abort();
    for (int64_t s = 0; s < N; s += B) {
        int64_t c = N - s < B ? N - s : B;
        bad |= olmoe_trace_read_tokens(t, s, c, ibuf) != 0;
        bad |= olmoe_trace_read_argmax(t, s, c, ibuf) != 0;
        bad |= olmoe_trace_read_nll(t, s, c, (float *)ibuf) != 0;
        bad |= olmoe_trace_read_router_logits(t, s, c, lg) != 0;
        for (int l = 0; l < L && l < 4; l++)
            bad |= olmoe_trace_read_router_logits_layer(t, l, s, c, lg) != 0;
        if (in->has_residuals) {
            bad |= olmoe_trace_read_residual(t, s, c, res) != 0;
            bad |= olmoe_trace_read_residual_bf16(t, s, c, rb) != 0;
        }
    }
    /* out of range requests are errors, not reads */
    FUZZ_ASSERT(olmoe_trace_read_tokens(t, N, 1, ibuf) != 0, "read past N");
    FUZZ_ASSERT(olmoe_trace_read_tokens(t, -1, 1, ibuf) != 0, "read before 0");
    FUZZ_ASSERT(olmoe_trace_read_router_logits_layer(t, (int)L, 0, 0, lg) != 0, "layer L");
    if (!in->has_residuals) FUZZ_ASSERT(olmoe_trace_read_residual(t, 0, 0, lg) != 0, "residuals");
    free(lg);
    free(res);
    free(rb);

    if (in->n_windows > 0 && in->n_windows < 1000) {
        olmoe_trace_window *w = malloc(sizeof *w * (size_t)in->n_windows);
        if (!w) abort();
        bad |= olmoe_trace_read_windows(t, 0, in->n_windows, w) != 0;
        free(w);
    }
    if (in->n_documents > 0 && in->n_documents < 1000) {
        olmoe_trace_document *d = malloc(sizeof *d * (size_t)in->n_documents);
        if (!d) abort();
        bad |= olmoe_trace_read_documents(t, 0, in->n_documents, d) != 0;
        free(d);
    }
    char **names;
    int64_t ng;
    if (olmoe_trace_read_groups(t, &names, &ng) == 0) {
        for (int64_t i = 0; i < ng; i++) fuzz_touch(names[i], strlen(names[i]));
        olmoe_trace_free_groups(names, ng);
    } else {
        bad = 1;
    }
    double sum;
    int64_t scored;
    if (olmoe_trace_nll_total(t, &sum, &scored) == 0)
        FUZZ_ASSERT(scored >= 0 && scored <= N, "scored %lld of %lld", (long long)scored, (long long)N);
    else
        bad = 1;
    if (bad) FUZZ_MESSAGE_OK();
    return bad;
}

static void trace_count(void *ctx, const char *problem) {
    FUZZ_ASSERT(problem[0], "empty verify line");
    if (!fuzz_one_line(problem)) fuzz_message_finding("verify line not one line", problem);
    (*(int *)ctx)++;
}

/* the image opened in memory, as open_trace (traces/read.c) opens a path */
static olmoe_trace *trace_open_image(void *image, size_t n, const char *name) {
    olmoe_h5_init();
    olmoe_trace *t = xcalloc(1, sizeof *t);
    t->path = xstrdup(name);
    t->file = H5LTopen_file_image(image, n, 0);
    if (t->file < 0) {
        olmoe_errorf("%s: cannot open the image", name);
        trace_free(t);
        return NULL;
    }
    if (trace_load(t) != 0) {
        trace_free(t);
        return NULL;
    }
    return t;
}

static void trace_check_image(void *image, size_t n) {
    static char path[300];
    if (!path[0]) fuzz_path(path, sizeof path, "trace.h5");
    olmoe_trace *mt = trace_open_image(image, n, "image.h5");
    if (mt) {
        trace_read_all(mt);
        olmoe_trace_close(mt);
    } else {
        FUZZ_ERROR_NAMES("image.h5");
    }
    fuzz_write_file(path, image, n);
    olmoe_trace *t = olmoe_trace_open(path);
    FUZZ_ASSERT((t != NULL) == (mt != NULL), "opened from %s but not from %s",
                t ? "the file" : "memory", t ? "memory" : "the file");
    if (t) {
        trace_read_all(t);
        olmoe_trace_close(t);
    } else {
        FUZZ_ERROR_NAMES(path);
    }
    int problems = 0;
    int64_t r = olmoe_trace_verify(path, trace_count, &problems);
    FUZZ_ASSERT(r == problems, "verify returned %lld, reported %d", (long long)r, problems);
    FUZZ_ASSERT(t != NULL || r > 0, "olmoe_trace_open refuses a file verify accepts: %s",
                olmoe_error());
}

#endif
