/* replay_run.c: the driver of olmoe-replay's replay and exact kinds. The
 * trace is read once, in chunks of whole windows; each chunk runs every
 * policy, first through the replay backend (frozen attention), then through
 * the engine (exact forward, the policy as its route hook). Per-token results
 * go into each policy's arrays at their stream positions. */
#include "common.h"
#include "replay.h"


#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CPU seconds of the process: on a shared machine wall time says little */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    int64_t w0, w1;   /* windows [w0, w1) */
    int64_t r0, r1;   /* stored rows [r0, r1) */
    int64_t tokens;   /* sum of the windows' lengths (the exact forward's rows) */
} chunk_plan;

/* the engine's route hook dispatches to whichever policy runs now, so one
 * engine (weights loaded once) serves the whole sweep */
const char *olmoe_replay_kind_name(olmoe_replay_kind k) { return k == OLMOE_KIND_EXACT ? "exact" : "replay"; }

void olmoe_replay_result_init(olmoe_replay_result *res, olmoe_policy *p, olmoe_replay_kind kind,
                              olmoe_replay_routing routing, int64_t N, int L, int E, int n_groups,
                              int stored) {
    memset(res, 0, sizeof *res);
    for (int i = 0; i < 4; i++) res->ci[i] = NAN;
    res->policy = p;
    res->kind = kind;
    res->routing = kind == OLMOE_KIND_EXACT ? OLMOE_ROUTING_RECOMPUTE : routing;
    res->stored = stored;
    res->nll = xmalloc(xmul((size_t)N + 1, sizeof *res->nll));
    res->argmax = xmalloc(xmul((size_t)N + 1, sizeof *res->argmax));
    res->experts = xcalloc(xmul((size_t)N + 1, (size_t)L), 1);
    res->k_hist = xcalloc((size_t)L * (E + 1), sizeof *res->k_hist);
    res->load = xcalloc((size_t)L * E, sizeof *res->load);
    res->mean_k_layer = xcalloc((size_t)L, sizeof *res->mean_k_layer);
    res->group = xcalloc((size_t)n_groups + 1, sizeof *res->group);
    for (int64_t i = 0; i < N; i++) res->nll[i] = NAN;
}

static void result_free(olmoe_replay_result *res) {
    free(res->nll);
    free(res->argmax);
    free(res->experts);
    free(res->k_hist);
    free(res->load);
    free(res->mean_k_layer);
    free(res->group);
}

void olmoe_replay_run_free(olmoe_replay_run *r) {
    for (int i = 0; i < r->n_results; i++) {
        result_free(&r->res[i]);
    }
    free(r->res);
    free(r->own_policy);
    free(r->tokens);
    free(r->baseline_nll);
    free(r->token_group);
    if (r->group_names) olmoe_trace_free_groups(r->group_names, r->n_groups);
    memset(r, 0, sizeof *r);
}

const olmoe_replay_result *olmoe_replay_find(const olmoe_replay_run *r, olmoe_replay_kind kind,
                                             const char *id) {
    for (int i = 0; i < r->n_results; i++)
        if (r->res[i].stored && r->res[i].kind == kind && strcmp(r->res[i].policy->id, id) == 0)
            return &r->res[i];
    return NULL;
}

/* ---- summaries ---- */

static void summary_tokens(const olmoe_replay_run *r, const olmoe_replay_result *res, int group,
                           olmoe_replay_summary *s) {
    int L = r->n_layers, lo, hi;
    olmoe_policy_k_range(res->policy, &lo, &hi);
    double sum = 0, ksum = 0, k2 = 0;
    int64_t scored = 0, right = 0, tl = 0, at_lo = 0, at_hi = 0;
    for (int64_t i = 0; i < r->n_tokens; i++) {
        if (group >= 0 && r->token_group[i] != group) continue;
        if (!isnan(res->nll[i])) {
            sum += res->nll[i];
            scored++;
            right += res->argmax[i] == r->tokens[i + 1];
        }
        for (int l = 0; l < L; l++) {
            int k = res->experts[(size_t)i * L + l];
            ksum += k;
            k2 += (double)k * k;
            at_lo += k == lo;
            at_hi += k == hi;
        }
        tl += L;
    }
    s->n_scored = scored;
    s->nll_sum = sum;
    s->perplexity = scored ? exp(sum / (double)scored) : NAN;
    s->accuracy = scored ? (double)right / (double)scored : NAN;
    s->n_token_layers = tl;
    s->mean_k = tl ? ksum / (double)tl : NAN;
    double var = tl ? k2 / (double)tl - s->mean_k * s->mean_k : NAN;
    s->sd_k = tl ? sqrt(var > 0 ? var : 0) : NAN;
    s->share_min_k = tl ? (double)at_lo / (double)tl : NAN;
    s->share_max_k = tl ? (double)at_hi / (double)tl : NAN;
    s->compute_saved = 1.0 - s->mean_k / r->top_k;
}

