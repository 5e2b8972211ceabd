/* analyze_src.c: a trace read in row chunks and routed by one policy, the
 * input of every analysis. Memory is a few chunk buffers plus the document
 * index (one summary per block of documents), independent of the trace's
 * length.
 *
 * Document groups are painted per chunk from blocks of /documents whose
 * [min start, max end) range meets the chunk; documents in stream order (what
 * olmoe-capture writes) touch one or two blocks per chunk. A position inside
 * several documents gets the group of the last one in /documents. */
#include "common.h"
#include "analyze.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define DOC_BLOCK 4096

typedef struct {
    int64_t n_docs, n_blocks;
    int64_t *lo, *hi;                /* [n_blocks] min start, max end of each block */
    int64_t cached;                  /* block held in buf, -1 none */
    olmoe_trace_document *buf;       /* [DOC_BLOCK] */
} doc_index;

int olmoe_analyze_parse_layers(const char *s, int L, unsigned char *want) {
    if (olmoe_parse_index_list(s, L, want) == 0) return 0;
    return olmoe_errorf("layers '%s': %s (the trace has %d layers)", s, olmoe_error(), L);
}

static void doc_index_free(doc_index *d) {
    if (!d) return;
    free(d->lo);
    free(d->hi);
    free(d->buf);
    free(d);
}

static int doc_load(olmoe_analyze_src *s, doc_index *d, int64_t b) {
    if (d->cached == b) return 0;
    int64_t first = b * DOC_BLOCK, n = d->n_docs - first < DOC_BLOCK ? d->n_docs - first : DOC_BLOCK;
    if (olmoe_trace_read_documents(s->trace, first, n, d->buf) != 0) return -1;
    for (int64_t i = 0; i < n; i++)
        if (d->buf[i].group < -1 || d->buf[i].group >= s->n_groups || d->buf[i].start < 0 ||
            d->buf[i].length < 0)
            return olmoe_errorf("%s: /documents row %lld is malformed (group %d of %lld, start "
                                "%lld, length %lld): run olmoe-traces verify",
                                s->path, (long long)(first + i), d->buf[i].group,
                                (long long)s->n_groups, (long long)d->buf[i].start,
                                (long long)d->buf[i].length);
    d->cached = b;
    return 0;
}

static int doc_index_build(olmoe_analyze_src *s) {
    doc_index *d = xcalloc(1, sizeof *d);
    s->docs = d;
    d->n_docs = s->info->n_documents;
    d->n_blocks = (d->n_docs + DOC_BLOCK - 1) / DOC_BLOCK;
    d->lo = xmalloc(((size_t)d->n_blocks + 1) * sizeof *d->lo);
    d->hi = xmalloc(((size_t)d->n_blocks + 1) * sizeof *d->hi);
    d->buf = xmalloc(DOC_BLOCK * sizeof *d->buf);
    d->cached = -1;
    for (int64_t b = 0; b < d->n_blocks; b++) {
        if (doc_load(s, d, b) != 0) return -1;
        int64_t n = d->n_docs - b * DOC_BLOCK < DOC_BLOCK ? d->n_docs - b * DOC_BLOCK : DOC_BLOCK;
        d->lo[b] = INT64_MAX, d->hi[b] = INT64_MIN;
        for (int64_t i = 0; i < n; i++) {
            if (d->buf[i].start < d->lo[b]) d->lo[b] = d->buf[i].start;
            if (d->buf[i].start + d->buf[i].length > d->hi[b])
                d->hi[b] = d->buf[i].start + d->buf[i].length;
        }
    }
    return 0;
}

/* group[0..n) of stream rows [start, start + n) */
static int doc_paint(olmoe_analyze_src *s, int64_t start, int64_t n, int32_t *group) {
    doc_index *d = s->docs;
    for (int64_t i = 0; i < n; i++) group[i] = -1;
    for (int64_t b = 0; b < d->n_blocks; b++) {
        if (d->lo[b] >= start + n || d->hi[b] <= start) continue;
        if (doc_load(s, d, b) != 0) return -1;
        int64_t m = d->n_docs - b * DOC_BLOCK < DOC_BLOCK ? d->n_docs - b * DOC_BLOCK : DOC_BLOCK;
        for (int64_t i = 0; i < m; i++) {
            const olmoe_trace_document *x = &d->buf[i];
            int64_t a = x->start > start ? x->start : start;
            int64_t e = x->start + x->length < start + n ? x->start + x->length : start + n;
            for (int64_t p = a; p < e; p++) group[p - start] = x->group;
        }
    }
    return 0;
}

/* pvalue=empirical: one pass over the trace (or over opts.empirical_path's
 * trace) to collect each expert's logits */
