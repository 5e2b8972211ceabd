/* test_forward_ref.c: the CPU engine against a naive forward pass written
 * here in double precision, token by token, straight from docs/DESIGN.md §4
 * and the four architectures' definitions (no GEMMs, no grouping, no
 * blocking), on tiny random checkpoints written by the test: every layout,
 * dtype, GQA, clip_qkv, norm_topk_prob, tied embeddings, batched and single
 * windows, a custom routing hook; Qwen3-MoE's per-head q/k norm and dense
 * layers, Mixtral's softmax over the selected logits and its names, Qwen2-MoE's
 * q/k/v biases and sigmoid-gated shared expert, each also through the KV-cache
 * decoder. (The HF
 * fixtures test, test_forward_hf.c, checks the semantics against
 * transformers itself; this one checks our arithmetic at every position.)
 *
 * Also: `test_forward_ref --write-model DIR [ARCH [dense]]` writes a tiny
 * model (of OLMoE, or of model_type ARCH with GQA and Qwen2-MoE's shared
 * expert; "dense": layer 1 without experts) for the shell tests and exits. */
#include "check.h"
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "test_capture_tiny.h"

typedef struct {
    double *router_logits; /* [n, L, E] */
    double *logits;        /* [n, V] */
    double *nll;           /* [n] */
    double *attn;          /* [n, L, D] */
} ref_out;

static void rmsnorm_d(const double *x, const float *w, double *out, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double inv = 1 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) out[i] = w[i] * (x[i] * inv);
}

static void matvec(const float *W, const double *x, double *y, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += (double)W[(size_t)r * cols + c] * x[c];
        y[r] = s;
    }
}

/* route: NULL = top-k with ties to the lower index */
typedef int (*ref_route)(int layer, const double *logits, int E, int *ex, double *w);
static int ref_k, ref_norm, ref_mixtral;

static int ref_topk(int layer, const double *r, int E, int *ex, double *w) {
    (void)layer;
    double mx = r[0], sum = 0, p[256];
    for (int e = 1; e < E; e++) mx = r[e] > mx ? r[e] : mx;
    for (int e = 0; e < E; e++) sum += p[e] = exp(r[e] - mx);
    for (int e = 0; e < E; e++) p[e] /= sum;
    int used[256] = {0};
    double tot = 0;
    for (int j = 0; j < ref_k; j++) {
        int b = -1;
        for (int e = 0; e < E; e++)
            if (!used[e] && (b < 0 || p[e] > p[b])) b = e;
        used[b] = 1;
        ex[j] = b;
        w[j] = p[b];
        tot += p[b];
    }
    if (ref_norm)
        for (int j = 0; j < ref_k; j++) w[j] /= tot;
    if (ref_mixtral) { /* Mixtral's own words: a softmax over the selected logits */
        double m2 = r[ex[0]], s2 = 0;
        for (int j = 0; j < ref_k; j++) s2 += exp(r[ex[j]] - m2);
        for (int j = 0; j < ref_k; j++) w[j] = exp(r[ex[j]] - m2) / s2;
    }
    return ref_k;
}

/* y = down(silu(gate x) * up x), width F */
static void swiglu_d(const float *gw, const float *uw, const float *dw, const double *x, int D, int F,
                     double *y) {
    double *g = xmalloc(F * sizeof *g), *u = xmalloc(F * sizeof *u);
    matvec(gw, x, g, F, D);
    matvec(uw, x, u, F, D);
    for (int f = 0; f < F; f++) g[f] = g[f] / (1 + exp(-g[f])) * u[f];
    matvec(dw, g, y, D, F);
    free(g), free(u);
}

/* the feed-forward half for one token: a dense MLP, or the routed experts plus
 * Qwen2-MoE's shared expert scaled by sigmoid(shared_expert_gate . x) */
