/* test_traces_synth.h: a synthetic capture for the trace tests. Documents of
 * chosen lengths are cut into windows the way a capture does (ctx, stride),
 * and every value is a pure function of (seed, position, index), so a test
 * can regenerate what a killed writer had written. */
#ifndef TEST_TRACES_SYNTH_H
#define TEST_TRACES_SYNTH_H

#include "check.h" /* CHECK, used by check_contents */
#include "common.h"
#include "traces.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    int L, E, D, V, ctx, stride, res;
    olmoe_trace_dtype dt;
    unsigned seed;
    int n_docs;
    int64_t doc_len[8];
    int32_t doc_group[8];
    /* generated */
    int64_t N, W;
    olmoe_trace_window *w; /* [W] */
    int32_t *tokens;       /* [N] */
    int32_t *argmax;       /* [N] */
    float *nll;            /* [N] */
    float *logits;         /* [N, L, E] */
    float *resid;          /* [N, L, D] */
} synth;

static uint32_t synth_hash(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t h = a * 0x9e3779b1u ^ (b + 0x7f4a7c15u) * 0x85ebca6bu ^ (c + 0x165667b1u) * 0xc2b2ae35u;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    h *= 0x297a2d39u;
    h ^= h >> 15;
    return h;
}

static float synth_unit(uint32_t h) { return (float)(h >> 8) / 16777216.0f; }

static void synth_make(synth *s) {
    int64_t n = 0;
    for (int d = 0; d < s->n_docs; d++) n += s->doc_len[d];
    s->N = n;
    s->w = xcalloc((size_t)n + 1, sizeof *s->w);
    s->W = 0;
    /* per document; with a stride, windows start every S tokens and each later
     * one stores from the previous one's last position on (the HF method: it
     * scores the tokens from the previous end on), cutting the previous short */
    int64_t ds = 0;
    for (int d = 0; d < s->n_docs; d++) {
        int64_t de = ds + s->doc_len[d], start = ds, prev_end = ds;
        int64_t first = s->W;
        for (;;) {
            int64_t end = start + s->ctx < de ? start + s->ctx : de;
            int64_t st = s->W == first ? ds : (s->stride ? prev_end - 1 : start);
            if (s->W > first) s->w[s->W - 1].stored_end = st;
            s->w[s->W++] = (olmoe_trace_window){start, end - start, st - start, end};
            prev_end = end;
            if (end == de) break;
            start += s->stride ? s->stride : s->ctx;
        }
        ds = de;
    }
    s->tokens = xmalloc((size_t)n * sizeof *s->tokens);
    s->argmax = xmalloc((size_t)n * sizeof *s->argmax);
    s->nll = xmalloc((size_t)n * sizeof *s->nll);
    s->logits = xmalloc((size_t)n * s->L * s->E * sizeof *s->logits);
    s->resid = xmalloc((size_t)n * s->L * s->D * sizeof *s->resid);
    for (int64_t p = 0; p < n; p++) {
        s->tokens[p] = (int32_t)(synth_hash(s->seed, (uint32_t)p, 1) % (uint32_t)s->V);
        s->argmax[p] = (int32_t)(synth_hash(s->seed, (uint32_t)p, 2) % (uint32_t)s->V);
        s->nll[p] = 12.0f * synth_unit(synth_hash(s->seed, (uint32_t)p, 3));
        for (int i = 0; i < s->L * s->E; i++)
            s->logits[p * s->L * s->E + i] =
                20.0f * synth_unit(synth_hash(s->seed, (uint32_t)p, 100 + (uint32_t)i)) - 10.0f;
        for (int i = 0; i < s->L * s->D; i++)
            s->resid[p * s->L * s->D + i] =
                4.0f * synth_unit(synth_hash(s->seed, (uint32_t)p, 5000 + (uint32_t)i)) - 2.0f;
    }
    for (int64_t k = 0; k < s->W; k++) /* only where the window stores its last position */
        if (s->w[k].stored_end == s->w[k].start + s->w[k].length) s->nll[s->w[k].stored_end - 1] = NAN;
}

