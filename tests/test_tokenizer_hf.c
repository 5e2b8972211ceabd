/* test_tokenizer_hf.c: our tokenizer against HuggingFace `tokenizers` on the
 * fixtures made on the GPU machine by tests/fixtures/make_fixtures.py: a
 * GPT-NeoX-style tokenizer.json and HF's encodings of a varied text
 * (encodings.jsonl: {"text", "ids", "decoded"} per line, ids from
 * encode(text).ids, decoded from decode(ids)). Every line must match token
 * for token, decode must give HF's text, and decode(encode(x)) == x wherever
 * HF round-trips. The same for the bundled model's tokenizer and the
 * encodings its training script recorded with HF (models/olmoe-brown).
 */
#include "test_tokenizer_util.h"

#include <stdlib.h>

static const char *fixture(const char *name) {
    static char path[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/tokenizer/%s", check_fixture_dir(), name);
    return path[k];
}

static void check_encodings(const char *tok_path, const char *enc_path) {
    olmoe_tokenizer *t = NULL;
    CHECK(olmoe_tokenizer_open(tok_path, &t) == 0, "%s", olmoe_error());
    if (!t) return;
    FILE *f = fopen(enc_path, "r");
    CHECK(f != NULL, "cannot open %s", enc_path);
    if (!f) {
        olmoe_tokenizer_close(t);
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int lineno = 0, n_lines = 0, bad_ids = 0, bad_dec = 0, bad_rt = 0, n_rt = 0;
    size_t n_tokens = 0;
    while ((got = getline(&line, &cap, f)) > 0) {
        lineno++;
        json_error_t err;
        json_t *o = json_loadb(line, (size_t)got, JSON_ALLOW_NUL, &err);
        CHECK(o != NULL, "line %d: %s", lineno, err.text);
        if (!o) continue;
        json_t *jt = json_object_get(o, "text"), *ji = json_object_get(o, "ids");
        json_t *jd = json_object_get(o, "decoded");
        const char *text = json_string_value(jt);
        size_t tlen = json_string_length(jt);
        size_t n = json_array_size(ji);
        int32_t *want = malloc((n + 1) * sizeof *want);
        for (size_t i = 0; i < n; i++)
            want[i] = (int32_t)json_integer_value(json_array_get(ji, i));
        char what[64];
        snprintf(what, sizeof what, "line %d", lineno);
        if (!ids_equal(t, text, tlen, want, n, what)) {
            bad_ids++;
            fprintf(stderr, "    text: %.200s\n", text);
        }
        n_tokens += n;
        char *dec;
        size_t dlen;
        olmoe_tokenizer_decode(t, want, n, 0, &dec, &dlen);
        if (jd && (dlen != json_string_length(jd) || memcmp(dec, json_string_value(jd), dlen))) {
            bad_dec++;
            fprintf(stderr, "  line %d: decoded '%.200s', HF '%.200s'\n", lineno, dec,
                    json_string_value(jd));
        }
        free(dec);
        /* round trip of our own encoding, where HF's comes back whole */
        if (jd && json_string_length(jd) == tlen && memcmp(json_string_value(jd), text, tlen) == 0) {
            olmoe_ids ids = {0};
            olmoe_tokenizer_encode(t, text, tlen, &ids);
            olmoe_tokenizer_decode(t, ids.v, ids.n, 0, &dec, &dlen);
            if (dlen != tlen || memcmp(dec, text, tlen) != 0) bad_rt++;
            n_rt++;
            free(dec);
            olmoe_ids_free(&ids);
        }
        free(want);
        json_decref(o);
        n_lines++;
    }
    free(line);
    fclose(f);
    CHECK(n_lines >= 10, "only %d fixture lines", n_lines);
    CHECK(bad_ids == 0, "%d of %d lines differ from HF's ids", bad_ids, n_lines);
    CHECK(bad_dec == 0, "%d of %d lines decode differently from HF", bad_dec, n_lines);
    CHECK(bad_rt == 0, "%d of %d texts do not round-trip", bad_rt, n_rt);
    fprintf(stderr, "  %s: %d lines, %zu tokens, %d round trips\n", enc_path, n_lines, n_tokens,
            n_rt);
    olmoe_tokenizer_close(t);
}

static void test_hf_encodings(void) {
    check_encodings(fixture("tokenizer.json"), fixture("encodings.jsonl"));
}

/* the Qwen2 (Split regex + ByteLevel) and Mixtral/Llama (SentencePiece style:
 * Prepend/Replace normalizers or a Metaspace pre-tokenizer, byte fallback)
 * tokenizers of make_fixtures.py's arch-tokenizers step. They come from the
 * same GPU run as the tiny-qwen3moe model fixture: with that fixture present
 * they must be too; without it the check says so and has nothing to compare. */
static void test_hf_arch_encodings(void) {
    const char *dirs[] = {"tokenizer-qwen2", "tokenizer-spm", "tokenizer-metaspace"};
    char marker[512];
    snprintf(marker, sizeof marker, "%s/tiny-qwen3moe/reference.h5", check_fixture_dir());
    int required = olmoe_file_exists(marker), found = 0;
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        char tok[512], enc[512];
        snprintf(tok, sizeof tok, "%s/%s/tokenizer.json", check_fixture_dir(), dirs[i]);
        snprintf(enc, sizeof enc, "%s/%s/encodings.jsonl", check_fixture_dir(), dirs[i]);
        if (!olmoe_file_exists(tok)) {
            CHECK(!required, "%s is missing beside tiny-qwen3moe", tok);
            continue;
        }
        found++;
        check_encodings(tok, enc);
    }
    if (!found) printf("# no Qwen2/SentencePiece-style HF tokenizer fixtures yet (make_fixtures.py)\n");
}

/* the bundled model's tokenizer, with HF's encodings recorded at training */
static void test_hf_bundled_model(void) {
    check_encodings("models/olmoe-brown/tokenizer.json", "models/olmoe-brown/encodings.jsonl");
}

/* the tokenizer shipped with the bundled model loads, knows its EOS, and
 * round-trips text */
static void test_bundled_model(void) {
    const char *path = "models/olmoe-brown/tokenizer.json";
    olmoe_tokenizer *t = NULL;
    CHECK(olmoe_tokenizer_open(path, &t) == 0, "%s", olmoe_error());
    if (!t) return;
    CHECK(olmoe_tokenizer_eos_id(t) >= 0, "no <|endoftext|>");
    const char *s = "The Fulton County Grand Jury said Friday an investigation of Atlanta's "
                    "recent primary election produced \"no evidence\" that any irregularities "
                    "took place.\n\n  caf\u00E9 \U0001F600 <|endoftext|>";
    olmoe_ids ids = {0};
    CHECK(olmoe_tokenizer_encode(t, s, strlen(s), &ids) == 0, "%s", olmoe_error());
    CHECK(ids.n > 10 && ids.v[ids.n - 1] == olmoe_tokenizer_eos_id(t), "ends with eos");
    char *back;
    size_t n;
    olmoe_tokenizer_decode(t, ids.v, ids.n, 0, &back, &n);
    CHECK(n == strlen(s) && memcmp(back, s, n) == 0, "round trip: '%s'", back);
    free(back);
    olmoe_ids_free(&ids);
    olmoe_tokenizer_close(t);
}

int main(void) {
    RUN(test_hf_encodings);
    RUN(test_hf_bundled_model);
    RUN(test_hf_arch_encodings);
    RUN(test_bundled_model);
    return check_summary();
}
