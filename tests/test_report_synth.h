/* test_report_synth.h: a small trace with every kind of result the report
 * draws, written with the traces/ writer API and the generic HDF5 helpers,
 * following docs/contracts (replay/exact results, /validate) and the layouts
 * of olmoe-replay(1) (/stats) and olmoe-analyze(1) (/analyze). The numbers are
 * made up but consistent (mean_k from k_hist, compute_saved from mean_k), and
 * kept in rs_policy so the tests compare the report against them. */
#ifndef TEST_REPORT_SYNTH_H
#define TEST_REPORT_SYNTH_H

#include "analyze.h"
#include "common.h"
#include "kde.h"
#include "traces.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RS_L 4
#define RS_E 16
#define RS_N 512
#define RS_CTX 128
#define RS_G 3
#define RS_TOPK 4
#define RS_BASE_PPL 60.0

static const char *const rs_groups[RS_G] = {"news", "fiction", "science"};

typedef struct {
    char id[160];
    const char *family;
    double k, alpha;
    int min_k, max_k;
    int replay, exact, stats;   /* which results exist */
    int64_t hist[RS_L][RS_E + 1];
    int64_t load[RS_L][RS_E];
    double mean_k, sd_k, share_min, share_max, layer_mean[RS_L];
    double ppl, acc, ppl_exact, acc_exact, tps;
    double gppl[RS_G], gk[RS_G], gacc[RS_G];
    int64_t gn[RS_G];
} rs_policy;

#define RS_MAXP 16
typedef struct {
    int n;
    rs_policy p[RS_MAXP];
    int64_t n_scored;
    double nll_sum;
} rs_set;

static uint32_t rs_hash(uint32_t a, uint32_t b) {
    uint32_t h = a * 0x9e3779b1u ^ (b + 0x7f4a7c15u) * 0x85ebca6bu;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    h *= 0x297a2d39u;
    h ^= h >> 15;
    return h;
}
static double rs_unit(uint32_t a, uint32_t b) { return (rs_hash(a, b) >> 8) / 16777216.0; }

/* histogram of experts per token: all at k (topk) or geometric over 1..max_k */
static void rs_fill(rs_policy *p) {
    for (int l = 0; l < RS_L; l++) {
        memset(p->hist[l], 0, sizeof p->hist[l]);
        if (!strcmp(p->family, "topk")) {
            p->hist[l][(int)p->k] = RS_N;
        } else {
            double w[RS_E + 1], s = 0;
            double decay = 0.35 + 2.5 * (isnan(p->alpha) ? 0.2 : p->alpha) + 0.05 * l;
            for (int k = 1; k <= p->max_k; k++) s += w[k] = exp(-(k - 1) / decay);
            int64_t used = 0;
            for (int k = 2; k <= p->max_k; k++) used += p->hist[l][k] = (int64_t)floor(RS_N * w[k] / s);
            p->hist[l][1] = RS_N - used;
        }
        /* load: the token-layers' selections spread over the experts unevenly */
        int64_t sel = 0;
        for (int k = 0; k <= RS_E; k++) sel += k * p->hist[l][k];
        double wt[RS_E], ws = 0;
        for (int e = 0; e < RS_E; e++) ws += wt[e] = 0.3 + rs_unit(77 + l, (uint32_t)e + 100 * (uint32_t)p->max_k);
        int64_t given = 0;
        for (int e = 1; e < RS_E; e++) given += p->load[l][e] = (int64_t)floor(sel * wt[e] / ws);
        p->load[l][0] = sel - given;
    }
    double s = 0, s2 = 0, n = 0, at_min = 0, at_max = 0;
    for (int l = 0; l < RS_L; l++) {
        double ls = 0, ln = 0;
        for (int k = 0; k <= RS_E; k++) {
            double c = (double)p->hist[l][k];
            s += k * c;
            s2 += (double)k * k * c;
            n += c;
            ls += k * c;
            ln += c;
            if (k == p->min_k) at_min += c;
            if (k == p->max_k) at_max += c;
        }
        p->layer_mean[l] = ls / ln;
    }
    p->mean_k = s / n;
    p->sd_k = sqrt(s2 / n - p->mean_k * p->mean_k);
    p->share_min = at_min / n;
    p->share_max = at_max / n;
    p->ppl = RS_BASE_PPL * (0.8 + 0.9 / p->mean_k) * (1 + 0.004 * p->max_k) * (1 + 0.03 * rs_unit(5, (uint32_t)p->max_k + (uint32_t)(1000 * p->mean_k)));
    p->acc = 0.2 + 0.02 * log(p->mean_k + 1);
    p->ppl_exact = p->ppl * (1 + 0.01 * p->mean_k);
    p->acc_exact = p->acc - 0.003;
    p->tps = 1000.0 + 37 * p->max_k;
    for (int g = 0; g < RS_G; g++) {
        p->gppl[g] = p->ppl * (0.85 + 0.1 * g);
        p->gk[g] = p->mean_k * (1 + 0.04 * g);
        p->gacc[g] = p->acc + 0.01 * g;
        p->gn[g] = 150 + 10 * g;
    }
}

