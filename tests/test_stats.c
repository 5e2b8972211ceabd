/* test_stats.c: routing statistics on synthetic traces, against counts made
 * here with the straightforward reference policies (test_policy_ref.h):
 *   - top-k with norm=model reproduces the baseline selection (computed here,
 *     sort-based, from the logits read back) and its weights, with
 *     norm_topk_prob 0 and 1, on float32 and bfloat16 (tied) logits;
 *   - per-layer and per-group histograms, loads, overlaps and summaries;
 *   - the JSON and HDF5 outputs carry the same numbers.
 * With "--write-trace PATH N L E GROUPS DTYPE" it only writes a trace (for
 * tests/test_stats.sh). */
#include "check.h"
#include "common.h"
#include "stats.h"
#include "test_policy_ref.h"
#include "test_stats_synth.h"

#include <jansson.h>
#include <unistd.h>

static char dir[64];

static char *path_in(const char *name) {
    static char buf[8][128];
    static int i;
    char *b = buf[i++ % 8];
    snprintf(b, 128, "%s/%s", dir, name);
    return b;
}

/* all logits of a trace, [N, L, E] */
static float *read_all(olmoe_trace *t) {
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    size_t n = (size_t)in->n_tokens * in->meta.n_layers * in->meta.n_experts;
    float *lg = malloc(n * sizeof *lg);
    if (olmoe_trace_read_router_logits(t, 0, in->n_tokens, lg) != 0) {
        fprintf(stderr, "%s\n", olmoe_error());
        exit(2);
    }
    return lg;
}

static void baseline_case(olmoe_trace_dtype dtype, int norm) {
    const int L = 3, E = 64, N = 1500;
    char *p = path_in(dtype == OLMOE_DTYPE_BF16 ? "bf16.h5" : "f32.h5");
    unlink(p);
    CHECK(synth_trace_write(p, N, L, E, 8, norm, 0, 512, dtype, 11 + norm) == 0, "%s", olmoe_error());
    olmoe_trace *t = olmoe_trace_open(p);
    CHECK(t != NULL, "%s", olmoe_error());
    if (!t) return;
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    float *lg = read_all(t);
    olmoe_policy pol;
    olmoe_policy_parse("topk(k=8,norm=model)", &pol);
    olmoe_policy_model m = {L, E, in->meta.norm_topk_prob, NULL, NULL, NULL, 0};
    CHECK(olmoe_policy_bind(&pol, &m) == 0, "%s", olmoe_error());
    CHECK(strcmp(pol.id, in->meta.policy) == 0, "the baseline's id is the trace's policy attribute");
    long bad_set = 0, bad_w = 0, ties = 0;
    for (int i = 0; i < N * L; i++) {
        const float *r = lg + (size_t)i * E;
        /* the baseline, sort-based: fp32 softmax, 8 most probable, lower index on ties */
        float prob[64], w[8], want_w[8];
        int idx[64], ex[8];
        ref_softmax(r, E, 1.0f, prob);
        ref_order(prob, E, 1, idx);
        for (int j = 0; j < E - 1; j++) ties += prob[idx[j]] == prob[idx[j + 1]];
        float s = 0;
        for (int j = 0; j < 8; j++) s += prob[idx[j]];
        for (int j = 0; j < 8; j++) want_w[j] = norm ? prob[idx[j]] / s : prob[idx[j]];
        int n = olmoe_policy_route(&pol, i % L, r, E, ex, w);
        int same = n == 8;
        for (int j = 0; same && j < 8; j++) same = ex[j] == idx[j];
        bad_set += !same;
        for (int j = 0; same && j < 8; j++) bad_w += w[j] != want_w[j];
        int ex2[8];
        olmoe_policy_route(&pol, i % L, r, E, ex2, NULL);
        bad_set += memcmp(ex, ex2, sizeof ex) != 0;
    }
    CHECK(bad_set == 0, "%ld token-layers select other experts than the baseline", bad_set);
    CHECK(bad_w == 0, "%ld weights differ from the model's softmax (norm_topk_prob %d)", bad_w, norm);
    if (dtype == OLMOE_DTYPE_BF16) CHECK(ties > 1000, "bfloat16 logits give ties (%ld)", ties);

    /* and through the stats pass: all 8 baseline experts kept everywhere */
    olmoe_policy_set set = {0};
    olmoe_policy_set_add_spec(&set, "topk(k=8)", NULL);
    CHECK(olmoe_policy_set_bind(&set, &m) == 0, "%s", olmoe_error());
    olmoe_stats st;
    CHECK(olmoe_stats_init(&st, t, &set) == 0 && olmoe_stats_run(&st, t, 0) == 0, "%s", olmoe_error());
    olmoe_stats_summary sm;
    olmoe_stats_summarize(&st, 0, OLMOE_STATS_ALL, -1, &sm);
    CHECK(sm.n == (int64_t)N * L && sm.mean_k == 8 && sm.sd_k == 0 && sm.coverage == 1 &&
              sm.precision == 1 && sm.flops_vs_baseline == 1,
          "top-8 stats: n %lld mean %g coverage %g precision %g", (long long)sm.n, sm.mean_k,
          sm.coverage, sm.precision);
    olmoe_stats_free(&st);
    olmoe_policy_set_free(&set);
    olmoe_trace_close(t);
    free(lg);
    unlink(p);
}

