/* main_replay_run.c: olmoe-replay's replay mode (the default), with --exact and
 * --validate: perplexity and routing of each policy, by frozen-attention
 * replay, by the exact forward pass, or both side by side.
 *
 * Order: options -> policies parsed -> outputs reserved (.partial names) ->
 * trace opened for its shapes, nulls loaded, policies bound, the results file
 * beside the trace locked and existing results refused without --force (every error so far comes before any work) ->
 * empirical null if a policy needs it -> the run (checksum and residuals are
 * checked first) -> table, JSON, CSV, HDF5 -> outputs committed. */
#include "analyze.h"
#include "common.h"
#include "main_replay.h"
#include "policy.h"

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


/* the command line of the replay modes */
typedef struct {
    const char *mode, *model_dir, *routing_s, *device;
    const char *kde_path; /* the policy options' --kde */
    const char *json_path, *csv_path, *out_path;
    long max_tokens, chunk, boot_seed, boot_resamples;
    int exact, validate, force, skip_existing, quiet;
    const char *shard_spec; /* --shard (replay_shard.c) */
} run_opts;

/* the checks of the command line that need no file; the routing it asks for */
static olmoe_replay_routing check_args(run_opts *o) {
    if (o->mode && strcmp(o->mode, "exact") == 0) o->exact = 1;
    else if (o->mode && strcmp(o->mode, "validate") == 0) o->validate = 1;
    else if (o->mode && strcmp(o->mode, "replay") != 0) die_usage("--mode: unknown mode '%s'", o->mode);
    olmoe_replay_routing routing = OLMOE_ROUTING_RECOMPUTE;
    if (strcmp(o->routing_s, "captured") == 0) routing = OLMOE_ROUTING_CAPTURED;
    else if (strcmp(o->routing_s, "recompute") != 0)
        die_usage("--routing: '%s' is neither recompute nor captured", o->routing_s);
    if (!(o->validate || !o->exact) && routing == OLMOE_ROUTING_CAPTURED)
        die_usage("--routing captured is for replay; the exact forward always recomputes");
    return routing;
}

/* dies when a result this run would write is already in the results file */
static void refuse_existing(const olmoe_results *res, olmoe_policy_set *set, int do_replay,
                            int do_exact, int validate) {
    olmoe_policy **pp = xmalloc(xmul((size_t)set->n, sizeof *pp));
    for (int i = 0; i < set->n; i++) pp[i] = &set->items[i];
    const char *which = NULL;
    int c = olmoe_replay_h5_conflict(res->f, pp, set->n, do_replay, do_exact, validate, &which);
    if (c < 0) die("%s: %s", res->final, olmoe_error());
    if (c > 0)
        die("%s: /%s already exists (--force recomputes it, --skip-existing computes only what "
            "is missing)", res->final, which);
    free(pp);
}

/* --skip-existing: drops the policies whose results are all stored, saying
 * which in a note; with --validate the one /validate table decides (stored:
 * nothing to do; else every policy is computed). What is computed replaces
 * whatever part of it is stored (a policy stored under replay only, run with
 * --exact --validate). Returns the number of policies left. */
static int skip_existing(const olmoe_results *res, olmoe_policy_set *set, int do_replay,
                         int do_exact, int validate) {
    const char *which = NULL;
    if (validate) {
        int e = olmoe_replay_h5_conflict(res->f, NULL, 0, 0, 0, 1, &which);
        if (e < 0) die("%s: %s", res->final, olmoe_error());
        if (e) notef("skipped (stored): /validate");
        return e ? 0 : set->n;
    }
    int kept = 0;
    for (int i = 0; i < set->n; i++) {
        olmoe_policy *p = &set->items[i];
        int r = do_replay ? olmoe_replay_h5_conflict(res->f, &p, 1, 1, 0, 0, &which) : 1;
        int x = do_exact && r > 0 ? olmoe_replay_h5_conflict(res->f, &p, 1, 0, 1, 0, &which) : r;
        if (r < 0 || x < 0) die("%s: %s", res->final, olmoe_error());
        if (r > 0 && x > 0) {
            notef("skipped (stored): %s", p->id);
            olmoe_policy_free(p);
        } else {
            set->items[kept++] = *p;
        }
    }
    set->n = kept;
    return kept;
}