static void rs_make_set(rs_set *S) {
    memset(S, 0, sizeof *S);
    static const int ks[] = {1, 2, 4, 8, 16};
    for (int i = 0; i < 5; i++) {
        rs_policy *p = &S->p[S->n++];
        snprintf(p->id, sizeof p->id, "topk(k=%d,norm=model)", ks[i]);
        p->family = "topk";
        p->k = ks[i];
        p->alpha = NAN;
        p->min_k = p->max_k = ks[i];
        p->replay = p->stats = 1;
        p->exact = ks[i] <= 4;
    }
    static const double alphas[] = {0.05, 0.1, 0.2};
    static const int maxks[] = {4, 8};
    for (int m = 0; m < 2; m++)
        for (int a = 0; a < 3; a++) {
            rs_policy *p = &S->p[S->n++];
            snprintf(p->id, sizeof p->id, "bh(alpha=%g,max_k=%d,min_k=1,T=1,pvalue=kde,norm=model)", alphas[a],
                     maxks[m]);
            p->family = "bh";
            p->k = NAN;
            p->alpha = alphas[a];
            p->min_k = 1;
            p->max_k = maxks[m];
            p->replay = p->stats = 1;
            p->exact = a == 1;
        }
    rs_policy *p = &S->p[S->n++];
    snprintf(p->id, sizeof p->id, "topp(p=0.9,max_k=6,min_k=1,T=1,norm=model)");
    p->family = "topp";
    p->k = p->alpha = NAN;
    p->min_k = 1;
    p->max_k = 6;
    p->replay = 1;
    for (int i = 0; i < S->n; i++) rs_fill(&S->p[i]);
}

#define RS_TRY(x)                                                                          \
    do {                                                                                   \
        if ((x) != 0) {                                                                    \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, olmoe_error());     \
            return -1;                                                                     \
        }                                                                                  \
    } while (0)

static float rs_logit(int64_t pos, int l, int e) {
    /* a sum of uniforms (about normal) with an expert- and layer-dependent shift */
    double s = 0;
    for (int j = 0; j < 4; j++) s += rs_unit((uint32_t)(pos * 131 + l * 17 + e), (uint32_t)j + 11);
    return (float)(2.0 * (s - 2.0) + 0.05 * e - 0.3 * l);
}

