/* test_analyze.c: every analysis of analyze/analyze.h on hand-made traces
 * (tests/test_analyze_util.h) whose answers are known by construction, and
 * against straightforward reference computations over the whole arrays;
 * plus the error paths and the HDF5 result groups.
 *
 * Also a helper for tests/test_analyze_cli.sh:
 *   test_analyze --make DIR           writes a.h5, b.h5, c.h5 (one token differs
 *                                     from a), d.h5 (a's first 500 tokens) and
 *                                     nogroups.h5 (a without documents) in DIR
 *   test_analyze --synth N L E K V FILE   a synthetic trace of N tokens */
#include "check.h"
#include "analyze.h"
#include "test_analyze_util.h"

#include <unistd.h>

static char dir[256];
static char path_a[300], path_b[300], path_c[300], path_d[300], path_ng[300];

static int make_fixtures(const char *d) {
    fixture f;
    char p[512];
    fixture_a(&f);
    snprintf(p, sizeof p, "%s/a.h5", d);
    if (fixture_write(&f, p) != 0) return -1;
    f.tokens[77] = (f.tokens[77] + 1) % FX_V;
    snprintf(p, sizeof p, "%s/c.h5", d);
    if (fixture_write(&f, p) != 0) return -1;
    f.tokens[77] = (f.tokens[77] + FX_V - 1) % FX_V;
    f.n = 500;
    snprintf(p, sizeof p, "%s/d.h5", d);
    if (fixture_write(&f, p) != 0) return -1;
    f.n = FX_N, f.n_docs = 0, f.n_groups = 0;
    snprintf(p, sizeof p, "%s/nogroups.h5", d);
    if (fixture_write(&f, p) != 0) return -1;
    fixture_free(&f);
    fixture_b(&f);
    snprintf(p, sizeof p, "%s/b.h5", d);
    if (fixture_write(&f, p) != 0) return -1;
    fixture_free(&f);
    return 0;
}

static olmoe_analyze_src *open_src(const char *path, const char *policy, const char *layers,
                                   int groups, int logits) {
    olmoe_analyze_opts o = {.policy = policy, .layers = layers, .chunk_rows = 128,
                            .want_groups = groups, .want_logits = logits};
    olmoe_analyze_src *s = olmoe_analyze_src_open(path, &o);
    CHECK(s != NULL, "open %s: %s", path, s ? "" : olmoe_error());
    return s;
}

/* reference selections of fixture f with top-k: sel[(p * L + l) * k + i] */
static int *ref_select(const fixture *f, int k, int64_t n) {
    int *sel = xmalloc((size_t)n * f->L * k * sizeof *sel);
    for (int64_t p = 0; p < n; p++)
        for (int l = 0; l < f->L; l++)
            ref_topk(f->logits + ((size_t)p * f->L + l) * f->E, f->E, k,
                     sel + ((size_t)p * f->L + l) * k);
    return sel;
}

/* reference pair counts between layers la and lb over the first n tokens */
static void ref_pairs(const int *sel, int k, int64_t n, int la, int lb, int64_t *cnt /* [E*E] */,
                      int64_t *cf /* [E] */) {
    memset(cnt, 0, FX_E * FX_E * sizeof *cnt);
    memset(cf, 0, FX_E * sizeof *cf);
    for (int64_t p = 0; p < n; p++) {
        const int *a = sel + ((size_t)p * FX_L + la) * k, *b = sel + ((size_t)p * FX_L + lb) * k;
        for (int x = 0; x < k; x++) {
            cf[a[x]]++;
            for (int y = 0; y < k; y++) cnt[a[x] * FX_E + b[y]]++;
        }
    }
}

static void test_spearman(void) {
    float a[64], b[64], c[64];
    for (int i = 0; i < 64; i++) a[i] = (float)i * 0.5f, b[i] = -(float)i, c[i] = 3.0f;
    CHECK_CLOSE(olmoe_analyze_spearman(a, a, 64), 1.0, 1e-12, "identical");
    CHECK_CLOSE(olmoe_analyze_spearman(a, b, 64), -1.0, 1e-12, "reversed");
    CHECK(isnan(olmoe_analyze_spearman(a, c, 64)), "constant gives NaN");
    uint32_t s = 99;
    for (int t = 0; t < 2000; t++) {
        int n = 2 + (int)(fx_rand(&s) % 63), m = 1 + (int)(fx_rand(&s) % 12);
        for (int i = 0; i < n; i++)
            a[i] = (float)(fx_rand(&s) % (uint32_t)m), b[i] = (float)(fx_rand(&s) % 9) - 4.0f;
        double got = olmoe_analyze_spearman(a, b, n), want = ref_spearman(a, b, n);
        if (isnan(want))
            CHECK(isnan(got), "case %d: %g, reference NaN", t, got);
        else
            CHECK_CLOSE(got, want, 1e-12, "case %d (n %d)", t, n);
    }
}

