/* analyze_pairs.c: co-activation (experts selected together at one layer)
 * and cross-layer flow (expert i at layer L, expert j at layer M, same
 * token). Both count, per block of two layers, the tokens that select i at
 * the first and j at the second; co-activation is the block of a layer with
 * itself, whose diagonal is each expert's own count. */
#include "common.h"
#include "analyze.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* olmoe_h5_* calls name the dataset and the failing HDF5 call themselves */
static void pairs_alloc(olmoe_analyze_pairs *p, int B, int E, int top) {
    memset(p, 0, sizeof *p);
    p->n_blocks = B, p->E = E, p->top = top;
    size_t b = (size_t)B, be = xmul(b, (size_t)E), bee = xmul(be, (size_t)E),
           bt = xmul(b, (size_t)(top > 0 ? top : 1));
    p->from = xcalloc(b, sizeof *p->from);
    p->to = xcalloc(b, sizeof *p->to);
    p->n_tokens = xcalloc(b, sizeof *p->n_tokens);
    p->count_from = xcalloc(be, sizeof *p->count_from);
    p->count_to = xcalloc(be, sizeof *p->count_to);
    p->count = xcalloc(bee, sizeof *p->count);
    p->prob = xcalloc(bee, sizeof *p->prob);
    p->max_cond_mean = xcalloc(b, sizeof(double));
    p->indep_max_mean = xcalloc(b, sizeof(double));
    p->lift = xcalloc(b, sizeof(double));
    p->mean_selected = xcalloc(b, sizeof(double));
    p->top_i = xcalloc(bt, sizeof *p->top_i);
    p->top_j = xcalloc(bt, sizeof *p->top_j);
    p->top_prob = xcalloc(bt, sizeof *p->top_prob);
}

void olmoe_analyze_pairs_free(olmoe_analyze_pairs *p) {
    if (!p) return;
    free(p->from), free(p->to), free(p->n_tokens), free(p->count_from), free(p->count_to);
    free(p->count), free(p->prob), free(p->max_cond_mean), free(p->indep_max_mean);
    free(p->lift), free(p->mean_selected), free(p->top_i), free(p->top_j), free(p->top_prob);
    memset(p, 0, sizeof *p);
}

typedef struct {
    double prob;
    int64_t count;
    int i, j;
} cand;

static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->prob != y->prob) return x->prob > y->prob ? -1 : 1;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    if (x->i != y->i) return x->i < y->i ? -1 : 1;
    return (x->j > y->j) - (x->j < y->j);
}

/* probabilities, summaries and the top pairs of every block */
static void pairs_finish(olmoe_analyze_pairs *p) {
    const int E = p->E;
    cand *c = xmalloc(xmul((size_t)E, (size_t)E * sizeof *c));
    for (int b = 0; b < p->n_blocks; b++) {
        const int64_t *cf = p->count_from + (size_t)b * E, *ct = p->count_to + (size_t)b * E;
        const int64_t *cnt = p->count + (size_t)b * E * E;
        double *pr = p->prob + (size_t)b * E * E, T = (double)p->n_tokens[b];
        /* means over selections: expert i weighs n_i, so that rarely used
         * experts (whose largest P(j|i) is mostly noise) count little */
        double sum_m = 0, sum_mi = 0, sel = 0, load = 0, wsum = 0;
        int nc = 0;
        for (int j = 0; j < E; j++) load += (double)ct[j];
        for (int i = 0; i < E; i++) {
            sel += (double)cf[i];
            double m = -1, ct_max = 0, partners = 0;
            for (int j = 0; j < E; j++) {
                size_t ij = (size_t)i * E + j;
                pr[ij] = cf[i] ? (double)cnt[ij] / (double)cf[i] : NAN;
                if (p->same_layer && j == i) continue;
                if ((double)ct[j] > ct_max) ct_max = (double)ct[j];
                partners += (double)cnt[ij];
                if (!cf[i]) continue;
                if (pr[ij] > m) m = pr[ij];
                if (cf[i] >= p->min_count) c[nc++] = (cand){pr[ij], cnt[ij], i, j};
            }
            if (!cf[i] || m < 0) continue;
            /* independent selection: flow, P(j at to); co-activation, i's partners
             * (sum_j n_ij / n_i of them) spread over the other experts by load */
            double rest = p->same_layer ? load - (double)ct[i] : T;
            double mi = p->same_layer ? partners / (double)cf[i] * ct_max / rest : ct_max / rest;
            if (!(rest > 0)) mi = 0;
            double w = (double)cf[i];
            sum_m += w * m, sum_mi += w * mi, wsum += w;
        }
        p->max_cond_mean[b] = wsum > 0 ? sum_m / wsum : NAN;
        p->indep_max_mean[b] = wsum > 0 ? sum_mi / wsum : NAN;
        p->lift[b] = wsum > 0 && sum_mi > 0 ? sum_m / sum_mi : NAN;
        p->mean_selected[b] = T > 0 ? sel / T : NAN;
        qsort(c, (size_t)nc, sizeof *c, cand_cmp);
        for (int t = 0; t < p->top; t++) {
            size_t at = (size_t)b * p->top + t;
            p->top_i[at] = t < nc ? c[t].i : -1;
            p->top_j[at] = t < nc ? c[t].j : -1;
            p->top_prob[at] = t < nc ? c[t].prob : NAN;
        }
    }
    free(c);
}