static int rs_write_trace(const char *path, rs_set *S) {
    char cfg[256];
    snprintf(cfg, sizeof cfg, "{\"model_type\": \"olmoe\", \"num_hidden_layers\": %d, \"num_experts\": %d}", RS_L,
             RS_E);
    olmoe_trace_meta m = {.command = "olmoe-capture --model models/synth --input synth.jsonl --out run.h5",
                          .config_json = cfg,
                          .model_checksum = "00112233445566778899aabbccddeeff",
                          .tokenizer_checksum = "ffeeddccbbaa99887766554433221100",
                          .model_dir = "models/synth",
                          .policy = "topk(k=4,norm=model)",
                          .device = "cpu",
                          .compute_dtype = "float32",
                          .corpus = "synth.jsonl",
                          .n_layers = RS_L,
                          .n_experts = RS_E,
                          .hidden_size = 8,
                          .vocab_size = 100,
                          .top_k = RS_TOPK,
                          .ctx = RS_CTX,
                          .logits_dtype = OLMOE_DTYPE_F32};
    olmoe_trace *t = olmoe_trace_create(path, &m);
    if (!t) {
        fprintf(stderr, "%s\n", olmoe_error());
        return -1;
    }
    RS_TRY(olmoe_trace_add_groups(t, rs_groups, RS_G));
    olmoe_trace_document docs[RS_G];
    for (int g = 0; g < RS_G; g++) docs[g] = (olmoe_trace_document){g * 160, g < RS_G - 1 ? 160 : RS_N - 320, g};
    RS_TRY(olmoe_trace_add_documents(t, docs, RS_G));
    int32_t tok[RS_CTX], am[RS_CTX];
    float nll[RS_CTX], *lg = xmalloc(sizeof(float) * RS_CTX * RS_L * RS_E);
    S->n_scored = 0;
    S->nll_sum = 0;
    for (int w = 0; w < RS_N / RS_CTX; w++) {
        for (int i = 0; i < RS_CTX; i++) {
            int64_t pos = (int64_t)w * RS_CTX + i;
            tok[i] = (int32_t)(rs_hash(1, (uint32_t)pos) % 100);
            am[i] = (int32_t)(rs_hash(2, (uint32_t)pos) % 100);
            nll[i] = i == RS_CTX - 1 ? NAN : (float)(3.0 + 2.0 * rs_unit(3, (uint32_t)pos));
            if (i != RS_CTX - 1) {
                S->n_scored++;
                S->nll_sum += nll[i];
            }
            for (int l = 0; l < RS_L; l++)
                for (int e = 0; e < RS_E; e++) lg[((size_t)i * RS_L + l) * RS_E + e] = rs_logit(pos, l, e);
        }
        olmoe_trace_window win = {(int64_t)w * RS_CTX, RS_CTX, 0, 0};
        olmoe_trace_rows rows = {.tokens = tok, .router_logits = lg, .nll = nll, .argmax = am};
        if (olmoe_trace_append_window(t, &win, &rows) != 0) {
            fprintf(stderr, "%s\n", olmoe_error());
            free(lg);
            return -1;
        }
    }
    free(lg);
    RS_TRY(olmoe_trace_close(t));
    return 0;
}

/* /replay/<id>/ or /exact/<id>/ under loc, as docs/contracts has it: named by
 * the spec itself, as files written before typable group names are
 * (olmoe-trace(5), RESULTS), so the report's reading of those stays tested */
