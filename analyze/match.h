/* match.h (part of analyze.h: include analyze.h):
 * matched compute (olmoe-replay --match-k, docs/DESIGN.md §6). Policies
 * are only comparable at equal cost, so each family's continuous parameter
 * (topp p, bh alpha, threshold tau, skip beta, entropy scale, hc beta) is
 * calibrated by bisection until the family's mean experts per token-layer on
 * a calibration trace's captured router logits is the target (± tol); then
 * every family is scored at every target next to top-k at the same k.
 *
 *   olmoe_match_data d;                       // the calibration logits, in memory
 *   if (olmoe_match_data_load(&d, "calib.h5", 0, 262144) != 0) die("%s", olmoe_error());
 *   olmoe_match_family f;                     // bh with max_k 16 unless the spec says
 *   if (olmoe_match_family_init(&f, "bh(pvalue=kde)", NULL, 16) != 0) die(...);
 *   olmoe_match_point pt;                     // bm: what policies bind to (nulls)
 *   if (olmoe_match_solve(&d, &f, &bm, 4.0, 0.01, &pt) != 0) die("%s", olmoe_error());
 *   printf("%s: %s\n", pt.id, pt.reached ? "mean k 4" : pt.note);
 *   olmoe_match_data_free(&d);
 *
 * The mean k of a policy on the data is counted exactly (int64 sums over
 * threads), so it does not depend on the number of threads. Every family's k
 * is monotone in its parameter (non-decreasing in p, alpha, scale and hc's
 * beta; non-increasing in tau and skip's beta), which is what bisection
 * needs; it is a step function of it, so a target may fall in a jump (a
 * "plateau": hc moves only with floor(beta E), so it is searched over the
 * integer m = beta E directly). Then, and when a target lies outside what the
 * family can reach with its min_k and max_k, the point is not reached: it
 * holds the nearest achievable value and says why in note.
 */
#ifndef OLMOE_MATCH_H
#define OLMOE_MATCH_H

#include <stdint.h>

#include "policy.h"

#include <hdf5.h>
#include <stdio.h>

/* ---- the calibration data ---- */
typedef struct {
    int n_layers, n_experts;
    int64_t n_rows;    /* tokens held */
    int64_t n_trace;   /* tokens of the trace they were taken from */
    int64_t stride;    /* every stride-th of those (1: all) */
    float *logits;     /* [n_rows, L, E] */
    char checksum[33]; /* XXH3-128 of the rows held (hex) */
    int n_threads;     /* for olmoe_match_mean_k; 1 by default */
    /* when set, the search measures a policy's mean k with this instead of
     * on the logits above (--calibrate-scored: the scoring run itself);
     * NaN + message on error */
    double (*measure)(void *ctx, const olmoe_policy *p);
    void *measure_ctx;
} olmoe_match_data;

/* The first first_n tokens of a trace (0: all), every stride-th so that at
 * most max_rows are held (0: all). Errors name the file. */
int olmoe_match_data_load(olmoe_match_data *d, const char *path, int64_t first_n, int64_t max_rows);
/* from an array (copied): logits [n, L, E] */
int olmoe_match_data_from(olmoe_match_data *d, const float *logits, int64_t n, int L, int E);
void olmoe_match_data_free(olmoe_match_data *d);
/* mean experts per token-layer of a bound policy over the data; NaN when the
 * policy returns something outside 1..E (a bug) */
double olmoe_match_mean_k(const olmoe_match_data *d, const olmoe_policy *p);

/* ---- families and their knob ---- */
typedef struct {
    const char *family; /* "bh" */
    const char *param;  /* the parameter calibrated: "alpha" */
    int increasing;     /* k is non-decreasing in it (else non-increasing) */
    int log_scale;      /* bisect on log(x) */
    int per_expert;     /* x = m / E over the integers m = 1..E (hc) */
    double lo, hi;      /* the range searched (per_expert: 1/E, 1) */
} olmoe_match_knob;

/* the families --match-k knows, NULL-terminated by family */
extern const olmoe_match_knob olmoe_match_knobs[];
const olmoe_match_knob *olmoe_match_knob_find(const char *family);

