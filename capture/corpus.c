/* corpus.c: reading raw-text corpora into a token stream (see corpus.h), and
 * the --input path of olmoe-capture (tokenizer + EOS + vocab checks).
 *
 * The stream grows as documents are tokenized; lines and jsonl files are read
 * a line at a time, so the text is never held whole. Errors name file:line
 * (and the byte offset in the file for bad UTF-8) and leave *out empty.
 */
#include "corpus.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int olmoe_corpus_parse_format(const char *s, olmoe_corpus_format *out) {
    static const char *names[OLMOE_CORPUS_FORMAT_COUNT] = {"text", "lines", "jsonl"};
    for (int i = 0; i < OLMOE_CORPUS_FORMAT_COUNT; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (olmoe_corpus_format)i;
            return 0;
        }
    return olmoe_errorf("unknown format '%s' (text, lines or jsonl)", s);
}

/* ---- the stream being built ---- */

typedef struct {
    olmoe_token_stream *s;
    const olmoe_corpus_opts *o;
    olmoe_tokenizer *tok;
    size_t cap_t, cap_d, cap_g;
    /* group name -> index: open addressing over s->groups */
    int32_t *gslot; // [gcap] index + 1, 0 = empty
    size_t gcap;
    olmoe_ids ids;      /* one piece's tokens */
    int full;           /* max_tokens reached */
    olmoe_hasher *hash; /* of the bytes consumed */
    int64_t n_consumed;
} builder;

static uint64_t name_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
    return h;
}

static int32_t group_index(builder *b, const char *name, size_t n) {
    olmoe_token_stream *s = b->s;
    if ((size_t)(s->n_groups + 1) * 2 > b->gcap) {
        size_t cap = b->gcap ? b->gcap * 2 : 64;
        int32_t *slot = xcalloc(cap, sizeof *slot);
        for (int g = 0; g < s->n_groups; g++) {
            size_t i = name_hash(s->groups[g], strlen(s->groups[g])) & (cap - 1);
            while (slot[i]) i = (i + 1) & (cap - 1);
            slot[i] = g + 1;
        }
        free(b->gslot);
        b->gslot = slot;
        b->gcap = cap;
    }
    size_t i = name_hash(name, n) & (b->gcap - 1);
    for (; b->gslot[i]; i = (i + 1) & (b->gcap - 1)) {
        const char *g = s->groups[b->gslot[i] - 1];
        if (strlen(g) == n && memcmp(g, name, n) == 0) return b->gslot[i] - 1;
    }
    if ((size_t)s->n_groups == b->cap_g) {
        b->cap_g = b->cap_g ? b->cap_g * 2 : 16;
        s->groups = xrealloc(s->groups, xmul(b->cap_g, sizeof *s->groups));
    }
    char *copy = xmalloc(n + 1);
    memcpy(copy, name, n);
    copy[n] = '\0';
    s->groups[s->n_groups] = copy;
    b->gslot[i] = ++s->n_groups;
    return s->n_groups - 1;
}

static void push_token(builder *b, int32_t id) {
    olmoe_token_stream *s = b->s;
    int64_t max = b->o->max_tokens;
    if (b->full) return;
    if ((size_t)s->n_tokens == b->cap_t) {
        b->cap_t = b->cap_t ? b->cap_t * 2 : 4096;
        s->tokens = xrealloc(s->tokens, xmul(b->cap_t, sizeof *s->tokens));
    }
    s->tokens[s->n_tokens++] = id;
    if (max > 0 && s->n_tokens >= max) b->full = 1;
}

/* A document is begun, given its text in one or more pieces, and ended.
 * where: "path" or "path:line" for messages; off: the piece's offset in the file */
static int doc_text(builder *b, const char *text, size_t len, const char *where, size_t off) {
    if (len == 0 || b->full) return 0;
    size_t bad = olmoe_tokenizer_utf8_check(text, len);
    if (bad < len) return olmoe_errorf("%s: invalid UTF-8 at byte %zu", where, off + bad);
    b->ids.n = 0;
    if (olmoe_tokenizer_encode(b->tok, text, len, &b->ids) != 0)
        return olmoe_error_prefix("%s", where);
    for (size_t i = 0; i < b->ids.n && !b->full; i++) push_token(b, b->ids.v[i]);
    return 0;
}

/* the document begun when the stream held start tokens: its EOS (unless
 * the stream is full) and its row; one without tokens is skipped */
