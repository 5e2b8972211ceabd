/* replay.h (part of analyze.h: include analyze.h):
 * routing policies evaluated by perplexity on a captured trace
 * (docs/DESIGN.md §8): frozen-attention replay of the expert compute, the exact
 * forward pass through the engine, and the two side by side (validation).
 *
 *   olmoe_replay_run r;
 *   olmoe_replay_opts o = {.trace_path = "run.h5", .model = &model, .policies = pols,
 *                          .n_policies = n, .do_replay = 1, .do_exact = 1,
 *                          .device = "cpu", .chunk_tokens = 4096};
 *   if (olmoe_replay_run_all(&o, &r) != 0) die("%s", olmoe_error());   // reads the trace once
 *   for (int i = 0; i < r.n_results; i++)
 *       printf("%s %s %.3f\n", olmoe_replay_kind_name(r.res[i].kind), r.res[i].policy->id,
 *              r.res[i].all.perplexity);
 *   olmoe_replay_validation v;
 *   olmoe_replay_validate(&r, &v);                                     // the /validate table
 *   olmoe_replay_write_h5(&r, &v, loc, 0);                             // man/olmoe-replay.1's layout
 *   olmoe_replay_validation_free(&v);
 *   olmoe_replay_run_free(&r);
 *
 * Replay, per token and layer l: h += A_l (the captured attention output),
 * x = rmsnorm(h) * w_post, r = Wg x (or the captured router logits), S, w =
 * policy(r), h += sum over S of w_e expert_e(x); then the LM head. Attention
 * is frozen at its captured value, so replay is exact for the baseline policy
 * (up to the bfloat16 rounding of the stored A_l) and for one-layer models,
 * and optimistic elsewhere: every number it gives is labelled "replay".
 *
 * The per-chunk compute sits behind olmoe_replay_backend (engine/replay_cpu.c,
 * engine/replay_cuda.cu: the same four calls). A chunk is a run of whole windows of
 * the trace; the driver reads each chunk once (residuals, logits) and runs
 * every policy on it, so memory is O(chunk) for the trace's data plus the
 * per-token results (nll, argmax, experts: 8 + L bytes per token and policy).
 */
#ifndef OLMOE_REPLAY_H
#define OLMOE_REPLAY_H

#include <stdint.h>
#include <stdio.h>

#include "engine.h"
#include "policy.h"
#include "traces.h"

typedef enum { OLMOE_KIND_REPLAY = 0, OLMOE_KIND_EXACT } olmoe_replay_kind;
const char *olmoe_replay_kind_name(olmoe_replay_kind k);       /* "replay", "exact" */

/* ---- a whole run: every policy over a trace ---- */

typedef struct {
    int64_t n_scored;
    double nll_sum, perplexity, accuracy;
    int64_t n_token_layers;
    double mean_k, sd_k, share_min_k, share_max_k, compute_saved;
} olmoe_replay_summary;

typedef struct {
    olmoe_policy *policy;
    olmoe_replay_kind kind;
    olmoe_replay_routing routing; /* exact: always recompute */
    char device[96];
    int stored;         /* 0: computed only for the self-check */
    double seconds;     /* wall time of this policy (its runs over every chunk) */
    double cpu_seconds; /* CPU time of the process meanwhile (all threads) */
    float *nll;         /* [N] NaN where not scored */
    int32_t *argmax;    /* [N] */
    uint8_t *experts;   /* [N, L] experts used per token and layer */
    int64_t *k_hist;    /* [L, E + 1] token-layers by number of experts */
    int64_t *load;      /* [L, E] */
    double *mean_k_layer; /* [L] */
    olmoe_replay_summary all;
    olmoe_replay_summary *group; /* [n_groups] */
    /* 95 % paired bootstrap (olmoe_replay_bootstrap): perplexity lo, hi and
     * perplexity / baseline - 1 lo, hi; NaN when not computed */
    double ci[4];
} olmoe_replay_result;

typedef struct {
    const char *trace_path;
    olmoe_model *model;          /* opened; its checksum must match the trace's */
    olmoe_policy **policies;     /* [n_policies] bound */
    int n_policies;
    int do_replay, do_exact;
    olmoe_replay_routing routing;
    const char *device;          /* "cpu" (default) or "cuda" */
    int64_t max_tokens;          /* 0: all; else whole windows up to this many tokens */
    int64_t chunk_tokens;        /* rows per chunk (whole windows, at least one) */
    int self_check;              /* replay the trace's own policy and compare its NLL */
    const olmoe_policy_model *bind_model; /* to bind the baseline policy for the self-check */
    int progress;                /* progress line on stderr */
    /* ---- --shard (replay_shard.c) ---- */
    int shard_index, shard_count; /* only part i of N of the run's chunks; count 0: all */
    /* ---- end --shard ---- */
} olmoe_replay_opts;

