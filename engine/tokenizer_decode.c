/* tokenizer_decode.c: ids -> text as HF's Tokenizer::decode with the
 * ByteLevel decoder (or, SentencePiece style, tokenizer_spm.c's), and the
 * small lookups (token <-> id, eos, checksum).
 *
 * Each token's string is mapped back to bytes through GPT-2's table; a token
 * with any character outside the table (an added token such as "   ") is
 * taken as its own UTF-8 bytes, as HF does. The bytes of all tokens are joined
 * first and only then made text (String::from_utf8_lossy), so a character
 * split over several tokens comes back whole.
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

static const char *token_of(const olmoe_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->id_cap) return NULL;
    int32_t a = t->added_of_id[id];
    if (a >= 0) {
        *len = t->added[a].content_len;
        return t->added[a].content;
    }
    *len = t->vocab_len[id];
    return t->vocab_str[id];
}

static int is_special_string(const olmoe_tokenizer *t, const char *s, size_t len) {
    int32_t id = tok_strmap_get(&t->added_map, s, len);
    return id >= 0 && t->added[t->added_of_id[id]].special;
}

/* SentencePiece style: the token strings through tokenizer_spm.c's decoder */
static void decode_spm(const olmoe_tokenizer *t, const int32_t *ids, size_t n, int skip_special,
                       char **text, size_t *len) {
    const char **tok = xmalloc((n + 1) * sizeof *tok);
    size_t *tl = xmalloc((n + 1) * sizeof *tl), m = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k;
        const char *s = token_of(t, ids[i], &k);
        if (!s || (skip_special && is_special_string(t, s, k))) continue;
        tok[m] = s;
        tl[m++] = k;
    }
    tok_spm_decode(t, tok, tl, m, text, len);
    free(tok);
    free(tl);
}

int olmoe_tokenizer_decode(const olmoe_tokenizer *t, const int32_t *ids, size_t n,
                           int skip_special, char **text, size_t *len) {
    if (t->spm) {
        decode_spm(t, ids, n, skip_special, text, len);
        return 0;
    }
    size_t cap = 256, m = 0;
    uint8_t *bytes = xmalloc(cap);
    for (size_t i = 0; i < n; i++) {
        size_t k;
        const char *s = token_of(t, ids[i], &k);
        if (!s) continue; /* HF skips ids it does not know */
        if (skip_special && is_special_string(t, s, k)) continue;
        if (m + k > cap) {
            while (m + k > cap) cap *= 2;
            bytes = xrealloc(bytes, cap);
        }
        /* all characters in the byte table: their bytes; else the raw string */
        size_t j = 0, m0 = m;
        int raw = 0;
        while (j < k && !raw) {
            uint32_t cp;
            j += (size_t)tok_utf8_get((const uint8_t *)s + j, k - j, &cp);
            if (cp >= 324 || t->char_byte[cp] < 0)
                raw = 1;
            else
                bytes[m++] = (uint8_t)t->char_byte[cp];
        }
        if (raw) {
            memcpy(bytes + m0, s, k);
            m = m0 + k;
        }
    }
    *text = olmoe_utf8_lossy((const char *)bytes, m, len);
    free(bytes);
    return 0;
}

int32_t olmoe_tokenizer_token_to_id(const olmoe_tokenizer *t, const char *token) {
    size_t n = strlen(token);
    int32_t id = tok_strmap_get(&t->added_map, token, n);
    return id >= 0 ? id : tok_strmap_get(&t->vocab, token, n);
}

const char *olmoe_tokenizer_id_to_token(const olmoe_tokenizer *t, int32_t id) {
    size_t len;
    return token_of(t, id, &len);
}

int32_t olmoe_tokenizer_vocab_size(const olmoe_tokenizer *t) { return t->id_cap; }

int32_t olmoe_tokenizer_eos_id(const olmoe_tokenizer *t) {
    return olmoe_tokenizer_token_to_id(t, "<|endoftext|>");
}

int olmoe_tokenizer_is_special(const olmoe_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->id_cap || t->added_of_id[id] < 0) return 0;
    return t->added[t->added_of_id[id]].special;
}

const char *olmoe_tokenizer_checksum(const olmoe_tokenizer *t) { return t->checksum.hex; }

size_t olmoe_tokenizer_utf8_check(const char *text, size_t len) {
    return tok_utf8_check((const uint8_t *)text, len);
}

const char *olmoe_tokenizer_name(const olmoe_tokenizer *t) { return t->name; }
