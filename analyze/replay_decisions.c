/* replay_decisions.c: where a policy spends or saves experts, token by
 * token: olmoe-traces export --what decisions. Reads a policy's per-token
 * NLL and experts (/replay/<name>/ or /exact/<name>/, found by the policy id,
 * in the trace or a results file) and prints the tokens whose loss moved
 * most against the captured baseline, with their text in context. */
#include "common.h"
#include "replay.h"
#include "engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t pos;
    double delta;
} moved;

static int by_size(const void *a, const void *b) {
    const moved *x = a, *y = b;
    double dx = fabs(x->delta), dy = fabs(y->delta);
    if (dx != dy) return dx < dy ? 1 : -1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* quoted CSV field; newlines and tabs shown as \n and \t so a row stays a line */
static void put_text(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') fputs("\"\"", f);
        else if (s[i] == '\n') fputs("\\n", f);
        else if (s[i] == '\t') fputs("\\t", f);
        else if (s[i] == '\r') fputs("\\r", f);
        else fputc(s[i], f);
    }
    fputc('"', f);
}

static int decode(olmoe_tokenizer *tok, const int32_t *ids, size_t n, FILE *f) {
    char *text;
    size_t len;
    if (olmoe_tokenizer_decode(tok, ids, n, 0, &text, &len) != 0) return -1;
    put_text(f, text, len);
    free(text);
    return 0;
}

static olmoe_tokenizer *open_tokenizer(olmoe_trace *t, const char *given) {
    const olmoe_trace_meta *m = &olmoe_trace_info_of(t)->meta;
    char *path = given ? xstrdup(given) : olmoe_path_join(m->model_dir, "tokenizer.json");
    olmoe_tokenizer *tok = NULL;
    if (olmoe_tokenizer_open(path, &tok) != 0) {
        if (!given) olmoe_errorf("%s (give --tokenizer FILE)", olmoe_error());
        free(path);
        return NULL;
    }
    const char *want = m->tokenizer_checksum ? m->tokenizer_checksum : "";
    if (want[0] && strcmp(want, olmoe_tokenizer_checksum(tok)) != 0) {
        olmoe_errorf("%s: checksum %s, but the trace was captured with tokenizer %s", path,
                     olmoe_tokenizer_checksum(tok), want);
        olmoe_tokenizer_close(tok);
        tok = NULL;
    }
    free(path);
    return tok;
}

/* the stored results of one family ("bh" of "bh" or "bh(pvalue=pseudo)"):
 * "kind/id" under replay/ and exact/, and the group each lies in */
typedef struct {
    char names[16][OLMOE_POLICY_ID_MAX + 8], paths[16][OLMOE_POLICY_ID_MAX + 48];
    size_t flen;
    int n, total;
} stored_list;

static void list_stored(hid_t loc, const char *spec, const char *only_kind, stored_list *l) {
    memset(l, 0, sizeof *l);
    size_t flen = l->flen = strcspn(spec, "( ");
    const char *kinds[2] = {"replay", "exact"};
    for (int k = 0; k < 2; k++) {
        olmoe_result_group *g;
        int n;
        if ((only_kind && strcmp(only_kind, kinds[k]) != 0) || olmoe_result_groups(loc, kinds[k], &g, &n) != 0)
            continue; /* listing is for the message only */
        for (int i = 0; i < n; i++) {
            if (strncmp(g[i].spec, spec, flen) != 0 || g[i].spec[flen] != '(') continue;
            if (l->n < 16) {
                snprintf(l->names[l->n], sizeof l->names[0], "%s/%s", kinds[k], g[i].spec);
                snprintf(l->paths[l->n++], sizeof l->paths[0], "%s", g[i].path);
            }
            l->total++;
        }
        olmoe_result_groups_free(g, n);
    }
}

/* the group of the policy's results: its canonical id, or, for a spec that
 * names a family only ("bh"), the one result of that family stored; else an
 * error that names what is stored */
static int find_group(hid_t loc, const char *where, const olmoe_decisions_opts *o, char *g, size_t n) {
    olmoe_policy pol;
    int parsed = olmoe_policy_parse(o->policy_id, &pol) == 0;
    const char *id = parsed ? pol.id : o->policy_id;
    const char *kinds[2] = {"replay", "exact"};
    for (int k = 0; k < 2; k++) {
        if (o->kind && strcmp(o->kind, kinds[k]) != 0) continue;
        char *path = NULL;
        int e = olmoe_result_find(loc, kinds[k], id, &path);
        if (e == 1) snprintf(g, n, "%s", path);
        free(path);
        if (e == 1) return 0;
    }
    stored_list l;
    list_stored(loc, o->policy_id, o->kind, &l);
    if (!parsed && !strchr(o->policy_id, '(') && l.total == 1) {
        snprintf(g, n, "%s", l.paths[0]);
        notef("--policy %s: the one stored result of %s, /%s", o->policy_id, o->policy_id, l.names[0]);
        return 0;
    }
    char names[1200] = "";
    size_t at = 0;
    for (int i = 0; i < l.n && at < sizeof names; i++)
        at += (size_t)snprintf(names + at, sizeof names - at, "%s%s", i ? ", " : "", l.names[i]);
    if (l.total)
        return olmoe_errorf("%s: no %s results for %s; stored for %.*s: %s%s (give one to --policy)",
                            where, o->kind ? o->kind : "replay or exact", id, (int)l.flen,
                            o->policy_id, names, l.total > l.n ? ", ..." : "");
    return olmoe_errorf("%s: no %s results for %s (run olmoe-replay%s first)", where,
                        o->kind ? o->kind : "replay or exact", id,
                        o->kind && strcmp(o->kind, "exact") == 0 ? " --exact" : "");
}