/* the self-check: the trace's policy replayed against its captured NLL */
typedef struct {
    int done;
    char policy[OLMOE_POLICY_ID_MAX];
    char why_not[320];       /* when not done */
    double max_abs_diff;     /* max |nll_replay - nll_captured| over scored tokens */
    double max_rel_diff;     /* max of that / max(1, |nll_captured|) */
    double mean_abs_diff;
    double ppl_rel_diff;     /* replay / captured perplexity - 1 */
    double nll_rel_diff;     /* replay / captured mean NLL - 1 (scale-free: log perplexity) */
    const char *residual_dtype; /* "bfloat16" or "float32" */
} olmoe_replay_selfcheck;

typedef struct {
    int n_layers, n_experts, hidden_size, vocab_size, top_k;
    int64_t n_tokens;           /* N: rows replayed */
    int64_t n_trace_tokens;     /* rows in the trace */
    int64_t n_windows;
    int32_t *tokens;            /* [N + 1] (the last only when the trace has it) */
    float *baseline_nll;        /* [N] the trace's */
    int32_t *token_group;       /* [N] group of each position, -1 when none */
    int n_groups;
    char **group_names;         /* [n_groups] */
    double baseline_perplexity; /* of the trace over these N tokens */
    int64_t baseline_scored;
    char trace_policy[OLMOE_POLICY_ID_MAX];
    char model_checksum[64];
    int n_results;
    olmoe_replay_result *res;   /* replay results first (policy order), then exact */
    olmoe_policy *own_policy;   /* the self-check's policy when none asked for it */
    olmoe_replay_selfcheck self;
    double read_seconds;        /* wall s reading the trace */
    double read_wait_seconds;   /* of which the run waited for (a reader thread reads ahead) */
    double total_seconds;
    /* ---- --shard (replay_shard.c) ---- */
    int64_t row_begin, row_end; /* the rows replayed: [0, n_tokens) unless sharded */
    int64_t n_chunks_run;       /* chunks of the whole (unsharded) run */
    /* ---- end --shard ---- */
    /* the bootstrap behind res[].ci: 0 resamples when none ran */
    int boot_resamples;
    uint64_t boot_seed;
    int64_t boot_units;
    const char *boot_unit; /* "document" or "window" */
} olmoe_replay_run;

/* Paired bootstrap over the trace's documents (windows when it has none) of
 * every stored result against the trace's baseline NLL (analyze/bootstrap.h):
 * fills res[].ci and the boot_* fields. 0, or -1 + message. */
int olmoe_replay_bootstrap(olmoe_replay_run *r, const char *trace_path, int resamples, uint64_t seed);

/* What a run checks before any work (olmoe-replay calls it first too): the
 * model's checksum and shapes against the trace's, and the residuals when
 * replay needs them; the model's checksum into checksum_hex when not NULL. */
int olmoe_replay_check_trace(const char *trace_path, olmoe_trace *t, olmoe_model *m,
                             int need_residuals, char *checksum_hex /*[33]*/);
/* Checks the trace against the model (checksum, sizes) and that it has what
 * the kinds asked for need, then reads it chunk by chunk and runs every
 * policy; fills r. Errors are one line naming the file. */
int olmoe_replay_run_all(const olmoe_replay_opts *o, olmoe_replay_run *r);
void olmoe_replay_run_free(olmoe_replay_run *r);
/* the result of a policy of a kind, or NULL */
const olmoe_replay_result *olmoe_replay_find(const olmoe_replay_run *r, olmoe_replay_kind kind,
                                             const char *policy_id);
/* sums, summaries and groups from a result's per-token arrays (run_all calls it) */
void olmoe_replay_summarize(const olmoe_replay_run *r, olmoe_replay_result *res);
/* res zeroed, then its per-token arrays for N tokens (NLL NaN) and its
 * per-layer counts allocated; exact results always recompute routing */
void olmoe_replay_result_init(olmoe_replay_result *res, olmoe_policy *p, olmoe_replay_kind kind,
                              olmoe_replay_routing routing, int64_t N, int L, int E, int n_groups,
                              int stored);
/* r->self from the replay result of r->self.policy against the captured NLL
 * (max and mean differences, perplexity); -1, r->self untouched, when that
 * policy has no replay result */
int olmoe_replay_self_check(olmoe_replay_run *r);

/* ---- validation: replay against exact ---- */
typedef struct {
    int n;                 /* policies with both results */
    char **policy;         /* [n] ids */
    double *replay_ppl, *exact_ppl, *rel_diff, *nll_corr, *nll_mad; /* [n] */
    double *replay_seconds, *exact_seconds;                        /* [n] */
    int ranking_agrees;
    double kendall_tau;    /* tau-b of the two perplexity orders; NaN below 2 policies */
    int n_discordant;      /* pairs of policies the two order differently (ties included) */
    double widest_discordant; /* the largest relative exact-perplexity gap among them */
} olmoe_replay_validation;

int olmoe_replay_validate(const olmoe_replay_run *r, olmoe_replay_validation *v);
void olmoe_replay_validation_free(olmoe_replay_validation *v);
/* Pearson correlation of x and y over the i where both are finite; NaN when
 * fewer than 2 or a constant side */
