/* test_tokenizer.c: the tokenizer's pre-tokenization, added tokens,
 * normalization, decoding and errors on small hand-made tokenizer.json files.
 *
 * Pre-tokenization is observed through a vocab made of exactly the expected
 * pre-tokens with ignore_merges on: each expected piece then comes out as one
 * id, and any other split would fall apart into (absent) bytes. The expected
 * pieces are written by hand from the GPT-2 regex and Qwen2's (several are the cases of
 * HF's own byte_level.rs tests); byte-level strings use GPT-2's table (space
 * = Ġ, newline = Ċ).
 */
#include "test_tokenizer_util.h"

#include <stdlib.h>

/* encodes text with a tokenizer whose vocab is the pieces, expects them back */
static int pieces_case(const char *text, const char *const *pieces, size_t n, int prefix,
                       const char *normalizer) {
    tb b = tb_new();
    b.ignore_merges = 1;
    b.prefix = prefix;
    b.normalizer = normalizer;
    int32_t want[64];
    for (size_t i = 0; i < n; i++) want[i] = tb_vocab(&b, pieces[i]);
    olmoe_tokenizer *t = tb_open(&b);
    if (!t) return 0;
    int ok = ids_equal(t, text, strlen(text), want, n, text);
    olmoe_tokenizer_close(t);
    return ok;
}
#define PIECES(text, prefix, norm, ...)                                                  \
    do {                                                                                 \
        static const char *const p_[] = {__VA_ARGS__};                                   \
        CHECK(pieces_case(text, p_, sizeof p_ / sizeof *p_, prefix, norm), "%s", text);   \
    } while (0)

static void test_pretokenize(void) {
    PIECES("Hello my friend, how is your day going?", 0, NULL, "Hello", "Ġmy", "Ġfriend", ",",
           "Ġhow", "Ġis", "Ġyour", "Ġday", "Ġgoing", "?");
    PIECES("Hello my friend, how is your day going?", 1, NULL, "ĠHello", "Ġmy", "Ġfriend", ",",
           "Ġhow", "Ġis", "Ġyour", "Ġday", "Ġgoing", "?");
    PIECES(" Hello my", 1, NULL, "ĠHello", "Ġmy"); /* no second space added */
    PIECES("Hello there\nHello there", 0, NULL, "Hello", "Ġthere", "Ċ", "Hello", "Ġthere");
    PIECES("Hello there       dear", 0, NULL, "Hello", "Ġthere", "ĠĠĠĠĠĠ", "Ġdear");
    PIECES("i\u2B62j", 0, NULL, "i", "âŃ¢", "j");
    PIECES("I'm don't we'll DON'T", 0, NULL, "I", "'m", "Ġdon", "'t", "Ġwe", "'ll", "ĠDON", "'",
           "T");
    PIECES("abc123 456x", 0, NULL, "abc", "123", "Ġ456", "x");
    PIECES("a  ", 0, NULL, "a", "ĠĠ");
    PIECES("a\n\nb", 0, NULL, "a", "Ċ", "Ċ", "b");
    PIECES("  hi", 0, NULL, "Ġ", "Ġhi");
    PIECES("x\ty", 0, NULL, "x", "ĉ", "y");
    /* U+3000 is White_Space; U+180E is not (PCRE2's own \s would say it is) */
    PIECES("a\u3000b", 0, NULL, "a", "ãĢĢ", "b");
    PIECES("a\u180Eb", 0, NULL, "a", "áłİ", "b");
    /* emoji with a skin tone, then '!': one run of "other" characters */
    PIECES("hi \U0001F44B\U0001F3FD!", 0, NULL, "hi", "ĠðŁĳĭðŁı½!");
    /* digits of other scripts are \p{N}; letters of other scripts \p{L} */
    PIECES("\u0663\u0664 \u03B1\u03B2", 0, NULL, "Ù£Ù¤", "ĠÎ±Î²");
    tb b = tb_new();
    tb_vocab(&b, "a");
    olmoe_tokenizer *t = tb_open(&b);
    CHECK(t && ids_equal(t, "", 0, NULL, 0, "empty text"), "empty");
    olmoe_tokenizer_close(t);
}

