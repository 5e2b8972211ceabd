/* test_generate.c: greedy generation (capture/generate.h) and the engine's
 * incremental decoder (model.h, olmoe_engine_decode_*) on the CPU.
 *
 * - Against HuggingFace: transformers' greedy generate (KV cache, fp32 on the
 *   CPU) recorded in tests/fixtures/<tiny>/reference.h5 /generate (16 new
 *   tokens at the fixture's top-k) and models/olmoe-brown/reference.h5
 *   /generate (24 new tokens under top-8 from three text prompts, whose ids
 *   are checked against HF's first): token for token.
 * - The KV cache against the no-cache reference (a full forward pass over
 *   the whole sequence per step, which test_forward_hf binds to HF): argmax
 *   and routing choices equal, logits and router logits equal to fp32
 *   rounding (|diff| <= 1e-5 of the row's scale; the achieved maximum is
 *   printed), under top-k and under a BH policy that chooses variable counts.
 * - The recorded choices are what the policy itself returns on the recorded
 *   router logits, and BH stores variable expert counts.
 * - Errors: N < 1, a sequence past max_ctx, bad prompt files. */
#include "check.h"
#include "test_hf_fixture.h"
#include "generate.h"
#include "policy.h"
#include "tokenizer.h"
#include "traces.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BROWN "models/olmoe-brown"
#define TOL_ROUNDING 1e-5


static olmoe_engine *open_engine(olmoe_model *m, int ctx, int top_k, olmoe_policy *pol) {
    olmoe_engine_opts eo = {.device = "cpu", .max_ctx = ctx, .max_tokens = ctx, .top_k = top_k};
    if (pol) eo.top_k = olmoe_policy_max_experts(pol), eo.route = olmoe_policy_route_at, eo.route_ctx = pol;
    olmoe_engine *e;
    if (olmoe_engine_open(m, &eo, &e) != 0) die("%s", olmoe_error());
    return e;
}

static int same_ids(const int32_t *a, const int32_t *b, int n) {
    return memcmp(a, b, (size_t)n * sizeof *a) == 0;
}

/* ---- HF's greedy generate on every tiny fixture ---- */
static void test_hf_tiny_fixtures(void) {
    const char *root = check_fixture_dir();
    char *names[64];
    int nn = hf_fixture_names(root, NULL, names, 64);
    CHECK(nn >= 0, "cannot open %s", root);
    CHECK(nn >= 5, "only %d fixtures with reference.h5 under %s", nn, root);
    for (int i = 0; i < nn; i++) {
        char *dir = olmoe_path_join(root, names[i]);
        hf_generation hg;
        hf_generation_read(dir, &hg);
        int64_t np = hg.np, nw = hg.nw, k = hg.k;
        const int32_t *prompt = hg.prompt, *want = hg.output;
        olmoe_model m;
        if (olmoe_model_open(dir, &m) != 0) die("%s", olmoe_error());
        olmoe_engine *e = open_engine(&m, (int)nw, (int)k, NULL);
        olmoe_generate_opts go = {.n_new = (int)(nw - np), .stop_id = -1};
        olmoe_generation g;
        int rc = olmoe_generate(e, prompt, (int)np, &go, &g);
        CHECK(rc == 0, "%s: %s", names[i], olmoe_error());
        if (rc == 0) {
            CHECK(g.cached == 1, "%s: the CPU engine did not use its KV cache", names[i]);
            CHECK(g.n == nw - np, "%s: %d tokens generated, wanted %lld", names[i], g.n, (long long)(nw - np));
            int same = g.n == nw - np && same_ids(g.tokens, want + np, g.n);
            CHECK(same, "%s: generation differs from HF's greedy generate", names[i]);
            printf("# %-18s KV-cache generation of %d tokens at top-%lld: %s\n", names[i], g.n, (long long)k,
                   same ? "same as HF" : "DIFFERENT");
            for (int t = 0; t < g.n * g.L; t++) { /* a dense layer (Qwen's mlp_only_layers) routes none */
                int want_k = m.cfg.dense[t % g.L] ? 0 : (int)k;
                CHECK(g.n_experts[t] == want_k, "%s: %d experts at row %d", names[i], g.n_experts[t], t);
            }
            olmoe_generation_free(&g);
        }
        olmoe_engine_close(e);
        olmoe_model_close(&m);
        hf_generation_free(&hg);
        free(dir), free(names[i]);
    }
}

