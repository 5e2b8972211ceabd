/* test_match.c: matched-compute calibration (analyze/match.h) on synthetic
 * router logits (test_stats_synth.h): every family reaches reachable targets
 * within the tolerance, the mean k it reports is recounted here with the
 * reference policies (test_policy_ref.h, test_policy_lit_ref.h), targets out
 * of reach and plateaus are reported as such, and bad families are refused. */
#include "check.h"
#include "common.h"
#include "match.h"
#include "test_policy_lit_ref.h"
#include "test_policy_ref.h"
#include "test_stats_synth.h"

#include <unistd.h>

enum { L = 3, E = 32, N = 1500 };

static olmoe_match_data data;
static olmoe_policy_model model = {L, E, 0, NULL, NULL, NULL, 0};
static char trace_path[64];

/* mean k of a bound policy over the data, counted with the reference */
static double ref_mean_k(const olmoe_policy *pol) {
    const char *fam = pol->family->name;
    int lit = strcmp(fam, "topk") && strcmp(fam, "topp") && strcmp(fam, "bh");
    ref_policy rp;
    lit_policy lp;
    if (lit) lp = lit_from_policy(pol);
    else rp = ref_from_policy(pol);
    long sum = 0;
    for (int64_t t = 0; t < data.n_rows; t++)
        for (int l = 0; l < L; l++) {
            const float *r = data.logits + ((size_t)t * L + l) * E;
            int ex[E];
            float w[E];
            sum += lit ? lit_route(&lp, l, r, E, 0, NULL, NULL, 0, ex, w)
                       : ref_route(&rp, L, l, r, E, 0, NULL, NULL, 0, ex, w);
        }
    return (double)sum / ((double)data.n_rows * L);
}

static void setup(void) {
    snprintf(trace_path, sizeof trace_path, "/tmp/olmoe-match-%d.h5", (int)getpid());
    unlink(trace_path);
    if (synth_trace_write(trace_path, N, L, E, 8, 0, 0, 256, OLMOE_DTYPE_F32, 7) != 0 ||
        olmoe_match_data_load(&data, trace_path, 0, 0) != 0) {
        fprintf(stderr, "setup: %s\n", olmoe_error());
        exit(2);
    }
}

static void test_load(void) {
    CHECK(data.n_rows == N && data.stride == 1 && data.n_layers == L && data.n_experts == E,
          "%lld rows", (long long)data.n_rows);
    olmoe_match_data sub;
    CHECK(olmoe_match_data_load(&sub, trace_path, 1000, 300) == 0, "%s", olmoe_error());
    /* every ceil(1000 / 300) = 4th of the first 1000 tokens: 250 rows */
    CHECK(sub.n_rows == 250 && sub.stride == 4 && sub.n_trace == 1000, "%lld rows, stride %lld",
          (long long)sub.n_rows, (long long)sub.stride);
    CHECK(sub.n_rows == 250 &&
              memcmp(sub.logits + (size_t)249 * L * E, data.logits + (size_t)996 * L * E,
                     sizeof(float) * L * E) == 0,
          "row 249 is token 996");
    olmoe_match_data_free(&sub);
    CHECK(olmoe_match_data_load(&sub, "/nonexistent.h5", 0, 0) == -1 &&
              strstr(olmoe_error(), "/nonexistent.h5"), "%s", olmoe_error());
    /* threads do not change the count */
    olmoe_policy p;
    CHECK(olmoe_policy_parse("bh(alpha=0.3,pvalue=pseudo,max_k=16)", &p) == 0 &&
              olmoe_policy_bind(&p, &model) == 0, "bind");
    data.n_threads = 1;
    double k1 = olmoe_match_mean_k(&data, &p);
    data.n_threads = 3;
    double k3 = olmoe_match_mean_k(&data, &p);
    data.n_threads = 1;
    CHECK(k1 == k3 && k1 == ref_mean_k(&p), "threads: %.9g %.9g, reference %.9g", k1, k3,
          ref_mean_k(&p));
}

