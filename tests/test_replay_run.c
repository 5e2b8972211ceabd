/* test_replay_run.c: olmoe-replay's driver on a trace written here from the
 * engine's own outputs (tiny-f32 fixture, bf16 residuals, two document
 * groups): results layout as man/olmoe-replay.1 says, read back with the traces
 * helpers and recomputed independently from the per-token arrays; exact
 * results equal the engine under the same policy; chunking does not change
 * results; --max-tokens takes whole windows; the checksum and missing
 * residuals refusals; the validation statistics on hand-computed cases.
 *
 * Helper mode for tests/test_replay_cli.sh:
 *   test_replay_run --compare A.h5 PATH_A B.h5 PATH_B TOL
 * compares two float datasets (NaN where the other has NaN, |a - b| <= TOL
 * max(1, |b|) elsewhere), prints the max difference, exits 1 if they differ.
 */
#include "test_replay_util.h"

#include <ctype.h>
#include <hdf5.h>
#include <unistd.h>

static char dir[] = "/tmp/olmoe-test-replay.XXXXXX";
static const int wlen[] = {40, 40, 40, 25, 13};
#define NW 5

static char *fixture_dir(const char *name) { return olmoe_path_join(check_fixture_dir(), name); }

/* a trace of the model over 5 windows (one document each, groups news,
 * fiction, news, fiction, none), like olmoe-capture --save-residuals writes */
static int make_trace(const char *model_name, const char *path, int residuals, int32_t **tok_out) {
    char *md = fixture_dir(model_name);
    olmoe_model m;
    if (olmoe_model_open(md, &m) != 0) return -1;
    const olmoe_config *c = &m.cfg;
    int T = 0;
    for (int i = 0; i < NW; i++) T += wlen[i];
    int32_t *tok = tr_tokens(T, c->vocab_size, 77);
    int L = c->num_hidden_layers, E = c->num_experts, D = c->hidden_size;
    float *nll = xmalloc((size_t)T * 4), *lg = xmalloc((size_t)T * L * E * 4), *at = xmalloc((size_t)T * L * D * 4);
    int32_t *am = xmalloc((size_t)T * 4);
    olmoe_engine_opts eo = {.device = "cpu", .max_tokens = T, .max_ctx = 40};
    olmoe_engine *e;
    if (olmoe_engine_open(&m, &eo, &e) != 0) return -1;
    olmoe_window_io io[NW];
    olmoe_trace_window tw[NW];
    olmoe_trace_document docs[NW];
    for (int i = 0, o = 0; i < NW; o += wlen[i], i++) {
        io[i] = (olmoe_window_io){.n = wlen[i], .tokens = tok + o, .router_logits = lg + (size_t)o * L * E,
                                  .nll = nll + o, .argmax = am + o, .attn_residual = at + (size_t)o * L * D};
        tw[i] = (olmoe_trace_window){o, wlen[i], 0, 0};
        docs[i] = (olmoe_trace_document){o, wlen[i], i == NW - 1 ? -1 : i % 2};
    }
    if (olmoe_engine_forward(e, io, NW) != 0) return -1;
    olmoe_engine_close(e);
    olmoe_hash h;
    if (olmoe_model_checksum(&m, &h) != 0) return -1;
    char pol[64];
    olmoe_trace_meta meta = tr_meta(c, "test_replay_run", md, h.hex, pol, residuals);
    olmoe_trace *t = olmoe_trace_create(path, &meta);
    const char *groups[2] = {"news", "fiction"};
    olmoe_trace_rows rows = {tok, lg, nll, am, residuals ? at : NULL, NULL};
    int rc = !t || olmoe_trace_add_groups(t, groups, 2) || olmoe_trace_add_documents(t, docs, NW) ||
             olmoe_trace_append_windows(t, NW, tw, &rows) || olmoe_trace_close(t);
    free(nll), free(lg), free(at), free(am), free(md);
    olmoe_model_close(&m);
    if (tok_out) *tok_out = tok;
    else free(tok);
    return rc ? -1 : 0;
}

static char *tmp(const char *name) { return olmoe_path_join(dir, name); }

typedef struct {
    olmoe_model m;
    olmoe_policy pol[3];
    olmoe_policy *pp[3];
    olmoe_policy_model pm;
} setup;