static int build_empirical(olmoe_analyze_src *s) {
    olmoe_trace *t = s->trace;
    int64_t N = s->n_tokens;
    const char *path = s->path;
    if (s->opts.empirical_path) {
        path = s->opts.empirical_path;
        if (!(t = olmoe_trace_open(path))) return olmoe_error_prefix("--empirical");
        const olmoe_trace_info *in = olmoe_trace_info_of(t);
        N = in->n_tokens;
        if (in->meta.n_layers != s->L || in->meta.n_experts != s->E) {
            olmoe_trace_close(t);
            return olmoe_errorf("--empirical %s: a trace of %d layers x %d experts, %s has %d x %d",
                                path, in->meta.n_layers, in->meta.n_experts, s->path, s->L, s->E);
        }
    }
    s->emp = xcalloc(1, sizeof *s->emp);
    int rc = olmoe_policy_empirical_init(s->emp, s->L, s->E, N, s->opts.empirical_max);
    if (rc != 0) olmoe_error_prefix("%s", path);
    for (int64_t st = 0; rc == 0 && st < N; st += s->chunk_rows) {
        int64_t n = N - st < s->chunk_rows ? N - st : s->chunk_rows;
        rc = olmoe_trace_read_router_logits(t, st, n, s->logits);
        if (rc == 0) olmoe_policy_empirical_add(s->emp, st, s->logits, n);
    }
    if (rc == 0 && olmoe_policy_empirical_finish(s->emp) != 0) rc = olmoe_error_prefix("%s", path);
    if (t != s->trace) olmoe_trace_close(t);
    return rc;
}

static int bind_policy(olmoe_analyze_src *s) {
    const olmoe_trace_meta *m = &s->info->meta;
    char spec[64];
    const char *sp = s->opts.policy;
    if (!sp) {
        snprintf(spec, sizeof spec, "topk(k=%d)", m->top_k);
        sp = spec;
    }
    if (olmoe_policy_parse(sp, &s->policy) != 0) return olmoe_error_prefix("--policy '%s'", sp);
    if (olmoe_policy_needs_calibration(&s->policy)) s->policy.calib_path = s->opts.beta_trace;
    olmoe_policy_model pm = {.n_layers = s->L, .n_experts = s->E, .norm_topk_prob = m->norm_topk_prob};
    if (olmoe_policy_needs(&s->policy, OLMOE_PVALUE_KDE)) {
        if (!s->opts.null_path)
            return olmoe_errorf("policy %s needs a null distribution: give --kde FILE (from "
                                "olmoe-kde fit)", s->policy.id);
        s->null = xcalloc(1, sizeof *s->null);
        if (olmoe_kde_read(s->opts.null_path, s->null) != 0) return -1;
        if (s->null->n_layers != s->L || s->null->n_experts != s->E)
            return olmoe_errorf("%s: null distribution of %d layers x %d experts, the trace %s has "
                                "%d x %d", s->opts.null_path, s->null->n_layers,
                                s->null->n_experts, s->path, s->L, s->E);
        for (int i = 0; i < s->n_layers; i++)
            if (!olmoe_kde_null_layer(s->null, s->layers[i]))
                return olmoe_errorf("%s: no fit for layer %d", s->opts.null_path, s->layers[i]);
        s->cdf = xcalloc(1, sizeof *s->cdf);
        if (olmoe_kde_cdf_init(s->cdf, s->null, s->L) != 0)
            return olmoe_error_prefix("%s", s->opts.null_path);
        pm.null = s->cdf;
    }
    if (olmoe_policy_needs(&s->policy, OLMOE_PVALUE_EMPIRICAL)) {
        if (build_empirical(s) != 0) return -1;
        pm.emp = s->emp;
    }
    if (olmoe_policy_bind(&s->policy, &pm) != 0) return olmoe_error_prefix("%s", s->path);
    s->K = olmoe_policy_max_experts(&s->policy);
    if (s->K > s->E) s->K = s->E;
    return 0;
}

