/* analyze.h: the analyze layer, the one public header of analyze/ (above the
 * engine, beside capture/): olmoe-replay (replay.h: replay, exact, validate;
 * stats.h: routing statistics; match.h: matched compute; bootstrap.h and
 * headroom.h: intervals and headroom), olmoe-analyze and
 * olmoe-traces; the parts are included at the end of this file. This file:
 * the OLMoE paper's routing analyses over traces (olmoe-analyze): expert co-activation, domain and token specialization, cross-layer flow,
 * and the comparison of two traces of the same tokens (router saturation).
 *
 *   olmoe_analyze_opts o = {.policy = NULL, .layers = "all"};  // NULL: the trace's top-k
 *   olmoe_analyze_src *src = olmoe_analyze_src_open("run.h5", &o);
 *   if (!src) die("%s", olmoe_error());
 *   olmoe_analyze_pairs co;                    // co-activation: pairs of a layer with itself
 *   if (olmoe_analyze_coactivation(src, 10, 100, &co) != 0) die("%s", olmoe_error());
 *   printf("%g\n", co.max_cond_mean[0]);      // the first analysed layer's summary
 *   olmoe_analyze_pairs_print(&co, stdout, 10);
 *   olmoe_analyze_pairs_free(&co);
 *   olmoe_analyze_src_close(src);
 *
 * Every analysis streams the trace once (or twice: token counts first) in row
 * chunks, routes each token at each analysed layer with one policy, and keeps
 * only counters whose size depends on layers, experts, groups and the
 * vocabulary, never on the number of tokens. Definitions of every number and
 * the HDF5 layout of the results are in olmoe-analyze(1).
 *
 * Functions return 0 (or a handle) on success and -1 (or NULL) after
 * olmoe_errorf() with a one-line message naming the file.
 */
#ifndef OLMOE_ANALYZE_H
#define OLMOE_ANALYZE_H

#include <hdf5.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "policy.h"
#include "traces.h"

#define OLMOE_ANALYZE_FORMAT "olmoe-analyze"
#define OLMOE_ANALYZE_FORMAT_VERSION 1
#define OLMOE_ANALYZE_CHUNK_ROWS 1024 /* default rows read per step */

/* ---- the selection source: a trace read in chunks, routed by one policy ---- */
typedef struct {
    const char *policy;       /* one policy spec; NULL = the trace's baseline top-k */
    const char *null_path;    /* null.h5 (olmoe-kde) for pvalue=kde policies */
    const char *empirical_path; /* pvalue=empirical: another trace's logits (NULL: this one's) */
    int64_t empirical_max;    /* pvalue=empirical: logits kept per expert (0 = all) */
    const char *beta_trace;   /* skip(beta=median): the calibration trace */
    const char *layers;       /* NULL / "all" or a list "0,3,8-15" */
    int64_t chunk_rows;       /* 0 = OLMOE_ANALYZE_CHUNK_ROWS */
    int64_t max_tokens;       /* analyse the first N tokens; 0 = all */
    int want_groups;          /* paint each row's document group (needs /documents) */
    int want_logits;          /* keep the logits of the chunk (compare) */
} olmoe_analyze_opts;

/* Rows [start, start + n) of the trace, routed. K = the policy's most experts. */
typedef struct {
    int64_t start, n;
    const int32_t *tokens; /* [n] */
    const float *logits;   /* [n, L, E] (want_logits) else NULL */
    const uint8_t *n_sel;  /* [n, L] experts selected; 0 at layers not analysed */
    const int16_t *sel;    /* [n, L, K] expert ids in rank order (most preferred first) */
    const int32_t *group;  /* [n] document group, -1 for none (want_groups) else NULL */
} olmoe_analyze_chunk;

