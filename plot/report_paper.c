/* report_paper.c: the report's error bars and headroom: a 95 % paired
 * bootstrap interval over documents (analyze/bootstrap.h) for every stored
 * exact (else replay) perplexity and its ratio to the captured baseline, and
 * the headroom of the exact top-k ladder (analyze/headroom.h) beside any
 * realised oracle (an exact file(...) policy). Stored per-token NLLs are read
 * through replay_h5.c's reader, like every other reader of results. */
#include "analyze.h"
#include "report_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define REP_SEED 1
#define REP_RESAMPLES 1000

/* the policy's per-token NLL of kind from the first input that has it */
static float *stored_nll(const olmoe_report_data *d, const char *kind, const char *id, int64_t N) {
    for (int i = 0; i < d->n_inputs; i++) {
        float *x = NULL;
        int64_t n = 0;
        int rc = olmoe_replay_h5_read_nll(d->h5[i], kind, id, &x, &n);
        if (rc == 1 && n == N) return x;
        free(x);
    }
    return NULL;
}

static void ci_table(FILE *md, const olmoe_report_data *d, olmoe_boot_units *u, const float *base, int64_t N) {
    fprintf(md, "\n## Error bars\n\nPaired bootstrap over the trace's %lld %ss (tokens of one %s are not "
                "independent, so the %s is the unit drawn with replacement), %d resamples, seed %d: 95 %% "
                "intervals of the perplexity and of Δ vs the captured baseline (same draws for both). "
                "\"supported\": the interval of Δ excludes 0 by more than 1e-6 (rounding).\n\n",
            (long long)u->n_units, u->unit, u->unit, u->unit, REP_RESAMPLES, REP_SEED);
    fprintf(md, "| policy | kind | perplexity | 95 %% interval | Δ vs baseline | 95 %% interval | supported |\n");
    fprintf(md, "| --- | --- | ---: | ---: | ---: | ---: | --- |\n");
    for (int i = 0; i < d->n_policies; i++) {
        const char *kind = d->pol[i].res[OLMOE_REPORT_EXACT].present ? "exact"
                           : d->pol[i].res[OLMOE_REPORT_REPLAY].present ? "replay" : NULL;
        float *x = kind ? stored_nll(d, kind, d->pol[i].id, N) : NULL;
        if (!x) continue;
        olmoe_boot_units_fill(u, x, base, N);
        olmoe_boot_result r;
        if (olmoe_boot_paired(u, REP_RESAMPLES, REP_SEED, &r) == 0)
            fprintf(md, "| `%s` | %s | %.4f | [%.4f, %.4f] | %+.3f %% | [%+.3f %%, %+.3f %%] | %s |\n", d->pol[i].id,
                    kind, r.ppl_a, r.ppl_a_lo, r.ppl_a_hi, 100 * r.delta, 100 * r.delta_lo, 100 * r.delta_hi,
                    r.delta_lo > 1e-6 || r.delta_hi < -1e-6 ? "yes" : "no");
        free(x);
    }
}

static void headroom_table(FILE *md, const olmoe_report_data *d, const float *base, int64_t N) {
    olmoe_headroom_in in = {.base = base, .k_base = d->top_k, .N = N};
    float *own[OLMOE_HEADROOM_MAX_K] = {0};
    for (int k = 1; k < d->top_k && in.n_k < OLMOE_HEADROOM_MAX_K; k++) {
        char id[64];
        snprintf(id, sizeof id, "topk(k=%d,norm=model)", k);
        float *x = stored_nll(d, "exact", id, N);
        if (!x) continue;
        own[in.n_k] = x, in.ks[in.n_k] = k, in.nll[in.n_k++] = x;
    }
    if (in.n_k == 0) return;
    fprintf(md, "\n## Headroom\n\nFrom the exact top-k ladder (k =");
    for (int j = 0; j < in.n_k; j++) fprintf(md, " %d", in.ks[j]);
    fprintf(md, "): per token k* = the smallest k whose NLL is within ε of the baseline's (top-%d); the "
                "oracle routes each token with its own k* at every layer, assuming the tokens' choices do not "
                "interact (`olmoe-analyze headroom`).\n\n| ε (nats) | mean k* | oracle perplexity | Δ vs baseline |",
            d->top_k);
    for (int j = 0; j <= in.n_k; j++) fprintf(md, " k*=%d |", j < in.n_k ? in.ks[j] : d->top_k);
    fprintf(md, "\n| ---: | ---: | ---: | ---: |");
    for (int j = 0; j <= in.n_k; j++) fprintf(md, " ---: |");
    fprintf(md, "\n");
    static const double eps[] = {0.01, 0.1};
    for (int e = 0; e < 2; e++) {
        olmoe_headroom h;
        if (olmoe_headroom_compute(&in, eps[e], &h) != 0) break;
        fprintf(md, "| %g | %.3f | %.4f | %+.2f %% |", eps[e], h.mean_k, h.ppl_oracle,
                100 * (h.ppl_oracle / h.ppl_base - 1));
        for (int j = 0; j <= in.n_k; j++) fprintf(md, " %.1f %% |", 100.0 * (double)h.count[j] / (double)h.n_scored);
        fprintf(md, "\n");
        olmoe_headroom_free(&h);
    }
    int any = 0;
    for (int i = 0; i < d->n_policies; i++) {
        const olmoe_report_result *r = &d->pol[i].res[OLMOE_REPORT_EXACT];
        if (!r->present || strncmp(d->pol[i].id, "file(", 5) != 0) continue;
        if (!any++)
            fprintf(md, "\nRealised through a routing file and `--exact` (the choices interact):\n\n"
                        "| routing file | experts/token | perplexity | Δ vs baseline |\n| --- | ---: | ---: | ---: |\n");
        fprintf(md, "| `%s` | %.3f | %.4f | %+.2f %% |\n", d->pol[i].id, r->mean_k, r->perplexity,
                100 * (r->perplexity / d->baseline_ppl - 1));
    }
    for (int j = 0; j < in.n_k; j++) free(own[j]);
}

int rep_paper_sections(FILE *md, const olmoe_report_data *d) {
    if (!d->trace) return 0;
    int64_t N = olmoe_trace_info_of(d->trace)->n_tokens;
    if (N < 1) return 0;
    float *base = xmalloc(xmul((size_t)N, sizeof *base));
    olmoe_boot_units u;
    if (olmoe_trace_read_nll(d->trace, 0, N, base) != 0 || olmoe_boot_trace_units(d->trace, &u) != 0) {
        free(base);
        return -1;
    }
    ci_table(md, d, &u, base, N);
    headroom_table(md, d, base, N);
    olmoe_boot_units_free(&u);
    free(base);
    return 0;
}