static int rs_write_result(hid_t loc, const rs_policy *p, int exact, double base_ppl) {
    char g[256], ds[320], gg[400];
    snprintf(g, sizeof g, "%s/%s", exact ? "exact" : "replay", p->id);
    RS_TRY(olmoe_h5_make_groups(loc, g));
    double ppl = exact ? p->ppl_exact : p->ppl, acc = exact ? p->acc_exact : p->acc;
    RS_TRY(olmoe_h5_set_attr_str(loc, g, "policy", p->id));
    RS_TRY(olmoe_h5_set_attr_str(loc, g, "kind", exact ? "exact" : "replay"));
    RS_TRY(olmoe_h5_set_attr_str(loc, g, "routing", "recompute"));
    RS_TRY(olmoe_h5_set_attr_str(loc, g, "device", "cpu"));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "seconds", 0.5));
    RS_TRY(olmoe_h5_set_attr_i64(loc, g, "n_scored", RS_N - RS_N / RS_CTX));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "nll_sum", log(ppl) * (RS_N - RS_N / RS_CTX)));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "perplexity", ppl));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "accuracy", acc));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "mean_k", p->mean_k));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "sd_k", p->sd_k));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "share_min_k", p->share_min));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "share_max_k", p->share_max));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "compute_saved", 1 - p->mean_k / RS_TOPK));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "tokens_per_second", p->tps));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "baseline_perplexity", base_ppl));
    int64_t dn[1] = {RS_N}, dh[2] = {RS_L, RS_E + 1}, dl[2] = {RS_L, RS_E}, d1[1] = {RS_L};
    float *nl = xmalloc(RS_N * sizeof *nl);
    int32_t *am = xmalloc(RS_N * sizeof *am);
    for (int i = 0; i < RS_N; i++) {
        nl[i] = (i % RS_CTX == RS_CTX - 1) ? NAN : (float)log(ppl);
        am[i] = i % 100;
    }
    snprintf(ds, sizeof ds, "%s/nll", g);
    int rc = olmoe_h5_write(loc, ds, OLMOE_H5_F32, 1, dn, nl);
    snprintf(ds, sizeof ds, "%s/argmax", g);
    if (rc == 0) rc = olmoe_h5_write(loc, ds, OLMOE_H5_I32, 1, dn, am);
    free(nl);
    free(am);
    RS_TRY(rc);
    snprintf(ds, sizeof ds, "%s/k_hist", g);
    RS_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_I64, 2, dh, p->hist));
    snprintf(ds, sizeof ds, "%s/load", g);
    RS_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_I64, 2, dl, p->load));
    snprintf(ds, sizeof ds, "%s/mean_k_layer", g);
    RS_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_F64, 1, d1, p->layer_mean));
    for (int k = 0; k < RS_G; k++) {
        snprintf(gg, sizeof gg, "%s/groups/%s", g, rs_groups[k]);
        RS_TRY(olmoe_h5_make_groups(loc, gg));
        RS_TRY(olmoe_h5_set_attr_f64(loc, gg, "perplexity", exact ? p->gppl[k] * 1.01 : p->gppl[k]));
        RS_TRY(olmoe_h5_set_attr_i64(loc, gg, "n_scored", p->gn[k]));
        RS_TRY(olmoe_h5_set_attr_f64(loc, gg, "mean_k", p->gk[k]));
        RS_TRY(olmoe_h5_set_attr_f64(loc, gg, "accuracy", p->gacc[k]));
    }
    return 0;
}

/* the stats-mode layout of olmoe-replay(1) */
static double rs_cv(const int64_t *load) {
    double s = 0, s2 = 0;
    for (int e = 0; e < RS_E; e++) s += (double)load[e];
    double mean = s / RS_E;
    for (int e = 0; e < RS_E; e++) s2 += ((double)load[e] - mean) * ((double)load[e] - mean);
    return sqrt(s2 / RS_E) / mean;
}

static int rs_write_stats(hid_t loc, const rs_policy *p) {
    char g[256], ds[320];
    snprintf(g, sizeof g, "stats/%s", p->id);
    RS_TRY(olmoe_h5_make_groups(loc, g));
    RS_TRY(olmoe_h5_set_attr_str(loc, g, "policy", p->id));
    RS_TRY(olmoe_h5_set_attr_str(loc, g, "family", p->family));
    RS_TRY(olmoe_h5_set_attr_i64(loc, g, "n_tokens", RS_N));
    RS_TRY(olmoe_h5_set_attr_i32(loc, g, "baseline_top_k", RS_TOPK));
    RS_TRY(olmoe_h5_set_attr_i32(loc, g, "min_k", p->min_k));
    RS_TRY(olmoe_h5_set_attr_i32(loc, g, "max_k", p->max_k));
    /* stats decide on the captured logits: slightly different numbers from replay */
    double cv[RS_L], cvm = 0, mk[RS_L];
    for (int l = 0; l < RS_L; l++) {
        cv[l] = rs_cv(p->load[l]);
        cvm += cv[l] / RS_L;
        mk[l] = p->layer_mean[l];
    }
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "mean_k", p->mean_k));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "sd_k", p->sd_k));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "share_min_k", p->share_min));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "share_max_k", p->share_max));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "coverage", fmin(1.0, p->mean_k / RS_TOPK) * 0.97));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "flops_vs_baseline", p->mean_k / RS_TOPK));
    RS_TRY(olmoe_h5_set_attr_f64(loc, g, "load_cv", cvm));
    int64_t dh[2] = {RS_L, RS_E + 1}, dl[2] = {RS_L, RS_E}, d1[1] = {RS_L}, dg[2] = {RS_G, RS_L};
    snprintf(ds, sizeof ds, "%s/k_hist", g);
    RS_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_I64, 2, dh, p->hist));
    snprintf(ds, sizeof ds, "%s/load", g);
    RS_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_I64, 2, dl, p->load));
    snprintf(ds, sizeof ds, "%s/mean_k", g);
    RS_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_F64, 1, d1, mk));
    snprintf(ds, sizeof ds, "%s/load_cv", g);
    RS_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_F64, 1, d1, cv));
    double gm[RS_G][RS_L];
    for (int k = 0; k < RS_G; k++)
        for (int l = 0; l < RS_L; l++) gm[k][l] = p->gk[k] + 0.01 * (l - 1.5);
    snprintf(ds, sizeof ds, "%s/group_mean_k", g);
    RS_TRY(olmoe_h5_write(loc, ds, OLMOE_H5_F64, 2, dg, gm));
    return 0;
}

