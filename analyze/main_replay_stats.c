/* main_replay_stats.c: olmoe-replay --mode stats: policies applied to a trace's
 * captured router logits (no model), routing statistics out.
 *
 * Order: options -> policies parsed and validated -> outputs reserved
 * (.partial names; existing ones refused without --force) -> trace opened,
 * nulls loaded, policies bound (all errors so far come before any work) ->
 * empirical null built if a policy needs it (one extra pass) -> one pass
 * routing every policy -> outputs committed. */
#include "common.h"
#include "policy.h"
#include "main_replay.h"
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


/* the command line of --mode stats */
typedef struct {
    const char *mode, *json_path, *csv_path, *out_path;
    const char *kde_path; /* the policy options' --kde */
    long max_tokens;
    int store, force, skip_existing, quiet, per_layer;
} stats_opts;

/* the table on stdout, --json, --csv, --out and --store; outputs committed */
static void write_outputs(const olmoe_stats *st, const stats_opts *o, const char *trace_path,
                          const char *command, const olmoe_hash *tid, olmoe_results *res,
                          cmd_replay_outputs *outs) {
    olmoe_cmd_output *rj = &outs->json, *rc = &outs->csv, *ro = &outs->out;
    if (!outs->stdout_taken) olmoe_stats_print_table(st, stdout, o->per_layer);
    if (rj->used && olmoe_stats_write_json(st, rj->out.tmp, trace_path, o->kde_path) != 0)
        die("%s", olmoe_error());
    if (rc->used && olmoe_stats_write_csv(st, rc->out.tmp) != 0) die("%s", olmoe_error());
    const olmoe_input inputs[] = {{"trace", trace_path, tid->hex},
                                  {"kde", o->kde_path ? o->kde_path : "", NULL}};
    if (ro->used) {
        hid_t f = olmoe_h5_create(ro->out.tmp);
        if (f < 0) die("%s", olmoe_error());
        json_t *groups = json_array();
        for (int g = 1; g < st->n_scopes; g++)
            json_array_append_new(groups, olmoe_json_str(st->group_names[g - 1]));
        char *gj = json_dumps(groups, JSON_COMPACT);
        json_decref(groups);
        if (olmoe_h5_set_attr_str(f, ".", "format", OLMOE_STATS_FORMAT) != 0 ||
            olmoe_h5_set_attr_i32(f, ".", "format_version", OLMOE_STATS_FORMAT_VERSION) != 0 ||
            olmoe_h5_set_attr_str(f, ".", "trace", trace_path) != 0 ||
            olmoe_h5_set_attr_str(f, ".", "command", command) != 0 ||
            olmoe_h5_set_attr_str(f, ".", "groups", gj) != 0 ||
            olmoe_h5_set_attr_str(f, ".", "trace_checksum", tid->hex) != 0 ||
            olmoe_results_provenance(f, inputs, o->kde_path ? 2 : 1) != 0 ||
            olmoe_stats_write_h5(st, f, trace_path, 0) != 0 || olmoe_results_mark_last(f) != 0 ||
            olmoe_h5_close(f) != 0)
            die("%s", olmoe_error());
        free(gj);
    }
    if (o->store && (olmoe_results_provenance(res->f, inputs, o->kde_path ? 2 : 1) != 0 ||
                     olmoe_stats_write_h5(st, res->f, res->final, o->force) != 0 ||
                     olmoe_results_commit(res) != 0))
        die("%s", olmoe_error());
    cmd_replay_commit(outs);
}

/* --store: a policy's /stats group already there is refused, or with
 * skip (--skip-existing) the policy is dropped, saying so in a note; returns
 * the number of policies left */
static int check_stored(const olmoe_results *res, olmoe_policy_set *set, int skip) {
    int kept = 0;
    for (int i = 0; i < set->n; i++) {
        char *g = NULL;
        int e = olmoe_result_find(res->f, "stats", set->items[i].id, &g);
        free(g);
        if (e < 0) die("%s: %s", res->final, olmoe_error());
        if (e && !skip)
            die("%s: /stats/%s already exists (--force recomputes it, --skip-existing computes "
                "only what is missing)", res->final, set->items[i].id);
        if (e) {
            notef("skipped (stored): %s", set->items[i].id);
            olmoe_policy_free(&set->items[i]);
        } else {
            set->items[kept++] = set->items[i];
        }
    }
    set->n = kept;
    return kept;
}

