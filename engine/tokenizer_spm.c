/* tokenizer_spm.c: SentencePiece-style BPE as Llama and Mixtral convert it to
 * tokenizer.json: spaces become U+2581 ("▁") and one is prepended, the BPE
 * runs on characters (not on GPT-2's byte table), a character outside the
 * vocab falls back to its UTF-8 bytes as <0xXX> tokens, and decoding turns ▁
 * back into spaces, <0xXX> runs back into bytes and drops the leading space.
 *
 * Two spellings of the same idea are read:
 *   normalizer Sequence [Prepend("▁"), Replace(" " -> "▁")], no pre-tokenizer
 *       (Mixtral-8x7B's file): every piece between added tokens gets the ▁;
 *   pre_tokenizer Metaspace(replacement "▁", prepend_scheme, split): ' ' ->
 *       ▁, then ▁ prepended unless the piece already starts with one (scheme
 *       "always"), only to the piece at the start of the text ("first"), or
 *       never; split cuts before each ▁.
 * The decoder must be Sequence [Replace("▁" -> " "), ByteFallback, Fuse,
 * Strip(" ", 1, 0)]. Normalized added tokens are refused with it (the pieces
 * around them would need the offsets HF keeps).
 */
#include "tokenizer_impl.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...) (olmoe_errorf(__VA_ARGS__), -1)

static const char META[] = "\xe2\x96\x81"; /* U+2581 */

static int is_str(json_t *v, const char *s) { return json_is_string(v) && strcmp(json_string_value(v), s) == 0; }

/* ---- loading ---- */

int tok_spm_normalizer(olmoe_tokenizer *t, const char *type, struct json_t *n) {
    if (strcmp(type, "Prepend") == 0) {
        if (!is_str(json_object_get(n, "prepend"), META))
            return FAIL("normalizer Prepend: only \"\\u2581\" is supported");
        t->spm = 1, t->spm_prepend = TOK_SPM_PREPEND_ALL;
        return 1;
    }
    if (strcmp(type, "Replace") == 0) {
        if (!is_str(json_object_get(json_object_get(n, "pattern"), "String"), " ") ||
            !is_str(json_object_get(n, "content"), META))
            return FAIL("normalizer Replace: only \" \" -> \"\\u2581\" is supported");
        t->spm = 1, t->spm_replace = 1;
        return 1;
    }
    return 0;
}

int tok_spm_pre_tokenizer(olmoe_tokenizer *t, struct json_t *p) {
    if (!p || json_is_null(p)) {
        if (!t->spm || !t->spm_replace || t->spm_prepend != TOK_SPM_PREPEND_ALL)
            return FAIL("no pre_tokenizer: supported only after the normalizers Prepend(\"\\u2581\") "
                        "and Replace(\" \" -> \"\\u2581\")");
        return 0;
    }
    if (t->spm) return FAIL("a pre_tokenizer after the Prepend/Replace normalizers is not supported");
    if (!is_str(json_object_get(p, "replacement"), META))
        return FAIL("pre_tokenizer Metaspace: only replacement \"\\u2581\" is supported");
    json_t *scheme = json_object_get(p, "prepend_scheme"), *split = json_object_get(p, "split");
    if (is_str(scheme, "first"))
        t->spm_prepend = TOK_SPM_PREPEND_FIRST;
    else if (is_str(scheme, "always"))
        t->spm_prepend = TOK_SPM_PREPEND_ALWAYS;
    else if (is_str(scheme, "never"))
        t->spm_prepend = TOK_SPM_PREPEND_NEVER;
    else
        return FAIL("pre_tokenizer Metaspace: prepend_scheme must be \"first\", \"always\" or \"never\"");
    if (split && !json_is_boolean(split)) return FAIL("pre_tokenizer Metaspace: 'split' is not true or false");
    t->spm = 1, t->spm_replace = 1;
    t->spm_split = !split || json_is_true(split);
    return 0;
}

/* Sequence [Replace("▁" -> " "), ByteFallback, Fuse, Strip(" ", 1, 0)] */
int tok_spm_decoder(olmoe_tokenizer *t, struct json_t *d) {
    json_t *l = json_object_get(d, "decoders");
    json_t *r = json_array_get(l, 0), *b = json_array_get(l, 1), *f = json_array_get(l, 2);
    json_t *s = json_array_get(l, 3);
    int ok = json_is_array(l) && json_array_size(l) == 4 && r && is_str(json_object_get(r, "type"), "Replace") &&
             is_str(json_object_get(json_object_get(r, "pattern"), "String"), META) &&
             is_str(json_object_get(r, "content"), " ") && b && is_str(json_object_get(b, "type"), "ByteFallback") &&
             f && is_str(json_object_get(f, "type"), "Fuse") && s && is_str(json_object_get(s, "type"), "Strip") &&
             is_str(json_object_get(s, "content"), " ") &&
             json_integer_value(json_object_get(s, "start")) == 1 &&
             json_integer_value(json_object_get(s, "stop")) == 0;
    if (!ok || !t->spm)
        return FAIL("unsupported decoder Sequence (supported: [Replace(\"\\u2581\" -> \" \"), ByteFallback, "
                    "Fuse, Strip(\" \", 1, 0)] with a Metaspace-style tokenizer)");
    return 0;
}