static void ffn_d(const tt_model *tm, const tt_layer *W, int l, const double *x, ref_route route,
                  double *rl /*[E]*/, double *out /*[D]*/) {
    const tt_cfg *c = &tm->c;
    int D = c->D, E = c->E;
    double *y = xmalloc(D * sizeof *y);
    for (int d = 0; d < D; d++) out[d] = 0;
    if (!W->router) {
        for (int e = 0; e < E; e++) rl[e] = 0;
        swiglu_d(W->mlp_gate, W->mlp_up, W->mlp_down, x, D, c->DI, out);
        free(y);
        return;
    }
    matvec(W->router, x, rl, E, D);
    int ex[256];
    double wt[256];
    int cnt = route(l, rl, E, ex, wt);
    for (int j = 0; j < cnt; j++) {
        swiglu_d(W->gate[ex[j]], W->up[ex[j]], W->down[ex[j]], x, D, c->I, y);
        for (int d = 0; d < D; d++) out[d] += wt[j] * y[d];
    }
    if (W->shared_gate) {
        double z = 0;
        for (int d = 0; d < D; d++) z += W->shared_gate[d] * x[d];
        swiglu_d(W->mlp_gate, W->mlp_up, W->mlp_down, x, D, c->SI, y);
        for (int d = 0; d < D; d++) out[d] += y[d] / (1 + exp(-z));
    }
    free(y);
}