/* the normalizer runs before pre-tokenization: composed and decomposed input
 * give the same pieces under NFC, and compatibility forms fold under NFKC */
/* Qwen2's pre-tokenizer: Sequence [Split(its regex, Isolated), ByteLevel
 * without regex]. Pieces by hand from the pattern: digits one at a time,
 * a space run keeps its last space for the next word, newlines together,
 * "'S" case-insensitively. */
static void test_split_regex(void) {
    /* byte-level strings: space is U+0120, newline U+010A */
    static const char *const pieces[] = {"Hello", "\xc4\xa0", "\xc4\xa0world", "1", "2", "3",
                                         "\xc4\xa0it", "'S", "\xc4\x8a\xc4\x8a", "ok"};
    size_t n = sizeof pieces / sizeof *pieces;
    tb b = tb_new();
    b.ignore_merges = 1;
    int32_t want[16];
    for (size_t i = 0; i < n; i++) want[i] = tb_vocab(&b, pieces[i]);
    json_t *doc = tb_doc(&b);
    const char *qwen = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
                       "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    json_object_set_new(
        doc, "pre_tokenizer",
        json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]}", "type", "Sequence",
                  "pretokenizers", "type", "Split", "pattern", "Regex", qwen, "behavior",
                  "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0,
                  "trim_offsets", 0, "use_regex", 0));
    olmoe_tokenizer *t = tb_open_doc(doc);
    json_decref(doc);
    json_decref(b.vocab), json_decref(b.merges), json_decref(b.added);
    CHECK(t != NULL, "Split pre-tokenizer refused");
    if (!t) return;
    const char *text = "Hello  world123 it'S\n\nok";
    CHECK(ids_equal(t, text, strlen(text), want, n, "qwen2 split"), "qwen2 split");
    olmoe_tokenizer_close(t);
}

static void test_normalize(void) {
    PIECES("caf\u00E9 cafe\u0301", 0, "NFC", "cafÃ©", "ĠcafÃ©");
    /* the combining mark is not \p{L}: it ends the word */
    PIECES("caf\u00E9", 0, "NFD", "cafe", "Ìģ");
    PIECES("\uFB01x \u2460", 0, "NFKC", "fix", "Ġ1");
    /* a long ASCII text with one decomposed character in the middle */
    PIECES("aaaa bbbb e\u0301e\u0301 cccc", 0, "NFC", "aaaa", "Ġbbbb", "ĠÃ©Ã©", "Ġcccc");
    /* Hangul jamo compose */
    PIECES("\u1100\u1161", 0, "NFC", "ê°Ģ");
}