void olmoe_replay_summarize(const olmoe_replay_run *r, olmoe_replay_result *res) {
    int L = r->n_layers, E = r->n_experts;
    memset(res->k_hist, 0, (size_t)L * (E + 1) * sizeof *res->k_hist);
    for (int64_t i = 0; i < r->n_tokens; i++)
        for (int l = 0; l < L; l++) res->k_hist[(size_t)l * (E + 1) + res->experts[(size_t)i * L + l]]++;
    for (int l = 0; l < L; l++) {
        double s = 0;
        for (int k = 0; k <= E; k++) s += (double)k * res->k_hist[(size_t)l * (E + 1) + k];
        res->mean_k_layer[l] = r->n_tokens ? s / (double)r->n_tokens : NAN;
    }
    summary_tokens(r, res, -1, &res->all);
    for (int g = 0; g < r->n_groups; g++) summary_tokens(r, res, g, &res->group[g]);
}

/* ---- setup ---- */

int olmoe_replay_check_trace(const char *path, olmoe_trace *t, olmoe_model *model,
                             int need_residuals, char *checksum_hex) {
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    const olmoe_trace_meta *m = &in->meta;
    const olmoe_config *c = &model->cfg;
    olmoe_hash h;
    if (olmoe_model_checksum(model, &h) != 0) return -1;
    if (strcmp(h.hex, m->model_checksum) != 0)
        return olmoe_errorf("%s: captured with other weights (model checksum %.16s...), %s has "
                            "%.16s...: replay needs the checkpoint the trace was captured with",
                            path, m->model_checksum, model->dir, h.hex);
    if (c->num_hidden_layers != m->n_layers || c->num_experts != m->n_experts ||
        c->hidden_size != m->hidden_size || c->vocab_size != m->vocab_size)
        return olmoe_errorf("%s: shapes (%d layers, %d experts, hidden %d, vocab %d) differ from %s",
                            path, m->n_layers, m->n_experts, m->hidden_size, m->vocab_size, model->dir);
    if (need_residuals && !in->has_residuals)
        return olmoe_errorf("%s has no /residual/attn: capture it with olmoe-capture --save-residuals",
                            path);
    if (checksum_hex) snprintf(checksum_hex, 33, "%s", h.hex);
    return 0;
}

/* token -> document group, from /documents */
static int read_groups(olmoe_trace *t, olmoe_replay_run *r) {
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    int64_t N = r->n_tokens;
    r->token_group = xmalloc(xmul((size_t)N + 1, sizeof *r->token_group));
    for (int64_t i = 0; i < N; i++) r->token_group[i] = -1;
    if (in->n_groups <= 0 || in->n_documents <= 0) return 0;
    int64_t ng;
    if (olmoe_trace_read_groups(t, &r->group_names, &ng) != 0) return -1;
    r->n_groups = (int)ng;
    olmoe_trace_document *d = xmalloc(xmul((size_t)in->n_documents, sizeof *d));
    if (olmoe_trace_read_documents(t, 0, in->n_documents, d) != 0) {
        free(d);
        return -1;
    }
    for (int64_t k = 0; k < in->n_documents; k++) {
        if (d[k].group < 0 || d[k].group >= ng) continue;
        for (int64_t i = d[k].start; i < d[k].start + d[k].length && i < N; i++)
            if (i >= 0) r->token_group[i] = d[k].group;
    }
    free(d);
    return 0;
}

/* windows into chunks of at most chunk_tokens stored rows (at least one
 * window each), stopping at the last window that ends by max_tokens */
