/* test_policy_lit.c: the literature's policies (threshold, skip, entropy, hc).
 * Hand-checked cases (nothing passes, everything passes, k clamped, beta at
 * its edges, HC's argmax worked out by hand), every policy against the
 * straightforward implementation of test_policy_lit_ref.h on random logits
 * with ties, skip's beta=median against ratios measured here on a trace
 * written here, and the canonical ids, sets and errors. */
#include "check.h"
#include "common.h"
#include "policy.h"
#include "test_policy_lit_ref.h"
#include "test_policy_random.h"
#include "traces.h"

#include <stdint.h>
#include <unistd.h>

/* ---- a null whose p-value is 1 - x on [0, 1] (2 grid points) ---- */
static float lin_sf[64 * 2];
static unsigned char lin_present[64];
static double lin_x0[64], lin_inv[64];
static olmoe_kde_cdf lin_null(int L) {
    for (int l = 0; l < L; l++) {
        lin_present[l] = 1, lin_x0[l] = 0.0, lin_inv[l] = 1.0;
        lin_sf[2 * l] = 1.0f, lin_sf[2 * l + 1] = 0.0f;
    }
    return (olmoe_kde_cdf){L, 0, 2, lin_present, lin_x0, lin_inv, lin_sf};
}

static olmoe_policy bound(const char *spec, int L, int E, const olmoe_kde_cdf *null) {
    olmoe_policy p;
    if (olmoe_policy_parse(spec, &p) != 0) {
        fprintf(stderr, "parse %s: %s\n", spec, olmoe_error());
        exit(2);
    }
    olmoe_policy_model m = {L, E, 0, null, NULL, NULL, 0};
    if (olmoe_policy_bind(&p, &m) != 0) {
        fprintf(stderr, "bind %s: %s\n", spec, olmoe_error());
        exit(2);
    }
    return p;
}

static int route(olmoe_policy *p, const float *r, int E, int *ex) {
    return olmoe_policy_route(p, 0, r, E, ex, NULL);
}

static void test_threshold_cases(void) {
    int ex[8];
    float flat[4] = {0, 0, 0, 0}; /* p = 0.25 each, exactly */
    olmoe_policy a = bound("threshold(tau=0.25,max_k=3)", 1, 4, NULL);
    CHECK(route(&a, flat, 4, ex) == 3 && ex[0] == 0 && ex[2] == 2, "p = tau passes; max_k 3");
    olmoe_policy b = bound("threshold(tau=0.2500001,max_k=4,min_k=2)", 1, 4, NULL);
    CHECK(route(&b, flat, 4, ex) == 2 && ex[0] == 0 && ex[1] == 1, "none passes: min_k, lowest");
    olmoe_policy c = bound("threshold(tau=1e-30,max_k=8)", 1, 8, NULL);
    float r[8] = {1, -2, 3, 0.5f, 0, -1, 2, 7};
    CHECK(route(&c, r, 8, ex) == 8 && ex[0] == 7 && ex[1] == 2 && ex[2] == 6, "all pass: max_k");
    olmoe_policy d = bound("threshold(tau=0.1,max_k=8)", 1, 8, NULL);
    float s[8] = {2, 2, 0, 0, 0, 0, 0, 0}; /* p = e^2 / (2 e^2 + 6): 0.356 twice, 0.048 */
    CHECK(route(&d, s, 8, ex) == 2 && ex[0] == 0 && ex[1] == 1, "two pass");
}

static void test_skip_cases(void) {
    int ex[8];
    float r[8] = {3, 1, 3, 0, 2, -1, 3, 0.5f};
    olmoe_policy a = bound("skip(beta=0,max_k=5)", 1, 8, NULL);
    CHECK(route(&a, r, 8, ex) == 5, "beta 0 keeps max_k");
    olmoe_policy b = bound("skip(beta=1,max_k=5)", 1, 8, NULL);
    CHECK(route(&b, r, 8, ex) == 3 && ex[0] == 0 && ex[1] == 2 && ex[2] == 6, "beta 1: the tied max");
    olmoe_policy c = bound("skip(beta=1,max_k=5,min_k=4)", 1, 8, NULL);
    CHECK(route(&c, r, 8, ex) == 4 && ex[3] == 4, "clamped to min_k, then by p");
    /* p_(4) / p_(1) = e^-1 = 0.3679: beta just under keeps it, just over drops it */
    olmoe_policy d = bound("skip(beta=0.36,max_k=8)", 1, 8, NULL);
    CHECK(route(&d, r, 8, ex) == 4, "e^-1 > 0.36");
    olmoe_policy e = bound("skip(beta=0.37,max_k=8)", 1, 8, NULL);
    CHECK(route(&e, r, 8, ex) == 3, "e^-1 < 0.37");
    olmoe_policy f = bound("skip(beta=0.36,max_k=2)", 1, 8, NULL);
    CHECK(route(&f, r, 8, ex) == 2, "never above max_k");
}