static void test_coactivation(void) {
    fixture f;
    fixture_a(&f);
    int *sel = ref_select(&f, FX_K, FX_N);
    olmoe_analyze_src *s = open_src(path_a, NULL, NULL, 0, 0);
    if (!s) return;
    CHECK(s->K == FX_K && s->n_layers == FX_L, "K %d, layers %d", s->K, s->n_layers);
    CHECK(strcmp(s->policy.id, "topk(k=2,norm=model)") == 0, "default policy %s", s->policy.id);
    olmoe_analyze_pairs p;
    CHECK(olmoe_analyze_coactivation(s, 5, 1, &p) == 0, "%s", olmoe_error());
    int64_t cnt[FX_E * FX_E], cf[FX_E];
    for (int l = 0; l < FX_L; l++) {
        ref_pairs(sel, FX_K, FX_N, l, l, cnt, cf);
        CHECK(p.from[l] == l && p.to[l] == l && p.n_tokens[l] == FX_N, "block %d", l);
        double sum_m = 0, sum_mi = 0;
        int ni = 0;
        for (int i = 0; i < FX_E; i++) {
            /* independent reference: i's partners spread over the others by load */
            double m = -1, partners = 0, others = 0, maxload = 0;
            for (int j = 0; j < FX_E; j++) {
                CHECK(p.count[(l * FX_E + i) * FX_E + j] == cnt[i * FX_E + j], "layer %d (%d,%d)",
                      l, i, j);
                if (cf[i])
                    CHECK_CLOSE(p.prob[(l * FX_E + i) * FX_E + j],
                                (double)cnt[i * FX_E + j] / (double)cf[i], 1e-15, "prob");
                if (j == i) continue;
                if (cf[i] && (double)cnt[i * FX_E + j] / cf[i] > m) m = (double)cnt[i * FX_E + j] / cf[i];
                partners += (double)cnt[i * FX_E + j], others += (double)cf[j];
                if ((double)cf[j] > maxload) maxload = (double)cf[j];
            }
            CHECK(p.count_from[l * FX_E + i] == cf[i], "layer %d count %d", l, i);
            /* weighted by n_i */
            if (cf[i]) sum_m += cf[i] * m, sum_mi += partners * maxload / others, ni += (int)cf[i];
        }
        CHECK_CLOSE(p.max_cond_mean[l], sum_m / ni, 1e-12, "layer %d max_cond_mean", l);
        CHECK_CLOSE(p.indep_max_mean[l], sum_mi / ni, 1e-12, "layer %d indep", l);
        CHECK_CLOSE(p.lift[l], sum_m / sum_mi, 1e-12, "layer %d lift", l);
        CHECK_CLOSE(p.mean_selected[l], 2.0, 1e-15, "layer %d experts per token", l);
    }
    /* by construction: experts 0 and 1 of layer 0 always together */
    CHECK(p.count_from[0] == FX_N / 2 && p.count_from[1] == FX_N / 2, "%lld %lld",
          (long long)p.count_from[0], (long long)p.count_from[1]);
    CHECK(p.prob[0 * FX_E + 1] == 1.0 && p.prob[1 * FX_E + 0] == 1.0, "P(1|0) %g P(0|1) %g",
          p.prob[1], p.prob[FX_E]);
    CHECK(p.top_i[0] == 0 && p.top_j[0] == 1 && p.top_prob[0] == 1.0, "top pair (%d,%d) %g",
          p.top_i[0], p.top_j[0], p.top_prob[0]);
    CHECK(p.top_i[1] == 1 && p.top_j[1] == 0, "second pair (%d,%d)", p.top_i[1], p.top_j[1]);
    /* layer 1: every expert has one fixed partner */
    CHECK_CLOSE(p.max_cond_mean[1], 1.0, 1e-15, "layer 1 max_cond_mean");
    olmoe_analyze_pairs_free(&p);
    /* top pairs only of experts selected >= min_count times: at layer 0 just 0 and 1 */
    CHECK(olmoe_analyze_coactivation(s, 5, 300, &p) == 0, "%s", olmoe_error());
    for (int t = 2; t < 5; t++)
        CHECK((p.top_i[t] == 0 || p.top_i[t] == 1) && p.top_prob[t] == 0.0, "top %d: i %d, %g", t,
              p.top_i[t], p.top_prob[t]);
    olmoe_analyze_pairs_free(&p);
    CHECK(olmoe_analyze_coactivation(s, 5, 301, &p) == 0 && p.top_i[0] == -1, "none of 301");
    olmoe_analyze_pairs_free(&p);
    olmoe_analyze_src_close(s);
    free(sel);
    fixture_free(&f);
}