static void test_added_tokens(void) {
    {
        tb b = tb_new();
        int32_t a = tb_vocab(&b, "a"), bb = tb_vocab(&b, "b"), sp = tb_vocab(&b, "Ġ");
        int32_t ga = tb_vocab(&b, "Ġa"), gb = tb_vocab(&b, "Ġb"), y = tb_vocab(&b, "y");
        int32_t ab = tb_vocab(&b, "ab"), cd = tb_vocab(&b, "cd");
        b.ignore_merges = 1;
        int32_t eot = tb_added(&b, "<|endoftext|>", 1, 0, 0, 0, 0);
        int32_t pa = tb_added(&b, "<|a|>", 1, 0, 0, 0, 0);
        int32_t pax = tb_added(&b, "<|a|>x", 0, 0, 0, 0, 0);
        olmoe_tokenizer *t = tb_open(&b);
        CHECK(t != NULL, "open");
        if (!t) return;
        int32_t w1[] = {a, eot, bb};
        CHECK(ids_equal(t, "a<|endoftext|>b", 15, w1, 3, "special inside text"), "1");
        int32_t w2[] = {pax, y, pa};
        CHECK(ids_equal(t, "<|a|>xy<|a|>", 12, w2, 3, "longest match"), "2");
        int32_t w3[] = {ab, eot, cd};
        CHECK(ids_equal(t, "ab<|endoftext|>cd", 17, w3, 3, "token inside a word"), "3");
        int32_t w4[] = {eot, eot, ga, sp, pa};
        CHECK(ids_equal(t, "<|endoftext|><|endoftext|> a <|a|>", 34, w4, 5, "adjacent"), "4");
        int32_t w5[] = {a};
        CHECK(ids_equal(t, "a<|endoftext", 12, w5, 1, "partial token"), "5: %d", gb);
        CHECK(olmoe_tokenizer_eos_id(t) == eot, "eos %d", olmoe_tokenizer_eos_id(t));
        CHECK(olmoe_tokenizer_is_special(t, eot) && !olmoe_tokenizer_is_special(t, pax), "special");
        CHECK(olmoe_tokenizer_token_to_id(t, "<|a|>x") == pax, "token_to_id");
        CHECK(strcmp(olmoe_tokenizer_id_to_token(t, pa), "<|a|>") == 0, "id_to_token");
        CHECK(olmoe_tokenizer_vocab_size(t) == pax + 1, "vocab size %d",
              olmoe_tokenizer_vocab_size(t));
        olmoe_tokenizer_close(t);
    }
    {   /* with add_prefix_space, each piece between tokens gets its own space */
        tb b = tb_new();
        int32_t ga = tb_vocab(&b, "Ġa"), sp = tb_vocab(&b, "Ġ"), gb = tb_vocab(&b, "Ġb");
        b.ignore_merges = 1;
        b.prefix = 1;
        int32_t e = tb_added(&b, "<e>", 1, 0, 0, 0, 0);
        olmoe_tokenizer *t = tb_open(&b);
        int32_t w[] = {ga, sp, e, gb};
        CHECK(t && ids_equal(t, "a <e> b", 7, w, 4, "prefix space per piece"), "prefix");
        olmoe_tokenizer_close(t);
    }
    {   /* lstrip / rstrip take the white space around the token */
        tb b = tb_new();
        int32_t x = tb_vocab(&b, "x"), gy = tb_vocab(&b, "Ġy"), y = tb_vocab(&b, "y");
        int32_t gg = tb_vocab(&b, "ĠĠ"), g = tb_vocab(&b, "Ġ");
        b.ignore_merges = 1;
        int32_t m = tb_added(&b, "<m>", 0, 0, 1, 1, 0);
        int32_t k = tb_added(&b, "<k>", 0, 0, 0, 0, 0);
        olmoe_tokenizer *t = tb_open(&b);
        int32_t w1[] = {x, m, y};
        CHECK(t && ids_equal(t, "x  <m>  y", 9, w1, 3, "lstrip+rstrip"), "strip");
        int32_t w2[] = {x, gg, k, g, gy};
        CHECK(t && ids_equal(t, "x  <k>  y", 9, w2, 5, "no strip"), "nostrip");
        /* HF's \s here is Unicode's: a tab and U+2000 are stripped too */
        int32_t w3[] = {x, m, y};
        CHECK(t && ids_equal(t, "x\t<m>\u2000y", 9, w3, 3, "unicode strip"), "ustrip");
        olmoe_tokenizer_close(t);
    }
    {   /* single_word: only where no word character touches the match */
        tb b = tb_new();
        int32_t gcab = tb_vocab(&b, "Ġcab"), g = tb_vocab(&b, "Ġ"), dot = tb_vocab(&b, ".");
        int32_t xab = tb_vocab(&b, "xab"), e1 = tb_vocab(&b, "Ã©");
        int32_t eab = tb_vocab(&b, "Ã©ab");
        b.ignore_merges = 1;
        int32_t ab = tb_added(&b, "ab", 0, 1, 0, 0, 1);
        olmoe_tokenizer *t = tb_open(&b);
        int32_t w1[] = {ab, gcab, g, ab, dot};
        CHECK(t && ids_equal(t, "ab cab ab.", 10, w1, 5, "single_word"), "sw");
        int32_t w2[] = {xab};
        CHECK(t && ids_equal(t, "xab", 3, w2, 1, "single_word inside"), "sw2");
        int32_t w3[] = {e1, g, ab};
        CHECK(t && ids_equal(t, "\u00E9 ab", 5, w3, 3, "after a space"), "sw3");
        /* é is a word character: in "éab" the match is not a single word */
        int32_t w4[] = {eab};
        CHECK(t && ids_equal(t, "\u00E9ab", 4, w4, 1, "after a letter"), "sw4");
        olmoe_tokenizer_close(t);
    }
    {   /* normalized tokens match the normalized text; others the raw text */
        tb b = tb_new();
        int32_t x = tb_vocab(&b, "x"), ah = tb_vocab(&b, "AÌĬ"), ac = tb_vocab(&b, "Ãħ");
        b.ignore_merges = 1;
        b.normalizer = "NFC";
        int32_t e = tb_added(&b, "e\u0301", 0, 1, 0, 0, 0); /* stored decomposed */
        int32_t ring = tb_added(&b, "\u00C5", 1, 0, 0, 0, 0);
        olmoe_tokenizer *t = tb_open(&b);
        int32_t w1[] = {e, x, e};
        CHECK(t && ids_equal(t, "e\u0301x\u00E9", 6, w1, 3, "normalized token"), "n1");
        /* decomposed Å: not the raw token; normalized into Ã + byte 0x85 */
        int32_t w2[] = {ac, ring};
        CHECK(t && ids_equal(t, "A\u030A\u00C5", 5, w2, 2, "raw token"), "n2 %d", ah);
        olmoe_tokenizer_close(t);
    }
}

