/* replay_output.c: replay and exact results as a table on stdout, JSON
 * (jansson) and CSV. Every number comes from the run's summaries, so the
 * three agree with each other and with the HDF5 results. */
#include "common.h"
#include "replay.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const legend =
    "# replay = frozen-attention replay, an optimistic estimate (attention keeps its captured "
    "value, so it never sees the effect of a policy on earlier layers); exact = the full forward "
    "pass under the policy\n";

void olmoe_replay_print(const olmoe_replay_run *r, const olmoe_replay_validation *v, FILE *f) {
    fprintf(f, "# %lld tokens (%lld scored) in %lld windows; baseline %s: perplexity %.4f (captured)\n",
            (long long)r->n_tokens, (long long)r->baseline_scored, (long long)r->n_windows,
            r->trace_policy, r->baseline_perplexity);
    fputs(legend, f);
    const olmoe_replay_selfcheck *s = &r->self;
    if (s->done)
        fprintf(f, "# self-check: replay of %s against the captured NLL (%s residuals): max |diff| "
                   "%.3g (relative %.3g), mean %.3g; perplexity %+.3g, mean NLL %+.3g relative\n",
                s->policy, s->residual_dtype, s->max_abs_diff, s->max_rel_diff, s->mean_abs_diff,
                s->ppl_rel_diff, s->nll_rel_diff);
    else if (r->n_results && r->res[0].kind == OLMOE_KIND_REPLAY)
        fprintf(f, "# self-check not done: %s\n", s->why_not);
    fprintf(f, "%-6s %-58s %10s %8s %6s %6s %7s %9s %9s %9s\n", "kind", "policy", "perplexity",
            "vs_base", "acc", "mean_k", "saved", "seconds", "cpu_s", "tokens/s");
    for (int i = 0; i < r->n_results; i++) {
        const olmoe_replay_result *res = &r->res[i];
        if (!res->stored) continue;
        const olmoe_replay_summary *a = &res->all;
        fprintf(f, "%-6s %-58s %10.4f %+7.2f%% %6.4f %6.3f %6.1f%% %9.2f %9.2f %9.0f\n",
                olmoe_replay_kind_name(res->kind), res->policy->id, a->perplexity,
                100 * (a->perplexity / r->baseline_perplexity - 1), a->accuracy, a->mean_k,
                100 * a->compute_saved, res->seconds, res->cpu_seconds,
                res->seconds > 0 ? (double)r->n_tokens / res->seconds : 0.0);
    }
    if (!v) return;
    fprintf(f, "\n# validation: replay against exact, rel_diff = replay / exact perplexity - 1 "
               "(negative: replay is optimistic); nll_corr, nll_mad: Pearson and mean |diff| of "
               "the per-token NLL\n");
    fprintf(f, "%-58s %10s %10s %8s %8s %8s %9s %9s\n", "policy", "replay_ppl", "exact_ppl",
            "rel_diff", "nll_corr", "nll_mad", "replay_s", "exact_s");
    for (int i = 0; i < v->n; i++)
        fprintf(f, "%-58s %10.4f %10.4f %+7.2f%% %8.5f %8.5f %9.2f %9.2f\n", v->policy[i],
                v->replay_ppl[i], v->exact_ppl[i], 100 * v->rel_diff[i], v->nll_corr[i],
                v->nll_mad[i], v->replay_seconds[i], v->exact_seconds[i]);
    fprintf(f, "# ranking of the %d policies by perplexity: %s (Kendall tau-b %.4f)", v->n,
            v->ranking_agrees ? "replay and exact agree" : "replay and exact DISAGREE",
            v->kendall_tau);
    if (!v->ranking_agrees)
        fprintf(f, "; %d of %d pairs ordered differently, the widest %.3g %% apart in exact perplexity",
                v->n_discordant, v->n * (v->n - 1) / 2, 100 * v->widest_discordant);
    fputc('\n', f);
}

/* ---- JSON ---- */

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *summary_json(const olmoe_replay_summary *s) {
    json_t *o = json_object();
    json_object_set_new(o, "n_scored", json_integer((json_int_t)s->n_scored));
    json_object_set_new(o, "nll_sum", num(s->nll_sum));
    json_object_set_new(o, "perplexity", num(s->perplexity));
    json_object_set_new(o, "accuracy", num(s->accuracy));
    json_object_set_new(o, "mean_k", num(s->mean_k));
    json_object_set_new(o, "sd_k", num(s->sd_k));
    json_object_set_new(o, "share_min_k", num(s->share_min_k));
    json_object_set_new(o, "share_max_k", num(s->share_max_k));
    json_object_set_new(o, "compute_saved", num(s->compute_saved));
    return o;
}

