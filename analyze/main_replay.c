/* main_replay.c: olmoe-replay, routing policies evaluated on a captured trace
 * (docs/DESIGN.md §8). Each mode is command code of its own, main_replay_*.c
 * (main_replay.h); this file only picks one, from the table below, by --mode
 * (or --match-k, matched compute, whatever the mode). A mode parses all of
 * argv itself (its option table includes --mode). */
#include "common.h"
#include "main_replay.h"
#include "policy.h"
#include "traces.h"

#include <hdf5.h>

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} replay_mode;

static const replay_mode modes[] = {
    {"stats", cmd_replay_stats, "policies on the captured router logits only, no model"},
    {"replay", cmd_replay_run, "re-run the expert compute under each policy, attention frozen (default)"},
    {"exact", cmd_replay_run, "the exact forward pass under each policy (= replay --exact)"},
    {"validate", cmd_replay_run, "replay and exact side by side (= replay --validate)"},
    {"merge", cmd_replay_merge, "join the results of --shard i/N runs"},
    {NULL, NULL, NULL}};

static void general_help(FILE *f) {
    fprintf(f, "usage: olmoe-replay TRACE [--mode MODE] (--policy SPEC | --sweep NAME|FILE) "
               "[options]\n\nEvaluates routing policies on a captured trace.\n\nmodes:\n");
    for (const replay_mode *m = modes; m->name; m++) fprintf(f, "  %-10s %s\n", m->name, m->summary);
    fprintf(f, "  match-k    matched compute: families calibrated to mean k, then scored "
               "(= --match-k LIST)\n");
    fprintf(f, "\n'olmoe-replay --mode MODE --help' lists the options of a mode\n");
}

void cmd_replay_parse(int argc, char **argv, olmoe_opt *opts, olmoe_policy_cli *cli,
                      const char *usage, const int *quiet, const char *which_trace,
                      char **command) {
    int own = 0;
    while (opts[own].name) own++;
    own += olmoe_policy_cli_options(cli, opts + own, OLMOE_POLICY_CLI_SWEEP);
    opts[own] = (olmoe_opt)OPT_END;
    *command = olmoe_join_argv(argc, argv);
    int npos = olmoe_opt_parse(argc, argv, opts, usage);
    olmoe_set_quiet(*quiet);
    if (npos != 1) die_usage("%s", npos ? "one trace, please" : which_trace);
}

olmoe_trace *cmd_replay_open_trace(const char *path, long max_tokens, int64_t *N) {
    olmoe_trace *t = olmoe_trace_open(path);
    if (!t) die("%s", olmoe_error());
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    if (!in->complete) warnf("%s: the trace is incomplete (its capture did not finish)", path);
    *N = in->n_tokens;
    if (max_tokens > 0 && max_tokens < *N) *N = max_tokens;
    return t;
}

void cmd_replay_check_device(const char *device) {
    /* here, before the notes that name it and the work; the backend says
     * whether this build can run it */
    if (strcmp(device, "cpu") != 0 && strcmp(device, "cuda") != 0 && strncmp(device, "cuda:", 5) != 0)
        die_usage("--device: unknown device '%s' (auto, cpu or cuda)", device);
}

void cmd_replay_results_begin(olmoe_trace *t, int use, olmoe_results *res, olmoe_hash *tid) {
    *res = (olmoe_results){.f = H5I_INVALID_HID};
    if (olmoe_trace_identity(olmoe_trace_hid(t), tid) != 0)
        die("%s: %s", olmoe_trace_path(t), olmoe_error());
    if (use && olmoe_results_begin(res, olmoe_trace_path(t), olmoe_trace_hid(t)) != 0)
        die("%s", olmoe_error());
}

void cmd_replay_reserve(cmd_replay_outputs *r, const char *json, const char *csv, const char *out,
                        int force) {
    r->stdout_taken = olmoe_out_stdout_taken(json, csv);
    if (r->stdout_taken < 0) die_usage("%s", olmoe_error());
    if (olmoe_cmd_reserve(&r->json, json, force, 1) != 0 ||
        olmoe_cmd_reserve(&r->csv, csv, force, 1) != 0 ||
        olmoe_cmd_reserve(&r->out, out, force, 0) != 0)
        die("%s", olmoe_error());
}

void cmd_replay_commit(cmd_replay_outputs *r) {
    if (olmoe_cmd_commit(&r->json) != 0 || olmoe_cmd_commit(&r->csv) != 0 ||
        olmoe_cmd_commit(&r->out) != 0)
        die("%s", olmoe_error());
}

void cmd_replay_nothing_to_do(olmoe_results *res, olmoe_trace *t, cmd_replay_outputs *outs) {
    notef("every result is stored: nothing to compute");
    olmoe_results_abort(res);
    olmoe_trace_close(t);
    olmoe_cmd_output *o[] = {&outs->json, &outs->csv, &outs->out};
    for (int i = 0; i < 3; i++)
        if (o[i]->used) olmoe_out_abort(&o[i]->out); /* nothing to write */
}