static void reference(const tt_model *tm, const int32_t *tok, int n, ref_route route, ref_out *o) {
    const tt_cfg *c = &tm->c;
    int D = c->D, E = c->E, L = c->L, V = c->V, H = c->H, KVH = c->KVH, hd = c->hd;
    int QD = H * hd, KD = KVH * hd;
    double *h = xcalloc((size_t)n * D, sizeof *h), *x = xmalloc(D * sizeof *x);
    double *q = xmalloc((size_t)n * QD * sizeof *q), *k = xmalloc((size_t)n * KD * sizeof *k);
    double *v = xmalloc((size_t)n * KD * sizeof *v), *att = xmalloc(QD * sizeof *att), *a = xmalloc(D * sizeof *a);
    double *sc = xmalloc(n * sizeof *sc);
    double *r = xmalloc(E * sizeof *r), *lg = xmalloc(V * sizeof *lg);
    for (int i = 0; i < n; i++)
        for (int d = 0; d < D; d++) h[(size_t)i * D + d] = tm->embed[(size_t)tok[i] * D + d];
    for (int l = 0; l < L; l++) {
        const tt_layer *W = &tm->layers[l];
        for (int i = 0; i < n; i++) {
            rmsnorm_d(h + (size_t)i * D, W->input_norm, x, D, c->eps);
            double *qi = q + (size_t)i * QD, *ki = k + (size_t)i * KD, *vi = v + (size_t)i * KD;
            matvec(W->wq, x, qi, QD, D);
            matvec(W->wk, x, ki, KD, D);
            matvec(W->wv, x, vi, KD, D);
            if (W->q_bias) {
                for (int j = 0; j < QD; j++) qi[j] += W->q_bias[j];
                for (int j = 0; j < KD; j++) ki[j] += W->k_bias[j], vi[j] += W->v_bias[j];
            }
            if (c->arch == TT_OLMOE) {
                rmsnorm_d(qi, W->q_norm, qi, QD, c->eps);
                rmsnorm_d(ki, W->k_norm, ki, KD, c->eps);
            } else if (c->arch == TT_QWEN3) {
                for (int hh = 0; hh < H; hh++) rmsnorm_d(qi + hh * hd, W->q_norm, qi + hh * hd, hd, c->eps);
                for (int hh = 0; hh < KVH; hh++) rmsnorm_d(ki + hh * hd, W->k_norm, ki + hh * hd, hd, c->eps);
            }
            if (c->clip > 0) {
                for (int j = 0; j < QD; j++) qi[j] = fmax(-c->clip, fmin(c->clip, qi[j]));
                for (int j = 0; j < KD; j++) ki[j] = fmax(-c->clip, fmin(c->clip, ki[j]));
                for (int j = 0; j < KD; j++) vi[j] = fmax(-c->clip, fmin(c->clip, vi[j]));
            }
            /* rotate_half: pairs (j, j + hd/2) of each head, angle i * theta^(-2j/hd) */
            for (int hh = 0; hh < H + KVH; hh++) {
                double *vec = hh < H ? qi + hh * hd : ki + (hh - H) * hd;
                for (int j = 0; j < hd / 2; j++) {
                    double ang = i * pow(c->theta, -2.0 * j / hd), a0 = vec[j], a1 = vec[j + hd / 2];
                    vec[j] = a0 * cos(ang) - a1 * sin(ang);
                    vec[j + hd / 2] = a1 * cos(ang) + a0 * sin(ang);
                }
            }
        }
        for (int i = 0; i < n; i++) {
            for (int hh = 0; hh < H; hh++) {
                int kv = hh / (H / KVH);
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    double s = 0;
                    for (int d = 0; d < hd; d++) s += q[(size_t)i * QD + hh * hd + d] * k[(size_t)j * KD + kv * hd + d];
                    sc[j] = s / sqrt((double)hd);
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j <= i; j++) sum += sc[j] = exp(sc[j] - mx);
                for (int d = 0; d < hd; d++) {
                    double s = 0;
                    for (int j = 0; j <= i; j++) s += sc[j] / sum * v[(size_t)j * KD + kv * hd + d];
                    att[hh * hd + d] = s;
                }
            }
            matvec(W->wo, att, a, D, QD);
            for (int d = 0; d < D; d++) {
                if (o->attn) o->attn[((size_t)i * L + l) * D + d] = a[d];
                h[(size_t)i * D + d] += a[d];
            }
        }
        for (int i = 0; i < n; i++) {
            double *hi = h + (size_t)i * D;
            rmsnorm_d(hi, W->post_norm, x, D, c->eps);
            double moe[4096];
            ffn_d(tm, W, l, x, route, r, moe);
            for (int e = 0; e < E; e++) o->router_logits[((size_t)i * L + l) * E + e] = r[e];
            for (int d = 0; d < D; d++) hi[d] += moe[d];
        }
    }
    for (int i = 0; i < n; i++) {
        rmsnorm_d(h + (size_t)i * D, tm->final_norm, x, D, c->eps);
        matvec(tm->lm_head, x, lg, V, D);
        double mx = lg[0], sum = 0;
        for (int t = 0; t < V; t++) mx = fmax(mx, lg[t]);
        for (int t = 0; t < V; t++) sum += exp(lg[t] - mx);
        if (o->logits) memcpy(o->logits + (size_t)i * V, lg, V * sizeof *lg);
        o->nll[i] = i + 1 < n ? mx + log(sum) - lg[tok[i + 1]] : NAN;
    }
    free(h), free(x), free(q), free(k), free(v), free(att), free(a), free(sc), free(r);
    free(lg);
}

/* max |a - b| / max(max |b|, tiny) */
static double rel_diff(const float *a, const double *b, size_t n) {
    double md = 0, sc = 1e-30;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs(a[i] - b[i]));
        sc = fmax(sc, fabs(b[i]));
    }
    return md / sc;
}