static int plan_chunks(olmoe_trace *t, const olmoe_replay_opts *o, chunk_plan **out, int *n_out,
                       int64_t *N_out, int64_t *need_tokens, int64_t *max_len, int64_t *max_rows,
                       int64_t *max_sum_len, int64_t *n_windows, int64_t *run_chunks) {
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    int64_t W = in->n_windows;
    if (W <= 0) return olmoe_errorf("%s: the trace has no windows", o->trace_path);
    olmoe_trace_window *w = xmalloc(xmul((size_t)W, sizeof *w));
    if (olmoe_trace_read_windows(t, 0, W, w) != 0) {
        free(w);
        return -1;
    }
    int64_t use = W;
    if (o->max_tokens > 0) {
        use = 0;
        while (use < W && (use == 0 || w[use].stored_end <= o->max_tokens)) use++;
    }
    int cap = 16, n = 0;
    chunk_plan *c = xmalloc(cap * sizeof *c);
    int64_t C = o->chunk_tokens > 0 ? o->chunk_tokens : 4096;
    *need_tokens = *max_len = *max_rows = *max_sum_len = 0;
    for (int64_t i = 0; i < use;) {
        chunk_plan p = {i, i, w[i].start + w[i].stored_from, 0, 0};
        int64_t rows = 0;
        while (p.w1 < use) {
            int64_t rw = w[p.w1].stored_end - (w[p.w1].start + w[p.w1].stored_from);
            if (p.w1 > p.w0 && rows + rw > C) break;
            rows += rw;
            p.tokens += w[p.w1].length;
            if (w[p.w1].length > *max_len) *max_len = w[p.w1].length;
            if (w[p.w1].start + w[p.w1].length > *need_tokens)
                *need_tokens = w[p.w1].start + w[p.w1].length;
            p.w1++;
        }
        p.r1 = w[p.w1 - 1].stored_end;
        if (rows > *max_rows) *max_rows = rows;
        if (p.tokens > *max_sum_len) *max_sum_len = p.tokens;
        if (n == cap) c = xrealloc(c, (size_t)(cap *= 2) * sizeof *c);
        c[n++] = p;
        i = p.w1;
    }
    /* ---- --shard: the i-th of N contiguous ranges of the run's
     * chunks, each chunk as in the unsharded run (same rows, same results) ---- */
    *run_chunks = n;
    if (o->shard_count > 0) {
        if (n < o->shard_count) {
            free(w);
            free(c);
            return olmoe_errorf("--shard %d/%d: the run has %d chunk%s of at most %lld tokens: use "
                                "at most %d shard%s (or a smaller --chunk)", o->shard_index,
                                o->shard_count, n, n == 1 ? "" : "s", (long long)C, n,
                                n == 1 ? "" : "s");
        }
        int a = (int)((int64_t)n * o->shard_index / o->shard_count);
        int b = (int)((int64_t)n * (o->shard_index + 1) / o->shard_count);
        memmove(c, c + a, (size_t)(b - a) * sizeof *c);
        n = b - a;
    }
    /* ---- end --shard ---- */
    *N_out = w[use - 1].stored_end;
    *n_windows = use;
    free(w);
    *out = c;
    *n_out = n;
    return 0;
}

static void self_check_prepare(const olmoe_replay_opts *o, olmoe_replay_run *r, olmoe_policy **base) {
    *base = NULL;
    olmoe_replay_selfcheck *sc = &r->self;
    snprintf(sc->policy, sizeof sc->policy, "%s", r->trace_policy);
    if (!o->self_check || !o->do_replay) {
        snprintf(sc->why_not, sizeof sc->why_not, "not asked for");
        return;
    }
    olmoe_policy *p = xcalloc(1, sizeof *p);
    if (olmoe_policy_parse(r->trace_policy, p) == 0) { /* compare canonical ids */
        snprintf(sc->policy, sizeof sc->policy, "%s", p->id);
        for (int i = 0; i < o->n_policies; i++)
            if (strcmp(o->policies[i]->id, p->id) == 0) { /* runs anyway */
                free(p);
                return;
            }
    }
    if (olmoe_policy_parse(r->trace_policy, p) != 0 || !o->bind_model ||
        olmoe_policy_bind(p, o->bind_model) != 0 ||
        olmoe_policy_max_experts(p) > r->n_experts) {
        snprintf(sc->why_not, sizeof sc->why_not, "the trace's policy '%.60s' cannot be bound here: %.60s",
                 r->trace_policy, olmoe_error());
        free(p);
        return;
    }
    *base = p;
}