/* the mode's own options, into opts (room for the policy options after them) */
enum { OWN_OPTS = 12 };
static void option_table(stats_opts *o, olmoe_opt *opts) {
    const olmoe_opt own[OWN_OPTS] = {
        OPT_STRING("mode", &o->mode, "MODE", "stats"),
        OPT_STRING("json", &o->json_path, "FILE", "write the statistics as JSON (-: stdout, no table)"),
        OPT_STRING("csv", &o->csv_path, "FILE", "summaries as CSV, policy x group x layer (-: stdout, no table)"),
        OPT_FLAG("store", &o->store, "store the results beside the trace (TRACE.results.h5, /stats/<name>)"),
        OPT_STRING("out", &o->out_path, "FILE", "store the results in a new HDF5 file instead"),
        OPT_LONG_RANGE("max-tokens", &o->max_tokens, "N", "only the first N tokens", 1, 1L << 62),
        OPT_FLAG("per-layer", &o->per_layer, "print a row per layer too"),
        OPT_FLAG("force", &o->force, "overwrite existing outputs and /stats groups"),
        OPT_FLAG("skip-existing", &o->skip_existing,
                 "--store: compute only the policies without a /stats group yet"),
        OPT_FLAG("quiet", &o->quiet, "no notes or progress on stderr"),
        OPT_END};
    memcpy(opts, own, sizeof own);
}

/* every policy of st over the trace's first N tokens, in one pass, with
 * the time it took */
static void run_stats(olmoe_stats *st, olmoe_trace *t, olmoe_policy_set *set, int64_t N) {
    if (olmoe_stats_init(st, t, set) != 0) die("%s", olmoe_error());
    notef("%d polic%s over %lld tokens x %d layers", set->n, set->n == 1 ? "y" : "ies",
          (long long)N, st->n_layers);
    if (olmoe_stats_run(st, t, N) != 0) die("%s", olmoe_error());
    double routed = 0, route_s = 0;
    for (int p = 0; p < st->n_policies; p++) route_s += st->pol[p].seconds;
    routed = (double)st->n_tokens * st->n_layers * st->n_policies;
    notef("%.2f s wall; CPU: %.2f s reading the trace, %.2f s routing and counting (%.2f M "
          "token-layers/s per policy and core)",
          st->seconds_total, st->seconds_read, route_s, route_s > 0 ? routed / route_s / 1e6 : 0);
}

int cmd_replay_stats(int argc, char **argv) {
    stats_opts o = {0};
    olmoe_policy_cli cli = {0};
    olmoe_opt opts[OWN_OPTS + OLMOE_POLICY_CLI_NOPTS + 1];
    option_table(&o, opts);
    char *command;
    cmd_replay_parse(argc, argv, opts, &cli, usage, &o.quiet,
                     "which trace? (olmoe-replay TRACE --mode stats ...)", &command);
    o.kde_path = cli.kde;
    if (o.store && o.out_path) die_usage("--store and --out: choose one place for the results");
    olmoe_policy_set set = {0};
    if (olmoe_policy_cli_build(&cli, &set) != 0) die_usage("%s", olmoe_error());
    const char *trace_path = argv[0];
    cmd_replay_outputs outs;
    cmd_replay_reserve(&outs, o.json_path, o.csv_path, o.out_path, o.force);

    int64_t N;
    olmoe_trace *t = cmd_replay_open_trace(trace_path, o.max_tokens, &N);
    cmd_replay_inputs in;
    cmd_replay_inputs_begin(&in, o.kde_path, &set, t);
    cmd_replay_bind_empirical(&set, &in.m, t, N, &cli, &in.emp);
    /* --store: the results file beside the trace, locked from now on */
    olmoe_results res;
    olmoe_hash tid;
    cmd_replay_results_begin(t, o.store, &res, &tid);
    olmoe_stats st = {0};
    if (o.store && !o.force && check_stored(&res, &set, o.skip_existing) == 0) {
        cmd_replay_nothing_to_do(&res, t, &outs);
    } else {
        run_stats(&st, t, &set, N);
        olmoe_trace_close(t);
        write_outputs(&st, &o, trace_path, command, &tid, &res, &outs);
        if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");
        olmoe_stats_free(&st);
    }
    cmd_replay_inputs_free(&in);
    olmoe_policy_set_free(&set);
    free(command);
    return 0;
}