/* the KV-cache decoder, one token a step, against the whole-window forward */
static void check_decode(olmoe_engine *e, const olmoe_window_io *w, int V, int E, int L, const char *what) {
    olmoe_decode *d;
    if (olmoe_engine_decode_begin(e, OLMOE_DECODE_AUTO, &d) != 0) {
        CHECK(0, "%s: %s", what, olmoe_error());
        return;
    }
    float *lg = xmalloc(V * sizeof *lg), *rl = xmalloc((size_t)L * E * sizeof *rl);
    double worst = 0, worst_r = 0;
    for (int p = 0; p < w->n; p++) {
        olmoe_decode_io io = {.logits = lg, .router_logits = rl};
        CHECK(olmoe_engine_decode_step(d, w->tokens + p, 1, &io) == 0, "%s: %s", what, olmoe_error());
        double md = 0, sc = 1e-30, mr = 0, sr = 1e-30;
        for (int t = 0; t < V; t++) {
            md = fmax(md, fabs(lg[t] - w->logits[(size_t)p * V + t]));
            sc = fmax(sc, fabs(w->logits[(size_t)p * V + t]));
        }
        for (int j = 0; j < L * E; j++) {
            mr = fmax(mr, fabs(rl[j] - w->router_logits[(size_t)p * L * E + j]));
            sr = fmax(sr, fabs(w->router_logits[(size_t)p * L * E + j]));
        }
        worst = fmax(worst, md / sc), worst_r = fmax(worst_r, mr / sr);
    }
    olmoe_engine_decode_end(d);
    printf("# %-34s KV decode vs forward: logits %.2e router %.2e\n", what, worst, worst_r);
    CHECK(worst <= 1e-5 && worst_r <= 1e-5, "%s: decode logits %.3g router %.3g", what, worst, worst_r);
    free(lg), free(rl);
}

static char *scratch;
static int dir_no;

/* the engine over windows of these lengths (batched as given) vs the reference */
static void run_case(tt_cfg c, const int *lens, int nw, int batch, const char *what) {
    tt_model tm;
    tt_model_make(&tm, &c, 1000 + dir_no);
    char name[32];
    snprintf(name, sizeof name, "f%d", dir_no++);
    char *dir = olmoe_path_join(scratch, name);
    tt_model_write(&tm, dir);
    olmoe_model m;
    if (olmoe_model_open(dir, &m) != 0) {
        CHECK(0, "%s: %s", what, olmoe_error());
        tt_model_free(&tm);
        free(dir);
        return;
    }
    int maxn = 0, tot = 0;
    for (int i = 0; i < nw; i++) maxn = lens[i] > maxn ? lens[i] : maxn, tot += lens[i];
    olmoe_engine_opts eo = {.device = "cpu", .max_ctx = maxn, .max_tokens = maxn * batch};
    olmoe_engine *e;
    CHECK(olmoe_engine_open(&m, &eo, &e) == 0, "%s: %s", what, olmoe_error());
    int L = c.L, E = c.E, V = c.V, D = c.D;
    int32_t *tok = xmalloc(tot * sizeof *tok);
    for (int i = 0; i < tot; i++) tok[i] = (int32_t)(tt_uniform() * V);
    olmoe_window_io *io = xcalloc(nw, sizeof *io);
    for (int i = 0, off = 0; i < nw; off += lens[i], i++) {
        io[i].n = lens[i];
        io[i].tokens = tok + off;
        io[i].router_logits = xmalloc((size_t)lens[i] * L * E * sizeof(float));
        io[i].logits = xmalloc((size_t)lens[i] * V * sizeof(float));
        io[i].nll = xmalloc(lens[i] * sizeof(float));
        io[i].argmax = xmalloc(lens[i] * sizeof(int32_t));
        io[i].attn_residual = xmalloc((size_t)lens[i] * L * D * sizeof(float));
    }
    for (int b = 0; b < nw; b += batch)
        CHECK(olmoe_engine_forward(e, io + b, nw - b < batch ? nw - b : batch) == 0, "%s: %s", what, olmoe_error());
    ref_k = c.k, ref_norm = c.norm, ref_mixtral = c.arch == TT_MIXTRAL;
    double worst_r = 0, worst_l = 0, worst_a = 0, worst_n = 0;
    for (int i = 0; i < nw; i++) {
        int n = lens[i];
        ref_out o = {xmalloc((size_t)n * L * E * sizeof(double)), xmalloc((size_t)n * V * sizeof(double)),
                     xmalloc(n * sizeof(double)), xmalloc((size_t)n * L * D * sizeof(double))};
        reference(&tm, io[i].tokens, n, ref_topk, &o);
        worst_r = fmax(worst_r, rel_diff(io[i].router_logits, o.router_logits, (size_t)n * L * E));
        worst_l = fmax(worst_l, rel_diff(io[i].logits, o.logits, (size_t)n * V));
        worst_a = fmax(worst_a, rel_diff(io[i].attn_residual, o.attn, (size_t)n * L * D));
        for (int p = 0; p < n; p++) {
            if (p + 1 < n)
                worst_n = fmax(worst_n, fabs(io[i].nll[p] - o.nll[p]));
            else
                CHECK(isnan(io[i].nll[p]), "%s: last nll not NaN", what);
            /* argmax of our logits, first index on ties */
            int am = 0;
            for (int t = 1; t < V; t++)
                if (io[i].logits[(size_t)p * V + t] > io[i].logits[(size_t)p * V + am]) am = t;
            CHECK(io[i].argmax[p] == am, "%s: argmax %d vs %d", what, io[i].argmax[p], am);
        }
        free(o.router_logits), free(o.logits), free(o.nll), free(o.attn);
    }
    printf("# %-34s max rel diff: router %.2e logits %.2e attn %.2e; max |nll diff| %.2e\n", what, worst_r,
           worst_l, worst_a, worst_n);
    if (c.arch != TT_OLMOE) check_decode(e, &io[nw - 1], V, E, L, what);
    CHECK(worst_r <= 1e-5 && worst_l <= 1e-5 && worst_a <= 1e-5 && worst_n <= 1e-5,
          "%s: router %.3g logits %.3g attn %.3g nll %.3g", what, worst_r, worst_l, worst_a, worst_n);
    for (int i = 0; i < nw; i++) {
        free(io[i].router_logits), free(io[i].logits), free(io[i].nll), free(io[i].argmax);
        free(io[i].attn_residual);
    }
    free(io);
    free(tok);
    olmoe_engine_close(e);
    olmoe_model_close(&m);
    tt_model_free(&tm);
    free(dir);
}

