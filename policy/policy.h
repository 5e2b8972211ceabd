/* policy.h: the policy layer, the one public header of policy/ (above kde/,
 * below the engine): routing policies (docs/DESIGN.md §6), their p-values,
 * the policy spec grammar, and cmd_inputs.h (included at the end), the
 * policy inputs the commands share.
 *
 *   olmoe_policy_set set = {0};
 *   if (olmoe_policy_set_add_spec(&set, "bh(alpha={0.05,0.1},max_k=8)", NULL) != 0)
 *       die("%s", olmoe_error());                       // 2 policies, validated
 *   olmoe_policy_model m = {.n_layers = 16, .n_experts = 64, .norm_topk_prob = 0,
 *                           .null = &cdf};              // cdf: kde/kde.h, from null.h5
 *   if (olmoe_policy_set_bind(&set, &m) != 0) die("%s", olmoe_error());
 *   olmoe_policy *pol = &set.items[0];
 *   puts(pol->id);    // bh(alpha=0.05,max_k=8,min_k=1,T=1,pvalue=kde,norm=model)
 *   int n = olmoe_policy_route(pol, layer, logits, 64, experts, weights);
 *   olmoe_policy_set_free(&set);
 *
 * olmoe_policy_route_at (olmoe_policy_route plus the token's stream position)
 * has the signature of the engine's router hook (olmoe_route_fn,
 * engine/model.h): pass it with ctx = the policy. Neither ever
 * allocates, keeps no state between calls (any number of threads may route
 * with one bound policy) and returns the number of experts selected, written
 * to experts[0..n) in rank order (most preferred first) with their weights.
 *
 * Definitions, exactly (p = softmax(r / T) in fp32: x = r / (float)T,
 * e_i = (float)exp((double)(x_i - max x)) (exp in double, rounded once: any
 * libm and the GPU, engine/cuda_policy.cu, give the same bits), s = sum of
 * e_i in index order in fp32, p_i = e_i / s):
 *   topk:  the k largest p; ties toward the lower expert index.
 *   topp:  in that order, the fewest experts whose fp32 running sum of p
 *          reaches (float)p, then clamped to [min_k, max_k].
 *   bh:    p-values q_e (below), clamped to [floor, 1 - floor] in fp32
 *          (floor = pvalue_floor, default 1e-7); thr_k = (float)(k*alpha/E)
 *          (product and quotient in double); q sorted ascending with ties
 *          toward the lower index; k* = the largest k with q_(k) <= thr_k
 *          (0 if none); k* = 0 -> min_k; k* clamped to [min_k, max_k];
 *          S = the k* smallest q (ties toward the lower index), in that order.
 *          q_e: kde       1 - CDF_layer(r_e) (interpolated, kde/kde.h);
 *                empirical 1 - ECDF of r_e among that expert's logits at that
 *                          layer in the trace = (float)(#(logits > r_e) / n);
 *                pseudo    1 - p_e.
 *          kde and empirical p-values use the raw logit r_e (the null is of
 *          raw logits); T changes pseudo p-values and the weights.
 *   weights: norm=model gives p_e over S, renormalised (p_e / s, s the fp32
 *          sum over S in rank order) only when the checkpoint has
 *          norm_topk_prob; this is the model's own routing. norm=selected
 *          always renormalises. (s = 0, all p underflowed: 1 / |S| each.)
 *   T is kept in [1e-6, 1e6] and pvalue_floor in [1e-30, 0.5): both are
 *   used as fp32 and must stay normal numbers there.
 * The literature's families (docs/DESIGN.md §6; policy_<family>.c):
 *   threshold: K = #{e : p_e >= (float)tau}, clamped to [min_k, max_k]; S =
 *          the K largest p (ties toward the lower index). DynMoE's top-any.
 *   skip:  the max_k largest p, in that order; those with p_e <
 *          (float)beta * p_max (fp32 product; p_max the largest p) are
 *          dropped, but never below min_k: K = max(min_k, #{kept}), S = the
 *          K largest p (the kept ones are a prefix). beta=median: per layer l,
 *          beta_l = exp(m_l / T) with m_l the lower median (the ceil(n/2)-th
 *          smallest) of r_(max_k) - r_(1) over the n tokens of a calibration
 *          trace (r_(j) its j-th largest router logit at layer l): the
 *          median of p_(max_k) / p_(1) there, as "Not All Experts are
 *          Equal" (Lu et al. 2024) set beta for top-2. Resolved at bind from
 *          calib_path (olmoe_policy_set_calibration); the id then reads
 *          beta=median-<12 hex digits of the XXH3-128 of that trace's router
 *          logits as float32 in stream order>, and an id with a tag refuses a
 *          calibration trace with another one.
 *   entropy: H = -sum of p_e ln p_e over p_e > 0, in double (p_e as fp32,
 *          index order); K = round(scale * exp(H)) (half away from zero),
 *          clamped to [min_k, max_k]; S = the K largest p. exp(H) is the
 *          router's effective number of experts.
 *   hc:    Higher Criticism on bh's p-values q (same kinds, floor and
 *          clamping): m = floor(beta * E) >= 1 ranks are searched; with
 *          q_(1..m) the m smallest ascending (ties toward the lower index),
 *          HC_i = sqrt(E) (i/E - q_(i)) / sqrt(q_(i) (1 - q_(i))) in double;
 *          k* = the i in 1..m of largest HC_i (the smallest such i on ties),
 *          clamped to [min_k, max_k]; S = the k* smallest q.
 *   All use the weights of norm= above; max_k defaults to 8, min_k to 1.
 *   file:  file(path=FILE,norm=model): the experts (and weights, if the file
 *          has them) stored for the token at stream position pos and the
 *          layer (policy_file.c, man/olmoe-trace.5); without stored weights
 *          those of norm= above over softmax(r). Routes only through
 *          olmoe_policy_route_at with pos, and binds only with the trace's
 *          tokens (olmoe_policy_model.tokens), which the file's must equal.
 *          Bound, its id reads file(path=<FILE's base name>,sum=<12 hex
 *          digits of the XXH3-128 of /tokens, /experts and /weights as
 *          stored>,norm=...): ids name HDF5 groups, which may not hold '/';
 *          a spec that gives sum= refuses a file of another checksum.
 *
 * Families are table entries (olmoe_policy_families): a name, its parameters
 * in canonical order with defaults, a cross-parameter check, a bind step and a
 * route function. Adding one (as threshold, skip, entropy and hc were) means a
 * new parameter row in olmoe_param_table if it needs one (tau, beta, scale),
 * a family row in policy_table.c, and its bind and route functions in a
 * policy_<family>.c file built from policy_internal.h (softmax, selection,
 * weights, and the bh p-values that hc shares): parsing, ids, validation,
 * sweeps and command-line options come from the tables.
 */