/* analyses by hand, in olmoe-analyze(1)'s layout (what the report reads) */
static int rs_write_analyses(hid_t loc) {
    const int B = RS_L;
    int32_t lay[RS_L], lf[RS_L], lt[RS_L];
    double *prob = xmalloc(sizeof(double) * B * RS_E * RS_E), v1[RS_L], v2[RS_L], v3[RS_L], v4[RS_L];
    for (int b = 0; b < B; b++) {
        lay[b] = lf[b] = lt[b] = b;
        v1[b] = 4.0;
        v2[b] = 0.5 + 0.05 * b;
        v3[b] = 0.25;
        v4[b] = v2[b] / v3[b];
        for (int i = 0; i < RS_E; i++)
            for (int j = 0; j < RS_E; j++)
                prob[((size_t)b * RS_E + i) * RS_E + j] = i == j ? 1.0 : rs_unit(9 + b, (uint32_t)(i * RS_E + j)) * 0.6;
    }
    int64_t d1[1] = {B}, d3[3] = {B, RS_E, RS_E};
    const char *an[2] = {"coactivation", "flow"};
    for (int a = 0; a < 2; a++) {
        char g[128], p[200];
        int nb = a ? B - 1 : B;
        int64_t e1[1] = {nb}, e3[3] = {nb, RS_E, RS_E};
        if (a) for (int b = 0; b < nb; b++) lt[b] = b + 1;
        snprintf(g, sizeof g, "analyze/%s/topk(k=4,norm=model)", an[a]);
        RS_TRY(olmoe_h5_make_groups(loc, g));
        RS_TRY(olmoe_h5_set_attr_str(loc, g, "command", a ? "olmoe-analyze flow run.h5 --in-trace"
                                                           : "olmoe-analyze coactivation run.h5 --in-trace"));
#define W(name, kind, r, dims, data)                                                  \
    snprintf(p, sizeof p, "%s/%s", g, name);                                          \
    RS_TRY(olmoe_h5_write(loc, p, kind, r, dims, data))
        if (!a) { W("layer", OLMOE_H5_I32, 1, e1, lay); }
        W("layer_from", OLMOE_H5_I32, 1, e1, lf);
        W("layer_to", OLMOE_H5_I32, 1, e1, lt);
        W("prob", OLMOE_H5_F64, 3, e3, prob);
        W("mean_selected", OLMOE_H5_F64, 1, e1, v1);
        W("max_cond_mean", OLMOE_H5_F64, 1, e1, v2);
        W("indep_max_mean", OLMOE_H5_F64, 1, e1, v3);
        W("lift", OLMOE_H5_F64, 1, e1, v4);
        (void)d3;
    }
    free(prob);
    {
        char g[128] = "analyze/specialization_group/topk(k=4,norm=model)", p[200];
        RS_TRY(olmoe_h5_make_groups(loc, g));
        double rf[RS_L][RS_G][RS_E], nmi[RS_L], ml[RS_L];
        int64_t gt[RS_G] = {160, 160, 192}, dg[1] = {RS_G}, dr[3] = {RS_L, RS_G, RS_E};
        for (int l = 0; l < RS_L; l++) {
            nmi[l] = 0.1 + 0.02 * l;
            ml[l] = 1.5 + 0.1 * l;
            for (int k = 0; k < RS_G; k++)
                for (int e = 0; e < RS_E; e++) rf[l][k][e] = 0.5 * rs_unit(50 + l, (uint32_t)(k * RS_E + e));
        }
        W("layer", OLMOE_H5_I32, 1, d1, lay);
        W("routed_frac", OLMOE_H5_F64, 3, dr, rf);
        W("group_tokens", OLMOE_H5_I64, 1, dg, gt);
        W("mean_selected", OLMOE_H5_F64, 1, d1, v1);
        W("nmi", OLMOE_H5_F64, 1, d1, nmi);
        W("max_lift_mean", OLMOE_H5_F64, 1, d1, ml);
        snprintf(p, sizeof p, "%s/group_names", g);
        RS_TRY(olmoe_h5_write_strings(loc, p, (char *const *)rs_groups, RS_G));
    }
    {
        char g[128] = "analyze/specialization_token/topk(k=4,norm=model)", p[200];
        RS_TRY(olmoe_h5_make_groups(loc, g));
        double a1[RS_L], a2[RS_L], a3[RS_L];
        for (int l = 0; l < RS_L; l++) a1[l] = 0.6 + 0.05 * l, a2[l] = 0.55 + 0.05 * l, a3[l] = 0.25;
        W("layer", OLMOE_H5_I32, 1, d1, lay);
        W("mean_top_share", OLMOE_H5_F64, 1, d1, a1);
        W("mean_top_share_ids", OLMOE_H5_F64, 1, d1, a2);
        W("uniform_share", OLMOE_H5_F64, 1, d1, a3);
    }
    {
        char g[128] = "analyze/compare/early.h5", p[200];
        RS_TRY(olmoe_h5_make_groups(loc, g));
        double a1[RS_L], a2[RS_L], a3[RS_L], a4[RS_L];
        for (int l = 0; l < RS_L; l++) a1[l] = 0.5 + 0.1 * l, a2[l] = 0.6 + 0.08 * l, a3[l] = 0.1 + 0.1 * l, a4[l] = 0.7 + 0.05 * l;
        W("layer", OLMOE_H5_I32, 1, d1, lay);
        W("overlap", OLMOE_H5_F64, 1, d1, a1);
        W("top1_agree", OLMOE_H5_F64, 1, d1, a2);
        W("exact_agree", OLMOE_H5_F64, 1, d1, a3);
        W("spearman", OLMOE_H5_F64, 1, d1, a4);
#undef W
    }
    return 0;
}