/* ---- the bundled model: text prompts through the tokenizer, top-8 ---- */
static void test_hf_brown(void) {
    hid_t h = olmoe_h5_open(BROWN "/reference.h5", 0);
    if (h < 0) die("%s", olmoe_error());
    olmoe_tokenizer *tok;
    if (olmoe_tokenizer_open(BROWN "/tokenizer.json", &tok) != 0) die("%s", olmoe_error());
    olmoe_model m;
    if (olmoe_model_open(BROWN, &m) != 0) die("%s", olmoe_error());
    CHECK(m.cfg.num_experts_per_tok == 8, "the bundled model routes top-%d", m.cfg.num_experts_per_tok);
    olmoe_engine *e = open_engine(&m, 64, 0, NULL);
    for (int i = 0; i < 3; i++) {
        hf_generation hg;
        hf_generation_at(h, i, &hg);
        int64_t np = hg.np, nw = hg.nw;
        const int32_t *prompt = hg.prompt, *want = hg.output;
        olmoe_ids ids = {0};
        if (olmoe_tokenizer_encode(tok, hf_brown_prompts[i], strlen(hf_brown_prompts[i]), &ids) != 0)
            die("%s", olmoe_error());
        CHECK(ids.n == (size_t)np && same_ids(ids.v, prompt, (int)np), "prompt %d: our ids differ from HF's", i);
        CHECK(nw - np == 24, "output_%d has %lld new tokens", i, (long long)(nw - np));
        olmoe_generate_opts go = {.n_new = (int)(nw - np), .stop_id = -1};
        olmoe_generation g;
        int rc = olmoe_generate(e, ids.v, (int)ids.n, &go, &g);
        CHECK(rc == 0, "prompt %d: %s", i, olmoe_error());
        if (rc == 0) {
            int same = g.n == nw - np && same_ids(g.tokens, want + np, g.n);
            CHECK(same, "prompt %d: generation differs from HF's", i);
            int first_bad = -1;
            for (int t = 0; t < g.n && first_bad < 0; t++)
                if (g.tokens[t] != want[np + t]) first_bad = t;
            printf("# olmoe-brown prompt %d: %d tokens under top-8: %s", i, g.n, same ? "same as HF\n" : "");
            if (!same) printf("first difference at token %d\n", first_bad);
            olmoe_generation_free(&g);
        }
        olmoe_ids_free(&ids);
        hf_generation_free(&hg);
    }
    olmoe_engine_close(e);
    olmoe_model_close(&m);
    olmoe_tokenizer_close(tok);
    olmoe_h5_close(h);
}

/* ---- the KV cache against full recomputation ---- */
typedef struct {
    int32_t argmax, *ne, *ex;
    float *logits, *rl, *wt;
} step_out;

static void step_alloc(step_out *s, const olmoe_config *c, int K) {
    size_t L = c->num_hidden_layers;
    s->ne = xmalloc(L * sizeof *s->ne);
    s->ex = xmalloc(L * K * sizeof *s->ex);
    s->wt = xmalloc(L * K * sizeof *s->wt);
    s->logits = xmalloc((size_t)c->vocab_size * sizeof *s->logits);
    s->rl = xmalloc(L * c->num_experts * sizeof *s->rl);
}

static void step_free(step_out *s) { free(s->ne), free(s->ex), free(s->wt), free(s->logits), free(s->rl); }

static olmoe_decode_io step_io(step_out *s) {
    return (olmoe_decode_io){.logits = s->logits, .router_logits = s->rl, .n_experts = s->ne, .experts = s->ex,
                             .weights = s->wt};
}

/* max |a - b| / max(1, max |b|) */
static double rel_diff(const float *a, const float *b, size_t n) {
    double md = 0, sc = 1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d;
        if (fabs(b[i]) > sc) sc = fabs(b[i]);
    }
    return md / sc;
}

/* the prompt (in two prefill pieces when split), then n_steps tokens fed
 * back; every step's outputs of the cache and of the recomputation compared.
 * When pol is set, the recorded choices are also checked against the
 * policy's own answer on the recorded router logits. */