static int setup_open(setup *s, const char *model_name) {
    char *md = fixture_dir(model_name);
    int rc = olmoe_model_open(md, &s->m);
    free(md);
    if (rc) return -1;
    const char *specs[3] = {"topk(k=1)", "topp(p=0.5,max_k=4)", "topk(k=2)"};
    for (int i = 0; i < 3; i++) {
        if (tr_policy(&s->m, specs[i], &s->pol[i]) != 0) return -1;
        s->pp[i] = &s->pol[i];
    }
    s->pm = (olmoe_policy_model){s->m.cfg.num_hidden_layers, s->m.cfg.num_experts, s->m.cfg.norm_topk_prob,
                                 NULL, NULL, NULL, 0};
    return 0;
}

static olmoe_replay_opts opts_for(setup *s, const char *trace, int np) {
    return (olmoe_replay_opts){.trace_path = trace, .model = &s->m, .policies = s->pp, .n_policies = np,
                               .do_replay = 1, .do_exact = 1, .device = "cpu", .chunk_tokens = 4096,
                               .self_check = 1, .bind_model = &s->pm};
}

static double attr_f(hid_t f, const char *g, const char *a) {
    double v = NAN;
    CHECK(olmoe_h5_get_attr_f64(f, g, a, &v) == 0, "%s@%s: %s", g, a, olmoe_error());
    return v;
}

static int64_t attr_i(hid_t f, const char *g, const char *a) {
    int64_t v = -1;
    CHECK(olmoe_h5_get_attr_i64(f, g, a, &v) == 0, "%s@%s: %s", g, a, olmoe_error());
    return v;
}

/* dataset file type: class and size */
static void check_type(hid_t f, const char *path, H5T_class_t cls, size_t size, int is_signed) {
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    CHECK(ds >= 0, "no dataset %s", path);
    if (ds < 0) return;
    hid_t ty = H5Dget_type(ds);
    CHECK(H5Tget_class(ty) == cls && H5Tget_size(ty) == size, "%s: wrong type", path);
    if (cls == H5T_INTEGER) CHECK((H5Tget_sign(ty) == H5T_SGN_2) == is_signed, "%s: sign", path);
    H5Tclose(ty);
    H5Dclose(ds);
}