/* another policy, a subset of layers and --max-tokens */
static void test_policy_layers_max_tokens(void) {
    fixture f;
    fixture_a(&f);
    int *sel = ref_select(&f, 1, FX_N);
    olmoe_analyze_opts o = {.policy = "topk(k=1)", .layers = "0,2", .chunk_rows = 97,
                            .max_tokens = 250};
    olmoe_analyze_src *s = olmoe_analyze_src_open(path_a, &o);
    CHECK(s != NULL, "%s", olmoe_error());
    if (!s) return;
    CHECK(s->n_layers == 2 && s->layers[0] == 0 && s->layers[1] == 2 && s->n_tokens == 250,
          "layers %d, tokens %lld", s->n_layers, (long long)s->n_tokens);
    olmoe_analyze_pairs p;
    CHECK(olmoe_analyze_coactivation(s, 3, 1, &p) == 0, "%s", olmoe_error());
    int64_t cnt[FX_E * FX_E], cf[FX_E];
    for (int b = 0; b < 2; b++) {
        int l = s->layers[b];
        ref_pairs(sel, 1, 250, l, l, cnt, cf);
        for (int i = 0; i < FX_E * FX_E; i++)
            CHECK(p.count[b * FX_E * FX_E + i] == cnt[i], "layer %d cell %d", l, i);
        CHECK_CLOSE(p.mean_selected[b], 1.0, 1e-15, "k = 1");
        CHECK(p.n_tokens[b] == 250, "tokens %lld", (long long)p.n_tokens[b]);
        /* one expert a token: never two together */
        CHECK(p.max_cond_mean[b] == 0.0, "max_cond_mean %g", p.max_cond_mean[b]);
    }
    /* even positions: expert 0 at layer 0 (125 of the first 250) */
    CHECK(p.count_from[0] == 125, "count %lld", (long long)p.count_from[0]);
    olmoe_analyze_pairs_free(&p);
    olmoe_analyze_src_close(s);
    free(sel);
    fixture_free(&f);
}

static void test_flow(void) {
    fixture f;
    fixture_a(&f);
    int *sel = ref_select(&f, FX_K, FX_N);
    olmoe_analyze_src *s = open_src(path_a, NULL, NULL, 0, 0);
    if (!s) return;
    int from[3] = {0, 1, 2}, to[3] = {1, 2, 0};
    olmoe_analyze_pairs p;
    CHECK(olmoe_analyze_flow(s, 3, from, to, 4, 1, &p) == 0, "%s", olmoe_error());
    int64_t cnt[FX_E * FX_E], cf[FX_E];
    for (int b = 0; b < 3; b++) {
        ref_pairs(sel, FX_K, FX_N, from[b], to[b], cnt, cf);
        int64_t ct[FX_E] = {0}, maxto = 0;
        for (int64_t q = 0; q < FX_N; q++)
            for (int x = 0; x < FX_K; x++) ct[sel[((size_t)q * FX_L + to[b]) * FX_K + x]]++;
        for (int j = 0; j < FX_E; j++) maxto = ct[j] > maxto ? ct[j] : maxto;
        double sum_m = 0;
        int ni = 0;
        for (int i = 0; i < FX_E; i++) {
            double m = 0;
            for (int j = 0; j < FX_E && cf[i]; j++)
                if ((double)cnt[i * FX_E + j] / cf[i] > m) m = (double)cnt[i * FX_E + j] / cf[i];
            if (cf[i]) sum_m += cf[i] * m, ni += (int)cf[i];
        }
        CHECK_CLOSE(p.max_cond_mean[b], sum_m / ni, 1e-12, "block %d max_cond_mean", b);
        CHECK_CLOSE(p.indep_max_mean[b], (double)maxto / FX_N, 1e-12, "block %d indep", b);
        for (int i = 0; i < FX_E; i++) {
            double row = 0;
            CHECK(p.count_from[b * FX_E + i] == cf[i], "block %d count_from %d", b, i);
            for (int j = 0; j < FX_E; j++) {
                CHECK(p.count[(b * FX_E + i) * FX_E + j] == cnt[i * FX_E + j], "block %d (%d,%d)",
                      b, i, j);
                if (cf[i]) row += p.prob[(b * FX_E + i) * FX_E + j];
            }
            if (cf[i]) CHECK_CLOSE(row, (double)FX_K, 1e-12, "block %d row %d sums to k", b, i);
        }
    }
    /* by construction: expert 0 at layer 0 (even positions) goes to the group's experts */
    int64_t want00 = 0;
    for (int64_t q = 0; q < FX_N; q += 2) want00 += fx_group(q) == 0;
    CHECK(p.count[0 * FX_E + 0] == want00, "0 -> 0: %lld, want %lld", (long long)p.count[0],
          (long long)want00);
    CHECK(olmoe_analyze_flow(s, 1, (int[]){0}, (int[]){3}, 4, 1, &p) != 0, "layer 3 refused");
    CHECK(strstr(olmoe_error(), "layer") != NULL, "message: %s", olmoe_error());
    olmoe_analyze_pairs_free(&p);
    olmoe_analyze_src_close(s);
    free(sel);
    fixture_free(&f);
}

