/* tokenizer_impl.h (internal to engine/): the insides of olmoe_tokenizer, shared by tokenizer_*.c
 * (loading, BPE, encoding, decoding). Not a public header: outside
 * engine/tokenizer*.c only the fuzz target that checks the normalizer
 * (tests/fuzz/fuzz_tokenize.c) includes it.
 *
 * Two id spaces meet here as they do in HF: the model's vocab (string <-> id,
 * used by the merges) and the added tokens (content <-> id). Lookups by
 * string or id try the added tokens first, then the vocab, as HF's
 * AddedVocabulary does.
 */
#ifndef OLMOE_TOKENIZER_IMPL_H
#define OLMOE_TOKENIZER_IMPL_H

#include "common.h"
#include "tokenizer.h"

#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* ids above this are refused at load: they only come from broken files and
 * would make the id-indexed tables huge */
#define TOK_MAX_ID (1 << 24)

/* ---- string -> int32 map (open addressing, keys owned by the map) ---- */
typedef struct {
    char **key;       // [cap] NULL = empty slot
    uint32_t *keylen; // [cap]
    int32_t *val;     // [cap]
    size_t cap, n;
} tok_strmap;
void tok_strmap_init(tok_strmap *m, size_t expected);
void tok_strmap_free(tok_strmap *m);
/* returns 1 if inserted, 0 if the key was present (value left unchanged) */
int tok_strmap_put(tok_strmap *m, const char *key, size_t len, int32_t val);
/* -1 when absent */
int32_t tok_strmap_get(const tok_strmap *m, const char *key, size_t len);
uint64_t tok_hash(const void *p, size_t n);

/* ---- BPE merges: (left id, right id) -> (rank, merged id) ---- */
typedef struct {
    uint64_t *key;  // [cap] (left << 32 | right), UINT64_MAX = empty
    uint32_t *rank; // [cap]
    int32_t *id;    // [cap]
    size_t cap, n;
} tok_pairmap;

/* ---- cache of encoded words: raw pre-token bytes -> ids ---- */
typedef struct {
    uint64_t *hash;      // [cap] 0 = empty
    uint32_t *key_off;   // [cap] into keys
    uint32_t *key_len;   // [cap]
    uint32_t *ids_off;   // [cap] into ids
    uint32_t *ids_len;   // [cap]
    size_t cap, n;
    char *keys;          // [keys_n] arena
    size_t keys_n, keys_cap;
    int32_t *ids;        // [ids_n] arena
    size_t ids_n, ids_cap;
} tok_cache;

/* ---- added tokens and the trie that finds them in text ---- */
typedef struct {
    char *content; // NUL-terminated, content_len bytes
    size_t content_len;
    char *pattern; // what is matched: content, normalized when `normalized`
    size_t pattern_len;
    int32_t id;
    int special, single_word, lstrip, rstrip, normalized;
} tok_added;

/* byte trie; node 0 is the root, which has a direct table for speed */
typedef struct {
    int32_t root[256];  // child of the root per byte, -1 none
    int32_t *first;     // [n] first child
    int32_t *sibling;   // [n] next sibling
    uint8_t *byte;      // [n] the byte leading into this node
    int32_t *added;     // [n] index into added tokens ending here, -1 none
    size_t n, cap;
} tok_trie;

/* normalizers applied in order (utf8proc option sets) */
#define TOK_MAX_NORM 8

struct olmoe_tokenizer {
    char *name;
    olmoe_hash checksum;

    /* model vocab */
    tok_strmap vocab;       // string -> id
    char **vocab_str;       // [id_cap] NULL where no token
    uint32_t *vocab_len;    // [id_cap]
    size_t vocab_count;     // entries (HF's get_vocab_size)
    int32_t id_cap;         // 1 + the largest id of vocab and added tokens

    /* BPE */
    tok_pairmap merges;
    int32_t unk_id;         // -1 none
    int fuse_unk, byte_fallback, ignore_merges;
    int32_t byte_id[256];   // id of the single byte-level char of each byte, -1 if absent

    /* added tokens */
    tok_added *added;       // [n_added]
    size_t n_added;
    tok_strmap added_map;   // content -> id
    int32_t *added_of_id;   // [id_cap] index into added, -1 none
    tok_trie trie_raw;      // added tokens with normalized = false
    tok_trie trie_norm;     // added tokens with normalized = true (patterns normalized)

    /* normalizer */
    int n_norm;
    int norm_opts[TOK_MAX_NORM];