#ifndef OLMOE_POLICY_H
#define OLMOE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "kde.h"

/* The routing works on stack scratch of this many experts (no allocation). */
#define OLMOE_POLICY_MAX_E 256
/* skip(beta=median) resolves one beta per layer, for at most this many layers. */
#define OLMOE_POLICY_MAX_LAYERS 128
/* Canonical ids are at most this long, NUL included. */
#define OLMOE_POLICY_ID_MAX 256
/* A sweep expands to at most this many policies. */
#define OLMOE_POLICY_MAX_SWEEP 100000

/* ---- parameters ---- */
typedef enum {
    OLMOE_PARAM_K,
    OLMOE_PARAM_P,
    OLMOE_PARAM_ALPHA,
    OLMOE_PARAM_MAX_K,
    OLMOE_PARAM_MIN_K,
    OLMOE_PARAM_T,
    OLMOE_PARAM_PVALUE,
    OLMOE_PARAM_NORM,
    OLMOE_PARAM_PVALUE_FLOOR,
    OLMOE_PARAM_TAU,   /* threshold */
    OLMOE_PARAM_BETA,  /* skip, hc */
    OLMOE_PARAM_SCALE, /* entropy */
    OLMOE_PARAM_COUNT
} olmoe_param_id;

typedef enum { OLMOE_PVALUE_KDE, OLMOE_PVALUE_EMPIRICAL, OLMOE_PVALUE_PSEUDO, OLMOE_PVALUE_COUNT } olmoe_pvalue_kind;
typedef enum { OLMOE_NORM_MODEL, OLMOE_NORM_SELECTED, OLMOE_NORM_COUNT } olmoe_norm_kind;

