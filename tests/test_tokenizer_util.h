/* test_tokenizer_util.h: building small tokenizer.json documents in the
 * tokenizer tests (jansson), and comparing id lists.
 *
 *   tb b = tb_new();                     // ByteLevel, no prefix space, no normalizer
 *   int32_t hi = tb_vocab(&b, "hi");     // ids in insertion order
 *   tb_merge(&b, "h", "i");
 *   olmoe_tokenizer *t = tb_open(&b);    // NULL (and a message) if refused
 */
#ifndef TEST_TOKENIZER_UTIL_H
#define TEST_TOKENIZER_UTIL_H

#include "check.h"
#include "common.h"
#include "tokenizer.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    json_t *vocab, *merges, *added;
    const char *normalizer; /* NULL: none */
    int prefix, ignore_merges, byte_fallback, fuse_unk;
    const char *unk;
} tb;

static inline tb tb_new(void) {
    tb b = {json_object(), json_array(), json_array(), NULL, 0, 0, 0, 0, NULL};
    return b;
}

static inline int32_t tb_vocab(tb *b, const char *s) {
    json_t *v = json_object_get(b->vocab, s);
    if (v) return (int32_t)json_integer_value(v);
    int32_t id = (int32_t)json_object_size(b->vocab);
    json_object_set_new(b->vocab, s, json_integer(id));
    return id;
}

static inline void tb_merge(tb *b, const char *l, const char *r) {
    json_array_append_new(b->merges, json_pack("[s, s]", l, r));
}

/* the id HF gives: the vocab's if present, else the next after vocab and
 * earlier added tokens (tests add tokens after the vocab is complete) */
static inline int32_t tb_added(tb *b, const char *content, int special, int normalized,
                               int lstrip, int rstrip, int single_word) {
    json_t *v = json_object_get(b->vocab, content);
    int32_t id = v ? (int32_t)json_integer_value(v)
                   : (int32_t)(json_object_size(b->vocab) + json_array_size(b->added));
    json_array_append_new(b->added,
                          json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (int)id,
                                    "content", content, "single_word", single_word, "lstrip",
                                    lstrip, "rstrip", rstrip, "normalized", normalized,
                                    "special", special));
    return id;
}

static inline json_t *tb_doc(tb *b) {
    json_t *model = json_pack("{s:s, s:n, s:O, s:O, s:b, s:b, s:b}", "type", "BPE", "dropout",
                              "vocab", b->vocab, "merges", b->merges, "fuse_unk", b->fuse_unk,
                              "byte_fallback", b->byte_fallback, "ignore_merges",
                              b->ignore_merges);
    json_object_set_new(model, "unk_token", b->unk ? json_string(b->unk) : json_null());
    json_t *doc = json_pack(
        "{s:s, s:n, s:n, s:O, s:{s:s, s:b, s:b, s:b}, s:{s:s, s:b, s:b}, s:{s:s, s:b, s:b}, s:o}",
        "version", "1.0", "truncation", "padding", "added_tokens", b->added, "pre_tokenizer",
        "type", "ByteLevel", "add_prefix_space", b->prefix, "trim_offsets", 1, "use_regex", 1,
        "post_processor", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
        "decoder", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "model", model);
    json_object_set_new(doc, "normalizer",
                        b->normalizer ? json_pack("{s:s}", "type", b->normalizer) : json_null());
    return doc;
}

static inline olmoe_tokenizer *tb_open_doc(json_t *doc) {
    char *s = json_dumps(doc, JSON_COMPACT);
    olmoe_tokenizer *t = NULL;
    if (olmoe_tokenizer_open_json(s, strlen(s), "test.json", &t) != 0)
        fprintf(stderr, "  open: %s\n", olmoe_error());
    free(s);
    return t;
}

static inline olmoe_tokenizer *tb_open(tb *b) {
    json_t *doc = tb_doc(b);
    olmoe_tokenizer *t = tb_open_doc(doc);
    json_decref(doc);
    json_decref(b->vocab);
    json_decref(b->merges);
    json_decref(b->added);
    return t;
}

/* encode and compare; prints both lists on a mismatch */
static inline int ids_equal(olmoe_tokenizer *t, const char *text, size_t len, const int32_t *want,
                            size_t n, const char *what) {
    olmoe_ids got = {0};
    int rc = olmoe_tokenizer_encode(t, text, len, &got);
    int ok = rc == 0 && got.n == n && (n == 0 || memcmp(got.v, want, n * sizeof *want) == 0);
    if (!ok) {
        fprintf(stderr, "  %s: got [", what);
        for (size_t i = 0; i < got.n; i++) fprintf(stderr, "%s%d", i ? " " : "", got.v[i]);
        fprintf(stderr, "] want [");
        for (size_t i = 0; i < n; i++) fprintf(stderr, "%s%d", i ? " " : "", want[i]);
        fprintf(stderr, "]%s%s\n", rc ? " error: " : "", rc ? olmoe_error() : "");
    }
    olmoe_ids_free(&got);
    return ok;
}

#endif