static int pairs_run(olmoe_analyze_src *s, olmoe_analyze_pairs *p) {
    const int E = s->E, K = s->K, L = s->L;
    olmoe_analyze_chunk c;
    int r;
    olmoe_analyze_src_rewind(s);
    while ((r = olmoe_analyze_src_next(s, &c)) == 1) {
        for (int b = 0; b < p->n_blocks; b++) {
            int64_t *cf = p->count_from + (size_t)b * E, *ct = p->count_to + (size_t)b * E;
            int64_t *cnt = p->count + (size_t)b * E * E;
            for (int64_t t = 0; t < c.n; t++) {
                size_t ra = (size_t)t * L + (size_t)p->from[b], rb = (size_t)t * L + (size_t)p->to[b];
                int na = c.n_sel[ra], nb = c.n_sel[rb];
                const int16_t *sa = c.sel + ra * K, *sb = c.sel + rb * K;
                for (int x = 0; x < na; x++) {
                    int64_t *row = cnt + (size_t)sa[x] * E;
                    cf[sa[x]]++;
                    for (int y = 0; y < nb; y++) row[sb[y]]++;
                }
                for (int y = 0; y < nb; y++) ct[sb[y]]++;
            }
            p->n_tokens[b] += c.n;
        }
    }
    if (r < 0) return -1;
    pairs_finish(p);
    return 0;
}

int olmoe_analyze_coactivation(olmoe_analyze_src *s, int top, int64_t min_count,
                               olmoe_analyze_pairs *out) {
    pairs_alloc(out, s->n_layers, s->E, top);
    out->min_count = min_count;
    out->same_layer = 1;
    for (int b = 0; b < s->n_layers; b++) out->from[b] = out->to[b] = s->layers[b];
    if (pairs_run(s, out) != 0) {
        olmoe_analyze_pairs_free(out);
        return -1;
    }
    return 0;
}

int olmoe_analyze_flow(olmoe_analyze_src *s, int n_blocks, const int *from, const int *to, int top,
                       int64_t min_count, olmoe_analyze_pairs *out) {
    if (n_blocks < 1) return olmoe_errorf("%s: flow needs at least one pair of layers", s->path);
    for (int b = 0; b < n_blocks; b++)
        if (from[b] < 0 || from[b] >= s->L || to[b] < 0 || to[b] >= s->L || !s->want[from[b]] ||
            !s->want[to[b]])
            return olmoe_errorf("%s: flow from layer %d to %d: not analysed (the trace has %d "
                                "layers)", s->path, from[b], to[b], s->L);
    pairs_alloc(out, n_blocks, s->E, top);
    out->min_count = min_count;
    memcpy(out->from, from, (size_t)n_blocks * sizeof *from);
    memcpy(out->to, to, (size_t)n_blocks * sizeof *to);
    if (pairs_run(s, out) != 0) {
        olmoe_analyze_pairs_free(out);
        return -1;
    }
    return 0;
}

/* ---- output ---- */

