/* policy_file.c: the file family, routing read from an HDF5 routing file
 * (man/olmoe-trace.5, "Routing files"): per token of a trace and per layer,
 * the experts chosen and optionally their weights, made outside (a learned
 * router, a script, an oracle). The file is read and checked whole at bind;
 * routing then looks the token's row up by its position in the trace's token
 * stream, so the hook needs pos (olmoe_route_fn).
 *
 * Layout: attributes format = "olmoe-routing", version = 1;
 *   /experts int32 [N, L, K]  expert ids, each row's ids first, then -1
 *                             padding (1 <= count <= K, no repeats)
 *   /tokens  int32 [N]        the trace's token ids, checked at bind
 *   /weights float32 [N, L, K] optional; without it the weights are the
 *                             router's probabilities as norm= says (the
 *                             model's own rule by default), so a file that
 *                             holds top-k's experts reproduces top-k. */
#include "common.h"
#include "policy.h"
#include "policy_internal.h"
#include "traces.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct olmoe_routing_file {
    int64_t n;        /* tokens */
    int L, K;
    int32_t *experts; /* [n, L, K] */
    float *weights;   /* [n, L, K] or NULL */
    int32_t *count;   /* [n, L] ids before the padding */
};

static void routing_free(struct olmoe_routing_file *r) {
    if (!r) return;
    free(r->experts);
    free(r->weights);
    free(r->count);
    free(r);
}

void olmoe_policy_free_routing(olmoe_policy *p) {
    routing_free(p->routing);
    p->routing = NULL;
}

/* counts each row's ids and checks them: in range, padding only at the end, no repeats */
static int check_rows(struct olmoe_routing_file *r, int E) {
    const int L = r->L, K = r->K;
    r->count = xmalloc(xmul(xmul((size_t)r->n, (size_t)L), sizeof *r->count));
    for (int64_t t = 0; t < r->n; t++)
        for (int l = 0; l < L; l++) {
            const int32_t *ex = r->experts + ((size_t)t * L + l) * K;
            int c = 0;
            while (c < K && ex[c] != -1) c++;
            if (c == 0) return olmoe_errorf("/experts[%lld, %d]: no expert (every row needs 1 to %d)", (long long)t, l, K);
            for (int j = 0; j < K; j++) {
                if (j >= c && ex[j] != -1)
                    return olmoe_errorf("/experts[%lld, %d]: id %d after the -1 padding", (long long)t, l, ex[j]);
                if (j < c && (ex[j] < 0 || ex[j] >= E))
                    return olmoe_errorf("/experts[%lld, %d]: expert %d is outside [0, %d)", (long long)t, l, ex[j], E);
                for (int i = 0; i < j && j < c; i++)
                    if (ex[i] == ex[j])
                        return olmoe_errorf("/experts[%lld, %d]: expert %d twice", (long long)t, l, ex[j]);
            }
            if (r->weights)
                for (int j = 0; j < c; j++)
                    if (!isfinite(r->weights[((size_t)t * L + l) * K + j]))
                        return olmoe_errorf("/weights[%lld, %d, %d] is not finite", (long long)t, l, j);
            r->count[(size_t)t * L + l] = c;
        }
    return 0;
}