static void test_plain(void) {
    int lens[] = {17, 1, 70, 5};
    run_case(tt_default_cfg(), lens, 4, 1, "hub f32, one window per call");
    run_case(tt_default_cfg(), lens, 4, 4, "hub f32, four windows per call");
}

static void test_variants(void) {
    int lens[] = {33, 9, 80};
    tt_cfg c = tt_default_cfg();
    c.clip = 0.9, c.norm = 1;
    run_case(c, lens, 3, 2, "clip_qkv 0.9, norm_topk_prob");
    c = tt_default_cfg();
    c.dtype = TT_BF16, c.fused = 1, c.tie = 1, c.shards = 2;
    run_case(c, lens, 3, 3, "bf16 fused tied sharded");
    c = tt_default_cfg();
    c.dtype = TT_F16, c.KVH = 2, c.hd = 12, c.k = 8, c.L = 3;
    run_case(c, lens, 3, 1, "f16 GQA head_dim 12 top-8 of 8");
    c = tt_default_cfg();
    c.k = 1, c.theta = 500000, c.rope_params = 1;
    run_case(c, lens, 3, 2, "top-1, theta 5e5");
}

static void test_architectures(void) {
    int lens[] = {33, 9, 80};
    tt_cfg c = tt_default_cfg();
    c.arch = TT_QWEN3, c.KVH = 2, c.hd = 12, c.norm = 1, c.L = 3, c.dense = 1u << 1, c.DI = 40;
    c.theta = 1e6, c.eps = 1e-6;
    run_case(c, lens, 3, 2, "qwen3_moe GQA, q/k norm per head, dense layer 1");
    c.fused = 1, c.dtype = TT_BF16, c.dense = 0;
    run_case(c, lens, 3, 3, "qwen3_moe bf16 fused, no dense layer");
    c = tt_default_cfg();
    c.arch = TT_MIXTRAL, c.KVH = 2, c.E = 4, c.k = 2;
    run_case(c, lens, 3, 2, "mixtral GQA, w1/w3/w2, block_sparse_moe");
    c.fused = 1, c.k = 3;
    run_case(c, lens, 3, 1, "mixtral fused (v5 names), top-3");
    c = tt_default_cfg();
    c.arch = TT_QWEN2, c.KVH = 2, c.k = 4, c.L = 3, c.dense = 1u << 0, c.DI = 40, c.SI = 48;
    run_case(c, lens, 3, 2, "qwen2_moe q/k/v bias, shared expert, dense 0");
    c.fused = 1, c.dense = 0, c.norm = 1, c.dtype = TT_F16;
    run_case(c, lens, 3, 3, "qwen2_moe f16 fused, norm_topk_prob");
}

