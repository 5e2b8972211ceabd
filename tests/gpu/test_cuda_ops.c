/* test_cuda_ops.c: every CUDA kernel of the bf16 engine (engine/cuda_ops.h)
 * against its plain C reference (engine/ops_cpu.c, route.c, or a loop
 * written here), on fresh random inputs, several sizes including odd ones,
 * outputs poisoned with NaN before each run.
 *
 * Tolerances (normalised error ||out - ref|| / ||ref||, references in fp32
 * or double on the bf16-rounded inputs): a bf16 output after one or two
 * roundings <= 5e-3 (one rounding is at most 2^-9 relative); the experts'
 * weighted sum, rounded as transformers' bf16 index_add_, <= 1e-2; q/k norm + RoPE
 * (four roundings) <= 1e-2; flash attention (P rounded to bf16 as
 * FlashAttention does) <= 1e-2, the plain kernel <= 5e-3; NLL within 1e-4
 * absolute. Exact: embedding rows, bf16(h + a), logits rounded to bf16,
 * top-k choices (away from near-ties), the grouping by expert, argmax, rows
 * past the count left untouched. The achieved errors print as "# ..." lines. */
#include "check.h"
#include "cuda_ops.h"
#include "gpu_util.h"
#include "model.h"
#include "ops_cpu.h"

static double worst[16];
static void note(int slot, double e) {
    if (e > worst[slot]) worst[slot] = e;
}

/* ---------------------------------------------------------------- norms */

