/* stats.c: counting what policies do to a trace's router logits (stats.h has
 * the definitions). One pass over the trace in chunks of tokens; per chunk
 * the tokens' document groups and each row's largest logit are worked out
 * once, every policy then routes every token-layer of the chunk, and the
 * baseline is asked only about the experts the policies chose. */
#include "common.h"
#include "stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int olmoe_stats_init(olmoe_stats *st, olmoe_trace *t, olmoe_policy_set *set) {
    memset(st, 0, sizeof *st);
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    int L = in->meta.n_layers, E = in->meta.n_experts;
    if (in->meta.top_k < 1 || in->meta.top_k > E)
        return olmoe_errorf("%s: top_k = %d is not in 1..%d", olmoe_trace_path(t), in->meta.top_k, E);
    st->n_layers = L;
    st->n_experts = E;
    st->top_k = in->meta.top_k;
    char **names = NULL;
    int64_t ng = 0;
    if (in->n_documents > 0 && in->n_groups > 0 && olmoe_trace_read_groups(t, &names, &ng) != 0)
        return -1;
    st->group_names = names;
    st->n_scopes = 1 + (int)ng;
    st->n_policies = set->n;
    st->pol = xcalloc((size_t)set->n, sizeof *st->pol);
    size_t S = (size_t)st->n_scopes;
    for (int i = 0; i < set->n; i++) {
        olmoe_stats_policy *p = &st->pol[i];
        p->policy = &set->items[i];
        if (!p->policy->bound) return olmoe_errorf("%s: not bound", p->policy->id);
        olmoe_policy_k_range(p->policy, &p->min_k, &p->max_k);
        p->k_hist = xcalloc(xmul(S * L, (size_t)E + 1), sizeof *p->k_hist);
        p->load = xcalloc(xmul(S * L, (size_t)E), sizeof *p->load);
        p->overlap = xcalloc(S * L, sizeof *p->overlap);
        p->precision = xcalloc(S * L, sizeof *p->precision);
    }
    return 0;
}

void olmoe_stats_free(olmoe_stats *st) {
    for (int i = 0; i < st->n_policies; i++) {
        free(st->pol[i].k_hist);
        free(st->pol[i].load);
        free(st->pol[i].overlap);
        free(st->pol[i].precision);
    }
    free(st->pol);
    olmoe_trace_free_groups(st->group_names, st->n_scopes - 1);
    memset(st, 0, sizeof *st);
}

/* ---- documents -> group of each token of a chunk ---- */

static int cmp_doc(const void *a, const void *b) {
    const olmoe_trace_document *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

typedef struct {
    olmoe_trace_document *docs; /* sorted by start */
    int64_t n, at;
} doc_cursor;

/* grp[0..n) = group of tokens [s, s + n), -1 outside any grouped document;
 * chunks come in increasing s, so one cursor walks the documents once */
static void groups_of(doc_cursor *dc, int64_t s, int64_t n, int n_groups, int *grp) {
    for (int64_t i = 0; i < n; i++) grp[i] = -1;
    while (dc->at < dc->n && dc->docs[dc->at].start + dc->docs[dc->at].length <= s) dc->at++;
    for (int64_t d = dc->at; d < dc->n && dc->docs[d].start < s + n; d++) {
        const olmoe_trace_document *doc = &dc->docs[d];
        if (doc->group < 0 || doc->group >= n_groups) continue;
        int64_t a = doc->start > s ? doc->start : s;
        int64_t b = doc->start + doc->length < s + n ? doc->start + doc->length : s + n;
        for (int64_t i = a; i < b; i++) grp[i - s] = doc->group;
    }
}

/* ---- the pass ---- */

/* CPU seconds of this thread: speeds per core that other processes on the
 * machine do not distort */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the baseline, lazily ----
 * Whether expert e is among a row's top_k by p is decided from the logits
 * when that provably agrees with the softmax (the argument of
 * olmoe_policy_topk_by_logits: equal logits give equal p; logits further
 * apart than 1e-4 (1 + distance below the row's max), none more than 80
 * below it, keep their order through expf and the division), which costs
 * one branch-free pass over the row; otherwise the baseline policy routes
 * the row and answers for all its experts. Answers are cached per chunk
 * (state 0 unknown, 1 out, 2 in), so a sweep pays once per expert asked. */
typedef struct {
    const olmoe_policy *policy; /* topk(k=top_k), the checkpoint's routing */
    int K, E;
    unsigned char *state; /* [C, L, E] */
    float *rowmax;        /* [C, L] */
} baseline;

static void baseline_row(baseline *b, const float *r, unsigned char *st, int layer) {
    int ex[OLMOE_POLICY_MAX_E];
    int k = olmoe_policy_route((void *)b->policy, layer, r, b->E, ex, NULL);
    memset(st, 1, (size_t)b->E);
    for (int i = 0; i < k; i++) st[ex[i]] = 2;
}

/* GCC vector extensions (4 x fp32, any x86-64 or ARM64): the per-expert
 * scan below is the stats pass's hottest loop, and -O2 does not vectorise a
 * loop of unknown length */
typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));