static void test_entropy_cases(void) {
    int ex[8];
    float flat[8] = {0}; /* exp(H) = 8 */
    olmoe_policy a = bound("entropy(scale=0.5,max_k=8)", 1, 8, NULL);
    CHECK(route(&a, flat, 8, ex) == 4 && ex[3] == 3, "half of 8 effective experts");
    olmoe_policy b = bound("entropy(scale=100,max_k=6)", 1, 8, NULL);
    CHECK(route(&b, flat, 8, ex) == 6, "clamped to max_k");
    float peak[8] = {0, 0, 0, 40, 0, 0, 0, 0}; /* p_3 = 1 in fp32: H = 0, exp(H) = 1 */
    olmoe_policy c = bound("entropy(scale=2.6,max_k=8)", 1, 8, NULL);
    CHECK(route(&c, peak, 8, ex) == 3 && ex[0] == 3 && ex[1] == 0, "round(2.6) = 3");
    olmoe_policy d = bound("entropy(scale=0.2,max_k=8,min_k=2)", 1, 8, NULL);
    CHECK(route(&d, peak, 8, ex) == 2, "round(0.2) = 0 -> min_k");
    olmoe_policy e = bound("entropy(scale=1e6,max_k=8)", 1, 8, NULL);
    CHECK(route(&e, flat, 8, ex) == 8, "a huge scale clamps, no overflow");
}

/* logits whose lin_null p-values are q */
static void logits_for(const float *q, int E, float *r) {
    for (int e = 0; e < E; e++) r[e] = 1.0f - q[e];
}

static void test_hc_cases(void) {
    olmoe_kde_cdf c = lin_null(1);
    int ex[8];
    float r[8];
    /* HC_i = sqrt(8) (i/8 - q_(i)) / sqrt(q_(i) (1 - q_(i))):
     * 3.27, 6.48, 9.43, 12.16 for i = 1..4, negative after: k* = 4 */
    float q[8] = {0.9f, 0.011f, 0.95f, 0.013f, 0.01f, 0.9f, 0.012f, 0.99f};
    double want[5];
    for (int i = 1; i <= 4; i++) {
        double qi = 0.009 + 0.001 * i;
        want[i] = sqrt(8.0) * (i / 8.0 - qi) / sqrt(qi * (1 - qi));
    }
    CHECK(want[4] > want[3] && want[3] > want[2] && want[2] > want[1], "the hand values rise");
    logits_for(q, 8, r);
    olmoe_policy a = bound("hc(beta=1,max_k=8)", 1, 8, &c);
    int n = route(&a, r, 8, ex);
    CHECK(n == 4 && ex[0] == 4 && ex[1] == 1 && ex[2] == 6 && ex[3] == 3, "k* = 4: n %d", n);
    olmoe_policy b = bound("hc(beta=0.25,max_k=8)", 1, 8, &c);
    CHECK(route(&b, r, 8, ex) == 2, "beta 0.25: ranks 1..2 only");
    olmoe_policy d = bound("hc(beta=1,max_k=3)", 1, 8, &c);
    CHECK(route(&d, r, 8, ex) == 3, "k* clamped to max_k");
    /* one tiny p-value dominates: HC_1 = 2.83 * 0.125 / 0.00316 = 111.8 > HC_2 = 70.7 */
    float q1[8] = {0.5f, 1e-5f, 0.6f, 1e-4f, 0.7f, 0.8f, 0.9f, 0.3f};
    logits_for(q1, 8, r);
    olmoe_policy e = bound("hc(beta=1,max_k=8,min_k=2)", 1, 8, &c);
    CHECK(route(&a, r, 8, ex) == 1 && ex[0] == 1, "k* = 1");
    CHECK(route(&e, r, 8, ex) == 2 && ex[1] == 3, "min_k 2");
    /* all q = 0.5: HC_i = sqrt(8) (i/8 - 1/2) / (1/2) rises with i, so the last rank */
    float flat[8];
    for (int i = 0; i < 8; i++) flat[i] = 0.5f;
    CHECK(route(&a, flat, 8, ex) == 8 && ex[7] == 7, "all q equal: every rank");
    olmoe_policy f = bound("hc(beta=0.5,max_k=8)", 1, 8, &c);
    CHECK(route(&f, flat, 8, ex) == 4, "all q equal: the last rank searched");
}

