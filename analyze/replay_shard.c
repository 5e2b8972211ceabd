/* replay_shard.c: olmoe-replay --shard i/N and the merge of its results
 * (main_replay_merge.c is the command).
 *
 * A sharded run plans the chunks of the whole run (replay_run.c), keeps the
 * i-th of N contiguous ranges of them (so every chunk holds the windows it
 * holds in the unsharded run, and the results are bit-identical) and replays
 * only those; its results file holds the rows [row_begin, row_end) of the
 * run, summarised over them, and root attributes that place it (OLMOE_RS_*).
 * The merge reads every shard's per-token rows back into arrays over the
 * whole run, sums the expert loads and times, and summarises with the same
 * code as an unsharded run (olmoe_replay_summarize), so perplexity (from the
 * NLL summed in stream order), accuracy and the expert counts are those of
 * the unsharded run, bit for bit. */
#include "common.h"
#include "replay.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RS_INDEX "shard_index"
#define RS_COUNT "shard_count"
#define RS_ROW_BEGIN "shard_row_begin"
#define RS_ROW_END "shard_row_end"
#define RS_RUN_TOKENS "run_tokens"
#define RS_RUN_CHUNKS "run_chunks"
#define RS_CHUNK "chunk_tokens"
#define RS_MODEL "model_checksum"
#define RS_TRACE_TOKENS "trace_tokens"

/* ---- the shard's own results: a view of its rows ---- */

static double baseline_ppl(const float *nll, int64_t n, int64_t *scored) {
    double sum = 0;
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(nll[i])) sum += nll[i], c++;
    *scored = c;
    return c ? exp(sum / (double)c) : NAN;
}

/* the self-check over the rows of r; says why when its policy is absent */
static void self_check(olmoe_replay_run *r) {
    if (olmoe_replay_self_check(r) == 0) return;
    r->self.done = 0;
    snprintf(r->self.why_not, sizeof r->self.why_not,
             "the trace's policy %.200s is not among the results", r->self.policy);
}

int olmoe_replay_shard_view(const olmoe_replay_run *r, olmoe_replay_run *v) {
    *v = *r;
    int64_t a = r->row_begin, n = r->row_end - r->row_begin;
    int L = r->n_layers;
    v->n_tokens = n;
    v->row_begin = 0;
    v->row_end = n;
    v->tokens = r->tokens + a;
    v->baseline_nll = r->baseline_nll + a;
    v->token_group = r->token_group + a;
    v->own_policy = NULL;
    v->res = xcalloc((size_t)r->n_results + 1, sizeof *v->res);
    for (int i = 0; i < r->n_results; i++) {
        olmoe_replay_result *x = &v->res[i];
        *x = r->res[i];
        x->nll += a;
        x->argmax += a;
        x->experts += (size_t)a * L;
        olmoe_replay_summarize(v, x);
    }
    v->baseline_perplexity = baseline_ppl(v->baseline_nll, n, &v->baseline_scored);
    self_check(v);
    return 0;
}

void olmoe_replay_shard_view_free(olmoe_replay_run *v) {
    free(v->res);
    memset(v, 0, sizeof *v);
}

int olmoe_replay_shard_attrs(hid_t f, const olmoe_replay_run *r, const olmoe_replay_opts *o) {
    if (olmoe_h5_set_attr_i64(f, ".", RS_INDEX, o->shard_index) ||
        olmoe_h5_set_attr_i64(f, ".", RS_COUNT, o->shard_count) ||
        olmoe_h5_set_attr_i64(f, ".", RS_ROW_BEGIN, r->row_begin) ||
        olmoe_h5_set_attr_i64(f, ".", RS_ROW_END, r->row_end) ||
        olmoe_h5_set_attr_i64(f, ".", RS_RUN_TOKENS, r->n_tokens) ||
        olmoe_h5_set_attr_i64(f, ".", RS_RUN_CHUNKS, r->n_chunks_run) ||
        olmoe_h5_set_attr_i64(f, ".", RS_CHUNK, o->chunk_tokens > 0 ? o->chunk_tokens : 4096) ||
        olmoe_h5_set_attr_i64(f, ".", RS_TRACE_TOKENS, r->n_trace_tokens) ||
        olmoe_h5_set_attr_str(f, ".", RS_MODEL, r->model_checksum))
        return -1;
    return 0;
}

