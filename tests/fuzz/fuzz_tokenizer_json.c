/* fuzz_tokenizer_json.c: bytes as a tokenizer.json, optionally followed by
 * "\xff\xfe" and a text (those bytes never occur in JSON or UTF-8, so the
 * split is unambiguous). olmoe_tokenizer_open_json must refuse anything it
 * does not reproduce with a one-line message naming the file; a tokenizer it
 * accepts must then encode (the given text, or a fixed one exercising added
 * tokens and normalization), give ids that name tokens, encode the same way
 * twice, refuse invalid UTF-8 at the right byte, and decode. */
#include "fuzz.h"
#include "tokenizer.h"

static const char tokenizer_json_text[] =
    "Hello <|endoftext|> the e\xcc\x81 \xef\xac\x81 [X] world  \n\t he  hell\xe2\x80\xa8!";

static void tokenizer_json_encode(olmoe_tokenizer *t, const char *text, size_t n) {
    size_t bad = fuzz_utf8_bad((const uint8_t *)text, n);
    olmoe_ids ids = {0};
    int r = olmoe_tokenizer_encode(t, text, n, &ids);
    if (bad < n) {
        char want[64];
        snprintf(want, sizeof want, "invalid UTF-8 at byte %zu", bad);
        FUZZ_ASSERT(r != 0 && strstr(olmoe_error(), want), "invalid UTF-8 at %zu: r %d, '%s'",
                    bad, r, olmoe_error());
        FUZZ_ASSERT(ids.n == 0, "failed encode left %zu ids", ids.n);
        olmoe_ids_free(&ids);
        return;
    }
    FUZZ_ASSERT(r == 0, "valid text refused: %s", olmoe_error());
    int32_t V = olmoe_tokenizer_vocab_size(t);
    for (size_t i = 0; i < ids.n; i++)
        FUZZ_ASSERT(ids.v[i] >= 0 && ids.v[i] < V && olmoe_tokenizer_id_to_token(t, ids.v[i]),
                    "id %d of vocab size %d names no token", ids.v[i], V);
    olmoe_ids again = {0};
    FUZZ_ASSERT(olmoe_tokenizer_encode(t, text, n, &again) == 0, "second encode failed");
    FUZZ_ASSERT(again.n == ids.n && (ids.n == 0 || memcmp(again.v, ids.v, ids.n * 4) == 0),
                "encoding twice differs");
    olmoe_ids_free(&again);
    for (int skip = 0; skip < 2; skip++) {
        char *back;
        size_t nb;
        FUZZ_ASSERT(olmoe_tokenizer_decode(t, ids.v, ids.n, skip, &back, &nb) == 0, "decode: %s",
                    olmoe_error());
        FUZZ_ASSERT(back[nb] == '\0' && fuzz_utf8_bad((const uint8_t *)back, nb) == nb,
                    "decode gave invalid UTF-8");
        free(back);
    }
    olmoe_ids_free(&ids);
}

FUZZ_TARGET(tokenizer_json) {
    const char *name = "fuzz/tokenizer.json";
    const uint8_t *json, *text;
    size_t nj, nt;
    fuzz_split(data, size, "\xff\xfe", &json, &nj, &text, &nt);
    olmoe_tokenizer *t;
    if (olmoe_tokenizer_open_json((const char *)json, nj, name, &t) != 0) {
        FUZZ_ERROR_NAMES(name);
        FUZZ_ASSERT(t == NULL, "failed open left a tokenizer");
        return 0;
    }
    FUZZ_ASSERT(strcmp(olmoe_tokenizer_name(t), name) == 0, "name");
    FUZZ_ASSERT(strlen(olmoe_tokenizer_checksum(t)) == 32, "checksum");
    int32_t V = olmoe_tokenizer_vocab_size(t);
    FUZZ_ASSERT(V >= 0, "vocab size %d", V);
    /* every id's token maps back to an id whose token is the same string */
    for (int32_t id = 0; id < V && id < 4096; id++) {
        const char *s = olmoe_tokenizer_id_to_token(t, id);
        if (!s) continue;
        int32_t back = olmoe_tokenizer_token_to_id(t, s);
        FUZZ_ASSERT(back >= 0 && back < V, "token '%s' of id %d maps to %d", s, id, back);
    }
    FUZZ_ASSERT(olmoe_tokenizer_id_to_token(t, -1) == NULL && olmoe_tokenizer_id_to_token(t, V) == NULL,
                "ids outside the vocab name tokens");
    if (nt)
        tokenizer_json_encode(t, (const char *)text, nt);
    else
        tokenizer_json_encode(t, tokenizer_json_text, sizeof tokenizer_json_text - 1);
    olmoe_tokenizer_close(t);
    return 0;
}
