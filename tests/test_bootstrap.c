/* test_bootstrap.c: the paired bootstrap (analyze/bootstrap.c) and the
 * headroom oracle (analyze/headroom.c) on synthetic data with known answers:
 * a policy against itself gives [0, 0] and p = 1; a constant shift of every
 * token's NLL gives a zero-width interval at that shift; for independent
 * per-document differences the interval of the mean difference is the
 * textbook one, mean +- 1.96 sigma / sqrt(U) (sigma the population standard
 * deviation of the documents' means, equal sizes), within sampling error;
 * the draws depend on the seed only; the headroom's k*, counts, mean k and
 * oracle perplexity worked out by hand. */
#include "bootstrap.h"
#include "check.h"
#include "headroom.h"

#include <stdint.h>

#define U 400 /* documents */
#define T 10  /* tokens each */

static float a[U * T], b[U * T];
static int64_t bounds[U + 1];

static double lcg(uint64_t *s) { /* uniform in [0, 1) */
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0;
}

static void setup(olmoe_boot_units *u) {
    for (int i = 0; i <= U; i++) bounds[i] = (int64_t)i * T;
    olmoe_boot_units_init(u, bounds, U, "document");
}

static void test_self(void) {
    uint64_t s = 5;
    for (int i = 0; i < U * T; i++) a[i] = (float)(2 + 3 * lcg(&s));
    a[17] = NAN; /* unscored tokens are left out */
    olmoe_boot_units u;
    setup(&u);
    olmoe_boot_units_fill(&u, a, a, U * T);
    olmoe_boot_result r;
    CHECK(olmoe_boot_paired(&u, 500, 1, &r) == 0, "runs");
    CHECK(r.delta == 0 && r.delta_lo == 0 && r.delta_hi == 0, "delta [%g, %g]", r.delta_lo, r.delta_hi);
    CHECK(r.dnll_lo == 0 && r.dnll_hi == 0, "dnll [%g, %g]", r.dnll_lo, r.dnll_hi);
    CHECK(r.p_value == 1, "p %g", r.p_value);
    CHECK(r.n_tokens == U * T - 1 && r.n_units == U, "%lld tokens", (long long)r.n_tokens);
    CHECK(r.ppl_a_lo < r.ppl_a && r.ppl_a < r.ppl_a_hi, "ppl inside its interval");
    olmoe_boot_units_free(&u);
}

static void test_shift(void) {
    uint64_t s = 9;
    for (int i = 0; i < U * T; i++) b[i] = (float)(1 + 4 * lcg(&s)), a[i] = b[i] + 0.25f;
    olmoe_boot_units u;
    setup(&u);
    olmoe_boot_units_fill(&u, a, b, U * T);
    olmoe_boot_result r;
    CHECK(olmoe_boot_paired(&u, 300, 3, &r) == 0, "runs");
    CHECK_CLOSE(r.dnll_lo, 0.25, 1e-5, "dnll_lo");
    CHECK_CLOSE(r.dnll_hi, 0.25, 1e-5, "dnll_hi");
    CHECK_CLOSE(r.delta_lo, exp(0.25) - 1, 1e-5, "delta_lo = e^0.25 - 1");
    CHECK_CLOSE(r.delta_hi, exp(0.25) - 1, 1e-5, "delta_hi");
    CHECK(r.p_value < 0.01, "p %g", r.p_value);
    olmoe_boot_units_free(&u);
}

/* document d's tokens differ by m_d (the same for its T tokens), m_d
 * independent; the bootstrap of the mean over U documents has standard
 * deviation sigma / sqrt(U), sigma the population sd of the m_d */