/* ---- merge ---- */

typedef struct {
    const char *path;
    hid_t f;
    int64_t index, count, row_begin, row_end, run_tokens, run_chunks, chunk, trace_tokens;
    char *model, *trace;
} rpart;

static int get_i64(rpart *p, const char *name, int64_t *v) {
    int e = olmoe_h5_has_attr(p->f, ".", name);
    if (e < 0) return olmoe_error_prefix("%s", p->path);
    if (!e)
        return olmoe_errorf("%s: no attribute '%s': not the results of olmoe-replay --shard", p->path,
                            name);
    if (olmoe_h5_get_attr_i64(p->f, ".", name, v) != 0) return olmoe_error_prefix("%s", p->path);
    return 0;
}

static int part_open(rpart *p, const char *path) {
    memset(p, 0, sizeof *p);
    p->path = path;
    static const char *const replay_format[] = {OLMOE_REPLAY_FORMAT, NULL};
    if ((p->f = olmoe_h5_open(path, 0)) < 0) return -1;
    if (olmoe_h5_check_format(p->f, path, replay_format, "an olmoe-replay results file (olmoe-replay --out)") != 0)
        return -1;
    if (get_i64(p, RS_INDEX, &p->index) || get_i64(p, RS_COUNT, &p->count) ||
        get_i64(p, RS_ROW_BEGIN, &p->row_begin) || get_i64(p, RS_ROW_END, &p->row_end) ||
        get_i64(p, RS_RUN_TOKENS, &p->run_tokens) || get_i64(p, RS_RUN_CHUNKS, &p->run_chunks) ||
        get_i64(p, RS_CHUNK, &p->chunk) || get_i64(p, RS_TRACE_TOKENS, &p->trace_tokens))
        return -1;
    if (olmoe_h5_get_attr_str(p->f, ".", RS_MODEL, &p->model) != 0 ||
        olmoe_h5_get_attr_str(p->f, ".", "trace", &p->trace) != 0)
        return olmoe_error_prefix("%s", path);
    if (p->count < 1 || p->index < 0 || p->index >= p->count || p->row_begin < 0 ||
        p->row_end <= p->row_begin || p->row_end > p->run_tokens)
        return olmoe_errorf("%s: inconsistent shard attributes (shard %lld/%lld, rows [%lld, %lld) "
                            "of %lld)", path, (long long)p->index, (long long)p->count,
                            (long long)p->row_begin, (long long)p->row_end, (long long)p->run_tokens);
    return 0;
}

static void part_close(rpart *p) {
    if (p->f > 0) olmoe_h5_close(p->f);
    free(p->model);
    free(p->trace);
    memset(p, 0, sizeof *p);
}

static int by_index(const void *a, const void *b) {
    const rpart *x = a, *y = b;
    return (x->index > y->index) - (x->index < y->index);
}

static int check_parts(rpart *p, int n) {
    for (int i = 1; i < n; i++) {
        const struct { const char *name; int64_t u, v; } c[] = {
            {RS_COUNT, p[0].count, p[i].count},
            {RS_RUN_TOKENS, p[0].run_tokens, p[i].run_tokens},
            {RS_RUN_CHUNKS, p[0].run_chunks, p[i].run_chunks},
            {RS_CHUNK, p[0].chunk, p[i].chunk},
            {RS_TRACE_TOKENS, p[0].trace_tokens, p[i].trace_tokens}};
        for (size_t k = 0; k < sizeof c / sizeof c[0]; k++)
            if (c[k].u != c[k].v)
                return olmoe_errorf("%s and %s: attribute '%s' differs (%lld, %lld): not shards of "
                                    "one run", p[0].path, p[i].path, c[k].name, (long long)c[k].u,
                                    (long long)c[k].v);
        if (strcmp(p[0].model, p[i].model) != 0)
            return olmoe_errorf("%s and %s: attribute '%s' differs: not shards of one run",
                                p[0].path, p[i].path, RS_MODEL);
    }
    if (p[0].count != n)
        return olmoe_errorf("a run of %lld shards, %d given", (long long)p[0].count, n);
    qsort(p, (size_t)n, sizeof *p, by_index);
    for (int i = 1; i < n; i++)
        if (p[i].index == p[i - 1].index)
            return olmoe_errorf("%s and %s: both are shard %lld/%lld", p[i - 1].path, p[i].path,
                                (long long)p[i].index, (long long)p[i].count);
    for (int i = 0; i < n; i++) {
        int64_t want = i ? p[i - 1].row_end : 0;
        if (p[i].row_begin != want)
            return olmoe_errorf("%s: shard %lld starts at row %lld, the shards before end at %lld "
                                "(a gap or overlap)", p[i].path, (long long)p[i].index,
                                (long long)p[i].row_begin, (long long)want);
    }
    if (p[n - 1].row_end != p[0].run_tokens)
        return olmoe_errorf("%s: the last shard ends at row %lld of %lld", p[n - 1].path,
                            (long long)p[n - 1].row_end, (long long)p[0].run_tokens);
    return 0;
}

