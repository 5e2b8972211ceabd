/* main_replay_merge.c: olmoe-replay --mode merge, the results files of
 * olmoe-replay --shard i/N --out joined into the unsharded run's
 * (olmoe_replay_merge, replay_shard.c), then written as olmoe-replay --out
 * writes them. */
#include "analyze.h"
#include "common.h"
#include "main_replay.h"

#include <stdlib.h>
#include <string.h>

static const char merge_usage[] =
    "usage: olmoe-replay --mode merge --out FILE [--json F] [--csv F] TRACE SHARD...\n"
    "\n"
    "Joins the results files of olmoe-replay --shard i/N --out (all N, any order)\n"
    "into the results of the unsharded run: per-token rows concatenated, expert\n"
    "loads and times summed, perplexity, accuracy and expert counts computed over\n"
    "the whole run as olmoe-replay computes them. TRACE is the trace they replayed.";

typedef struct {
    const char *mode, *out_path, *json_path, *csv_path;
    int force, quiet;
} merge_opts;

/* the merged run into the reserved outputs (their .partial names) */
static void write_outputs(const olmoe_replay_merged *m, const merge_opts *o, const char *trace_path,
                          const char *command, olmoe_out *oo, olmoe_out *oj, olmoe_out *oc) {
    const olmoe_replay_validation *v = m->validate ? &m->v : NULL;
    const char *model_dir = m->model_dir ? m->model_dir : "";
    if (o->json_path &&
        olmoe_replay_write_json(&m->run, v, oj->tmp, trace_path, model_dir, NULL) != 0)
        die("%s", olmoe_error());
    if (o->csv_path && olmoe_replay_write_csv(&m->run, oc->tmp) != 0) die("%s", olmoe_error());
    hid_t f = olmoe_h5_create(oo->tmp);
    if (f < 0) die("%s", olmoe_error());
    if (olmoe_replay_results_attrs(f, trace_path, model_dir, command) != 0 ||
        olmoe_h5_set_attr_i64(f, ".", "merged_shards", m->n_shards) != 0 ||
        olmoe_replay_write_h5(&m->run, v, f, 0) != 0) {
        olmoe_h5_close(f);
        die("%s: %s", o->out_path, olmoe_error());
    }
    if (olmoe_h5_close(f) != 0) die("%s", olmoe_error());
}

int cmd_replay_merge(int argc, char **argv) {
    merge_opts o = {0};
    const olmoe_opt opts[] = {
        OPT_STRING("mode", &o.mode, "MODE", "merge"),
        OPT_STRING("out", &o.out_path, "FILE", "the merged results (HDF5, as olmoe-replay --out)"),
        OPT_STRING("json", &o.json_path, "FILE", "also write them as JSON (-: on stdout, no table)"),
        OPT_STRING("csv", &o.csv_path, "FILE", "also write them as CSV (-: on stdout, no table)"),
        OPT_FLAG("force", &o.force, "overwrite existing outputs"),
        OPT_FLAG("quiet", &o.quiet, "no notes or progress on stderr"),
        OPT_END};
    char *command = olmoe_join_argv(argc, argv);
    int npos = olmoe_opt_parse(argc, argv, opts, merge_usage);
    if (npos < 2) die_usage("merge needs the trace and at least one shard's results");
    if (!o.out_path) die_usage("merge needs --out FILE");
    olmoe_set_quiet(o.quiet);
    int stdout_taken = olmoe_out_stdout_taken(o.json_path, o.csv_path);
    if (stdout_taken < 0) die_usage("%s", olmoe_error());
    olmoe_out oo, oj, oc;
    if (olmoe_out_begin(&oo, o.out_path, o.force) != 0 ||
        (o.json_path && olmoe_out_begin_text(&oj, o.json_path, o.force) != 0) ||
        (o.csv_path && olmoe_out_begin_text(&oc, o.csv_path, o.force) != 0))
        die("%s", olmoe_error());
    const char *trace_path = argv[0];
    olmoe_replay_merged m;
    if (olmoe_replay_merge(trace_path, argv + 1, npos - 1, &m) != 0) die("%s", olmoe_error());
    if (!stdout_taken) olmoe_replay_print(&m.run, m.validate ? &m.v : NULL, stdout);
    write_outputs(&m, &o, trace_path, command, &oo, &oj, &oc);
    if (olmoe_out_commit(&oo) != 0 || (o.json_path && olmoe_out_commit(&oj) != 0) ||
        (o.csv_path && olmoe_out_commit(&oc) != 0))
        die("%s", olmoe_error());
    if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");
    olmoe_replay_merged_free(&m);
    free(command);
    return 0;
}
