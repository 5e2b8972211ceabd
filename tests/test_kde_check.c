/* test_kde_check.c: olmoe-kde check's statistics (kde/kde_check.c) against a
 * known answer. Router logits iid Uniform(-10, 10) over E = 64 experts, one
 * selected (top-1), and the null the Uniform(-10, 10) CDF itself: a
 * non-selected logit is a random one of the 63 smallest of 64 uniforms, so in
 * u = (x + 10) / 20 its CDF is F(u) = (64 u - u^64) / 63 and its p-value
 * p = 1 - u has CDF G(p) = 1 - F(1 - p). The measured KS distance must be
 * sup |G(p) - p| (computed here on a fine grid) within sampling error, the
 * shares below 0.01 / 0.05 / 0.1 must be G there, and BH discoveries must grow
 * with alpha. Then a null that is too wide (Uniform(-20, 20)) must read
 * further from uniform, with p-values piled up high. */
#include "check.h"
#include "kde_check.h"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function" /* the header's other helpers */
#include "test_traces_synth.h"
#pragma GCC diagnostic pop

static void uniform_cdf(olmoe_kde_cdf *c, double lo, double hi, int G) {
    memset(c, 0, sizeof *c);
    c->n_layers = 1, c->n_grid = G;
    c->present = xcalloc(1, 1);
    c->present[0] = 1;
    c->x0 = xmalloc(sizeof *c->x0);
    c->inv_dx = xmalloc(sizeof *c->inv_dx);
    c->x0[0] = lo, c->inv_dx[0] = (G - 1) / (hi - lo);
    c->sf = xmalloc((size_t)G * sizeof *c->sf);
    for (int i = 0; i < G; i++) c->sf[i] = (float)(1.0 - (double)i / (G - 1));
}

/* a per-expert null of E experts: expert 0's Uniform(lo0, hi0), the others' Uniform(lo, hi) */
static void uniform_cdf_per_expert(olmoe_kde_cdf *c, int E, double lo0, double hi0, double lo, double hi, int G) {
    memset(c, 0, sizeof *c);
    c->n_layers = 1, c->n_experts = E, c->n_grid = G;
    c->present = xcalloc((size_t)E, 1);
    c->x0 = xmalloc((size_t)E * sizeof *c->x0);
    c->inv_dx = xmalloc((size_t)E * sizeof *c->inv_dx);
    c->sf = xmalloc((size_t)E * G * sizeof *c->sf);
    for (int e = 0; e < E; e++) {
        double a = e ? lo : lo0, b = e ? hi : hi0;
        c->present[e] = 1;
        c->x0[e] = a, c->inv_dx[e] = (G - 1) / (b - a);
        for (int i = 0; i < G; i++) c->sf[(size_t)e * G + i] = (float)(1.0 - (double)i / (G - 1));
    }
}

static double G_of(double p) {
    double u = 1 - p;
    return 1 - (64 * u - pow(u, 64)) / 63;
}

static void test_known_answer(void) {
    synth s;
    memset(&s, 0, sizeof s);
    s.L = 1, s.E = 64, s.D = 4, s.V = 50, s.ctx = 64, s.dt = OLMOE_DTYPE_F32, s.seed = 3, s.n_docs = 4;
    for (int d = 0; d < 4; d++) s.doc_len[d] = 1000, s.doc_group[d] = -1;
    synth_make(&s);
    const char *path = tmp_path("check.h5");
    CHECK(synth_write(&s, path, s.W, 1, -1) != NULL, "write: %s", olmoe_error());
    olmoe_trace *t = olmoe_trace_open(path);
    CHECK(t != NULL, "open: %s", olmoe_error());
    if (!t) return;
    olmoe_kde_cdf c;
    uniform_cdf(&c, -10, 10, 4097);
    olmoe_kde_check k;
    CHECK(olmoe_kde_check_run(&c, t, 1, 0, 0, &k) == 0, "run: %s", olmoe_error());
    double want = 0;
    for (int i = 0; i <= 100000; i++) want = fmax(want, fabs(G_of(i / 100000.0) - i / 100000.0));
    CHECK(k.n[0] == 4000 * 63, "%lld p-values", (long long)k.n[0]);
    /* 252000 values: KS sampling error ~ 1 / sqrt(n) = 0.002 */
    CHECK(fabs(k.ks[0] - want) < 0.006, "KS %.5f, exact %.5f", k.ks[0], want);
    CHECK(fabs(k.share_below[0] - G_of(0.01)) < 0.004, "below 0.01: %.5f vs %.5f", k.share_below[0], G_of(0.01));
    CHECK(fabs(k.share_below[2] - G_of(0.1)) < 0.006, "below 0.1: %.5f vs %.5f", k.share_below[2], G_of(0.1));
    for (int q = 1; q < OLMOE_KDE_CHECK_Q; q++) CHECK(k.qq[q] >= k.qq[q - 1], "QQ ascends at %d", q);
    for (int a = 1; a < OLMOE_KDE_CHECK_ALPHAS; a++) CHECK(k.disc[a] >= k.disc[a - 1], "discoveries grow at %d", a);
    double ks_right = k.ks[0], below_right = k.share_below[2];
    olmoe_kde_check_free(&k);
    olmoe_kde_cdf_free(&c);
    uniform_cdf(&c, -20, 20, 4097); /* too wide: p-values crowd into [0.25, 0.75] */
    CHECK(olmoe_kde_check_run(&c, t, 1, 1000, 2000, &k) == 0, "run: %s", olmoe_error());
    CHECK(k.n_tokens == 2000 && k.first == 1000, "tokens [%lld, +%lld)", (long long)k.first, (long long)k.n_tokens);
    CHECK(k.ks[0] > ks_right + 0.1, "a wrong null reads further: %.4f vs %.4f", k.ks[0], ks_right);
    CHECK(k.share_below[2] < below_right / 10, "and has few small p-values: %.4f", k.share_below[2]);
    olmoe_kde_check_free(&k);
    CHECK(olmoe_kde_check_run(&c, t, 64, 0, 0, &k) != 0, "top-k = E leaves nothing to check");
    olmoe_kde_cdf_free(&c);
    /* per expert: each expert's p-value under its own null. Expert 0's is the
     * wide one, the other 63 the right one: the KS distance stays near the
     * right null's (read under expert 0's null alone it is the wide one's) */
    uniform_cdf_per_expert(&c, 64, -20, 20, -10, 10, 4097);
    CHECK(olmoe_kde_check_run(&c, t, 1, 0, 0, &k) == 0, "per expert: %s", olmoe_error());
    CHECK(fabs(k.ks[0] - ks_right) < 0.03, "per expert: KS %.4f, the right null's %.4f", k.ks[0], ks_right);
    olmoe_kde_check_free(&k);
    olmoe_kde_cdf_free(&c);
    uniform_cdf_per_expert(&c, 32, -10, 10, -10, 10, 4097);
    CHECK(olmoe_kde_check_run(&c, t, 1, 0, 0, &k) != 0 && strstr(olmoe_error(), "per expert of 32 experts"),
          "a per-expert null of 32 experts on a trace of 64 is refused: %s", olmoe_error());
    olmoe_kde_cdf_free(&c);
    olmoe_trace_close(t);
    unlink(path);
    synth_free(&s);
}

int main(void) {
    RUN(test_known_answer);
    return check_summary();
}