static void test_invalid_utf8(void) {
    tb b = tb_new();
    tb_vocab(&b, "a");
    olmoe_tokenizer *t = tb_open(&b);
    if (!t) return;
    struct {
        const char *s;
        size_t n, at;
    } bad[] = {
        {"ab\xFF" "cd", 5, 2},        /* never valid */
        {"\xC0\x80", 2, 0},           /* overlong NUL */
        {"x\xED\xA0\x80", 4, 1},      /* a surrogate */
        {"xy\xE2\x82", 4, 2},         /* cut short at the end */
        {"\xF4\x90\x80\x80", 4, 0},   /* past U+10FFFF */
        {"abcdefgh\x80", 9, 8},       /* a lone continuation after the fast path */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        olmoe_ids ids = {0};
        olmoe_ids_push(&ids, 7);
        int rc = olmoe_tokenizer_encode(t, bad[i].s, bad[i].n, &ids);
        char want[64];
        snprintf(want, sizeof want, "invalid UTF-8 at byte %zu", bad[i].at);
        CHECK(rc == -1 && strcmp(olmoe_error(), want) == 0, "case %zu: %s", i, olmoe_error());
        CHECK(ids.n == 1 && ids.v[0] == 7, "case %zu: output changed", i);
        olmoe_ids_free(&ids);
    }
    olmoe_ids ids = {0};
    CHECK(olmoe_tokenizer_encode(t, "\xF0\x9F\x98\x80 \xE2\x82\xAC \x00", 10, &ids) == 0,
          "valid 4-byte, 3-byte and NUL: %s", olmoe_error());
    olmoe_ids_free(&ids);
    olmoe_tokenizer_close(t);
}