static void rmsnorm_case(int T, int D) {
    float eps = 1e-5f;
    size_t n = (size_t)T * D, V = 50;
    float *hf = xmalloc(n * 4), *af = xmalloc(n * 4), *wf = xmalloc(D * 4), *ef = xmalloc(V * D * 4);
    uint16_t *h = rand_bf16(n, 0, 2.0, hf), *a = rand_bf16(n, 0, 1.0, af), *w = rand_bf16(D, 1, 0.3, wf);
    uint16_t *emb = rand_bf16(V * D, 0, 1.0, ef);
    int32_t *tok = xmalloc(T * 4);
    for (int t = 0; t < T; t++) tok[t] = (int32_t)(rnd_u() * V);
    uint16_t *dh = gpu_dup(h, n * 2), *da = gpu_dup(a, n * 2), *dw = gpu_dup(w, D * 2), *dx = gpu_alloc(n * 2);
    uint16_t *out = xmalloc(n * 2), *outh = xmalloc(n * 2);
    float *ref = xmalloc(n * 4), *hs = xmalloc(n * 4);

    /* embedding + norm */
    uint16_t *demb = gpu_dup(emb, V * D * 2), *dh2 = gpu_alloc(n * 2);
    int32_t *dtok = gpu_dup(tok, T * 4);
    GPU_OK(olmoe_cuda_embed_rmsnorm(dtok, demb, dw, dh2, dx, T, D, eps, 0));
    gpu_sync("embed_rmsnorm");
    gpu_get(outh, dh2, n * 2);
    gpu_get(out, dx, n * 2);
    int same = 1;
    for (int t = 0; t < T; t++) {
        same &= memcmp(outh + (size_t)t * D, emb + (size_t)tok[t] * D, D * 2) == 0;
        memcpy(hs + (size_t)t * D, ef + (size_t)tok[t] * D, D * 4);
    }
    CHECK(same, "embed_rmsnorm T=%d D=%d: h is not the embedding rows", T, D);
    olmoe_rmsnorm(hs, wf, ref, T, D, eps);
    double e = nerr_bf(out, ref, n);
    note(0, e);
    CHECK(e <= 5e-3, "embed_rmsnorm T=%d D=%d: x error %.3g", T, D, e);

    /* residual add + norm */
    GPU_OK(olmoe_cuda_add_rmsnorm(dh, da, dw, dx, T, D, eps, 0));
    gpu_sync("add_rmsnorm");
    gpu_get(outh, dh, n * 2);
    gpu_get(out, dx, n * 2);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t want = olmoe_bf16_from_f32(hf[i] + af[i]);
        bad += outh[i] != want;
        hs[i] = olmoe_bf16_to_f32(want);
    }
    CHECK(bad == 0, "add_rmsnorm T=%d D=%d: %zu of h are not bf16(h + a)", T, D, bad);
    olmoe_rmsnorm(hs, wf, ref, T, D, eps);
    e = nerr_bf(out, ref, n);
    note(0, e);
    CHECK(e <= 5e-3, "add_rmsnorm T=%d D=%d: x error %.3g", T, D, e);

    /* experts' weighted sum gathered per token + residual + norm */
    int K = 1 + (int)(rnd_u() * 8), S = T * K;
    float *yf = xmalloc((size_t)S * D * 4), *wt = xmalloc((size_t)T * K * 4);
    uint16_t *y = rand_bf16((size_t)S * D, 0, 1.0, yf);
    int32_t *slot = xmalloc((size_t)T * K * 4), *nsel = xmalloc(T * 4);
    for (int t = 0; t < T; t++) {
        nsel[t] = 1 + (int)(rnd_u() * K);
        for (int j = 0; j < K; j++) {
            slot[t * K + j] = j < nsel[t] ? (int32_t)(rnd_u() * S) : -1;
            wt[t * K + j] = j < nsel[t] ? (float)rnd_u() : 0;
        }
    }
    gpu_put(dh, h, n * 2);
    uint16_t *dy = gpu_dup(y, (size_t)S * D * 2);
    int32_t *dslot = gpu_dup(slot, (size_t)T * K * 4), *dn = gpu_dup(nsel, T * 4);
    float *dwt = gpu_dup(wt, (size_t)T * K * 4);
    GPU_OK(olmoe_cuda_combine_rmsnorm(dh, dy, dslot, dwt, dn, K, dw, dx, T, D, eps, 0));
    gpu_sync("combine_rmsnorm");
    gpu_get(outh, dh, n * 2);
    gpu_get(out, dx, n * 2);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D; i++) {
            double m = 0;
            for (int j = 0; j < nsel[t]; j++) m += (double)wt[t * K + j] * yf[(size_t)slot[t * K + j] * D + i];
            hs[(size_t)t * D + i] = (float)(hf[(size_t)t * D + i] + m);
        }
    e = nerr_bf(outh, hs, n);
    note(1, e);
    /* up to 2K + 1 bf16 roundings, as transformers' bf16 index_add_ */
    CHECK(e <= 1e-2, "combine_rmsnorm T=%d D=%d K=%d: h error %.3g", T, D, K, e);
    bf16_to_float(outh, hs, n); /* the norm of the h it wrote */
    olmoe_rmsnorm(hs, wf, ref, T, D, eps);
    e = nerr_bf(out, ref, n);
    note(1, e);
    CHECK(e <= 5e-3, "combine_rmsnorm T=%d D=%d: x error %.3g", T, D, e);

    free(hf), free(af), free(wf), free(ef), free(h), free(a), free(w), free(emb), free(tok), free(out);
    free(outh), free(ref), free(hs), free(yf), free(wt), free(y), free(slot), free(nsel);
    gpu_free_all();
}

static void test_rmsnorm(void) {
    int sizes[][2] = {{1, 32}, {7, 96}, {64, 2048}, {5, 37}, {3, 1000}, {33, 64}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) rmsnorm_case(sizes[i][0], sizes[i][1]);
    printf("# rmsnorm kernels: worst error %.2e (norms), %.2e (combine)\n", worst[0], worst[1]);
}

/* ---------------------------------------------------------------- q/k norm + rope */