/* pvalue=kde: m->null from --kde (NULL: dies when a policy of set needs one) */
static void load_null(const char *kde_path, const olmoe_policy_set *set, olmoe_trace *t,
                      olmoe_policy_model *m, olmoe_kde_null *null, olmoe_kde_cdf *cdf) {
    const char *trace_path = olmoe_trace_path(t);
    if (kde_path) {
        if (olmoe_cmd_load_null(kde_path, trace_path, &olmoe_trace_info_of(t)->meta, null, cdf) != 0)
            die("%s", olmoe_error());
        m->null = cdf;
    } else if (olmoe_policy_set_needs(set, OLMOE_PVALUE_KDE)) {
        die_usage("pvalue=kde needs --kde NULL.h5 (make one with olmoe-kde fit %s --out null.h5), "
                  "or use --pvalue pseudo|empirical", trace_path);
    }
}

void cmd_replay_inputs_begin(cmd_replay_inputs *in, const char *kde_path, olmoe_policy_set *set,
                             olmoe_trace *t) {
    const olmoe_trace_info *info = olmoe_trace_info_of(t);
    *in = (cmd_replay_inputs){.m = {info->meta.n_layers, info->meta.n_experts,
                                    info->meta.norm_topk_prob, NULL, NULL, NULL, 0}};
    load_null(kde_path, set, t, &in->m, &in->null, &in->cdf);
    if (olmoe_cmd_trace_tokens(t, set, &in->m, &in->tokens) != 0) die("%s", olmoe_error());
    olmoe_policy_model m0 = in->m;
    float one = 0;
    olmoe_policy_empirical fake = {in->m.n_layers, in->m.n_experts, 1, 1, 1, 1, &one};
    if (olmoe_policy_set_needs(set, OLMOE_PVALUE_EMPIRICAL)) m0.emp = &fake;
    if (olmoe_policy_set_bind(set, &m0) != 0) die("%s", olmoe_error());
}

void cmd_replay_inputs_free(cmd_replay_inputs *in) {
    olmoe_policy_empirical_free(&in->emp);
    olmoe_kde_cdf_free(&in->cdf);
    olmoe_kde_null_free(&in->null);
    free(in->tokens);
}

void cmd_replay_bind_empirical(olmoe_policy_set *set, olmoe_policy_model *m, olmoe_trace *t,
                               int64_t N, const olmoe_policy_cli *cli, olmoe_policy_empirical *emp) {
    if (!olmoe_policy_set_needs(set, OLMOE_PVALUE_EMPIRICAL)) return;
    if (olmoe_cmd_empirical_cli(cli, t, N, emp) != 0) die("%s", olmoe_error());
    m->emp = emp;
    if (olmoe_policy_set_bind(set, m) != 0) die("%s", olmoe_error());
}

/* what the dispatch needs of argv, before "--": --mode's value, and which of
 * --match-k, --help (-h) and --version are given */
typedef struct {
    const char *mode; /* NULL: not given */
    int match, help, version;
} replay_args;

static replay_args scan_args(int argc, char **argv) {
    replay_args a = {0};
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *s = argv[i];
        a.match |= strcmp(s, "--match-k") == 0 || strncmp(s, "--match-k=", 10) == 0;
        a.help |= strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0;
        a.version |= strcmp(s, "--version") == 0;
        if (strcmp(s, "--mode") == 0 && i + 1 < argc) a.mode = argv[i + 1];
        if (strncmp(s, "--mode=", 7) == 0) a.mode = s + 7;
    }
    return a;
}

int main(int argc, char **argv) {
    olmoe_set_prog(argv[0]);
    olmoe_save_argv(argc, argv);
    /* HDF5 1.10 crashes in its exit-time cleanup after an H5Fclose that failed
     * (full disk: "File too large"); every file we open is closed explicitly,
     * so its at-exit handler has nothing to do. Must precede any HDF5 call. */
    H5dont_atexit();
    replay_args a = scan_args(argc, argv);
    if (a.version) {
        printf("%s %s\n", olmoe_prog(), OLMOE_VERSION);
        return 0;
    }
    const char *mode = a.mode ? a.mode : "replay";
    if (a.match || strcmp(mode, "match-k") == 0) return cmd_replay_match(argc, argv);
    for (const replay_mode *m = modes; m->name; m++) {
        if (strcmp(m->name, mode) != 0) continue;
        if (a.help && !a.mode) { /* the modes, then the default mode's options */
            general_help(stdout);
            printf("\n");
        }
        return m->run(argc, argv);
    }
    if (a.help) {
        general_help(stdout);
        return 0;
    }
    die_usage("unknown mode '%s' (stats, replay, exact, validate, match-k, merge)", mode);
}
