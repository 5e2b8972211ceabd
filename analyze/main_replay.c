/* main_replay.c: olmoe-replay, routing policies evaluated on a captured trace
 * (docs/DESIGN.md §8). Each mode is its own entry point in its own file; this file
 * only picks one from --mode:
 *   stats    policies on the captured router logits only (stats_cmd.c)
 *   replay   re-running the expert compute (default), exact, validate
 *            (replay_cmd.c; exact = --exact, validate = --validate)
 * A mode parses all of argv itself (its option table includes --mode). */
#include "common.h"
#include "match.h"
#include "replay.h"
#include "stats.h"

#include <hdf5.h>

#include <string.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} replay_mode;

static const replay_mode modes[] = {
    {"stats", olmoe_replay_stats_main, "policies on the captured router logits only, no model"},
    /* ---- replay, exact, validate (replay_cmd.c) ---- */
    {"replay", olmoe_replay_main, "re-run the expert compute under each policy, attention frozen (default)"},
    {"exact", olmoe_replay_main, "the exact forward pass under each policy (= replay --exact)"},
    {"validate", olmoe_replay_main, "replay and exact side by side (= replay --validate)"},
    /* ---- end of replay modes ---- */
    {"merge", olmoe_replay_merge_main, "join the results of --shard i/N runs"},
    {NULL, NULL, NULL}};

static void general_help(FILE *f) {
    fprintf(f, "usage: olmoe-replay TRACE [--mode MODE] (--policy SPEC | --sweep NAME|FILE) "
               "[options]\n\nEvaluates routing policies on a captured trace.\n\nmodes:\n");
    for (const replay_mode *m = modes; m->name; m++) fprintf(f, "  %-10s %s\n", m->name, m->summary);
    fprintf(f, "  match-k    matched compute: families calibrated to mean k, then scored "
               "(= --match-k LIST)\n");
    fprintf(f, "\n'olmoe-replay --mode MODE --help' lists the options of a mode\n");
}

int main(int argc, char **argv) {
    olmoe_set_prog(argv[0]);
    olmoe_save_argv(argc, argv);
    /* HDF5 1.10 crashes in its exit-time cleanup after an H5Fclose that failed
     * (full disk: "File too large"); every file we open is closed explicitly,
     * so its at-exit handler has nothing to do. Must precede any HDF5 call. */
    H5dont_atexit();
    const char *mode = "replay";
    int help = 0, explicit_mode = 0, match = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        /* --match-k: matched compute, whatever the mode */
        match |= strcmp(argv[i], "--match-k") == 0 || strncmp(argv[i], "--match-k=", 10) == 0;
        if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc) mode = argv[i + 1], explicit_mode = 1;
        if (strncmp(argv[i], "--mode=", 7) == 0) mode = argv[i] + 7, explicit_mode = 1;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) help = 1;
        if (strcmp(argv[i], "--version") == 0) {
            printf("%s %s\n", olmoe_prog(), OLMOE_VERSION);
            return 0;
        }
    }
    if (match || strcmp(mode, "match-k") == 0) return olmoe_match_main(argc, argv);
    for (const replay_mode *m = modes; m->name; m++) {
        if (strcmp(m->name, mode) != 0) continue;
        if (m->run && help && !explicit_mode) { /* the modes, then the default mode's options */
            general_help(stdout);
            printf("\n");
        }
        if (m->run) return m->run(argc, argv);
        if (help) {
            general_help(stdout);
            return 0;
        }
        die_usage("mode '%s' is not built yet (--mode stats works on logits alone)", mode);
    }
    if (help) {
        general_help(stdout);
        return 0;
    }
    die_usage("unknown mode '%s' (stats, replay, exact, validate, match-k, merge)", mode);
}