static void synth_free(synth *s) {
    free(s->w);
    free(s->tokens);
    free(s->argmax);
    free(s->nll);
    free(s->logits);
    free(s->resid);
}

static olmoe_trace_meta synth_meta(const synth *s) {
    static char cfg[256];
    snprintf(cfg, sizeof cfg,
             "{\"model_type\": \"olmoe\", \"num_hidden_layers\": %d, \"num_experts\": %d, "
             "\"hidden_size\": %d, \"vocab_size\": %d, \"num_experts_per_tok\": 2}",
             s->L, s->E, s->D, s->V);
    olmoe_trace_meta m = {.command = "test_traces synth",
                          .config_json = cfg,
                          .model_checksum = "0123456789abcdef0123456789abcdef",
                          .tokenizer_checksum = "",
                          .model_dir = "models/synth",
                          .policy = "topk(k=2,norm=model)",
                          .device = "cpu",
                          .compute_dtype = "float32",
                          .corpus = "synth.txt",
                          .n_layers = s->L,
                          .n_experts = s->E,
                          .hidden_size = s->D,
                          .vocab_size = s->V,
                          .top_k = 2,
                          .norm_topk_prob = 0,
                          .ctx = s->ctx,
                          .stride = s->stride,
                          .logits_dtype = s->dt,
                          .save_residuals = s->res,
                          .chunk_rows = 8};
    return m;
}

/* rows from window k on (stored rows are contiguous) */
static olmoe_trace_rows synth_rows(const synth *s, int64_t k) {
    int64_t p = s->w[k].start + s->w[k].stored_from;
    olmoe_trace_rows r = {.tokens = s->tokens + p,
                          .router_logits = s->logits + p * s->L * s->E,
                          .nll = s->nll + p,
                          .argmax = s->argmax + p,
                          .residual = s->res ? s->resid + p * s->L * s->D : NULL};
    return r;
}

/* appends windows [from, to): singles and batches of 3 mixed; after each
 * call that returned, writes the committed window count to notify_fd */
static int synth_append(const synth *s, olmoe_trace *t, int64_t from, int64_t to, int notify_fd) {
    for (int64_t k = from; k < to;) {
        int64_t nb = (k % 4 == 1 && k + 3 <= to) ? 3 : 1;
        olmoe_trace_rows r = synth_rows(s, k);
        if (olmoe_trace_append_windows(t, nb, &s->w[k], &r) != 0) return -1;
        k += nb;
        if (notify_fd >= 0) {
            int64_t c = k;
            if (write(notify_fd, &c, sizeof c) != (ssize_t)sizeof c) return -1;
        }
    }
    return 0;
}

/* the groups and documents, as a capture adds them before the windows
 * (and again when resuming a trace killed before it had them) */
static int synth_add_docs(const synth *s, olmoe_trace *t) {
    const char *groups[2] = {"news", "fiction"};
    olmoe_trace_document docs[8];
    int64_t ds = 0;
    for (int d = 0; d < s->n_docs; d++) {
        docs[d] = (olmoe_trace_document){ds, s->doc_len[d], s->doc_group[d]};
        ds += s->doc_len[d];
    }
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    if (in->n_groups == 0 && olmoe_trace_add_groups(t, groups, 2)) return -1;
    if (in->n_documents == 0 && olmoe_trace_add_documents(t, docs, s->n_docs)) return -1;
    return 0;
}

/* create, groups, documents, windows [0, upto), then close (or not: the
 * caller may _exit to simulate a kill); returns the open handle if !close */