/* a routing hook: experts chosen by a rule, not by the logits */
typedef struct {
    int calls, E;
} fixed_ctx;

static int fixed_route(void *ctx, int layer, int64_t pos, const float *logits, int E, int *ex, float *w) {
    (void)logits, (void)pos;
    fixed_ctx *f = ctx;
    f->calls++;
    f->E = E;
    ex[0] = (layer + 1) % E, w[0] = 0.75f;
    ex[1] = (layer + 3) % E, w[1] = 0.5f;
    return 2;
}

static int fixed_ref(int layer, const double *r, int E, int *ex, double *w) {
    (void)r;
    ex[0] = (layer + 1) % E, w[0] = 0.75;
    ex[1] = (layer + 3) % E, w[1] = 0.5;
    return 2;
}

static int bad_route(void *ctx, int layer, int64_t pos, const float *logits, int E, int *ex, float *w) {
    (void)ctx, (void)layer, (void)logits, (void)pos;
    ex[0] = E, w[0] = 1;
    return 1;
}

static void test_hook(void) {
    tt_cfg c = tt_default_cfg();
    c.k = 3; /* the hook may choose fewer than max_k */
    tt_model tm;
    tt_model_make(&tm, &c, 77);
    char *dir = olmoe_path_join(scratch, "hook");
    tt_model_write(&tm, dir);
    olmoe_model m;
    if (olmoe_model_open(dir, &m) != 0) die("%s", olmoe_error());
    fixed_ctx fc = {0, 0};
    olmoe_engine_opts eo = {.device = "cpu", .max_ctx = 20, .max_tokens = 20, .route = fixed_route, .route_ctx = &fc};
    olmoe_engine *e;
    CHECK(olmoe_engine_open(&m, &eo, &e) == 0, "%s", olmoe_error());
    int32_t tok[20];
    for (int i = 0; i < 20; i++) tok[i] = (i * 7) % c.V;
    float rl[20 * 2 * 8], nll[20];
    olmoe_window_io io = {.n = 20, .tokens = tok, .router_logits = rl, .nll = nll};
    CHECK(olmoe_engine_forward(e, &io, 1) == 0, "%s", olmoe_error());
    CHECK(fc.calls == 20 * c.L && fc.E == c.E, "hook called %d times", fc.calls);
    double rr[20 * 2 * 8], rn[20];
    ref_out o = {rr, NULL, rn, NULL};
    reference(&tm, tok, 20, fixed_ref, &o);
    double wn = 0;
    for (int i = 0; i < 19; i++) wn = fmax(wn, fabs(nll[i] - rn[i]));
    CHECK(rel_diff(rl, rr, 20 * 2 * 8) < 1e-5 && wn < 1e-5, "hook: nll diff %.3g", wn);
    olmoe_engine_close(e);

    eo.route = bad_route;
    CHECK(olmoe_engine_open(&m, &eo, &e) == 0, "%s", olmoe_error());
    CHECK(olmoe_engine_forward(e, &io, 1) != 0 && strstr(olmoe_error(), "layer 0: the routing policy chose expert 8 of 8"),
          "bad hook: %s", olmoe_error());
    /* engine-level checks */
    int32_t badtok[2] = {1, c.V};
    olmoe_window_io bio = {.n = 2, .tokens = badtok};
    CHECK(olmoe_engine_forward(e, &bio, 1) != 0 && strstr(olmoe_error(), "token id 97 is outside"), "%s",
          olmoe_error());
    olmoe_window_io big = {.n = 21, .tokens = tok};
    CHECK(olmoe_engine_forward(e, &big, 1) != 0, "window longer than max_ctx accepted");
    olmoe_engine_close(e);
    eo.route = NULL, eo.device = "tpu";
    CHECK(olmoe_engine_open(&m, &eo, &e) != 0 && strstr(olmoe_error(), "unknown device 'tpu'"), "%s", olmoe_error());
    eo.device = "cuda";
    CHECK(olmoe_engine_open(&m, &eo, &e) != 0 && strstr(olmoe_error(), "cuda"), "%s", olmoe_error());
    eo.device = "cpu", eo.top_k = 9;
    CHECK(olmoe_engine_open(&m, &eo, &e) != 0 && strstr(olmoe_error(), "top-k 9"), "%s", olmoe_error());
    olmoe_model_close(&m);
    tt_model_free(&tm);
    free(dir);
}