static void kv_vs_recompute(const char *dir, const int32_t *prompt, int np, int n_steps, int split,
                            olmoe_policy *pol, const char *what) {
    olmoe_model m;
    if (olmoe_model_open(dir, &m) != 0) die("%s", olmoe_error());
    const olmoe_config *c = &m.cfg;
    int L = c->num_hidden_layers, E = c->num_experts, V = c->vocab_size;
    olmoe_engine *e = open_engine(&m, np + n_steps, 0, pol);
    int K = olmoe_engine_max_experts(e);
    olmoe_decode *kv, *rc;
    CHECK(olmoe_engine_decode_begin(e, OLMOE_DECODE_AUTO, &kv) == 0, "%s", olmoe_error());
    CHECK(olmoe_engine_decode_begin(e, OLMOE_DECODE_RECOMPUTE, &rc) == 0, "%s", olmoe_error());
    CHECK(olmoe_engine_decode_cached(kv) == 1 && olmoe_engine_decode_cached(rc) == 0, "decoder kinds");
    step_out a, b;
    step_alloc(&a, c, K);
    step_alloc(&b, c, K);
    olmoe_decode_io ia = step_io(&a), ib = step_io(&b);
    double max_logit = 0, max_rl = 0, max_w = 0;
    int bad_choice = 0, bad_policy = 0, bad_argmax = 0, k_lo = 1 << 30, k_hi = 0;
    int32_t tok = 0;
    for (int s = 0; s <= n_steps; s++) {
        int ok;
        if (s == 0 && split) {
            ok = olmoe_engine_decode_step(kv, prompt, split, &ia) == 0 &&
                 olmoe_engine_decode_step(kv, prompt + split, np - split, &ia) == 0;
        } else {
            ok = olmoe_engine_decode_step(kv, s ? &tok : prompt, s ? 1 : np, &ia) == 0;
        }
        ok = ok && olmoe_engine_decode_step(rc, s ? &tok : prompt, s ? 1 : np, &ib) == 0;
        CHECK(ok, "%s step %d: %s", what, s, olmoe_error());
        if (!ok) break;
        double d1 = rel_diff(a.logits, b.logits, V), d2 = rel_diff(a.rl, b.rl, (size_t)L * E);
        max_logit = d1 > max_logit ? d1 : max_logit;
        max_rl = d2 > max_rl ? d2 : max_rl;
        bad_argmax += ia.argmax != ib.argmax;
        for (int l = 0; l < L; l++) {
            k_lo = a.ne[l] < k_lo ? a.ne[l] : k_lo;
            k_hi = a.ne[l] > k_hi ? a.ne[l] : k_hi;
            bad_choice += a.ne[l] != b.ne[l];
            for (int j = 0; j < K; j++) {
                size_t at = (size_t)l * K + j;
                bad_choice += a.ex[at] != b.ex[at];
                if (j >= a.ne[l]) bad_choice += a.ex[at] != -1 || a.wt[at] != 0;
                double dw = fabs((double)a.wt[at] - b.wt[at]);
                max_w = dw > max_w ? dw : max_w;
            }
            if (pol) { /* the policy's own answer on the logits the cache saw */
                int ex[OLMOE_POLICY_MAX_E];
                float wt[OLMOE_POLICY_MAX_E];
                int n = olmoe_policy_route(pol, l, a.rl + (size_t)l * E, E, ex, wt);
                bad_policy += n != a.ne[l];
                for (int j = 0; j < n && j < K; j++)
                    bad_policy += ex[j] != a.ex[(size_t)l * K + j] || wt[j] != a.wt[(size_t)l * K + j];
            }
        }
        tok = ia.argmax;
    }
    CHECK(olmoe_engine_decode_length(kv) == np + n_steps, "%s: %d positions cached", what,
          olmoe_engine_decode_length(kv));
    CHECK(bad_argmax == 0, "%s: argmax differs at %d steps", what, bad_argmax);
    CHECK(bad_choice == 0, "%s: %d routing choices differ", what, bad_choice);
    CHECK(bad_policy == 0, "%s: %d recorded choices are not the policy's", what, bad_policy);
    CHECK(max_logit <= TOL_ROUNDING, "%s: logits differ by %.3g of their scale", what, max_logit);
    CHECK(max_rl <= TOL_ROUNDING, "%s: router logits differ by %.3g of their scale", what, max_rl);
    CHECK(max_w <= TOL_ROUNDING, "%s: weights differ by %.3g", what, max_w);
    printf("# %s: KV cache vs recompute over %d steps: max rel diff logits %.2g, router logits %.2g, weights "
           "%.2g; experts per token-layer %d..%d\n",
           what, n_steps, max_logit, max_rl, max_w, k_lo, k_hi);
    step_free(&a);
    step_free(&b);
    olmoe_engine_decode_end(kv);
    olmoe_engine_decode_end(rc);
    olmoe_engine_close(e);
    olmoe_model_close(&m);
}

static const int32_t tiny_prompt[8] = {291, 281, 192, 276, 349, 11, 137, 136};
static const int32_t brown_prompt[5] = {458, 504, 1118, 553, 326}; /* "The jury said that" */