static void test_spec_group(void) {
    fixture f;
    fixture_a(&f);
    int *sel = ref_select(&f, FX_K, FX_N);
    olmoe_analyze_src *s = open_src(path_a, NULL, NULL, 1, 0);
    if (!s) return;
    olmoe_analyze_groupspec g;
    CHECK(olmoe_analyze_spec_group(s, 1, 5, &g) == 0, "%s", olmoe_error());
    CHECK(g.G == 3 && strcmp(g.group_names[2], "science") == 0, "groups %d", g.G);
    CHECK(g.group_tokens[0] == 200 && g.group_tokens[1] == 150 && g.group_tokens[2] == 100,
          "group tokens %lld %lld %lld", (long long)g.group_tokens[0],
          (long long)g.group_tokens[1], (long long)g.group_tokens[2]);
    CHECK(g.no_group_tokens == 150, "no group %lld", (long long)g.no_group_tokens);
    for (int l = 0; l < FX_L; l++) {
        int64_t cnt[FX_E * 3] = {0};
        for (int64_t p = 0; p < FX_N; p++) {
            int gr = fx_group(p);
            if (gr < 0) continue;
            for (int x = 0; x < FX_K; x++) cnt[sel[((size_t)p * FX_L + l) * FX_K + x] * 3 + gr]++;
        }
        /* reference NMI from the counts */
        double N = 0, pg[3] = {0}, pe[FX_E] = {0}, I = 0, H = 0;
        for (int e = 0; e < FX_E; e++)
            for (int gr = 0; gr < 3; gr++) {
                CHECK(g.count[(l * FX_E + e) * 3 + gr] == cnt[e * 3 + gr], "layer %d (%d,%d)", l,
                      e, gr);
                N += (double)cnt[e * 3 + gr], pg[gr] += (double)cnt[e * 3 + gr];
                pe[e] += (double)cnt[e * 3 + gr];
            }
        for (int e = 0; e < FX_E; e++)
            for (int gr = 0; gr < 3; gr++)
                if (cnt[e * 3 + gr]) {
                    double x = (double)cnt[e * 3 + gr] / N;
                    I += x * log(x / (pe[e] / N * pg[gr] / N));
                }
        for (int gr = 0; gr < 3; gr++) H -= pg[gr] / N * log(pg[gr] / N);
        CHECK_CLOSE(g.nmi[l], I / H, 1e-12, "layer %d nmi", l);
    }
    /* layer 1 by construction: group g alone uses experts 2g, 2g+1 */
    CHECK_CLOSE(g.nmi[1], 1.0, 1e-12, "layer 1 nmi");
    size_t c00 = ((size_t)1 * FX_E + 0) * 3 + 0;
    CHECK(g.count[c00] == 200, "layer 1 expert 0 from news: %lld", (long long)g.count[c00]);
    CHECK_CLOSE(g.share[c00], 1.0, 1e-15, "share");
    CHECK_CLOSE(g.lift[c00], 450.0 / 200.0, 1e-12, "lift");
    CHECK_CLOSE(g.routed_frac[((size_t)1 * 3 + 0) * FX_E + 0], 1.0, 1e-15, "routed_frac");
    CHECK(isnan(g.share[((size_t)1 * FX_E + 6) * 3 + 0]), "expert 6 serves no group at layer 1");
    /* lifts 450/200, 450/150, 450/100 for the groups' experts: science's first */
    CHECK(g.top_g[1 * 5 + 0] == 2 && g.top_e[1 * 5 + 0] == 4, "top cell (%d, %d)",
          g.top_e[5], g.top_g[5]);
    CHECK_CLOSE(g.max_lift_mean[1], (400 * 2.25 + 300 * 3.0 + 200 * 4.5) / 900.0, 1e-12,
                "max_lift_mean");
    olmoe_analyze_groupspec_free(&g);
    olmoe_analyze_src_close(s);
    free(sel);
    fixture_free(&f);
}