/* the table on stdout, --json, --csv, and the results in --out or the
 * results file beside the trace (full: the unsharded run a --shard run's view comes from, or NULL);
 * outputs committed */
static void write_outputs(const olmoe_replay_run *run, const olmoe_replay_validation *v,
                          const run_opts *o, const char *trace_path, const char *command,
                          const olmoe_replay_run *full, const olmoe_replay_opts *ropt,
                          olmoe_model *model, const olmoe_hash *tid, olmoe_results *res,
                          cmd_replay_outputs *outs) {
    olmoe_cmd_output *rj = &outs->json, *rc = &outs->csv, *ro = &outs->out;
    if (!outs->stdout_taken) olmoe_replay_print(run, v, stdout);
    if (rj->used && olmoe_replay_write_json(run, v, rj->out.tmp, trace_path, o->model_dir,
                                            o->kde_path) != 0)
        die("%s", olmoe_error());
    if (rc->used && olmoe_replay_write_csv(run, rc->out.tmp) != 0) die("%s", olmoe_error());
    hid_t f = ro->used ? olmoe_h5_create(ro->out.tmp) : res->f;
    if (f < 0) die("%s", olmoe_error());
    olmoe_hash mh;
    if (olmoe_model_checksum(model, &mh) != 0) die("%s", olmoe_error());
    const olmoe_input inputs[] = {{"trace", trace_path, tid->hex},
                                  {"model", o->model_dir, mh.hex},
                                  {"kde", o->kde_path ? o->kde_path : "", o->kde_path ? NULL : ""}};
    if (olmoe_results_provenance(f, inputs, o->kde_path ? 3 : 2) != 0 ||
        (ro->used && olmoe_h5_set_attr_str(f, ".", "trace_checksum", tid->hex) != 0))
        die("%s: %s", ro->used ? o->out_path : res->final, olmoe_error());
    if (ro->used && (olmoe_replay_results_attrs(f, trace_path, o->model_dir, command) != 0 ||
                     (full && olmoe_replay_shard_attrs(f, full, ropt) != 0)))
        die("%s: %s", o->out_path, olmoe_error());
    if (olmoe_replay_write_h5(run, v, f, o->force || o->skip_existing) != 0)
        die("%s: %s", ro->used ? o->out_path : res->final, olmoe_error());
    if (ro->used && olmoe_results_mark_last(f) != 0) die("%s: %s", o->out_path, olmoe_error());
    if (ro->used ? olmoe_h5_close(f) != 0 : olmoe_results_commit(res) != 0)
        die("%s", olmoe_error());
    cmd_replay_commit(outs);
}

/* the model of --model, else the one the trace records, opened into *model
 * and checked against the trace (its checksum first: a wrong model is the
 * likeliest mistake); o->model_dir becomes its directory, which the caller
 * frees */
static char *open_model(run_opts *o, olmoe_trace *t, int do_replay, olmoe_model *model) {
    const char *trace_path = olmoe_trace_path(t);
    char *dir = olmoe_model_for_trace(o->model_dir, olmoe_trace_info_of(t)->meta.model_dir, trace_path);
    if (!dir) die("%s", olmoe_error());
    o->model_dir = dir;
    if (olmoe_model_open(dir, model) != 0) die("%s", olmoe_error());
    if (olmoe_replay_check_trace(trace_path, t, model, do_replay, NULL) != 0) die("%s", olmoe_error());
    return dir;
}

