/* json_text.c: see common.h. Every string a JSON writer of ours emits goes
 * through olmoe_json_str, so one rule covers them all: bytes that are not
 * UTF-8 become U+FFFD, the way HF's decode (Rust's String::from_utf8_lossy)
 * makes text of them, and the key is always written. Validity is utf8proc's
 * (no overlongs, surrogates or code points past U+10FFFF, as Rust's). */
#include "common.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define FFFD "\xEF\xBF\xBD"

/* bytes in a UTF-8 sequence led by c (1 for a byte that leads none) */
static size_t lead_len(uint8_t c) { return c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1; }

/* How many bytes at s (n of them, not valid UTF-8 there) one U+FFFD stands
 * for: the maximal subpart of Unicode's "U+FFFD substitution of maximal
 * subparts", which from_utf8_lossy and Python's errors="replace" follow: the
 * longest prefix that some continuation bytes would complete, else 1. A
 * prefix is tried by completing it with 0x80 (valid in the third and fourth
 * place after any second byte utf8proc accepts) and asking utf8proc. */
static size_t bad_len(const uint8_t *s, size_t n) {
    size_t need = lead_len(s[0]), k = 1;
    for (size_t j = 2; j < need && j <= n; j++) {
        uint8_t try[4] = {0x80, 0x80, 0x80, 0x80};
        utf8proc_int32_t cp;
        memcpy(try, s, j);
        if (utf8proc_iterate(try, (utf8proc_ssize_t)need, &cp) != (utf8proc_ssize_t)need) break;
        k = j;
    }
    return k;
}

char *olmoe_utf8_lossy(const char *s, size_t n, size_t *out_len) {
    const uint8_t *p = (const uint8_t *)s;
    char *o = xmalloc(xmul(n, 3) + 1); /* a bad byte grows to at most 3 */
    size_t m = 0, i = 0;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k > 0) {
            memcpy(o + m, p + i, (size_t)k);
            m += (size_t)k, i += (size_t)k;
        } else {
            memcpy(o + m, FFFD, 3);
            m += 3, i += bad_len(p + i, n - i);
        }
    }
    o[m] = '\0';
    if (out_len) *out_len = m;
    return o;
}

json_t *olmoe_json_str(const char *s) {
    if (!s) return json_null();
    json_t *j = json_string(s); /* NULL when s is not UTF-8 */
    if (!j) {
        size_t n;
        char *t = olmoe_utf8_lossy(s, strlen(s), &n);
        j = json_stringn_nocheck(t, n);
        free(t);
    }
    if (!j) die("out of memory for a JSON string"); /* as xmalloc does */
    return j;
}

int olmoe_json_write(const json_t *root, const char *path, size_t flags, const char *shown) {
    FILE *f = fopen(path, "w");
    if (!f) return olmoe_errorf("%s: cannot create: %s", shown, strerror(errno));
    errno = 0;
    if (json_dumpf(root, f, flags) != 0 || fputc('\n', f) == EOF) {
        int why = errno;
        fclose(f);
        return olmoe_errorf("%s: write error: %s", shown, why ? strerror(why) : "jansson could not write it");
    }
    return olmoe_fclose_out(f, shown);
}