static void rope_case(int T, int Hq, int Hkv, int hd, int pad, float clip) {
    int QD = Hq * hd, KD = Hkv * hd, ld = QD + 2 * KD + pad, C = 300, half = hd / 2;
    float eps = 1e-5f;
    size_t n = (size_t)T * ld;
    float *xf = xmalloc(n * 4), *qnf = xmalloc(QD * 4), *knf = xmalloc(KD * 4);
    uint16_t *x = rand_bf16(n, 0, 1.5, xf), *qn = rand_bf16(QD, 1, 0.3, qnf), *kn = rand_bf16(KD, 1, 0.3, knf);
    int32_t *pos = xmalloc(T * 4);
    for (int t = 0; t < T; t++) pos[t] = (int32_t)(rnd_u() * C);
    float *ct = xmalloc((size_t)C * half * 4), *st = xmalloc((size_t)C * half * 4);
    olmoe_rope_table(C, hd, 10000.0, ct, st);
    uint16_t *dx = gpu_dup(x, n * 2), *dqn = gpu_dup(qn, QD * 2), *dkn = gpu_dup(kn, KD * 2);
    float *dct = gpu_dup(ct, (size_t)C * half * 4), *dst = gpu_dup(st, (size_t)C * half * 4);
    int32_t *dpos = gpu_dup(pos, T * 4);
    GPU_OK(olmoe_cuda_qk_norm_rope(dx, ld, QD, KD, hd, dqn, dkn, dct, dst, dpos, eps, clip, T, 0));
    gpu_sync("qk_norm_rope");
    uint16_t *out = xmalloc(n * 2);
    gpu_get(out, dx, n * 2);
    /* reference: norm over the whole projection, clamp, rotate */
    float *ref = xmalloc(n * 4);
    memcpy(ref, xf, n * 4);
    for (int t = 0; t < T; t++) {
        float *q = ref + (size_t)t * ld, *k = q + QD, *v = k + KD;
        olmoe_rmsnorm(q, qnf, q, 1, QD, eps);
        olmoe_rmsnorm(k, knf, k, 1, KD, eps);
        if (clip > 0) olmoe_clamp(q, QD + 2 * KD, clip);
        (void)v;
        olmoe_rope_apply(q, 1, Hq, hd, ld, ct + (size_t)pos[t] * half, st + (size_t)pos[t] * half);
        olmoe_rope_apply(k, 1, Hkv, hd, ld, ct + (size_t)pos[t] * half, st + (size_t)pos[t] * half);
    }
    float *o = xmalloc(n * 4);
    bf16_to_float(out, o, n);
    double num = 0, den = 0;
    size_t vbad = 0, padbad = 0;
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < QD + KD; i++) {
            double d = (double)o[(size_t)t * ld + i] - ref[(size_t)t * ld + i];
            num += isfinite(o[(size_t)t * ld + i]) ? d * d : INFINITY;
            den += (double)ref[(size_t)t * ld + i] * ref[(size_t)t * ld + i];
        }
        for (int i = QD + KD; i < QD + 2 * KD; i++) /* v: untouched, or clamped exactly */
            vbad += o[(size_t)t * ld + i] != bfr(ref[(size_t)t * ld + i]);
        for (int i = QD + 2 * KD; i < ld; i++) padbad += out[(size_t)t * ld + i] != x[(size_t)t * ld + i];
    }
    double e = sqrt(num / den);
    note(2, e);
    CHECK(e <= 1e-2, "qk_norm_rope T=%d H=%d/%d hd=%d clip=%g: q/k error %.3g", T, Hq, Hkv, hd, clip, e);
    CHECK(vbad == 0 && padbad == 0, "qk_norm_rope: %zu v values wrong, %zu padding values touched", vbad, padbad);
    free(xf), free(qnf), free(knf), free(x), free(qn), free(kn), free(pos), free(ct), free(st), free(out);
    free(ref), free(o);
    gpu_free_all();
}

static void test_qk_norm_rope(void) {
    rope_case(1, 4, 4, 16, 0, 0);
    rope_case(5, 16, 16, 128, 0, 0);
    rope_case(33, 6, 6, 16, 8, 1.5f);
    rope_case(9, 4, 2, 8, 0, 0.8f);
    rope_case(4, 3, 1, 10, 3, 0);
    printf("# qk_norm_rope: worst error %.2e\n", worst[2]);
}

/* ---------------------------------------------------------------- attention */

