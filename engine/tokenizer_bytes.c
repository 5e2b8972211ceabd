/* tokenizer_bytes.c: the byte-level pieces of the tokenizer: GPT-2's
 * byte <-> unicode table, UTF-8 validation with Rust's rules (HF only ever
 * sees Rust strings; decoding's from_utf8_lossy is common's olmoe_utf8_lossy),
 * and the two character classes HF's added-token matching uses (regex crate \s and \w).
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes ('!'..'~', '¡'..'¬',
 * '®'..'ÿ') stand for themselves; the other 68 bytes, in increasing order,
 * get U+0100, U+0101, ... so every byte is a visible, non-space character. */
void tok_bytes_to_unicode(uint32_t cp[256]) {
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        cp[b] = printable ? (uint32_t)b : next++;
    }
}

int tok_utf8_put(uint32_t cp, char *out) {
    uint8_t *o = (uint8_t *)out;
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

int tok_utf8_get(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80 || n < 2) {
        *cp = c;
        return 1;
    }
    if (c < 0xE0) {
        *cp = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (c < 0xF0 || n < 4) {
        *cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
          ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    return 4;
}

/* Length of the valid prefix of the sequence starting at s[i] as Rust's
 * Utf8Chunks reads it: returns the sequence length if it is complete and
 * valid, else -(bytes that belong to the bad sequence), at least 1. */
static int seq_at(const uint8_t *s, size_t n, size_t i) {
    uint8_t c = s[i];
#define AT(k) (i + (k) < n ? s[i + (k)] : 0)
#define CONT(x) ((x) >= 0x80 && (x) <= 0xBF)
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return CONT(AT(1)) ? 2 : -1;
    if (c >= 0xE0 && c <= 0xEF) {
        uint8_t d = AT(1);
        int ok = (c == 0xE0)   ? (d >= 0xA0 && d <= 0xBF)
                 : (c == 0xED) ? (d >= 0x80 && d <= 0x9F)
                               : CONT(d);
        if (!ok) return -1;
        return CONT(AT(2)) ? 3 : -2;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        uint8_t d = AT(1);
        int ok = (c == 0xF0)   ? (d >= 0x90 && d <= 0xBF)
                 : (c == 0xF4) ? (d >= 0x80 && d <= 0x8F)
                               : CONT(d);
        if (!ok) return -1;
        if (!CONT(AT(2))) return -2;
        return CONT(AT(3)) ? 4 : -3;
    }
    return -1;
#undef AT
#undef CONT
}

size_t tok_utf8_check(const uint8_t *s, size_t n) {
    size_t i = 0;
    for (;;) {
        /* ASCII runs eight bytes at a time: most text is mostly ASCII */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= n) return n;
        int k = seq_at(s, n, i);
        if (k < 0) return i;
        i += (size_t)k;
    }
}

int tok_is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* The regex crate's Unicode \w: Alphabetic, marks, decimal digits, connector
 * punctuation and the joiners. Alphabetic is letters, Nl, and Other_Alphabetic,
 * which is marks (already in) plus the circled/squared letters below. */
int tok_is_word(uint32_t c) {
    if (c < 0x80)
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
               c == '_';
    if (c == 0x200C || c == 0x200D) return 1;
    if ((c >= 0x24B6 && c <= 0x24E9) || (c >= 0x1F130 && c <= 0x1F149) ||
        (c >= 0x1F150 && c <= 0x1F169) || (c >= 0x1F170 && c <= 0x1F189))
        return 1;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return 0;
    }
}
