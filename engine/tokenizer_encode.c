/* tokenizer_encode.c: text -> ids, in HF's order:
 *   1. added tokens with normalized = false are cut out of the raw text
 *      (AddedVocabulary::find_matches: leftmost-longest, then the
 *      single_word / lstrip / rstrip rules);
 *   2. each remaining piece is normalized (utf8proc), and added tokens with
 *      normalized = true are cut out of it the same way;
 *   3. each remaining piece gets the ByteLevel pre-tokenizer: a leading
 *      space if add_prefix_space, then the split regex (GPT-2's, or the
 *      file's Split pattern; PCRE2), every match and every gap between
 *      matches a pre-token; or, SentencePiece style, ▁ for spaces and a
 *      leading ▁ (tokenizer_spm.c);
 *   4. each pre-token goes through the BPE model (tokenizer_bpe.c).
 * Text must be valid UTF-8; it is checked once, so PCRE2 runs without its
 * own checks.
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

void olmoe_ids_push(olmoe_ids *a, int32_t id) {
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 256;
        a->v = xrealloc(a->v, xmul(a->cap, sizeof *a->v));
    }
    a->v[a->n++] = id;
}

void olmoe_ids_free(olmoe_ids *a) {
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

static void buf_reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    *buf = xrealloc(*buf, c);
    *cap = c;
}

/* ---- normalization ---- */

static int normalize_chunk(const olmoe_tokenizer *t, const char *s, size_t n, char **buf,
                           size_t *cap, size_t *at) {
    utf8proc_uint8_t *cur = NULL;
    const utf8proc_uint8_t *src = (const utf8proc_uint8_t *)s;
    utf8proc_ssize_t len = (utf8proc_ssize_t)n;
    for (int k = 0; k < t->n_norm; k++) {
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r = utf8proc_map(src, len, &dst, (utf8proc_option_t)t->norm_opts[k]);
        free(cur);
        if (r < 0) return olmoe_errorf("unicode normalization failed: %s", utf8proc_errmsg(r));
        cur = dst;
        src = dst;
        len = r;
    }
    buf_reserve(buf, cap, *at + (size_t)len + 1);
    memcpy(*buf + *at, src, (size_t)len);
    *at += (size_t)len;
    free(cur);
    return 0;
}

/* Normalization only changes non-ASCII text, and the place before an ASCII
 * character is a safe break for NFC/NFD/NFKC/NFKD (it is a starter that
 * composes with nothing before it). So ASCII runs are copied and each
 * non-ASCII run is normalized together with the character before it (a
 * possible base for its combining marks). Returns 1 with the result in *buf,
 * 0 when the text is unchanged (nothing written), -1 on failure. */
int tok_normalize_into(const olmoe_tokenizer *t, const char *s, size_t n, char **buf, size_t *cap,
                       size_t *out_len) {
    if (t->n_norm == 0) return 0;
    size_t i = 0;
    while (i < n && !((uint8_t)s[i] & 0x80)) i++;
    if (i == n) return 0;
    size_t at = 0;
    size_t done = 0; /* s[0..done) is in *buf */
    buf_reserve(buf, cap, n + 1);
    while (i < n) {
        /* s[i] is the first byte of a non-ASCII run */
        size_t cs = i > done ? i - 1 : i;
        buf_reserve(buf, cap, at + (cs - done) + 1);
        memcpy(*buf + at, s + done, cs - done);
        at += cs - done;
        size_t ce = i;
        while (ce < n && ((uint8_t)s[ce] & 0x80)) ce++;
        if (normalize_chunk(t, s + cs, ce - cs, buf, cap, &at) != 0) return -1;
        done = ce;
        i = ce;
        while (i < n && !((uint8_t)s[i] & 0x80)) i++;
    }
    buf_reserve(buf, cap, at + (n - done) + 1);
    memcpy(*buf + at, s + done, n - done);
    at += n - done;
    (*buf)[at] = '\0';
    *out_len = at;
    return 1;
}

/* ---- pre-tokenization and the model ---- */

static int pretokenize(olmoe_tokenizer *t, const uint8_t *p, size_t n, olmoe_ids *out) {
    if (n == 0) return 0;
    if (t->spm) return tok_spm_pretokenize(t, p, n, t->spm_at_start, out);
    if (t->add_prefix_space && p[0] != ' ') {
        buf_reserve(&t->buf2, &t->buf2_cap, n + 2);
        t->buf2[0] = ' ';
        memcpy(t->buf2 + 1, p, n);
        p = (const uint8_t *)t->buf2;
        n++;
    }
    if (!t->use_regex) {
        tok_bpe_word(t, p, n, out);
        return 0;
    }
    size_t off = 0, last = 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
    while (off < n) {
        int rc = t->re_jit ? pcre2_jit_match(t->re, p, n, off, 0, t->md, NULL)
                           : pcre2_match(t->re, p, n, off, PCRE2_NO_UTF_CHECK, t->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return olmoe_errorf("pre-tokenizer regex failed: %s", (char *)msg);
        }
        size_t ms = ov[0], me = ov[1];
        if (ms > last) tok_bpe_word(t, p + last, ms - last, out); /* a gap: its own piece */
        tok_bpe_word(t, p + ms, me - ms, out);
        last = me;
        if (me > off) {
            off = me;
        } else { /* an empty match: step over one character */
            uint32_t cp;
            off += (size_t)tok_utf8_get(p + off, n - off, &cp);
        }
    }
    if (last < n) tok_bpe_word(t, p + last, n - last, out);
    return 0;
}