int olmoe_replay_self_check(olmoe_replay_run *r) {
    olmoe_replay_selfcheck *sc = &r->self;
    const olmoe_replay_result *res = NULL;
    for (int i = 0; i < r->n_results; i++)
        if (r->res[i].kind == OLMOE_KIND_REPLAY && strcmp(r->res[i].policy->id, sc->policy) == 0)
            res = &r->res[i];
    if (!res) return -1;
    double mx = 0, mr = 0, sum = 0;
    int64_t n = 0;
    for (int64_t i = 0; i < r->n_tokens; i++) {
        float a = res->nll[i], b = r->baseline_nll[i];
        if (isnan(a) || isnan(b)) continue;
        double d = fabs((double)a - (double)b), rel = d / (fabs(b) > 1 ? fabs(b) : 1);
        if (d > mx) mx = d;
        if (rel > mr) mr = rel;
        sum += d;
        n++;
    }
    sc->done = 1;
    sc->why_not[0] = 0;
    sc->max_abs_diff = mx;
    sc->max_rel_diff = mr;
    sc->mean_abs_diff = n ? sum / (double)n : 0;
    sc->ppl_rel_diff = res->all.perplexity / r->baseline_perplexity - 1;
    sc->nll_rel_diff = log(res->all.perplexity) / log(r->baseline_perplexity) - 1;
    return 0;
}

/* ---- the run ---- */

typedef struct {
    const olmoe_replay_opts *o;
    olmoe_replay_run *r;
    olmoe_trace *t;
    olmoe_replay_backend *be;
    olmoe_engine *eng;
    olmoe_trace_window *win;    /* [n_windows] */
    int32_t *target;            /* [max_rows] */
    /* a chunk's inputs, two sets: the reader thread fills one while the
     * backend runs on the other */
    uint16_t *res_bf16, *res_bf16_next; /* [max_rows, L, D] bfloat16 residuals, or */
    float *res_f32, *res_f32_next;      /* [max_rows, L, D] float32 ones (a trace that stores them) */
    float *logits, *logits_next;        /* [max_rows, L, E] captured (routing=captured) */
    olmoe_worker reader;
    const chunk_plan *next_plan; /* what the reader reads, into the _next set */
    double next_seconds;
    /* exact: engine outputs for a chunk's full windows */
    olmoe_window_io *io;        /* [windows in a chunk] */
    float *x_nll;               /* [max_sum_len] */
    int32_t *x_argmax;          /* [max_sum_len] */
    float *x_logits;            /* [max_sum_len, L, E] */
    /* what the engine routed, when it says so (the CUDA engine) */
    uint8_t *x_nexp;            /* [max_sum_len, L] */
    int32_t *x_exp;             /* [max_sum_len, L, max_k] */
    int x_k;                    /* max_k */
} run_state;

/* the reader thread's job: chunk next_plan's residuals (and logits) into
 * the _next set. The main thread makes no HDF5 call while it runs. */
static int read_next(void *arg) {
    run_state *s = arg;
    const chunk_plan *p = s->next_plan;
    int64_t rows = p->r1 - p->r0;
    double t0 = olmoe_now();
    if (s->res_bf16_next ? olmoe_trace_read_residual_bf16(s->t, p->r0, rows, s->res_bf16_next)
                         : olmoe_trace_read_residual(s->t, p->r0, rows, s->res_f32_next))
        return -1;
    if (s->logits_next && olmoe_trace_read_router_logits(s->t, p->r0, rows, s->logits_next) != 0) return -1;
    s->next_seconds = olmoe_now() - t0;
    return 0;
}

/* chunk p's inputs into the current set: read by the reader thread while
 * the last chunk ran (p was submitted), or now; then chunk `after`'s read
 * starts (NULL: none) */
static int take_chunk(run_state *s, const chunk_plan *p, const chunk_plan *after) {
    if (s->next_plan != p) {
        s->next_plan = p;
        if (olmoe_worker_submit(&s->reader, read_next, s) != 0) return -1;
    }
    double t0 = olmoe_now();
    if (olmoe_worker_wait(&s->reader) != 0) return -1;
    s->r->read_seconds += s->next_seconds;
    s->r->read_wait_seconds += olmoe_now() - t0;
    uint16_t *b = s->res_bf16;
    float *f = s->res_f32, *g = s->logits;
    s->res_bf16 = s->res_bf16_next, s->res_f32 = s->res_f32_next, s->logits = s->logits_next;
    s->res_bf16_next = b, s->res_f32_next = f, s->logits_next = g;
    s->next_plan = after;
    return after ? olmoe_worker_submit(&s->reader, read_next, s) : 0;
}