static void attention_ref(const float *qkv, int ld, int Hq, int Hkv, int hd, const int *off, const int *len, int W,
                          float *out) {
    int QD = Hq * hd;
    double *p = xmalloc(sizeof(double) * 8192);
    for (int w = 0; w < W; w++)
        for (int h = 0; h < Hq; h++) {
            int kvh = h / (Hq / Hkv);
            for (int i = 0; i < len[w]; i++) {
                const float *q = qkv + (size_t)(off[w] + i) * ld + (size_t)h * hd;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= i; j++) {
                    const float *k = qkv + (size_t)(off[w] + j) * ld + QD + (size_t)kvh * hd;
                    double s = 0;
                    for (int d = 0; d < hd; d++) s += (double)q[d] * k[d];
                    p[j] = s / sqrt((double)hd);
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = 0; j <= i; j++) sum += (p[j] = exp(p[j] - mx));
                for (int d = 0; d < hd; d++) {
                    double acc = 0;
                    for (int j = 0; j <= i; j++)
                        acc += p[j] * qkv[(size_t)(off[w] + j) * ld + QD + (size_t)Hkv * hd + (size_t)kvh * hd + d];
                    out[(size_t)(off[w] + i) * QD + (size_t)h * hd + d] = (float)(acc / sum);
                }
            }
        }
    free(p);
}

static void attention_case(int Hq, int Hkv, int hd, const int *len, int W, double scale) {
    int QD = Hq * hd, KD = Hkv * hd, ld = QD + 2 * KD, T = 0, max_len = 0;
    int off[16];
    for (int w = 0; w < W; w++) off[w] = T, T += len[w], max_len = len[w] > max_len ? len[w] : max_len;
    size_t n = (size_t)T * ld, no = (size_t)T * QD;
    float *xf = xmalloc(n * 4), *ref = xmalloc(no * 4);
    uint16_t *x = rand_bf16(n, 0, scale, xf);
    attention_ref(xf, ld, Hq, Hkv, hd, off, len, W, ref);
    uint16_t *dx = gpu_dup(x, n * 2), *dout = gpu_alloc(no * 2), *out = xmalloc(no * 2);
    int32_t *doff = gpu_dup(off, W * 4), *dlen = gpu_dup(len, W * 4);
    for (int variant = OLMOE_ATTN_PLAIN; variant <= OLMOE_ATTN_FLASH; variant++) {
        if (variant == OLMOE_ATTN_FLASH && !olmoe_cuda_attention_flash_ok(ld, hd)) continue;
        GPU_OK(cudaMemset(dout, 0xff, no * 2));
        GPU_OK(olmoe_cuda_attention(dx, ld, Hq, Hkv, hd, dout, doff, dlen, W, max_len, variant, 0));
        gpu_sync("attention");
        gpu_get(out, dout, no * 2);
        double e = nerr_bf(out, ref, no), tol = variant == OLMOE_ATTN_FLASH ? 1e-2 : 5e-3;
        note(variant == OLMOE_ATTN_FLASH ? 3 : 4, e);
        CHECK(e <= tol, "attention %s H=%d/%d hd=%d W=%d max_len=%d: error %.3g",
              variant == OLMOE_ATTN_FLASH ? "flash" : "plain", Hq, Hkv, hd, W, max_len, e);
    }
    free(xf), free(ref), free(x), free(out);
    gpu_free_all();
}

static void test_attention(void) {
    int a[] = {1}, b[] = {17}, c[] = {64}, d[] = {65, 3, 130}, e[] = {300, 1000, 1}, f[] = {2048};
    attention_case(4, 4, 16, a, 1, 1.0);
    attention_case(4, 4, 16, d, 3, 1.0);
    attention_case(2, 2, 128, b, 1, 1.0);
    attention_case(2, 2, 128, d, 3, 1.0);
    attention_case(4, 2, 64, c, 1, 1.0);
    attention_case(4, 2, 64, e, 3, 1.0);
    attention_case(2, 1, 32, d, 3, 2.0); /* peaky softmax */
    attention_case(3, 3, 8, d, 3, 1.0);  /* no tensor-core kernel for hd 8 */
    attention_case(2, 2, 128, f, 1, 1.0);
    printf("# attention: worst error %.2e (flash), %.2e (plain)\n", worst[3], worst[4]);
}

/* ---------------------------------------------------------------- routing */