static void test_kv_vs_recompute(void) {
    char *f32 = olmoe_path_join(check_fixture_dir(), "tiny-f32");
    char *clip = olmoe_path_join(check_fixture_dir(), "tiny-clip");
    kv_vs_recompute(f32, tiny_prompt, 8, 12, 0, NULL, "tiny-f32");
    kv_vs_recompute(clip, tiny_prompt, 8, 12, 3, NULL, "tiny-clip, prefill in 2 pieces");
    kv_vs_recompute(BROWN, brown_prompt, 5, 20, 0, NULL, "olmoe-brown top-8");
    free(f32);
    free(clip);
}

static olmoe_policy bound_policy(const char *spec) {
    olmoe_policy p;
    if (olmoe_policy_parse(spec, &p) != 0) die("%s", olmoe_error());
    olmoe_policy_model pm = {.n_layers = 4, .n_experts = 64, .norm_topk_prob = 0};
    if (olmoe_policy_bind(&p, &pm) != 0) die("%s", olmoe_error());
    return p;
}

/* policies other than top-k, recorded as the policy chose. BH with pseudo
 * p-values (1 - p_e) cannot pass a second expert (two p_e near 1 do not fit
 * one softmax), so it always takes min_k; top-p gives variable counts. */
static void test_policies(void) {
    olmoe_policy bh = bound_policy("bh(alpha=0.3,pvalue=pseudo,min_k=2,max_k=16)");
    kv_vs_recompute(BROWN, brown_prompt, 5, 16, 2, &bh, "olmoe-brown bh pseudo");
    olmoe_policy p = bound_policy("topp(p=0.5,max_k=16)");
    kv_vs_recompute(BROWN, brown_prompt, 5, 16, 2, &p, "olmoe-brown topp");

    olmoe_model m;
    if (olmoe_model_open(BROWN, &m) != 0) die("%s", olmoe_error());
    olmoe_engine *e = open_engine(&m, 32, 0, &p);
    olmoe_generate_opts go = {.n_new = 12, .stop_id = -1};
    olmoe_generation g;
    CHECK(olmoe_generate(e, brown_prompt, 5, &go, &g) == 0, "%s", olmoe_error());
    CHECK(g.max_k == 16, "max_k %d", g.max_k);
    int lo = 1 << 30, hi = 0, bad = 0;
    for (int r = 0; r < g.n * g.L; r++) {
        int k = g.n_experts[r];
        lo = k < lo ? k : lo;
        hi = k > hi ? k : hi;
        for (int j = 0; j < g.max_k; j++) {
            int16_t x = g.experts[(size_t)r * g.max_k + j];
            float w = g.weights[(size_t)r * g.max_k + j];
            bad += j < k ? (x < 0 || x >= 64 || !(w > 0)) : (x != -1 || w != 0);
        }
    }
    CHECK(lo >= 1 && hi <= 16, "counts %d..%d outside [1, 16]", lo, hi);
    CHECK(lo < hi, "bh chose the same count everywhere (%d)", lo);
    CHECK(bad == 0, "%d malformed choice entries", bad);
    printf("# olmoe-brown %s: %d..%d experts per token and layer\n", p.id, lo, hi);
    olmoe_generation_free(&g);

    /* stop at a given id: the first generated token, so one token */
    CHECK(olmoe_generate(e, brown_prompt, 5, &go, &g) == 0, "%s", olmoe_error());
    go.stop_id = g.tokens[2];
    int n_stop = 3;
    for (int t = 0; t < 2; t++)
        if (g.tokens[t] == go.stop_id) n_stop = t + 1 < n_stop ? t + 1 : n_stop;
    olmoe_generation_free(&g);
    CHECK(olmoe_generate(e, brown_prompt, 5, &go, &g) == 0, "%s", olmoe_error());
    CHECK(g.n == n_stop && g.stopped == 1, "stop id: %d tokens (stopped %d), wanted %d", g.n, g.stopped, n_stop);
    olmoe_generation_free(&g);
    olmoe_engine_close(e);
    olmoe_model_close(&m);
}

/* ---- errors ---- */
static char *write_tmp(const char *name, const char *text) {
    const char *base = getenv("TMPDIR");
    char *dir = olmoe_path_join(base && *base ? base : "/tmp", name);
    FILE *f = fopen(dir, "wb");
    if (!f) die("%s: cannot write", dir);
    fputs(text, f);
    fclose(f);
    return dir;
}

static void expect_error(int rc, const char *want, const char *what) {
    CHECK(rc != 0, "%s: no error", what);
    CHECK(rc == 0 || strstr(olmoe_error(), want), "%s: message '%s' lacks '%s'", what, olmoe_error(), want);
}