static int run_replay_chunk(run_state *s, const chunk_plan *p, const chunk_plan *after, int n_replay) {
    olmoe_replay_run *r = s->r;
    int64_t rows = p->r1 - p->r0;
    int L = r->n_layers;
    for (int64_t i = 0; i < rows; i++) {
        int64_t at = p->r0 + i;
        s->target[i] = isnan(r->baseline_nll[at]) ? -1 : r->tokens[at + 1];
    }
    if (take_chunk(s, p, after) != 0) return -1;
    olmoe_replay_chunk ch = {(int)rows, r->tokens + p->r0, s->target, s->res_f32, s->res_bf16, s->logits, p->r0};
    if (olmoe_replay_backend_load(s->be, &ch) != 0) return -1;
    for (int k = 0; k < n_replay; k++) {
        olmoe_replay_result *res = &r->res[k];
        olmoe_replay_out out = {res->nll + p->r0, res->argmax + p->r0,
                                res->experts + (size_t)p->r0 * L, res->load};
        double a = olmoe_now(), ca = cpu_now();
        if (olmoe_replay_backend_run(s->be, res->policy, &out) != 0)
            return olmoe_error_prefix("replay of %s", res->policy->id);
        res->seconds += olmoe_now() - a;
        res->cpu_seconds += cpu_now() - ca;
    }
    return 0;
}

static int run_exact_chunk(run_state *s, const chunk_plan *p, olmoe_replay_result *res) {
    olmoe_replay_run *r = s->r;
    int L = r->n_layers, E = r->n_experts;
    int nw = (int)(p->w1 - p->w0);
    int64_t off = 0;
    for (int b = 0; b < nw; b++) {
        const olmoe_trace_window *w = &s->win[p->w0 + b];
        s->io[b] = (olmoe_window_io){.n = (int)w->length, .tokens = r->tokens + w->start,
                                     .router_logits = s->x_logits + (size_t)off * L * E,
                                     .nll = s->x_nll + off, .argmax = s->x_argmax + off,
                                     .stream_pos1 = w->start + 1};
        if (s->x_nexp) {
            s->io[b].n_experts = s->x_nexp + (size_t)off * L;
            s->io[b].experts = s->x_exp + (size_t)off * L * s->x_k;
        }
        off += w->length;
    }
    double a = olmoe_now(), ca = cpu_now();
    olmoe_engine_set_route(s->eng, olmoe_policy_route_at, res->policy);
    if (olmoe_engine_forward(s->eng, s->io, nw) != 0)
        return olmoe_error_prefix("exact forward of %s", res->policy->id);
    int ex[256];
    float wt[256];
    off = 0;
    for (int b = 0; b < nw; b++) {
        const olmoe_trace_window *w = &s->win[p->w0 + b];
        int64_t lo = w->stored_from, hi = w->stored_end - w->start;
        for (int64_t i = lo; i < hi; i++) {
            int64_t at = w->start + i;
            res->nll[at] = s->x_nll[off + i];
            res->argmax[at] = s->x_argmax[off + i];
            if (s->x_nexp) { /* the experts the engine reports it used */
                for (int l = 0; l < L; l++) {
                    size_t at_l = (size_t)(off + i) * L + l;
                    int n = s->x_nexp[at_l];
                    res->experts[(size_t)at * L + l] = (uint8_t)n;
                    for (int j = 0; j < n; j++) res->load[(size_t)l * E + s->x_exp[at_l * s->x_k + j]]++;
                }
                continue;
            }
            /* the experts the engine used: the policy is a pure function of
             * the logits, so routing them again gives its choice exactly */
            for (int l = 0; l < L; l++) {
                const float *lg = s->x_logits + ((size_t)(off + i) * L + l) * E;
                int n = olmoe_policy_route_at(res->policy, l, at, lg, E, ex, wt);
                if (n < 0) return -1;
                res->experts[(size_t)at * L + l] = (uint8_t)n;
                for (int j = 0; j < n; j++) res->load[(size_t)l * E + ex[j]]++;
            }
        }
        off += w->length;
    }
    res->seconds += olmoe_now() - a;
    res->cpu_seconds += cpu_now() - ca;
    return 0;
}

