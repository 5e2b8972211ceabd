/* replay_cmd.c: olmoe-replay's replay mode (the default), with --exact and
 * --validate: perplexity and routing of each policy, by frozen-attention
 * replay, by the exact forward pass, or both side by side.
 *
 * Order: options -> policies parsed -> outputs reserved (.partial names) ->
 * trace opened for its shapes, nulls loaded, policies bound, the results file
 * beside the trace locked and existing results refused without --force (every error so far comes before any work) ->
 * empirical null if a policy needs it -> the run (checksum and residuals are
 * checked first) -> table, JSON, CSV, HDF5 -> outputs committed. */
#include "cmd_inputs.h"
#include "common.h"
#include "opt.h"
#include "replay.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: olmoe-replay TRACE [--model DIR] (--policy SPEC | --sweep NAME|FILE) [--exact] "
    "[--validate] [options]\n"
    "\n"
    "Evaluates routing policies on a captured trace by perplexity: replay re-runs\n"
    "only the experts, with attention frozen at its captured value (fast, optimistic);\n"
    "--exact runs the whole forward pass under each policy (the true number);\n"
    "--validate runs both and tabulates how far apart they are.";

static const char *mode, *model_dir, *routing_s = "recompute", *device = "auto";
static const char *json_path, *csv_path, *out_path;
static long max_tokens = 0, chunk = 4096, boot_seed = 1, boot_resamples = 1000;
static int exact, validate, force, quiet;
static const char *shard_spec; /* --shard (replay_shard.c) */