static void doc_end(builder *b, int64_t start, int32_t group) {
    olmoe_token_stream *s = b->s;
    if (s->n_tokens == start) return;
    push_token(b, b->o->eos_id);
    if ((size_t)s->n_docs == b->cap_d) {
        b->cap_d = b->cap_d ? b->cap_d * 2 : 64;
        s->doc_start = xrealloc(s->doc_start, xmul(b->cap_d, sizeof *s->doc_start));
        s->doc_length = xrealloc(s->doc_length, xmul(b->cap_d, sizeof *s->doc_length));
        s->doc_group = xrealloc(s->doc_group, xmul(b->cap_d, sizeof *s->doc_group));
    }
    s->doc_start[s->n_docs] = start;
    s->doc_length[s->n_docs] = s->n_tokens - start;
    s->doc_group[s->n_docs++] = group;
}

static int add_document(builder *b, const char *text, size_t len, int32_t group,
                        const char *where, size_t off) {
    if (b->full) return 0;
    int64_t start = b->s->n_tokens;
    if (doc_text(b, text, len, where, off) != 0) return -1;
    doc_end(b, start, group);
    return 0;
}

/* the bytes the stream was made of */
static void consumed(builder *b, const void *p, size_t n) {
    olmoe_hasher_feed(b->hash, p, n);
    b->n_consumed += (int64_t)n;
}

/* ---- the formats ---- */

static int is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* The last place text[0..n) can be cut without changing its tokens: a
 * space between two ASCII letters. The pre-tokenizer's pieces never span
 * one (" word" starts a piece, "word" ends one whether more follows or not),
 * no normalization or added token reaches across it, and the piece after it
 * starts with a space, so add_prefix_space leaves it alone. 0: none. */
static size_t safe_cut(const char *text, size_t n) {
    for (size_t i = n >= 2 ? n - 2 : 0; i >= 1; i--)
        if (text[i] == ' ' && is_letter(text[i - 1]) && is_letter(text[i + 1])) return i;
    return 0;
}

/* the corpus file for reading; a directory opens but fails its first read,
 * so it is refused here, by name */
static FILE *open_input(const char *path) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    int e = !f ? errno : fstat(fileno(f), &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
    if (e) {
        if (f) fclose(f);
        olmoe_errorf("%s: %s", path, strerror(e));
        return NULL;
    }
    return f;
}

/* text: the whole file is one document, read and tokenized a piece at a
 * time (pieces of piece_bytes, cut at safe places), so reading stops at the
 * first invalid byte and once max_tokens are in hand. Pieces are filled
 * whole (fread), so where they are cut, and the bytes consumed, do not
 * depend on how a pipe delivers its data. */
static int read_text(builder *b, const char *path) {
    FILE *f = open_input(path);
    if (!f) return -1;
    size_t piece = b->o->piece_bytes ? b->o->piece_bytes : (size_t)1 << 20;
    size_t cap = piece, len = 0, off = 0; /* off: the file offset of buf[0] */
    char *buf = xmalloc(cap);
    int64_t start = b->s->n_tokens;
    int r = 0, eof = 0;
    while (r == 0 && !b->full && !eof) {
        if (cap - len < piece) buf = xrealloc(buf, cap = len + piece);
        size_t got = fread(buf + len, 1, piece, f);
        eof = got < piece;
        len += got;
        size_t ok = olmoe_tokenizer_utf8_check(buf, len);
        /* a character cut by the piece's end is completed by the next */
        if (ok < len && (eof || len - ok >= 4)) {
            r = olmoe_errorf("%s: invalid UTF-8 at byte %zu", path, off + ok);
            break;
        }
        size_t cut = eof ? len : safe_cut(buf, ok);
        if (cut == 0) continue; /* no safe place yet: read on */
        r = doc_text(b, buf, cut, path, off);
        consumed(b, buf, cut);
        memmove(buf, buf + cut, len - cut);
        len -= cut, off += cut;
    }
    if (r == 0) doc_end(b, start, -1);
    if (r == 0 && ferror(f)) r = olmoe_errorf("%s: read error", path);
    free(buf);
    fclose(f);
    return r;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t') return 0;
    return 1;
}

static int jsonl_document(builder *b, const char *line, size_t n, const char *where) {
    const olmoe_corpus_opts *o = b->o;
    const char *field = o->field ? o->field : "text";
    json_error_t err;
    json_t *obj = json_loadb(line, n, JSON_ALLOW_NUL, &err);
    if (!obj) return olmoe_errorf("%s: invalid JSON: %s", where, err.text);
    int r = 0;
    json_t *t = json_object_get(obj, field);
    if (!json_is_object(obj))
        r = olmoe_errorf("%s: not a JSON object", where);
    else if (!t)
        r = olmoe_errorf("%s: no field '%s'", where, field);
    else if (!json_is_string(t))
        r = olmoe_errorf("%s: field '%s' is not a string", where, field);
    int32_t group = -1;
    if (r == 0 && o->group_field) {
        json_t *g = json_object_get(obj, o->group_field);
        if (!g)
            r = olmoe_errorf("%s: no field '%s'", where, o->group_field);
        else if (!json_is_string(g))
            r = olmoe_errorf("%s: field '%s' is not a string", where, o->group_field);
        else
            group = group_index(b, json_string_value(g), json_string_length(g));
    }
    /* the text came through jansson, which accepts only UTF-8 */
    if (r == 0) r = add_document(b, json_string_value(t), json_string_length(t), group, where, 0);
    json_decref(obj);
    return r;
}

