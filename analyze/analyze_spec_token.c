/* analyze_spec_token.c: token-id specialization (the OLMoE paper's
 * vocabulary specialization): how consistently each vocabulary id goes to
 * one expert, and which ids each expert serves most exclusively.
 *
 * Two passes: /tokens alone to count each id's occurrences (the "kept" ids
 * are those seen at least min_count times), then the routed trace, counting
 * [layer, kept id, expert] in 32-bit counters. Memory is bounded by the
 * vocabulary, not by the number of tokens. */
#include "common.h"
#include "analyze.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void olmoe_analyze_tokenspec_free(olmoe_analyze_tokenspec *t) {
    if (!t) return;
    for (int i = 0; t->text && i < t->n_ids; i++) free(t->text[i]);
    free(t->text), free(t->layers), free(t->ids), free(t->id_count), free(t->top_expert);
    free(t->top_share), free(t->mean_top_share), free(t->mean_top_share_ids);
    free(t->uniform_share), free(t->expert_top_ids), free(t->expert_top_share);
    memset(t, 0, sizeof *t);
}

/* occurrences of every vocabulary id among the analysed rows */
static int count_ids(olmoe_analyze_src *s, int64_t *occ /* [V] */) {
    const int V = s->info->meta.vocab_size;
    enum { B = 65536 };
    int32_t *buf = xmalloc(B * sizeof *buf);
    for (int64_t st = 0; st < s->n_tokens; st += B) {
        int64_t n = s->n_tokens - st < B ? s->n_tokens - st : B;
        if (olmoe_trace_read_tokens(s->trace, st, n, buf) != 0) {
            free(buf);
            return -1;
        }
        for (int64_t i = 0; i < n; i++) {
            if (buf[i] < 0 || buf[i] >= V) {
                olmoe_errorf("%s: token %d at position %lld is outside the vocabulary (%d)",
                             s->path, buf[i], (long long)(st + i), V);
                free(buf);
                return -1;
            }
            occ[buf[i]]++;
        }
    }
    free(buf);
    return 0;
}

/* is (share a, count ca, id a) ranked before (b, cb, idb)? */
static int better(double a, int64_t ca, int32_t ia, double b, int64_t cb, int32_t ib) {
    if (a != b) return a > b;
    if (ca != cb) return ca > cb;
    return ia < ib;
}

static void finish(olmoe_analyze_tokenspec *o, const uint32_t *cnt) {
    const int E = o->E, T = o->top, n = o->n_ids;
    for (int li = 0; li < o->n_layers; li++) {
        double wsum = 0, occ_sum = 0, usum = 0, sel = 0;
        for (int k = 0; k < n; k++) {
            const uint32_t *c = cnt + ((size_t)li * n + k) * E;
            int best = 0;
            for (int e = 0; e < E; e++) {
                sel += c[e];
                if (c[e] > c[best]) best = e;
            }
            double sh = (double)c[best] / (double)o->id_count[k];
            o->top_expert[(size_t)li * n + k] = best;
            o->top_share[(size_t)li * n + k] = sh;
            wsum += (double)c[best], occ_sum += (double)o->id_count[k], usum += sh;
        }
        o->mean_top_share[li] = wsum / occ_sum;
        o->mean_top_share_ids[li] = usum / n;
        o->uniform_share[li] = sel / occ_sum / E;
        for (int e = 0; e < E; e++) {
            int32_t *ti = o->expert_top_ids + ((size_t)li * E + e) * T;
            double *ts = o->expert_top_share + ((size_t)li * E + e) * T;
            int m = 0;
            for (int k = 0; k < n; k++) {
                uint32_t x = cnt[((size_t)li * n + k) * E + e];
                if (!x) continue;
                double sh = (double)x / (double)o->id_count[k];
                if (m == T && !better(sh, o->id_count[k], o->ids[k], ts[T - 1],
                                      o->id_count[ti[T - 1]], o->ids[ti[T - 1]]))
                    continue;
                int i = m < T ? m++ : T - 1;
                while (i > 0 && better(sh, o->id_count[k], o->ids[k], ts[i - 1],
                                       o->id_count[ti[i - 1]], o->ids[ti[i - 1]])) {
                    ti[i] = ti[i - 1], ts[i] = ts[i - 1];
                    i--;
                }
                ti[i] = k, ts[i] = sh;
            }
            for (int i = m; i < T; i++) ti[i] = -1, ts[i] = NAN;
        }
    }
}