/* bytes per element of /residual/attn (2: bfloat16), 0 when unknown */
static size_t residual_bytes(olmoe_trace *t) {
    hid_t ds = H5Dopen2(olmoe_trace_hid(t), "/residual/attn", H5P_DEFAULT);
    if (ds < 0) return 0;
    hid_t ty = H5Dget_type(ds);
    size_t n = ty >= 0 ? H5Tget_size(ty) : 0;
    if (ty >= 0) H5Tclose(ty);
    H5Dclose(ds);
    return n;
}

/* the largest chunk of the plan, to size every buffer once */
typedef struct {
    int64_t need_tokens; /* tokens to read: up to the end of the last window */
    int64_t max_len;     /* the longest window */
    int64_t max_rows;    /* the most stored rows in one chunk */
    int64_t max_sum;     /* the most window tokens in one chunk */
} chunk_sizes;

/* the tokens to read and the trace's own NLL, with its perplexity */
static int read_baseline(olmoe_trace *t, olmoe_replay_run *r, int64_t need) {
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    int64_t N = r->n_tokens;
    if (need < N + 1) need = N + 1;
    if (need > in->n_tokens) need = in->n_tokens;
    r->tokens = xcalloc((size_t)N + 2 > (size_t)need ? (size_t)N + 2 : (size_t)need, sizeof *r->tokens);
    r->tokens[N] = -1; /* no next token past the trace */
    if (olmoe_trace_read_tokens(t, 0, need, r->tokens) != 0) return -1;
    r->baseline_nll = xmalloc(xmul((size_t)N + 1, sizeof *r->baseline_nll));
    if (olmoe_trace_read_nll(t, 0, N, r->baseline_nll) != 0) return -1;
    double sum = 0;
    for (int64_t i = 0; i < N; i++)
        if (!isnan(r->baseline_nll[i])) sum += r->baseline_nll[i], r->baseline_scored++;
    r->baseline_perplexity = r->baseline_scored ? exp(sum / (double)r->baseline_scored) : NAN;
    return 0;
}

/* checks the trace against the model, plans its chunks and reads what
 * every chunk shares: the model's shape, tokens, baseline, groups, windows */
static int read_trace(const olmoe_replay_opts *o, olmoe_replay_run *r, run_state *s, chunk_plan **plan,
                      int *n_chunks, chunk_sizes *sz) {
    olmoe_trace *t = s->t;
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    const olmoe_trace_meta *m = &in->meta;
    if (o->do_replay && !in->has_residuals) /* first: it needs no checksum */
        return olmoe_errorf("%s has no /residual/attn: capture it with olmoe-capture --save-residuals",
                            o->trace_path);
    if (olmoe_replay_check_trace(o->trace_path, t, o->model, o->do_replay, r->model_checksum) != 0)
        return -1;
    r->n_layers = m->n_layers, r->n_experts = m->n_experts, r->hidden_size = m->hidden_size;
    r->vocab_size = m->vocab_size, r->top_k = m->top_k;
    r->n_trace_tokens = in->n_tokens;
    snprintf(r->trace_policy, sizeof r->trace_policy, "%s", m->policy);
    if (plan_chunks(t, o, plan, n_chunks, &r->n_tokens, &sz->need_tokens, &sz->max_len,
                    &sz->max_rows, &sz->max_sum, &r->n_windows, &r->n_chunks_run) != 0)
        return -1;
    /* ---- --shard ---- */
    r->row_begin = (*plan)[0].r0;
    r->row_end = (*plan)[*n_chunks - 1].r1;
    /* ---- end --shard ---- */
    if (read_baseline(t, r, sz->need_tokens) != 0) return -1;
    if (read_groups(t, r) != 0) return -1;
    s->win = xmalloc(xmul((size_t)r->n_windows, sizeof *s->win));
    return olmoe_trace_read_windows(t, 0, r->n_windows, s->win);
}

/* the most experts any policy of the run (the self-check's included) may pick */
static int most_experts(const olmoe_replay_opts *o, const olmoe_policy *base) {
    int max_k = 1;
    for (int i = 0; i < o->n_policies; i++) {
        int k = olmoe_policy_max_experts(o->policies[i]);
        if (k > max_k) max_k = k;
    }
    if (base && olmoe_policy_max_experts(base) > max_k) max_k = olmoe_policy_max_experts(base);
    return max_k;
}

