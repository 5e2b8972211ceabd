/* fuzz_corpus.c: bytes as a raw-text corpus file for olmoe_corpus_read
 * (capture/corpus.h, the --input path of olmoe-capture) with the test
 * tokenizer. The first two bytes choose the options, the rest is the file:
 *   byte 0: format = b % 3 (text, lines, jsonl); bit 2: group_field "genre";
 *           bit 3: field "body" instead of "text"; bit 4: max_tokens = byte 1 + 1
 * Checked on success: documents tile [0, n_tokens), each ends in EOS (but a
 * last one cut by max_tokens), groups present exactly when asked for and in
 * range, ids below the vocab. For text and lines without a limit the whole
 * stream is predicted here (each non-blank line, or the file, encoded and
 * followed by EOS), and so is failure: exactly when a document is not UTF-8,
 * at the file offset of its first bad byte. On failure the message is one line
 * naming the file and nothing is left allocated. */
#include "corpus.h"
#include "fuzz.h"

static olmoe_tokenizer *corpus_tok;

/* the stream text/lines should give, or -1 and the expected bad offset */
static int corpus_predict(const uint8_t *f, size_t n, int lines, olmoe_ids *want, size_t *bad_at) {
    int32_t eos = olmoe_tokenizer_eos_id(corpus_tok);
    size_t at = 0;
    while (at < n) {
        size_t end = n, next = n;
        if (lines) {
            const uint8_t *nl = memchr(f + at, '\n', n - at);
            if (nl) end = (size_t)(nl - f), next = end + 1;
            if (end > at && f[end - 1] == '\r') end--;
        }
        size_t k = at;
        if (lines)
            while (k < end && (f[k] == ' ' || f[k] == '\t')) k++;
        if (k < end || (!lines && end > at)) {
            size_t bad = fuzz_utf8_bad(f + at, end - at);
            if (bad < end - at) {
                *bad_at = at + bad;
                return -1;
            }
            FUZZ_ASSERT(olmoe_tokenizer_encode(corpus_tok, (const char *)f + at, end - at, want) == 0,
                        "encode: %s", olmoe_error());
            olmoe_ids_push(want, eos);
        }
        at = next;
    }
    return 0;
}

FUZZ_TARGET(corpus) {
    if (!corpus_tok && olmoe_tokenizer_open("tests/fixtures/tokenizer/tokenizer.json", &corpus_tok)) {
        fprintf(stderr, "fuzz: %s (run from the repository root)\n", olmoe_error());
        abort();
    }
    if (size < 2) return 0;
    uint8_t b0 = data[0], b1 = data[1];
    const uint8_t *file = data + 2;
    size_t n = size - 2;
    olmoe_corpus_opts o = {.format = (olmoe_corpus_format)(b0 % 3),
                           .field = (b0 & 8) ? "body" : NULL,
                           .group_field = (b0 & 4) ? "genre" : NULL,
                           .eos_id = olmoe_tokenizer_eos_id(corpus_tok),
                           .max_tokens = (b0 & 16) ? b1 + 1 : 0};
    static char path[300];
    if (!path[0]) fuzz_path(path, sizeof path, "corpus.txt");
    fuzz_write_file(path, file, n);

    olmoe_token_stream s;
    int r = olmoe_corpus_read(path, corpus_tok, &o, &s);
    int predictable = o.format != OLMOE_CORPUS_JSONL && !o.group_field && !o.max_tokens;
    olmoe_ids want = {0};
    size_t bad_at = 0;
    int pr = predictable ? corpus_predict(file, n, o.format == OLMOE_CORPUS_LINES, &want, &bad_at) : 0;
    if (r != 0) {
        FUZZ_ERROR_NAMES(path);
        FUZZ_ASSERT(s.n_tokens == 0 && !s.tokens && !s.doc_start && s.n_docs == 0 && s.n_groups == 0,
                    "a failed read left a stream");
        if (predictable && pr == 0)
            FUZZ_ASSERT(want.n == 0 && strstr(olmoe_error(), "no text"),
                        "refused a corpus that reads: %s", olmoe_error());
        if (predictable && pr != 0) {
            char m[64];
            snprintf(m, sizeof m, "invalid UTF-8 at byte %zu", bad_at);
            FUZZ_ASSERT(strstr(olmoe_error(), m), "'%s', expected '%s'", olmoe_error(), m);
        }
        olmoe_ids_free(&want);
        return 0;
    }
    FUZZ_ASSERT(!predictable || pr == 0, "accepted invalid UTF-8 at byte %zu", bad_at);
    FUZZ_ASSERT(s.n_tokens > 0 && s.n_docs > 0, "empty stream accepted");
    FUZZ_ASSERT(!o.max_tokens || s.n_tokens <= o.max_tokens, "%lld tokens past max %lld",
                (long long)s.n_tokens, (long long)o.max_tokens);
    int32_t V = olmoe_tokenizer_vocab_size(corpus_tok);
    for (int64_t i = 0; i < s.n_tokens; i++)
        FUZZ_ASSERT(s.tokens[i] >= 0 && s.tokens[i] < V, "token %d at %lld", s.tokens[i], (long long)i);
    int64_t end = 0;
    for (int64_t d = 0; d < s.n_docs; d++) {
        FUZZ_ASSERT(s.doc_start[d] == end && s.doc_length[d] >= 1, "document %lld does not tile",
                    (long long)d);
        end += s.doc_length[d];
        int cut = d == s.n_docs - 1 && o.max_tokens && end == o.max_tokens;
        FUZZ_ASSERT(cut || s.tokens[end - 1] == o.eos_id, "document %lld lacks its EOS", (long long)d);
        FUZZ_ASSERT(o.group_field ? s.doc_group[d] >= 0 && s.doc_group[d] < s.n_groups
                                  : s.doc_group[d] == -1,
                    "document %lld has group %d of %d", (long long)d, s.doc_group[d], s.n_groups);
    }
    FUZZ_ASSERT(end == s.n_tokens, "documents end at %lld of %lld", (long long)end,
                (long long)s.n_tokens);
    for (int g = 0; g < s.n_groups; g++) {
        fuzz_touch(s.groups[g], strlen(s.groups[g]));
        for (int h = 0; h < g; h++) FUZZ_ASSERT(strcmp(s.groups[g], s.groups[h]) != 0, "group twice");
    }
    if (predictable)
        FUZZ_ASSERT(want.n == (size_t)s.n_tokens &&
                        memcmp(want.v, s.tokens, want.n * sizeof *want.v) == 0,
                    "stream differs from the prediction (%zu vs %lld tokens)", want.n,
                    (long long)s.n_tokens);
    olmoe_ids_free(&want);
    olmoe_token_stream_free(&s);
    return 0;
}