static void test_misuse(void) {
    olmoe_policy p;
    olmoe_policy_model m = {1, 64, 0, NULL, NULL, NULL, 0};
    CHECK(olmoe_policy_parse("hc(beta=0.01,pvalue=pseudo)", &p) == 0, "parse");
    CHECK(olmoe_policy_bind(&p, &m) == -1 && strstr(olmoe_error(), "searches no rank among 64"),
          "%s", olmoe_error());
    CHECK(olmoe_policy_parse("hc(beta=0.5)", &p) == 0 && olmoe_policy_bind(&p, &m) == -1 &&
              strstr(olmoe_error(), "--kde"), "hc kde needs a null: %s", olmoe_error());
    CHECK(olmoe_policy_parse("skip(beta=median)", &p) == 0 && olmoe_policy_bind(&p, &m) == -1 &&
              strstr(olmoe_error(), "needs a calibration trace (--beta-trace"),
          "%s", olmoe_error());
    CHECK(olmoe_policy_parse("threshold(tau=0.1,max_k=65)", &p) == 0 &&
              olmoe_policy_bind(&p, &m) == -1 && strstr(olmoe_error(), "max_k=65"), "%s",
          olmoe_error());
}

/* ---- random logits against the reference ---- */
static lit_policy cur_lit;
static int lit_prepare(const olmoe_policy *pol) {
    cur_lit = lit_from_policy(pol);
    return cur_lit.pvalue;
}
static int lit_route_cur(int L, int layer, const float *r, int E, int ntp, const olmoe_kde_cdf *null,
                         const float *emp, int emp_n, int *ex, float *w) {
    (void)L;
    return lit_route(&cur_lit, layer, r, E, ntp, null, emp, emp_n, ex, w);
}
/* hc searching no rank at all */
static int hc_searches_none(const olmoe_policy *pol, int E) {
    return !strcmp(pol->family->name, "hc") && floor(olmoe_policy_get(pol, "beta") * E) < 1;
}

static void test_random_vs_reference(void) {
    static const char *const specs[] = {
        "threshold(tau=0.1)", "threshold(tau=0.02,max_k=64)", "threshold(tau=0.3,max_k=4,min_k=2)",
        "threshold(tau=1)", "threshold(tau=1e-30,max_k=16)", "threshold(tau=0.05,max_k=16,T=0.5,norm=selected)",
        "skip(beta=0.5)", "skip(beta=0)", "skip(beta=1,max_k=16)", "skip(beta=0.2,max_k=64,min_k=3)",
        "skip(beta=0.05,max_k=32,T=2,norm=selected)", "skip(beta=0.9,max_k=4,min_k=4)",
        "entropy(scale=0.5)", "entropy(scale=0.25,max_k=64)", "entropy(scale=1,max_k=16,min_k=2)",
        "entropy(scale=1e-3)", "entropy(scale=3,max_k=32,T=0.7)", "entropy(scale=0.1,max_k=64,T=5,norm=selected)",
        "hc(beta=0.5,pvalue=pseudo)", "hc(beta=1,max_k=64,pvalue=kde)", "hc(beta=0.25,max_k=16)",
        "hc(beta=0.5,max_k=8,min_k=2,pvalue=empirical)", "hc(beta=1,max_k=64,pvalue=pseudo,T=0.5)",
        "hc(beta=0.7,max_k=32,pvalue=kde,pvalue_floor=0.01,norm=selected)",
        "hc(beta=1,max_k=64,pvalue=empirical,pvalue_floor=0.0078125)",
    };
    static const int Es[] = {64, 7, 33, 16};
    static const int modes[] = {PR_CONTINUOUS, PR_TIES, PR_BLOCKS, PR_OUTLIERS, PR_FLAT, PR_ZEROS};
    pr_sweep sw = {.seed = 0x9E3779B97F4A7C15ull,
                   .specs = specs,
                   .n_specs = (int)(sizeof specs / sizeof specs[0]),
                   .Es = Es,
                   .n_Es = 4,
                   .modes = modes,
                   .n_modes = 6,
                   .w_tol = 0,
                   .skip = hc_searches_none,
                   .ref_prepare = lit_prepare,
                   .ref_route = lit_route_cur};
    pr_result res = pr_run(&sw);
    CHECK(res.distinct >= 20, "only %d distinct expert counts", res.distinct);
    CHECK(res.routed > 20000, "only %ld decisions", res.routed);
}