static int read_lines(builder *b, const char *path) {
    FILE *f = open_input(path);
    if (!f) return -1;
    char *line = NULL, where[600];
    size_t cap = 0, off = 0;
    long lineno = 0;
    ssize_t got;
    int r = 0;
    while (r == 0 && !b->full && (got = getline(&line, &cap, f)) > 0) {
        lineno++;
        size_t n = (size_t)got, at = off;
        off += n;
        consumed(b, line, n);
        if (n && line[n - 1] == '\n') n--;
        if (n && line[n - 1] == '\r') n--;
        if (blank(line, n)) continue;
        snprintf(where, sizeof where, "%s:%ld", path, lineno);
        size_t bad = olmoe_tokenizer_utf8_check(line, n);
        if (bad < n)
            r = olmoe_errorf("%s: invalid UTF-8 at byte %zu", where, at + bad);
        else if (b->o->format == OLMOE_CORPUS_JSONL)
            r = jsonl_document(b, line, n, where);
        else
            r = add_document(b, line, n, -1, where, at);
    }
    if (r == 0 && ferror(f)) r = olmoe_errorf("%s: read error", path);
    free(line);
    fclose(f);
    return r;
}

int olmoe_corpus_read(const char *path, olmoe_tokenizer *tok, const olmoe_corpus_opts *o,
                      olmoe_token_stream *out) {
    memset(out, 0, sizeof *out);
    if (o->eos_id < 0 || o->eos_id >= olmoe_tokenizer_vocab_size(tok))
        return olmoe_errorf("%s: EOS id %d is not a token of %s", path, o->eos_id,
                            olmoe_tokenizer_name(tok));
    if (o->group_field && o->format != OLMOE_CORPUS_JSONL)
        return olmoe_errorf("%s: groups need the jsonl format", path);
    builder b = {.s = out, .o = o, .tok = tok, .hash = olmoe_hasher_new()};
    int r = o->format == OLMOE_CORPUS_TEXT ? read_text(&b, path) : read_lines(&b, path);
    if (r == 0 && out->n_tokens == 0) r = olmoe_errorf("%s: no text", path);
    olmoe_hasher_end(b.hash, &out->input_sum);
    out->input_bytes = b.n_consumed;
    olmoe_ids_free(&b.ids);
    free(b.gslot);
    if (r != 0) {
        olmoe_token_stream_free(out);
        return -1;
    }
    return 0;
}

int olmoe_corpus_input_read(const olmoe_corpus_input *in, olmoe_token_stream *out,
                            olmoe_hash *tokenizer_checksum) {
    memset(out, 0, sizeof *out);
    olmoe_corpus_opts o = {.field = in->field, .group_field = in->group_field,
                           .max_tokens = in->max_tokens};
    if (olmoe_corpus_parse_format(in->format ? in->format : "text", &o.format) != 0) return -1;
    olmoe_tokenizer *tok;
    if (olmoe_tokenizer_open(in->tokenizer, &tok) != 0) return -1;
    int r = 0;
    int32_t eos = in->eos_id >= 0 ? (int32_t)in->eos_id : olmoe_tokenizer_eos_id(tok);
    int32_t v = olmoe_tokenizer_vocab_size(tok);
    if (eos < 0)
        r = olmoe_errorf("%s: no <|endoftext|> token and the config names no eos_token_id",
                         in->tokenizer);
    else if (v > in->vocab_size)
        r = olmoe_errorf("%s: token ids reach %d, the model's vocab_size is %d", in->tokenizer,
                         v - 1, in->vocab_size);
    else if (eos >= v)
        r = olmoe_errorf("%s: eos_token_id %d is not one of its tokens", in->tokenizer, eos);
    o.eos_id = eos;
    if (r == 0) r = olmoe_corpus_read(in->path, tok, &o, out);
    if (r == 0 && tokenizer_checksum)
        snprintf(tokenizer_checksum->hex, sizeof tokenizer_checksum->hex, "%s",
                 olmoe_tokenizer_checksum(tok));
    olmoe_tokenizer_close(tok);
    return r;
}
