/* analyze_compare.c: two traces of the same tokens (two checkpoints, two
 * models, a baseline and a policy run): per layer how much their selected
 * sets overlap (the OLMoE paper's router saturation), how alike the order of
 * their router logits is (Spearman), and the positions where they differ
 * most. Both traces are read in lockstep, chunk by chunk. */
#include "common.h"
#include "analyze.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* twice the average (1-based) rank of each value: 2 * #smaller + #equal + 1.
 * Counting instead of sorting is branch-free; the values are copied into
 * blocks of 8 padded with NaN (never smaller, never equal) so that the inner
 * loop has a fixed trip count and the compiler vectorizes it at -O2. */
#define RANK_BLOCK 8
static void ranks2(const float *x, int n, int *r2) {
    float v[OLMOE_POLICY_MAX_E + RANK_BLOCK];
    int nb = (n + RANK_BLOCK - 1) / RANK_BLOCK;
    memcpy(v, x, (size_t)n * sizeof *v);
    for (int j = n; j < nb * RANK_BLOCK; j++) v[j] = NAN;
    for (int i = 0; i < n; i++) {
        float xi = v[i];
        int lt = 0, eq = 0;
        for (int b = 0; b < nb; b++) {
            const float *w = v + b * RANK_BLOCK;
            for (int j = 0; j < RANK_BLOCK; j++) {
                lt += w[j] < xi;
                eq += w[j] == xi;
            }
        }
        r2[i] = 2 * lt + eq + 1;
    }
}

double olmoe_analyze_spearman(const float *a, const float *b, int n) {
    int ra[OLMOE_POLICY_MAX_E], rb[OLMOE_POLICY_MAX_E];
    if (n < 2 || n > OLMOE_POLICY_MAX_E) return NAN;
    ranks2(a, n, ra);
    ranks2(b, n, rb);
    /* the mean of 2 * rank is n + 1 whatever the ties: exact integer sums */
    int64_t sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) {
        int64_t x = ra[i] - (n + 1), y = rb[i] - (n + 1);
        sab += x * y, saa += x * x, sbb += y * y;
    }
    if (saa == 0 || sbb == 0) return NAN;
    return (double)sab / sqrt((double)saa * (double)sbb);
}

void olmoe_analyze_compare_free(olmoe_analyze_compare *c) {
    if (!c) return;
    for (int i = 0; c->worst_text && i < c->n_worst; i++) free(c->worst_text[i]);
    free(c->worst_text), free(c->layers), free(c->overlap), free(c->top1_agree);
    free(c->exact_agree), free(c->spearman), free(c->spearman_n), free(c->mean_k_a);
    free(c->mean_k_b), free(c->worst_pos), free(c->worst_token), free(c->worst_overlap);
    free(c->worst_spearman), free(c->worst_layer);
    memset(c, 0, sizeof *c);
}

static int same_tokens(olmoe_analyze_src *a, olmoe_analyze_src *b) {
    if (a->L != b->L || a->E != b->E)
        return olmoe_errorf("%s has %d layers x %d experts, %s has %d x %d: compare needs traces "
                            "of the same architecture", a->path, a->L, a->E, b->path, b->L, b->E);
    if (a->n_tokens != b->n_tokens)
        return olmoe_errorf("%s has %lld tokens, %s has %lld: compare needs two traces of the same "
                            "tokens", a->path, (long long)a->n_tokens, b->path,
                            (long long)b->n_tokens);
    enum { B = 65536 };
    int32_t *x = xmalloc(B * sizeof *x), *y = xmalloc(B * sizeof *y);
    int rc = 0;
    for (int64_t st = 0; st < a->n_tokens && rc == 0; st += B) {
        int64_t n = a->n_tokens - st < B ? a->n_tokens - st : B;
        if (olmoe_trace_read_tokens(a->trace, st, n, x) != 0 ||
            olmoe_trace_read_tokens(b->trace, st, n, y) != 0) {
            rc = -1;
            break;
        }
        for (int64_t i = 0; i < n; i++)
            if (x[i] != y[i]) {
                rc = olmoe_errorf("%s and %s hold different tokens (position %lld: %d vs %d): "
                                  "compare needs two traces of the same tokens", a->path, b->path,
                                  (long long)(st + i), x[i], y[i]);
                break;
            }
    }
    free(x);
    free(y);
    return rc;
}

