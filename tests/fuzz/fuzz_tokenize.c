/* fuzz_tokenize.c: raw text through the test tokenizer
 * (tests/fixtures/tokenizer/tokenizer.json: NFC, ByteLevel, BPE, added tokens).
 * Checked, each against something computed here independently:
 *   - encode fails exactly on invalid UTF-8, at the offset this file's own
 *     validator finds, and leaves the ids it appends to as they were;
 *   - every id is below the vocab size and names a token;
 *   - encoding is deterministic (the word cache changes nothing);
 *   - decode(encode(x)) is x up to NFC (a byte-level BPE loses nothing);
 *   - the tokenizer's chunked normalization equals utf8proc's NFC of the
 *     whole text (tokenizer_encode.c splits before ASCII characters and says
 *     why that is safe; this checks the claim). */
#include "fuzz.h"
#include "tokenizer.h"
#include "tokenizer_impl.h"

#include <utf8proc.h>

static olmoe_tokenizer *tokenize_tok;

static int tokenize_same(const olmoe_ids *a, const olmoe_ids *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof *a->v) == 0);
}

/* NFC of s[0..n) (valid UTF-8) as a malloc'd string */
static char *tokenize_nfc(const char *s, size_t n, size_t *out_n) {
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    FUZZ_ASSERT(r >= 0, "utf8proc_map: %s", utf8proc_errmsg(r));
    *out_n = (size_t)r;
    return (char *)dst;
}

FUZZ_TARGET(tokenize) {
    if (!tokenize_tok) {
        const char *path = "tests/fixtures/tokenizer/tokenizer.json";
        if (olmoe_tokenizer_open(path, &tokenize_tok) != 0) {
            fprintf(stderr, "fuzz: %s (run from the repository root)\n", olmoe_error());
            abort();
        }
    }
    olmoe_tokenizer *t = tokenize_tok;
    const char *text = (const char *)data;
    size_t bad = fuzz_utf8_bad(data, size);

    olmoe_ids ids = {0};
    olmoe_ids_push(&ids, 7); /* encode appends: this must survive */
    int r = olmoe_tokenizer_encode(t, text, size, &ids);
    if (bad < size) {
        FUZZ_ASSERT(r != 0, "invalid UTF-8 at %zu accepted", bad);
        char want[64];
        snprintf(want, sizeof want, "invalid UTF-8 at byte %zu", bad);
        FUZZ_ASSERT(strstr(olmoe_error(), want), "message '%s', expected '%s'", olmoe_error(), want);
        FUZZ_ASSERT(ids.n == 1 && ids.v[0] == 7, "failed encode changed the ids (%zu)", ids.n);
        olmoe_ids_free(&ids);
        return 0;
    }
    FUZZ_ASSERT(r == 0, "valid text refused: %s", olmoe_error());
    FUZZ_ASSERT(ids.v[0] == 7, "encode overwrote the ids it appends to");
    int32_t V = olmoe_tokenizer_vocab_size(t);
    for (size_t i = 1; i < ids.n; i++)
        FUZZ_ASSERT(ids.v[i] >= 0 && ids.v[i] < V && olmoe_tokenizer_id_to_token(t, ids.v[i]),
                    "id %d at %zu", ids.v[i], i);

    olmoe_ids again = {0};
    olmoe_ids_push(&again, 7);
    FUZZ_ASSERT(olmoe_tokenizer_encode(t, text, size, &again) == 0, "second encode failed");
    FUZZ_ASSERT(tokenize_same(&ids, &again), "encoding twice differs (%zu vs %zu ids)", ids.n,
                again.n);
    olmoe_ids_free(&again);

    char *back;
    size_t nback;
    FUZZ_ASSERT(olmoe_tokenizer_decode(t, ids.v + 1, ids.n - 1, 0, &back, &nback) == 0,
                "decode: %s", olmoe_error());
    FUZZ_ASSERT(back[nback] == '\0', "decode result not terminated");
    size_t na, nb;
    char *a = tokenize_nfc(text, size, &na), *b = tokenize_nfc(back, nback, &nb);
    FUZZ_ASSERT(na == nb && memcmp(a, b, na) == 0, "decode(encode(x)) != x up to NFC (%zu vs %zu bytes)",
                na, nb);

    /* the chunked normalizer against NFC of the whole text */
    char *buf = NULL;
    size_t cap = 0, nn = 0;
    int nr = tok_normalize_into(t, text, size, &buf, &cap, &nn);
    FUZZ_ASSERT(nr >= 0, "normalize failed: %s", olmoe_error());
    if (nr == 0)
        FUZZ_ASSERT(na == size && memcmp(a, text, size) == 0, "normalize said unchanged, NFC differs");
    else
        FUZZ_ASSERT(nn == na && memcmp(buf, a, na) == 0, "chunked normalization differs from NFC");
    free(buf);
    free(a);
    free(b);
    free(back);
    olmoe_ids_free(&ids);
    return 0;
}