static void test_topk_ties(void) {
    float lg[6] = {1, 3, 3, 0, 3, -1};
    int ex[4];
    float w[4];
    olmoe_topk_route r = {4, 0};
    CHECK(olmoe_route_topk(&r, 0, -1, lg, 6, ex, w) == 4, "count");
    CHECK(ex[0] == 1 && ex[1] == 2 && ex[2] == 4 && ex[3] == 0, "ties toward the lower index: %d %d %d %d", ex[0],
          ex[1], ex[2], ex[3]);
    double z = 3 * exp(3.0) + exp(1.0) + exp(0.0) + exp(-1.0);
    CHECK_CLOSE(w[0], exp(3.0) / z, 1e-6, "weight is the softmax probability");
    CHECK_CLOSE(w[3], exp(1.0) / z, 1e-6, "weight of expert 0");
    r.norm = 1;
    olmoe_route_topk(&r, 0, -1, lg, 6, ex, w);
    CHECK_CLOSE(w[0] + w[1] + w[2] + w[3], 1.0, 1e-6, "renormalised");
    CHECK_CLOSE(w[0], exp(3.0) / (3 * exp(3.0) + exp(1.0)), 1e-6, "renormalised weight");
}

int main(int argc, char **argv) {
    if (argc >= 3 && argc <= 5 && strcmp(argv[1], "--write-model") == 0) {
        tt_cfg c = tt_default_cfg();
        if (argc >= 4) { /* another architecture, with each of its parts */
            for (c.arch = 0; c.arch < 4 && strcmp(argv[3], tt_arch_names[c.arch]) != 0; c.arch++) {}
            if (c.arch == 4) die("--write-model: unknown architecture '%s'", argv[3]);
            c.KVH = c.arch == TT_OLMOE ? c.KVH : 2, c.L = 3, c.DI = 40, c.SI = 48;
            if (argc == 5 && strcmp(argv[4], "dense") == 0) c.dense = 1u << 1; /* Qwen's */
        }
        tt_model tm;
        tt_model_make(&tm, &c, 3);
        tt_model_write(&tm, argv[2]);
        tt_model_free(&tm);
        return 0;
    }
    scratch = tt_tmpdir();
    RUN(test_topk_ties);
    RUN(test_plain);
    RUN(test_variants);
    RUN(test_architectures);
    RUN(test_hook);
    tt_rmdir(scratch);
    free(scratch);
    return check_summary();
}