typedef enum { OLMOE_PARAM_INT, OLMOE_PARAM_REAL, OLMOE_PARAM_ENUM } olmoe_param_type;

typedef struct {
    const char *name;   /* in specs and ids: "max_k" */
    const char *option; /* command line: "max-k" (--max-k) */
    const char *alias;  /* also accepted in specs ("temperature" for T), or NULL */
    olmoe_param_type type;
    double lo, hi;      /* allowed range; *_open: the bound itself is excluded */
    int lo_open, hi_open;
    const char *const *names; /* OLMOE_PARAM_ENUM: value names, NULL-terminated */
    const char *help;
    /* a word also accepted as the value, outside [lo, hi] (beta=median), or
     * NULL: "word" is stored as word_value, "word-<12 hex digits>" (a tag,
     * e.g. a checksum) as word_value - 1 - tag */
    const char *word;
    double word_value;
} olmoe_param_info;

extern const olmoe_param_info olmoe_param_table[OLMOE_PARAM_COUNT];

/* ---- families ---- */
typedef struct olmoe_policy olmoe_policy;

enum {
    OLMOE_FP_REQUIRED = 1, /* no default: the spec must give it */
    OLMOE_FP_QUIET = 2,    /* left out of the id while it has its default */
};

typedef struct {
    olmoe_param_id id;
    double def; /* default (enum: index into names) */
    int flags;  /* OLMOE_FP_* */
} olmoe_family_param;

typedef struct {
    const char *name;    /* "bh" */
    const char *summary; /* one line for --help and man pages */
    int n_params;
    olmoe_family_param params[OLMOE_PARAM_COUNT]; /* canonical id order */
    /* cross-parameter checks after each parameter is within its range */
    int (*check)(const olmoe_policy *p);
    /* E-dependent checks and precomputation (thresholds); 0 or -1 + message */
    int (*bind)(olmoe_policy *p);
    int (*route)(const olmoe_policy *p, int layer, const float *logits, int E, int *experts,
                 float *weights);
    /* instead of route, for a family that needs the token's stream position */
    int (*route_at)(const olmoe_policy *p, int layer, int64_t pos, const float *logits, int E,
                    int *experts, float *weights);
} olmoe_policy_family;

extern const olmoe_policy_family olmoe_policy_families[];
extern const int olmoe_policy_n_families;
const olmoe_policy_family *olmoe_policy_family_find(const char *name);

/* ---- empirical p-values: each expert's logits at each layer, sorted ---- */
typedef struct {
    int n_layers, n_experts;
    int64_t n;          /* logits kept per (layer, expert) */
    int64_t n_tokens;   /* tokens offered */
    int64_t stride;     /* every stride-th token is kept (1 = all) */
    int64_t filled;     /* tokens kept so far */
    float *sorted;      /* [L, E, n] ascending after _finish */
} olmoe_policy_empirical;

/* For a trace of n_tokens tokens: keep every ceil(n_tokens / max_per_expert)-th
 * token's logits (max_per_expert <= 0: all), so memory is L * E * n floats. */
int olmoe_policy_empirical_init(olmoe_policy_empirical *emp, int n_layers, int n_experts,
                                int64_t n_tokens, int64_t max_per_expert);
/* offer tokens [first, first + n) in stream order; logits [n, L, E] */
void olmoe_policy_empirical_add(olmoe_policy_empirical *emp, int64_t first, const float *logits,
                                int64_t n);
int olmoe_policy_empirical_finish(olmoe_policy_empirical *emp);
void olmoe_policy_empirical_free(olmoe_policy_empirical *emp);
/* #(kept logits of expert e at layer l that are > x) / n, as float */
float olmoe_policy_empirical_pvalue(const olmoe_policy_empirical *emp, int layer, int expert,
                                    float x);

/* ---- what a policy is bound to: the checkpoint and the trace's nulls ---- */
typedef struct {
    int n_layers;
    int n_experts;
    int norm_topk_prob;                 /* the checkpoint's config (norm=model) */
    const olmoe_kde_cdf *null;          /* pvalue=kde; may be NULL otherwise */
    const olmoe_policy_empirical *emp;  /* pvalue=empirical; may be NULL otherwise */
    const int32_t *tokens;              /* [n_tokens] the trace's tokens (file); may be NULL */
    int64_t n_tokens;
} olmoe_policy_model;