static void route_case(int T, int E, int k, int norm, int ld) {
    size_t n = (size_t)T * ld;
    float *lg = xmalloc(n * 4);
    for (size_t i = 0; i < n; i++) lg[i] = (float)(2.0 * rnd_n());
    for (int t = 0; t < T; t += 3) lg[(size_t)t * ld + E - 1] = lg[(size_t)t * ld]; /* exact ties */
    float *dl = gpu_dup(lg, n * 4);
    int32_t *de = gpu_alloc((size_t)T * k * 4), *dn = gpu_alloc(T * 4);
    float *dw = gpu_alloc((size_t)T * k * 4);
    GPU_OK(olmoe_cuda_route_topk(dl, ld, E, k, norm, de, dw, dn, T, 0));
    gpu_sync("route_topk");
    float *rl = xmalloc(n * 4), *gw = xmalloc((size_t)T * k * 4);
    int32_t *ge = xmalloc((size_t)T * k * 4), *gn = xmalloc(T * 4);
    gpu_get(rl, dl, n * 4);
    gpu_get(ge, de, (size_t)T * k * 4);
    gpu_get(gw, dw, (size_t)T * k * 4);
    gpu_get(gn, dn, T * 4);
    size_t rbad = 0;
    int sbad = 0, skipped = 0;
    double wmax = 0;
    olmoe_topk_route r = {k, norm};
    int *ce = xmalloc((size_t)(k + 1) * 4);
    float *cw = xmalloc((size_t)(k + 1) * 4), *p = xmalloc(E * 4);
    for (int t = 0; t < T; t++) {
        float *row = lg + (size_t)t * ld;
        for (int e = 0; e < ld; e++) {
            float want = e < E ? bfr(row[e]) : row[e];
            rbad += memcmp(&rl[(size_t)t * ld + e], &want, 4) != 0;
            row[e] = want;
        }
        olmoe_route_topk(&r, 0, -1, row, E, ce, cw);
        /* near-ties (not exact ties) may order differently in fp32: skip them */
        memcpy(p, row, E * 4);
        olmoe_softmax(p, E);
        int near = 0;
        for (int e = 0; e < E; e++)
            for (int j = 0; j < k; j++)
                if (e != ce[j] && p[e] != p[ce[j]] && fabsf(p[e] - p[ce[j]]) < 1e-6f * p[ce[j]]) near = 1;
        if (near) {
            skipped++;
            continue;
        }
        if (gn[t] != k) sbad++;
        for (int j = 0; j < k; j++) {
            if (ge[(size_t)t * k + j] != ce[j]) sbad++;
            double d = fabs((double)gw[(size_t)t * k + j] - cw[j]) / (fabs(cw[j]) + 1e-30);
            wmax = d > wmax ? d : wmax;
        }
    }
    CHECK(rbad == 0, "route_topk E=%d: %zu logits not rounded to bf16 in place (or padding touched)", E, rbad);
    CHECK(sbad == 0, "route_topk T=%d E=%d k=%d norm=%d: %d choices differ from olmoe_route_topk", T, E, k, norm, sbad);
    CHECK(wmax <= 1e-5, "route_topk E=%d k=%d: weight error %.3g", E, k, wmax);
    CHECK(skipped < T / 4 + 1, "route_topk: %d of %d tokens near a tie", skipped, T);
    free(lg), free(rl), free(gw), free(ge), free(gn), free(ce), free(cw), free(p);
    gpu_free_all();
}

static void test_route_topk(void) {
    route_case(200, 64, 8, 0, 64);
    route_case(200, 64, 8, 1, 16 * 64);
    route_case(37, 8, 2, 0, 8);
    route_case(50, 60, 1, 0, 61);
    route_case(50, 256, 16, 1, 256);
    route_case(20, 16, 16, 0, 16);
}

/* ---------------------------------------------------------------- grouping */

