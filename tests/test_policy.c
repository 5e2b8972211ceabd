/* test_policy.c: routing decisions. Hand-checked BH cases (ties, nothing
 * significant, everything significant, step-up past a failing rank, the
 * p-value floor), and every policy against a straightforward sort-based
 * implementation written here from docs/DESIGN.md §6, on random logits with ties. */
#include "check.h"
#include "common.h"
#include "policy.h"

#include <stdint.h>

/* ---- a null whose p-value is 1 - x on [0, 1] (2 grid points) ---- */
static float lin_sf[2] = {1.0f, 0.0f};
static unsigned char lin_present[64];
static double lin_x0[64], lin_inv[64];
static olmoe_kde_cdf lin_null(int L) {
    for (int l = 0; l < L; l++) lin_present[l] = 1, lin_x0[l] = 0.0, lin_inv[l] = 1.0;
    olmoe_kde_cdf c = {L, 0, 2, lin_present, lin_x0, lin_inv, NULL};
    /* every layer shares the same two points: sf is [L, 2] */
    static float sf[64 * 2];
    for (int l = 0; l < L; l++) sf[2 * l] = lin_sf[0], sf[2 * l + 1] = lin_sf[1];
    c.sf = sf;
    return c;
}

static olmoe_policy bound(const char *spec, int L, int E, int ntp, const olmoe_kde_cdf *null,
                          const olmoe_policy_empirical *emp) {
    olmoe_policy p;
    if (olmoe_policy_parse(spec, &p) != 0) {
        fprintf(stderr, "parse %s: %s\n", spec, olmoe_error());
        exit(2);
    }
    olmoe_policy_model m = {L, E, ntp, null, emp, NULL, 0};
    if (olmoe_policy_bind(&p, &m) != 0) {
        fprintf(stderr, "bind %s: %s\n", spec, olmoe_error());
        exit(2);
    }
    return p;
}

/* logits whose p-values under lin_null are q (p = 1 - r, in fp32) */
static void logits_for(const float *q, int E, float *r) {
    for (int e = 0; e < E; e++) r[e] = 1.0f - q[e];
}

static int route(olmoe_policy *p, const float *r, int E, int *ex) {
    return olmoe_policy_route(p, 0, r, E, ex, NULL);
}

/* routes the logits whose p-values under lin_null are q */
static int route_q(olmoe_policy *p, const float *q, int E, int *ex) {
    float r[64];
    logits_for(q, E, r);
    return route(p, r, E, ex);
}

static void test_bh_nothing_significant(void) {
    olmoe_kde_cdf c = lin_null(1);
    olmoe_policy p = bound("bh(alpha=0.1,max_k=4,min_k=2)", 1, 8, 0, &c, NULL);
    float q[8] = {0.5f, 0.6f, 0.4f, 0.9f, 0.5f, 0.7f, 0.8f, 0.4f};
    int ex[8];
    int n = route_q(&p, q, 8, ex);
    /* k* = 0 -> min_k = 2: the two smallest p (0.4 at 2 and 7) */
    CHECK(n == 2, "n = %d", n);
    CHECK(ex[0] == 2 && ex[1] == 7, "got %d %d", ex[0], ex[1]);
}

static void test_bh_everything_significant(void) {
    olmoe_kde_cdf c = lin_null(1);
    olmoe_policy p = bound("bh(alpha=0.1,max_k=4)", 1, 8, 0, &c, NULL);
    float q[8];
    int ex[8];
    for (int e = 0; e < 8; e++) q[e] = 1e-5f;
    q[6] = 1e-6f;
    int n = route_q(&p, q, 8, ex);
    /* k* = 8 -> max_k = 4: the smallest p first (6), then ties by index */
    CHECK(n == 4, "n = %d", n);
    CHECK(ex[0] == 6 && ex[1] == 0 && ex[2] == 1 && ex[3] == 2, "got %d %d %d %d", ex[0], ex[1],
          ex[2], ex[3]);
}

static void test_bh_step_up(void) {
    /* E = 8, alpha = 0.1: thr_k = 0.0125 k. Rank 1 fails (0.02 > 0.0125),
     * rank 2 passes (0.024 <= 0.025): step-up gives 2 (step-down 0). */
    olmoe_kde_cdf c = lin_null(1);
    olmoe_policy p = bound("bh(alpha=0.1,max_k=8)", 1, 8, 0, &c, NULL);
    float q[8] = {0.9f, 0.024f, 0.9f, 0.9f, 0.02f, 0.9f, 0.9f, 0.9f};
    int ex[8];
    int n = route_q(&p, q, 8, ex);
    CHECK(n == 2, "n = %d", n);
    CHECK(ex[0] == 4 && ex[1] == 1, "got %d %d", ex[0], ex[1]);
    /* and a rank-3 pass after ranks 1 and 2 fail */
    float q2[8] = {0.02f, 0.03f, 0.036f, 0.9f, 0.9f, 0.9f, 0.9f, 0.9f};
    n = route_q(&p, q2, 8, ex);
    CHECK(n == 3, "n = %d", n);
}

