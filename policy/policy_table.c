/* policy_table.c: the tables that define the policy families and their
 * parameters (names, ranges, defaults, canonical order), and the per-family
 * cross checks. Parsing, ids, validation and command-line options are all
 * driven from here, so a new family is a row, not edits all over. */
#include "common.h"
#include "policy.h"
#include "policy_internal.h"

#include <math.h>
#include <string.h>

static const char *const pvalue_names[] = {"kde", "empirical", "pseudo", NULL};
static const char *const norm_names[] = {"model", "selected", NULL};

const olmoe_param_info olmoe_param_table[OLMOE_PARAM_COUNT] = {
    [OLMOE_PARAM_K] = {"k", "k", NULL, OLMOE_PARAM_INT, 1, OLMOE_POLICY_MAX_E, 0, 0, NULL,
                       "experts per token (topk)", NULL, 0},
    [OLMOE_PARAM_P] = {"p", "p", NULL, OLMOE_PARAM_REAL, 0, 1, 1, 0, NULL,
                       "cumulative probability to reach (topp), in (0, 1]", NULL, 0},
    [OLMOE_PARAM_ALPHA] = {"alpha", "alpha", NULL, OLMOE_PARAM_REAL, 0, 1, 1, 1, NULL,
                           "false discovery rate (bh), in (0, 1)", NULL, 0},
    [OLMOE_PARAM_MAX_K] = {"max_k", "max-k", NULL, OLMOE_PARAM_INT, 1, OLMOE_POLICY_MAX_E, 0, 0,
                           NULL, "at most this many experts", NULL, 0},
    [OLMOE_PARAM_MIN_K] = {"min_k", "min-k", NULL, OLMOE_PARAM_INT, 1, OLMOE_POLICY_MAX_E, 0, 0,
                           NULL, "at least this many experts", NULL, 0},
    /* T and the floor are used as fp32: bounded so that they stay normal numbers */
    [OLMOE_PARAM_T] = {"T", "temperature", "temperature", OLMOE_PARAM_REAL, 1e-6, 1e6, 0, 0, NULL,
                       "softmax temperature, in [1e-6, 1e6]", NULL, 0},
    [OLMOE_PARAM_PVALUE] = {"pvalue", "pvalue", NULL, OLMOE_PARAM_ENUM, 0, 2, 0, 0, pvalue_names,
                            "p-values: kde, empirical or pseudo", NULL, 0},
    [OLMOE_PARAM_NORM] = {"norm", "norm", NULL, OLMOE_PARAM_ENUM, 0, 1, 0, 0, norm_names,
                          "weights: model (as the checkpoint) or selected (sum to 1)", NULL, 0},
    [OLMOE_PARAM_PVALUE_FLOOR] = {"pvalue_floor", "pvalue-floor", NULL, OLMOE_PARAM_REAL, 1e-30,
                                  0.5, 0, 1, NULL,
                                  "p-values clamped to [floor, 1 - floor], floor in [1e-30, 0.5)",
                                  NULL, 0},
    [OLMOE_PARAM_TAU] = {"tau", "tau", NULL, OLMOE_PARAM_REAL, 0, 1, 1, 0, NULL,
                         "probability every chosen expert reaches (threshold), in (0, 1]", NULL,
                         0},
    /* median: skip's beta from a calibration trace (policy_skip.c) */
    [OLMOE_PARAM_BETA] = {"beta", "beta", NULL, OLMOE_PARAM_REAL, 0, 1, 0, 0, NULL,
                          "skip: drop p < beta p_max, in [0, 1] or median; hc: share of ranks "
                          "searched, in (0, 1]",
                          "median", -1},
    [OLMOE_PARAM_SCALE] = {"scale", "scale", NULL, OLMOE_PARAM_REAL, 0, 1e6, 1, 0, NULL,
                           "experts per effective expert exp(H) (entropy), in (0, 1e6]", NULL, 0},
};

int olmoe_policy_check_k_range(const olmoe_policy *p) {
    double lo = p->param[OLMOE_PARAM_MIN_K], hi = p->param[OLMOE_PARAM_MAX_K];
    if (lo > hi) return olmoe_errorf("min_k (%g) is larger than max_k (%g)", lo, hi);
    return 0;
}

/* route and bind functions live in policy_route.c */
int olmoe_policy_route_topk(const olmoe_policy *p, int layer, const float *r, int E, int *ex,
                            float *w);
int olmoe_policy_route_topp(const olmoe_policy *p, int layer, const float *r, int E, int *ex,
                            float *w);