static inline int in_baseline(baseline *b, const float *r, unsigned char *st, float m, int layer,
                              int e) {
    if (st[e]) return st[e] == 2;
    const float xe = r[e];
    int cnt = 0, bad = !(m - xe < 80.0f), j = 0;
    const v4f vxe = {xe, xe, xe, xe}, vm = {m, m, m, m}, one = {1, 1, 1, 1};
    const v4f tol = {1e-4f, 1e-4f, 1e-4f, 1e-4f};
    const v4i ve = {e, e, e, e}, absmask = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff};
    v4i vcnt = {0, 0, 0, 0}, vbad = {0, 0, 0, 0}, idx = {0, 1, 2, 3};
    const v4i four = {4, 4, 4, 4};
    for (; j + 4 <= b->E; j += 4, idx += four) {
        v4f xj;
        memcpy(&xj, r + j, sizeof xj);
        v4i gt = xj > vxe, lt = xj < vxe, eq = xj == vxe;
        vcnt -= gt | (eq & (idx < ve));
        v4f lower = (v4f)(((v4i)xj & lt) | ((v4i)vxe & ~lt));
        v4f gap = (v4f)((v4i)(xj - vxe) & absmask);
        v4i ok = gap > tol * (one + (vm - lower));
        vbad |= ~eq & ~ok;
    }
    cnt = vcnt[0] + vcnt[1] + vcnt[2] + vcnt[3];
    bad |= (vbad[0] | vbad[1] | vbad[2] | vbad[3]) != 0;
    for (; j < b->E; j++) {
        float xj = r[j];
        float lower = xj < xe ? xj : xe;
        float gap = xj > xe ? xj - xe : xe - xj;
        cnt += (xj > xe) | ((xj == xe) & (j < e));
        bad |= (xj != xe) & !(gap > 1e-4f * (1.0f + (m - lower)));
    }
    if (bad) {
        baseline_row(b, r, st, layer);
        return st[e] == 2;
    }
    st[e] = cnt < b->K ? 2 : 1;
    return st[e] == 2;
}

static inline void count_one(olmoe_stats_policy *p, size_t cell, int L, int E, int l, int k,
                             const int *ex, int ov) {
    int64_t *load = p->load + (cell * L + (size_t)l) * (size_t)E;
    for (int i = 0; i < k; i++) load[ex[i]]++;
    size_t sl = cell * L + (size_t)l;
    p->k_hist[sl * (size_t)(E + 1) + (size_t)k]++;
    p->overlap[sl] += ov;
    p->precision[sl] += (double)ov / k;
}

/* the documents of the trace in token order, for the group of each token */
static int read_documents(doc_cursor *dc, olmoe_trace *t) {
    dc->n = olmoe_trace_info_of(t)->n_documents;
    dc->docs = xmalloc(xmul((size_t)dc->n, sizeof *dc->docs));
    if (olmoe_trace_read_documents(t, 0, dc->n, dc->docs) != 0) {
        free(dc->docs);
        dc->docs = NULL;
        return -1;
    }
    qsort(dc->docs, (size_t)dc->n, sizeof *dc->docs, cmp_doc);
    return 0;
}

