/* main_replay.h (internal to analyze/): the modes of olmoe-replay, each the
 * command code of one mode in its own main_replay_*.c, linked into
 * olmoe-replay only; main_replay.c picks one from its table. Each parses all
 * of argv itself (its option table includes --mode) and may exit. */
#ifndef OLMOE_MAIN_REPLAY_H
#define OLMOE_MAIN_REPLAY_H

#include "common.h"
#include "policy.h"
#include "traces.h"

int cmd_replay_run(int argc, char **argv);   /* replay, exact, validate (main_replay_run.c) */
int cmd_replay_stats(int argc, char **argv); /* --mode stats (main_replay_stats.c) */
int cmd_replay_match(int argc, char **argv); /* --match-k (main_replay_match.c) */
int cmd_replay_merge(int argc, char **argv); /* --mode merge (main_replay_merge.c) */

/* What the modes that take policies share (main_replay.c): the policy
 * options appended to the mode's own (opts, ended by OPT_END, has room for
 * OLMOE_POLICY_CLI_NOPTS more), the command line kept in *command (before
 * argv is reordered), argv parsed, --quiet applied. Dies unless exactly one
 * positional, the trace, is given (which_trace: the hint when none is). */
void cmd_replay_parse(int argc, char **argv, olmoe_opt *opts, olmoe_policy_cli *cli,
                      const char *usage, const int *quiet, const char *which_trace,
                      char **command);
/* the trace opened (a warning when its capture did not finish), and in *N
 * its tokens, or the first max_tokens of them when that is fewer (0: all) */
olmoe_trace *cmd_replay_open_trace(const char *path, long max_tokens, int64_t *N);
/* the trace's identity into *tid and, when use, the results file beside it
 * begun (locked, written as a partial until olmoe_results_commit) */
/* --device after olmoe_device_resolve: cpu, cuda or cuda:N, else a usage error */
void cmd_replay_check_device(const char *device);
void cmd_replay_results_begin(olmoe_trace *t, int use, olmoe_results *res, olmoe_hash *tid);
/* a mode's --json, --csv and --out (each NULL: not given): reserved
 * before any work (an existing one refused without force), then committed
 * together. --json - or --csv - writes to standard output, and then the
 * mode's table is not printed there (stdout_taken); both "-" is a usage
 * error. */
typedef struct {
    olmoe_cmd_output json, csv, out;
    int stdout_taken;
} cmd_replay_outputs;
void cmd_replay_reserve(cmd_replay_outputs *r, const char *json, const char *csv, const char *out,
                        int force);
void cmd_replay_commit(cmd_replay_outputs *r);
/* every result is stored: says so (a note on stderr), removes the partials (the
 * results file's and the outputs') and closes t */
void cmd_replay_nothing_to_do(olmoe_results *res, olmoe_trace *t, cmd_replay_outputs *outs);
/* what a set of policies is bound to, for a trace: its shapes, the null of
 * --kde, the trace's tokens (for a file policy) and the empirical null */
typedef struct {
    olmoe_policy_model m;
    olmoe_kde_null null;
    olmoe_kde_cdf cdf;
    olmoe_policy_empirical emp;
    int32_t *tokens; /* NULL when no policy needs them */
} cmd_replay_inputs;
/* in from t's shapes, m.null from --kde (kde_path NULL: dies when a policy
 * of set needs one), the tokens when a policy needs them, and set bound
 * before any work, so that bad parameters fail first (a placeholder of the
 * right shape stands for an empirical null still to read) */
void cmd_replay_inputs_begin(cmd_replay_inputs *in, const char *kde_path, olmoe_policy_set *set,
                             olmoe_trace *t);
void cmd_replay_inputs_free(cmd_replay_inputs *in);
/* pvalue=empirical: when set needs it, the null read from --empirical TRACE
 * or else t's first N tokens into emp (cli's options), m->emp set and set
 * bound again */
void cmd_replay_bind_empirical(olmoe_policy_set *set, olmoe_policy_model *m, olmoe_trace *t,
                               int64_t N, const olmoe_policy_cli *cli, olmoe_policy_empirical *emp);

#endif