static int rs_write_validate(hid_t loc, const rs_set *S) {
    char *ids[RS_MAXP];
    double rp[RS_MAXP], ep[RS_MAXP], rd[RS_MAXP], nc[RS_MAXP], nm[RS_MAXP], rs[RS_MAXP], es[RS_MAXP];
    int n = 0;
    for (int i = 0; i < S->n; i++)
        if (S->p[i].exact) {
            ids[n] = (char *)S->p[i].id;
            rp[n] = S->p[i].ppl;
            ep[n] = S->p[i].ppl_exact;
            rd[n] = rp[n] / ep[n] - 1;
            nc[n] = 0.99 - 0.001 * n;
            nm[n] = 0.01 * (n + 1);
            rs[n] = 0.5;
            es[n] = 2.0;
            n++;
        }
    int64_t d[1] = {n};
    RS_TRY(olmoe_h5_write_strings(loc, "validate/policy", ids, n));
    RS_TRY(olmoe_h5_write(loc, "validate/replay_ppl", OLMOE_H5_F64, 1, d, rp));
    RS_TRY(olmoe_h5_write(loc, "validate/exact_ppl", OLMOE_H5_F64, 1, d, ep));
    RS_TRY(olmoe_h5_write(loc, "validate/rel_diff", OLMOE_H5_F64, 1, d, rd));
    RS_TRY(olmoe_h5_write(loc, "validate/nll_corr", OLMOE_H5_F64, 1, d, nc));
    RS_TRY(olmoe_h5_write(loc, "validate/nll_mad", OLMOE_H5_F64, 1, d, nm));
    RS_TRY(olmoe_h5_write(loc, "validate/replay_seconds", OLMOE_H5_F64, 1, d, rs));
    RS_TRY(olmoe_h5_write(loc, "validate/exact_seconds", OLMOE_H5_F64, 1, d, es));
    RS_TRY(olmoe_h5_set_attr_i32(loc, "validate", "ranking_agrees", 1));
    RS_TRY(olmoe_h5_set_attr_f64(loc, "validate", "kendall_tau", 0.8));
    return 0;
}