/* the policy ids of a part's results under /replay or /exact, in id order */
typedef struct {
    char **name;
    int n;
} names;

static int list_results(hid_t f, const char *kind, names *out) {
    return olmoe_replay_h5_ids(f, kind, &out->name, &out->n);
}

static void free_names(names *x) {
    for (int i = 0; i < x->n; i++) free(x->name[i]);
    free(x->name);
    memset(x, 0, sizeof *x);
}

/* the run-wide inputs of the summaries, from the trace, as replay_run.c reads them */
static int load_trace(const char *path, const rpart *p0, olmoe_replay_run *r) {
    olmoe_trace *t = olmoe_trace_open(path);
    if (!t) return -1;
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    const olmoe_trace_meta *m = &in->meta;
    int rc = -1;
    int64_t N = p0->run_tokens;
    if (strcmp(m->model_checksum, p0->model) != 0 || in->n_tokens != p0->trace_tokens) {
        olmoe_errorf("%s: not the trace the shards replayed (model checksum %s, %lld tokens; the "
                     "shards: %s, %lld)", path, m->model_checksum, (long long)in->n_tokens,
                     p0->model, (long long)p0->trace_tokens);
        goto out;
    }
    r->n_layers = m->n_layers, r->n_experts = m->n_experts, r->hidden_size = m->hidden_size;
    r->vocab_size = m->vocab_size, r->top_k = m->top_k;
    r->n_tokens = N;
    r->row_begin = 0, r->row_end = N;
    r->n_trace_tokens = in->n_tokens;
    r->n_windows = in->n_windows;
    snprintf(r->trace_policy, sizeof r->trace_policy, "%s", m->policy);
    snprintf(r->model_checksum, sizeof r->model_checksum, "%s", m->model_checksum);
    int64_t need = N + 1 < in->n_tokens ? N + 1 : in->n_tokens;
    r->tokens = xcalloc((size_t)N + 2, sizeof *r->tokens);
    r->tokens[N] = -1; /* no next token past the trace */
    r->baseline_nll = xmalloc(xmul((size_t)N + 1, sizeof *r->baseline_nll));
    if (olmoe_trace_read_tokens(t, 0, need, r->tokens) != 0 ||
        olmoe_trace_read_nll(t, 0, N, r->baseline_nll) != 0)
        goto out;
    r->baseline_perplexity = baseline_ppl(r->baseline_nll, N, &r->baseline_scored);
    r->token_group = xmalloc(xmul((size_t)N + 1, sizeof *r->token_group));
    for (int64_t i = 0; i < N; i++) r->token_group[i] = -1;
    if (in->n_groups > 0 && in->n_documents > 0) {
        int64_t ng;
        if (olmoe_trace_read_groups(t, &r->group_names, &ng) != 0) goto out;
        r->n_groups = (int)ng;
        olmoe_trace_document *d = xmalloc(xmul((size_t)in->n_documents, sizeof *d));
        if (olmoe_trace_read_documents(t, 0, in->n_documents, d) != 0) {
            free(d);
            goto out;
        }
        for (int64_t k = 0; k < in->n_documents; k++) {
            if (d[k].group < 0 || d[k].group >= ng) continue;
            for (int64_t i = d[k].start; i < d[k].start + d[k].length && i < N; i++)
                if (i >= 0) r->token_group[i] = d[k].group;
        }
        free(d);
    }
    snprintf(r->self.policy, sizeof r->self.policy, "%s", m->policy);
    olmoe_policy canon;
    if (olmoe_policy_parse(m->policy, &canon) == 0)
        snprintf(r->self.policy, sizeof r->self.policy, "%s", canon.id);
    r->self.residual_dtype = "bfloat16";
    rc = 0;
out:
    olmoe_trace_close(t);
    return rc;
}