static void bucket_case(int T, int K, int E) {
    int32_t *se = xmalloc((size_t)T * K * 4), *ns = xmalloc(T * 4);
    float *sw = xmalloc((size_t)T * K * 4);
    for (int t = 0; t < T; t++) {
        ns[t] = 1 + (int)(rnd_u() * K);
        for (int j = 0; j < K; j++) {
            int e, dup;
            do { /* distinct experts per token */
                e = (int)(rnd_u() * E);
                dup = 0;
                for (int i = 0; i < j; i++) dup |= se[t * K + i] == e;
            } while (dup);
            se[t * K + j] = j < ns[t] ? e : -1;
            sw[t * K + j] = (float)rnd_u();
        }
    }
    int32_t *dse = gpu_dup(se, (size_t)T * K * 4), *dns = gpu_dup(ns, T * 4);
    float *dsw = gpu_dup(sw, (size_t)T * K * 4);
    int32_t *blk = gpu_alloc((size_t)olmoe_cuda_bucket_scratch(T, E) * 4), *first = gpu_alloc((E + 1) * 4);
    int32_t *pt = gpu_alloc((size_t)T * K * 4), *slot = gpu_alloc((size_t)T * K * 4);
    float *pw = gpu_alloc((size_t)T * K * 4);
    GPU_OK(olmoe_cuda_bucket(dse, dsw, dns, T, K, E, blk, first, pt, pw, slot, 0));
    gpu_sync("bucket");
    int32_t *gf = xmalloc((E + 1) * 4), *gpt = xmalloc((size_t)T * K * 4), *gs = xmalloc((size_t)T * K * 4);
    float *gpw = xmalloc((size_t)T * K * 4);
    gpu_get(gf, first, (E + 1) * 4);
    gpu_get(gpt, pt, (size_t)T * K * 4);
    gpu_get(gs, slot, (size_t)T * K * 4);
    gpu_get(gpw, pw, (size_t)T * K * 4);
    /* reference: the CPU engine's stable counting sort */
    int32_t *rf = xcalloc(E + 1, 4), *fill = xmalloc(E * 4);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < ns[t]; j++) rf[se[t * K + j] + 1]++;
    for (int e = 0; e < E; e++) rf[e + 1] += rf[e];
    memcpy(fill, rf, E * 4);
    int bad = 0;
    for (int e = 0; e <= E; e++) bad += gf[e] != rf[e];
    for (int t = 0; t < T; t++)
        for (int j = 0; j < K; j++) {
            if (j >= ns[t]) {
                bad += gs[t * K + j] != -1;
                continue;
            }
            int at = fill[se[t * K + j]]++;
            bad += gpt[at] != t || gpw[at] != sw[t * K + j] || gs[t * K + j] != at;
        }
    CHECK(bad == 0, "bucket T=%d K=%d E=%d: %d entries differ from the stable counting sort", T, K, E, bad);
    free(se), free(ns), free(sw), free(gf), free(gpt), free(gs), free(gpw), free(rf), free(fill);
    gpu_free_all();
}

static void test_bucket(void) {
    bucket_case(1, 8, 64);
    bucket_case(255, 8, 64);
    bucket_case(256, 2, 8);
    bucket_case(257, 8, 64);
    bucket_case(1000, 4, 16);
    bucket_case(700, 16, 256);
}

/* ---------------------------------------------------------------- gather, silu */

static void gather_silu_case(int T, int D, int I, int S, int count) {
    float *xf = xmalloc((size_t)T * D * 4), *gf = xmalloc((size_t)S * 2 * I * 4), *ref = xmalloc((size_t)S * I * 4);
    uint16_t *x = rand_bf16((size_t)T * D, 0, 1, xf), *gu = rand_bf16((size_t)S * 2 * I, 0, 2, gf);
    int32_t *perm = xmalloc(S * 4);
    for (int r = 0; r < S; r++) perm[r] = (int32_t)(rnd_u() * T);
    uint16_t *dx = gpu_dup(x, (size_t)T * D * 2), *dout = gpu_alloc((size_t)S * D * 2);
    uint16_t *dgu = gpu_dup(gu, (size_t)S * 2 * I * 2), *dact = gpu_alloc((size_t)S * I * 2);
    int32_t *dperm = gpu_dup(perm, S * 4), *dcount = gpu_dup(&count, 4);
    GPU_OK(olmoe_cuda_gather_rows(dx, D, dperm, dcount, S, dout, 0));
    GPU_OK(olmoe_cuda_silu_mul(dgu, I, dcount, S, dact, 0));
    gpu_sync("gather/silu");
    uint16_t *out = xmalloc((size_t)S * D * 2), *act = xmalloc((size_t)S * I * 2);
    gpu_get(out, dout, (size_t)S * D * 2);
    gpu_get(act, dact, (size_t)S * I * 2);
    int bad = 0;
    for (int r = 0; r < S; r++)
        for (int i = 0; i < D; i++)
            bad += out[(size_t)r * D + i] != (r < count ? x[(size_t)perm[r] * D + i] : 0xffff);
    CHECK(bad == 0, "gather T=%d D=%d count=%d of %d: %d values wrong (or rows past the count written)", T, D, count,
          S, bad);
    for (int r = 0; r < count; r++) {
        memcpy(ref + (size_t)r * I, gf + (size_t)r * 2 * I, I * 4);
        olmoe_silu_mul(ref + (size_t)r * I, gf + (size_t)r * 2 * I + I, I);
    }
    double e = nerr_bf(act, ref, (size_t)count * I);
    note(5, e);
    CHECK(e <= 5e-3, "silu_mul I=%d: error %.3g", I, e);
    bad = 0;
    for (size_t i = (size_t)count * I; i < (size_t)S * I; i++) bad += act[i] != 0xffff;
    CHECK(bad == 0, "silu_mul: %d values past the count written", bad);
    free(xf), free(gf), free(ref), free(x), free(gu), free(perm), free(out), free(act);
    gpu_free_all();
}