void olmoe_analyze_pairs_print(const olmoe_analyze_pairs *p, FILE *f, int top) {
    const char *cond = p->same_layer ? "P(j|i)" : "P(j@to|i@from)";
    if (p->same_layer)
        fprintf(f, "%5s %10s %8s %9s %9s %7s\n", "layer", "tokens", "experts", "max_cond",
                "indep", "lift");
    else
        fprintf(f, "%4s %4s %10s %8s %9s %9s %7s\n", "from", "to", "tokens", "experts",
                "max_cond", "indep", "lift");
    for (int b = 0; b < p->n_blocks; b++) {
        if (p->same_layer)
            fprintf(f, "%5d", p->from[b]);
        else
            fprintf(f, "%4d %4d", p->from[b], p->to[b]);
        fprintf(f, " %10lld %8.3f %9.4f %9.4f %7.3f\n", (long long)p->n_tokens[b],
                p->mean_selected[b], p->max_cond_mean[b], p->indep_max_mean[b], p->lift[b]);
    }
    if (top > p->top) top = p->top;
    if (top <= 0) return;
    fprintf(f, "\n# most %s pairs, by %s (experts i selected >= %lld times)\n",
            p->same_layer ? "co-activated" : "frequent", cond, (long long)p->min_count);
    if (p->same_layer)
        fprintf(f, "%5s %4s %4s %9s %10s %10s\n", "layer", "i", "j", cond, "n(i,j)", "n(i)");
    else
        fprintf(f, "%4s %4s %4s %4s %14s %10s %10s\n", "from", "to", "i", "j", cond, "n(i,j)",
                "n(i)");
    int shown = 0;
    for (int b = 0; b < p->n_blocks; b++)
        for (int t = 0; t < top; t++) {
            size_t at = (size_t)b * p->top + t;
            int i = p->top_i[at], j = p->top_j[at];
            if (i < 0) break;
            shown++;
            int64_t nij = p->count[((size_t)b * p->E + i) * p->E + j];
            int64_t ni = p->count_from[(size_t)b * p->E + i];
            if (p->same_layer)
                fprintf(f, "%5d %4d %4d %9.4f %10lld %10lld\n", p->from[b], i, j, p->top_prob[at],
                        (long long)nij, (long long)ni);
            else
                fprintf(f, "%4d %4d %4d %4d %14.4f %10lld %10lld\n", p->from[b], p->to[b], i, j,
                        p->top_prob[at], (long long)nij, (long long)ni);
        }
    if (shown == 0) { /* an empty table says why */
        int64_t most = 0;
        for (size_t k = 0; k < (size_t)p->n_blocks * p->E; k++)
            if (p->count_from[k] > most) most = p->count_from[k];
        fprintf(f, "(none: no expert i was selected %lld times; the most selected one was "
                   "selected %lld times: lower --min-count or analyse more tokens)\n",
                (long long)p->min_count, (long long)most);
    }
}

int olmoe_analyze_pairs_csv(const olmoe_analyze_pairs *p, FILE *f) {
    const int E = p->E;
    fprintf(f, p->same_layer ? "layer,expert_i,expert_j,count_i,count_ij,p_j_given_i\n"
                             : "from_layer,to_layer,expert_i,expert_j,count_i,count_ij,p_j_given_i\n");
    for (int b = 0; b < p->n_blocks; b++)
        for (int i = 0; i < E; i++)
            for (int j = 0; j < E; j++) {
                size_t at = ((size_t)b * E + i) * E + j;
                if (p->same_layer)
                    fprintf(f, "%d,", p->from[b]);
                else
                    fprintf(f, "%d,%d,", p->from[b], p->to[b]);
                fprintf(f, "%d,%d,%lld,%lld,", i, j, (long long)p->count_from[(size_t)b * E + i],
                        (long long)p->count[at]);
                if (isnan(p->prob[at]))
                    fputc('\n', f);
                else
                    fprintf(f, "%.9g\n", p->prob[at]);
            }
    return ferror(f) ? -1 : 0;
}