/* the format attributes, /experts' shape, /tokens against the trace's */
static int read_checked(hid_t f, const olmoe_policy_model *m, struct olmoe_routing_file *r) {
    char *fmt = NULL;
    int64_t ver = 0;
    if (olmoe_h5_get_attr_str(f, ".", "format", &fmt) != 0 || strcmp(fmt, "olmoe-routing") != 0) {
        free(fmt);
        return olmoe_errorf("not a routing file (attribute format = \"olmoe-routing\" missing; man "
                            "olmoe-trace.5 shows how to write one)");
    }
    free(fmt);
    if (olmoe_h5_get_attr_i64(f, ".", "version", &ver) != 0 || ver != 1)
        return olmoe_errorf("routing file version %lld; this build reads version 1", (long long)ver);
    int rank;
    int64_t d[OLMOE_H5_MAX_RANK];
    if (olmoe_h5_read_alloc(f, "experts", OLMOE_H5_I32, (void **)&r->experts, &rank, d) != 0) return -1;
    if (rank != 3 || d[1] != m->n_layers || d[2] < 1 || d[2] > m->n_experts)
        return olmoe_errorf("/experts must be [tokens, %d layers, K] with 1 <= K <= %d, got rank %d "
                            "[%lld, %lld, %lld]", m->n_layers, m->n_experts, rank, (long long)d[0],
                            (long long)(rank > 1 ? d[1] : 0), (long long)(rank > 2 ? d[2] : 0));
    r->n = d[0], r->L = (int)d[1], r->K = (int)d[2];
    int has_w = olmoe_h5_exists(f, "weights");
    if (has_w < 0) return -1;
    int64_t wd[OLMOE_H5_MAX_RANK];
    if (has_w) {
        if (olmoe_h5_read_alloc(f, "weights", OLMOE_H5_F32, (void **)&r->weights, &rank, wd) != 0) return -1;
        if (rank != 3 || wd[0] != d[0] || wd[1] != d[1] || wd[2] != d[2])
            return olmoe_errorf("/weights must have the shape of /experts [%lld, %d, %d]", (long long)r->n,
                                r->L, r->K);
    }
    if (r->n != m->n_tokens)
        return olmoe_errorf("/experts has %lld tokens, the trace %lld", (long long)r->n,
                            (long long)m->n_tokens);
    int32_t *tok = NULL;
    if (olmoe_h5_read_alloc(f, "tokens", OLMOE_H5_I32, (void **)&tok, &rank, wd) != 0) return -1;
    int rc = 0;
    if (rank != 1 || wd[0] != r->n) {
        rc = olmoe_errorf("/tokens must be [%lld], one id per token of the trace", (long long)r->n);
    } else {
        for (int64_t t = 0; t < r->n && rc == 0; t++)
            if (tok[t] != m->tokens[t])
                rc = olmoe_errorf("/tokens[%lld] is %d, the trace has %d there (a routing file of "
                                  "another trace?)", (long long)t, tok[t], m->tokens[t]);
    }
    free(tok);
    return rc ? rc : check_rows(r, m->n_experts);
}

int olmoe_policy_bind_file(olmoe_policy *p) {
    olmoe_policy_free_routing(p);
    if (!p->model.tokens)
        return olmoe_errorf("a routing file is read by token position and checked against a "
                            "trace's tokens, which this command does not give");
    struct olmoe_routing_file *r = xcalloc(1, sizeof *r);
    hid_t f = olmoe_h5_open(p->path, 0);
    int rc = f < 0 ? -1 : read_checked(f, &p->model, r);
    if (f >= 0) olmoe_h5_close(f);
    if (rc != 0) {
        routing_free(r);
        /* an open failure's message names the file already */
        return f < 0 ? -1 : olmoe_error_prefix("%s", p->path);
    }
    olmoe_hasher *h = olmoe_hasher_new();
    olmoe_hasher_feed(h, p->model.tokens, (size_t)r->n * sizeof *p->model.tokens);
    olmoe_hasher_feed(h, r->experts, (size_t)r->n * r->L * r->K * sizeof *r->experts);
    if (r->weights) olmoe_hasher_feed(h, r->weights, (size_t)r->n * r->L * r->K * sizeof *r->weights);
    olmoe_hash sum;
    olmoe_hasher_end(h, &sum);
    if (p->sum[0] && strncmp(p->sum, sum.hex, 12) != 0) {
        routing_free(r);
        return olmoe_errorf("%s: checksum %.12s, the policy says sum=%s (the file changed?)", p->path, sum.hex,
                            p->sum);
    }
    snprintf(p->sum, sizeof p->sum, "%.12s", sum.hex);
    p->routing = r;
    p->min_k = 1, p->max_k = r->K;
    return olmoe_policy_make_id(p);
}

int olmoe_policy_route_file(const olmoe_policy *pol, int layer, int64_t pos, const float *r, int E,
                            int *ex, float *w) {
    const struct olmoe_routing_file *f = pol->routing;
    if (pos < 0 || pos >= f->n)
        return olmoe_errorf("%s: token position %lld is outside the routing file's %lld tokens%s",
                            pol->path, (long long)pos, (long long)f->n,
                            pos < 0 ? " (this command does not say which token it routes)" : "");
    size_t row = ((size_t)pos * f->L + layer) * f->K;
    int K = f->count[(size_t)pos * f->L + layer];
    for (int j = 0; j < K; j++) ex[j] = f->experts[row + j];
    if (!w) return K;
    if (f->weights) {
        memcpy(w, f->weights + row, (size_t)K * sizeof *w);
    } else {
        float p[OLMOE_POLICY_MAX_E];
        olmoe_policy_softmax(r, E, 1.0f, p);
        olmoe_policy_put_weights(pol, p, ex, K, w);
    }
    return K;
}