olmoe_analyze_src *olmoe_analyze_src_open(const char *path, const olmoe_analyze_opts *o) {
    olmoe_analyze_src *s = xcalloc(1, sizeof *s);
    s->path = xstrdup(path);
    s->opts = *o;
    s->trace = olmoe_trace_open(path);
    if (!s->trace) goto fail;
    s->info = olmoe_trace_info_of(s->trace);
    s->L = s->info->meta.n_layers;
    s->E = s->info->meta.n_experts;
    if (s->E > OLMOE_POLICY_MAX_E) {
        olmoe_errorf("%s: %d experts, at most %d are supported", path, s->E, OLMOE_POLICY_MAX_E);
        goto fail;
    }
    s->want = xmalloc((size_t)s->L);
    if (olmoe_analyze_parse_layers(o->layers, s->L, s->want) != 0) {
        olmoe_error_prefix("%s", path);
        goto fail;
    }
    s->layers = xmalloc((size_t)s->L * sizeof *s->layers);
    for (int l = 0; l < s->L; l++)
        if (s->want[l]) s->layers[s->n_layers++] = l;
    s->n_tokens = s->info->n_tokens;
    if (o->max_tokens > 0 && o->max_tokens < s->n_tokens) s->n_tokens = o->max_tokens;
    if (s->n_tokens < 1) {
        olmoe_errorf("%s: the trace holds no tokens", path);
        goto fail;
    }
    s->chunk_rows = o->chunk_rows > 0 ? o->chunk_rows : OLMOE_ANALYZE_CHUNK_ROWS;
    size_t rows = (size_t)s->chunk_rows, LE = xmul((size_t)s->L, (size_t)s->E);
    s->tokens = xmalloc(rows * sizeof *s->tokens);
    s->logits = xmalloc(xmul(xmul(rows, LE), sizeof *s->logits));
    s->n_sel = xmalloc(xmul(rows, (size_t)s->L));
    s->group = xmalloc(rows * sizeof *s->group);
    if (bind_policy(s) != 0) goto fail;
    s->sel = xmalloc(xmul(xmul(rows, (size_t)s->L), (size_t)s->K * sizeof *s->sel));
    if (o->want_groups) {
        if (s->info->n_documents == 0 || s->info->n_groups == 0) {
            olmoe_errorf("%s: the trace has no document groups (/documents and /groups; capture "
                         "a corpus with --group-field to get them)", path);
            goto fail;
        }
        if (olmoe_trace_read_groups(s->trace, &s->group_names, &s->n_groups) != 0) goto fail;
        if (doc_index_build(s) != 0) goto fail;
    }
    return s;
fail:
    olmoe_analyze_src_close(s);
    return NULL;
}

void olmoe_analyze_src_rewind(olmoe_analyze_src *s) { s->next = 0; }

int olmoe_analyze_src_next(olmoe_analyze_src *s, olmoe_analyze_chunk *c) {
    if (s->next >= s->n_tokens) return 0;
    double t0 = olmoe_now();
    int64_t st = s->next, n = s->n_tokens - st < s->chunk_rows ? s->n_tokens - st : s->chunk_rows;
    if (st == 0) olmoe_progress_begin(&s->prog, "tokens", (double)s->n_tokens);
    if (olmoe_trace_read_tokens(s->trace, st, n, s->tokens) != 0 ||
        olmoe_trace_read_router_logits(s->trace, st, n, s->logits) != 0)
        return -1;
    const int L = s->L, E = s->E, K = s->K;
    int ex[OLMOE_POLICY_MAX_E];
    for (int64_t r = 0; r < n; r++) {
        for (int l = 0; l < L; l++) {
            size_t rl = (size_t)r * L + (size_t)l;
            if (!s->want[l]) {
                s->n_sel[rl] = 0;
                continue;
            }
            int k = olmoe_policy_route_at(&s->policy, l, st + r, s->logits + rl * E, E, ex, NULL);
            if (k < 1 || k > K || k > 255)
                return olmoe_errorf("%s: policy %s selected %d experts at position %lld, layer %d "
                                    "(a bug)", s->path, s->policy.id, k, (long long)(st + r), l);
            s->n_sel[rl] = (uint8_t)k;
            int16_t *dst = s->sel + rl * K;
            for (int i = 0; i < k; i++) dst[i] = (int16_t)ex[i];
        }
    }
    if (s->opts.want_groups && doc_paint(s, st, n, s->group) != 0) return -1;
    c->start = st;
    c->n = n;
    c->tokens = s->tokens;
    c->logits = s->opts.want_logits ? s->logits : NULL;
    c->n_sel = s->n_sel;
    c->sel = s->sel;
    c->group = s->opts.want_groups ? s->group : NULL;
    s->next = st + n;
    s->seconds += olmoe_now() - t0;
    olmoe_progress_step(&s->prog, (double)s->next);
    if (s->next == s->n_tokens) olmoe_progress_end(&s->prog);
    return 1;
}

void olmoe_analyze_src_close(olmoe_analyze_src *s) {
    if (!s) return;
    olmoe_trace_close(s->trace);
    if (s->cdf) olmoe_kde_cdf_free(s->cdf);
    if (s->null) olmoe_kde_null_free(s->null);
    if (s->emp) olmoe_policy_empirical_free(s->emp);
    free(s->cdf);
    free(s->null);
    free(s->emp);
    doc_index_free(s->docs);
    olmoe_trace_free_groups(s->group_names, s->n_groups);
    free(s->want);
    free(s->layers);
    free(s->tokens);
    free(s->logits);
    free(s->n_sel);
    free(s->sel);
    free(s->group);
    free(s->path);
    free(s);
}

double olmoe_analyze_peak_rss(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (double)ru.ru_maxrss * 1024.0; /* Linux: KiB */
}
