/* test_forward_hf.c: the CPU engine and olmoe-capture against HuggingFace
 * transformers 5.17 (tests/fixtures/<model>/reference.h5, written by
 * tests/fixtures/make_fixtures.py from OlmoeForCausalLM, and where present
 * Qwen3MoeForCausalLM, MixtralForCausalLM and Qwen2MoeForCausalLM, in fp32
 * on the CPU; a dense layer's router logits are recorded as zeros).
 * Every fixture, every recorded top-k: router logits, logits, attention
 * residuals and the residual stream within 1e-4 of their scale (max |ref|),
 * per-token NLL within 1e-4 absolute, perplexity within 1e-5 relative
 * (docs/DESIGN.md §10), argmax equal, greedy generation equal; the windows and the
 * --tokens reading agree with the fixture's. The achieved differences are
 * printed ("# ..." lines) for the notes. */
#include "check.h"
#include "test_hf_fixture.h"
#include "model.h"
#include "traces.h"
#include "windows.h"

#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL_SCALE 1e-4 /* max |diff| / max |ref| for logits-like arrays */
#define TOL_NLL 1e-4   /* absolute, per token */
#define TOL_PPL 1e-5   /* relative */

/* max |a - b| over the arrays, and max |b| */
static void diff(const float *a, const float *b, size_t n, double *md, double *scale) {
    *md = 0, *scale = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= *md)) *md = d; /* NaN propagates as a failure */
        if (fabs(b[i]) > *scale) *scale = fabs(b[i]);
    }
}

/* our windows and our reading of tokens.txt are the fixture's */
static void check_inputs(const hf_fixture *f, const olmoe_model *m) {
    /* fixtures of other architectures name theirs; OLMoE's predate the attribute */
    const char *arch = "olmoe";
    char *owned = NULL;
    if (H5Aexists(f->h5, "architecture") > 0) {
        CHECK(olmoe_h5_get_attr_str(f->h5, ".", "architecture", &owned) == 0, "%s", olmoe_error());
        if (owned) arch = owned;
    }
    CHECK(strcmp(arch, olmoe_arch_name(m->cfg.arch)) == 0, "%s: hf_fixture of %s, config.json says %s",
          f->name, arch, olmoe_arch_name(m->cfg.arch));
    free(owned);
    char *tp = olmoe_path_join(f->dir, "tokens.txt");
    olmoe_token_stream ts;
    CHECK(olmoe_token_ids_read(tp, m->cfg.vocab_size, &ts) == 0, "%s", olmoe_error());
    CHECK(ts.n_tokens == f->N && ts.n_docs == f->n_docs, "%s: %lld tokens %lld docs", f->name,
          (long long)ts.n_tokens, (long long)ts.n_docs);
    for (int64_t i = 0; i < f->N && i < ts.n_tokens; i++)
        if (ts.tokens[i] != f->tokens[i]) {
            CHECK(0, "%s: token %lld", f->name, (long long)i);
            break;
        }
    for (int64_t d = 0; d < f->n_docs && d < ts.n_docs; d++)
        CHECK(ts.doc_start[d] == f->docs[2 * d] && ts.doc_length[d] == f->docs[2 * d + 1], "%s: document %lld",
              f->name, (long long)d);
    olmoe_window *w;
    int64_t nw;
    CHECK(olmoe_windows_documents(ts.doc_start, ts.doc_length, ts.n_docs, f->ctx, &w, &nw) == 0, "windows");
    CHECK(nw == f->n_windows, "%s: %lld windows, hf_fixture has %lld", f->name, (long long)nw, (long long)f->n_windows);
    for (int64_t i = 0; i < nw && i < f->n_windows; i++)
        CHECK(w[i].start == f->windows[3 * i] && w[i].length == f->windows[3 * i + 1] &&
                  w[i].stored_from == f->windows[3 * i + 2],
              "%s: window %lld", f->name, (long long)i);
    free(w);
    olmoe_token_stream_free(&ts);
    free(tp);
}

typedef struct {
    float *router_logits, *logits, *nll, *attn, *hidden;
    int32_t *argmax;
} arrays;

static void arrays_free(arrays *a) {
    free(a->router_logits), free(a->logits), free(a->nll), free(a->attn), free(a->hidden), free(a->argmax);
}

static void read_reference(const hf_fixture *f, int k, arrays *r) {
    char p[64];
#define RD(field, name, kind)                                        \
    snprintf(p, sizeof p, "topk_%d/%s", k, name);                    \
    r->field = hf_read_all(f->h5, p, kind, NULL)
    RD(router_logits, "router_logits", OLMOE_H5_F32);
    RD(logits, "logits", OLMOE_H5_F32);
    RD(nll, "nll", OLMOE_H5_F32);
    RD(attn, "attn_residual", OLMOE_H5_F32);
    RD(hidden, "hidden", OLMOE_H5_F32);
    RD(argmax, "argmax", OLMOE_H5_I32);
#undef RD
}