/* the replay backend and the two sets of chunk inputs the reader fills */
static int open_replay(const olmoe_replay_opts *o, olmoe_replay_run *r, run_state *s, int64_t max_rows,
                       int max_k) {
    int L = r->n_layers, E = r->n_experts, D = r->hidden_size;
    if (olmoe_replay_backend_open(o->model, o->device, (int)max_rows, max_k, o->routing, &s->be) != 0)
        return -1;
    s->target = xmalloc(xmul((size_t)max_rows, sizeof *s->target));
    /* traces store bfloat16 residuals; read float32 ones as they are
     * when a trace has them (the writer may grow that option) */
    if (residual_bytes(s->t) == 4) {
        s->res_f32 = xmalloc(xmul(xmul((size_t)max_rows, (size_t)L * D), sizeof *s->res_f32));
        s->res_f32_next = xmalloc(xmul(xmul((size_t)max_rows, (size_t)L * D), sizeof *s->res_f32));
        r->self.residual_dtype = "float32";
    } else {
        s->res_bf16 = xmalloc(xmul(xmul((size_t)max_rows, (size_t)L * D), sizeof *s->res_bf16));
        s->res_bf16_next = xmalloc(xmul(xmul((size_t)max_rows, (size_t)L * D), sizeof *s->res_bf16));
    }
    if (o->routing == OLMOE_ROUTING_CAPTURED) {
        s->logits = xmalloc(xmul(xmul((size_t)max_rows, (size_t)L * E), sizeof *s->logits));
        s->logits_next = xmalloc(xmul(xmul((size_t)max_rows, (size_t)L * E), sizeof *s->logits));
    }
    return 0;
}

/* the engine and its outputs for a chunk's full windows */
static int open_exact(const olmoe_replay_opts *o, olmoe_replay_run *r, run_state *s,
                      const chunk_plan *plan, int n_chunks, const chunk_sizes *sz, int max_k) {
    int L = r->n_layers, E = r->n_experts;
    olmoe_engine_opts eo = {.device = o->device ? o->device : "cpu", .max_tokens = (int)sz->max_sum,
                            .max_ctx = (int)sz->max_len, .top_k = max_k};
    if (olmoe_engine_open(o->model, &eo, &s->eng) != 0) return -1;
    int64_t most_windows = 0;
    for (int c = 0; c < n_chunks; c++)
        if (plan[c].w1 - plan[c].w0 > most_windows) most_windows = plan[c].w1 - plan[c].w0;
    s->io = xcalloc((size_t)most_windows, sizeof *s->io);
    s->x_nll = xmalloc(xmul((size_t)sz->max_sum, sizeof *s->x_nll));
    s->x_argmax = xmalloc(xmul((size_t)sz->max_sum, sizeof *s->x_argmax));
    /* owns its pages, so a GPU engine can page-lock it: copies run async */
    size_t lb = xmul(xmul((size_t)sz->max_sum, (size_t)L * E), sizeof *s->x_logits);
    s->x_logits = olmoe_engine_host_alloc(lb);
    olmoe_engine_host_buffer(s->eng, s->x_logits, lb);
    if (strncmp(olmoe_engine_device(s->eng), "cuda", 4) == 0) { /* it reports its routing */
        s->x_k = olmoe_engine_max_experts(s->eng);
        s->x_nexp = xmalloc(xmul(xmul((size_t)sz->max_sum, (size_t)L), 1));
        s->x_exp = xmalloc(xmul(xmul((size_t)sz->max_sum, (size_t)L * s->x_k), sizeof *s->x_exp));
    }
    return 0;
}

/* results: replay (policy order), exact, then the self-check's own */
static void init_results(const olmoe_replay_opts *o, olmoe_replay_run *r, const run_state *s,
                         olmoe_policy *base) {
    int P = o->n_policies, L = r->n_layers, E = r->n_experts;
    int64_t N = r->n_tokens;
    r->res = xcalloc((size_t)2 * P + 1, sizeof *r->res);
    if (o->do_replay)
        for (int i = 0; i < P; i++)
            olmoe_replay_result_init(&r->res[r->n_results++], o->policies[i], OLMOE_KIND_REPLAY,
                                     o->routing, N, L, E, r->n_groups, 1);
    if (base)
        olmoe_replay_result_init(&r->res[r->n_results++], base, OLMOE_KIND_REPLAY, o->routing, N, L,
                                 E, r->n_groups, 0);
    if (o->do_exact)
        for (int i = 0; i < P; i++)
            olmoe_replay_result_init(&r->res[r->n_results++], o->policies[i], OLMOE_KIND_EXACT,
                                     o->routing, N, L, E, r->n_groups, 1);
    for (int i = 0; i < r->n_results; i++)
        snprintf(r->res[i].device, sizeof r->res[i].device, "%s",
                 r->res[i].kind == OLMOE_KIND_EXACT ? olmoe_engine_device(s->eng) : s->be->device);
}