json_t *olmoe_analyze_pairs_json(const olmoe_analyze_pairs *p) {
    const int E = p->E;
    json_t *blocks = json_array();
    for (int b = 0; b < p->n_blocks; b++) {
        json_t *o = json_object(), *cf = json_array(), *ct = json_array(), *cnt = json_array(),
               *pr = json_array(), *top = json_array();
        for (int i = 0; i < E; i++) {
            json_t *rc = json_array(), *rp = json_array();
            json_array_append_new(cf, json_integer(p->count_from[(size_t)b * E + i]));
            json_array_append_new(ct, json_integer(p->count_to[(size_t)b * E + i]));
            for (int j = 0; j < E; j++) {
                size_t at = ((size_t)b * E + i) * E + j;
                json_array_append_new(rc, json_integer(p->count[at]));
                json_array_append_new(rp, olmoe_analyze_jnum(p->prob[at]));
            }
            json_array_append_new(cnt, rc);
            json_array_append_new(pr, rp);
        }
        for (int t = 0; t < p->top; t++) {
            size_t at = (size_t)b * p->top + t;
            if (p->top_i[at] < 0) break;
            json_array_append_new(top, json_pack("{s:i,s:i,s:o,s:I}", "i", p->top_i[at], "j",
                                                 p->top_j[at], "prob",
                                                 olmoe_analyze_jnum(p->top_prob[at]), "count",
                                                 (json_int_t)p->count[((size_t)b * E + p->top_i[at]) * E +
                                                                      p->top_j[at]]));
        }
        if (p->same_layer) json_object_set_new(o, "layer", json_integer(p->from[b]));
        json_object_set_new(o, "from_layer", json_integer(p->from[b]));
        json_object_set_new(o, "to_layer", json_integer(p->to[b]));
        json_object_set_new(o, "n_tokens", json_integer(p->n_tokens[b]));
        json_object_set_new(o, "mean_selected", olmoe_analyze_jnum(p->mean_selected[b]));
        json_object_set_new(o, "max_cond_mean", olmoe_analyze_jnum(p->max_cond_mean[b]));
        json_object_set_new(o, "indep_max_mean", olmoe_analyze_jnum(p->indep_max_mean[b]));
        json_object_set_new(o, "lift", olmoe_analyze_jnum(p->lift[b]));
        json_object_set_new(o, "top_pairs", top);
        json_object_set_new(o, "min_count", json_integer(p->min_count));
        json_object_set_new(o, "count_from", cf);
        json_object_set_new(o, "count_to", ct);
        json_object_set_new(o, "count", cnt);
        json_object_set_new(o, "prob", pr);
        json_array_append_new(blocks, o);
    }
    json_t *root = json_object();
    json_object_set_new(root, p->same_layer ? "layers" : "pairs", blocks);
    return root;
}

int olmoe_analyze_pairs_h5(const olmoe_analyze_pairs *p, hid_t g) {
    const int64_t B = p->n_blocks, E = p->E, T = p->top;
    int64_t d1[1] = {B}, d2[2] = {B, E}, d3[3] = {B, E, E}, dt[2] = {B, T}, dtp[3] = {B, T, 2};
    int32_t *pairs = xmalloc(xmul((size_t)(B * T * 2 + 1), sizeof *pairs));
    for (int64_t x = 0; x < B * T; x++) pairs[2 * x] = p->top_i[x], pairs[2 * x + 1] = p->top_j[x];
    int rc = -1;
    if (p->same_layer) OLMOE_TRY(olmoe_h5_write(g, "layer", OLMOE_H5_I32, 1, d1, p->from));
    OLMOE_TRY(olmoe_h5_write(g, "layer_from", OLMOE_H5_I32, 1, d1, p->from));
    OLMOE_TRY(olmoe_h5_write(g, "layer_to", OLMOE_H5_I32, 1, d1, p->to));
    OLMOE_TRY(olmoe_h5_write(g, "n_tokens", OLMOE_H5_I64, 1, d1, p->n_tokens));
    OLMOE_TRY(olmoe_h5_write(g, "count_from", OLMOE_H5_I64, 2, d2, p->count_from));
    OLMOE_TRY(olmoe_h5_write(g, "count_to", OLMOE_H5_I64, 2, d2, p->count_to));
    OLMOE_TRY(olmoe_h5_write(g, "count", OLMOE_H5_I64, 3, d3, p->count));
    OLMOE_TRY(olmoe_h5_write(g, "prob", OLMOE_H5_F64, 3, d3, p->prob));
    OLMOE_TRY(olmoe_h5_write(g, "max_cond_mean", OLMOE_H5_F64, 1, d1, p->max_cond_mean));
    OLMOE_TRY(olmoe_h5_write(g, "indep_max_mean", OLMOE_H5_F64, 1, d1, p->indep_max_mean));
    OLMOE_TRY(olmoe_h5_write(g, "lift", OLMOE_H5_F64, 1, d1, p->lift));
    OLMOE_TRY(olmoe_h5_write(g, "mean_selected", OLMOE_H5_F64, 1, d1, p->mean_selected));
    OLMOE_TRY(olmoe_h5_set_attr_i64(g, ".", "min_count", p->min_count));
    if (T > 0) {
        OLMOE_TRY(olmoe_h5_write(g, "top_pairs", OLMOE_H5_I32, 3, dtp, pairs));
        OLMOE_TRY(olmoe_h5_write(g, "top_prob", OLMOE_H5_F64, 2, dt, p->top_prob));
    }
    rc = 0;
fail:
    free(pairs);
    return rc;
}