/* the engine over every window of the fixture, 3 windows per call */
static void run_engine(const hf_fixture *f, olmoe_model *m, int k, arrays *o) {
    const olmoe_config *c = &m->cfg;
    size_t N = f->N, L = c->num_hidden_layers, E = c->num_experts, V = c->vocab_size, D = c->hidden_size;
    o->router_logits = xmalloc(N * L * E * sizeof(float));
    o->logits = xmalloc(N * V * sizeof(float));
    o->nll = xmalloc(N * sizeof(float));
    o->argmax = xmalloc(N * sizeof(int32_t));
    o->attn = xmalloc(N * L * D * sizeof(float));
    o->hidden = xmalloc(N * (L + 1) * D * sizeof(float));
    enum { B = 3 };
    olmoe_engine_opts eo = {.device = "cpu", .max_ctx = (int)f->ctx, .max_tokens = B * (int)f->ctx, .top_k = k};
    olmoe_engine *e;
    if (olmoe_engine_open(m, &eo, &e) != 0) die("%s", olmoe_error());
    for (int64_t w0 = 0; w0 < f->n_windows; w0 += B) {
        olmoe_window_io io[B];
        int nb = 0;
        for (; nb < B && w0 + nb < f->n_windows; nb++) {
            size_t s = (size_t)f->windows[3 * (w0 + nb)];
            io[nb] = (olmoe_window_io){.n = (int)f->windows[3 * (w0 + nb) + 1],
                                       .tokens = f->tokens + s,
                                       .router_logits = o->router_logits + s * L * E,
                                       .logits = o->logits + s * V,
                                       .nll = o->nll + s,
                                       .argmax = o->argmax + s,
                                       .attn_residual = o->attn + s * L * D,
                                       .hidden = o->hidden + s * (L + 1) * D};
        }
        CHECK(olmoe_engine_forward(e, io, nb) == 0, "%s", olmoe_error());
    }
    olmoe_engine_close(e);
}

static double perplexity_of(const float *nll, int64_t n, int64_t *scored) {
    double s = 0;
    *scored = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(nll[i])) s += nll[i], (*scored)++;
    return exp(s / (double)*scored);
}

/* the nll arrays agree, NaN exactly where the reference has NaN */
static double nll_diff(const hf_fixture *f, const float *ours, const float *ref) {
    double md = 0;
    for (int64_t i = 0; i < f->N; i++) {
        if (isnan(ref[i]) || isnan(ours[i])) {
            CHECK(isnan(ref[i]) && isnan(ours[i]), "%s: nll %lld: %g vs %g", f->name, (long long)i, ours[i], ref[i]);
            continue;
        }
        md = fmax(md, fabs((double)ours[i] - ref[i]));
    }
    return md;
}

static void compare_engine(const hf_fixture *f, olmoe_model *m, int k) {
    const olmoe_config *c = &m->cfg;
    size_t N = f->N, L = c->num_hidden_layers, E = c->num_experts, V = c->vocab_size, D = c->hidden_size;
    arrays r, o;
    read_reference(f, k, &r);
    run_engine(f, m, k, &o);
    double dr, sr, dl, sl, da, sa, dh, sh;
    diff(o.router_logits, r.router_logits, N * L * E, &dr, &sr);
    diff(o.logits, r.logits, N * V, &dl, &sl);
    diff(o.attn, r.attn, N * L * D, &da, &sa);
    diff(o.hidden, r.hidden, N * (L + 1) * D, &dh, &sh);
    double dn = nll_diff(f, o.nll, r.nll);
    int64_t ns_o, ns_r;
    double ppl_o = perplexity_of(o.nll, f->N, &ns_o), ppl_r;
    char g[32];
    snprintf(g, sizeof g, "topk_%d", k);
    if (olmoe_h5_get_attr_f64(f->h5, g, "perplexity", &ppl_r) != 0) die("%s", olmoe_error());
    perplexity_of(r.nll, f->N, &ns_r);
    int am_bad = 0;
    for (size_t i = 0; i < N; i++) am_bad += o.argmax[i] != r.argmax[i];
    double rel_ppl = fabs(ppl_o - ppl_r) / ppl_r;
    printf("# %-18s top-%-2d router %.2e logits %.2e attn %.2e hidden %.2e (max|diff|/max|ref|); "
           "nll %.2e abs; ppl %.10g vs HF %.10g (rel %.1e)\n",
           f->name, k, dr / sr, dl / sl, da / sa, dh / sh, dn, ppl_o, ppl_r, rel_ppl);
    CHECK(dr <= TOL_SCALE * sr, "%s top-%d: router logits max diff %.3g, scale %.3g", f->name, k, dr, sr);
    CHECK(dl <= TOL_SCALE * sl, "%s top-%d: logits max diff %.3g, scale %.3g", f->name, k, dl, sl);
    CHECK(da <= TOL_SCALE * sa, "%s top-%d: attention residual max diff %.3g, scale %.3g", f->name, k, da, sa);
    CHECK(dh <= TOL_SCALE * sh, "%s top-%d: hidden max diff %.3g, scale %.3g", f->name, k, dh, sh);
    CHECK(dn <= TOL_NLL, "%s top-%d: nll max diff %.3g", f->name, k, dn);
    CHECK(rel_ppl <= TOL_PPL, "%s top-%d: perplexity %.9g vs %.9g", f->name, k, ppl_o, ppl_r);
    CHECK(ns_o == ns_r, "%s top-%d: %lld scored vs %lld", f->name, k, (long long)ns_o, (long long)ns_r);
    CHECK(am_bad == 0, "%s top-%d: argmax differs at %d positions", f->name, k, am_bad);
    arrays_free(&r);
    arrays_free(&o);
}