double olmoe_replay_pearson(const float *x, const float *y, int64_t n, double *mean_abs_diff);
/* Kendall's tau-b of two score lists; *all_agree = 1 when no pair is ordered
 * differently (ties must be ties in both) */
double olmoe_replay_kendall(const double *a, const double *b, int n, int *all_agree);
/* pairs ordered differently by a and b (a tie on one side only counts), and
 * in *widest the largest |b_i - b_j| / min(b_i, b_j) among them (0 if none):
 * whether a disagreement is between near-equals or matters */
int olmoe_replay_discordant(const double *a, const double *b, int n, double *widest);

/* ---- outputs (replay_output.c, replay_h5.c) ---- */
/* a results file of olmoe-replay (--out), as its root attributes say */
#define OLMOE_REPLAY_FORMAT "olmoe-replay"
#define OLMOE_REPLAY_FORMAT_VERSION 1
/* those root attributes: format, format_version, trace, model_dir ("" when
 * NULL) and command */
int olmoe_replay_results_attrs(hid_t f, const char *trace_path, const char *model_dir,
                               const char *command);
/* the table: replay rows say "replay" (optimistic), exact rows "exact"; then
 * the validation table when v is not NULL */
void olmoe_replay_print(const olmoe_replay_run *r, const olmoe_replay_validation *v, FILE *f);
int olmoe_replay_write_json(const olmoe_replay_run *r, const olmoe_replay_validation *v,
                            const char *path, const char *trace_path, const char *model_dir,
                            const char *kde_path);
int olmoe_replay_write_csv(const olmoe_replay_run *r, const char *path);
/* /replay/<id>/ and /exact/<id>/ (and /validate when v) under loc; replace:
 * delete existing groups of the same names first, else refuse them */
int olmoe_replay_write_h5(const olmoe_replay_run *r, const olmoe_replay_validation *v, hid_t loc,
                          int replace);
/* 1 if a result this run would write already exists under loc (its path in
 * *which, static storage), 0 if none, -1 on error */
int olmoe_replay_h5_conflict(hid_t loc, olmoe_policy *const *policies, int n, int do_replay,
                             int do_exact, int validate, const char **which);

/* Stored results read back (replay_h5.c): the per-token NLL [*n] of kind
 * ("replay", "exact") and policy id under loc: 1 read (*nll is the caller's
 * to free), 0 absent, -1 + message. */
int olmoe_replay_h5_read_nll(hid_t loc, const char *kind, const char *id, float **nll, int64_t *n);
/* the policy ids stored under loc for kind (their groups' "policy"
 * attributes), in id order (caller frees each and the array); none: *n = 0 */
int olmoe_replay_h5_ids(hid_t loc, const char *kind, char ***ids, int *n);

/* ---- olmoe-traces export --what decisions (replay_decisions.c) ---- */
typedef struct {
    const char *policy_id; /* canonical id (or a spec, canonicalised) */
    const char *kind;      /* "replay", "exact" or NULL: replay if present, else exact */
    int top;               /* tokens to print */
    int context;           /* tokens of context before each */
    const char *tokenizer; /* tokenizer.json, NULL: the trace's model_dir */
    const char *results;   /* results file (--out of olmoe-replay), NULL: in the trace */
    int64_t start, count;  /* only positions [start, start + count) (count < 0: to the end) */
} olmoe_decisions_opts;
/* CSV on out: the top tokens by |nll_policy - nll_baseline| */
int olmoe_replay_export_decisions(olmoe_trace *t, const olmoe_decisions_opts *o, FILE *out);

/* ---- --shard i/N and --mode merge (replay_shard.c) ---- */
/* A sharded run's results over its own rows only: a view of r (arrays
 * borrowed, rows [row_begin, row_end) of r), summarised over those rows;
 * free with olmoe_replay_shard_view_free (r stays valid and owns the data). */
int olmoe_replay_shard_view(const olmoe_replay_run *r, olmoe_replay_run *view);
void olmoe_replay_shard_view_free(olmoe_replay_run *view);
/* root attributes of a shard's results file that place it in the run */
int olmoe_replay_shard_attrs(hid_t f, const olmoe_replay_run *r, const olmoe_replay_opts *o);
/* olmoe-replay --mode merge: the shards' results (paths in any order) joined
 * into the unsharded run's; free with olmoe_replay_merged_free (done on error) */
typedef struct {
    olmoe_replay_run run;
    olmoe_policy *policies; /* [run.n_results] the results' policies */
    int validate;           /* the shards hold /validate: v is filled */
    olmoe_replay_validation v;
    char *model_dir;        /* the first shard's model_dir attribute, or NULL */
    int n_shards;
} olmoe_replay_merged;
int olmoe_replay_merge(const char *trace_path, char *const *shard_paths, int n,
                       olmoe_replay_merged *m);
void olmoe_replay_merged_free(olmoe_replay_merged *m);
/* ---- end --shard ---- */

#endif