static int decodes_to(olmoe_tokenizer *t, const int32_t *ids, size_t n, int skip,
                      const char *want, size_t want_len) {
    char *s;
    size_t len;
    olmoe_tokenizer_decode(t, ids, n, skip, &s, &len);
    int ok = len == want_len && memcmp(s, want, len) == 0 && s[len] == '\0';
    if (!ok) fprintf(stderr, "  decoded '%s' (%zu bytes), want '%s'\n", s, len, want);
    free(s);
    return ok;
}

static void test_decode(void) {
    tb b = tb_new();
    int32_t hello = tb_vocab(&b, "Hello"), my = tb_vocab(&b, "Ġmy"), nl = tb_vocab(&b, "Ċ");
    int32_t c3 = tb_vocab(&b, "Ã"), a9 = tb_vocab(&b, "©"), e2 = tb_vocab(&b, "âĤ");
    int32_t f0 = tb_vocab(&b, "ðĲĢ"), w = tb_vocab(&b, "World"), x80 = tb_vocab(&b, "Ģ");
    int32_t e = tb_added(&b, "<|endoftext|>", 1, 0, 0, 0, 0);
    int32_t spaces = tb_added(&b, "   ", 0, 1, 0, 0, 0);
    int32_t latin = tb_added(&b, "\u00E9", 0, 1, 0, 0, 0); /* é: in the byte table as 0xE9 */
    olmoe_tokenizer *t = tb_open(&b);
    if (!t) return;
    int32_t s1[] = {hello, my, nl};
    CHECK(decodes_to(t, s1, 3, 0, "Hello my\n", 9), "plain");
    int32_t s2[] = {c3, a9}; /* é split over two tokens comes back whole */
    CHECK(decodes_to(t, s2, 2, 0, "\u00E9", 2), "joined bytes");
    int32_t s3[] = {hello, e, my};
    CHECK(decodes_to(t, s3, 3, 0, "Hello<|endoftext|> my", 21), "special kept");
    CHECK(decodes_to(t, s3, 3, 1, "Hello my", 8), "special skipped");
    int32_t s4[] = {hello, spaces, w};
    CHECK(decodes_to(t, s4, 3, 0, "Hello   World", 13), "token outside the byte table");
    int32_t s5[] = {c3};
    CHECK(decodes_to(t, s5, 1, 0, "\xEF\xBF\xBD", 3), "lone lead byte");
    /* Rust's from_utf8_lossy: one U+FFFD per maximal bad prefix */
    int32_t s6[] = {hello, e2, w}; /* E2 82 then 'W': one replacement */
    CHECK(decodes_to(t, s6, 3, 0, "Hello\xEF\xBF\xBDWorld", 13), "truncated sequence");
    int32_t s7[] = {f0, w}; /* F0 90 80 then 'W' */
    CHECK(decodes_to(t, s7, 2, 0, "\xEF\xBF\xBDWorld", 8), "truncated 4-byte");
    int32_t s8[] = {x80, x80}; /* two lone continuation bytes: two replacements */
    CHECK(decodes_to(t, s8, 2, 0, "\xEF\xBF\xBD\xEF\xBF\xBD", 6), "continuations");
    int32_t s9[] = {latin}; /* maps through the table to byte 0xE9 alone */
    CHECK(decodes_to(t, s9, 1, 0, "\xEF\xBF\xBD", 3), "added token in the table");
    int32_t s10[] = {-5, hello, 1 << 20, my};
    CHECK(decodes_to(t, s10, 4, 0, "Hello my", 8), "unknown ids skipped");
    CHECK(decodes_to(t, NULL, 0, 0, "", 0), "empty");
    olmoe_tokenizer_close(t);
}

static void expect_open_error(const char *json, const char *want) {
    olmoe_tokenizer *t = NULL;
    int rc = olmoe_tokenizer_open_json(json, strlen(json), "tok.json", &t);
    CHECK(rc == -1 && t == NULL && strstr(olmoe_error(), want) &&
              strncmp(olmoe_error(), "tok.json: ", 10) == 0,
          "want '%s', got '%s'", want, rc ? olmoe_error() : "success");
    olmoe_tokenizer_close(t);
}