/* ---- a policy ---- */
struct olmoe_policy {
    const olmoe_policy_family *family;
    double param[OLMOE_PARAM_COUNT]; /* NaN where the family has no such parameter */
    char id[OLMOE_POLICY_ID_MAX];    /* canonical id */
    int from_preset;                 /* came from a preset: skipped, not refused, if E is too small */

    /* set by olmoe_policy_bind */
    int bound;
    olmoe_policy_model model;
    int k, min_k, max_k, pvalue, norm;
    float T, p_target, pv_lo, pv_hi;
    float thr[OLMOE_POLICY_MAX_E + 1]; /* bh: thr[k] for k = 1..E */
    float tau;     /* threshold */
    float beta;    /* skip with a number */
    double scale;  /* entropy */
    int hc_ranks;  /* hc: floor(beta * E) */
    int beta_median; /* skip: beta=median, resolved into beta_layer */
    float beta_layer[OLMOE_POLICY_MAX_LAYERS]; /* skip: beta per layer (median or beta) */

    /* skip beta=median: the calibration trace (the caller's string, kept),
     * set before binding; what bind resolved from it */
    const char *calib_path;
    const char *calib_done; /* calib_path when beta_layer came from it */
    int calib_k;            /* the max_k it was resolved for */
    float calib_T;
    char calib_sum[33];     /* its checksum (hex) */

    /* file: the routing file's path, and its contents once bound (owned:
     * olmoe_policy_free / olmoe_policy_set_free release it) */
    char path[OLMOE_POLICY_ID_MAX];
    char sum[13]; /* 12 hex digits of the file's XXH3-128, set at bind; a spec's must match */
    struct olmoe_routing_file *routing;
};

/* One policy from a spec without sets ("topk(k=8)", "bh", "bh(alpha=0.1)"). */
int olmoe_policy_parse(const char *spec, olmoe_policy *out);
/* Checks E-dependent limits and prepares routing; 0 or -1 + message. */
int olmoe_policy_bind(olmoe_policy *p, const olmoe_policy_model *m);
/* Router hook: see the top of this file. weights may be NULL (selection only:
 * skips the softmax when the policy itself does not need it). Returns -1 when
 * the policy is not bound or E differs from the bound model (a bug). */
int olmoe_policy_route(void *policy, int layer, const float *logits /*[E]*/, int E,
                       int *experts /*[max_k]*/, float *weights /*[max_k]*/);
/* The same with the token's position in the trace's token stream (-1: not
 * known), the engine's hook (olmoe_route_fn); a file policy needs it. */
int olmoe_policy_route_at(void *policy, int layer, int64_t pos, const float *logits /*[E]*/,
                          int E, int *experts /*[max_k]*/, float *weights /*[max_k]*/);
/* Releases what bind loaded (a file policy's routing); the policy stays parsed. */
void olmoe_policy_free(olmoe_policy *p);
/* The most experts this policy can select (the size experts[] must have). */
int olmoe_policy_max_experts(const olmoe_policy *p);
/* Whether the policy reads p-values of this kind (to know what to load). */
int olmoe_policy_needs(const olmoe_policy *p, olmoe_pvalue_kind kind);
/* 1 if a spec gives the parameter (by name, option name or alias) itself,
 * 0 if not (a default, or the family has none), -1 + message if it does not parse */
int olmoe_policy_spec_sets(const char *spec, const char *name);
/* A parameter's value by name ("alpha"), NaN if the family has none. */
double olmoe_policy_get(const olmoe_policy *p, const char *name);
/* min_k and max_k as the policy applies them (topk: both k) */
void olmoe_policy_k_range(const olmoe_policy *p, int *min_k, int *max_k);

/* ---- sets of policies: sweeps ---- */
typedef struct {
    olmoe_policy *items; /* [n] */
    int n, cap;
} olmoe_policy_set;

/* Parses a spec whose values may be sets ("bh(alpha={0.01,0.05},max_k={4,8})"),
 * expands the Cartesian product (first parameter slowest) and appends each
 * policy, skipping duplicates of ids already in the set. where ("file:3") is
 * put before error messages; NULL for none. */