/* every logit of a chunk of n tokens from token s ([n, L, E], LE = L * E)
 * finite, else an error naming the first that is not */
static int check_finite(const float *logits, int64_t s, int64_t n, size_t LE, int E,
                        const char *path) {
    for (size_t i = 0; i < (size_t)n * LE; i++)
        if (!isfinite(logits[i]))
            return olmoe_errorf("%s: router logit of token %lld, layer %zu, expert %zu is not "
                                "finite", path, (long long)(s + (int64_t)(i / LE)), i % LE / E,
                                i % E);
    return 0;
}

/* the largest logit of each of rows rows of E (in_baseline's tolerance
 * needs it) */
static void row_maxima(const float *logits, size_t rows, int E, float *rowmax) {
    for (size_t row = 0; row < rows; row++) {
        const float *r = logits + row * E;
        float m = r[0];
        int e = 0;
        if (E >= 4) {
            v4f vm;
            memcpy(&vm, r, sizeof vm);
            for (e = 4; e + 4 <= E; e += 4) {
                v4f v;
                memcpy(&v, r + e, sizeof v);
                v4i gt = v > vm;
                vm = (v4f)(((v4i)v & gt) | ((v4i)vm & ~gt));
            }
            m = vm[0];
            for (int i = 1; i < 4; i++) m = vm[i] > m ? vm[i] : m;
        }
        for (; e < E; e++) m = r[e] > m ? r[e] : m;
        rowmax[row] = m;
    }
}

/* one policy over a chunk of n tokens from token s: each token-layer
 * routed, counted overall and in its group (grp[r] >= 0) */
static int route_chunk(olmoe_stats_policy *p, baseline *bl, const float *logits, const int *grp,
                       int64_t s, int64_t n, int L, int E) {
    int ex[OLMOE_POLICY_MAX_E];
    for (int64_t r = 0; r < n; r++) {
        for (int l = 0; l < L; l++) {
            size_t row = ((size_t)r * L + (size_t)l) * (size_t)E;
            int k = olmoe_policy_route_at(p->policy, l, s + r, logits + row, E, ex, NULL);
            if (k < 0) return -1;
            if (k < 1 || k > E)
                return olmoe_errorf("%s: routing returned %d experts (internal error)",
                                    p->policy->id, k);
            int ov = 0;
            size_t rl = (size_t)r * L + (size_t)l;
            for (int i = 0; i < k; i++)
                ov += in_baseline(bl, logits + row, bl->state + row, bl->rowmax[rl], l, ex[i]);
            count_one(p, 0, L, E, l, k, ex, ov);
            if (grp[r] >= 0) count_one(p, (size_t)grp[r] + 1, L, E, l, k, ex, ov);
        }
    }
    return 0;
}