static void test_spec_token(void) {
    fixture f;
    fixture_a(&f);
    int *sel = ref_select(&f, FX_K, FX_N);
    olmoe_analyze_src *s = open_src(path_a, NULL, NULL, 0, 0);
    if (!s) return;
    olmoe_analyze_tokenspec t;
    const int64_t minc = 12;
    CHECK(olmoe_analyze_spec_token(s, minc, 3, 0, &t) == 0, "%s", olmoe_error());
    int64_t occ[FX_V] = {0};
    for (int64_t p = 0; p < FX_N; p++) occ[f.tokens[p]]++;
    int n = 0;
    for (int v = 0; v < FX_V; v++)
        if (occ[v] >= minc) {
            CHECK(n < t.n_ids && t.ids[n] == v && t.id_count[n] == occ[v], "kept id %d", v);
            n++;
        }
    CHECK(n == t.n_ids && n > 5, "kept %d, reference %d", t.n_ids, n);
    for (int l = 0; l < FX_L && n == t.n_ids; l++) {
        double wsum = 0, osum = 0;
        static double share[FX_V][FX_E];
        for (int k = 0; k < n; k++) {
            int v = t.ids[k];
            int64_t c[FX_E] = {0};
            for (int64_t p = 0; p < FX_N; p++)
                if (f.tokens[p] == v)
                    for (int x = 0; x < FX_K; x++) c[sel[((size_t)p * FX_L + l) * FX_K + x]]++;
            int best = 0;
            for (int e = 1; e < FX_E; e++)
                if (c[e] > c[best]) best = e;
            for (int e = 0; e < FX_E; e++) share[k][e] = (double)c[e] / occ[v];
            CHECK(t.top_expert[l * n + k] == best, "layer %d id %d: expert %d, want %d", l, v,
                  t.top_expert[l * n + k], best);
            CHECK_CLOSE(t.top_share[l * n + k], (double)c[best] / occ[v], 1e-15, "share");
            if (l == 2 && v < 25) {
                /* by construction: always experts v%8 and (v+3)%8, the lower first on the tie */
                int lo = v % 8 < (v + 3) % 8 ? v % 8 : (v + 3) % 8;
                CHECK(t.top_expert[l * n + k] == lo && t.top_share[l * n + k] == 1.0,
                      "id %d: expert %d share %g", v, t.top_expert[l * n + k], t.top_share[l * n + k]);
            }
            wsum += (double)c[best], osum += (double)occ[v];
        }
        CHECK_CLOSE(t.mean_top_share[l], wsum / osum, 1e-12, "layer %d mean", l);
        CHECK_CLOSE(t.uniform_share[l], 2.0 / FX_E, 1e-12, "uniform");
        /* each expert's top ids: the reference ranking's first three */
        for (int e = 0; e < FX_E; e++) {
            int used[FX_V] = {0};
            for (int i = 0; i < 3; i++) {
                int bk = -1;
                for (int k = 0; k < n; k++) {
                    if (used[k] || share[k][e] == 0) continue;
                    if (bk < 0 || share[k][e] > share[bk][e] ||
                        (share[k][e] == share[bk][e] && t.id_count[k] > t.id_count[bk]))
                        bk = k;
                }
                if (bk >= 0) used[bk] = 1;
                int got = t.expert_top_ids[(l * FX_E + e) * 3 + i];
                CHECK(got == bk, "layer %d expert %d rank %d: %d, want %d", l, e, i, got, bk);
            }
        }
    }
    olmoe_analyze_tokenspec_free(&t);
    CHECK(olmoe_analyze_spec_token(s, 100000, 3, 0, &t) != 0, "min count above every id");
    CHECK(strstr(olmoe_error(), "min-count") != NULL, "message: %s", olmoe_error());
    CHECK(olmoe_analyze_spec_token(s, 1, 3, 100, &t) != 0, "memory bound");
    CHECK(strstr(olmoe_error(), "--mem") != NULL, "message: %s", olmoe_error());
    olmoe_analyze_src_close(s);
    free(sel);
    fixture_free(&f);
}