/* a part's rows of one dataset into the run's array at its row_begin */
static int read_rows(rpart *p, const char *g, const char *ds, olmoe_h5_kind kind, void *dst,
                     size_t elem, int64_t per_row) {
    char path[OLMOE_POLICY_ID_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", g, ds);
    size_t n = (size_t)((p->row_end - p->row_begin) * per_row);
    if (olmoe_h5_read(p->f, path, kind, (char *)dst + (size_t)p->row_begin * per_row * elem, n) != 0)
        return olmoe_error_prefix("%s", p->path);
    return 0;
}

static int read_u8_rows(rpart *p, const char *g, uint8_t *dst, int L) {
    char path[OLMOE_POLICY_ID_MAX + 64];
    snprintf(path, sizeof path, "%s/experts", g);
    hid_t ds = H5Dopen2(p->f, path, H5P_DEFAULT);
    if (ds < 0) return olmoe_errorf("%s: %s: cannot open", p->path, path);
    hid_t sp = H5Dget_space(ds);
    hsize_t d[2] = {0, 0};
    int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == 2 && H5Sget_simple_extent_dims(sp, d, NULL) >= 0 &&
             (int64_t)d[0] == p->row_end - p->row_begin && (int64_t)d[1] == L &&
             H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                     dst + (size_t)p->row_begin * L) >= 0;
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(ds);
    return ok ? 0 : olmoe_errorf("%s: %s: not uint8 [%lld, %d]", p->path, path,
                                 (long long)(p->row_end - p->row_begin), L);
}

/* result kind/id merged over the parts into res */
static int merge_result(rpart *p, int n, olmoe_replay_run *r, olmoe_replay_result *res,
                        olmoe_policy *pol, olmoe_replay_kind kind, const char *id) {
    int L = r->n_layers, E = r->n_experts;
    int64_t N = r->n_tokens;
    char g[OLMOE_POLICY_ID_MAX + 48];
    snprintf(g, sizeof g, "%s/%s", olmoe_replay_kind_name(kind), id);
    memset(res, 0, sizeof *res);
    if (olmoe_policy_parse(id, pol) != 0) return olmoe_error_prefix("%s: /%s", p[0].path, g);
    olmoe_policy_model pm = {L, E, 0, NULL, NULL, NULL, 0};
    if (olmoe_policy_bind(pol, &pm) != 0) { /* a null or calibration it needs: the sizes suffice */
        pol->bound = 1;
        pol->model.n_layers = L, pol->model.n_experts = E;
    }
    /* routing is the parts' own, read below */
    olmoe_replay_result_init(res, pol, kind, OLMOE_ROUTING_RECOMPUTE, N, L, E, r->n_groups, 1);
    int64_t *load = xmalloc((size_t)L * E * sizeof *load);
    int rc = -1;
    for (int i = 0; i < n; i++) {
        /* each part names its group itself: a name's suffix depends on what it held */
        char *path = NULL;
        int e = olmoe_result_find(p[i].f, olmoe_replay_kind_name(kind), id, &path);
        if (e == 1) snprintf(g, sizeof g, "%s", path);
        free(path);
        if (e <= 0) {
            if (e == 0)
                olmoe_errorf("%s: no /%s/%s (the shards ran other policies)", p[i].path,
                             olmoe_replay_kind_name(kind), id);
            else olmoe_error_prefix("%s", p[i].path);
            goto out;
        }
        char *routing = NULL, *device = NULL;
        double s = 0, cs = 0;
        if (olmoe_h5_get_attr_str(p[i].f, g, "routing", &routing) ||
            olmoe_h5_get_attr_str(p[i].f, g, "device", &device) ||
            olmoe_h5_get_attr_f64(p[i].f, g, "seconds", &s) ||
            olmoe_h5_get_attr_f64(p[i].f, g, "cpu_seconds", &cs)) {
            free(routing);
            free(device);
            olmoe_error_prefix("%s", p[i].path);
            goto out;
        }
        if (i == 0) {
            res->routing = strcmp(routing, "captured") == 0 ? OLMOE_ROUTING_CAPTURED
                                                            : OLMOE_ROUTING_RECOMPUTE;
            snprintf(res->device, sizeof res->device, "%s", device);
        } else if (strcmp(olmoe_replay_routing_name(res->routing), routing) != 0) {
            olmoe_errorf("%s: /%s routing %s, the first shard's %s", p[i].path, g, routing,
                         olmoe_replay_routing_name(res->routing));
            free(routing);
            free(device);
            goto out;
        }
        free(routing);
        free(device);
        res->seconds += s;
        res->cpu_seconds += cs;
        if (read_rows(&p[i], g, "nll", OLMOE_H5_F32, res->nll, sizeof(float), 1) ||
            read_rows(&p[i], g, "argmax", OLMOE_H5_I32, res->argmax, sizeof(int32_t), 1) ||
            read_u8_rows(&p[i], g, res->experts, L))
            goto out;
        char lp[OLMOE_POLICY_ID_MAX + 64];
        snprintf(lp, sizeof lp, "%s/load", g);
        if (olmoe_h5_read(p[i].f, lp, OLMOE_H5_I64, load, (size_t)L * E) != 0) {
            olmoe_error_prefix("%s", p[i].path);
            goto out;
        }
        for (int k = 0; k < L * E; k++) res->load[k] += load[k];
    }
    olmoe_replay_summarize(r, res);
    rc = 0;
out:
    free(load);
    return rc;
}