static json_t *doubles(const double *v, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, num(v[i]));
    return a;
}

static json_t *result_json(const olmoe_replay_run *r, const olmoe_replay_result *res) {
    json_t *o = summary_json(&res->all);
    json_object_set_new(o, "policy", olmoe_json_str(res->policy->id));
    json_object_set_new(o, "family", olmoe_json_str(res->policy->family->name));
    json_object_set_new(o, "kind", olmoe_json_str(olmoe_replay_kind_name(res->kind)));
    json_object_set_new(o, "routing", olmoe_json_str(olmoe_replay_routing_name(res->routing)));
    json_object_set_new(o, "device", olmoe_json_str(res->device));
    json_object_set_new(o, "seconds", num(res->seconds));
    json_object_set_new(o, "cpu_seconds", num(res->cpu_seconds));
    json_object_set_new(o, "tokens_per_second",
                        num(res->seconds > 0 ? (double)r->n_tokens / res->seconds : NAN));
    json_object_set_new(o, "mean_k_layer", doubles(res->mean_k_layer, r->n_layers));
    if (r->boot_resamples > 0) {
        json_object_set_new(o, "perplexity_ci", doubles(res->ci, 2));
        json_object_set_new(o, "delta_ci", doubles(res->ci + 2, 2));
    }
    json_t *g = json_array();
    for (int k = 0; k < r->n_groups; k++) {
        json_t *one = summary_json(&res->group[k]);
        json_object_set_new(one, "group", olmoe_json_str(r->group_names[k]));
        json_array_append_new(g, one);
    }
    json_object_set_new(o, "groups", g);
    return o;
}

static json_t *validation_json(const olmoe_replay_validation *v) {
    json_t *o = json_object(), *rows = json_array();
    for (int i = 0; i < v->n; i++) {
        json_t *row = json_object();
        json_object_set_new(row, "policy", olmoe_json_str(v->policy[i]));
        json_object_set_new(row, "replay_ppl", num(v->replay_ppl[i]));
        json_object_set_new(row, "exact_ppl", num(v->exact_ppl[i]));
        json_object_set_new(row, "rel_diff", num(v->rel_diff[i]));
        json_object_set_new(row, "nll_corr", num(v->nll_corr[i]));
        json_object_set_new(row, "nll_mad", num(v->nll_mad[i]));
        json_object_set_new(row, "replay_seconds", num(v->replay_seconds[i]));
        json_object_set_new(row, "exact_seconds", num(v->exact_seconds[i]));
        json_array_append_new(rows, row);
    }
    json_object_set_new(o, "policies", rows);
    json_object_set_new(o, "ranking_agrees", json_boolean(v->ranking_agrees));
    json_object_set_new(o, "kendall_tau", num(v->kendall_tau));
    json_object_set_new(o, "discordant_pairs", json_integer(v->n_discordant));
    json_object_set_new(o, "widest_discordant_gap", num(v->widest_discordant));
    return o;
}