static void test_compare(void) {
    fixture fa, fb;
    fixture_a(&fa);
    fixture_b(&fb);
    olmoe_analyze_src *a = open_src(path_a, NULL, NULL, 0, 1), *b = open_src(path_b, NULL, NULL, 0, 1);
    if (!a || !b) return;
    olmoe_analyze_compare c;
    CHECK(olmoe_analyze_compare_run(a, b, 4, &c) == 0, "%s", olmoe_error());
    CHECK_CLOSE(c.overlap[0], 1.0, 1e-15, "layer 0 identical");
    CHECK_CLOSE(c.overlap[1], 0.5, 1e-15, "layer 1 rotated: half");
    CHECK_CLOSE(c.overlap[2], (FX_N - 1.0) / FX_N, 1e-12, "layer 2: one position disjoint");
    CHECK(c.top1_agree[0] == 1.0 && c.top1_agree[1] == 0.0, "top1 %g %g", c.top1_agree[0],
          c.top1_agree[1]);
    CHECK(c.exact_agree[1] == 0.0, "exact %g", c.exact_agree[1]);
    CHECK_CLOSE(c.spearman[0], 1.0, 1e-12, "layer 0 spearman");
    CHECK_CLOSE(c.spearman[2], (FX_N - 2.0) / FX_N, 1e-12, "layer 2 spearman (one -1)");
    double ref = 0;
    for (int64_t p = 0; p < FX_N; p++)
        ref += ref_spearman(fa.logits + ((size_t)p * FX_L + 1) * FX_E,
                            fb.logits + ((size_t)p * FX_L + 1) * FX_E, FX_E);
    CHECK_CLOSE(c.spearman[1], ref / FX_N, 1e-12, "layer 1 spearman");
    CHECK(c.n_worst == 4 && c.worst_pos[0] == FX_WORST, "worst %lld", (long long)c.worst_pos[0]);
    CHECK_CLOSE(c.worst_overlap[0], 0.5, 1e-12, "worst overlap");
    CHECK(c.worst_layer[0] == 2 && c.worst_token[0] == fa.tokens[FX_WORST], "worst layer %d",
          c.worst_layer[0]);
    CHECK_CLOSE(c.worst_overlap[1], 2.5 / 3, 1e-12, "the others differ at layer 1 only");
    olmoe_analyze_compare_free(&c);
    /* a with itself: all agree */
    olmoe_analyze_src *a2 = open_src(path_a, "topk(k=3)", NULL, 0, 1);
    if (a2) {
        CHECK(olmoe_analyze_compare_run(a, a2, 2, &c) == 0, "%s", olmoe_error());
        CHECK_CLOSE(c.overlap[1], 2.0 / 3, 1e-12, "top-2 in top-3: %g", c.overlap[1]);
        CHECK(c.mean_k_b[1] == 3.0 && c.spearman[1] == 1.0, "k_b %g", c.mean_k_b[1]);
        olmoe_analyze_compare_free(&c);
        olmoe_analyze_src_close(a2);
    }
    olmoe_analyze_src_close(b);
    /* refusals */
    b = open_src(path_c, NULL, NULL, 0, 1);
    CHECK(b && olmoe_analyze_compare_run(a, b, 4, &c) != 0, "different tokens refused");
    CHECK(strstr(olmoe_error(), "different tokens") && strstr(olmoe_error(), "position 77"),
          "message: %s", olmoe_error());
    olmoe_analyze_src_close(b);
    b = open_src(path_d, NULL, NULL, 0, 1);
    CHECK(b && olmoe_analyze_compare_run(a, b, 4, &c) != 0, "different lengths refused");
    CHECK(strstr(olmoe_error(), "has 500") != NULL, "message: %s", olmoe_error());
    olmoe_analyze_src_close(b);
    olmoe_analyze_src_close(a);
    fixture_free(&fa);
    fixture_free(&fb);
}