static void test_known_interval(void) {
    uint64_t s = 11;
    double m[U], mean = 0, var = 0;
    for (int d = 0; d < U; d++) {
        m[d] = 0.05 + 0.4 * (lcg(&s) - 0.5); /* uniform, sd 0.4 / sqrt(12) */
        mean += m[d] / U;
    }
    for (int d = 0; d < U; d++) var += (m[d] - mean) * (m[d] - mean) / U;
    for (int d = 0; d < U; d++)
        for (int t = 0; t < T; t++) b[d * T + t] = (float)(3 + lcg(&s)), a[d * T + t] = b[d * T + t] + (float)m[d];
    olmoe_boot_units u;
    setup(&u);
    olmoe_boot_units_fill(&u, a, b, U * T);
    olmoe_boot_result r;
    CHECK(olmoe_boot_paired(&u, 4000, 7, &r) == 0, "runs");
    double half = 1.96 * sqrt(var / U);
    CHECK_CLOSE(r.dnll, mean, 1e-5, "point estimate is the mean difference");
    /* the bootstrap's own error on a 2.5 % quantile with 4000 draws is ~4 % of half */
    CHECK(fabs((r.dnll_hi - r.dnll_lo) / 2 - half) < 0.08 * half, "half width %g, textbook %g",
          (r.dnll_hi - r.dnll_lo) / 2, half);
    CHECK(fabs((r.dnll_hi + r.dnll_lo) / 2 - mean) < 0.1 * half, "centre %g, mean %g", (r.dnll_hi + r.dnll_lo) / 2,
          mean);
    olmoe_boot_result r2, r3;
    olmoe_boot_paired(&u, 4000, 7, &r2);
    olmoe_boot_paired(&u, 4000, 8, &r3);
    CHECK(r2.dnll_lo == r.dnll_lo && r2.dnll_hi == r.dnll_hi, "a seed gives the same draws");
    CHECK(r3.dnll_lo != r.dnll_lo, "another seed other draws");
    olmoe_boot_units_free(&u);
}

static void test_headroom(void) {
    /* 4 tokens, ladder k = 1, 2 under a baseline k = 4; the last token unscored */
    float base[5] = {1.0f, 2.0f, 3.0f, 0.5f, NAN};
    float k1[5] = {1.005f, 2.5f, 3.2f, 0.4f, NAN};
    float k2[5] = {0.9f, 2.05f, 3.5f, 0.3f, NAN};
    olmoe_headroom_in in = {.n_k = 2, .ks = {1, 2}, .nll = {k1, k2}, .base = base, .k_base = 4, .N = 5};
    olmoe_headroom h;
    CHECK(olmoe_headroom_compute(&in, 0.01, &h) == 0, "runs");
    /* k*: 1 (1.005 <= 1.01), 4 (2.05 > 2.01), 4, 1 */
    CHECK(h.kstar[0] == 1 && h.kstar[1] == 4 && h.kstar[2] == 4 && h.kstar[3] == 1 && h.kstar[4] == 0,
          "k* %d %d %d %d %d", h.kstar[0], h.kstar[1], h.kstar[2], h.kstar[3], h.kstar[4]);
    CHECK(h.count[0] == 2 && h.count[1] == 0 && h.count[2] == 2 && h.n_scored == 4, "counts");
    CHECK_CLOSE(h.mean_k, 2.5, 1e-12, "mean k");
    CHECK_CLOSE(h.ppl_oracle, exp((1.005f + 2.0f + 3.0f + 0.4f) / 4.0), 1e-6, "oracle ppl");
    CHECK(h.mean_k >= 1 && h.mean_k <= 4 && h.ppl_oracle <= h.ppl_base * exp(0.01), "bounds");
    olmoe_headroom_free(&h);
    CHECK(olmoe_headroom_compute(&in, 0.1, &h) == 0, "runs");
    CHECK(h.kstar[1] == 2 && h.count[1] == 1 && h.count[2] == 1, "eps 0.1: token 1 at k 2");
    olmoe_headroom_free(&h);
    in.ks[1] = 4;
    CHECK(olmoe_headroom_compute(&in, 0.1, &h) != 0, "a rung at the baseline's k is refused");
}

int main(void) {
    RUN(test_self);
    RUN(test_shift);
    RUN(test_known_interval);
    RUN(test_headroom);
    return check_summary();
}