int olmoe_replay_export_decisions(olmoe_trace *t, const olmoe_decisions_opts *o, FILE *out) {
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    const char *where = o->results ? o->results : olmoe_trace_path(t);
    int L = in->meta.n_layers, rc = -1;
    /* the results file beside the trace (or results an old trace holds) */
    hid_t loc;
    int own = 1;
    if (o->results) loc = olmoe_h5_open(o->results, 0);
    else if ((own = olmoe_results_open(olmoe_trace_path(t), olmoe_trace_hid(t), &loc)) < 0) loc = -1;
    if (loc < 0) return -1;
    if (!o->results && own) where = "the results beside the trace";
    /* a spec names its canonical id: "topk(k=2)" finds topk(k=2,norm=model) */
    char g[OLMOE_POLICY_ID_MAX + 48], p[OLMOE_POLICY_ID_MAX + 64];
    int found = find_group(loc, where, o, g, sizeof g) == 0;
    float *nll = NULL, *base = NULL;
    int32_t *experts = NULL, *tokens = NULL;
    moved *mv = NULL;
    olmoe_tokenizer *tok = NULL;
    if (!found) goto done;
    int rank;
    int64_t d[OLMOE_H5_MAX_RANK], de[OLMOE_H5_MAX_RANK];
    snprintf(p, sizeof p, "%s/nll", g);
    if (olmoe_h5_read_alloc(loc, p, OLMOE_H5_F32, (void **)&nll, &rank, d) != 0) goto done;
    snprintf(p, sizeof p, "%s/experts", g);
    if (olmoe_h5_read_alloc(loc, p, OLMOE_H5_I32, (void **)&experts, &rank, de) != 0) goto done;
    int64_t N = d[0];
    if (rank != 2 || de[0] != N || de[1] != L || N > in->n_tokens) {
        olmoe_errorf("%s: /%s: nll and experts do not fit the trace (%lld tokens, %d layers)", where,
                     g, (long long)in->n_tokens, L);
        goto done;
    }
    int64_t nt = N + 1 <= in->n_tokens ? N + 1 : N;
    tokens = xmalloc(xmul((size_t)N + 1, sizeof *tokens));
    base = xmalloc(xmul((size_t)N + 1, sizeof *base));
    tokens[N] = -1;
    if (olmoe_trace_read_tokens(t, 0, nt, tokens) != 0 || olmoe_trace_read_nll(t, 0, N, base) != 0)
        goto done;
    if (!(tok = open_tokenizer(t, o->tokenizer))) goto done;
    mv = xmalloc(xmul((size_t)N + 1, sizeof *mv));
    int64_t n = 0;
    int64_t lo = o->start < N ? o->start : N;
    int64_t hi = o->count >= 0 && o->count < N - lo ? lo + o->count : N;
    for (int64_t i = lo; i < hi; i++)
        if (isfinite(nll[i]) && isfinite(base[i]) && tokens[i + 1] >= 0)
            mv[n++] = (moved){i, (double)nll[i] - (double)base[i]};
    qsort(mv, (size_t)n, sizeof *mv, by_size);
    fprintf(out, "position,context,next,nll_policy,nll_baseline,delta,mean_experts,experts_per_layer\n");
    int C = o->context > 0 ? o->context : 8;
    for (int64_t j = 0; j < n && j < o->top; j++) {
        int64_t i = mv[j].pos, c0 = i + 1 >= C ? i + 1 - C : 0;
        fprintf(out, "%lld,", (long long)i);
        if (decode(tok, tokens + c0, (size_t)(i + 1 - c0), out) != 0) goto done;
        fputc(',', out);
        if (decode(tok, tokens + i + 1, 1, out) != 0) goto done;
        double ksum = 0;
        for (int l = 0; l < L; l++) ksum += experts[(size_t)i * L + l];
        fprintf(out, ",%.6f,%.6f,%+.6f,%.3f,", nll[i], base[i], mv[j].delta, ksum / L);
        for (int l = 0; l < L; l++) fprintf(out, "%s%d", l ? " " : "", experts[(size_t)i * L + l]);
        fputc('\n', out);
    }
    rc = 0;
done:
    if (tok) olmoe_tokenizer_close(tok);
    free(mv);
    free(nll);
    free(base);
    free(experts);
    free(tokens);
    if (own) olmoe_h5_close(loc);
    return rc;
}