static void test_errors(void) {
    olmoe_analyze_opts o = {.want_groups = 1};
    CHECK(olmoe_analyze_src_open(path_ng, &o) == NULL, "no groups refused");
    CHECK(strstr(olmoe_error(), "no document groups") != NULL, "message: %s", olmoe_error());
    olmoe_analyze_opts o2 = {.layers = "1,3"};
    CHECK(olmoe_analyze_src_open(path_a, &o2) == NULL, "layer 3 of 3 refused");
    CHECK(strstr(olmoe_error(), "layers '1,3'") != NULL, "message: %s", olmoe_error());
    olmoe_analyze_opts o3 = {.layers = "2-1"};
    CHECK(olmoe_analyze_src_open(path_a, &o3) == NULL, "backwards range refused");
    olmoe_analyze_opts o4 = {.policy = "bh(alpha=0.1)"};
    CHECK(olmoe_analyze_src_open(path_a, &o4) == NULL, "kde policy without a null refused");
    CHECK(strstr(olmoe_error(), "--kde") != NULL, "message: %s", olmoe_error());
    olmoe_analyze_opts o5 = {.policy = "topk(k=9)"};
    CHECK(olmoe_analyze_src_open(path_a, &o5) == NULL, "k > E refused");
    olmoe_analyze_opts o6 = {.policy = "nonsense"};
    CHECK(olmoe_analyze_src_open(path_a, &o6) == NULL, "bad policy refused");
    CHECK(olmoe_analyze_src_open("/nonexistent/x.h5", &o6) == NULL, "missing file refused");
    /* pvalue=empirical builds its sample from the trace itself */
    olmoe_analyze_opts o7 = {.policy = "bh(alpha=0.5,max_k=4,pvalue=empirical)", .chunk_rows = 50};
    olmoe_analyze_src *s = olmoe_analyze_src_open(path_a, &o7);
    CHECK(s != NULL, "empirical: %s", s ? "" : olmoe_error());
    if (s) {
        olmoe_analyze_pairs p;
        CHECK(olmoe_analyze_coactivation(s, 2, 1, &p) == 0, "%s", olmoe_error());
        CHECK(p.mean_selected[0] >= 1 && p.mean_selected[0] <= 4, "mean %g", p.mean_selected[0]);
        olmoe_analyze_pairs_free(&p);
        olmoe_analyze_src_close(s);
    }
}

/* a result as files written before typable names hold it: the group named
 * by the spec itself, no "name" attribute. It is still found, refused
 * without force, and replaced by a group under the typable name. */
static void old_style_result(hid_t f, const olmoe_analyze_pairs *co) {
    const char *spec = "topk(k=2,norm=model)", *old = "analyze/flow/topk(k=2,norm=model)";
    hid_t g = H5I_INVALID_HID;
    CHECK(olmoe_h5_make_groups(f, old) == 0 && olmoe_h5_set_attr_str(f, old, "policy", spec) == 0,
          "%s", olmoe_error());
    char *found = NULL;
    CHECK(olmoe_analyze_h5_find(f, "flow", spec, &found) == 1 && found && strcmp(found, old) == 0,
          "old group found at %s", found ? found : "-");
    free(found);
    olmoe_result_group *rg = NULL;
    int n = 0;
    CHECK(olmoe_result_groups(f, "analyze/flow", &rg, &n) == 0 && n == 1 &&
              strcmp(rg[0].spec, spec) == 0, "listed by its name: %d", n);
    olmoe_result_groups_free(rg, n);
    CHECK(olmoe_analyze_h5_begin(f, "flow", spec, 0, &g) != 0, "old one refused without force");
    CHECK(olmoe_analyze_h5_begin(f, "flow", spec, 1, &g) == 0, "%s", olmoe_error());
    CHECK(olmoe_analyze_pairs_h5(co, g) == 0, "%s", olmoe_error());
    CHECK(olmoe_analyze_h5_commit(f, "flow", spec, 1, g) == 0, "%s", olmoe_error());
    CHECK(olmoe_h5_exists(f, old) == 0, "old group replaced");
    CHECK(olmoe_h5_exists(f, "analyze/flow/topk_k_2_norm_model/prob") == 1, "new one typable");
}

/* results in an HDF5 file: the group appears under its final name, holds
 * what was computed, and an existing one is replaced only with force */