int olmoe_replay_write_json(const olmoe_replay_run *r, const olmoe_replay_validation *v,
                            const char *path, const char *trace_path, const char *model_dir,
                            const char *kde_path) {
    json_t *root = json_object();
    json_object_set_new(root, "format", olmoe_json_str(OLMOE_REPLAY_FORMAT));
    json_object_set_new(root, "format_version", json_integer(OLMOE_REPLAY_FORMAT_VERSION));
    json_object_set_new(root, "trace", olmoe_json_str(trace_path));
    json_object_set_new(root, "model", olmoe_json_str(model_dir));
    json_object_set_new(root, "model_checksum", olmoe_json_str(r->model_checksum));
    json_object_set_new(root, "kde", kde_path ? olmoe_json_str(kde_path) : json_null());
    json_object_set_new(root, "n_tokens", json_integer((json_int_t)r->n_tokens));
    json_object_set_new(root, "n_layers", json_integer(r->n_layers));
    json_object_set_new(root, "n_experts", json_integer(r->n_experts));
    json_object_set_new(root, "baseline_top_k", json_integer(r->top_k));
    json_object_set_new(root, "baseline_policy", olmoe_json_str(r->trace_policy));
    json_object_set_new(root, "baseline_perplexity", num(r->baseline_perplexity));
    json_object_set_new(root, "baseline_n_scored", json_integer((json_int_t)r->baseline_scored));
    json_object_set_new(root, "note",
                        json_string("kind replay: frozen-attention replay, optimistic; kind exact: "
                                    "the full forward pass"));
    const olmoe_replay_selfcheck *s = &r->self;
    json_t *sc = json_object();
    json_object_set_new(sc, "policy", olmoe_json_str(s->policy));
    json_object_set_new(sc, "done", json_boolean(s->done));
    if (s->done) {
        json_object_set_new(sc, "residual_dtype", olmoe_json_str(s->residual_dtype));
        json_object_set_new(sc, "max_abs_nll_diff", num(s->max_abs_diff));
        json_object_set_new(sc, "max_rel_nll_diff", num(s->max_rel_diff));
        json_object_set_new(sc, "mean_abs_nll_diff", num(s->mean_abs_diff));
        json_object_set_new(sc, "ppl_rel_diff", num(s->ppl_rel_diff));
        json_object_set_new(sc, "mean_nll_rel_diff", num(s->nll_rel_diff));
    } else {
        json_object_set_new(sc, "why_not", olmoe_json_str(s->why_not));
    }
    json_object_set_new(root, "self_check", sc);
    json_t *g = json_array();
    for (int k = 0; k < r->n_groups; k++) json_array_append_new(g, olmoe_json_str(r->group_names[k]));
    json_object_set_new(root, "groups", g);
    json_t *res = json_array();
    for (int i = 0; i < r->n_results; i++)
        if (r->res[i].stored) json_array_append_new(res, result_json(r, &r->res[i]));
    json_object_set_new(root, "results", res);
    if (v) json_object_set_new(root, "validate", validation_json(v));
    if (r->boot_resamples > 0) {
        json_t *b = json_object();
        json_object_set_new(b, "unit", olmoe_json_str(r->boot_unit));
        json_object_set_new(b, "n_units", json_integer((json_int_t)r->boot_units));
        json_object_set_new(b, "resamples", json_integer(r->boot_resamples));
        json_object_set_new(b, "seed", json_integer((json_int_t)r->boot_seed));
        json_object_set_new(b, "level", num(0.95));
        json_object_set_new(b, "note", json_string("paired bootstrap over units against the captured baseline; "
                                                   "delta = perplexity / baseline perplexity - 1"));
        json_object_set_new(root, "bootstrap", b);
    }
    int rc = olmoe_json_write(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(10), path);
    json_decref(root);
    return rc;
}

/* ---- CSV ---- */

static void csv_row(FILE *f, const olmoe_replay_result *res, const char *group,
                    const olmoe_replay_summary *s, double seconds, double tps, const double *ci) {
    fprintf(f, "%s,", olmoe_replay_kind_name(res->kind));
    olmoe_csv_field(f, res->policy->id);
    fputc(',', f);
    olmoe_csv_field(f, group);
    fprintf(f, ",%s,", olmoe_replay_routing_name(res->routing));
    olmoe_csv_field(f, res->device);
    fprintf(f, ",%lld,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g,%.10g\n",
            (long long)s->n_scored, s->perplexity, s->accuracy, s->mean_k, s->sd_k, s->share_min_k,
            s->share_max_k, s->compute_saved, seconds, tps, ci[0], ci[1], ci[2], ci[3]);
}

int olmoe_replay_write_csv(const olmoe_replay_run *r, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return olmoe_errorf("%s: cannot write", path);
    fprintf(f, "kind,policy,group,routing,device,n_scored,perplexity,accuracy,mean_k,sd_k,"
               "share_min_k,share_max_k,compute_saved,seconds,tokens_per_second,ppl_lo,ppl_hi,delta_lo,"
               "delta_hi\n");
    static const double none[4] = {NAN, NAN, NAN, NAN};
    for (int i = 0; i < r->n_results; i++) {
        const olmoe_replay_result *res = &r->res[i];
        if (!res->stored) continue;
        double tps = res->seconds > 0 ? (double)r->n_tokens / res->seconds : NAN;
        csv_row(f, res, "all", &res->all, res->seconds, tps, res->ci);
        for (int k = 0; k < r->n_groups; k++)
            csv_row(f, res, r->group_names[k], &res->group[k], NAN, NAN, none);
    }
    return olmoe_fclose_out(f, path);
}