int olmoe_analyze_spec_token(olmoe_analyze_src *s, int64_t min_count, int top, size_t max_bytes,
                             olmoe_analyze_tokenspec *o) {
    memset(o, 0, sizeof *o);
    const int V = s->info->meta.vocab_size, E = s->E, NL = s->n_layers, L = s->L, K = s->K;
    if (min_count < 1) min_count = 1;
    if (top < 1) top = 1;
    if (!max_bytes) max_bytes = (size_t)2 << 30;
    int64_t *occ = xcalloc((size_t)V, sizeof *occ);
    int32_t *idx = xmalloc((size_t)V * sizeof *idx);
    uint32_t *cnt = NULL;
    if (count_ids(s, occ) != 0) goto fail;
    int n = 0;
    for (int v = 0; v < V; v++) idx[v] = occ[v] >= min_count ? n++ : -1;
    if (n == 0) {
        olmoe_errorf("%s: no token id occurs %lld times or more in %lld tokens (lower --min-count)",
                     s->path, (long long)min_count, (long long)s->n_tokens);
        goto fail;
    }
    double need = (double)NL * n * E * sizeof *cnt;
    if (need > (double)max_bytes) {
        char b1[32], b2[32];
        olmoe_errorf("%s: token counters need %s for %d ids x %d layers x %d experts, more than "
                     "%s (raise --min-count, give fewer --layers or more --mem)", s->path,
                     olmoe_fmt_bytes(need, b1, sizeof b1), n, NL, E,
                     olmoe_fmt_bytes((double)max_bytes, b2, sizeof b2));
        goto fail;
    }
    o->n_layers = NL, o->E = E, o->top = top, o->min_count = min_count, o->n_ids = n;
    o->n_tokens = s->n_tokens;
    o->layers = xmalloc((size_t)NL * sizeof *o->layers);
    memcpy(o->layers, s->layers, (size_t)NL * sizeof *o->layers);
    o->ids = xmalloc((size_t)n * sizeof *o->ids);
    o->id_count = xmalloc((size_t)n * sizeof *o->id_count);
    for (int v = 0; v < V; v++)
        if (idx[v] >= 0) o->ids[idx[v]] = v, o->id_count[idx[v]] = occ[v];
    size_t ln = xmul((size_t)NL, (size_t)n), let = xmul(xmul((size_t)NL, E), (size_t)top);
    o->top_expert = xmalloc(ln * sizeof *o->top_expert);
    o->top_share = xmalloc(ln * sizeof *o->top_share);
    o->mean_top_share = xmalloc((size_t)NL * sizeof(double));
    o->mean_top_share_ids = xmalloc((size_t)NL * sizeof(double));
    o->uniform_share = xmalloc((size_t)NL * sizeof(double));
    o->expert_top_ids = xmalloc(let * sizeof *o->expert_top_ids);
    o->expert_top_share = xmalloc(let * sizeof *o->expert_top_share);
    cnt = xcalloc(xmul(ln, (size_t)E), sizeof *cnt);

    olmoe_analyze_chunk c;
    int r;
    olmoe_analyze_src_rewind(s);
    while ((r = olmoe_analyze_src_next(s, &c)) == 1)
        for (int64_t t = 0; t < c.n; t++) {
            int k = idx[c.tokens[t]];
            if (k < 0) continue;
            for (int li = 0; li < NL; li++) {
                size_t rl = (size_t)t * L + (size_t)s->layers[li];
                uint32_t *row = cnt + ((size_t)li * n + k) * E;
                const int16_t *sel = c.sel + rl * K;
                for (int x = 0; x < c.n_sel[rl]; x++) row[sel[x]]++;
            }
        }
    if (r < 0) goto fail;
    finish(o, cnt);
    free(cnt);
    free(occ);
    free(idx);
    return 0;
fail:
    free(cnt);
    free(occ);
    free(idx);
    olmoe_analyze_tokenspec_free(o);
    return -1;
}

/* ---- output ---- */

static const char *shown(const olmoe_analyze_tokenspec *t, int k, char *buf, size_t n) {
    if (!t->text) {
        snprintf(buf, n, "#%d", t->ids[k]);
        return buf;
    }
    char esc[128];
    olmoe_analyze_escape(t->text[k], esc, sizeof esc);
    snprintf(buf, n, "\"%s\"", esc);
    return buf;
}