static void test_errors(void) {
    expect_open_error("{\"model\": ", "invalid JSON at line");
    expect_open_error("[]", "not a JSON object");
#define BL "\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":\"ByteLevel\"},"
    expect_open_error("{\"normalizer\":{\"type\":\"Lowercase\"}," BL
                      "\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}",
                      "unsupported normalizer type 'Lowercase'");
    expect_open_error("{\"pre_tokenizer\":{\"type\":\"WhitespaceSplit\"},\"decoder\":{\"type\":"
                      "\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}",
                      "unsupported pre_tokenizer type 'WhitespaceSplit'");
    expect_open_error("{" BL "\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}",
                      "unsupported model type 'WordPiece'");
    expect_open_error("{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"decoder\":{\"type\":"
                      "\"WordPiece\"},\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}",
                      "unsupported decoder type 'WordPiece'");
    expect_open_error("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a b\"]}}",
                      "model.merges[0]: 'b' is not in the vocab");
    expect_open_error("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},"
                      "\"merges\":[[\"a\",\"b\"]]}}",
                      "model.merges[0]: 'ab' is not in the vocab");
    expect_open_error("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a\"]}}",
                      "is not two tokens separated by a space");
    expect_open_error("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}",
                      "have the same id 0");
    expect_open_error("{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}",
                      "token 'a' has no valid id");
    expect_open_error("{" BL "\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":{},\"merges\":[]}}",
                      "dropout is not supported");
    expect_open_error("{" BL "\"model\":{\"type\":\"BPE\",\"unk_token\":\"?\",\"vocab\":{},"
                      "\"merges\":[]}}",
                      "unk_token '?' is not in the vocab");
    expect_open_error("{\"added_tokens\":[{\"id\":5,\"content\":\"<s>\",\"special\":true}]," BL
                      "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
                      "'<s>' has id 5, but HF would give it id 1");
    expect_open_error("{\"added_tokens\":[{\"id\":1,\"content\":\"<s>\"},{\"id\":1,\"content\":"
                      "\"<s>\"}]," BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}",
                      "'<s>' is added twice");
    expect_open_error("{\"version\":\"2.0\"," BL "\"model\":{\"type\":\"BPE\",\"vocab\":{},"
                      "\"merges\":[]}}",
                      "unknown tokenizer.json version");
    olmoe_tokenizer *t = NULL;
    CHECK(olmoe_tokenizer_open("/nonexistent/tokenizer.json", &t) == -1 &&
              strstr(olmoe_error(), "/nonexistent/tokenizer.json"),
          "%s", olmoe_error());
}

static void test_checksum(void) {
    const char *j = "{" BL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
    olmoe_tokenizer *t = NULL;
    CHECK(olmoe_tokenizer_open_json(j, strlen(j), "x", &t) == 0, "%s", olmoe_error());
    if (!t) return;
    olmoe_hash h;
    olmoe_hash_bytes(j, strlen(j), &h);
    CHECK(strcmp(olmoe_tokenizer_checksum(t), h.hex) == 0, "checksum");
    CHECK(strlen(h.hex) == 32, "hex length");
    CHECK(olmoe_tokenizer_eos_id(t) == -1, "no eos");
    int32_t ids[] = {0, 5, -1};  /* no added_tokens at all: decode still works */
    CHECK(decodes_to(t, ids, 3, 1, "a", 1), "decode without added tokens");
    CHECK(!olmoe_tokenizer_is_special(t, 0), "not special");
    olmoe_tokenizer_close(t);
}

int main(void) {
    RUN(test_pretokenize);
    RUN(test_normalize);
    RUN(test_split_regex);
    RUN(test_added_tokens);
    RUN(test_invalid_utf8);
    RUN(test_decode);
    RUN(test_errors);
    RUN(test_checksum);
    return check_summary();
}