/* one result group against man/olmoe-replay.1's layout, and its numbers recomputed */
static void check_group(hid_t f, const char *kind, const olmoe_replay_run *r, const olmoe_replay_result *res,
                        const int32_t *tok) {
    char g[300], p[400], *found = NULL;
    CHECK(olmoe_result_find(f, kind, res->policy->id, &found) == 1, "no /%s/%s", kind, res->policy->id);
    snprintf(g, sizeof g, "%s", found ? found : "none");
    free(found);
    for (const char *c = strchr(g, '/') + 1; *c; c++) CHECK(isalnum((unsigned char)*c) || *c == '_', "/%s: not typable", g);
    int L = r->n_layers, E = r->n_experts;
    int64_t N = r->n_tokens;
    char *s = NULL;
    CHECK(olmoe_h5_get_attr_str(f, g, "policy", &s) == 0 && s && strcmp(s, res->policy->id) == 0, "%s policy", g);
    free(s), s = NULL;
    CHECK(olmoe_h5_get_attr_str(f, g, "kind", &s) == 0 && s && strcmp(s, kind) == 0, "%s kind", g);
    free(s), s = NULL;
    CHECK(olmoe_h5_get_attr_str(f, g, "routing", &s) == 0 && s && strcmp(s, "recompute") == 0, "%s routing", g);
    free(s), s = NULL;
    CHECK(olmoe_h5_get_attr_str(f, g, "device", &s) == 0 && s && strcmp(s, "cpu") == 0, "%s device", g);
    free(s);
    const char *f64s[] = {"seconds", "nll_sum", "perplexity", "accuracy", "mean_k", "sd_k", "share_min_k",
                          "share_max_k", "compute_saved", "tokens_per_second", "baseline_perplexity"};
    for (size_t i = 0; i < sizeof f64s / sizeof *f64s; i++) {
        double v = attr_f(f, g, f64s[i]);
        CHECK(isfinite(v), "%s@%s = %g", g, f64s[i], v);
    }
    check_type(f, (snprintf(p, sizeof p, "%s/nll", g), p), H5T_FLOAT, 4, 1);
    check_type(f, (snprintf(p, sizeof p, "%s/argmax", g), p), H5T_INTEGER, 4, 1);
    check_type(f, (snprintf(p, sizeof p, "%s/experts", g), p), H5T_INTEGER, 1, 0);
    check_type(f, (snprintf(p, sizeof p, "%s/k_hist", g), p), H5T_INTEGER, 8, 1);
    check_type(f, (snprintf(p, sizeof p, "%s/load", g), p), H5T_INTEGER, 8, 1);
    check_type(f, (snprintf(p, sizeof p, "%s/mean_k_layer", g), p), H5T_FLOAT, 8, 1);
    float *nll;
    int32_t *am, *ex;
    int64_t *hist, *load;
    int rank;
    int64_t d[OLMOE_H5_MAX_RANK];
#define RD(name, kind_, var, r0, d0, d1)                                                             \
    snprintf(p, sizeof p, "%s/" name, g);                                                           \
    CHECK(olmoe_h5_read_alloc(f, p, kind_, (void **)&var, &rank, d) == 0 && rank == r0 && d[0] == d0 && \
              (r0 == 1 || d[1] == d1),                                                              \
          "%s: shape", p)
    RD("nll", OLMOE_H5_F32, nll, 1, N, 0);
    RD("argmax", OLMOE_H5_I32, am, 1, N, 0);
    RD("experts", OLMOE_H5_I32, ex, 2, N, L);
    RD("k_hist", OLMOE_H5_I64, hist, 2, L, E + 1);
    RD("load", OLMOE_H5_I64, load, 2, L, E);
#undef RD
    /* recomputed from the per-token arrays */
    double sum = 0, ks = 0;
    int64_t sc = 0, right = 0;
    for (int64_t i = 0; i < N; i++) {
        CHECK(isnan(nll[i]) == isnan(r->baseline_nll[i]), "%s: NaN pattern at %lld", g, (long long)i);
        if (!isnan(nll[i])) sum += nll[i], sc++, right += am[i] == tok[i + 1];
        for (int l = 0; l < L; l++) ks += ex[i * L + l];
    }
    CHECK(attr_i(f, g, "n_scored") == sc, "%s n_scored", g);
    CHECK_CLOSE(attr_f(f, g, "perplexity"), exp(sum / sc), 1e-9, "%s perplexity", g);
    CHECK_CLOSE(attr_f(f, g, "accuracy"), (double)right / sc, 1e-12, "%s accuracy", g);
    CHECK_CLOSE(attr_f(f, g, "mean_k"), ks / ((double)N * L), 1e-12, "%s mean_k", g);
    CHECK_CLOSE(attr_f(f, g, "compute_saved"), 1 - ks / ((double)N * L) / r->top_k, 1e-12, "%s saved", g);
    for (int l = 0; l < L; l++) {
        int64_t rows = 0, lsum = 0, esum = 0;
        for (int k = 0; k <= E; k++) rows += hist[l * (E + 1) + k];
        for (int e = 0; e < E; e++) lsum += load[l * E + e];
        for (int64_t i = 0; i < N; i++) esum += ex[i * L + l];
        CHECK(rows == N && lsum == esum, "%s layer %d: k_hist rows %lld, load %lld vs %lld", g, l,
              (long long)rows, (long long)lsum, (long long)esum);
    }
    /* groups: documents 0, 2 are news, 1, 3 fiction, 4 none */
    const char *gn[2] = {"news", "fiction"};
    for (int k = 0; k < 2; k++) {
        double gs = 0;
        int64_t gc = 0;
        for (int w = 0, o = 0; w < NW; o += wlen[w], w++)
            if (w < NW - 1 && w % 2 == k)
                for (int i = o; i < o + wlen[w]; i++)
                    if (!isnan(nll[i])) gs += nll[i], gc++;
        snprintf(p, sizeof p, "%s/groups/%s", g, gn[k]);
        CHECK(attr_i(f, p, "n_scored") == gc, "%s n_scored", p);
        CHECK_CLOSE(attr_f(f, p, "perplexity"), exp(gs / gc), 1e-9, "%s perplexity", p);
        CHECK(isfinite(attr_f(f, p, "mean_k")) && isfinite(attr_f(f, p, "accuracy")), "%s", p);
    }
    free(nll), free(am), free(ex), free(hist), free(load);
}

