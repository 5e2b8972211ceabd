/* generate.c: the prompts file and greedy generation of one prompt through
 * the engine's incremental decoder (generate.h). */
#include "generate.h"

#include "windows.h"

#include <stdlib.h>
#include <string.h>

/* ---- prompts ---- */

int olmoe_prompts_parse_format(const char *s, olmoe_prompts_format *out) {
    if (!s || strcmp(s, "text") == 0)
        *out = OLMOE_PROMPTS_TEXT;
    else if (strcmp(s, "ids") == 0)
        *out = OLMOE_PROMPTS_IDS;
    else
        return olmoe_errorf("unknown prompt format '%s' (text or ids)", s);
    return 0;
}

static void push_prompt(olmoe_prompts *p, int *cap, olmoe_prompt item) {
    if (p->n == *cap) {
        *cap = *cap ? 2 * *cap : 8;
        p->items = xrealloc(p->items, xmul((size_t)*cap, sizeof *p->items));
    }
    p->items[p->n++] = item;
}

/* text: spaces and tabs only; ids: any blank the --tokens reader skips */
static int blank(const char *s, size_t n, int ids) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && !(ids && strchr("\r\v\f", s[i]) && s[i])) return 0;
    return 1;
}

/* ids: the --tokens reader's rules (blank lines skipped, FILE:LINE errors),
 * one document a prompt; the line numbers come from a second pass */
static int read_ids(const char *path, int V, olmoe_prompts *out) {
    olmoe_token_stream ts;
    if (olmoe_token_ids_read(path, V, &ts) != 0) return -1;
    char *text;
    size_t len;
    if (olmoe_read_file(path, &text, &len) != 0) {
        olmoe_token_stream_free(&ts);
        return -1;
    }
    int cap = 0;
    long line = 0;
    for (char *p = text; p && out->n < ts.n_docs; line++) {
        char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        if (n && p[n - 1] == '\r') n--;
        if (!blank(p, n, 1)) {
            int64_t d = out->n;
            olmoe_prompt it = {NULL, xmalloc(xmul((size_t)ts.doc_length[d], sizeof(int32_t))),
                               (int)ts.doc_length[d], line + 1};
            memcpy(it.ids, ts.tokens + ts.doc_start[d], (size_t)it.n * sizeof(int32_t));
            push_prompt(out, &cap, it);
        }
        p = eol ? eol + 1 : NULL;
    }
    free(text);
    olmoe_token_stream_free(&ts);
    return 0;
}

static int read_text(const char *path, olmoe_tokenizer *tok, int V, olmoe_prompts *out) {
    char *text;
    size_t len;
    if (olmoe_read_file(path, &text, &len) != 0) return -1;
    int cap = 0, rc = 0;
    long line = 0;
    for (char *p = text; p && rc == 0;) {
        line++;
        char *eol = memchr(p, '\n', len - (size_t)(p - text));
        size_t n = eol ? (size_t)(eol - p) : len - (size_t)(p - text);
        if (n && p[n - 1] == '\r') n--;
        if (!blank(p, n, 0)) {
            olmoe_ids ids = {0};
            if (memchr(p, '\0', n)) {
                rc = olmoe_errorf("%s:%ld: holds a NUL byte", path, line);
            } else if (olmoe_tokenizer_encode(tok, p, n, &ids) != 0) {
                rc = olmoe_error_prefix("%s:%ld", path, line);
            } else {
                for (size_t i = 0; i < ids.n && rc == 0; i++)
                    if (ids.v[i] >= V)
                        rc = olmoe_errorf("%s:%ld: the tokenizer gives id %d, not below the model's "
                                          "vocab_size %d",
                                          path, line, ids.v[i], V);
                if (rc == 0 && ids.n == 0) rc = olmoe_errorf("%s:%ld: the prompt has no tokens", path, line);
            }
            if (rc == 0) {
                olmoe_prompt it = {xmalloc(n + 1), ids.v, (int)ids.n, line};
                memcpy(it.text, p, n);
                it.text[n] = '\0';
                ids.v = NULL;
                push_prompt(out, &cap, it);
            }
            olmoe_ids_free(&ids);
        }
        p = eol && (size_t)(eol + 1 - text) < len ? eol + 1 : NULL;
    }
    free(text);
    return rc;
}