typedef struct {
    char name[32];    /* family */
    char params[448]; /* the other parameters, "max_k=16,pvalue=kde" ("" for none) */
    olmoe_match_knob knob;
    /* the means already measured on the data solved on last (at positions u
     * of the search), so that later targets start from a tight bracket */
    const olmoe_match_data *seen_on;
    int n_seen;
    double seen_u[256], seen_k[256];
} olmoe_match_family;

/* A family from a spec without its knob ("bh", "bh(max_k=8,pvalue=pseudo)").
 * options: per parameter id, a value to give it where the family takes the
 * parameter and the spec does not (the command's --max-k etc.), or NULL;
 * used[id] is set for the options taken (may be NULL). max_k, when neither
 * gives it, is default_max_k (0: the family's default). */
int olmoe_match_family_init(olmoe_match_family *f, const char *spec,
                            const char *const *options /*[OLMOE_PARAM_COUNT]*/, int *used,
                            int default_max_k);
/* the spec of the family at knob value x ("bh(alpha=0.05,max_k=16)") */
void olmoe_match_spec(const olmoe_match_family *f, double x, char *buf, size_t n);
/* that policy, parsed and bound */
int olmoe_match_policy(const olmoe_match_family *f, double x, const olmoe_policy_model *m,
                       olmoe_policy *out);

/* ---- one family at one target ---- */
typedef struct {
    double target;
    int reached;      /* |achieved - target| <= tol */
    double value;     /* the knob's value: the match, or the nearest achievable */
    double achieved;  /* mean k at value on the calibration data */
    char id[OLMOE_POLICY_ID_MAX];
    char note[320];   /* why not reached ("" when reached) */
    int evaluations;  /* mean-k evaluations spent */
} olmoe_match_point;

/* Bisection (definition at the top). Returns 0 also when the target is not
 * reached (see reached, note); -1 + message only when a policy does not
 * bind or route. Among the values within tol of the target it prefers one
 * with few significant digits (tried from 1 to 6), so ids stay readable. */
int olmoe_match_solve(const olmoe_match_data *d, olmoe_match_family *f,
                      const olmoe_policy_model *m, double target, double tol,
                      olmoe_match_point *out);

/* ---- the table (match_output.c) ---- */
typedef struct {
    char family[32];
    double target_k;
    char param_name[16];
    double param_value;
    char policy[OLMOE_POLICY_ID_MAX];
    double achieved_k;  /* mean k on the calibration data */
    int reached;
    char note[320];
    const char *kind;   /* "replay", "exact", or "calibration" (no model: not scored) */
    double perplexity, accuracy, scored_k; /* of the scoring run; NaN when not scored */
    double delta_vs_topk; /* perplexity - top-k's at the same k and kind; NaN if not reached
                           * or no top-k at a k that is not a whole number */
    double rel_vs_topk;   /* perplexity / top-k's - 1, likewise */
} olmoe_match_row;

typedef struct {
    int n, cap;
    olmoe_match_row *rows; /* [n] by kind, then target, then family (topk first) */
    const char *trace, *calibration;
    int64_t calib_rows, calib_trace_tokens, calib_stride;
    char calib_checksum[33];
    double tol;
    int default_max_k;
    const char *calibrated_on; /* "logits" (the captured router logits), "replay" or "exact" */
    int n_targets;
    double targets[64];
    const char *command;
} olmoe_match_table;

olmoe_match_row *olmoe_match_add_row(olmoe_match_table *t);
void olmoe_match_table_free(olmoe_match_table *t);
/* the perplexity grid (family x target, per kind) with deltas, then the rows */
void olmoe_match_print(const olmoe_match_table *t, FILE *f);
int olmoe_match_write_csv(const olmoe_match_table *t, const char *path);
/* the table as JSON (match_json.c) */
int olmoe_match_write_json(const olmoe_match_table *t, const char *path);
/* /match under loc (layout in man/olmoe-replay.1); replace: delete an
 * existing /match first, else refuse it */
int olmoe_match_write_h5(const olmoe_match_table *t, hid_t loc, int replace);

#endif