static olmoe_trace *synth_write(const synth *s, const char *path, int64_t upto, int close_it,
                                int notify_fd) {
    olmoe_trace_meta m = synth_meta(s);
    olmoe_trace *t = olmoe_trace_create(path, &m);
    if (!t) return NULL;
    if (synth_add_docs(s, t) || synth_append(s, t, 0, upto < 1 ? upto : 1, notify_fd))
        goto fail;
    const char *late[1] = {"late"};
    if (olmoe_trace_add_groups(t, late, 1) || synth_append(s, t, upto < 1 ? upto : 1, upto, notify_fd))
        goto fail;
    if (!close_it) return t;
    if (olmoe_trace_close(t) != 0) return NULL;
    return (olmoe_trace *)1; /* success marker, not a handle */
fail:
    olmoe_trace_abort(t);
    return NULL;
}

/* a small default: 3 layers, 5 experts, hidden 4, stride windows */
static void synth_default(synth *s, olmoe_trace_dtype dt, int res) {
    memset(s, 0, sizeof *s);
    s->L = 3, s->E = 5, s->D = 4, s->V = 50, s->ctx = 16, s->stride = 8, s->res = res, s->dt = dt;
    s->seed = 7;
    s->n_docs = 4;
    s->doc_len[0] = 40, s->doc_len[1] = 7, s->doc_len[2] = 16, s->doc_len[3] = 1;
    s->doc_group[0] = 0, s->doc_group[1] = 1, s->doc_group[2] = -1, s->doc_group[3] = 0;
    synth_make(s);
}

static float stored(olmoe_trace_dtype dt, float x) {
    if (dt == OLMOE_DTYPE_BF16) return olmoe_bf16_to_f32(olmoe_bf16_from_f32(x));
    if (dt == OLMOE_DTYPE_F16) return olmoe_f16_to_f32(olmoe_f16_from_f32(x));
    return x;
}

/* every dataset of the file at path equals the synthetic arrays (rounded as
 * the dtype says), over windows [0, W) */