/* greedy continuation of the prompt, one full forward per new token */
static void check_generate(const hf_fixture *f, olmoe_model *m) {
    int32_t *prompt, *want;
    int64_t np, nw;
    prompt = hf_read_all(f->h5, "generate/prompt", OLMOE_H5_I32, &np);
    want = hf_read_all(f->h5, "generate/output", OLMOE_H5_I32, &nw);
    int64_t k;
    if (olmoe_h5_get_attr_i64(f->h5, "generate", "top_k", &k) != 0) die("%s", olmoe_error());
    olmoe_engine_opts eo = {.device = "cpu", .max_ctx = (int)nw, .max_tokens = (int)nw, .top_k = (int)k};
    olmoe_engine *e;
    if (olmoe_engine_open(m, &eo, &e) != 0) die("%s", olmoe_error());
    int32_t *seq = xmalloc(nw * sizeof *seq), *am = xmalloc(nw * sizeof *am);
    memcpy(seq, prompt, np * sizeof *seq);
    for (int64_t n = np; n < nw; n++) {
        olmoe_window_io io = {.n = (int)n, .tokens = seq, .argmax = am};
        CHECK(olmoe_engine_forward(e, &io, 1) == 0, "%s", olmoe_error());
        seq[n] = am[n - 1];
    }
    int same = memcmp(seq, want, nw * sizeof *seq) == 0;
    CHECK(same, "%s: greedy generation differs from HF's", f->name);
    printf("# %-18s greedy generation of %lld tokens: %s\n", f->name, (long long)(nw - np), same ? "same as HF" : "DIFFERENT");
    free(seq), free(am), free(prompt), free(want);
    olmoe_engine_close(e);
}