/* ---- added tokens ---- */

static uint32_t char_before(const uint8_t *s, size_t at) {
    size_t i = at - 1;
    while (i > 0 && (s[i] & 0xC0) == 0x80) i--;
    uint32_t cp;
    tok_utf8_get(s + i, at - i, &cp);
    return cp;
}

/* length of the run of White_Space characters ending at s[at] */
static size_t spaces_before(const uint8_t *s, size_t at) {
    size_t i = at;
    while (i > 0) {
        size_t j = i - 1;
        while (j > 0 && (s[j] & 0xC0) == 0x80) j--;
        uint32_t cp;
        tok_utf8_get(s + j, i - j, &cp);
        if (!tok_is_space(cp)) break;
        i = j;
    }
    return at - i;
}

static size_t spaces_after(const uint8_t *s, size_t n, size_t at) {
    size_t i = at;
    while (i < n) {
        uint32_t cp;
        int k = tok_utf8_get(s + i, n - i, &cp);
        if (!tok_is_space(cp)) break;
        i += (size_t)k;
    }
    return i - at;
}

static int normalized_piece(olmoe_tokenizer *t, const uint8_t *s, size_t n, olmoe_ids *out);

/* HF's AddedVocabulary::find_matches over s, then the next stage on each
 * piece between tokens (level 0: raw text, next is normalization; level 1:
 * normalized text, next is pre-tokenization). */
static int split_added(olmoe_tokenizer *t, int level, const uint8_t *s, size_t n,
                       olmoe_ids *out) {
    const tok_trie *tr = level == 0 ? &t->trie_raw : &t->trie_norm;
    size_t start_offset = 0, from = 0, ms, me;
    int32_t ai;
#define NEXT_STAGE(a, b)                                                                     \
    ((level == 0 ? normalized_piece(t, s + (a), (b) - (a), out)                              \
                 : pretokenize(t, s + (a), (b) - (a), out)))
    while (from < n && tok_trie_find(tr, s, n, from, &ms, &me, &ai)) {
        from = me; /* the matcher goes on after the match, whatever is made of it */
        const tok_added *a = &t->added[ai];
        size_t start = ms, stop = me;
        if (a->single_word) {
            int start_space = start == 0 || !tok_is_word(char_before(s, start));
            uint32_t cp = 0;
            if (stop < n) tok_utf8_get(s + stop, n - stop, &cp);
            int stop_space = stop == n || !tok_is_word(cp);
            if (!start_space || !stop_space) continue;
        }
        if (a->lstrip) {
            size_t newstart = start - spaces_before(s, start);
            start = newstart > start_offset ? newstart : start_offset;
        }
        if (a->rstrip) stop += spaces_after(s, n, stop);
        if (level == 0) t->spm_at_start = start_offset == 0;
        if (start_offset < start && NEXT_STAGE(start_offset, start) != 0) return -1;
        olmoe_ids_push(out, a->id);
        start_offset = stop;
    }
    if (level == 0) t->spm_at_start = start_offset == 0;
    if (start_offset < n && NEXT_STAGE(start_offset, n) != 0) return -1;
    return 0;
#undef NEXT_STAGE
}

static int normalized_piece(olmoe_tokenizer *t, const uint8_t *s, size_t n, olmoe_ids *out) {
    size_t m;
    int r = tok_normalize_into(t, (const char *)s, n, &t->buf, &t->buf_cap, &m);
    if (r < 0) return -1;
    if (r == 1) {
        /* t->buf is reused by the next piece: this one is done with it first */
        return split_added(t, 1, (const uint8_t *)t->buf, m, out);
    }
    return split_added(t, 1, s, n, out);
}

int olmoe_tokenizer_encode(olmoe_tokenizer *t, const char *text, size_t len, olmoe_ids *out) {
    size_t before = out->n;
    size_t bad = tok_utf8_check((const uint8_t *)text, len);
    if (bad < len) return olmoe_errorf("invalid UTF-8 at byte %zu", bad);
    if (split_added(t, 0, (const uint8_t *)text, len, out) != 0) {
        out->n = before;
        return -1;
    }
    return 0;
}