static void check_contents(const synth *s, const char *path, int64_t W) {
    olmoe_trace *t = olmoe_trace_open(path);
    CHECK(t != NULL, "open: %s", olmoe_error());
    if (!t) return;
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    int64_t N = W ? s->w[W - 1].stored_end : 0;
    CHECK(in->n_tokens == N && in->n_windows == W, "N %lld (want %lld), W %lld (want %lld)",
          (long long)in->n_tokens, (long long)N, (long long)in->n_windows, (long long)W);
    CHECK(in->meta.logits_dtype == s->dt && in->has_residuals == s->res, "dtype/residuals");
    CHECK(in->meta.n_layers == s->L && in->meta.n_experts == s->E && in->meta.vocab_size == s->V &&
          in->meta.ctx == s->ctx && in->meta.stride == s->stride && in->meta.chunk_rows == 8,
          "sizes");
    CHECK(strcmp(in->meta.policy, "topk(k=2,norm=model)") == 0 && strcmp(in->meta.device, "cpu") == 0 &&
          strcmp(in->meta.model_dir, "models/synth") == 0 && strcmp(in->meta.tool_version, OLMOE_VERSION) == 0,
          "strings");
    size_t le = (size_t)s->L * s->E, ld = (size_t)s->L * s->D;
    int32_t *ti = xmalloc((size_t)(N + 1) * 4);
    float *tf = xmalloc((size_t)(N + 1) * 4), *lg = xmalloc((size_t)(N + 1) * le * 4);
    CHECK(olmoe_trace_read_tokens(t, 0, N, ti) == 0 && memcmp(ti, s->tokens, (size_t)N * 4) == 0, "tokens");
    CHECK(olmoe_trace_read_argmax(t, 0, N, ti) == 0 && memcmp(ti, s->argmax, (size_t)N * 4) == 0, "argmax");
    CHECK(olmoe_trace_read_nll(t, 0, N, tf) == 0, "nll");
    for (int64_t p = 0; p < N; p++)
        CHECK(isnan(s->nll[p]) ? isnan(tf[p]) : tf[p] == s->nll[p], "nll %lld", (long long)p);
    CHECK(olmoe_trace_read_router_logits(t, 0, N, lg) == 0, "logits: %s", olmoe_error());
    int bad = 0;
    for (size_t i = 0; i < (size_t)N * le; i++)
        if (lg[i] != stored(s->dt, s->logits[i]) && bad++ < 3)
            CHECK(0, "logit %zu: %a vs %a", i, lg[i], stored(s->dt, s->logits[i]));
    /* an unaligned block and one layer */
    if (N > 20) {
        CHECK(olmoe_trace_read_router_logits(t, 5, 11, lg) == 0, "block");
        for (size_t i = 0; i < 11 * le; i++)
            if (lg[i] != stored(s->dt, s->logits[5 * le + i]) && bad++ < 3) CHECK(0, "block %zu", i);
        CHECK(olmoe_trace_read_router_logits_layer(t, 2, 3, 17, lg) == 0, "layer");
        for (int64_t p = 0; p < 17; p++)
            for (int e = 0; e < s->E; e++)
                if (lg[p * s->E + e] != stored(s->dt, s->logits[(size_t)(3 + p) * le + 2 * (size_t)s->E + (size_t)e]) &&
                    bad++ < 3)
                    CHECK(0, "layer 2 position %lld expert %d", (long long)(3 + p), e);
    }
    if (s->res) {
        float *r = xmalloc((size_t)(N + 1) * ld * 4);
        uint16_t *rb = xmalloc((size_t)(N + 1) * ld * 2);
        CHECK(olmoe_trace_read_residual(t, 0, N, r) == 0, "residual: %s", olmoe_error());
        CHECK(olmoe_trace_read_residual_bf16(t, 0, N, rb) == 0, "residual bf16");
        for (size_t i = 0; i < (size_t)N * ld; i++) {
            if (r[i] != olmoe_bf16_to_f32(olmoe_bf16_from_f32(s->resid[i])) && bad++ < 3)
                CHECK(0, "residual %zu", i);
            if (rb[i] != olmoe_bf16_from_f32(s->resid[i]) && bad++ < 3) CHECK(0, "residual bits %zu", i);
        }
        free(r);
        free(rb);
    } else {
        CHECK(olmoe_trace_read_residual(t, 0, 1, tf) != 0 &&
              strstr(olmoe_error(), "without --save-residuals"), "no residuals: %s", olmoe_error());
    }
    olmoe_trace_window *w = xmalloc((size_t)(W + 1) * sizeof *w);
    CHECK(olmoe_trace_read_windows(t, 0, W, w) == 0 && memcmp(w, s->w, (size_t)W * sizeof *w) == 0,
          "windows");
    free(w);
    olmoe_trace_document docs[8];
    if (in->n_documents == 0 && !in->complete) goto skip_docs; /* killed before they were added */
    CHECK(in->n_documents == s->n_docs, "documents %lld", (long long)in->n_documents);
    CHECK(olmoe_trace_read_documents(t, 0, s->n_docs, docs) == 0, "documents: %s", olmoe_error());
    int64_t ds = 0;
    for (int d = 0; d < s->n_docs; d++) {
        CHECK(docs[d].start == ds && docs[d].length == s->doc_len[d] && docs[d].group == s->doc_group[d],
              "document %d", d);
        ds += s->doc_len[d];
    }
skip_docs:
    CHECK(olmoe_trace_read_tokens(t, N - 1, 2, ti) != 0 && strstr(olmoe_error(), "outside"),
          "reading past N fails: %s", olmoe_error());
    free(ti);
    free(tf);
    free(lg);
    olmoe_trace_close(t);
}

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    const char *d = getenv("TMPDIR");
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/olmoe-tt-%d-%s", d ? d : "/tmp", (int)getpid(), name);
    return buf[k];
}

#endif