int olmoe_replay_main(int argc, char **argv) {
    static olmoe_policy_cli cli;
    enum { OWN = 20 };
    olmoe_opt opts[OWN + OLMOE_POLICY_CLI_NOPTS + 1] = {
        OPT_STRING("mode", &mode, "MODE", "replay (default), exact or validate"),
        OPT_STRING("model", &model_dir, "DIR",
                   "the checkpoint the trace was captured with (default: the one it records)"),
        OPT_STRING("routing", &routing_s, "HOW",
                   "replay: recompute (default: router on the replayed stream) or captured"),
        OPT_STRING("device", &device, "DEV", "auto (default: cuda when built with it and a GPU is there), cpu or cuda"),
        OPT_FLAG("exact", &exact, "the exact forward pass per policy instead of replay"),
        OPT_FLAG("validate", &validate, "replay and exact side by side (/validate table)"),
        OPT_STRING("out", &out_path, "FILE",
                   "results in a new HDF5 file instead of TRACE.results.h5 beside the trace"),
        OPT_STRING("json", &json_path, "FILE", "write the results as JSON"),
        OPT_STRING("csv", &csv_path, "FILE", "write the results as CSV (policy x kind x group)"),
        OPT_LONG_RANGE("max-tokens", &max_tokens, "N", "only the windows within the first N tokens",
                       1, 1L << 62),
        OPT_LONG_RANGE("chunk", &chunk, "N", "tokens per chunk of whole windows (default 4096)", 1,
                       1L << 24),
        OPT_STRING("shard", &shard_spec, "I/N",
                   "only part I of N of the run's chunks (needs --out; join with --mode merge)"),
        OPT_LONG_RANGE("seed", &boot_seed, "N", "seed of the bootstrap intervals in JSON and CSV (default 1)", 0,
                       1L << 62),
        OPT_LONG_RANGE("resamples", &boot_resamples, "N",
                       "bootstrap resamples over documents (default 1000; 0: no intervals)", 0, 10000000),
        OPT_FLAG("force", &force, "overwrite existing outputs and results"),
        OPT_FLAG("quiet", &quiet, "no notes or progress"),
        OPT_END};
    int own = 0;
    while (opts[own].name) own++;
    own += olmoe_policy_cli_options(&cli, opts + own, OLMOE_POLICY_CLI_SWEEP);
    opts[own] = (olmoe_opt)OPT_END;

    char *command = olmoe_join_argv(argc, argv);
    int npos = olmoe_opt_parse(argc, argv, opts, usage);
    olmoe_quiet = quiet;
    device = olmoe_device_resolve(device);
    if (npos != 1) die_usage(npos ? "one trace, please" : "which trace? (olmoe-replay TRACE --model DIR ...)");
    if (mode && strcmp(mode, "exact") == 0) exact = 1;
    else if (mode && strcmp(mode, "validate") == 0) validate = 1;
    else if (mode && strcmp(mode, "replay") != 0) die_usage("--mode: unknown mode '%s'", mode);
    olmoe_replay_routing routing;
    if (strcmp(routing_s, "recompute") == 0) routing = OLMOE_ROUTING_RECOMPUTE;
    else if (strcmp(routing_s, "captured") == 0) routing = OLMOE_ROUTING_CAPTURED;
    else die_usage("--routing: '%s' is neither recompute nor captured", routing_s);
    int do_replay = validate || !exact, do_exact = validate || exact;
    if (!do_replay && routing == OLMOE_ROUTING_CAPTURED)
        die_usage("--routing captured is for replay; the exact forward always recomputes");
    olmoe_policy_set set = {0};
    if (olmoe_policy_cli_build(&cli, &set) != 0) die_usage("%s", olmoe_error());
    const char *trace_path = argv[0];
    int shard_i = 0, shard_n = 0; /* ---- --shard ---- */
    if (shard_spec && olmoe_replay_shard_parse(shard_spec, &shard_i, &shard_n) != 0)
        die_usage("%s", olmoe_error());
    if (shard_spec && !out_path)
        die_usage("--shard needs --out FILE: each shard writes its own results file");

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
    olmoe_model model; /* its checksum first: a wrong model is the likeliest mistake */
    if (!(model_dir = olmoe_model_for_trace(model_dir, in->meta.model_dir, trace_path)))
        die("%s", olmoe_error());
    if (olmoe_model_open(model_dir, &model) != 0) die("%s", olmoe_error());
    if (olmoe_replay_check_trace(trace_path, t, &model, do_replay, NULL) != 0) die("%s", olmoe_error());
    olmoe_kde_null null;
    olmoe_kde_cdf cdf;
    memset(&null, 0, sizeof null);
    memset(&cdf, 0, sizeof cdf);
    olmoe_policy_model m = {in->meta.n_layers, in->meta.n_experts, in->meta.norm_topk_prob, NULL, NULL, NULL, 0};
    if (cli.kde) {
        olmoe_cmd_load_null(cli.kde, trace_path, &in->meta, &null, &cdf);
        m.null = &cdf;
    } else if (olmoe_policy_set_needs(&set, OLMOE_PVALUE_KDE)) {
        die_usage("pvalue=kde needs --kde NULL.h5 (make one with olmoe-kde fit %s --out null.h5), "
                  "or use --pvalue pseudo|empirical", trace_path);
    }
    olmoe_policy_empirical emp;
    memset(&emp, 0, sizeof emp);
    int32_t *trace_tokens = olmoe_cmd_trace_tokens(t, &set, &m);
    olmoe_policy_model m0 = m;
    int need_emp = olmoe_policy_set_needs(&set, OLMOE_PVALUE_EMPIRICAL);
    static float one = 0;
    static olmoe_policy_empirical fake;
    if (need_emp) { /* the right shape for the checks; the real table follows */
        fake = (olmoe_policy_empirical){m.n_layers, m.n_experts, 1, 1, 1, 1, &one};
        m0.emp = &fake;
    }
    if (olmoe_policy_set_bind(&set, &m0) != 0) die("%s", olmoe_error());
    /* without --out: the results file beside the trace, locked from now on */
    olmoe_results res = {.f = H5I_INVALID_HID};
    olmoe_hash tid;
    if (olmoe_trace_identity(olmoe_trace_hid(t), &tid) != 0) die("%s: %s", trace_path, olmoe_error());
    if (!out_path && olmoe_results_begin(&res, trace_path, olmoe_trace_hid(t)) != 0)
        die("%s", olmoe_error());
    if (!out_path && !force) {
        olmoe_policy **pp = xmalloc(xmul((size_t)set.n, sizeof *pp));
        for (int i = 0; i < set.n; i++) pp[i] = &set.items[i];
        const char *which = NULL;
        int c = olmoe_replay_h5_conflict(res.f, pp, set.n, do_replay, do_exact, validate, &which);
        if (c < 0) die("%s: %s", res.final, olmoe_error());
        if (c > 0) die("%s: /%s already exists (--force replaces it)", res.final, which);
        free(pp);
    }
    if (need_emp) {
        olmoe_cmd_empirical_cli(&cli, t, N, &emp);
        m.emp = &emp;
        if (olmoe_policy_set_bind(&set, &m) != 0) die("%s", olmoe_error());
    }
    olmoe_trace_close(t);

    olmoe_policy **pols = xmalloc(xmul((size_t)set.n, sizeof *pols));
    for (int i = 0; i < set.n; i++) pols[i] = &set.items[i];
    olmoe_replay_opts o = {.trace_path = trace_path, .model = &model, .policies = pols,
                           .n_policies = set.n, .do_replay = do_replay, .do_exact = do_exact,
                           .routing = routing, .device = device, .max_tokens = max_tokens,
                           .chunk_tokens = chunk, .self_check = 1, .bind_model = &m,
                           .progress = !quiet, .shard_index = shard_i, .shard_count = shard_n};
    notef("%d polic%s, %s%s%s on %s", set.n, set.n == 1 ? "y" : "ies", do_replay ? "replay" : "",
          do_replay && do_exact ? " and " : "", do_exact ? "exact" : "", device);
    olmoe_replay_run full, run;
    if (olmoe_replay_run_all(&o, &full) != 0) die("%s", olmoe_error());
    /* --shard: the results over this shard's rows only */
    if (shard_n) olmoe_replay_shard_view(&full, &run);
    else run = full;
    notef("%.2f s wall, %.2f s reading the trace (%.2f s of it waited for)", run.total_seconds,
          run.read_seconds, run.read_wait_seconds);
    /* bfloat16 residuals flip near-tied routing decisions now and then, so
     * single tokens move (up to ~0.5 nats on random fixtures) but the mean
     * NLL stays within 1e-4 of itself (tests/test_replay.c); more than 1e-3
     * means another cause */
    if (run.self.done && fabs(run.self.nll_rel_diff) > 1e-3)
        warnf("self-check: replay of %s gives a mean NLL %+.3g relative to the capture (perplexity "
              "%+.3g): is the trace from another device or dtype (%s)?",
              run.self.policy, run.self.nll_rel_diff, run.self.ppl_rel_diff, trace_path);
    olmoe_replay_validation v;
    if (validate && olmoe_replay_validate(&run, &v) != 0) die("%s", olmoe_error());

    olmoe_replay_print(&run, validate ? &v : NULL, stdout);
    if ((rj.used || rc.used) && boot_resamples > 0 && !shard_n &&
        olmoe_replay_bootstrap(&run, trace_path, (int)boot_resamples, (uint64_t)boot_seed) != 0)
        die("%s", olmoe_error());
    if (rj.used && olmoe_replay_write_json(&run, validate ? &v : NULL, rj.out.tmp, trace_path,
                                           model_dir, cli.kde) != 0)
        die("%s", olmoe_error());
    if (rc.used && olmoe_replay_write_csv(&run, rc.out.tmp) != 0) die("%s", olmoe_error());
    hid_t f = ro.used ? olmoe_h5_create(ro.out.tmp) : res.f;
    if (f < 0) die("%s", olmoe_error());
    olmoe_hash mh;
    if (olmoe_model_checksum(&model, &mh) != 0) die("%s", olmoe_error());
    const olmoe_input inputs[] = {{"trace", trace_path, tid.hex},
                                  {"model", model_dir, mh.hex},
                                  {"kde", cli.kde ? cli.kde : "", cli.kde ? NULL : ""}};
    if (olmoe_results_provenance(f, inputs, cli.kde ? 3 : 2) != 0 ||
        (ro.used && olmoe_h5_set_attr_str(f, ".", "trace_checksum", tid.hex) != 0))
        die("%s: %s", ro.used ? out_path : res.final, olmoe_error());
    if (ro.used && (olmoe_h5_set_attr_str(f, ".", "format", "olmoe-replay") != 0 ||
                    olmoe_h5_set_attr_i32(f, ".", "format_version", 1) != 0 ||
                    olmoe_h5_set_attr_str(f, ".", "trace", trace_path) != 0 ||
                    olmoe_h5_set_attr_str(f, ".", "model_dir", model_dir) != 0 ||
                    olmoe_h5_set_attr_str(f, ".", "command", command) != 0 ||
                    (shard_n && olmoe_replay_shard_attrs(f, &full, &o) != 0)))
        die("%s: %s", out_path, olmoe_error());
    if (olmoe_replay_write_h5(&run, validate ? &v : NULL, f, force) != 0)
        die("%s: %s", ro.used ? out_path : res.final, olmoe_error());
    if (ro.used ? olmoe_h5_close(f) != 0 : olmoe_results_commit(&res) != 0)
        die("%s", olmoe_error());
    olmoe_cmd_commit(&rj);
    olmoe_cmd_commit(&rc);
    olmoe_cmd_commit(&ro);
    if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");
    if (validate) olmoe_replay_validation_free(&v);
    if (shard_n) olmoe_replay_shard_view_free(&run);
    olmoe_replay_run_free(&full);
    free(pols);
    olmoe_model_close(&model);
    olmoe_policy_empirical_free(&emp);
    olmoe_kde_cdf_free(&cdf);
    olmoe_kde_null_free(&null);
    olmoe_policy_set_free(&set);
    free(trace_tokens);
    free(command);
    return 0;
}