typedef struct {
    char *path;
    olmoe_trace *trace;
    const olmoe_trace_info *info;
    int L, E, K;             /* layers, experts, most experts selected */
    unsigned char *want;     /* [L] 1 where the layer is analysed */
    int n_layers;            /* analysed layers */
    int *layers;             /* [n_layers] their model indices, ascending */
    int64_t n_tokens;        /* rows analysed (max_tokens applied) */
    olmoe_policy policy;     /* bound */
    char **group_names;      /* [n_groups] (want_groups) */
    int64_t n_groups;
    /* private */
    olmoe_analyze_opts opts;
    int64_t next, chunk_rows;
    int32_t *tokens;         /* [chunk_rows] */
    float *logits;           /* [chunk_rows, L, E] */
    uint8_t *n_sel;          /* [chunk_rows, L] */
    int16_t *sel;            /* [chunk_rows, L, K] */
    int32_t *group;          /* [chunk_rows] */
    void *docs;              /* document index (analyze_src.c) */
    olmoe_kde_null *null;
    olmoe_kde_cdf *cdf;
    olmoe_policy_empirical *emp;
    double seconds;          /* time spent in next(): reading and routing */
    olmoe_progress prog;
} olmoe_analyze_src;

olmoe_analyze_src *olmoe_analyze_src_open(const char *path, const olmoe_analyze_opts *o);
/* The next chunk: 1 with c filled, 0 at the end, -1 on error. */
int olmoe_analyze_src_next(olmoe_analyze_src *s, olmoe_analyze_chunk *c);
/* back to the first row */
void olmoe_analyze_src_rewind(olmoe_analyze_src *s);
void olmoe_analyze_src_close(olmoe_analyze_src *s);

/* "all" / NULL or "0,3,8-15" into want[0..L); -1 + message on a bad list */
int olmoe_analyze_parse_layers(const char *s, int L, unsigned char *want /* [L] */);

/* ---- pairs of selections: co-activation (a layer with itself) and flow ---- */
/* Block b counts, over tokens, expert i selected at layer from[b] together with
 * expert j at layer to[b]. For co-activation from == to and j = i is excluded
 * from the summaries; for flow j = i is another expert (at another layer). */
typedef struct {
    int same_layer;           /* 1: co-activation */
    int n_blocks, E, top;     /* top: most co-activated pairs kept per block */
    int64_t min_count;        /* top pairs need expert i selected this often at from */
    int *from, *to;           /* [n_blocks] model layers */
    int64_t *n_tokens;        /* [n_blocks] tokens counted */
    int64_t *count_from;      /* [n_blocks, E] tokens with i selected at from */
    int64_t *count_to;        /* [n_blocks, E] tokens with j selected at to */
    int64_t *count;           /* [n_blocks, E, E] tokens with i at from and j at to */
    double *prob;             /* [n_blocks, E, E] P(j at to | i at from), NaN if count_from 0 */
    double *max_cond_mean;    /* [n_blocks] mean over i, weighted by count_from, of max over j
                               * (j != i for co-activation) of prob */
    double *indep_max_mean;   /* [n_blocks] the same under independent selection (olmoe-analyze(1)) */
    double *lift;             /* [n_blocks] max_cond_mean / indep_max_mean */
    double *mean_selected;    /* [n_blocks] mean experts per token at from */
    int *top_i, *top_j;       /* [n_blocks, top] most co-activated pairs, -1 padded */
    double *top_prob;         /* [n_blocks, top] */
} olmoe_analyze_pairs;

/* per analysed layer */
int olmoe_analyze_coactivation(olmoe_analyze_src *s, int top, int64_t min_count,
                               olmoe_analyze_pairs *out);
/* per (from[b], to[b]) pair of layers; each must be analysed by s */
int olmoe_analyze_flow(olmoe_analyze_src *s, int n_blocks, const int *from, const int *to, int top,
                       int64_t min_count, olmoe_analyze_pairs *out);
void olmoe_analyze_pairs_free(olmoe_analyze_pairs *p);
void olmoe_analyze_pairs_print(const olmoe_analyze_pairs *p, FILE *f, int top);
int olmoe_analyze_pairs_csv(const olmoe_analyze_pairs *p, FILE *f);
json_t *olmoe_analyze_pairs_json(const olmoe_analyze_pairs *p);
int olmoe_analyze_pairs_h5(const olmoe_analyze_pairs *p, hid_t g);

