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

static void test_bh_nothing_significant(void) {
    olmoe_kde_cdf c = lin_null(1);
    olmoe_policy p = bound("bh(alpha=0.1,max_k=4,min_k=2)", 1, 8, 0, &c, NULL);
    float q[8] = {0.5f, 0.6f, 0.4f, 0.9f, 0.5f, 0.7f, 0.8f, 0.4f}, r[8];
    int ex[8];
    logits_for(q, 8, r);
    int n = route(&p, r, 8, ex);
    /* k* = 0 -> min_k = 2: the two smallest p (0.4 at 2 and 7) */
    CHECK(n == 2, "n = %d", n);
    CHECK(ex[0] == 2 && ex[1] == 7, "got %d %d", ex[0], ex[1]);
}

static void test_bh_everything_significant(void) {
    olmoe_kde_cdf c = lin_null(1);
    olmoe_policy p = bound("bh(alpha=0.1,max_k=4)", 1, 8, 0, &c, NULL);
    float q[8], r[8];
    int ex[8];
    for (int e = 0; e < 8; e++) q[e] = 1e-5f;
    q[6] = 1e-6f;
    logits_for(q, 8, r);
    int n = route(&p, r, 8, ex);
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
    float q[8] = {0.9f, 0.024f, 0.9f, 0.9f, 0.02f, 0.9f, 0.9f, 0.9f}, r[8];
    int ex[8];
    logits_for(q, 8, r);
    int n = route(&p, r, 8, ex);
    CHECK(n == 2, "n = %d", n);
    CHECK(ex[0] == 4 && ex[1] == 1, "got %d %d", ex[0], ex[1]);
    /* and a rank-3 pass after ranks 1 and 2 fail */
    float q2[8] = {0.02f, 0.03f, 0.036f, 0.9f, 0.9f, 0.9f, 0.9f, 0.9f};
    logits_for(q2, 8, r);
    n = route(&p, r, 8, ex);
    CHECK(n == 3, "n = %d", n);
}

static void test_bh_ties(void) {
    /* three equal p-values passing at rank 3, max_k = 2: lower indices win */
    olmoe_kde_cdf c = lin_null(1);
    olmoe_policy p = bound("bh(alpha=0.1,max_k=2)", 1, 8, 0, &c, NULL);
    float q[8] = {0.9f, 0.9f, 0.03f, 0.9f, 0.9f, 0.03f, 0.9f, 0.03f}, r[8];
    int ex[8];
    logits_for(q, 8, r);
    int n = route(&p, r, 8, ex);
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

#include "test_policy_ref.h"

/* ---- random logits with ties ---- */
static uint64_t rng = 88172645463325252ull;
static double urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void) {
    double u = urand() + 1e-300, v = urand();
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}
static void random_logits(float *r, int E, int mode) {
    for (int e = 0; e < E; e++) {
        switch (mode) {
        case 0: r[e] = (float)(2.0 * nrand()); break;             /* continuous */
        case 1: r[e] = (float)(floor(4.0 * nrand()) / 4.0); break; /* many ties */
        case 2: r[e] = e % 3 ? 0.0f : 7.0f; break;                 /* blocks of equal values */
        case 3: r[e] = (float)(nrand() * (urand() < 0.1 ? 8 : 1)); break; /* outliers */
        default: r[e] = urand() < 0.5 ? (urand() < 0.5 ? -0.0f : 0.0f) : (float)(e % 2); /* +-0 */
        }
    }
}