    /* SentencePiece style (tokenizer_spm.c): ▁ for spaces, BPE on characters */
    int spm;                /* 1: this style (no byte-level table) */
    int spm_replace;        /* ' ' -> ▁ */
    int spm_prepend;        /* TOK_SPM_PREPEND_* */
    int spm_split;          /* Metaspace split: a pre-token starts at each ▁ */
    int spm_at_start;       /* scratch: the piece being encoded begins the text */

    /* ByteLevel pre-tokenizer */
    int add_prefix_space, use_regex;
    pcre2_code *re;
    pcre2_match_data *md;
    int re_jit;

    /* decoder: code point (< 324) -> byte, -1 if none */
    int16_t char_byte[324];
    uint32_t byte_char[256]; // byte -> code point

    /* scratch, reused across calls */
    tok_cache cache;
    char *buf;              // normalized text / prefixed piece
    size_t buf_cap;
    char *buf2;
    size_t buf2_cap;
    void *bpe_scratch;      // tokenizer_bpe.c's working memory
};

enum { TOK_SPM_PREPEND_NEVER, TOK_SPM_PREPEND_FIRST, TOK_SPM_PREPEND_ALWAYS, TOK_SPM_PREPEND_ALL };

/* tokenizer_spm.c: loading returns -1 with the error set; tok_spm_normalizer
 * 1 when it took the normalizer (Prepend, Replace), 0 when the type is not its */
struct json_t;
int tok_spm_normalizer(olmoe_tokenizer *t, const char *type, struct json_t *n);
int tok_spm_pre_tokenizer(olmoe_tokenizer *t, struct json_t *p); /* Metaspace or null */
int tok_spm_decoder(olmoe_tokenizer *t, struct json_t *d);       /* the Sequence */
/* one piece between added tokens (at_start: it begins the text) */
int tok_spm_pretokenize(olmoe_tokenizer *t, const uint8_t *p, size_t n, int at_start, olmoe_ids *out);
/* the decoder over n token strings, into a malloc'd text */
void tok_spm_decode(const olmoe_tokenizer *t, const char *const *tok, const size_t *len, size_t n,
                    char **text, size_t *text_len);

/* tokenizer_bpe.c */
void tok_pairmap_init(tok_pairmap *m, size_t expected);
void tok_pairmap_free(tok_pairmap *m);
void tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id);
/* 1 and fills rank/id when present */
int tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id);
void tok_cache_init(tok_cache *c);
void tok_cache_free(tok_cache *c);
/* the BPE model on one pre-token (raw bytes; the byte-level mapping is implied) */
void tok_bpe_word(olmoe_tokenizer *t, const uint8_t *w, size_t n, olmoe_ids *out);
void tok_bpe_free_scratch(olmoe_tokenizer *t);

/* tokenizer_bytes.c: the GPT-2 byte <-> unicode table and UTF-8 helpers */
void tok_bytes_to_unicode(uint32_t cp[256]);
/* writes the UTF-8 of cp to out (>= 4 bytes), returns the length */
int tok_utf8_put(uint32_t cp, char *out);
/* decodes one code point of valid UTF-8 at s (n bytes left), returns its length */
int tok_utf8_get(const uint8_t *s, size_t n, uint32_t *cp);
/* offset of the first invalid byte, or n if s is valid UTF-8 (Rust's rules) */
size_t tok_utf8_check(const uint8_t *s, size_t n);
/* White_Space (what \s matches in HF's regexes) and \w of Rust's regex crate */
int tok_is_space(uint32_t cp);
int tok_is_word(uint32_t cp);

/* tokenizer_trie.c */
void tok_trie_init(tok_trie *tr);
void tok_trie_free(tok_trie *tr);
void tok_trie_add(tok_trie *tr, const char *pat, size_t len, int32_t added_index);
/* leftmost-longest match at or after `from`: 1 and sets *start, *end, *added */
int tok_trie_find(const tok_trie *tr, const uint8_t *s, size_t n, size_t from, size_t *start,
                  size_t *end, int32_t *added);

/* tokenizer_encode.c: s[0..n) through the normalizer into *buf (grown as
 * needed, *cap its size): 1 with *out_len set, 0 when nothing changes (buf
 * untouched), -1 on a utf8proc failure */
int tok_normalize_into(const olmoe_tokenizer *t, const char *s, size_t n, char **buf, size_t *cap,
                       size_t *out_len);

#endif