/* ---- specialization by document group (the paper's domain specialization) ---- */
typedef struct {
    int n_layers, E, G, top;
    int *layers;              /* [n_layers] */
    char **group_names;       /* [G] */
    int64_t *group_tokens;    /* [G] tokens of each group */
    int64_t no_group_tokens;  /* tokens in no document, or in one without a group */
    double *group_share;      /* [G] group_tokens / all grouped tokens */
    int64_t *count;           /* [n_layers, E, G] selections of e by tokens of g */
    double *share;            /* [n_layers, E, G] count / selections of e (NaN if none) */
    double *lift;             /* [n_layers, E, G] share / group_share */
    double *routed_frac;      /* [n_layers, G, E] count / group_tokens: the paper's figure */
    double *nmi;              /* [n_layers] I(expert; group) / H(group) over selections */
    double *max_lift_mean;    /* [n_layers] selection-weighted mean over e of max_g lift */
    double *mean_selected;    /* [n_layers] */
    int64_t min_count;        /* cells listed among the top need this many selections */
    int *top_e, *top_g;       /* [n_layers, top] most specialised (expert, group) cells */
} olmoe_analyze_groupspec;

int olmoe_analyze_spec_group(olmoe_analyze_src *s, int64_t min_count, int top,
                             olmoe_analyze_groupspec *out);
void olmoe_analyze_groupspec_free(olmoe_analyze_groupspec *g);
void olmoe_analyze_groupspec_print(const olmoe_analyze_groupspec *g, FILE *f);
int olmoe_analyze_groupspec_csv(const olmoe_analyze_groupspec *g, FILE *f);
json_t *olmoe_analyze_groupspec_json(const olmoe_analyze_groupspec *g);
int olmoe_analyze_groupspec_h5(const olmoe_analyze_groupspec *g, hid_t loc);

/* ---- token-id specialization ---- */
/* Vocabulary ids seen at least min_count times ("kept"). For each kept id and
 * layer: the expert selected most often for it and the share of its
 * occurrences that selected that expert; for each expert the kept ids with the
 * largest share of occurrences routed to it. text is filled by the caller
 * (olmoe_analyze_decode_ids) or left NULL. */
typedef struct {
    int n_layers, E, top;
    int *layers;              /* [n_layers] */
    int64_t min_count, n_tokens;
    int n_ids;                /* kept ids */
    int32_t *ids;             /* [n_ids] ascending */
    int64_t *id_count;        /* [n_ids] occurrences */
    char **text;              /* [n_ids] decoded, or NULL */
    int32_t *top_expert;      /* [n_layers, n_ids] */
    double *top_share;        /* [n_layers, n_ids] */
    double *mean_top_share;   /* [n_layers] weighted by occurrences */
    double *mean_top_share_ids; /* [n_layers] unweighted over kept ids */
    double *uniform_share;    /* [n_layers] mean experts per token / E: the no-specialization level */
    int32_t *expert_top_ids;  /* [n_layers, E, top] indexes into ids[], -1 padded */
    double *expert_top_share; /* [n_layers, E, top] */
} olmoe_analyze_tokenspec;

/* max_bytes bounds the counters (n_layers x kept ids x E x 4 bytes); 0 = 2 GiB */
int olmoe_analyze_spec_token(olmoe_analyze_src *s, int64_t min_count, int top, size_t max_bytes,
                             olmoe_analyze_tokenspec *out);
void olmoe_analyze_tokenspec_free(olmoe_analyze_tokenspec *t);
void olmoe_analyze_tokenspec_print(const olmoe_analyze_tokenspec *t, FILE *f);
int olmoe_analyze_tokenspec_csv(const olmoe_analyze_tokenspec *t, FILE *f);
json_t *olmoe_analyze_tokenspec_json(const olmoe_analyze_tokenspec *t);
int olmoe_analyze_tokenspec_h5(const olmoe_analyze_tokenspec *t, hid_t loc);