/* is position (ov, sp, pos) worse (differs more) than (ov2, sp2, pos2)? */
static int worse(double ov, double sp, int64_t pos, double ov2, double sp2, int64_t pos2) {
    if (ov != ov2) return ov < ov2;
    double s1 = isnan(sp) ? 1 : sp, s2 = isnan(sp2) ? 1 : sp2;
    if (s1 != s2) return s1 < s2;
    return pos < pos2;
}

static void keep_worst(olmoe_analyze_compare *c, int64_t pos, int32_t tok, double ov, double sp,
                       int layer) {
    int T = c->top, m = c->n_worst;
    if (T <= 0) return;
    if (m == T && !worse(ov, sp, pos, c->worst_overlap[T - 1], c->worst_spearman[T - 1],
                         c->worst_pos[T - 1]))
        return;
    int i = m < T ? c->n_worst++ : T - 1;
    while (i > 0 && worse(ov, sp, pos, c->worst_overlap[i - 1], c->worst_spearman[i - 1],
                          c->worst_pos[i - 1])) {
        c->worst_pos[i] = c->worst_pos[i - 1], c->worst_token[i] = c->worst_token[i - 1];
        c->worst_overlap[i] = c->worst_overlap[i - 1];
        c->worst_spearman[i] = c->worst_spearman[i - 1];
        c->worst_layer[i] = c->worst_layer[i - 1];
        i--;
    }
    c->worst_pos[i] = pos, c->worst_token[i] = tok, c->worst_overlap[i] = ov;
    c->worst_spearman[i] = sp, c->worst_layer[i] = layer;
}

int olmoe_analyze_compare_run(olmoe_analyze_src *a, olmoe_analyze_src *b, int top,
                              olmoe_analyze_compare *c) {
    memset(c, 0, sizeof *c);
    if (same_tokens(a, b) != 0) return -1;
    if (a->n_layers != b->n_layers || memcmp(a->want, b->want, (size_t)a->L) != 0 ||
        a->chunk_rows != b->chunk_rows || !a->opts.want_logits || !b->opts.want_logits)
        return olmoe_errorf("%s, %s: sources opened with different layers or chunks (a bug)",
                            a->path, b->path);
    const int NL = a->n_layers, E = a->E, L = a->L;
    c->n_layers = NL, c->E = E, c->top = top > 0 ? top : 0, c->n_tokens = a->n_tokens;
    size_t nl = (size_t)NL, nt = (size_t)c->top + 1;
    c->layers = xmalloc(nl * sizeof *c->layers);
    memcpy(c->layers, a->layers, nl * sizeof *c->layers);
    c->overlap = xcalloc(nl, sizeof(double));
    c->top1_agree = xcalloc(nl, sizeof(double));
    c->exact_agree = xcalloc(nl, sizeof(double));
    c->spearman = xcalloc(nl, sizeof(double));
    c->spearman_n = xcalloc(nl, sizeof(int64_t));
    c->mean_k_a = xcalloc(nl, sizeof(double));
    c->mean_k_b = xcalloc(nl, sizeof(double));
    c->worst_pos = xcalloc(nt, sizeof *c->worst_pos);
    c->worst_token = xcalloc(nt, sizeof *c->worst_token);
    c->worst_overlap = xcalloc(nt, sizeof *c->worst_overlap);
    c->worst_spearman = xcalloc(nt, sizeof *c->worst_spearman);
    c->worst_layer = xcalloc(nt, sizeof *c->worst_layer);
    unsigned char mark[OLMOE_POLICY_MAX_E];
    memset(mark, 0, sizeof mark);
    olmoe_analyze_chunk ca, cb;
    int ra, rb = 0;
    olmoe_analyze_src_rewind(a);
    olmoe_analyze_src_rewind(b);
    while ((ra = olmoe_analyze_src_next(a, &ca)) == 1 && (rb = olmoe_analyze_src_next(b, &cb)) == 1) {
        for (int64_t t = 0; t < ca.n; t++) {
            double pos_ov = 0, pos_sp = 0, min_ov = 2;
            int n_sp = 0, min_layer = -1;
            for (int li = 0; li < NL; li++) {
                int l = a->layers[li];
                size_t rl = (size_t)t * L + (size_t)l;
                int na = ca.n_sel[rl], nb = cb.n_sel[rl];
                const int16_t *sa = ca.sel + rl * a->K, *sb = cb.sel + rl * b->K;
                int both = 0;
                for (int x = 0; x < na; x++) mark[sa[x]] = 1;
                for (int y = 0; y < nb; y++) both += mark[sb[y]];
                for (int x = 0; x < na; x++) mark[sa[x]] = 0;
                double ov = (double)both / (double)(na > nb ? na : nb);
                c->overlap[li] += ov;
                c->top1_agree[li] += sa[0] == sb[0];
                c->exact_agree[li] += both == na && both == nb;
                c->mean_k_a[li] += na, c->mean_k_b[li] += nb;
                double sp = olmoe_analyze_spearman(ca.logits + rl * E, cb.logits + rl * E, E);
                if (!isnan(sp)) c->spearman[li] += sp, c->spearman_n[li]++, pos_sp += sp, n_sp++;
                pos_ov += ov;
                if (ov < min_ov) min_ov = ov, min_layer = l;
            }
            keep_worst(c, ca.start + t, ca.tokens[t], pos_ov / NL, n_sp ? pos_sp / n_sp : NAN,
                       min_layer);
        }
    }
    if (ra < 0 || (ra == 1 && rb != 1)) {
        if (ra == 1 && rb == 0) olmoe_errorf("%s ended before %s (a bug)", b->path, a->path);
        olmoe_analyze_compare_free(c);
        return -1;
    }
    double N = (double)c->n_tokens;
    for (int li = 0; li < NL; li++) {
        c->overlap[li] /= N, c->top1_agree[li] /= N, c->exact_agree[li] /= N;
        c->mean_k_a[li] /= N, c->mean_k_b[li] /= N;
        c->spearman[li] = c->spearman_n[li] ? c->spearman[li] / (double)c->spearman_n[li] : NAN;
    }
    return 0;
}