static void test_h5_results(void) {
    char p[400];
    snprintf(p, sizeof p, "%s/res.h5", dir);
    olmoe_analyze_src *s = open_src(path_a, NULL, "0,1", 0, 0);
    if (!s) return;
    olmoe_analyze_pairs co;
    CHECK(olmoe_analyze_coactivation(s, 3, 1, &co) == 0, "%s", olmoe_error());
    hid_t f = olmoe_h5_create(p), g;
    CHECK(f >= 0, "%s", olmoe_error());
    CHECK(olmoe_analyze_h5_begin(f, "coactivation", s->policy.id, 0, &g) == 0, "%s", olmoe_error());
    CHECK(olmoe_analyze_pairs_h5(&co, g) == 0, "%s", olmoe_error());
    /* the group's name is the policy spec "topk(k=2,norm=model)" made
     * typable; the spec is its "name" attribute, the key it is found by */
    const char *fin = "analyze/coactivation/topk_k_2_norm_model";
    CHECK(olmoe_h5_exists(f, fin) == 0, "not under the final name before commit");
    CHECK(olmoe_analyze_h5_commit(f, "coactivation", s->policy.id, 0, g) == 0, "%s", olmoe_error());
    CHECK(olmoe_h5_exists(f, fin) == 1, "committed under the typable name");
    CHECK(olmoe_h5_exists(f, "analyze/coactivation/topk(k=2,norm=model)") == 0, "not the spec");
    char *key = NULL, *found = NULL;
    CHECK(olmoe_h5_get_attr_str(f, fin, "name", &key) == 0 && key &&
              strcmp(key, "topk(k=2,norm=model)") == 0, "name attribute %s", key ? key : "-");
    CHECK(olmoe_analyze_h5_find(f, "coactivation", "topk(k=2,norm=model)", &found) == 1 &&
              found && strcmp(found, fin) == 0, "found by its name at %s", found ? found : "-");
    free(key);
    free(found);
    char ds[400];
    snprintf(ds, sizeof ds, "%s/prob", fin);
    int rank;
    int64_t dims[OLMOE_H5_MAX_RANK];
    double *prob = NULL;
    CHECK(olmoe_h5_read_alloc(f, ds, OLMOE_H5_F64, (void **)&prob, &rank, dims) == 0, "%s",
          olmoe_error());
    CHECK(rank == 3 && dims[0] == 2 && dims[1] == FX_E && dims[2] == FX_E, "shape");
    if (prob) CHECK(prob[1] == 1.0 && prob[FX_E] == 1.0, "P(1|0) stored %g", prob[1]);
    free(prob);
    CHECK(olmoe_analyze_h5_begin(f, "coactivation", s->policy.id, 0, &g) != 0, "exists: refused");
    CHECK(strstr(olmoe_error(), "--force") != NULL, "message: %s", olmoe_error());
    CHECK(olmoe_analyze_h5_begin(f, "coactivation", s->policy.id, 1, &g) == 0, "force: %s",
          olmoe_error());
    CHECK(olmoe_analyze_pairs_h5(&co, g) == 0, "%s", olmoe_error());
    CHECK(olmoe_analyze_h5_commit(f, "coactivation", s->policy.id, 1, g) == 0, "%s", olmoe_error());
    CHECK(olmoe_analyze_h5_begin(f, "coactivation", "a/b", 0, &g) != 0, "'/' in a name refused");
    old_style_result(f, &co);
    CHECK(olmoe_h5_close(f) == 0, "close");
    /* JSON survives a round trip through text */
    json_t *j = olmoe_analyze_pairs_json(&co);
    char *txt = json_dumps(j, JSON_COMPACT);
    json_error_t err;
    json_t *back = txt ? json_loads(txt, 0, &err) : NULL;
    CHECK(back != NULL, "json: %s", back ? "" : err.text);
    json_t *l0 = json_array_get(json_object_get(back, "layers"), 0);
    CHECK(json_real_value(json_array_get(json_array_get(json_object_get(l0, "prob"), 0), 1)) == 1.0,
          "json prob");
    json_decref(back);
    json_decref(j);
    free(txt);
    olmoe_analyze_pairs_free(&co);
    olmoe_analyze_src_close(s);
}

int main(int argc, char **argv) {
    olmoe_set_prog("test_analyze");
    if (argc == 3 && strcmp(argv[1], "--make") == 0) {
        if (make_fixtures(argv[2]) != 0) die("%s", olmoe_error());
        return 0;
    }
    if (argc == 8 && strcmp(argv[1], "--synth") == 0) {
        long v[5];
        for (int i = 0; i < 5; i++)
            if (olmoe_parse_long(argv[2 + i], 1, 1L << 40, &v[i]) != 0) die("%s", olmoe_error());
        if (synth_big_write(argv[7], v[0], (int)v[1], (int)v[2], (int)v[3], (int)v[4]) != 0)
            die("%s", olmoe_error());
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/test_analyze.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) die("mkdtemp %s failed", dir);
    if (make_fixtures(dir) != 0) die("%s", olmoe_error());
    snprintf(path_a, sizeof path_a, "%s/a.h5", dir);
    snprintf(path_b, sizeof path_b, "%s/b.h5", dir);
    snprintf(path_c, sizeof path_c, "%s/c.h5", dir);
    snprintf(path_d, sizeof path_d, "%s/d.h5", dir);
    snprintf(path_ng, sizeof path_ng, "%s/nogroups.h5", dir);
    RUN(test_spearman);
    RUN(test_coactivation);
    RUN(test_policy_layers_max_tokens);
    RUN(test_flow);
    RUN(test_spec_group);
    RUN(test_spec_token);
    RUN(test_compare);
    RUN(test_errors);
    RUN(test_h5_results);
    const char *names[] = {"a.h5", "b.h5", "c.h5", "d.h5", "nogroups.h5", "res.h5"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    return check_summary();
}
