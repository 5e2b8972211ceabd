/* stats.h (part of analyze.h: include analyze.h):
 * routing statistics of policies applied to a trace's captured
 * router logits, without the model (olmoe-replay --mode stats, docs/DESIGN.md §8-9).
 *
 *   olmoe_stats st;
 *   olmoe_stats_init(&st, trace, &set);          // set: bound policies
 *   if (olmoe_stats_run(&st, trace, 0) != 0)      // streams the logits in chunks
 *       die("%s", olmoe_error());
 *   olmoe_stats_summary s;
 *   olmoe_stats_summarize(&st, 0, OLMOE_STATS_ALL, -1, &s);   // policy 0, all tokens, all layers
 *   printf("%.3f experts per token-layer\n", s.mean_k);
 *   olmoe_stats_free(&st);
 *
 * Everything is counted per scope (all tokens, then one scope per document
 * group when the trace has /documents with groups) and per layer; summaries
 * are derived from the counts, so the numbers in the table, JSON, CSV and
 * HDF5 outputs agree by construction. Memory does not grow with the trace:
 * the logits are read CHUNK tokens at a time.
 *
 * Definitions (per token-layer, S = the policy's experts, B = the trace's
 * baseline: top_k of softmax p, ties to the lower index, top_k = the trace's
 * attribute, 8 for OLMoE):
 *   k = |S|; mean_k, sd_k (population) over token-layers; hist[k] counts;
 *   share_min_k / share_max_k = share of token-layers with k = min_k / max_k;
 *   overlap = |S n B|; coverage = sum |S n B| / (n * top_k) (share of the
 *   baseline's experts kept); precision = mean of |S n B| / |S|;
 *   flops_vs_baseline = mean_k / top_k: expert FLOPs per token scale with |S|
 *   (each expert is the same three D x I matmuls; router, attention and the
 *   LM head are unchanged), so 1 - flops_vs_baseline is the share of expert
 *   compute saved against top-k;
 *   load[e] = token-layers routed to e; load_cv = sd / mean of load over the
 *   experts of a layer (population sd); over all layers: the mean of the
 *   layers' load_cv.
 */
#ifndef OLMOE_STATS_H
#define OLMOE_STATS_H

#include <stdint.h>
#include <stdio.h>

#include "policy.h"
#include "traces.h"

#define OLMOE_STATS_ALL 0 /* scope 0: every token; scope 1 + g: document group g */
#define OLMOE_STATS_CHUNK 1024

typedef struct {
    olmoe_policy *policy;
    int min_k, max_k;
    int64_t *k_hist;   /* [S, L, E + 1] token-layers by number of experts */
    int64_t *load;     /* [S, L, E] token-layers routed to each expert */
    int64_t *overlap;  /* [S, L] sum of |S n B| */
    double *precision; /* [S, L] sum of |S n B| / |S| */
    double seconds;    /* CPU s routing and counting (with the baseline checks it asked for) */
} olmoe_stats_policy;

typedef struct {
    int n_layers, n_experts, top_k;
    int n_scopes;        /* 1 + number of groups */
    char **group_names;  /* [n_scopes - 1] */
    int64_t n_tokens;    /* tokens counted */
    int n_policies;
    olmoe_stats_policy *pol; /* [n_policies] */
    double seconds_read;  /* CPU s in the trace reader */
    double seconds_total; /* wall s of the run */
} olmoe_stats;

typedef struct {
    int64_t n; /* token-layers */
    double mean_k, sd_k, share_min_k, share_max_k;
    double overlap_mean, coverage, precision, flops_vs_baseline, load_cv;
} olmoe_stats_summary;

/* Sizes from the trace (top_k must be in 1..E), groups from /groups. The set's
 * policies must be bound; st keeps pointers to them. */
int olmoe_stats_init(olmoe_stats *st, olmoe_trace *t, olmoe_policy_set *set);
/* Streams tokens [0, max_tokens) (0: all) through every policy. */
int olmoe_stats_run(olmoe_stats *st, olmoe_trace *t, int64_t max_tokens);
/* layer -1: all layers pooled (load_cv: mean over layers) */
void olmoe_stats_summarize(const olmoe_stats *st, int policy, int scope, int layer,
                           olmoe_stats_summary *out);
void olmoe_stats_free(olmoe_stats *st);

/* ---- outputs (stats_output.c) ---- */
/* one row per policy (and per layer with per_layer) */
void olmoe_stats_print_table(const olmoe_stats *st, FILE *f, int per_layer);
/* info: run-level facts for the JSON (trace path, kde path or NULL) */
int olmoe_stats_write_json(const olmoe_stats *st, const char *path, const char *trace_path,
                           const char *kde_path);
int olmoe_stats_write_csv(const olmoe_stats *st, const char *path);
/* /stats/<policy id>/... under loc (a trace or a results file); replace:
 * delete an existing group of the same id first, else refuse it */
int olmoe_stats_write_h5(const olmoe_stats *st, hid_t loc, const char *trace_path, int replace);

/* a results file of olmoe-replay --mode stats (--out, --json) */
#define OLMOE_STATS_FORMAT "olmoe-stats"
#define OLMOE_STATS_FORMAT_VERSION 1

#endif