/* ---- ids, sets, errors ---- */
static const char *id_of(const char *spec) {
    static olmoe_policy p;
    if (olmoe_policy_parse(spec, &p) != 0) return olmoe_error();
    return p.id;
}

static void expect_id(const char *spec, const char *want) {
    const char *got = id_of(spec);
    CHECK(strcmp(got, want) == 0, "%s -> %s, want %s", spec, got, want);
    char copy[OLMOE_POLICY_ID_MAX];
    snprintf(copy, sizeof copy, "%s", got);
    CHECK(strcmp(id_of(copy), copy) == 0, "%s does not read back", copy);
}

static void expect_error(const char *spec, const char *want) {
    olmoe_policy p;
    int rc = olmoe_policy_parse(spec, &p);
    CHECK(rc == -1, "'%s' was accepted as %s", spec, rc == 0 ? p.id : "?");
    if (rc == -1)
        CHECK(strstr(olmoe_error(), want) != NULL, "'%s': '%s' lacks '%s'", spec, olmoe_error(), want);
}

static void test_ids(void) {
    expect_id("threshold(tau=0.1)", "threshold(tau=0.1,max_k=8,min_k=1,T=1,norm=model)");
    expect_id("threshold(max-k=16,tau=1e-3,temperature=2)",
              "threshold(tau=0.001,max_k=16,min_k=1,T=2,norm=model)");
    expect_id("skip(beta=0.5)", "skip(beta=0.5,max_k=8,min_k=1,T=1,norm=model)");
    expect_id("skip(beta=0)", "skip(beta=0,max_k=8,min_k=1,T=1,norm=model)");
    expect_id("skip(beta=median,max_k=4)", "skip(beta=median,max_k=4,min_k=1,T=1,norm=model)");
    expect_id("skip(beta=median-0123456789ab)",
              "skip(beta=median-0123456789ab,max_k=8,min_k=1,T=1,norm=model)");
    expect_id("entropy(scale=0.5,norm=selected)", "entropy(scale=0.5,max_k=8,min_k=1,T=1,norm=selected)");
    expect_id("hc(beta=0.5)", "hc(beta=0.5,max_k=8,min_k=1,T=1,pvalue=kde,norm=model)");
    expect_id("hc(beta=1,pvalue=pseudo,pvalue_floor=0.01)",
              "hc(beta=1,max_k=8,min_k=1,T=1,pvalue=pseudo,norm=model,pvalue_floor=0.01)");
    expect_error("threshold", "threshold needs tau");
    expect_error("threshold(tau=0)", "tau must be in (0, 1]");
    expect_error("threshold(tau=1.5)", "tau must be in (0, 1]");
    expect_error("skip(beta=1.5)", "beta must be in [0, 1]");
    expect_error("skip(beta=medain)", "beta must be a number");
    expect_error("skip(beta=median-xyz)", "is not median-<12 lower-case hex digits>");
    expect_error("skip(beta=0.5,min_k=9)", "min_k (9) is larger than max_k (8)");
    expect_error("entropy(scale=0)", "scale must be in (0, 1e+06]");
    expect_error("entropy(scale=-1)", "scale must be in (0, 1e+06]");
    expect_error("hc(beta=0)", "beta must be in (0, 1] for hc");
    expect_error("hc(beta=median)", "beta=median is for skip");
    expect_error("hc(alpha=0.1)", "hc has no parameter 'alpha' (it takes beta, max_k, min_k, T, pvalue, norm, pvalue_floor)");
    expect_error("threshold(tau=0.1,pvalue=kde)", "threshold has no parameter 'pvalue'");

    olmoe_policy_set s = {0};
    CHECK(olmoe_policy_set_add_spec(&s, "skip(beta={0.1,median},max_k={4,8})", NULL) == 0 && s.n == 4,
          "set with median: %d %s", s.n, olmoe_error());
    CHECK(s.n == 4 && strstr(s.items[2].id, "beta=median,max_k=4"), "order: %s", s.n ? s.items[2].id : "");
    CHECK(olmoe_policy_set_needs_calibration(&s) && !olmoe_policy_needs_calibration(&s.items[0]), "needs");
    olmoe_policy_set_free(&s);
    CHECK(olmoe_policy_set_add_spec(&s, "threshold(tau={0.05,0.1,0.2})", NULL) == 0 &&
              olmoe_policy_set_add_spec(&s, "entropy(scale={0.5,1},max_k={8,16})", NULL) == 0 &&
              olmoe_policy_set_add_spec(&s, "hc(beta={0.25,0.5},pvalue=pseudo)", NULL) == 0 && s.n == 9,
          "sets: %d %s", s.n, olmoe_error());
    CHECK(!olmoe_policy_set_needs_calibration(&s), "no median");
    olmoe_policy_set_free(&s);

    /* the command-line form: --beta applies to skip and hc; --beta-trace needs a median */
    olmoe_policy_cli cli;
    memset(&cli, 0, sizeof cli);
    cli.policies[cli.n_policies++] = "skip";
    cli.policies[cli.n_policies++] = "hc(pvalue=pseudo)";
    cli.policies[cli.n_policies++] = "threshold";
    cli.value[OLMOE_PARAM_BETA] = "0.25,0.5";
    cli.value[OLMOE_PARAM_TAU] = "0.1";
    CHECK(olmoe_policy_cli_build(&cli, &s) == 0 && s.n == 5, "%d %s", s.n, olmoe_error());
    olmoe_policy_set_free(&s);
    cli.beta_trace = "calib.h5";
    CHECK(olmoe_policy_cli_build(&cli, &s) == -1 && strstr(olmoe_error(), "--beta-trace: no policy"),
          "%s", olmoe_error());
    olmoe_policy_set_free(&s);
    cli.value[OLMOE_PARAM_BETA] = "median";
    cli.policies[1] = "skip(max_k=4)";
    CHECK(olmoe_policy_cli_build(&cli, &s) == 0 && s.n == 3 && s.items[0].calib_path == cli.beta_trace &&
              s.items[1].calib_path == cli.beta_trace && !s.items[2].calib_path,
          "calibrate applied: %s", olmoe_error());
    olmoe_policy_set_free(&s);
}