/* the mode's own options, into opts (room for the policy options after them) */
enum { OWN_OPTS = 20 };
static void option_table(run_opts *o, olmoe_opt *opts) {
    const olmoe_opt own[OWN_OPTS] = {
        OPT_STRING("mode", &o->mode, "MODE", "replay (default), exact or validate"),
        OPT_STRING("model", &o->model_dir, "DIR",
                   "the checkpoint the trace was captured with (default: the one it records)"),
        OPT_STRING("routing", &o->routing_s, "HOW",
                   "replay: recompute (default: router on the replayed stream) or captured"),
        OPT_STRING("device", &o->device, "DEV", "auto (default: cuda when built with it and a GPU is there), cpu, cuda[:N]"),
        OPT_FLAG("exact", &o->exact, "the exact forward pass per policy instead of replay"),
        OPT_FLAG("validate", &o->validate, "replay and exact side by side (/validate table)"),
        OPT_STRING("out", &o->out_path, "FILE",
                   "results in a new HDF5 file instead of TRACE.results.h5 beside the trace"),
        OPT_STRING("json", &o->json_path, "FILE", "write the results as JSON (-: stdout, no table)"),
        OPT_STRING("csv", &o->csv_path, "FILE", "the results as CSV, policy x kind x group (-: stdout, no table)"),
        OPT_LONG_RANGE("max-tokens", &o->max_tokens, "N", "only the windows within the first N tokens",
                       1, 1L << 62),
        OPT_LONG_RANGE("chunk", &o->chunk, "N", "tokens per chunk of whole windows (default 4096)", 1,
                       1L << 24),
        OPT_STRING("shard", &o->shard_spec, "I/N",
                   "only part I of N of the run's chunks (needs --out; join with --mode merge)"),
        OPT_LONG_RANGE("seed", &o->boot_seed, "N", "seed of the bootstrap intervals in JSON and CSV (default 1)", 0,
                       1L << 62),
        OPT_LONG_RANGE("resamples", &o->boot_resamples, "N",
                       "bootstrap resamples over documents (default 1000; 0: no intervals)", 0, 10000000),
        OPT_FLAG("force", &o->force, "overwrite existing outputs and results"),
        OPT_FLAG("skip-existing", &o->skip_existing,
                 "compute only the policies whose results are not stored yet"),
        OPT_FLAG("quiet", &o->quiet, "no notes or progress on stderr"),
        OPT_END};
    memcpy(opts, own, sizeof own);
}

/* what the command line asks for */
typedef struct {
    run_opts o;
    olmoe_policy_cli cli;
    olmoe_policy_set set;
    char *command;
    const char *trace_path;
    olmoe_replay_routing routing;
    int do_replay, do_exact;
    int shard_i, shard_n; /* --shard I/N; shard_n 0: the whole run */
} run_plan;

/* argv parsed and checked, the policy set built: every usage error */
static void plan_of_args(run_plan *p, int argc, char **argv) {
    *p = (run_plan){.o = {.routing_s = "recompute", .device = "auto", .chunk = 4096,
                          .boot_seed = 1, .boot_resamples = 1000}};
    run_opts *o = &p->o;
    olmoe_opt opts[OWN_OPTS + OLMOE_POLICY_CLI_NOPTS + 1];
    option_table(o, opts);
    cmd_replay_parse(argc, argv, opts, &p->cli, usage, &o->quiet,
                     "which trace? (olmoe-replay TRACE --model DIR ...)", &p->command);
    o->device = olmoe_device_resolve(o->device);
    cmd_replay_check_device(o->device);
    o->kde_path = p->cli.kde;
    p->routing = check_args(o);
    p->do_replay = o->validate || !o->exact, p->do_exact = o->validate || o->exact;
    if (olmoe_policy_cli_build(&p->cli, &p->set) != 0) die_usage("%s", olmoe_error());
    p->trace_path = argv[0];
    if (o->shard_spec && olmoe_parse_shard(o->shard_spec, &p->shard_i, &p->shard_n) != 0)
        die_usage("%s", olmoe_error());
    if (o->shard_spec && !o->out_path)
        die_usage("--shard needs --out FILE: each shard writes its own results file");
}

/* bfloat16 residuals flip near-tied routing decisions now and then, so
 * single tokens move (up to ~0.5 nats on random fixtures) but the mean NLL
 * stays within 1e-4 of itself (tests/test_replay.c); more than 1e-3 means
 * another cause */
static void warn_self_check(const olmoe_replay_run *run, const char *trace_path) {
    if (run->self.done && fabs(run->self.nll_rel_diff) > 1e-3)
        warnf("self-check: replay of %s gives a mean NLL %+.3g relative to the capture (perplexity "
              "%+.3g): is the trace from another device or dtype (%s)?",
              run->self.policy, run->self.nll_rel_diff, run->self.ppl_rel_diff, trace_path);
}

/* every policy of the plan run over the trace (replay, exact or both; the
 * rows of one shard with --shard), checked, and its outputs written */
