/* cmd_inputs.c: see cmd_inputs.h. Every function returns 0, or -1 with
 * olmoe_error() set and nothing left allocated. */
#include "cmd_inputs.h"

#include <stdlib.h>
#include <string.h>

int olmoe_cmd_reserve(olmoe_cmd_output *r, const char *path, int force, int text) {
    r->used = 0;
    if (!path) return 0;
    if ((text ? olmoe_out_begin_text : olmoe_out_begin)(&r->out, path, force) != 0) return -1;
    r->used = 1;
    return 0;
}

int olmoe_cmd_commit(olmoe_cmd_output *r) {
    return r->used && olmoe_out_commit(&r->out) != 0 ? -1 : 0;
}

int olmoe_cmd_empirical(olmoe_trace *t, int64_t N, long max_per_expert, olmoe_policy_empirical *emp) {
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    int L = in->meta.n_layers, E = in->meta.n_experts;
    if (olmoe_policy_empirical_init(emp, L, E, N, max_per_expert) != 0) return -1;
    char b[32];
    notef("empirical null: %lld tokens per expert (every %lld-th), %s", (long long)emp->n,
          (long long)emp->stride, olmoe_fmt_bytes((double)emp->n * L * E * 4, b, sizeof b));
    const int64_t C = 1024;
    float *buf = xmalloc(xmul(xmul((size_t)C, (size_t)L * E), sizeof *buf));
    int rc = 0;
    for (int64_t s = 0; s < N && rc == 0; s += C) {
        int64_t n = N - s < C ? N - s : C;
        rc = olmoe_trace_read_router_logits(t, s, n, buf);
        if (rc == 0) olmoe_policy_empirical_add(emp, s, buf, n);
    }
    free(buf);
    if (rc == 0 && olmoe_policy_empirical_finish(emp) != 0) {
        olmoe_errorf("%s: %s", olmoe_trace_path(t), olmoe_error());
        rc = -1;
    }
    if (rc != 0) olmoe_policy_empirical_free(emp);
    return rc;
}

int olmoe_cmd_trace_tokens(olmoe_trace *t, const olmoe_policy_set *set, olmoe_policy_model *m,
                           int32_t **tokens) {
    *tokens = NULL;
    int any = 0;
    for (int i = 0; i < set->n; i++) any |= set->items[i].family->route_at != NULL;
    if (!any) return 0;
    int64_t N = olmoe_trace_info_of(t)->n_tokens;
    int32_t *tok = xmalloc(xmul((size_t)(N ? N : 1), sizeof *tok));
    if (N && olmoe_trace_read_tokens(t, 0, N, tok) != 0) {
        free(tok);
        return -1;
    }
    m->tokens = tok, m->n_tokens = N;
    *tokens = tok;
    return 0;
}

int olmoe_cmd_empirical_cli(const olmoe_policy_cli *cli, olmoe_trace *t, int64_t N,
                            olmoe_policy_empirical *emp) {
    if (!cli->empirical) return olmoe_cmd_empirical(t, N, cli->empirical_max, emp);
    olmoe_trace *e = olmoe_trace_open(cli->empirical);
    if (!e) return olmoe_error_prefix("--empirical");
    const olmoe_trace_meta *a = &olmoe_trace_info_of(t)->meta, *b = &olmoe_trace_info_of(e)->meta;
    int rc = 0;
    if (a->n_layers != b->n_layers || a->n_experts != b->n_experts)
        rc = olmoe_errorf("--empirical %s: a trace of %d layers x %d experts, %s has %d x %d",
                          cli->empirical, b->n_layers, b->n_experts, olmoe_trace_path(t),
                          a->n_layers, a->n_experts);
    else
        rc = olmoe_cmd_empirical(e, olmoe_trace_info_of(e)->n_tokens, cli->empirical_max, emp);
    olmoe_trace_close(e);
    return rc;
}

int olmoe_cmd_load_null(const char *kde_path, const char *trace_path, const olmoe_trace_meta *tm,
                        olmoe_kde_null *null, olmoe_kde_cdf *cdf) {
    if (olmoe_kde_read(kde_path, null) != 0) return -1;
    if (olmoe_kde_null_check_depth(null, kde_path, trace_path, tm->n_layers) != 0) {
        olmoe_kde_null_free(null);
        return -1;
    }
    if (null->model_checksum[0] && tm->model_checksum[0] &&
        strcmp(null->model_checksum, tm->model_checksum) != 0)
        warnf("%s: fitted on a trace of another model (checksum %.12s..., this trace %.12s...)",
              kde_path, null->model_checksum, tm->model_checksum);
    if (olmoe_kde_cdf_init(cdf, null, tm->n_layers) != 0) {
        olmoe_errorf("%s: %s", kde_path, olmoe_error());
        olmoe_kde_null_free(null);
        return -1;
    }
    return 0;
}