static void test_errors(void) {
    olmoe_model m;
    char *f32 = olmoe_path_join(check_fixture_dir(), "tiny-f32");
    if (olmoe_model_open(f32, &m) != 0) die("%s", olmoe_error());
    olmoe_engine *e = open_engine(&m, 10, 0, NULL);
    olmoe_generation g;
    olmoe_generate_opts go = {.n_new = 0, .stop_id = -1};
    expect_error(olmoe_generate(e, tiny_prompt, 8, &go, &g), "at least 1", "n_new 0");
    go.n_new = 4; /* 8 + 3 positions > 10 */
    expect_error(olmoe_generate(e, tiny_prompt, 8, &go, &g), "max_ctx", "past max_ctx");
    olmoe_decode *d;
    CHECK(olmoe_engine_decode_begin(e, OLMOE_DECODE_AUTO, &d) == 0, "%s", olmoe_error());
    olmoe_decode_io io = {0};
    int32_t bad = 384;
    expect_error(olmoe_engine_decode_step(d, &bad, 1, &io), "outside the vocabulary", "id >= V");
    expect_error(olmoe_engine_decode_step(d, tiny_prompt, 0, &io), "takes 1 to", "empty step");
    CHECK(olmoe_engine_decode_length(d) == 0, "failed steps moved the sequence");
    olmoe_engine_decode_end(d);
    olmoe_engine_close(e);

    olmoe_prompts ps;
    char *empty = write_tmp("gen-empty.txt", "\n  \n\t\n");
    expect_error(olmoe_prompts_read(empty, OLMOE_PROMPTS_TEXT, NULL, 384, &ps), "need a tokenizer", "no tokenizer");
    expect_error(olmoe_prompts_read(empty, OLMOE_PROMPTS_IDS, NULL, 384, &ps), "no token ids", "empty ids");
    char *ids = write_tmp("gen-ids.txt", "1 2 3\n\n4 5\n7 x\n");
    expect_error(olmoe_prompts_read(ids, OLMOE_PROMPTS_IDS, NULL, 384, &ps), ":4: 'x' is not a token id", "bad id");
    char *big = write_tmp("gen-big.txt", "1 2 3\n384\n");
    expect_error(olmoe_prompts_read(big, OLMOE_PROMPTS_IDS, NULL, 384, &ps), ":2: token id 384", "id >= V");
    char *good = write_tmp("gen-good.txt", "1 2 3\n\n  \n4 5\r\n");
    CHECK(olmoe_prompts_read(good, OLMOE_PROMPTS_IDS, NULL, 384, &ps) == 0, "%s", olmoe_error());
    CHECK(ps.n == 2 && ps.items[0].n == 3 && ps.items[1].n == 2 && ps.items[1].ids[1] == 5 &&
              ps.items[0].line == 1 && ps.items[1].line == 4,
          "ids prompts read wrong (%d prompts)", ps.n);
    olmoe_prompts_free(&ps);

    olmoe_tokenizer *tok;
    if (olmoe_tokenizer_open(BROWN "/tokenizer.json", &tok) != 0) die("%s", olmoe_error());
    char *text = write_tmp("gen-text.txt", "The jury said that\r\n\n   \nScientists have found");
    CHECK(olmoe_prompts_read(text, OLMOE_PROMPTS_TEXT, tok, 4103, &ps) == 0, "%s", olmoe_error());
    CHECK(ps.n == 2 && strcmp(ps.items[0].text, "The jury said that") == 0 && ps.items[0].n == 5 &&
              ps.items[0].ids[4] == 326 && strcmp(ps.items[1].text, "Scientists have found") == 0 &&
              ps.items[1].line == 4,
          "text prompts read wrong (%d prompts)", ps.n);
    olmoe_prompts_free(&ps);
    expect_error(olmoe_prompts_read(empty, OLMOE_PROMPTS_TEXT, tok, 4103, &ps), "no prompts", "empty text");
    char *utf = write_tmp("gen-utf.txt", "fine\nbad \xff byte\n");
    expect_error(olmoe_prompts_read(utf, OLMOE_PROMPTS_TEXT, tok, 4103, &ps), ":2: invalid UTF-8", "bad UTF-8");
    olmoe_prompts_format fmt;
    expect_error(olmoe_prompts_parse_format("json", &fmt), "text or ids", "format");
    olmoe_tokenizer_close(tok);
    const char *files[] = {empty, ids, big, good, text, utf};
    for (int i = 0; i < 6; i++) unlink(files[i]), free((void *)files[i]);
    olmoe_model_close(&m);
    free(f32);
}

int main(void) {
    RUN(test_hf_tiny_fixtures);
    RUN(test_hf_brown);
    RUN(test_kv_vs_recompute);
    RUN(test_policies);
    RUN(test_errors);
    return check_summary();
}