static void test_bh_ties(void) {
    /* three equal p-values passing at rank 3, max_k = 2: lower indices win */
    olmoe_kde_cdf c = lin_null(1);
    olmoe_policy p = bound("bh(alpha=0.1,max_k=2)", 1, 8, 0, &c, NULL);
    float q[8] = {0.9f, 0.9f, 0.03f, 0.9f, 0.9f, 0.03f, 0.9f, 0.03f}, r[8];
    int ex[8];
    int n = route_q(&p, q, 8, ex);
    CHECK(n == 2, "n = %d", n);
    CHECK(ex[0] == 2 && ex[1] == 5, "got %d %d", ex[0], ex[1]);
    /* a p-value exactly at its threshold passes (<=): 2 x 0.025 at ranks 1-2 */
    olmoe_policy p8 = bound("bh(alpha=0.1,max_k=8)", 1, 8, 0, &c, NULL);
    float thr2 = (float)(2 * 0.1 / 8);
    for (int e = 0; e < 8; e++) r[e] = -5.0f; /* below the grid: p = 1 - 1e-7 */
    r[3] = r[1] = 1.0f - thr2;
    float got = olmoe_kde_cdf_pvalue(&c, 0, r[3], 1e-7f);
    n = route(&p8, r, 8, ex);
    if (got <= thr2) CHECK(n == 2 && ex[0] == 1 && ex[1] == 3, "n = %d", n);
    else CHECK(n == 1, "p %g above threshold %g but n = %d", got, thr2, n);
}

static void test_bh_floor(void) {
    /* the bf16-epsilon floor of the prototype: with alpha = 0.05 and E = 64,
     * thr_10 = 0.0078125 = floor, so 10 floored experts pass and 9 do not */
    olmoe_kde_cdf c = lin_null(1);
    olmoe_policy p = bound("bh(alpha=0.05,max_k=64,pvalue_floor=0.0078125)", 1, 64, 0, &c, NULL);
    float r[64];
    int ex[64];
    for (int e = 0; e < 64; e++) r[e] = 0.5f;
    for (int e = 0; e < 10; e++) r[e * 3] = 5.0f; /* above the grid: p 0 -> floor */
    CHECK(route(&p, r, 64, ex) == 10, "10 at the floor");
    r[27] = 0.5f;
    CHECK(route(&p, r, 64, ex) == 1, "9 at the floor: none pass, min_k");
    /* the default floor 1e-7 lets one pass alone */
    olmoe_policy d = bound("bh(alpha=0.05,max_k=64)", 1, 64, 0, &c, NULL);
    for (int e = 0; e < 64; e++) r[e] = 0.5f;
    r[40] = 5.0f;
    CHECK(route(&d, r, 64, ex) == 1 && ex[0] == 40, "one tiny p-value");
    CHECK(olmoe_kde_cdf_pvalue(&c, 0, 5.0f, 1e-7f) == 1e-7f, "above the grid: floor");
    CHECK(olmoe_kde_cdf_pvalue(&c, 0, -5.0f, 1e-7f) == 1.0f - 1e-7f, "below the grid: 1 - floor");
}

static void test_topk_weights(void) {
    float r[6] = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f};
    int ex[6];
    float w[6], p[6], s = 0;
    for (int e = 0; e < 6; e++) s += (p[e] = expf(r[e] - 3.0f));
    for (int e = 0; e < 6; e++) p[e] /= s;
    olmoe_policy a = bound("topk(k=3)", 1, 6, 0, NULL, NULL);
    CHECK(olmoe_policy_route(&a, 0, r, 6, ex, w) == 3, "3");
    CHECK(ex[0] == 1 && ex[1] == 3 && ex[2] == 2, "tie 1/3 toward the lower: %d %d %d", ex[0],
          ex[1], ex[2]);
    CHECK_CLOSE(w[0], p[1], 1e-6, "raw softmax weight");
    CHECK_CLOSE(w[2], p[2], 1e-6, "raw softmax weight");
    olmoe_policy b = bound("topk(k=3)", 1, 6, 1, NULL, NULL); /* norm_topk_prob */
    olmoe_policy_route(&b, 0, r, 6, ex, w);
    CHECK_CLOSE(w[0] + w[1] + w[2], 1.0, 1e-6, "renormalised");
    CHECK_CLOSE(w[2], p[2] / (p[1] + p[3] + p[2]), 1e-6, "renormalised weight");
    olmoe_policy c = bound("topk(k=3,norm=selected)", 1, 6, 0, NULL, NULL);
    olmoe_policy_route(&c, 0, r, 6, ex, w);
    CHECK_CLOSE(w[0] + w[1] + w[2], 1.0, 1e-6, "norm=selected");
}