/* olmoe-capture itself, at each top-k: the trace holds HF's numbers */
static void compare_cli(const hf_fixture *f, const olmoe_model *m, int k, const char *tmp) {
    const char *bin = getenv("OLMOE_BIN");
    char out[512], cmd[2048];
    if (m->cfg.n_dense_layers) { /* the engine runs dense layers; a trace refuses them */
        snprintf(cmd, sizeof cmd, "'%s/olmoe-capture' --model '%s' --tokens '%s/tokens.txt' --out '%s/dense.h5' "
                 "--quiet >/dev/null 2>&1", bin ? bin : "bin", f->dir, f->dir, tmp);
        CHECK(system(cmd) != 0, "%s: olmoe-capture took a model with dense layers", f->name);
        return;
    }
    if (snprintf(out, sizeof out, "%s/%s-k%d.h5", tmp, f->name, k) >= (int)sizeof out) die("path too long");
    if (snprintf(cmd, sizeof cmd, "'%s/olmoe-capture' --model '%s' --tokens '%s/tokens.txt' --ctx %lld --top-k %d --batch 2 --out '%s' --quiet >/dev/null",
             bin ? bin : "bin", f->dir, f->dir, (long long)f->ctx, k, out) >= (int)sizeof cmd)
        die("command too long");
    CHECK(system(cmd) == 0, "%s failed", cmd);
    olmoe_trace *t = olmoe_trace_open(out);
    CHECK(t != NULL, "%s", olmoe_error());
    if (!t) return;
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    size_t N = f->N, L = m->cfg.num_hidden_layers, E = m->cfg.num_experts;
    CHECK(in->n_tokens == f->N && in->n_windows == f->n_windows && in->meta.top_k == k && in->complete,
          "%s: trace has %lld tokens, %lld windows, top_k %d", f->name, (long long)in->n_tokens,
          (long long)in->n_windows, in->meta.top_k);
    if (in->n_tokens == f->N) {
        arrays r, o = {0};
        read_reference(f, k, &r);
        o.router_logits = xmalloc(N * L * E * sizeof(float));
        o.nll = xmalloc(N * sizeof(float));
        o.argmax = xmalloc(N * sizeof(int32_t));
        int32_t *tok = xmalloc(N * sizeof *tok);
        CHECK(olmoe_trace_read_router_logits(t, 0, f->N, o.router_logits) == 0 &&
                  olmoe_trace_read_nll(t, 0, f->N, o.nll) == 0 && olmoe_trace_read_argmax(t, 0, f->N, o.argmax) == 0 &&
                  olmoe_trace_read_tokens(t, 0, f->N, tok) == 0,
              "%s", olmoe_error());
        CHECK(memcmp(tok, f->tokens, N * sizeof *tok) == 0, "%s: trace tokens", f->name);
        olmoe_trace_window *w = xmalloc(f->n_windows * sizeof *w);
        CHECK(olmoe_trace_read_windows(t, 0, f->n_windows, w) == 0, "%s", olmoe_error());
        for (int64_t i = 0; i < f->n_windows; i++)
            CHECK(w[i].start == f->windows[3 * i] && w[i].length == f->windows[3 * i + 1] &&
                      w[i].stored_from == f->windows[3 * i + 2],
                  "%s: trace window %lld", f->name, (long long)i);
        double dr, sr;
        diff(o.router_logits, r.router_logits, N * L * E, &dr, &sr);
        double dn = nll_diff(f, o.nll, r.nll), ppl_r;
        char g[32];
        snprintf(g, sizeof g, "topk_%d", k);
        olmoe_h5_get_attr_f64(f->h5, g, "perplexity", &ppl_r);
        int am_bad = 0;
        for (size_t i = 0; i < N; i++) am_bad += o.argmax[i] != r.argmax[i];
        double rel = fabs(in->perplexity - ppl_r) / ppl_r;
        printf("# %-18s top-%-2d olmoe-capture trace: router %.2e, nll %.2e, ppl rel %.1e\n", f->name, k, dr / sr, dn,
               rel);
        CHECK(dr <= TOL_SCALE * sr && dn <= TOL_NLL && rel <= TOL_PPL && am_bad == 0,
              "%s top-%d trace: router %.3g/%.3g nll %.3g ppl rel %.3g argmax %d", f->name, k, dr, sr, dn, rel, am_bad);
        free(w), free(tok);
        arrays_free(&r);
        arrays_free(&o);
    }
    olmoe_trace_close(t);
}

static hf_fixture fx[32];
static olmoe_model models[32];
static int n_fx;

static void load_fixtures(void) {
    const char *root = check_fixture_dir();
    char *names[64];
    int nn = hf_fixture_names(root, NULL, names, 64);
    for (int i = 0; i < nn && n_fx < 32; i++) {
        char *dir = olmoe_path_join(root, names[i]);
        if (hf_fixture_open(&fx[n_fx], dir, names[i]) != 0 || olmoe_model_open(dir, &models[n_fx]) != 0) {
            CHECK(0, "%s: %s", names[i], olmoe_error());
        } else {
            n_fx++;
        }
        free(dir);
    }
    for (int i = 0; i < nn; i++) free(names[i]);
}

static void test_fixtures_present(void) {
    load_fixtures();
    /* the five models of make_fixtures.py; fewer means the fixtures are missing */
    CHECK(n_fx >= 5, "only %d HF fixtures under %s", n_fx, check_fixture_dir());
}

static void test_inputs(void) {
    for (int i = 0; i < n_fx; i++) check_inputs(&fx[i], &models[i]);
}

static void test_engine_vs_hf(void) {
    for (int i = 0; i < n_fx; i++)
        for (int j = 0; j < fx[i].n_topks; j++) compare_engine(&fx[i], &models[i], fx[i].topks[j]);
}

static void test_generate(void) {
    for (int i = 0; i < n_fx; i++) check_generate(&fx[i], &models[i]);
}

static void test_capture_vs_hf(void) {
    const char *base = getenv("TMPDIR");
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/olmoe-hf.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp)) die("mkdtemp failed");
    for (int i = 0; i < n_fx; i++)
        for (int j = 0; j < fx[i].n_topks; j++) compare_cli(&fx[i], &models[i], fx[i].topks[j], tmp);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
}

int main(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    RUN(test_fixtures_present);
    RUN(test_inputs);
    RUN(test_engine_vs_hf);
    RUN(test_generate);
    RUN(test_capture_vs_hf);
    for (int i = 0; i < n_fx; i++) {
        olmoe_model_close(&models[i]);
        hf_fixture_close(&fx[i]);
    }
    return check_summary();
}