static void test_reaches_targets(void) {
    static const char *const fams[] = {"topp",          "bh(pvalue=pseudo)", "threshold",
                                       "skip",          "entropy",           "hc(pvalue=pseudo)",
                                       "bh(pvalue=pseudo,T=2)"};
    const double targets[] = {1, 1.5, 2.25, 3, 5};
    const double tol = 0.01;
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        olmoe_match_family f;
        CHECK(olmoe_match_family_init(&f, fams[i], NULL, NULL, 8) == 0, "%s: %s", fams[i],
              olmoe_error());
        double last = 0;
        int reached = 0;
        for (size_t j = 0; j < sizeof targets / sizeof targets[0]; j++) {
            olmoe_match_point pt;
            CHECK(olmoe_match_solve(&data, &f, &model, targets[j], tol, &pt) == 0, "%s: %s",
                  fams[i], olmoe_error());
            olmoe_policy p;
            CHECK(olmoe_policy_parse(pt.id, &p) == 0 && olmoe_policy_bind(&p, &model) == 0,
                  "%s does not bind: %s", pt.id, olmoe_error());
            double ref = ref_mean_k(&p);
            CHECK(fabs(ref - pt.achieved) < 1e-12, "%s: achieved %.6f, the reference counts %.6f",
                  pt.id, pt.achieved, ref);
            CHECK(pt.value == olmoe_policy_get(&p, f.knob.param), "the id holds the value");
            CHECK(pt.achieved >= last - 1e-12, "%s: not monotone over targets", fams[i]);
            last = pt.achieved;
            if (pt.reached) {
                reached++;
                CHECK(fabs(pt.achieved - targets[j]) <= tol && !pt.note[0], "%s at %g: %.4f",
                      fams[i], targets[j], pt.achieved);
                /* a value of more than 6 digits only when no rounding to 6 fits */
                char b[40];
                snprintf(b, sizeof b, "%.6g", pt.value);
                double r6 = strtod(b, NULL);
                olmoe_policy q;
                if (!f.knob.per_expert && r6 != pt.value && r6 >= f.knob.lo && r6 <= f.knob.hi &&
                    olmoe_match_policy(&f, r6, &model, &q) == 0)
                    CHECK(fabs(ref_mean_k(&q) - targets[j]) > tol,
                          "%s: %.17g, but %s would do", pt.id, pt.value, b);
            } else {
                CHECK(strstr(pt.note, "plateau") != NULL, "%s at %g: %s", fams[i], targets[j],
                      pt.note);
            }
        }
        /* hc moves in steps of 1/E and may miss some; the others reach all */
        if (strncmp(fams[i], "hc", 2) != 0)
            CHECK(reached == 5, "%s reached %d of 5", fams[i], reached);
        else
            CHECK(reached >= 1, "hc reached none");
    }
}

static void test_out_of_reach(void) {
    olmoe_match_family f;
    olmoe_match_point pt;
    CHECK(olmoe_match_family_init(&f, "bh(max_k=8,pvalue=pseudo)", NULL, NULL, 16) == 0, "%s",
          olmoe_error());
    CHECK(strcmp(f.params, "max_k=8,pvalue=pseudo") == 0, "the spec's max_k wins: %s", f.params);
    CHECK(olmoe_match_solve(&data, &f, &model, 16, 0.01, &pt) == 0, "%s", olmoe_error());
    CHECK(!pt.reached && strstr(pt.note, "cannot reach it: at most") && pt.achieved <= 8,
          "bh with max_k 8 at 16: %s", pt.note);
    CHECK(olmoe_match_family_init(&f, "skip(min_k=2)", NULL, NULL, 8) == 0, "%s", olmoe_error());
    CHECK(olmoe_match_solve(&data, &f, &model, 1.5, 0.01, &pt) == 0, "%s", olmoe_error());
    CHECK(!pt.reached && strstr(pt.note, "cannot go below 2.000") && pt.achieved == 2,
          "min_k 2 at 1.5: %s", pt.note);
    /* skip at beta 0 is top max_k: exactly reachable at the top */
    CHECK(olmoe_match_family_init(&f, "skip", NULL, NULL, 6) == 0, "%s", olmoe_error());
    CHECK(olmoe_match_solve(&data, &f, &model, 6, 0.01, &pt) == 0 && pt.reached &&
              pt.achieved == 6 && pt.value == 0,
          "skip at max_k: %s %g", pt.note, pt.value);
}