static void evaluate(run_plan *p, olmoe_model *model, olmoe_policy_model *m,
                     const olmoe_hash *tid, olmoe_results *res, cmd_replay_outputs *outs) {
    const run_opts *o = &p->o;
    olmoe_policy **pols = xmalloc(xmul((size_t)p->set.n, sizeof *pols));
    for (int i = 0; i < p->set.n; i++) pols[i] = &p->set.items[i];
    olmoe_replay_opts ropt = {.trace_path = p->trace_path, .model = model, .policies = pols,
                              .n_policies = p->set.n, .do_replay = p->do_replay,
                              .do_exact = p->do_exact, .routing = p->routing, .device = o->device,
                              .max_tokens = o->max_tokens, .chunk_tokens = o->chunk,
                              .self_check = 1, .bind_model = m, .progress = !o->quiet,
                              .shard_index = p->shard_i, .shard_count = p->shard_n};
    notef("%d polic%s, %s%s%s on %s", p->set.n, p->set.n == 1 ? "y" : "ies",
          p->do_replay ? "replay" : "", p->do_replay && p->do_exact ? " and " : "",
          p->do_exact ? "exact" : "", o->device);
    olmoe_replay_run full, run;
    if (olmoe_replay_run_all(&ropt, &full) != 0) die("%s", olmoe_error());
    /* --shard: the results over this shard's rows only */
    if (p->shard_n) olmoe_replay_shard_view(&full, &run);
    else run = full;
    notef("%.2f s wall, %.2f s reading the trace (%.2f s of it waited for)", run.total_seconds,
          run.read_seconds, run.read_wait_seconds);
    warn_self_check(&run, p->trace_path);
    olmoe_replay_validation v;
    if (o->validate && olmoe_replay_validate(&run, &v) != 0) die("%s", olmoe_error());
    /* the intervals of --json and --csv (not of a shard: its rows are not whole documents) */
    if ((outs->json.used || outs->csv.used) && o->boot_resamples > 0 && !p->shard_n &&
        olmoe_replay_bootstrap(&run, p->trace_path, (int)o->boot_resamples,
                               (uint64_t)o->boot_seed) != 0)
        die("%s", olmoe_error());
    write_outputs(&run, o->validate ? &v : NULL, o, p->trace_path, p->command,
                  p->shard_n ? &full : NULL, &ropt, model, tid, res, outs);
    if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");
    if (o->validate) olmoe_replay_validation_free(&v);
    if (p->shard_n) olmoe_replay_shard_view_free(&run);
    olmoe_replay_run_free(&full);
    free(pols);
}

int cmd_replay_run(int argc, char **argv) {
    run_plan p;
    plan_of_args(&p, argc, argv);
    run_opts *o = &p.o;
    cmd_replay_outputs outs;
    cmd_replay_reserve(&outs, o->json_path, o->csv_path, o->out_path, o->force);

    int64_t N;
    olmoe_trace *t = cmd_replay_open_trace(p.trace_path, o->max_tokens, &N);
    olmoe_model model;
    char *model_dir = open_model(o, t, p.do_replay, &model);
    cmd_replay_inputs in;
    cmd_replay_inputs_begin(&in, o->kde_path, &p.set, t);
    /* without --out: the results file beside the trace, locked from now on */
    olmoe_results res;
    olmoe_hash tid;
    cmd_replay_results_begin(t, !o->out_path, &res, &tid);
    if (!o->out_path && o->skip_existing && !o->force &&
        skip_existing(&res, &p.set, p.do_replay, p.do_exact, o->validate) == 0) {
        cmd_replay_nothing_to_do(&res, t, &outs);
    } else {
        if (!o->out_path && !o->force && !o->skip_existing)
            refuse_existing(&res, &p.set, p.do_replay, p.do_exact, o->validate);
        cmd_replay_bind_empirical(&p.set, &in.m, t, N, &p.cli, &in.emp);
        olmoe_trace_close(t);
        evaluate(&p, &model, &in.m, &tid, &res, &outs);
    }
    olmoe_model_close(&model);
    cmd_replay_inputs_free(&in);
    olmoe_policy_set_free(&p.set);
    free(model_dir);
    free(p.command);
    return 0;
}