static int setup(const olmoe_replay_opts *o, olmoe_replay_run *r, run_state *s, chunk_plan **plan,
                 int *n_chunks, olmoe_policy **base) {
    chunk_sizes sz = {0};
    if (read_trace(o, r, s, plan, n_chunks, &sz) != 0) return -1;
    self_check_prepare(o, r, base);
    r->own_policy = *base;
    int max_k = most_experts(o, *base);
    if (max_k > 255) return olmoe_errorf("policies of %d experts: at most 255 are stored per token", max_k);
    if (o->do_replay && open_replay(o, r, s, sz.max_rows, max_k) != 0) return -1;
    if (o->do_exact && open_exact(o, r, s, *plan, *n_chunks, &sz, max_k) != 0) return -1;
    init_results(o, r, s, *base);
    return 0;
}

int olmoe_replay_run_all(const olmoe_replay_opts *o, olmoe_replay_run *r) {
    memset(r, 0, sizeof *r);
    r->self.residual_dtype = "bfloat16";
    if (!o->do_replay && !o->do_exact) return olmoe_errorf("replay: nothing to run");
    if (o->n_policies < 1) return olmoe_errorf("replay: no policy");
    double t_start = olmoe_now();
    run_state s = {.o = o, .r = r};
    if (!(s.t = olmoe_trace_open(o->trace_path))) return -1;
    chunk_plan *plan = NULL;
    int n_chunks = 0, rc = -1;
    olmoe_policy *base = NULL;
    if (setup(o, r, &s, &plan, &n_chunks, &base) != 0) goto done;
    int n_replay = 0;
    while (n_replay < r->n_results && r->res[n_replay].kind == OLMOE_KIND_REPLAY) n_replay++;
    olmoe_progress prog;
    olmoe_progress_begin(&prog, "tokens", (double)r->n_tokens);
    if (!o->progress) prog.enabled = 0;
    if (o->do_replay && olmoe_worker_start(&s.reader) != 0) goto done;
    for (int c = 0; c < n_chunks; c++) {
        const chunk_plan *after = c + 1 < n_chunks ? &plan[c + 1] : NULL;
        if (o->do_replay && run_replay_chunk(&s, &plan[c], after, n_replay) != 0) goto done;
        for (int k = n_replay; k < r->n_results; k++)
            if (run_exact_chunk(&s, &plan[c], &r->res[k]) != 0) goto done;
        olmoe_progress_step(&prog, (double)plan[c].r1);
    }
    olmoe_progress_end(&prog);
    for (int i = 0; i < r->n_results; i++) olmoe_replay_summarize(r, &r->res[i]);
    olmoe_replay_self_check(r); /* when absent, why_not says why */
    rc = 0;
done:
    if (s.reader.started) olmoe_worker_stop(&s.reader); /* before the trace closes */
    r->total_seconds = olmoe_now() - t_start;
    olmoe_replay_backend_close(s.be);
    olmoe_engine_close(s.eng);
    free(s.win);
    free(s.target);
    free(s.res_bf16), free(s.res_bf16_next);
    free(s.res_f32), free(s.res_f32_next);
    free(s.logits), free(s.logits_next);
    free(s.io);
    free(s.x_nll);
    free(s.x_argmax);
    free(s.x_logits);
    free(s.x_nexp);
    free(s.x_exp);
    free(plan);
    if (olmoe_trace_close(s.t) != 0 && rc == 0) rc = -1;
    if (rc != 0) {
        char keep[1024]; /* freeing must not lose the message */
        snprintf(keep, sizeof keep, "%s", olmoe_error());
        olmoe_replay_run_free(r);
        olmoe_errorf("%s", keep);
    }
    return rc;
}
