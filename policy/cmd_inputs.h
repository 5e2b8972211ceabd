/* cmd_inputs.h (part of policy.h: include policy.h; for the commands, not the libraries):
 * what the modes of
 * olmoe-replay (stats, replay/exact/validate, match-k) and olmoe-capture
 * --policy share to set up their inputs and outputs. Each returns 0, or -1
 * with a one-line message in olmoe_error() (the command then dies).
 *
 *   olmoe_cmd_output o;
 *   if (olmoe_cmd_reserve(&o, csv_path, force, 1) != 0) ...; // NULL path: nothing reserved
 *   ... the work, writing o.out's partial file ...
 *   if (olmoe_cmd_commit(&o) != 0) ...;                     // renamed into place
 */
#ifndef OLMOE_CMD_INPUTS_H
#define OLMOE_CMD_INPUTS_H

#include "common.h"
#include "kde.h"
#include "policy.h"
#include "traces.h"

/* an output named before the work starts, so a bad path fails early; a
 * text one (JSON, CSV) takes "-" for standard output (olmoe_out_begin_text) */
typedef struct {
    olmoe_out out;
    int used;
} olmoe_cmd_output;
int olmoe_cmd_reserve(olmoe_cmd_output *r, const char *path, int force, int text);
int olmoe_cmd_commit(olmoe_cmd_output *r);

/* pvalue=empirical: each expert's logits over the trace's first N tokens,
 * at most max_per_expert of them (0: all) */
int olmoe_cmd_empirical(olmoe_trace *t, int64_t N, long max_per_expert, olmoe_policy_empirical *emp);

/* pvalue=empirical as the policy options say: the logits of --empirical
 * TRACE (all its tokens) when given, else of the trace t itself (its first
 * N tokens); at most cli->empirical_max per expert */
int olmoe_cmd_empirical_cli(const olmoe_policy_cli *cli, olmoe_trace *t, int64_t N,
                            olmoe_policy_empirical *emp);

/* pvalue=kde: the null of kde_path, checked against the trace's model */
int olmoe_cmd_load_null(const char *kde_path, const char *trace_path, const olmoe_trace_meta *tm,
                        olmoe_kde_null *null, olmoe_kde_cdf *cdf);

/* a file policy in the set: the trace's tokens, which it is checked against,
 * into m->tokens and *tokens (the caller frees *tokens; NULL when none needs them) */
int olmoe_cmd_trace_tokens(olmoe_trace *t, const olmoe_policy_set *set, olmoe_policy_model *m,
                           int32_t **tokens);

#endif