static void test_random_vs_reference(void) {
    const int L = 3;
    /* a null on a coarse grid (so grid points and flats are hit) from a normal */
    enum { G = 33 };
    static float sf[3 * G];
    static unsigned char present[3] = {1, 1, 1};
    static double x0[3], inv[3];
    for (int l = 0; l < L; l++) {
        x0[l] = -3.0 - l;
        inv[l] = (G - 1) / (6.0 + 2 * l);
        for (int j = 0; j < G; j++) {
            double x = x0[l] + j / inv[l];
            sf[l * G + j] = (float)(0.5 * erfc(x / sqrt(2.0)));
        }
        sf[l * G + 5] = sf[l * G + 6]; /* a flat stretch: p-value ties */
    }
    olmoe_kde_cdf null = {L, 0, G, present, x0, inv, sf};

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
    const int Es[] = {64, 7, 64, 33};
    long mismatches = 0, routed = 0, sizes[65] = {0};
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        for (size_t ei = 0; ei < sizeof Es / sizeof Es[0]; ei++) {
            int E = Es[ei];
            olmoe_policy pol;
            CHECK(olmoe_policy_parse(specs[s], &pol) == 0, "%s: %s", specs[s], olmoe_error());
            if (olmoe_policy_max_experts(&pol) > E) continue;
            /* an empirical null: 50 tokens of random logits (with ties) */
            enum { NT = 50 };
            float *tok = malloc(sizeof(float) * NT * L * E), *ref_emp = malloc(sizeof(float) * L * E * NT);
            for (int t = 0; t < NT; t++) random_logits(tok + (size_t)t * L * E, L * E, t % 2);
            olmoe_policy_empirical emp;
            CHECK(olmoe_policy_empirical_init(&emp, L, E, NT, 0) == 0, "emp init");
            olmoe_policy_empirical_add(&emp, 0, tok, NT);
            CHECK(olmoe_policy_empirical_finish(&emp) == 0, "emp finish");
            for (int l = 0; l < L; l++)
                for (int e = 0; e < E; e++)
                    for (int t = 0; t < NT; t++)
                        ref_emp[((size_t)l * E + e) * NT + t] = tok[((size_t)t * L + l) * E + e];
            int ntp = (int)(s % 2);
            olmoe_policy_model m = {L, E, ntp, &null, &emp, NULL, 0};
            CHECK(olmoe_policy_bind(&pol, &m) == 0, "%s: %s", specs[s], olmoe_error());
            ref_policy rp = ref_from_policy(&pol);
            for (int trial = 0; trial < 400; trial++) {
                float r[64];
                int layer = trial % L;
                if (trial < 40 && rp.pvalue == 1) /* logits from the null itself: exact ties */
                    memcpy(r, tok + ((size_t)(trial % NT) * L + layer) * E, sizeof(float) * E);
                else
                    random_logits(r, E, trial % 5);
                int ex[64], rex[64];
                float w[64], rw[64];
                int n = olmoe_policy_route(&pol, layer, r, E, ex, w);
                int rn = ref_route(&rp, L, layer, r, E, ntp, &null,
                                   ref_emp + (size_t)layer * E * NT, NT, rex, rw);
                int same = n == rn;
                for (int i = 0; same && i < n; i++) same = ex[i] == rex[i] && fabsf(w[i] - rw[i]) <= 1e-6f;
                /* selection-only calls decide the same */
                int ex2[64];
                same = same && olmoe_policy_route(&pol, layer, r, E, ex2, NULL) == n &&
                       memcmp(ex, ex2, sizeof(int) * (size_t)n) == 0;
                if (!same && mismatches++ < 3)
                    CHECK(same, "%s E=%d trial %d: n %d vs %d, first %d vs %d", specs[s], E, trial,
                          n, rn, ex[0], rex[0]);
                routed++;
                if (n >= 0 && n <= 64) sizes[n]++;
            }
            olmoe_policy_empirical_free(&emp);
            free(tok);
            free(ref_emp);
        }
    }
    CHECK(mismatches == 0, "%ld of %ld decisions differ", mismatches, routed);
    /* the cases must exercise more than one outcome */
    int distinct = 0;
    for (int k = 0; k <= 64; k++) distinct += sizes[k] > 0;
    CHECK(distinct >= 10, "only %d distinct expert counts", distinct);
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