static void test_layout_and_exact(void) {
    char *trace = tmp("run.h5"), *out = tmp("results.h5");
    int32_t *tok = NULL;
    CHECK(make_trace("tiny-f32", trace, 1, &tok) == 0, "%s", olmoe_error());
    setup s;
    CHECK(setup_open(&s, "tiny-f32") == 0, "%s", olmoe_error());
    olmoe_replay_opts o = opts_for(&s, trace, 3);
    olmoe_replay_run r;
    CHECK(olmoe_replay_run_all(&o, &r) == 0, "%s", olmoe_error());
    CHECK(r.n_tokens == 158 && r.n_windows == NW && r.n_groups == 2, "run: %lld tokens", (long long)r.n_tokens);
    /* topk(k=2) is the trace's policy: the self-check ran on it */
    CHECK(r.self.done && strcmp(r.self.policy, "topk(k=2,norm=model)") == 0, "self-check: %s", r.self.why_not);
    CHECK(fabs(r.self.nll_rel_diff) <= 1e-3 && r.self.max_abs_diff < 1, "self-check: %g %g", r.self.nll_rel_diff,
          r.self.max_abs_diff);
    /* exact == the engine under the policy, token for token */
    for (int i = 0; i < 3; i++) {
        const olmoe_replay_result *ex = olmoe_replay_find(&r, OLMOE_KIND_EXACT, s.pol[i].id);
        CHECK(ex != NULL, "no exact result for %s", s.pol[i].id);
        if (!ex) continue;
        for (int w = 0, off = 0; w < NW; off += wlen[w], w++) {
            tr_run e;
            CHECK(tr_engine(&s.m, 0, &s.pol[i], tok + off, 1, wlen[w], &e) == 0, "%s", olmoe_error());
            tr_diff d;
            CHECK(tr_compare(ex->nll + off, e.nll, wlen[w], &d) == 0 && d.max_rel <= 1e-6,
                  "%s window %d: %g", s.pol[i].id, w, d.max_rel);
            tr_run_free(&e);
        }
    }
    olmoe_replay_validation v;
    CHECK(olmoe_replay_validate(&r, &v) == 0, "%s", olmoe_error());
    CHECK(v.n == 3, "validate rows %d", v.n);
    hid_t f = olmoe_h5_create(out);
    CHECK(f >= 0 && olmoe_replay_write_h5(&r, &v, f, 0) == 0, "%s", olmoe_error());
    for (int i = 0; i < r.n_results; i++)
        if (r.res[i].stored) check_group(f, olmoe_replay_kind_name(r.res[i].kind), &r, &r.res[i], tok);
    /* /validate */
    hid_t pds = H5Dopen2(f, "validate/policy", H5P_DEFAULT), pty = pds >= 0 ? H5Dget_type(pds) : -1;
    CHECK(pty >= 0 && H5Tget_class(pty) == H5T_STRING && H5Tis_variable_str(pty) > 0,
          "validate/policy: not variable-length strings");
    if (pty >= 0) {
        char *ids[3] = {NULL, NULL, NULL};
        CHECK(H5Dread(pds, pty, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids) >= 0 && ids[1] &&
                  strcmp(ids[1], s.pol[1].id) == 0,
              "validate/policy[1]");
        for (int i = 0; i < 3; i++) H5free_memory(ids[i]);
        H5Tclose(pty);
    }
    if (pds >= 0) H5Dclose(pds);
    double *col;
    int rank;
    int64_t d[OLMOE_H5_MAX_RANK];
    const char *cols[] = {"replay_ppl", "exact_ppl", "rel_diff", "nll_corr", "nll_mad", "replay_seconds",
                          "exact_seconds"};
    for (int i = 0; i < 7; i++) {
        char p[64];
        snprintf(p, sizeof p, "validate/%s", cols[i]);
        CHECK(olmoe_h5_read_alloc(f, p, OLMOE_H5_F64, (void **)&col, &rank, d) == 0 && rank == 1 && d[0] == 3,
              "%s", p);
        if (i == 2) CHECK_CLOSE(col[1], v.replay_ppl[1] / v.exact_ppl[1] - 1, 1e-12, "rel_diff");
        free(col);
    }
    CHECK(attr_i(f, "validate", "ranking_agrees") == v.ranking_agrees, "ranking_agrees");
    CHECK(isfinite(attr_f(f, "validate", "kendall_tau")), "kendall_tau");
    CHECK(isfinite(attr_f(f, "replay", "self_check_max_abs_nll_diff")), "self-check attributes");
    /* writing again is refused, unless replacing */
    const char *which = NULL;
    CHECK(olmoe_replay_h5_conflict(f, s.pp, 3, 1, 1, 1, &which) == 1 && which, "conflict not seen");
    CHECK(olmoe_replay_write_h5(&r, &v, f, 0) != 0 && strstr(olmoe_error(), "already exists"), "rewrite: %s",
          olmoe_error());
    CHECK(olmoe_replay_write_h5(&r, &v, f, 1) == 0, "replace: %s", olmoe_error());
    olmoe_h5_close(f);
    olmoe_replay_validation_free(&v);

    /* chunks of one window give the same results */
    o.chunk_tokens = 1;
    olmoe_replay_run r1;
    CHECK(olmoe_replay_run_all(&o, &r1) == 0, "%s", olmoe_error());
    for (int i = 0; i < r.n_results && i < r1.n_results; i++) {
        tr_diff dd;
        CHECK(tr_compare(r1.res[i].nll, r.res[i].nll, r.n_tokens, &dd) == 0 && dd.max_rel <= 1e-6,
              "chunking changes %s %s by %g", olmoe_replay_kind_name(r.res[i].kind), r.res[i].policy->id,
              dd.max_rel);
        CHECK(memcmp(r1.res[i].experts, r.res[i].experts, (size_t)r.n_tokens * r.n_layers) == 0,
              "chunking changes the experts");
    }
    olmoe_replay_run_free(&r1);
    /* --max-tokens: whole windows only */
    o.max_tokens = 90;
    o.do_exact = 0;
    CHECK(olmoe_replay_run_all(&o, &r1) == 0 && r1.n_tokens == 80, "max_tokens 90 -> %lld tokens",
          (long long)r1.n_tokens);
    olmoe_replay_run_free(&r1);
    olmoe_replay_run_free(&r);
    olmoe_model_close(&s.m);
    free(tok), free(trace), free(out);
}