static void test_baseline_f32(void) {
    baseline_case(OLMOE_DTYPE_F32, 0);
    baseline_case(OLMOE_DTYPE_F32, 1);
}
static void test_baseline_bf16(void) {
    baseline_case(OLMOE_DTYPE_BF16, 0);
    baseline_case(OLMOE_DTYPE_BF16, 1);
}

/* ---- the counts ---- */

typedef struct {
    int64_t *hist; /* [S, L, E+1] */
    int64_t *load; /* [S, L, E] */
    int64_t *ov;   /* [S, L] */
    double *prec;  /* [S, L] */
} ref_counts;

static void test_counts_and_outputs(void) {
    const int L = 4, E = 32, N = 5000, G = 3, S = G + 1;
    char *p = path_in("groups.h5");
    unlink(p);
    CHECK(synth_trace_write(p, N, L, E, 6, 0, G, 1000, OLMOE_DTYPE_BF16, 5) == 0, "%s", olmoe_error());
    olmoe_trace *t = olmoe_trace_open(p);
    if (!t) {
        CHECK(0, "%s", olmoe_error());
        return;
    }
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    float *lg = read_all(t);
    /* each token's group, from the documents as written */
    int *grp = malloc(N * sizeof *grp);
    for (int i = 0; i < N; i++) grp[i] = -1;
    olmoe_trace_document *docs = malloc(in->n_documents * sizeof *docs);
    olmoe_trace_read_documents(t, 0, in->n_documents, docs);
    for (int64_t d = 0; d < in->n_documents; d++)
        for (int64_t i = docs[d].start; i < docs[d].start + docs[d].length; i++) grp[i] = docs[d].group;
    free(docs);

    static const char *const specs[] = {"topk(k=6)", "topk(k=3,T=2)", "topp(p=0.6,max_k=16,min_k=2)",
                                        "bh(alpha=0.2,max_k=8,pvalue=pseudo)",
                                        "bh(alpha=0.3,max_k=32,pvalue=empirical)"};
    const int P = 5;
    olmoe_policy_set set = {0};
    for (int i = 0; i < P; i++) CHECK(olmoe_policy_set_add_spec(&set, specs[i], NULL) == 0, "%s", olmoe_error());
    olmoe_policy_empirical emp;
    olmoe_policy_empirical_init(&emp, L, E, N, 0);
    olmoe_policy_empirical_add(&emp, 0, lg, N);
    CHECK(olmoe_policy_empirical_finish(&emp) == 0, "%s", olmoe_error());
    olmoe_policy_model m = {L, E, 0, NULL, &emp, NULL, 0};
    CHECK(olmoe_policy_set_bind(&set, &m) == 0, "%s", olmoe_error());
    olmoe_stats st;
    CHECK(olmoe_stats_init(&st, t, &set) == 0, "%s", olmoe_error());
    CHECK(st.n_scopes == S && strcmp(st.group_names[2], "genre-2") == 0, "groups");
    CHECK(olmoe_stats_run(&st, t, 0) == 0, "%s", olmoe_error());

    /* the reference: every policy, every token-layer, counted here */
    float *ref_emp = malloc(sizeof(float) * L * E * N); /* [L, E, N] */
    for (int i = 0; i < N; i++)
        for (int l = 0; l < L; l++)
            for (int e = 0; e < E; e++) ref_emp[((size_t)l * E + e) * N + i] = lg[((size_t)i * L + l) * E + e];
    long mismatch = 0;
    for (int pi = 0; pi < P; pi++) {
        ref_policy rp = ref_from_policy(&set.items[pi]);
        ref_policy base = {0, 6, 6, 6, 0, 0, 0, 0, 1, 0};
        ref_counts rc = {calloc((size_t)S * L * (E + 1), 8), calloc((size_t)S * L * E, 8),
                         calloc((size_t)S * L, 8), calloc((size_t)S * L, 8)};
        for (int i = 0; i < N; i++)
            for (int l = 0; l < L; l++) {
                const float *r = lg + ((size_t)i * L + l) * E;
                int ex[64], bx[64];
                float w[64];
                int k = ref_route(&rp, L, l, r, E, 0, NULL, ref_emp + (size_t)l * E * N, N, ex, w);
                int kb = ref_route(&base, L, l, r, E, 0, NULL, NULL, 0, bx, w);
                int ov = 0;
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < kb; b++) ov += ex[a] == bx[b];
                for (int sc = 0; sc < S; sc++) {
                    if (sc > 0 && grp[i] != sc - 1) continue;
                    size_t sl = (size_t)sc * L + l;
                    rc.hist[sl * (E + 1) + k]++;
                    for (int a = 0; a < k; a++) rc.load[sl * E + ex[a]]++;
                    rc.ov[sl] += ov;
                    rc.prec[sl] += (double)ov / k;
                }
            }
        const olmoe_stats_policy *sp = &st.pol[pi];
        mismatch += memcmp(rc.hist, sp->k_hist, (size_t)S * L * (E + 1) * 8) != 0;
        mismatch += memcmp(rc.load, sp->load, (size_t)S * L * E * 8) != 0;
        mismatch += memcmp(rc.ov, sp->overlap, (size_t)S * L * 8) != 0;
        for (int sl = 0; sl < S * L; sl++) mismatch += fabs(rc.prec[sl] - sp->precision[sl]) > 1e-9;
        CHECK(mismatch == 0, "%s: counts differ from the reference", specs[pi]);

        /* summaries from the reference counts, pooled over layers */
        for (int sc = 0; sc < S; sc++) {
            double n = 0, sk = 0, skk = 0, ov = 0, prec = 0, cv = 0, at_min = 0, at_max = 0;
            int mn = sp->min_k, mx = sp->max_k;
            for (int l = 0; l < L; l++) {
                size_t sl = (size_t)sc * L + l;
                for (int k = 1; k <= E; k++) {
                    double h = (double)rc.hist[sl * (E + 1) + k];
                    n += h, sk += k * h, skk += (double)k * k * h;
                }
                at_min += rc.hist[sl * (E + 1) + mn];
                at_max += rc.hist[sl * (E + 1) + mx];
                ov += rc.ov[sl];
                prec += rc.prec[sl];
                double mean = 0, ss = 0;
                for (int e = 0; e < E; e++) mean += rc.load[sl * E + e] / (double)E;
                for (int e = 0; e < E; e++) ss += pow(rc.load[sl * E + e] - mean, 2);
                cv += sqrt(ss / E) / mean / L;
            }
            olmoe_stats_summary s;
            olmoe_stats_summarize(&st, pi, sc, -1, &s);
            double mean = sk / n;
            CHECK(s.n == (int64_t)n, "n");
            CHECK_CLOSE(s.mean_k, mean, 1e-12, "%s scope %d mean_k", specs[pi], sc);
            CHECK_CLOSE(s.sd_k, sqrt(fmax(0, skk / n - mean * mean)), 1e-9, "sd_k");
            CHECK_CLOSE(s.share_min_k, at_min / n, 1e-12, "share at min_k");
            CHECK_CLOSE(s.share_max_k, at_max / n, 1e-12, "share at max_k");
            CHECK_CLOSE(s.coverage, ov / (n * 6), 1e-12, "coverage");
            CHECK_CLOSE(s.precision, prec / n, 1e-12, "precision");
            CHECK_CLOSE(s.flops_vs_baseline, mean / 6, 1e-12, "flops");
            CHECK_CLOSE(s.load_cv, cv, 1e-9, "load cv");
        }
        free(rc.hist), free(rc.load), free(rc.ov), free(rc.prec);
    }
    /* the groups partition the tokens */
    for (int pi = 0; pi < P; pi++) {
        olmoe_stats_summary all, g;
        olmoe_stats_summarize(&st, pi, 0, -1, &all);
        int64_t sum = 0;
        for (int sc = 1; sc < S; sc++) {
            olmoe_stats_summarize(&st, pi, sc, -1, &g);
            sum += g.n;
        }
        CHECK(sum == all.n, "groups cover every token");
    }

    /* JSON: the same numbers */
    char *jp = path_in("stats.json");
    CHECK(olmoe_stats_write_json(&st, jp, p, NULL) == 0, "%s", olmoe_error());
    json_error_t jerr;
    json_t *root = json_load_file(jp, 0, &jerr);
    CHECK(root != NULL, "json: %s", jerr.text);
    if (root) {
        json_t *pols = json_object_get(root, "policies");
        CHECK(json_array_size(pols) == (size_t)P, "policies in the JSON");
        json_t *p3 = json_array_get(pols, 3);
        olmoe_stats_summary s;
        olmoe_stats_summarize(&st, 3, 0, -1, &s);
        json_t *ov = json_object_get(p3, "overall");
        CHECK(strcmp(json_string_value(json_object_get(p3, "id")), set.items[3].id) == 0, "id");
        CHECK_CLOSE(json_real_value(json_object_get(ov, "mean_k")), s.mean_k, 1e-9, "json mean_k");
        CHECK(json_integer_value(json_object_get(ov, "token_layers")) == s.n, "json n");
        json_t *hist = json_object_get(ov, "hist");
        int64_t h2 = 0;
        for (int l = 0; l < L; l++) h2 += st.pol[3].k_hist[(size_t)l * (E + 1) + 2];
        CHECK(json_integer_value(json_array_get(hist, 2)) == h2, "json hist[2]");
        CHECK(json_array_size(json_object_get(p3, "groups")) == (size_t)G, "json groups");
        CHECK_CLOSE(json_real_value(json_object_get(json_object_get(p3, "params"), "alpha")), 0.2, 0, "params");
        json_decref(root);
    }
    /* HDF5 */
    char *hp = path_in("stats.h5");
    hid_t f = olmoe_h5_create(hp);
    CHECK(f >= 0 && olmoe_stats_write_h5(&st, f, p, 0) == 0, "%s", olmoe_error());
    CHECK(olmoe_stats_write_h5(&st, f, p, 0) == -1 && strstr(olmoe_error(), "already exists"), "%s", olmoe_error());
    CHECK(olmoe_stats_write_h5(&st, f, p, 1) == 0, "replace: %s", olmoe_error());
    /* replaced in place: under the typable name, found by the spec, no "_2" beside it */
    char ds[300], *where = NULL, *name = olmoe_result_name(set.items[2].id);
    snprintf(ds, sizeof ds, "stats/%s", name);
    CHECK(olmoe_result_find(f, "stats", set.items[2].id, &where) == 1 && where && strcmp(where, ds) == 0,
          "/stats group of %s: %s", set.items[2].id, where ? where : "none");
    snprintf(ds, sizeof ds, "stats/%s_2", name);
    CHECK(olmoe_h5_exists(f, ds) == 0, "--force made /%s", ds);
    free(where);
    snprintf(ds, sizeof ds, "stats/%s/group_load", name);
    free(name);
    int64_t dims[8];
    int rank;
    CHECK(olmoe_h5_shape(f, ds, &rank, dims) == 0 && rank == 3 && dims[0] == G && dims[1] == L && dims[2] == E,
          "group_load shape");
    int64_t *gl = malloc(sizeof(int64_t) * G * L * E);
    CHECK(olmoe_h5_read(f, ds, OLMOE_H5_I64, gl, (size_t)G * L * E) == 0 &&
              memcmp(gl, st.pol[2].load + (size_t)L * E, sizeof(int64_t) * G * L * E) == 0,
          "group_load content");
    free(gl);
    where = NULL;
    CHECK(olmoe_result_find(f, "stats", set.items[4].id, &where) == 1, "/stats group of %s", set.items[4].id);
    snprintf(ds, sizeof ds, "%s", where ? where : "none");
    free(where);
    double mk;
    olmoe_stats_summary s4;
    olmoe_stats_summarize(&st, 4, 0, -1, &s4);
    CHECK(olmoe_h5_get_attr_f64(f, ds, "mean_k", &mk) == 0 && mk == s4.mean_k, "mean_k attribute");
    olmoe_h5_close(f);

    olmoe_stats_free(&st);
    olmoe_policy_set_free(&set);
    olmoe_policy_empirical_free(&emp);
    olmoe_trace_close(t);
    free(lg);
    free(grp);
    free(ref_emp);
    unlink(jp);
    unlink(hp);
    unlink(p);
}