/* ---- two traces of the same tokens ---- */
typedef struct {
    int n_layers, E, top;
    int *layers;              /* [n_layers] */
    int64_t n_tokens;
    double *overlap;          /* [n_layers] mean |Sa & Sb| / max(|Sa|, |Sb|) */
    double *top1_agree;       /* [n_layers] share of tokens with the same first expert */
    double *exact_agree;      /* [n_layers] share of tokens with Sa == Sb */
    double *spearman;         /* [n_layers] mean Spearman correlation of the E logits */
    int64_t *spearman_n;      /* [n_layers] tokens where it is defined */
    double *mean_k_a, *mean_k_b; /* [n_layers] mean |S| */
    int n_worst;              /* positions kept (<= top) */
    int64_t *worst_pos;       /* [n_worst] where the sets differ most, worst first */
    int32_t *worst_token;     /* [n_worst] */
    double *worst_overlap;    /* [n_worst] mean over layers of the overlap there */
    double *worst_spearman;   /* [n_worst] mean over layers of Spearman there */
    int32_t *worst_layer;     /* [n_worst] the layer with the smallest overlap there */
    char **worst_text;        /* [n_worst] decoded, or NULL */
} olmoe_analyze_compare;

/* Checks first that both traces hold the same tokens (an error otherwise). */
int olmoe_analyze_compare_run(olmoe_analyze_src *a, olmoe_analyze_src *b, int top,
                              olmoe_analyze_compare *out);
void olmoe_analyze_compare_free(olmoe_analyze_compare *c);
void olmoe_analyze_compare_print(const olmoe_analyze_compare *c, FILE *f);
int olmoe_analyze_compare_csv(const olmoe_analyze_compare *c, FILE *f);
json_t *olmoe_analyze_compare_json(const olmoe_analyze_compare *c);
int olmoe_analyze_compare_h5(const olmoe_analyze_compare *c, hid_t loc);
/* Spearman rank correlation of a[0..n) and b[0..n) (average ranks for ties);
 * NaN when either is constant */
double olmoe_analyze_spearman(const float *a, const float *b, int n);

/* ---- output helpers ---- */
/* JSON number, null for NaN / infinity (JSON has none) */
json_t *olmoe_analyze_jnum(double v);
/* a CSV field, quoted when it needs to be (RFC 4180) */
void olmoe_analyze_csv_str(FILE *f, const char *s);
/* a token's text for a table: control characters, backslash and double quote escaped */
void olmoe_analyze_escape(const char *s, char *buf, size_t n);
/* A stored result is the group /analyze/<analysis>/<typable name> keyed by
 * its name (any string without '/': --name, default the policy spec) in
 * the attribute "name" (olmoe_result_find, kind "analyze/<analysis>"; an
 * older file's group named by the name itself is found too).
 * olmoe_analyze_h5_find: 1 and *path (fresh) where it lies, 0, -1.
 * olmoe_analyze_h5_begin creates the group under a temporary name
 * (returned open in *g, its "name" set): write into it, then
 * olmoe_analyze_h5_commit moves it to its typable name (replacing an old
 * result of that name when force, refusing otherwise). */
int olmoe_analyze_h5_find(hid_t file, const char *analysis, const char *name, char **path);
/* 0 when name can name a stored result, else -1 + message */
int olmoe_analyze_name_check(const char *name);
int olmoe_analyze_h5_begin(hid_t file, const char *analysis, const char *name, int force, hid_t *g);
int olmoe_analyze_h5_commit(hid_t file, const char *analysis, const char *name, int force, hid_t g);
/* Decodes each id alone with a tokenizer.json: *text is [n] fresh strings
 * (free each, then the array). */
int olmoe_analyze_decode_ids(const char *tokenizer_json, const int32_t *ids, int64_t n,
                             char ***text);
/* peak resident memory of this process in bytes (getrusage) */
double olmoe_analyze_peak_rss(void);

/* the parts of this header, each in a file of its own */
#include "bootstrap.h"
#include "headroom.h"
#include "match.h"
#include "replay.h"
#include "stats.h"

#endif