int olmoe_replay_merge(const char *trace_path, char *const *shard_paths, int n,
                       olmoe_replay_merged *m) {
    memset(m, 0, sizeof *m);
    m->n_shards = n;
    rpart *p = xcalloc((size_t)n, sizeof *p);
    names rn = {0}, en = {0};
    int rc = -1;
    for (int i = 0; i < n; i++)
        if (part_open(&p[i], shard_paths[i]) != 0) goto out;
    if (check_parts(p, n) != 0 || load_trace(trace_path, &p[0], &m->run) != 0) goto out;
    if (list_results(p[0].f, "replay", &rn) != 0 || list_results(p[0].f, "exact", &en) != 0) {
        olmoe_error_prefix("%s", p[0].path);
        goto out;
    }
    int total = rn.n + en.n;
    if (!total) {
        olmoe_errorf("%s: no results under /replay or /exact", p[0].path);
        goto out;
    }
    m->run.res = xcalloc((size_t)total, sizeof *m->run.res);
    m->policies = xcalloc((size_t)total, sizeof *m->policies);
    for (int k = 0; k < total; k++) {
        olmoe_replay_kind kind = k < rn.n ? OLMOE_KIND_REPLAY : OLMOE_KIND_EXACT;
        const char *id = k < rn.n ? rn.name[k] : en.name[k - rn.n];
        int r = merge_result(p, n, &m->run, &m->run.res[k], &m->policies[k], kind, id);
        m->run.n_results++; /* freed with the run whether merged or not */
        if (r != 0) goto out;
    }
    self_check(&m->run);
    if (olmoe_h5_exists(p[0].f, "validate") > 0) {
        if (olmoe_replay_validate(&m->run, &m->v) != 0) goto out;
        m->validate = 1;
    }
    if (olmoe_h5_get_attr_str(p[0].f, ".", "model_dir", &m->model_dir) != 0) m->model_dir = NULL;
    rc = 0;
out:
    free_names(&rn);
    free_names(&en);
    for (int i = 0; i < n; i++) part_close(&p[i]);
    free(p);
    if (rc != 0) olmoe_replay_merged_free(m);
    return rc;
}

void olmoe_replay_merged_free(olmoe_replay_merged *m) {
    if (m->validate) olmoe_replay_validation_free(&m->v);
    olmoe_replay_run_free(&m->run);
    free(m->policies);
    free(m->model_dir);
    memset(m, 0, sizeof *m);
}