int olmoe_stats_run(olmoe_stats *st, olmoe_trace *t, int64_t max_tokens) {
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    const int L = st->n_layers, E = st->n_experts;
    int64_t N = in->n_tokens;
    if (max_tokens > 0 && max_tokens < N) N = max_tokens;
    if (N < 1) return olmoe_errorf("%s: the trace has no tokens", olmoe_trace_path(t));
    double t_start = olmoe_now();

    /* the baseline: the trace's top_k, the checkpoint's own routing */
    olmoe_policy base;
    char spec[64];
    snprintf(spec, sizeof spec, "topk(k=%d)", st->top_k);
    olmoe_policy_model bm = {L, E, in->meta.norm_topk_prob, NULL, NULL, NULL, 0};
    if (olmoe_policy_parse(spec, &base) != 0 || olmoe_policy_bind(&base, &bm) != 0) return -1;

    doc_cursor dc = {NULL, 0, 0};
    if (st->n_scopes > 1 && read_documents(&dc, t) != 0) return -1;

    const int64_t C = OLMOE_STATS_CHUNK;
    size_t LE = (size_t)L * (size_t)E;
    float *logits = xmalloc(xmul(xmul((size_t)C, LE), sizeof *logits)); /* [C, L, E] */
    baseline bl = {&base, st->top_k, E, xmalloc(xmul((size_t)C, LE)),
                   xmalloc(xmul((size_t)C * L, sizeof(float)))};
    int *grp = xmalloc((size_t)C * sizeof *grp);                          /* [C] */
    int rc = -1;
    olmoe_progress prog;
    olmoe_progress_begin(&prog, "tokens", (double)N);
    for (int64_t s = 0; s < N; s += C) {
        int64_t n = N - s < C ? N - s : C;
        double tr = cpu_now();
        if (olmoe_trace_read_router_logits(t, s, n, logits) != 0) goto done;
        st->seconds_read += cpu_now() - tr;
        if (check_finite(logits, s, n, LE, E, olmoe_trace_path(t)) != 0) goto done;
        memset(bl.state, 0, (size_t)n * LE);
        row_maxima(logits, (size_t)n * L, E, bl.rowmax);
        if (st->n_scopes > 1)
            groups_of(&dc, s, n, st->n_scopes - 1, grp);
        else
            for (int64_t r = 0; r < n; r++) grp[r] = -1;
        for (int pi = 0; pi < st->n_policies; pi++) {
            olmoe_stats_policy *p = &st->pol[pi];
            double tp = cpu_now();
            if (route_chunk(p, &bl, logits, grp, s, n, L, E) != 0) goto done;
            p->seconds += cpu_now() - tp;
        }
        st->n_tokens = s + n;
        olmoe_progress_step(&prog, (double)(s + n));
    }
    rc = 0;
done:
    olmoe_progress_end(&prog);
    free(logits);
    free(bl.state);
    free(bl.rowmax);
    free(grp);
    free(dc.docs);
    st->seconds_total = olmoe_now() - t_start;
    return rc;
}

/* ---- summaries ---- */

static double layer_cv(const int64_t *load, int E) {
    double sum = 0, ss = 0;
    for (int e = 0; e < E; e++) sum += (double)load[e];
    double mean = sum / E;
    if (mean <= 0) return 0;
    for (int e = 0; e < E; e++) ss += ((double)load[e] - mean) * ((double)load[e] - mean);
    return sqrt(ss / E) / mean;
}

void olmoe_stats_summarize(const olmoe_stats *st, int policy, int scope, int layer,
                           olmoe_stats_summary *out) {
    const olmoe_stats_policy *p = &st->pol[policy];
    const int L = st->n_layers, E = st->n_experts;
    memset(out, 0, sizeof *out);
    int l0 = layer < 0 ? 0 : layer, l1 = layer < 0 ? L : layer + 1;
    double sk = 0, skk = 0, prec = 0, cv = 0;
    int64_t n = 0, at_min = 0, at_max = 0, ov = 0;
    for (int l = l0; l < l1; l++) {
        size_t sl = (size_t)scope * L + (size_t)l;
        const int64_t *h = p->k_hist + sl * (size_t)(E + 1);
        for (int k = 1; k <= E; k++) {
            n += h[k];
            sk += (double)k * (double)h[k];
            skk += (double)k * k * (double)h[k];
        }
        at_min += h[p->min_k];
        at_max += h[p->max_k];
        ov += p->overlap[sl];
        prec += p->precision[sl];
        cv += layer_cv(p->load + sl * (size_t)E, E);
    }
    out->n = n;
    out->load_cv = cv / (l1 - l0);
    if (n == 0) return;
    out->mean_k = sk / n;
    double var = skk / n - out->mean_k * out->mean_k;
    out->sd_k = var > 0 ? sqrt(var) : 0;
    out->share_min_k = (double)at_min / n;
    out->share_max_k = (double)at_max / n;
    out->overlap_mean = (double)ov / n;
    out->coverage = (double)ov / ((double)n * st->top_k);
    out->precision = prec / n;
    out->flops_vs_baseline = out->mean_k / st->top_k;
}
