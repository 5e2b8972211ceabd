/* test_json_text.c: common/json_text.c, the one rule of every JSON writer.
 * olmoe_utf8_lossy against Python's bytes.decode("utf-8", "replace") (the
 * same maximal-subpart rule as Rust's from_utf8_lossy, which HF's decode
 * uses), cases copied from Python 3; every short byte string comes out as
 * text the tokenizer's own UTF-8 check (Rust's rules, a separate
 * implementation) accepts, valid text unchanged; olmoe_json_str never
 * returns NULL, so a key is never left out. */
#include "check.h"
#include "common.h"
#include "engine.h"

#include <jansson.h>

#define R "\xEF\xBF\xBD"

static void test_python_cases(void) {
    static const struct { const char *in, *out; } c[] = {
        {"abc", "abc"},
        {"caf\xE9", "caf" R},                      /* Latin-1 e-acute */
        {"\xE2\x82", R},                           /* a truncated euro sign: one */
        {"\xE2\x82" "A", R "A"},
        {"\xE2\x82\xAC", "\xE2\x82\xAC"},
        {"\xF0\x9F\x98", R},
        {"\xF0\x9F", R},
        {"\xF0\x9F\x98\x80", "\xF0\x9F\x98\x80"},
        {"\xC0\x80", R R},                         /* overlong */
        {"\xE0\x80\x80", R R R},                   /* overlong */
        {"\xED\xA0\x80", R R R},                   /* a surrogate */
        {"\xF4\x90\x80\x80", R R R R},             /* past U+10FFFF */
        {"\xF5", R},
        {"\x80\xBF", R R},                         /* lone continuations */
        {"a\xFF" "b\xE2\x82\xAC\xE2", "a" R "b\xE2\x82\xAC" R},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        size_t n;
        char *o = olmoe_utf8_lossy(c[i].in, strlen(c[i].in), &n);
        CHECK(n == strlen(c[i].out) && strcmp(o, c[i].out) == 0, "case %zu: got '%s'", i, o);
        free(o);
    }
}

/* every string of 1 to 3 bytes (the third only after a lead byte, where it
 * can matter): the output is UTF-8 by Rust's rules, and UTF-8 input is kept */
static void test_all_short(void) {
    int bad = 0;
    for (unsigned v = 0; v < (1u << 24) && bad < 5; v++) {
        unsigned char s[3] = {(unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v};
        size_t len = s[0] ? 3 : s[1] ? 2 : 1;
        if (s[0] && s[0] < 0xC0) { v |= 0xFFFF; continue; } /* ASCII or continuation leads */
        const char *p = (const char *)s + (3 - len);
        if (len > 1 && memchr(p, 0, len)) continue;
        size_t n;
        char *o = olmoe_utf8_lossy(p, len, &n);
        int valid = olmoe_tokenizer_utf8_check(p, len) == len;
        int ok = olmoe_tokenizer_utf8_check(o, n) == n && (!valid || (n == len && memcmp(o, p, len) == 0));
        if (!ok) bad++;
        CHECK(ok, "bytes %02x %02x %02x (%zu) gave '%s'", s[0], s[1], s[2], len, o);
        free(o);
    }
}

static void test_json_str(void) {
    json_t *j = olmoe_json_str("/data/caf\xE9/run.h5");
    CHECK(j && strcmp(json_string_value(j), "/data/caf" R "/run.h5") == 0, "path");
    json_t *o = json_object();
    json_object_set_new(o, "trace", j);
    json_object_set_new(o, "text", olmoe_json_str("\xE2\x82"));
    json_object_set_new(o, "kde", olmoe_json_str(NULL));
    char *d = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK(d && strcmp(d, "{\"kde\":null,\"text\":\"" R "\",\"trace\":\"/data/caf" R "/run.h5\"}") == 0,
          "document %s", d ? d : "(null)");
    free(d);
    json_decref(o);
    j = olmoe_json_str("plain \"quoted\" text");
    CHECK(j && strcmp(json_string_value(j), "plain \"quoted\" text") == 0, "UTF-8 kept");
    json_decref(j);
}

int main(void) {
    olmoe_set_prog("test_json_text");
    RUN(test_python_cases);
    RUN(test_all_short);
    RUN(test_json_str);
    return check_summary();
}