static void test_refusals(void) {
    char *trace = tmp("run.h5"), *bare = tmp("bare.h5");
    CHECK(make_trace("tiny-f32", trace, 1, NULL) == 0, "%s", olmoe_error());
    CHECK(make_trace("tiny-f32", bare, 0, NULL) == 0, "%s", olmoe_error());
    setup s;
    /* tiny-fused has tiny-f32's shapes but other weights */
    CHECK(setup_open(&s, "tiny-fused") == 0, "%s", olmoe_error());
    olmoe_replay_opts o = opts_for(&s, trace, 1);
    olmoe_replay_run r;
    CHECK(olmoe_replay_run_all(&o, &r) != 0 && strstr(olmoe_error(), "captured with other weights"),
          "checksum: %s", olmoe_error());
    olmoe_model_close(&s.m);
    CHECK(setup_open(&s, "tiny-f32") == 0, "%s", olmoe_error());
    o = opts_for(&s, bare, 1);
    CHECK(olmoe_replay_run_all(&o, &r) != 0 &&
              strstr(olmoe_error(), "bare.h5 has no /residual/attn: capture it with olmoe-capture --save-residuals"),
          "residuals: %s", olmoe_error());
    o.do_replay = 0; /* exact needs no residuals */
    CHECK(olmoe_replay_run_all(&o, &r) == 0, "%s", olmoe_error());
    if (r.n_results) olmoe_replay_run_free(&r);
    o = opts_for(&s, trace, 1);
    o.device = "tpu";
    o.do_exact = 0;
    CHECK(olmoe_replay_run_all(&o, &r) != 0 && strstr(olmoe_error(), "unknown device 'tpu'"), "tpu: %s",
          olmoe_error());
    olmoe_model_close(&s.m);
    free(trace), free(bare);
}