/* ---- output ---- */

void olmoe_analyze_compare_print(const olmoe_analyze_compare *c, FILE *f) {
    fprintf(f, "%5s %8s %8s %8s %9s %7s %7s\n", "layer", "overlap", "top1", "exact", "spearman",
            "k_a", "k_b");
    for (int li = 0; li < c->n_layers; li++)
        fprintf(f, "%5d %8.4f %8.4f %8.4f %9.4f %7.3f %7.3f\n", c->layers[li], c->overlap[li],
                c->top1_agree[li], c->exact_agree[li], c->spearman[li], c->mean_k_a[li],
                c->mean_k_b[li]);
    if (!c->n_worst) return;
    fprintf(f, "\n# positions where the routing differs most (overlap and Spearman: means over "
               "layers)\n");
    fprintf(f, "%10s %8s %-20s %8s %9s %11s\n", "position", "id", "token", "overlap", "spearman",
            "worst_layer");
    for (int i = 0; i < c->n_worst; i++) {
        char esc[128], shown[160];
        if (c->worst_text) {
            olmoe_analyze_escape(c->worst_text[i], esc, sizeof esc);
            snprintf(shown, sizeof shown, "\"%s\"", esc);
        } else {
            snprintf(shown, sizeof shown, "#%d", c->worst_token[i]);
        }
        fprintf(f, "%10lld %8d %-20s %8.4f %9.4f %11d\n", (long long)c->worst_pos[i],
                c->worst_token[i], shown, c->worst_overlap[i], c->worst_spearman[i],
                c->worst_layer[i]);
    }
}

static void csv_num(FILE *f, double v, int last) {
    if (!isnan(v)) fprintf(f, "%.9g", v);
    fputc(last ? '\n' : ',', f);
}

