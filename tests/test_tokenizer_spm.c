/* test_tokenizer_spm.c: SentencePiece-style tokenizer.json files (Mixtral,
 * Llama) on a hand-made vocab, with ids worked out by hand from HF's rules:
 * spaces become U+2581 (written "_" in the comments), one is prepended
 * (Prepend normalizer: to every piece between added tokens; Metaspace
 * prepend_scheme "first": only at the start of the text), BPE merges run on
 * characters in rank order, a character outside the vocab falls back to
 * <0xXX> tokens of its UTF-8 bytes (else to the fused unk), and decoding
 * turns _ into spaces, byte runs into text (U+FFFD for each byte of a run
 * that is not UTF-8) and drops one leading space. The HF fixtures
 * (test_tokenizer_hf.c, tokenizer-spm/ and tokenizer-metaspace/) check the
 * same code against HF itself. */
#include "test_tokenizer_util.h"

#include <stdlib.h>

#define M "\xe2\x96\x81" /* U+2581 */

enum { UNK, XC3, XA9, META, A, B, MA, AB, MAB, S_BOS }; /* ids of the vocab below, then <s> */

static olmoe_tokenizer *open_spm(int metaspace, int split) {
    json_t *vocab = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "<unk>", UNK, "<0xC3>",
                              XC3, "<0xA9>", XA9, M, META, "a", A, "b", B, M "a", MA, "ab", AB,
                              M "ab", MAB);
    json_t *merges = json_pack("[[s, s], [s, s], [s, s]]", M, "a", "a", "b", M "a", "b");
    json_t *model = json_pack("{s:s, s:o, s:o, s:s, s:b, s:b}", "type", "BPE", "vocab", vocab,
                              "merges", merges, "unk_token", "<unk>", "fuse_unk", 1,
                              "byte_fallback", 1);
    json_t *dec = json_pack(
        "{s:s, s:[{s:s, s:{s:s}, s:s}, {s:s}, {s:s}, {s:s, s:s, s:i, s:i}]}", "type", "Sequence",
        "decoders", "type", "Replace", "pattern", "String", M, "content", " ", "type",
        "ByteFallback", "type", "Fuse", "type", "Strip", "content", " ", "start", 1, "stop", 0);
    json_t *added = json_pack("[{s:i, s:s, s:b, s:b, s:b, s:b, s:b}]", "id", S_BOS, "content", "<s>",
                              "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
                              "special", 1);
    json_t *doc = json_pack("{s:s, s:o, s:o, s:o}", "version", "1.0", "model", model, "decoder",
                            dec, "added_tokens", added);
    if (metaspace) {
        json_object_set_new(doc, "normalizer", json_null());
        json_object_set_new(doc, "pre_tokenizer",
                            json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement", M,
                                      "prepend_scheme", "first", "split", split));
    } else {
        json_object_set_new(doc, "normalizer",
                            json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}, s:s}]}", "type",
                                      "Sequence", "normalizers", "type", "Prepend", "prepend", M,
                                      "type", "Replace", "pattern", "String", " ", "content", M));
        json_object_set_new(doc, "pre_tokenizer", json_null());
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    olmoe_tokenizer *t = NULL;
    if (olmoe_tokenizer_open_json(text, strlen(text), "spm.json", &t) != 0)
        CHECK(0, "open: %s", olmoe_error());
    free(text);
    return t;
}

static int decodes(olmoe_tokenizer *t, const int32_t *ids, size_t n, const char *want) {
    char *s;
    size_t len;
    olmoe_tokenizer_decode(t, ids, n, 0, &s, &len);
    int ok = len == strlen(want) && memcmp(s, want, len) == 0;
    if (!ok) fprintf(stderr, "    decoded '%s', want '%s'\n", s, want);
    free(s);
    return ok;
}

#define IDS(t, text, ...)                                                                    \
    do {                                                                                     \
        static const int32_t w_[] = {__VA_ARGS__};                                           \
        CHECK(ids_equal(t, text, strlen(text), w_, sizeof w_ / sizeof *w_, text), "%s", text); \
    } while (0)

static void common_cases(olmoe_tokenizer *t) {
    IDS(t, "a ab", MA, MAB);     /* _a_ab: _a twice (rank 0), then _a+b (rank 2) */
    IDS(t, "b", META, B);        /* _b: no merge */
    IDS(t, "\xc3\xa9", META, XC3, XA9); /* _é: é falls back to its two bytes */
    IDS(t, "xy", META, UNK);     /* _xy: no byte tokens for x, y: one fused unk */
    CHECK(ids_equal(t, "", 0, NULL, 0, "empty"), "empty");
    int32_t d1[] = {MA, MAB}, d2[] = {META, XC3, XA9}, d3[] = {XC3, B}, d4[] = {S_BOS, A};
    CHECK(decodes(t, d1, 2, "a ab"), "decode _a _ab");
    CHECK(decodes(t, d2, 3, "\xc3\xa9"), "decode bytes");
    CHECK(decodes(t, d3, 2, "\xef\xbf\xbd" "b"), "decode a lone byte");
    CHECK(decodes(t, d4, 2, "<s>a"), "decode with <s>");
}

static void test_prepend_normalizer(void) {
    olmoe_tokenizer *t = open_spm(0, 0);
    if (!t) return;
    common_cases(t);
    IDS(t, "<s>a", S_BOS, MA); /* the piece after <s> gets its own _ */
    IDS(t, "a<s>", MA, S_BOS);
    olmoe_tokenizer_close(t);
}

static void test_metaspace_first(void) {
    for (int split = 0; split < 2; split++) {
        olmoe_tokenizer *t = open_spm(1, split);
        if (!t) return;
        common_cases(t);
        IDS(t, "<s>a", S_BOS, A); /* not at the start of the text: no _ */
        IDS(t, " a", MA);         /* starts with a space: nothing prepended */
        olmoe_tokenizer_close(t);
    }
}

static void test_spm_errors(void) {
    const char *bad[][2] = {
        {"{\"normalizer\":{\"type\":\"Prepend\",\"prepend\":\"x\"},\"pre_tokenizer\":null,"
         "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}",
         "normalizer Prepend: only"},
        {"{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"" M "\",\"prepend_scheme\":"
         "\"first\"},\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{},"
         "\"merges\":[]}}",
         "a ByteLevel decoder with a Metaspace-style tokenizer is not supported"},
        {"{\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"" M "\",\"prepend_scheme\":"
         "\"sometimes\"},\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":{},"
         "\"merges\":[]}}",
         "prepend_scheme must be"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        olmoe_tokenizer *t = NULL;
        int rc = olmoe_tokenizer_open_json(bad[i][0], strlen(bad[i][0]), "tok.json", &t);
        CHECK(rc == -1 && strstr(olmoe_error(), bad[i][1]), "case %zu: want '%s', got '%s'", i,
              bad[i][1], rc ? olmoe_error() : "success");
        olmoe_tokenizer_close(t);
    }
}

int main(void) {
    RUN(test_prepend_normalizer);
    RUN(test_metaspace_first);
    RUN(test_spm_errors);
    return check_summary();
}