static int cmp_share_desc(const void *a, const void *b, void *ctx) {
    const double *sh = ((const void **)ctx)[0];
    const olmoe_analyze_tokenspec *t = ((const void **)ctx)[1];
    int x = *(const int *)a, y = *(const int *)b;
    if (better(sh[x], t->id_count[x], t->ids[x], sh[y], t->id_count[y], t->ids[y])) return -1;
    if (better(sh[y], t->id_count[y], t->ids[y], sh[x], t->id_count[x], t->ids[x])) return 1;
    return 0;
}

/* the share of expert e's first token id at layer li; -1 when it has none */
static double first_share(const olmoe_analyze_tokenspec *t, int li, int e) {
    size_t at = ((size_t)li * t->E + e) * t->top;
    return t->expert_top_ids[at] < 0 ? -1 : t->expert_top_share[at];
}

void olmoe_analyze_tokenspec_print(const olmoe_analyze_tokenspec *t, FILE *f) {
    const int E = t->E, T = t->top, n = t->n_ids;
    char b[160];
    fprintf(f, "# %d token ids seen >= %lld times\n", n, (long long)t->min_count);
    fprintf(f, "%5s %14s %14s %9s\n", "layer", "top_share", "top_share_ids", "uniform");
    for (int li = 0; li < t->n_layers; li++)
        fprintf(f, "%5d %14.4f %14.4f %9.4f\n", t->layers[li], t->mean_top_share[li],
                t->mean_top_share_ids[li], t->uniform_share[li]);
    int *order = xmalloc((size_t)n * sizeof *order);
    fprintf(f, "\n# most specialised token ids: share of occurrences routed to their top expert\n");
    fprintf(f, "%5s %8s %-24s %9s %6s %8s\n", "layer", "id", "token", "count", "expert", "share");
    for (int li = 0; li < t->n_layers; li++) {
        const void *ctx[2] = {t->top_share + (size_t)li * n, t};
        for (int k = 0; k < n; k++) order[k] = k;
        qsort_r(order, (size_t)n, sizeof *order, cmp_share_desc, ctx);
        for (int i = 0; i < T && i < n; i++) {
            int k = order[i];
            fprintf(f, "%5d %8d %-24s %9lld %6d %8.4f\n", t->layers[li], t->ids[k],
                    shown(t, k, b, sizeof b), (long long)t->id_count[k],
                    t->top_expert[(size_t)li * n + k], t->top_share[(size_t)li * n + k]);
        }
    }
    free(order);
    /* per layer, the --top experts whose first token id is most exclusively theirs */
    fprintf(f, "\n# top token ids of the %d most exclusive experts of each layer (share of the id's "
               "occurrences routed to it; --json has every expert)\n", T < E ? T : E);
    int *eo = xmalloc((size_t)E * sizeof *eo);
    for (int li = 0; li < t->n_layers; li++) {
        for (int e = 0; e < E; e++) eo[e] = e;
        for (int i = 0; i < T && i < E; i++) { /* selection: T is small */
            int best = i;
            for (int j = i + 1; j < E; j++)
                if (first_share(t, li, eo[j]) > first_share(t, li, eo[best])) best = j;
            int tmp = eo[i];
            eo[i] = eo[best], eo[best] = tmp;
        }
        for (int i = 0; i < T && i < E; i++) {
            int e = eo[i];
            fprintf(f, "%5d %4d:", t->layers[li], e);
            for (int i = 0; i < T; i++) {
                size_t at = ((size_t)li * E + e) * T + i;
                int k = t->expert_top_ids[at];
                if (k < 0) break;
                fprintf(f, " %s %.2f", shown(t, k, b, sizeof b), t->expert_top_share[at]);
            }
            fputc('\n', f);
        }
    }
    free(eo);
}

int olmoe_analyze_tokenspec_csv(const olmoe_analyze_tokenspec *t, FILE *f) {
    const int n = t->n_ids;
    fprintf(f, "layer,token_id,token,count,top_expert,top_share\n");
    for (int li = 0; li < t->n_layers; li++)
        for (int k = 0; k < n; k++) {
            fprintf(f, "%d,%d,", t->layers[li], t->ids[k]);
            if (t->text) olmoe_analyze_csv_str(f, t->text[k]);
            fprintf(f, ",%lld,%d,%.9g\n", (long long)t->id_count[k],
                    t->top_expert[(size_t)li * n + k], t->top_share[(size_t)li * n + k]);
        }
    return ferror(f) ? -1 : 0;
}