int olmoe_policy_set_add_spec(olmoe_policy_set *set, const char *spec, const char *where);
/* A preset name (seed, seed-final, topk) or a file with one spec a line
 * ('#' starts a comment). */
int olmoe_policy_set_add_sweep(olmoe_policy_set *set, const char *name_or_file);
/* skip(beta=median): the calibration trace for every policy that needs one
 * (path is kept, not copied); replace = 0 leaves policies that have one. */
void olmoe_policy_set_calibration(olmoe_policy_set *set, const char *path, int replace);
/* whether a policy (some policy of a set) needs a calibration trace */
int olmoe_policy_needs_calibration(const olmoe_policy *p);
int olmoe_policy_set_needs_calibration(const olmoe_policy_set *set);
/* Binds every policy. A preset policy that does not fit the model (k or
 * max_k > E) is dropped with a note on stderr; any other misfit is an error. */
int olmoe_policy_set_bind(olmoe_policy_set *set, const olmoe_policy_model *m);
int olmoe_policy_set_needs(const olmoe_policy_set *set, olmoe_pvalue_kind kind);
void olmoe_policy_set_free(olmoe_policy_set *set);

typedef struct {
    const char *name;
    const char *summary;
    const char *const *specs; /* NULL-terminated */
} olmoe_policy_preset;
extern const olmoe_policy_preset olmoe_policy_presets[];

/* ---- the command-line form, one for every command that routes ----
 * --policy bh --alpha 0.1 --max-k 8, --sweep seed, --kde NULL.h5,
 * --empirical TRACE, --empirical-max N, --beta-trace TRACE. */
typedef struct olmoe_policy_cli olmoe_policy_cli;
typedef struct {
    olmoe_policy_cli *cli;
    int param;
} olmoe_policy_cli_slot;
struct olmoe_policy_cli {
    const char *policies[64];               /* --policy SPEC, repeatable */
    int n_policies;
    const char *sweep;                      /* --sweep PRESET|FILE */
    const char *value[OLMOE_PARAM_COUNT];   /* --alpha 0.1 (a list "0.05,0.1" is a set) */
    olmoe_policy_cli_slot slot[OLMOE_PARAM_COUNT + 1];
    const char *beta_trace;                 /* --beta-trace FILE: skip(beta=median) */
    char routing[8][OLMOE_POLICY_ID_MAX];   /* --routing-file FILE: file(path=FILE) */
    int n_routing;
    const char *kde;                        /* --kde FILE (--null: its old name) */
    const char *empirical;                  /* --empirical TRACE: pvalue=empirical's logits */
    long empirical_max;                     /* --empirical-max N (default 32768; 0 = all) */
    int empirical_max_given;
};
/* which options a command takes beyond --policy, the parameters, --kde,
 * --empirical, --empirical-max and --beta-trace: --sweep and --routing-file
 * (OLMOE_POLICY_CLI_SWEEP), --null (OLMOE_POLICY_CLI_NULL_ALIAS) */
enum { OLMOE_POLICY_CLI_SWEEP = 1, OLMOE_POLICY_CLI_NULL_ALIAS = 2 };
#define OLMOE_POLICY_CLI_NOPTS (OLMOE_PARAM_COUNT + 9)
#define OLMOE_POLICY_CLI_EMPIRICAL_MAX 32768
/* Writes the policy options into opts[0..n) and returns n (at most
 * OLMOE_POLICY_CLI_NOPTS, not terminated): append them to a command's option
 * table before OPT_END. Sets the defaults in cli. */
int olmoe_policy_cli_options(olmoe_policy_cli *cli, olmoe_opt *opts, int flags);
/* Builds the set from what was given. Parameter options apply to every policy
 * whose family takes them (an error if none does); --beta-trace to every
 * policy that needs a calibration trace (an error if none does). 0, or -1 +
 * message (nothing given is an error too). */
int olmoe_policy_cli_build(const olmoe_policy_cli *cli, olmoe_policy_set *set);
/* whether any policy option was given */
int olmoe_policy_cli_given(const olmoe_policy_cli *cli);

/* shortest decimal form that reads back as the same double ("0.1", "1e-07") */
void olmoe_policy_fmt_number(double v, char *buf, size_t n);

/* the parts of this header, each in a file of its own */
#include "cmd_inputs.h"

#endif