int olmoe_analyze_compare_csv(const olmoe_analyze_compare *c, FILE *f) {
    fprintf(f, "layer,overlap,top1_agree,exact_agree,spearman,mean_k_a,mean_k_b\n");
    for (int li = 0; li < c->n_layers; li++) {
        fprintf(f, "%d,", c->layers[li]);
        csv_num(f, c->overlap[li], 0);
        csv_num(f, c->top1_agree[li], 0);
        csv_num(f, c->exact_agree[li], 0);
        csv_num(f, c->spearman[li], 0);
        csv_num(f, c->mean_k_a[li], 0);
        csv_num(f, c->mean_k_b[li], 1);
    }
    return ferror(f) ? -1 : 0;
}

json_t *olmoe_analyze_compare_json(const olmoe_analyze_compare *c) {
    json_t *root = json_object(), *layers = json_array(), *worst = json_array();
    for (int li = 0; li < c->n_layers; li++)
        json_array_append_new(
            layers, json_pack("{s:i,s:o,s:o,s:o,s:o,s:o,s:o}", "layer", c->layers[li], "overlap",
                              olmoe_analyze_jnum(c->overlap[li]), "top1_agree",
                              olmoe_analyze_jnum(c->top1_agree[li]), "exact_agree",
                              olmoe_analyze_jnum(c->exact_agree[li]), "spearman",
                              olmoe_analyze_jnum(c->spearman[li]), "mean_k_a",
                              olmoe_analyze_jnum(c->mean_k_a[li]), "mean_k_b",
                              olmoe_analyze_jnum(c->mean_k_b[li])));
    for (int i = 0; i < c->n_worst; i++) {
        json_t *o = json_pack("{s:I,s:i,s:o,s:o,s:i}", "position", (json_int_t)c->worst_pos[i],
                              "token", c->worst_token[i], "overlap",
                              olmoe_analyze_jnum(c->worst_overlap[i]), "spearman",
                              olmoe_analyze_jnum(c->worst_spearman[i]), "worst_layer",
                              c->worst_layer[i]);
        if (c->worst_text) json_object_set_new(o, "text", olmoe_json_str(c->worst_text[i]));
        json_array_append_new(worst, o);
    }
    json_object_set_new(root, "layers", layers);
    json_object_set_new(root, "worst", worst);
    return root;
}

int olmoe_analyze_compare_h5(const olmoe_analyze_compare *c, hid_t g) {
    int64_t d1[1] = {c->n_layers}, dw[1] = {c->n_worst};
    OLMOE_TRY(olmoe_h5_write(g, "layer", OLMOE_H5_I32, 1, d1, c->layers));
    OLMOE_TRY(olmoe_h5_write(g, "overlap", OLMOE_H5_F64, 1, d1, c->overlap));
    OLMOE_TRY(olmoe_h5_write(g, "top1_agree", OLMOE_H5_F64, 1, d1, c->top1_agree));
    OLMOE_TRY(olmoe_h5_write(g, "exact_agree", OLMOE_H5_F64, 1, d1, c->exact_agree));
    OLMOE_TRY(olmoe_h5_write(g, "spearman", OLMOE_H5_F64, 1, d1, c->spearman));
    OLMOE_TRY(olmoe_h5_write(g, "spearman_n", OLMOE_H5_I64, 1, d1, c->spearman_n));
    OLMOE_TRY(olmoe_h5_write(g, "mean_k_a", OLMOE_H5_F64, 1, d1, c->mean_k_a));
    OLMOE_TRY(olmoe_h5_write(g, "mean_k_b", OLMOE_H5_F64, 1, d1, c->mean_k_b));
    OLMOE_TRY(olmoe_h5_write(g, "worst_position", OLMOE_H5_I64, 1, dw, c->worst_pos));
    OLMOE_TRY(olmoe_h5_write(g, "worst_token", OLMOE_H5_I32, 1, dw, c->worst_token));
    OLMOE_TRY(olmoe_h5_write(g, "worst_overlap", OLMOE_H5_F64, 1, dw, c->worst_overlap));
    OLMOE_TRY(olmoe_h5_write(g, "worst_spearman", OLMOE_H5_F64, 1, dw, c->worst_spearman));
    OLMOE_TRY(olmoe_h5_write(g, "worst_layer", OLMOE_H5_I32, 1, dw, c->worst_layer));
    if (c->worst_text) OLMOE_TRY(olmoe_h5_write_strings(g, "worst_text", c->worst_text, c->n_worst));
    return 0;
fail:
    return -1;
}