/* ---- encoding ---- */

static void grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t c = *cap ? *cap : 4096;
    while (c < need) c *= 2;
    *buf = xrealloc(*buf, c);
    *cap = c;
}

int tok_spm_pretokenize(olmoe_tokenizer *t, const uint8_t *p, size_t n, int at_start, olmoe_ids *out) {
    grow(&t->buf2, &t->buf2_cap, 3 * n + 4);
    char *b = t->buf2;
    size_t m = 0;
    int starts_meta = n > 0 && (p[0] == ' ' || (n >= 3 && memcmp(p, META, 3) == 0));
    int pre = t->spm_prepend == TOK_SPM_PREPEND_ALL ||
              (t->spm_prepend == TOK_SPM_PREPEND_ALWAYS && !starts_meta) ||
              (t->spm_prepend == TOK_SPM_PREPEND_FIRST && !starts_meta && at_start);
    if (pre) memcpy(b, META, 3), m = 3;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ' ') {
            memcpy(b + m, META, 3);
            m += 3;
        } else {
            b[m++] = (char)p[i];
        }
    }
    if (!t->spm_split) {
        tok_bpe_word(t, (const uint8_t *)b, m, out);
        return 0;
    }
    /* each ▁ begins a new piece (HF's MergedWithNext) */
    size_t from = 0;
    for (size_t i = 3; i + 3 <= m; i++)
        if (memcmp(b + i, META, 3) == 0) {
            tok_bpe_word(t, (const uint8_t *)b + from, i - from, out);
            from = i;
            i += 2;
        }
    tok_bpe_word(t, (const uint8_t *)b + from, m - from, out);
    return 0;
}

/* ---- decoding ---- */

static int byte_token(const char *s, size_t k, uint8_t *byte) {
    static const char hex[] = "0123456789ABCDEF";
    if (k != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return 0;
    const char *h = strchr(hex, s[3]), *l = strchr(hex, s[4]);
    if (!h || !l || !s[3] || !s[4]) return 0;
    *byte = (uint8_t)((h - hex) << 4 | (l - hex));
    return 1;
}

static void put(char **o, size_t *cap, size_t *m, const char *s, size_t k) {
    grow(o, cap, *m + k + 1);
    memcpy(*o + *m, s, k);
    *m += k;
}

/* a run of <0xXX> tokens: its bytes when they are UTF-8, else U+FFFD for each */
static void flush_bytes(char **o, size_t *cap, size_t *m, const uint8_t *run, size_t nrun) {
    if (nrun == 0) return;
    if (tok_utf8_check(run, nrun) == nrun) {
        put(o, cap, m, (const char *)run, nrun);
        return;
    }
    for (size_t i = 0; i < nrun; i++) put(o, cap, m, "\xef\xbf\xbd", 3);
}

void tok_spm_decode(const olmoe_tokenizer *t, const char *const *tok, const size_t *len, size_t n,
                    char **text, size_t *text_len) {
    (void)t;
    size_t cap = 256, m = 0, nrun = 0, runcap = 64;
    char *o = xmalloc(cap);
    uint8_t *run = xmalloc(runcap);
    for (size_t i = 0; i < n; i++) {
        uint8_t byte;
        if (byte_token(tok[i], len[i], &byte)) {
            if (nrun == runcap) run = xrealloc(run, runcap *= 2);
            run[nrun++] = byte;
            continue;
        }
        flush_bytes(&o, &cap, &m, run, nrun);
        nrun = 0;
        for (size_t j = 0; j < len[i]; j++) {
            if (j + 3 <= len[i] && memcmp(tok[i] + j, META, 3) == 0) {
                put(&o, &cap, &m, " ", 1);
                j += 2;
            } else {
                put(&o, &cap, &m, tok[i] + j, 1);
            }
        }
    }
    flush_bytes(&o, &cap, &m, run, nrun);
    free(run);
    size_t skip = m > 0 && o[0] == ' '; /* Strip(" ", 1, 0) */
    *text = xmalloc(m - skip + 1);
    memcpy(*text, o + skip, m - skip);
    (*text)[m - skip] = '\0';
    *text_len = m - skip;
    free(o);
}