static void test_misuse(void) {
    olmoe_policy p;
    int ex[8];
    float r[8] = {0};
    CHECK(olmoe_policy_parse("topk(k=2)", &p) == 0, "parse");
    CHECK(olmoe_policy_route(&p, 0, r, 8, ex, NULL) == -1, "unbound -> -1");
    olmoe_policy_model m = {2, 8, 0, NULL, NULL, NULL, 0};
    CHECK(olmoe_policy_bind(&p, &m) == 0, "bind");
    CHECK(olmoe_policy_route(&p, 0, r, 7, ex, NULL) == -1, "E mismatch -> -1");
    CHECK(olmoe_policy_route(&p, 2, r, 8, ex, NULL) == -1, "layer out of range -> -1");
    CHECK(olmoe_policy_parse("bh(alpha=0.1)", &p) == 0, "parse bh");
    CHECK(olmoe_policy_bind(&p, &m) == -1 && strstr(olmoe_error(), "--kde"), "kde without a null: %s",
          olmoe_error());
    CHECK(olmoe_policy_parse("bh(alpha=0.1,pvalue=empirical)", &p) == 0, "parse bh");
    CHECK(olmoe_policy_bind(&p, &m) == -1, "empirical without a table");
    CHECK(olmoe_policy_parse("topk(k=9)", &p) == 0 && olmoe_policy_bind(&p, &m) == -1 &&
              strstr(olmoe_error(), "k=9"),
          "k > E: %s", olmoe_error());
    CHECK(olmoe_policy_parse("bh(alpha=0.1,max_k=9,pvalue=pseudo)", &p) == 0 &&
              olmoe_policy_bind(&p, &m) == -1 && strstr(olmoe_error(), "max_k=9"),
          "max_k > E: %s", olmoe_error());
}

#include "test_policy_random.h"
#include "test_policy_ref.h"

static ref_policy cur_ref;
static int ref_prepare(const olmoe_policy *pol) {
    cur_ref = ref_from_policy(pol);
    return cur_ref.pvalue;
}
static int ref_route_cur(int L, int layer, const float *r, int E, int ntp, const olmoe_kde_cdf *null,
                         const float *emp, int emp_n, int *ex, float *w) {
    return ref_route(&cur_ref, L, layer, r, E, ntp, null, emp, emp_n, ex, w);
}

static void test_random_vs_reference(void) {
    static const char *const specs[] = {
        "topk(k=1)", "topk(k=8)", "topk(k=3,T=0.7)", "topk(k=64)", "topk(k=5,norm=selected)",
        "topk(k=4,T=1e-6)", "topk(k=2,T=1e6)", "bh(alpha=0.5,max_k=8,pvalue=pseudo,T=1e-6)",
        "topp(p=0.5,max_k=8)", "topp(p=0.9,max_k=16,min_k=2)", "topp(p=1,max_k=64)",
        "topp(p=0.3,max_k=4,min_k=4,T=2)",
        "bh(alpha=0.1,max_k=8)", "bh(alpha=0.01,max_k=64)", "bh(alpha=0.5,max_k=64)",
        "bh(alpha=0.2,max_k=4,min_k=2,norm=selected)", "bh(alpha=0.05,max_k=32,pvalue=pseudo)",
        "bh(alpha=0.3,max_k=16,pvalue=pseudo,T=0.5)", "bh(alpha=0.2,max_k=8,pvalue=empirical)",
        "bh(alpha=0.6,max_k=64,pvalue=empirical,pvalue_floor=0.0078125)",
        "bh(alpha=0.9,max_k=64,min_k=1,pvalue=kde,pvalue_floor=0.01)",
    };
    static const int Es[] = {64, 7, 64, 33};
    static const int modes[] = {PR_CONTINUOUS, PR_TIES, PR_BLOCKS, PR_OUTLIERS, PR_ZEROS};
    pr_sweep sw = {.seed = 88172645463325252ull,
                   .specs = specs,
                   .n_specs = (int)(sizeof specs / sizeof specs[0]),
                   .Es = Es,
                   .n_Es = 4,
                   .modes = modes,
                   .n_modes = 5,
                   .w_tol = 1e-6f,
                   .ref_prepare = ref_prepare,
                   .ref_route = ref_route_cur};
    pr_result res = pr_run(&sw);
    /* the cases must exercise more than one outcome */
    CHECK(res.distinct >= 10, "only %d distinct expert counts", res.distinct);
}

int main(void) {
    RUN(test_bh_nothing_significant);
    RUN(test_bh_everything_significant);
    RUN(test_bh_step_up);
    RUN(test_bh_ties);
    RUN(test_bh_floor);
    RUN(test_topk_weights);
    RUN(test_misuse);
    RUN(test_random_vs_reference);
    return check_summary();
}