int olmoe_policy_route_bh(const olmoe_policy *p, int layer, const float *r, int E, int *ex,
                          float *w);
int olmoe_policy_bind_topk(olmoe_policy *p);
int olmoe_policy_bind_kclamped(olmoe_policy *p);
int olmoe_policy_bind_bh(olmoe_policy *p);

#define FP(id, def, flags) {OLMOE_PARAM_##id, (def), (flags)}
/* a family's own required parameter, then the clamp of its expert count
 * and the temperature */
#define FP_CLAMPED(id) FP(id, NAN, OLMOE_FP_REQUIRED), FP(MAX_K, 8, 0), FP(MIN_K, 1, 0), FP(T, 1, 0)
#define FP_NORM FP(NORM, OLMOE_NORM_MODEL, 0)
/* the families on per-expert p-values: the null, the weights, the clamp */
#define FP_PVALUED FP(PVALUE, OLMOE_PVALUE_KDE, 0), FP_NORM, FP(PVALUE_FLOOR, 1e-7, OLMOE_FP_QUIET)

const olmoe_policy_family olmoe_policy_families[] = {
    {"topk", "the k experts of largest softmax probability", 3,
     {FP(K, 8, 0), FP(T, 1, OLMOE_FP_QUIET), FP_NORM}, NULL,
     olmoe_policy_bind_topk, olmoe_policy_route_topk, NULL},
    {"topp", "the fewest experts whose probabilities sum to p", 5, {FP_CLAMPED(P), FP_NORM},
     olmoe_policy_check_k_range, olmoe_policy_bind_kclamped, olmoe_policy_route_topp, NULL},
    {"bh", "Benjamini-Hochberg step-up on per-expert p-values", 7, {FP_CLAMPED(ALPHA), FP_PVALUED},
     olmoe_policy_check_k_range, olmoe_policy_bind_bh, olmoe_policy_route_bh, NULL},
    {"threshold", "every expert whose probability reaches tau (top-any)", 5,
     {FP_CLAMPED(TAU), FP_NORM},
     olmoe_policy_check_k_range, olmoe_policy_bind_threshold, olmoe_policy_route_threshold, NULL},
    {"skip", "top max_k, dropping experts below beta times the largest probability", 5,
     {FP_CLAMPED(BETA), FP_NORM},
     olmoe_policy_check_skip, olmoe_policy_bind_skip, olmoe_policy_route_skip, NULL},
    {"entropy", "scale times the router's effective number of experts exp(H)", 5,
     {FP_CLAMPED(SCALE), FP_NORM},
     olmoe_policy_check_k_range, olmoe_policy_bind_entropy, olmoe_policy_route_entropy, NULL},
    {"hc", "Higher Criticism on per-expert p-values", 7, {FP_CLAMPED(BETA), FP_PVALUED},
     olmoe_policy_check_hc, olmoe_policy_bind_hc, olmoe_policy_route_hc, NULL},
    /* path= is not a table parameter: policy_spec.c reads it as text */
    {"file", "experts (and weights) per token and layer from a routing file (path=FILE)", 1,
     {FP_NORM}, NULL, olmoe_policy_bind_file, NULL, olmoe_policy_route_file},
};
const int olmoe_policy_n_families =
    (int)(sizeof olmoe_policy_families / sizeof olmoe_policy_families[0]);

const olmoe_policy_family *olmoe_policy_family_find(const char *name) {
    for (int i = 0; i < olmoe_policy_n_families; i++)
        if (strcmp(olmoe_policy_families[i].name, name) == 0) return &olmoe_policy_families[i];
    return NULL;
}

static const char *const preset_seed[] = {
    "topk(k=8)", "bh(alpha={0.01,0.05,0.1,0.2},max_k={4,8,16,32,64})", NULL};
static const char *const preset_seed_final[] = {
    "topk(k={8,16,32,64})", "bh(alpha={0.3,0.4,0.5,0.6},max_k={8,16,32,64})", NULL};
static const char *const preset_topk[] = {"topk(k={1,2,4,8,16,32,64})", NULL};

const olmoe_policy_preset olmoe_policy_presets[] = {
    {"seed", "top-8 and BH alpha {0.01,0.05,0.1,0.2} x max_k {4,8,16,32,64} (21)", preset_seed},
    {"seed-final", "top-k k {8,16,32,64} and BH alpha {0.3,...,0.6} x max_k {8,...,64} (20)",
     preset_seed_final},
    {"topk", "top-k for k in 1, 2, 4, ..., 64 (7)", preset_topk},
    {NULL, NULL, NULL},
};