static void test_empirical_subsample(void) {
    /* 10 tokens, at most 4 kept: stride 3, tokens 0, 3, 6, 9 */
    olmoe_policy_empirical emp;
    CHECK(olmoe_policy_empirical_init(&emp, 1, 2, 10, 4) == 0, "init");
    CHECK(emp.stride == 3 && emp.n == 4, "stride %lld n %lld", (long long)emp.stride, (long long)emp.n);
    float lg[20];
    for (int i = 0; i < 10; i++) lg[2 * i] = (float)i, lg[2 * i + 1] = (float)-i;
    olmoe_policy_empirical_add(&emp, 0, lg, 4);
    CHECK(olmoe_policy_empirical_finish(&emp) == -1 && strstr(olmoe_error(), "2 of 4"), "%s", olmoe_error());
    olmoe_policy_empirical_add(&emp, 4, lg + 8, 6);
    CHECK(olmoe_policy_empirical_finish(&emp) == 0, "%s", olmoe_error());
    CHECK(olmoe_policy_empirical_pvalue(&emp, 0, 0, 3.0f) == 0.5f, "2 of {0,3,6,9} above 3");
    CHECK(olmoe_policy_empirical_pvalue(&emp, 0, 0, -1.0f) == 1.0f, "all above");
    CHECK(olmoe_policy_empirical_pvalue(&emp, 0, 1, -6.5f) == 0.75f, "expert 1: {0,-3,-6,-9}");
    olmoe_policy_empirical_free(&emp);
}

int main(int argc, char **argv) {
    olmoe_set_prog("test_stats");
    if (argc == 8 && strcmp(argv[1], "--write-trace") == 0) {
        olmoe_trace_dtype dt;
        if (olmoe_trace_dtype_parse(argv[7], &dt) != 0 ||
            synth_trace_write(argv[2], atol(argv[3]), atoi(argv[4]), atoi(argv[5]),
                              atoi(argv[5]) < 8 ? atoi(argv[5]) : 8, 0, atoi(argv[6]), 512, dt, 3) != 0)
            die("%s", olmoe_error());
        return 0;
    }
    snprintf(dir, sizeof dir, "%s/olmoe-stats-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) die("mkdtemp failed");
    olmoe_set_quiet(1);
    RUN(test_baseline_f32);
    RUN(test_baseline_bf16);
    RUN(test_counts_and_outputs);
    RUN(test_empirical_subsample);
    rmdir(dir);
    return check_summary();
}