/* The whole fixture: trace (replay, exact, validate, analyses inside),
 * a stats results file naming the trace, and a null fitted with the kde
 * library on the trace's logits. */
static int rs_write_all(const char *trace, const char *stats, const char *null, rs_set *S) {
    rs_make_set(S);
    if (rs_write_trace(trace, S) != 0) return -1;
    olmoe_trace *t = olmoe_trace_open_rw(trace);
    if (!t) return -1;
    hid_t h = olmoe_trace_hid(t);
    double base = olmoe_trace_info_of(t)->perplexity;
    for (int i = 0; i < S->n; i++) {
        if (S->p[i].replay) RS_TRY(rs_write_result(h, &S->p[i], 0, base));
        if (S->p[i].exact) RS_TRY(rs_write_result(h, &S->p[i], 1, base));
    }
    RS_TRY(olmoe_h5_set_attr_str(h, "replay", "self_check_policy", "topk(k=4,norm=model)"));
    RS_TRY(olmoe_h5_set_attr_str(h, "replay", "self_check_residual_dtype", "bfloat16"));
    RS_TRY(olmoe_h5_set_attr_f64(h, "replay", "self_check_max_abs_nll_diff", 0.00012));
    RS_TRY(olmoe_h5_set_attr_f64(h, "replay", "self_check_max_rel_nll_diff", 0.0001));
    RS_TRY(olmoe_h5_set_attr_f64(h, "replay", "self_check_mean_abs_nll_diff", 2e-5));
    RS_TRY(olmoe_h5_set_attr_f64(h, "replay", "self_check_ppl_rel_diff", 3e-6));
    RS_TRY(rs_write_validate(h, S));
    { /* matched compute, as olmoe-replay --match-k writes it (analyze/match_output.c):
       * rows by kind, target, family; bh cannot reach k = 4 */
        enum { NR = 9 };
        char *fam[NR], *pn[NR], *pol[NR], *note[NR], *kind[NR];
        double tk[NR], pv[NR], ak[NR], pp[NR], acc[NR], sk[NR], dv[NR], rv[NR];
        int32_t re[NR];
        static char ids[NR][96];
        static const char *const fams[3] = {"topk", "bh", "topp"}, *const pns[3] = {"k", "alpha", "p"};
        for (int t = 0, r = 0; t < 3; t++)
            for (int f = 0; f < 3; f++, r++) {
                double k = 1 << t;
                fam[r] = (char *)fams[f];
                pn[r] = (char *)pns[f];
                kind[r] = "replay";
                re[r] = !(f == 1 && t == 2);
                note[r] = re[r] ? "" : "max_k=4 cannot reach mean k 4";
                tk[r] = k;
                pv[r] = f == 0 ? k : 0.1 * (t + 1);
                ak[r] = re[r] ? k + 0.004 * f : 3.5;
                sk[r] = ak[r] + 0.01;
                pp[r] = 100.0 / (1 + t) + f;
                acc[r] = 0.2;
                dv[r] = f ? pp[r] - 100.0 / (1 + t) : 0;
                rv[r] = f ? pp[r] / (100.0 / (1 + t)) - 1 : 0;
                snprintf(ids[r], sizeof ids[r], "%s(%s=%g)", fams[f], pns[f], pv[r]);
                pol[r] = ids[r];
            }
        int64_t d1[1] = {NR};
        RS_TRY(olmoe_h5_write_strings(h, "match/family", fam, NR));
        RS_TRY(olmoe_h5_write_strings(h, "match/param_name", pn, NR));
        RS_TRY(olmoe_h5_write_strings(h, "match/policy", pol, NR));
        RS_TRY(olmoe_h5_write_strings(h, "match/note", note, NR));
        RS_TRY(olmoe_h5_write_strings(h, "match/kind", kind, NR));
        RS_TRY(olmoe_h5_write(h, "match/target_k", OLMOE_H5_F64, 1, d1, tk));
        RS_TRY(olmoe_h5_write(h, "match/param_value", OLMOE_H5_F64, 1, d1, pv));
        RS_TRY(olmoe_h5_write(h, "match/achieved_k", OLMOE_H5_F64, 1, d1, ak));
        RS_TRY(olmoe_h5_write(h, "match/reached", OLMOE_H5_I32, 1, d1, re));
        RS_TRY(olmoe_h5_write(h, "match/perplexity", OLMOE_H5_F64, 1, d1, pp));
        RS_TRY(olmoe_h5_write(h, "match/accuracy", OLMOE_H5_F64, 1, d1, acc));
        RS_TRY(olmoe_h5_write(h, "match/scored_k", OLMOE_H5_F64, 1, d1, sk));
        RS_TRY(olmoe_h5_write(h, "match/delta_vs_topk", OLMOE_H5_F64, 1, d1, dv));
        RS_TRY(olmoe_h5_write(h, "match/rel_vs_topk", OLMOE_H5_F64, 1, d1, rv));
        RS_TRY(olmoe_h5_set_attr_str(h, "match", "calibration", "calib.h5"));
        RS_TRY(olmoe_h5_set_attr_str(h, "match", "command", "olmoe-replay run.h5 --model m --match-k 1,2,4"));
    }
    RS_TRY(rs_write_analyses(h));
    RS_TRY(olmoe_trace_close(t));

    hid_t f = olmoe_h5_create(stats);
    if (f < 0) return -1;
    RS_TRY(olmoe_h5_set_attr_str(f, ".", "format", "olmoe-stats"));
    RS_TRY(olmoe_h5_set_attr_i32(f, ".", "format_version", 1));
    RS_TRY(olmoe_h5_set_attr_str(f, ".", "trace", trace));
    RS_TRY(olmoe_h5_set_attr_str(f, ".", "command", "olmoe-replay run.h5 --mode stats --sweep synth --out stats.h5"));
    RS_TRY(olmoe_h5_set_attr_str(f, ".", "groups", "[\"news\", \"fiction\", \"science\"]"));
    for (int i = 0; i < S->n; i++)
        if (S->p[i].stats) RS_TRY(rs_write_stats(f, &S->p[i]));
    RS_TRY(olmoe_h5_close(f));

    /* the null, with the kde library */
    olmoe_kde_null nl;
    memset(&nl, 0, sizeof nl);
    nl.n_fits = nl.n_layers = RS_L;
    nl.n_experts = RS_E;
    snprintf(nl.construction, sizeof nl.construction, "kde");
    snprintf(nl.rule, sizeof nl.rule, "scott");
    snprintf(nl.source, sizeof nl.source, "%s", trace);
    snprintf(nl.model_checksum, sizeof nl.model_checksum, "00112233445566778899aabbccddeeff");
    nl.fits = xcalloc(RS_L, sizeof *nl.fits);
    float *x = xmalloc(sizeof(float) * RS_N * RS_E);
    olmoe_kde_opts ko = OLMOE_KDE_OPTS_DEFAULT;
    for (int l = 0; l < RS_L; l++) {
        for (int i = 0; i < RS_N; i++)
            for (int e = 0; e < RS_E; e++) x[i * RS_E + e] = rs_logit(i, l, e);
        RS_TRY(olmoe_kde_fit(x, (size_t)RS_N * RS_E, &ko, &nl.fits[l]));
        nl.fits[l].layer = l;
        nl.fits[l].n_tokens = RS_N;
    }
    free(x);
    int rc = olmoe_kde_write(null, &nl, "olmoe-kde fit run.h5 --out null.h5");
    olmoe_kde_null_free(&nl);
    RS_TRY(rc);
    return 0;
}

#endif