static void test_statistics(void) {
    float x[6] = {1, 2, 3, 4, 5, NAN}, y[6] = {3, 5, 7, 9, 11, 0}, z[6] = {5, 4, 3, 2, 1, 7};
    double mad;
    CHECK_CLOSE(olmoe_replay_pearson(x, y, 6, &mad), 1.0, 1e-12, "perfect line");
    CHECK_CLOSE(mad, (2 + 3 + 4 + 5 + 6) / 5.0, 1e-12, "mean |diff| skips NaN");
    CHECK_CLOSE(olmoe_replay_pearson(x, z, 5, NULL), -1.0, 1e-12, "reversed");
    float u[4] = {1, 2, 3, 4}, w[4] = {1, 3, 2, 4};
    /* by hand: mean 2.5 both; sum xy - n mx my = 29 - 25 = 4 over 5 */
    CHECK_CLOSE(olmoe_replay_pearson(u, w, 4, NULL), 0.8, 1e-12, "pearson by hand");
    double a[4] = {1, 2, 3, 4}, b[4] = {1, 3, 2, 4}, c[4] = {10, 20, 30, 40};
    int agree;
    CHECK_CLOSE(olmoe_replay_kendall(a, b, 4, &agree), 4.0 / 6.0, 1e-12, "5 concordant, 1 discordant");
    CHECK(!agree, "a swapped pair is a disagreement");
    CHECK_CLOSE(olmoe_replay_kendall(a, c, 4, &agree), 1.0, 1e-12, "same order");
    CHECK(agree, "same order agrees");
    double t1[3] = {1, 1, 2}, t2[3] = {1, 2, 3};
    /* tau-b: pairs (0,1) tied in t1 only; 2 concordant: 2 / sqrt(2 * 3) */
    CHECK_CLOSE(olmoe_replay_kendall(t1, t2, 3, &agree), 2 / sqrt(6.0), 1e-12, "tau-b with a tie");
    CHECK(!agree, "a tie on one side only is a disagreement");
    CHECK(isnan(olmoe_replay_kendall(a, b, 1, &agree)) && agree, "one policy");
    /* a = 1 2 3 4 and b = 1 3 2 4 differ on the pair (1, 2) only: 3 vs 2 in b,
     * a gap of (3 - 2) / 2 */
    double widest;
    CHECK(olmoe_replay_discordant(a, b, 4, &widest) == 1, "one discordant pair");
    CHECK_CLOSE(widest, 0.5, 1e-12, "its gap, relative to the smaller");
    CHECK(olmoe_replay_discordant(a, c, 4, &widest) == 0 && widest == 0, "none");
    CHECK(olmoe_replay_discordant(t1, t2, 3, &widest) == 1, "a one-sided tie counts");
    CHECK_CLOSE(widest, 1.0, 1e-12, "t2's 1 vs 2");
}

static int compare_mode(char **argv) {
    hid_t a = olmoe_h5_open(argv[0], 0), b = olmoe_h5_open(argv[2], 0);
    if (a < 0 || b < 0) die("%s", olmoe_error());
    float *x, *y;
    int ra, rb;
    int64_t da[OLMOE_H5_MAX_RANK], db[OLMOE_H5_MAX_RANK];
    if (olmoe_h5_read_alloc(a, argv[1], OLMOE_H5_F32, (void **)&x, &ra, da) != 0 ||
        olmoe_h5_read_alloc(b, argv[3], OLMOE_H5_F32, (void **)&y, &rb, db) != 0)
        die("%s", olmoe_error());
    double tol;
    if (olmoe_parse_double(argv[4], &tol) != 0) die("%s", olmoe_error());
    if (da[0] != db[0]) die("%lld vs %lld rows", (long long)da[0], (long long)db[0]);
    tr_diff d;
    int bad = tr_compare(x, y, da[0], &d);
    printf("max_abs %.3g max_rel %.3g nan_mismatch %d\n", d.max_abs, d.max_rel, bad);
    free(x), free(y);
    olmoe_h5_close(a), olmoe_h5_close(b);
    return bad || !(d.max_rel <= tol);
}

int main(int argc, char **argv) {
    olmoe_set_prog(argv[0]);
    if (argc == 7 && strcmp(argv[1], "--compare") == 0) return compare_mode(argv + 2);
    if (!mkdtemp(dir)) die("mkdtemp failed");
    RUN(test_layout_and_exact);
    RUN(test_refusals);
    RUN(test_statistics);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_summary();
}