json_t *olmoe_analyze_tokenspec_json(const olmoe_analyze_tokenspec *t) {
    const int E = t->E, T = t->top, n = t->n_ids;
    json_t *root = json_object(), *ids = json_array(), *layers = json_array();
    for (int k = 0; k < n; k++) {
        json_t *o = json_pack("{s:i,s:I}", "id", t->ids[k], "count", (json_int_t)t->id_count[k]);
        if (t->text) json_object_set_new(o, "text", olmoe_json_str(t->text[k]));
        json_array_append_new(ids, o);
    }
    for (int li = 0; li < t->n_layers; li++) {
        json_t *l = json_object(), *te = json_array(), *ts = json_array(), *ex = json_array();
        for (int k = 0; k < n; k++) {
            json_array_append_new(te, json_integer(t->top_expert[(size_t)li * n + k]));
            json_array_append_new(ts, olmoe_analyze_jnum(t->top_share[(size_t)li * n + k]));
        }
        for (int e = 0; e < E; e++) {
            json_t *toks = json_array();
            for (int i = 0; i < T; i++) {
                size_t at = ((size_t)li * E + e) * T + i;
                int k = t->expert_top_ids[at];
                if (k < 0) break;
                json_t *o = json_pack("{s:i,s:o}", "id", t->ids[k], "share",
                                      olmoe_analyze_jnum(t->expert_top_share[at]));
                if (t->text) json_object_set_new(o, "text", olmoe_json_str(t->text[k]));
                json_array_append_new(toks, o);
            }
            json_array_append_new(ex, json_pack("{s:i,s:o}", "expert", e, "tokens", toks));
        }
        json_object_set_new(l, "layer", json_integer(t->layers[li]));
        json_object_set_new(l, "mean_top_share", olmoe_analyze_jnum(t->mean_top_share[li]));
        json_object_set_new(l, "mean_top_share_ids", olmoe_analyze_jnum(t->mean_top_share_ids[li]));
        json_object_set_new(l, "uniform_share", olmoe_analyze_jnum(t->uniform_share[li]));
        json_object_set_new(l, "top_expert", te);
        json_object_set_new(l, "top_share", ts);
        json_object_set_new(l, "experts", ex);
        json_array_append_new(layers, l);
    }
    json_object_set_new(root, "min_count", json_integer(t->min_count));
    json_object_set_new(root, "ids", ids);
    json_object_set_new(root, "layers", layers);
    return root;
}

int olmoe_analyze_tokenspec_h5(const olmoe_analyze_tokenspec *t, hid_t g) {
    const int64_t NL = t->n_layers, E = t->E, T = t->top, n = t->n_ids;
    int64_t d1[1] = {NL}, dn[1] = {n}, d2[2] = {NL, n}, d3[3] = {NL, E, T};
    size_t let = (size_t)(NL * E * T);
    int32_t *vid = xmalloc((let + 1) * sizeof *vid);
    for (size_t i = 0; i < let; i++)
        vid[i] = t->expert_top_ids[i] >= 0 ? t->ids[t->expert_top_ids[i]] : -1;
    int rc = -1;
    OLMOE_TRY(olmoe_h5_write(g, "layer", OLMOE_H5_I32, 1, d1, t->layers));
    OLMOE_TRY(olmoe_h5_write(g, "token_id", OLMOE_H5_I32, 1, dn, t->ids));
    OLMOE_TRY(olmoe_h5_write(g, "token_count", OLMOE_H5_I64, 1, dn, t->id_count));
    if (t->text) OLMOE_TRY(olmoe_h5_write_strings(g, "token_text", t->text, n));
    OLMOE_TRY(olmoe_h5_write(g, "top_expert", OLMOE_H5_I32, 2, d2, t->top_expert));
    OLMOE_TRY(olmoe_h5_write(g, "top_share", OLMOE_H5_F64, 2, d2, t->top_share));
    OLMOE_TRY(olmoe_h5_write(g, "mean_top_share", OLMOE_H5_F64, 1, d1, t->mean_top_share));
    OLMOE_TRY(olmoe_h5_write(g, "mean_top_share_ids", OLMOE_H5_F64, 1, d1, t->mean_top_share_ids));
    OLMOE_TRY(olmoe_h5_write(g, "uniform_share", OLMOE_H5_F64, 1, d1, t->uniform_share));
    OLMOE_TRY(olmoe_h5_write(g, "expert_top_tokens", OLMOE_H5_I32, 3, d3, vid));
    OLMOE_TRY(olmoe_h5_write(g, "expert_top_share", OLMOE_H5_F64, 3, d3, t->expert_top_share));
    OLMOE_TRY(olmoe_h5_set_attr_i64(g, ".", "min_count", t->min_count));
    rc = 0;
fail:
    free(vid);
    return rc;
}