int olmoe_prompts_read(const char *path, olmoe_prompts_format fmt, olmoe_tokenizer *tok, int vocab_size,
                       olmoe_prompts *out) {
    memset(out, 0, sizeof *out);
    int rc;
    if (fmt == OLMOE_PROMPTS_IDS) {
        rc = read_ids(path, vocab_size, out);
    } else if (!tok) {
        rc = olmoe_errorf("%s: text prompts need a tokenizer", path);
    } else {
        rc = read_text(path, tok, vocab_size, out);
    }
    if (rc == 0 && out->n == 0) rc = olmoe_errorf("%s: no prompts (one a line)", path);
    if (rc != 0) olmoe_prompts_free(out);
    return rc;
}

void olmoe_prompts_free(olmoe_prompts *p) {
    for (int i = 0; i < p->n; i++) {
        free(p->items[i].text);
        free(p->items[i].ids);
    }
    free(p->items);
    memset(p, 0, sizeof *p);
}

/* ---- generation ---- */

void olmoe_generation_free(olmoe_generation *g) {
    free(g->tokens);
    free(g->n_experts);
    free(g->experts);
    free(g->weights);
    memset(g, 0, sizeof *g);
}

int olmoe_generate(olmoe_engine *e, const int32_t *prompt, int n_prompt, const olmoe_generate_opts *o,
                   olmoe_generation *g) {
    memset(g, 0, sizeof *g);
    int L = olmoe_engine_model(e)->cfg.num_hidden_layers, K = olmoe_engine_max_experts(e);
    if (o->n_new < 1) return olmoe_errorf("%d tokens to generate; at least 1", o->n_new);
    if (n_prompt < 1) return olmoe_errorf("an empty prompt");
    if (K > 255) return olmoe_errorf("max_k %d: expert counts are stored as uint8", K);
    double t0 = olmoe_now();
    size_t N = (size_t)o->n_new, LK = (size_t)L * K;
    g->L = L, g->max_k = K;
    g->tokens = xmalloc(xmul(N, sizeof *g->tokens));
    g->n_experts = xmalloc(xmul(N, (size_t)L));
    g->experts = xmalloc(xmul(N, LK * sizeof *g->experts));
    g->weights = xmalloc(xmul(N, LK * sizeof *g->weights));
    int32_t *ne = xmalloc((size_t)L * sizeof *ne), *ex = xmalloc(xmul(LK, sizeof *ex));
    float *wt = xmalloc(xmul(LK, sizeof *wt));
    olmoe_decode_io io = {.n_experts = ne, .experts = ex, .weights = wt};
    olmoe_decode *d = NULL;
    int rc = olmoe_engine_decode_begin(e, o->recompute ? OLMOE_DECODE_RECOMPUTE : OLMOE_DECODE_AUTO, &d);
    if (rc == 0) {
        g->cached = olmoe_engine_decode_cached(d);
        int chunk = olmoe_engine_max_tokens(e);
        for (int off = 0; off < n_prompt && rc == 0; off += chunk)
            rc = olmoe_engine_decode_step(d, prompt + off, n_prompt - off < chunk ? n_prompt - off : chunk, &io);
    }
    for (int i = 0; rc == 0 && i < o->n_new; i++) {
        g->tokens[i] = io.argmax;
        for (size_t j = 0; j < (size_t)L; j++) g->n_experts[(size_t)i * L + j] = (uint8_t)ne[j];
        for (size_t j = 0; j < LK; j++) {
            g->experts[(size_t)i * LK + j] = (int16_t)ex[j];
            g->weights[(size_t)i * LK + j] = wt[j];
        }
        g->n = i + 1;
        if (io.argmax == o->stop_id) {
            g->stopped = 1;
            break;
        }
        if (i + 1 < o->n_new) rc = olmoe_engine_decode_step(d, &g->tokens[i], 1, &io);
    }
    olmoe_engine_decode_end(d);
    free(ne);
    free(ex);
    free(wt);
    g->seconds = olmoe_now() - t0;
    if (rc != 0) olmoe_generation_free(g);
    return rc;
}
