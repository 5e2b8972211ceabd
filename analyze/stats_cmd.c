/* stats_cmd.c: olmoe-replay --mode stats: policies applied to a trace's
 * captured router logits (no model), routing statistics out.
 *
 * Order: options -> policies parsed and validated -> outputs reserved
 * (.partial names; existing ones refused without --force) -> trace opened,
 * nulls loaded, policies bound (all errors so far come before any work) ->
 * empirical null built if a policy needs it (one extra pass) -> one pass
 * routing every policy -> outputs committed. */
#include "cmd_inputs.h"
#include "common.h"
#include "opt.h"
#include "stats.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: olmoe-replay TRACE --mode stats (--policy SPEC | --sweep NAME|FILE) [options]\n"
    "\n"
    "Applies routing policies to the trace's captured router logits, without the\n"
    "model: experts per token, expert load, overlap with the baseline top-k, expert\n"
    "compute relative to the baseline; overall, per layer and per document group.";

static const char *mode, *json_path, *csv_path, *out_path;
static long max_tokens = 0;
static int store, force, quiet, per_layer;

int olmoe_replay_stats_main(int argc, char **argv) {
    static olmoe_policy_cli cli;
    enum { OWN = 12 };
    olmoe_opt opts[OWN + OLMOE_POLICY_CLI_NOPTS + 1] = {
        OPT_STRING("mode", &mode, "MODE", "stats"),
        OPT_STRING("json", &json_path, "FILE", "write the statistics as JSON"),
        OPT_STRING("csv", &csv_path, "FILE", "write summaries as CSV (policy x group x layer)"),
        OPT_FLAG("store", &store, "store the results beside the trace (TRACE.results.h5, /stats/<policy id>)"),
        OPT_STRING("out", &out_path, "FILE", "store the results in a new HDF5 file instead"),
        OPT_LONG_RANGE("max-tokens", &max_tokens, "N", "only the first N tokens", 1, 1L << 62),
        OPT_FLAG("per-layer", &per_layer, "print a row per layer too"),
        OPT_FLAG("force", &force, "overwrite existing outputs and /stats groups"),
        OPT_FLAG("quiet", &quiet, "no notes or progress"),
        OPT_END};
    int own = 0;
    while (opts[own].name) own++;
    own += olmoe_policy_cli_options(&cli, opts + own, OLMOE_POLICY_CLI_SWEEP);
    opts[own] = (olmoe_opt)OPT_END;

    char *command = olmoe_join_argv(argc, argv);
    int npos = olmoe_opt_parse(argc, argv, opts, usage);
    olmoe_quiet = quiet;
    if (npos != 1) die_usage(npos ? "one trace, please" : "which trace? (olmoe-replay TRACE --mode stats ...)");
    if (store && out_path) die_usage("--store and --out: choose one place for the results");
    olmoe_policy_set set = {0};
    if (olmoe_policy_cli_build(&cli, &set) != 0) die_usage("%s", olmoe_error());
    const char *trace_path = argv[0];

    olmoe_cmd_output rj, rc, ro;
    olmoe_cmd_reserve(&rj, json_path, force);
    olmoe_cmd_reserve(&rc, csv_path, force);
    olmoe_cmd_reserve(&ro, out_path, force);

    olmoe_trace *t = olmoe_trace_open(trace_path);
    if (!t) die("%s", olmoe_error());
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    if (!in->complete) warnf("%s: the trace is incomplete (its capture did not finish)", trace_path);
    int64_t N = in->n_tokens;
    if (max_tokens > 0 && max_tokens < N) N = max_tokens;

    olmoe_kde_null null;
    olmoe_kde_cdf cdf;
    memset(&null, 0, sizeof null);
    memset(&cdf, 0, sizeof cdf);
    olmoe_policy_model m = {in->meta.n_layers, in->meta.n_experts, in->meta.norm_topk_prob, NULL, NULL, NULL, 0};
    if (cli.kde) {
        if (olmoe_kde_read(cli.kde, &null) != 0) die("%s", olmoe_error());
        if (null.n_layers != m.n_layers)
            die("%s: fitted to a model of %d layers, %s has %d", cli.kde, null.n_layers,
                trace_path, m.n_layers);
        if (null.model_checksum[0] && in->meta.model_checksum[0] &&
            strcmp(null.model_checksum, in->meta.model_checksum) != 0)
            warnf("%s: fitted on a trace of another model (checksum %.12s..., this trace %.12s...)",
                  cli.kde, null.model_checksum, in->meta.model_checksum);
        if (olmoe_kde_cdf_init(&cdf, &null, m.n_layers) != 0) die("%s: %s", cli.kde, olmoe_error());
        m.null = &cdf;
    } else if (olmoe_policy_set_needs(&set, OLMOE_PVALUE_KDE)) {
        die_usage("pvalue=kde needs --kde NULL.h5 (make one with olmoe-kde fit %s --out null.h5), "
                  "or use --pvalue pseudo|empirical", trace_path);
    }
    olmoe_policy_empirical emp;
    memset(&emp, 0, sizeof emp);
    /* bind before the empirical pass so that bad parameters fail first */
    int32_t *trace_tokens = olmoe_cmd_trace_tokens(t, &set, &m);
    olmoe_policy_model m0 = m;
    int need_emp = olmoe_policy_set_needs(&set, OLMOE_PVALUE_EMPIRICAL);
    if (need_emp) {
        /* a placeholder with the right shape for the checks; the real table follows */
        static float one = 0;
        static olmoe_policy_empirical fake;
        fake = (olmoe_policy_empirical){m.n_layers, m.n_experts, 1, 1, 1, 1, &one};
        m0.emp = &fake;
    }
    if (olmoe_policy_set_bind(&set, &m0) != 0) die("%s", olmoe_error());
    if (need_emp) {
        olmoe_cmd_empirical_cli(&cli, t, N, &emp);
        m.emp = &emp;
        if (olmoe_policy_set_bind(&set, &m) != 0) die("%s", olmoe_error());
    }

    /* --store: the results file beside the trace, locked from now on */
    olmoe_results res = {.f = H5I_INVALID_HID};
    olmoe_hash tid;
    if (olmoe_trace_identity(olmoe_trace_hid(t), &tid) != 0) die("%s: %s", trace_path, olmoe_error());
    if (store && olmoe_results_begin(&res, trace_path, olmoe_trace_hid(t)) != 0)
        die("%s", olmoe_error());
    if (store && !force)
        for (int i = 0; i < set.n; i++) {
            char g[OLMOE_POLICY_ID_MAX + 16];
            snprintf(g, sizeof g, "stats/%s", set.items[i].id);
            if (olmoe_h5_exists(res.f, g) == 1)
                die("%s: /%s already exists (--force replaces it)", res.final, g);
        }

    olmoe_stats st;
    if (olmoe_stats_init(&st, t, &set) != 0) die("%s", olmoe_error());
    notef("%d polic%s over %lld tokens x %d layers", set.n, set.n == 1 ? "y" : "ies", (long long)N,
          m.n_layers);
    if (olmoe_stats_run(&st, t, N) != 0) die("%s", olmoe_error());
    olmoe_trace_close(t);

    double routed = 0, route_s = 0;
    for (int p = 0; p < st.n_policies; p++) route_s += st.pol[p].seconds;
    routed = (double)st.n_tokens * st.n_layers * st.n_policies;
    notef("%.2f s wall; CPU: %.2f s reading the trace, %.2f s routing and counting (%.2f M "
          "token-layers/s per policy and core)",
          st.seconds_total, st.seconds_read, route_s, route_s > 0 ? routed / route_s / 1e6 : 0);

    olmoe_stats_print_table(&st, stdout, per_layer);
    if (rj.used && olmoe_stats_write_json(&st, rj.out.tmp, trace_path, cli.kde) != 0)
        die("%s", olmoe_error());
    if (rc.used && olmoe_stats_write_csv(&st, rc.out.tmp) != 0) die("%s", olmoe_error());
    const olmoe_input inputs[] = {{"trace", trace_path, tid.hex},
                                  {"kde", cli.kde ? cli.kde : "", NULL}};
    if (ro.used) {
        hid_t f = olmoe_h5_create(ro.out.tmp);
        if (f < 0) die("%s", olmoe_error());
        json_t *groups = json_array();
        for (int g = 1; g < st.n_scopes; g++) json_array_append_new(groups, json_string(st.group_names[g - 1]));
        char *gj = json_dumps(groups, JSON_COMPACT);
        json_decref(groups);
        if (olmoe_h5_set_attr_str(f, ".", "format", "olmoe-stats") != 0 ||
            olmoe_h5_set_attr_i32(f, ".", "format_version", 1) != 0 ||
            olmoe_h5_set_attr_str(f, ".", "trace", trace_path) != 0 ||
            olmoe_h5_set_attr_str(f, ".", "command", command) != 0 ||
            olmoe_h5_set_attr_str(f, ".", "groups", gj) != 0 ||
            olmoe_h5_set_attr_str(f, ".", "trace_checksum", tid.hex) != 0 ||
            olmoe_results_provenance(f, inputs, cli.kde ? 2 : 1) != 0 ||
            olmoe_stats_write_h5(&st, f, trace_path, 0) != 0 || olmoe_h5_close(f) != 0)
            die("%s", olmoe_error());
        free(gj);
    }
    if (store && (olmoe_results_provenance(res.f, inputs, cli.kde ? 2 : 1) != 0 ||
                  olmoe_stats_write_h5(&st, res.f, res.final, force) != 0 ||
                  olmoe_results_commit(&res) != 0))
        die("%s", olmoe_error());
    olmoe_cmd_commit(&rj);
    olmoe_cmd_commit(&rc);
    olmoe_cmd_commit(&ro);
    if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");
    olmoe_stats_free(&st);
    olmoe_policy_empirical_free(&emp);
    olmoe_kde_cdf_free(&cdf);
    olmoe_kde_null_free(&null);
    olmoe_policy_set_free(&set);
    free(trace_tokens);
    free(command);
    return 0;
}