/* ---- skip(beta=median) against ratios measured here ---- */
static int write_trace(const char *path, int64_t N, int L, int E, const float *logits) {
    olmoe_trace_meta m;
    memset(&m, 0, sizeof m);
    m.command = "test";
    m.config_json = "{}";
    m.model_checksum = "0";
    m.model_dir = "none";
    m.policy = "topk(k=2,norm=model)";
    m.device = "cpu";
    m.compute_dtype = "float32";
    m.n_layers = L, m.n_experts = E, m.hidden_size = 8, m.vocab_size = 100, m.top_k = 2;
    m.ctx = (int)N;
    m.logits_dtype = OLMOE_DTYPE_F32;
    olmoe_trace *t = olmoe_trace_create(path, &m);
    if (!t) return -1;
    int32_t *tok = calloc((size_t)N, sizeof *tok), *am = calloc((size_t)N, sizeof *am);
    float *nll = calloc((size_t)N, sizeof *nll);
    nll[N - 1] = NAN;
    olmoe_trace_window w = {0, N, 0, 0};
    olmoe_trace_rows rows = {tok, logits, nll, am, NULL, NULL};
    int rc = olmoe_trace_append_window(t, &w, &rows);
    free(tok), free(am), free(nll);
    if (rc != 0) {
        olmoe_trace_abort(t);
        return -1;
    }
    return olmoe_trace_close(t);
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void test_skip_median(void) {
    enum { N = 301, L = 3, E = 16 };
    float *lg = malloc(sizeof(float) * N * L * E);
    for (int i = 0; i < N * L * E; i++) lg[i] = (float)(pr_nrand() * (1 + (i / E) % L));
    for (int i = 0; i < 40 * E; i++) lg[i] = (float)((i % 5) / 2); /* ties */
    char path[] = "/tmp/olmoe-lit-XXXXXX", other[] = "/tmp/olmoe-lit2-XXXXXX";
    close(mkstemp(path));
    close(mkstemp(other));
    unlink(path), unlink(other);
    CHECK(write_trace(path, N, L, E, lg) == 0, "write: %s", olmoe_error());
    const int ks[] = {4, 2, 8};
    const float Ts[] = {1.0f, 2.0f, 0.5f};
    for (int c = 0; c < 3; c++) {
        char spec[96];
        snprintf(spec, sizeof spec, "skip(beta=median,max_k=%d,T=%g)", ks[c], (double)Ts[c]);
        olmoe_policy_set s = {0};
        CHECK(olmoe_policy_set_add_spec(&s, spec, NULL) == 0, "%s", olmoe_error());
        olmoe_policy_set_calibration(&s, path, 0);
        olmoe_policy_model m = {L, E, 0, NULL, NULL, NULL, 0};
        CHECK(olmoe_policy_set_bind(&s, &m) == 0, "%s: %s", spec, olmoe_error());
        olmoe_policy *p = &s.items[0];
        /* the median of p_(k) / p_(1) measured here with the fp32 softmax */
        for (int l = 0; l < L; l++) {
            float ratio[N], pr[E];
            int idx[E];
            for (int t = 0; t < N; t++) {
                ref_softmax(lg + ((size_t)t * L + l) * E, E, Ts[c], pr);
                ref_order(pr, E, 1, idx);
                ratio[t] = pr[idx[ks[c] - 1]] / pr[idx[0]];
            }
            qsort(ratio, N, sizeof *ratio, cmp_f);
            CHECK_CLOSE(p->beta_layer[l], ratio[(N - 1) / 2], 1e-5, "%s layer %d", spec, l);
        }
        /* the tag is the checksum of the logits */
        olmoe_hash hsum;
        olmoe_hash_bytes(lg, sizeof(float) * N * L * E, &hsum);
        char want[128];
        snprintf(want, sizeof want, "skip(beta=median-%.12s,max_k=%d,", hsum.hex, ks[c]);
        CHECK(strncmp(p->id, want, strlen(want)) == 0, "id %s, want %s...", p->id, want);
        /* routing uses each layer's beta */
        lit_policy rp = lit_from_policy(p);
        rp.beta_layer = p->beta_layer;
        long bad = 0;
        for (int t = 0; t < N; t++)
            for (int l = 0; l < L; l++) {
                int ex[E], rex[E];
                float w[E], rw[E];
                const float *r = lg + ((size_t)t * L + l) * E;
                int n = olmoe_policy_route(p, l, r, E, ex, w);
                int rn = lit_route(&rp, l, r, E, 0, NULL, NULL, 0, rex, rw);
                bad += n != rn || memcmp(ex, rex, sizeof(int) * (size_t)n) != 0;
            }
        CHECK(bad == 0, "%s: %ld decisions differ", spec, bad);
        /* the id reads back, and binds only to the same calibration trace */
        olmoe_policy back;
        CHECK(olmoe_policy_parse(p->id, &back) == 0 && strcmp(back.id, p->id) == 0, "%s", p->id);
        back.calib_path = path;
        CHECK(olmoe_policy_bind(&back, &m) == 0 && strcmp(back.id, p->id) == 0, "rebind: %s",
              olmoe_error());
        if (c == 0) {
            float *lg2 = malloc(sizeof(float) * N * L * E);
            memcpy(lg2, lg, sizeof(float) * N * L * E);
            lg2[7] += 1.0f;
            CHECK(write_trace(other, N, L, E, lg2) == 0, "write other");
            free(lg2);
            CHECK(olmoe_policy_parse(p->id, &back) == 0, "parse");
            back.calib_path = other;
            CHECK(olmoe_policy_bind(&back, &m) == -1 &&
                      strstr(olmoe_error(), "was calibrated on another trace"),
                  "%s", olmoe_error());
            olmoe_policy_model m2 = {L + 1, E, 0, NULL, NULL, NULL, 0};
            CHECK(olmoe_policy_parse(spec, &back) == 0, "parse");
            back.calib_path = path;
            CHECK(olmoe_policy_bind(&back, &m2) == -1 && strstr(olmoe_error(), "has 3 layers x 16"),
                  "%s", olmoe_error());
            back.calib_path = "/nonexistent/calib.h5";
            CHECK(olmoe_policy_bind(&back, &m) == -1 && strstr(olmoe_error(), "/nonexistent/calib.h5"),
                  "%s", olmoe_error());
        }
        olmoe_policy_set_free(&s);
    }
    unlink(path);
    unlink(other);
    free(lg);
}

int main(void) {
    RUN(test_threshold_cases);
    RUN(test_skip_cases);
    RUN(test_entropy_cases);
    RUN(test_hc_cases);
    RUN(test_misuse);
    RUN(test_random_vs_reference);
    RUN(test_ids);
    RUN(test_skip_median);
    return check_summary();
}