static void test_plateau(void) {
    /* hc's mean k at every m: a target in the middle of the widest jump */
    olmoe_match_family f;
    CHECK(olmoe_match_family_init(&f, "hc(pvalue=pseudo)", NULL, NULL, 16) == 0, "%s",
          olmoe_error());
    double prev = 0, gap = 0, mid = 0;
    for (int m = 1; m <= E; m++) {
        olmoe_policy p;
        CHECK(olmoe_match_policy(&f, (double)m / E, &model, &p) == 0, "%s", olmoe_error());
        double k = olmoe_match_mean_k(&data, &p);
        if (m > 1 && k - prev > gap) gap = k - prev, mid = (k + prev) / 2;
        prev = k;
    }
    CHECK(gap > 0.05, "no jump wider than the tolerance (%g)", gap);
    olmoe_match_point pt;
    CHECK(olmoe_match_solve(&data, &f, &model, mid, 0.01, &pt) == 0, "%s", olmoe_error());
    CHECK(!pt.reached && strstr(pt.note, "a plateau: mean k jumps from") &&
              fabs(pt.achieved - mid) <= gap / 2 + 1e-9,
          "hc at %g: %s", mid, pt.note);
}

static void test_family_errors(void) {
    olmoe_match_family f;
    CHECK(olmoe_match_family_init(&f, "topk", NULL, NULL, 8) == -1 &&
              strstr(olmoe_error(), "topk has no continuous parameter"), "%s", olmoe_error());
    CHECK(olmoe_match_family_init(&f, "bh(alpha=0.1)", NULL, NULL, 8) == -1 &&
              strstr(olmoe_error(), "leave alpha out"), "%s", olmoe_error());
    CHECK(olmoe_match_family_init(&f, "nope", NULL, NULL, 8) == -1 &&
              strstr(olmoe_error(), "unknown"), "%s", olmoe_error());
    CHECK(olmoe_match_family_init(&f, "bh(max_k=)", NULL, NULL, 8) == -1, "syntax");
    CHECK(olmoe_match_family_init(&f, "topp(min_k=9)", NULL, NULL, 8) == -1 &&
              strstr(olmoe_error(), "min_k (9) is larger than max_k (8)"), "%s", olmoe_error());
    const char *opt[OLMOE_PARAM_COUNT] = {0};
    int used[OLMOE_PARAM_COUNT] = {0};
    opt[OLMOE_PARAM_MAX_K] = "4,8";
    CHECK(olmoe_match_family_init(&f, "topp", opt, used, 8) == -1 && strstr(olmoe_error(), "one value"),
          "%s", olmoe_error());
    opt[OLMOE_PARAM_MAX_K] = "12";
    opt[OLMOE_PARAM_PVALUE] = "pseudo";
    CHECK(olmoe_match_family_init(&f, "topp(T=2)", opt, used, 8) == 0 &&
              strcmp(f.params, "T=2,max_k=12") == 0 && used[OLMOE_PARAM_MAX_K] &&
              !used[OLMOE_PARAM_PVALUE],
          "options: %s", f.params);
    CHECK(olmoe_match_family_init(&f, "hc", opt, used, 8) == 0 &&
              strcmp(f.params, "max_k=12,pvalue=pseudo") == 0 && used[OLMOE_PARAM_PVALUE],
          "hc takes pvalue: %s", f.params);
    opt[OLMOE_PARAM_BETA] = "0.5";
    CHECK(olmoe_match_family_init(&f, "skip", opt, used, 8) == -1 &&
              strstr(olmoe_error(), "--beta: --match-k calibrates beta"), "%s", olmoe_error());
    char spec[256];
    CHECK(olmoe_match_family_init(&f, "entropy", NULL, NULL, 16) == 0, "%s", olmoe_error());
    olmoe_match_spec(&f, 0.25, spec, sizeof spec);
    CHECK(strcmp(spec, "entropy(scale=0.25,max_k=16)") == 0, "%s", spec);
}

int main(void) {
    setup();
    RUN(test_load);
    RUN(test_reaches_targets);
    RUN(test_out_of_reach);
    RUN(test_plateau);
    RUN(test_family_errors);
    olmoe_match_data_free(&data);
    unlink(trace_path);
    return check_summary();
}