static void test_gather_silu(void) {
    gather_silu_case(100, 2048, 1024, 300, 257);
    gather_silu_case(10, 36, 15, 17, 17);
    gather_silu_case(5, 64, 32, 40, 0);
    printf("# silu_mul: worst error %.2e\n", worst[5]);
}

/* ---------------------------------------------------------------- lm_head reduce */

static void head_case(int n, int V) {
    float *lf = xmalloc((size_t)n * V * 4);
    uint16_t *lg = rand_bf16((size_t)n * V, 0, 4, lf);
    int32_t *tg = xmalloc(n * 4);
    for (int r = 0; r < n; r++) {
        tg[r] = r % 4 == 3 ? -1 : (int32_t)(rnd_u() * V);
        if (r % 2) { /* a tie at the maximum: the first index must win */
            int a = (int)(rnd_u() * V), b = (int)(rnd_u() * V);
            lg[(size_t)r * V + a] = lg[(size_t)r * V + b] = olmoe_bf16_from_f32(30.0f);
            lf[(size_t)r * V + a] = lf[(size_t)r * V + b] = 30.0f;
        }
    }
    uint16_t *dl = gpu_dup(lg, (size_t)n * V * 2);
    int32_t *dt = gpu_dup(tg, n * 4), *dam = gpu_alloc(n * 4);
    float *dnll = gpu_alloc(n * 4);
    GPU_OK(olmoe_cuda_lm_head_reduce(dl, V, n, dt, dnll, dam, 0));
    gpu_sync("lm_head_reduce");
    float *nll = xmalloc(n * 4);
    int32_t *am = xmalloc(n * 4);
    gpu_get(nll, dnll, n * 4);
    gpu_get(am, dam, n * 4);
    for (int r = 0; r < n; r++) {
        int ram;
        double lse = olmoe_logsumexp(lf + (size_t)r * V, V, &ram);
        CHECK(am[r] == ram, "lm_head_reduce row %d V=%d: argmax %d, reference %d", r, V, am[r], ram);
        if (tg[r] < 0) {
            CHECK(isnan(nll[r]), "lm_head_reduce row %d: nll %g where no target", r, nll[r]);
        } else {
            double want = lse - lf[(size_t)r * V + tg[r]];
            note(6, fabs(nll[r] - want));
            CHECK(fabs(nll[r] - want) <= 1e-4 * (1 + fabs(want)), "lm_head_reduce row %d V=%d: nll %.7g vs %.7g", r, V,
                  nll[r], want);
        }
    }
    free(lf), free(lg), free(tg), free(nll), free(am);
    gpu_free_all();
}

static void test_lm_head_reduce(void) {
    head_case(1, 384);
    head_case(17, 50304);
    head_case(8, 1001);
    printf("# lm_head_reduce: worst nll error %.2e\n", worst[6]);
}

int main(void) {
    if (!gpu_present()) {
        printf("FAIL test_cuda_ops/gpu: no CUDA device\n");
        return 1;
    }
    RUN(test_rmsnorm);
    RUN(test_qk_norm_rope);
    RUN(test_attention);
    RUN(test_route_topk);
    RUN(test_bucket);
    RUN(test_gather_silu);
    RUN(test_lm_head_reduce);
    return check_summary();
}
