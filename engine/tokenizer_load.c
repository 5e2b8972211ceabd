/* tokenizer_load.c: reading and validating tokenizer.json (jansson).
 *
 * Every part is checked against what this implementation reproduces exactly;
 * anything else is refused with its name ("tokenizer.json: unsupported
 * normalizer type 'Lowercase'") rather than tokenized differently from HF.
 * Added tokens get their ids the way HF's deserializer assigns them (the
 * model's id when the content is in the vocab, else the next free id); a file
 * whose recorded ids disagree is refused.
 */
#include "tokenizer_impl.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* the GPT-2 split regex, with HF's \s (Oniguruma: White_Space) spelled out:
 * PCRE2's \s also takes U+180E */
#define WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
           "\\x{202F}\\x{205F}\\x{3000}"
static const char gpt2_regex[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS
                                 "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";

#define FAIL(...) (olmoe_errorf(__VA_ARGS__), -1)

static int get_bool(json_t *obj, const char *key, int dflt, int *out, const char *where) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v)) return FAIL("%s: '%s' is not true or false", where, key);
    *out = json_is_true(v);
    return 0;
}

static const char *type_of(json_t *obj) {
    json_t *v = json_object_get(obj, "type");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ---- normalizer ---- */

static int add_normalizer(olmoe_tokenizer *t, json_t *n) {
    if (!n || json_is_null(n)) return 0;
    if (!json_is_object(n)) return FAIL("normalizer is not an object");
    const char *type = type_of(n);
    if (!type) return FAIL("normalizer has no type");
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(n, "normalizers");
        if (!json_is_array(list)) return FAIL("normalizer Sequence has no 'normalizers' list");
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item) if (add_normalizer(t, item) != 0) return -1;
        return 0;
    }
    int spm = tok_spm_normalizer(t, type, n);
    if (spm != 0) return spm < 0 ? -1 : 0;
    if (t->spm) return FAIL("a unicode normalizer after Prepend/Replace is not supported");
    int opts;
    if (strcmp(type, "NFC") == 0)
        opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    else if (strcmp(type, "NFD") == 0)
        opts = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    else if (strcmp(type, "NFKC") == 0)
        opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    else if (strcmp(type, "NFKD") == 0)
        opts = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    else
        return FAIL("unsupported normalizer type '%s' (supported: NFC, NFD, NFKC, NFKD, Prepend, "
                    "Replace, Sequence)",
                    type);
    if (t->n_norm == TOK_MAX_NORM) return FAIL("more than %d normalizers", TOK_MAX_NORM);
    t->norm_opts[t->n_norm++] = opts;
    return 0;
}

/* ---- pre-tokenizer and decoder ---- */

/* HF's pattern with \s and \S spelled as Oniguruma's White_Space (WS above),
 * inside a character class as its members, outside as a class of their own */
static char *translate_regex(const char *pat) {
    size_t n = strlen(pat), cap = n * 8 + 64, at = 0;
    char *out = xmalloc(cap);
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        const char *put = NULL;
        char one[3] = {0};
        if (pat[i] == '\\' && i + 1 < n) {
            char c = pat[++i];
            if (c == 's') put = in_class ? WS : "[" WS "]";
            else if (c == 'S' && !in_class) put = "[^" WS "]";
            else one[0] = '\\', one[1] = c;
        } else {
            if (pat[i] == '[' && !in_class) in_class = 1;
            else if (pat[i] == ']' && in_class && !(i > 0 && (pat[i - 1] == '[' || pat[i - 1] == '^')))
                in_class = 0;
            one[0] = pat[i];
        }
        if (!put) put = one;
        size_t k = strlen(put);
        if (at + k + 1 > cap) out = xrealloc(out, cap = 2 * (at + k + 1));
        memcpy(out + at, put, k);
        at += k;
    }
    out[at] = '\0';
    return out;
}

static int compile_split(olmoe_tokenizer *t, const char *pattern) {
    int err;
    PCRE2_SIZE erroff;
    t->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err,
                          &erroff, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return FAIL("cannot compile the split regex at %zu: %s", (size_t)erroff, (char *)msg);
    }
    t->re_jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    t->md = pcre2_match_data_create_from_pattern(t->re, NULL);
    if (!t->md) die("out of memory creating PCRE2 match data");
    return 0;
}

/* Qwen2's form: Sequence [Split(Regex, Isolated, not inverted), ByteLevel
 * without its own regex], which splits as a ByteLevel with that regex would */
static int load_split_sequence(olmoe_tokenizer *t, json_t *p) {
    json_t *list = json_object_get(p, "pretokenizers");
    json_t *split = json_array_get(list, 0), *bl = json_array_get(list, 1);
    const char *ts = split ? type_of(split) : NULL, *tb = bl ? type_of(bl) : NULL;
    if (!json_is_array(list) || json_array_size(list) != 2 || !ts || strcmp(ts, "Split") != 0 ||
        !tb || strcmp(tb, "ByteLevel") != 0)
        return FAIL("unsupported pre_tokenizer Sequence (supported: [Split, ByteLevel])");
    json_t *pat = json_object_get(json_object_get(split, "pattern"), "Regex");
    json_t *beh = json_object_get(split, "behavior");
    int invert = 0, byte_regex = 0;
    if (!json_is_string(pat)) return FAIL("pre_tokenizer Split: only a 'Regex' pattern is supported");
    if (!json_is_string(beh) || strcmp(json_string_value(beh), "Isolated") != 0)
        return FAIL("pre_tokenizer Split: only behavior 'Isolated' is supported");
    if (get_bool(split, "invert", 0, &invert, "pre_tokenizer Split") != 0 ||
        get_bool(bl, "add_prefix_space", 1, &t->add_prefix_space, "pre_tokenizer ByteLevel") != 0 ||
        get_bool(bl, "use_regex", 1, &byte_regex, "pre_tokenizer ByteLevel") != 0)
        return -1;
    if (invert) return FAIL("pre_tokenizer Split: invert true is not supported");
    if (byte_regex) return FAIL("pre_tokenizer ByteLevel after a Split must have use_regex false");
    t->use_regex = 1;
    char *re = translate_regex(json_string_value(pat));
    int rc = compile_split(t, re);
    free(re);
    return rc;
}

static int load_pre_tokenizer(olmoe_tokenizer *t, json_t *p) {
    if ((!p || json_is_null(p)) && t->spm) return tok_spm_pre_tokenizer(t, p);
    if (!p || json_is_null(p))
        return FAIL("no pre_tokenizer (a ByteLevel pre-tokenizer is required)");
    const char *type = json_is_object(p) ? type_of(p) : NULL;
    if (!type) return FAIL("pre_tokenizer has no type");
    if (strcmp(type, "Metaspace") == 0) return tok_spm_pre_tokenizer(t, p);
    if (t->spm) return FAIL("pre_tokenizer %s after the Prepend/Replace normalizers is not supported", type);
    if (strcmp(type, "Sequence") == 0) return load_split_sequence(t, p);
    if (strcmp(type, "ByteLevel") != 0)
        return FAIL("unsupported pre_tokenizer type '%s' (supported: ByteLevel, Metaspace, Sequence "
                    "of Split and ByteLevel)",
                    type);
    if (get_bool(p, "add_prefix_space", 1, &t->add_prefix_space, "pre_tokenizer") != 0 ||
        get_bool(p, "use_regex", 1, &t->use_regex, "pre_tokenizer") != 0)
        return -1;
    if (!t->use_regex) return 0;
    return compile_split(t, gpt2_regex);
}

static int load_decoder(olmoe_tokenizer *t, json_t *d) {
    const char *type = json_is_object(d) ? type_of(d) : NULL;
    if (!d || json_is_null(d)) return FAIL("no decoder (a ByteLevel decoder is required)");
    if (!type) return FAIL("decoder has no type");
    if (strcmp(type, "Sequence") == 0) return tok_spm_decoder(t, d);
    if (strcmp(type, "ByteLevel") != 0)
        return FAIL("unsupported decoder type '%s' (supported: ByteLevel, Sequence)", type);
    if (t->spm) return FAIL("a ByteLevel decoder with a Metaspace-style tokenizer is not supported");
    return 0;
}

static int load_post_processor(json_t *p) {
    if (!p || json_is_null(p)) return 0;
    const char *type = json_is_object(p) ? type_of(p) : NULL;
    if (!type) return FAIL("post_processor has no type");
    /* none of these changes the ids of encode(text, add_special_tokens=False) */
    const char *known[] = {"ByteLevel", "TemplateProcessing", "Sequence", "RobertaProcessing",
                           "BertProcessing"};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strcmp(type, known[i]) == 0) return 0;
    return FAIL("unsupported post_processor type '%s'", type);
}

/* ---- the BPE model ---- */

static int load_vocab(olmoe_tokenizer *t, json_t *vocab) {
    if (!json_is_object(vocab)) return FAIL("model.vocab is not an object");
    size_t n = json_object_size(vocab);
    tok_strmap_init(&t->vocab, n);
    const char *key;
    json_t *v;
    int32_t max_id = -1;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= TOK_MAX_ID)
            return FAIL("model.vocab: token '%s' has no valid id (an integer in [0, %d))", key,
                        TOK_MAX_ID);
        int32_t id = (int32_t)json_integer_value(v);
        if (id > max_id) max_id = id;
    }
    t->id_cap = max_id + 1;
    t->vocab_str = xcalloc((size_t)t->id_cap + 1, sizeof *t->vocab_str);
    t->vocab_len = xcalloc((size_t)t->id_cap + 1, sizeof *t->vocab_len);
    json_object_foreach(vocab, key, v) {
        int32_t id = (int32_t)json_integer_value(v);
        size_t len = strlen(key);
        if (t->vocab_str[id])
            return FAIL("model.vocab: tokens '%s' and '%s' have the same id %d", t->vocab_str[id],
                        key, id);
        tok_strmap_put(&t->vocab, key, len, id);
        t->vocab_str[id] = xstrdup(key);
        t->vocab_len[id] = (uint32_t)len;
    }
    t->vocab_count = n;
    return 0;
}

static int32_t vocab_id(const olmoe_tokenizer *t, const char *s) {
    return tok_strmap_get(&t->vocab, s, strlen(s));
}

static int add_merge(olmoe_tokenizer *t, size_t rank, const char *a, const char *b) {
    int32_t ia = vocab_id(t, a), ib = vocab_id(t, b);
    if (ia < 0) return FAIL("model.merges[%zu]: '%s' is not in the vocab", rank, a);
    if (ib < 0) return FAIL("model.merges[%zu]: '%s' is not in the vocab", rank, b);
    size_t la = strlen(a), lb = strlen(b);
    char *ab = xmalloc(la + lb + 1);
    memcpy(ab, a, la);
    memcpy(ab + la, b, lb + 1);
    int32_t id = tok_strmap_get(&t->vocab, ab, la + lb);
    free(ab);
    if (id < 0) return FAIL("model.merges[%zu]: '%s%s' is not in the vocab", rank, a, b);
    tok_pairmap_put(&t->merges, ia, ib, (uint32_t)rank, id);
    return 0;
}

static int load_merges(olmoe_tokenizer *t, json_t *merges) {
    if (!merges || json_is_null(merges)) merges = NULL;
    if (merges && !json_is_array(merges)) return FAIL("model.merges is not a list");
    size_t n = merges ? json_array_size(merges) : 0, rank = 0, i;
    tok_pairmap_init(&t->merges, n);
    if (!merges) return 0;
    json_t *m;
    json_array_foreach(merges, i, m) {
        if (json_is_string(m)) {
            /* "a b": exactly two parts split on ' ' (HF's legacy form) */
            const char *s = json_string_value(m);
            if (strncmp(s, "#version", 8) == 0) continue; /* HF skips these lines */
            const char *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return FAIL("model.merges[%zu]: '%s' is not two tokens separated by a space", i,
                            s);
            char *a = xmalloc((size_t)(sp - s) + 1);
            memcpy(a, s, (size_t)(sp - s));
            a[sp - s] = '\0';
            int r = add_merge(t, rank, a, sp + 1);
            free(a);
            if (r != 0) return -1;
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            if (add_merge(t, rank, json_string_value(json_array_get(m, 0)),
                          json_string_value(json_array_get(m, 1))) != 0)
                return -1;
        } else {
            return FAIL("model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", i);
        }
        rank++;
    }
    return 0;
}

static int load_model(olmoe_tokenizer *t, json_t *m) {
    if (!json_is_object(m)) return FAIL("no model object");
    const char *type = type_of(m);
    if (type && strcmp(type, "BPE") != 0)
        return FAIL("unsupported model type '%s' (supported: BPE)", type);
    if (!type && !json_object_get(m, "merges")) return FAIL("model has no type");
    json_t *v = json_object_get(m, "dropout");
    if (v && !json_is_null(v) && !(json_is_number(v) && json_number_value(v) == 0.0))
        return FAIL("model: BPE dropout is not supported (encodings would be random)");
    const char *affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        v = json_object_get(m, affixes[i]);
        if (v && !json_is_null(v) && !(json_is_string(v) && json_string_value(v)[0] == '\0'))
            return FAIL("model: %s is not supported", affixes[i]);
    }
    if (get_bool(m, "fuse_unk", 0, &t->fuse_unk, "model") != 0 ||
        get_bool(m, "byte_fallback", 0, &t->byte_fallback, "model") != 0 ||
        get_bool(m, "ignore_merges", 0, &t->ignore_merges, "model") != 0)
        return -1;
    if (load_vocab(t, json_object_get(m, "vocab")) != 0) return -1;
    if (load_merges(t, json_object_get(m, "merges")) != 0) return -1;
    t->unk_id = -1;
    v = json_object_get(m, "unk_token");
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) return FAIL("model.unk_token is not a string");
        t->unk_id = vocab_id(t, json_string_value(v));
        if (t->unk_id < 0)
            return FAIL("model.unk_token '%s' is not in the vocab", json_string_value(v));
    }
    return 0;
}

/* ---- added tokens ---- */

/* added_tokens[i] (o) appended to t->added, *max_added the largest id so
 * far; an empty content is skipped, as HF does */
static int add_one(olmoe_tokenizer *t, json_t *o, size_t i, int32_t *max_added) {
    char where[48];
    snprintf(where, sizeof where, "added_tokens[%zu]", i);
    json_t *c = json_object_get(o, "content"), *idv = json_object_get(o, "id");
    if (!json_is_object(o) || !json_is_string(c))
        return FAIL("%s has no string 'content'", where);
    if (!json_is_integer(idv) || json_integer_value(idv) < 0 ||
        json_integer_value(idv) >= TOK_MAX_ID)
        return FAIL("%s has no valid 'id'", where);
    tok_added a = {0};
    if (get_bool(o, "special", 0, &a.special, where) != 0 ||
        get_bool(o, "single_word", 0, &a.single_word, where) != 0 ||
        get_bool(o, "lstrip", 0, &a.lstrip, where) != 0 ||
        get_bool(o, "rstrip", 0, &a.rstrip, where) != 0 ||
        get_bool(o, "normalized", !a.special, &a.normalized, where) != 0)
        return -1;
    a.content_len = json_string_length(c);
    if (a.content_len == 0) return 0; /* HF ignores empty tokens */
    a.content = xmalloc(a.content_len + 1);
    memcpy(a.content, json_string_value(c), a.content_len + 1);
    if (tok_strmap_get(&t->added_map, a.content, a.content_len) >= 0) {
        free(a.content);
        return FAIL("%s: '%s' is added twice", where, json_string_value(c));
    }
    /* HF's id: the model's for a known content, else one past the
     * largest id handed out so far (or the vocab size, for the first) */
    int32_t id = tok_strmap_get(&t->vocab, a.content, a.content_len);
    if (id < 0) {
        int32_t vs = (int32_t)t->vocab_count;
        id = *max_added < 0 ? vs : (*max_added >= vs || vs == 0) ? *max_added + 1 : vs;
    }
    if (id != json_integer_value(idv)) {
        free(a.content);
        return FAIL("%s: '%s' has id %lld, but HF would give it id %d", where,
                    json_string_value(c), (long long)json_integer_value(idv), id);
    }
    a.id = id;
    if (id > *max_added) *max_added = id;
    tok_strmap_put(&t->added_map, a.content, a.content_len, id);
    t->added[t->n_added++] = a;
    return 0;
}

/* the id tables grown to hold max_added (ids of added tokens may lie past
 * the vocab), and added_of_id set to none */
static void grow_ids(olmoe_tokenizer *t, int32_t max_added) {
    int32_t cap = t->id_cap;
    if (max_added + 1 > cap) cap = max_added + 1;
    if (cap > t->id_cap) {
        t->vocab_str = xrealloc(t->vocab_str, ((size_t)cap + 1) * sizeof *t->vocab_str);
        t->vocab_len = xrealloc(t->vocab_len, ((size_t)cap + 1) * sizeof *t->vocab_len);
        for (int32_t k = t->id_cap; k <= cap; k++) t->vocab_str[k] = NULL, t->vocab_len[k] = 0;
        t->id_cap = cap;
    }
    t->added_of_id = xmalloc(((size_t)t->id_cap + 1) * sizeof *t->added_of_id);
    for (int32_t k = 0; k <= t->id_cap; k++) t->added_of_id[k] = -1;
}

/* HF's trie: special tokens first, then the others, in file order; a
 * normalized token is matched by its normalized form */
static int build_tries(olmoe_tokenizer *t) {
    for (int pass = 0; pass < 2; pass++) {
        for (size_t k = 0; k < t->n_added; k++) {
            tok_added *a = &t->added[k];
            if (a->special != (pass == 0)) continue;
            t->added_of_id[a->id] = (int32_t)k;
            a->pattern = a->content;
            a->pattern_len = a->content_len;
            if (a->normalized && t->spm)
                return FAIL("added token '%s' is normalized: not supported with a Metaspace-style "
                            "tokenizer",
                            a->content);
            if (a->normalized) {
                char *buf = NULL;
                size_t cap2 = 0, m;
                int r = tok_normalize_into(t, a->content, a->content_len, &buf, &cap2, &m);
                if (r < 0) {
                    free(buf);
                    return -1;
                }
                if (r == 1) a->pattern = buf, a->pattern_len = m;
                tok_trie_add(&t->trie_norm, a->pattern, a->pattern_len, (int32_t)k);
            } else {
                tok_trie_add(&t->trie_raw, a->pattern, a->pattern_len, (int32_t)k);
            }
        }
    }
    return 0;
}

static int load_added(olmoe_tokenizer *t, json_t *list) {
    tok_strmap_init(&t->added_map, 16);
    tok_trie_init(&t->trie_raw);
    tok_trie_init(&t->trie_norm);
    if (list && !json_is_null(list) && !json_is_array(list))
        return FAIL("added_tokens is not a list");
    t->added = xcalloc(json_array_size(list) + 1, sizeof *t->added); /* 0 for no list */
    int32_t max_added = -1;
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o)
        if (add_one(t, o, i, &max_added) != 0) return -1;
    grow_ids(t, max_added);
    return build_tries(t);
}

/* ---- the whole file ---- */

static int load(olmoe_tokenizer *t, json_t *root) {
    if (!json_is_object(root)) return FAIL("not a JSON object");
    json_t *v = json_object_get(root, "version");
    if (v && !(json_is_string(v) && strcmp(json_string_value(v), "1.0") == 0))
        return FAIL("unknown tokenizer.json version (expected \"1.0\")");
    if (add_normalizer(t, json_object_get(root, "normalizer")) != 0) return -1;
    if (load_pre_tokenizer(t, json_object_get(root, "pre_tokenizer")) != 0) return -1;
    if (load_decoder(t, json_object_get(root, "decoder")) != 0) return -1;
    if (load_post_processor(json_object_get(root, "post_processor")) != 0) return -1;
    if (load_model(t, json_object_get(root, "model")) != 0) return -1;
    if (load_added(t, json_object_get(root, "added_tokens")) != 0) return -1;

    tok_bytes_to_unicode(t->byte_char);
    for (int i = 0; i < 324; i++) t->char_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        char s[4];
        int k = tok_utf8_put(t->byte_char[b], s);
        t->byte_id[b] = tok_strmap_get(&t->vocab, s, (size_t)k);
        t->char_byte[t->byte_char[b]] = (int16_t)b;
    }
    tok_cache_init(&t->cache);
    return 0;
}

int olmoe_tokenizer_open_json(const char *json, size_t len, const char *name,
                              olmoe_tokenizer **out) {
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return olmoe_errorf("%s: invalid JSON at line %d column %d: %s", name, jerr.line,
                            jerr.column, jerr.text);
    olmoe_tokenizer *t = xcalloc(1, sizeof *t);
    t->name = xstrdup(name);
    t->unk_id = -1;
    olmoe_hash_bytes(json, len, &t->checksum);
    int r = load(t, root);
    json_decref(root);
    if (r != 0) {
        olmoe_error_prefix("%s", name);
        olmoe_tokenizer_close(t);
        return -1;
    }
    *out = t;
    return 0;
}

int olmoe_tokenizer_open(const char *path, olmoe_tokenizer **out) {
    char *data;
    size_t len;
    *out = NULL;
    if (olmoe_read_file(path, &data, &len) != 0) return -1;
    int r = olmoe_tokenizer_open_json(data, len, path, out);
    free(data);
    return r;
}

void olmoe_tokenizer_close(olmoe_tokenizer *t) {
    if (!t) return;
    free(t->name);
    tok_strmap_free(&t->vocab);
    if (t->vocab_str)
        for (int32_t i = 0; i <= t->id_cap; i++) free(t->vocab_str[i]);
    free(t->vocab_str);
    free(t->vocab_len);
    tok_pairmap_free(&t->merges);
    for (size_t i = 0; i < t->n_added; i++) {
        if (t->added[i].pattern != t->added[i].content) free(t->added[i].pattern);
        free(t->added[i].content);
    }
    free(t->added);
    tok_strmap_free(&t->added_map);
    free(t->added_of_id);
    tok_trie_free(&t->trie_raw);
    tok_trie_free(&t->trie_norm);
    if (t->md) pcre2_match_data_free(t->md);
    if (t->re) pcre2_code_free(t->re);
    tok_cache_free(&t->cache);
    free(t->buf);
    free(t->buf2);
    tok_bpe_free_scratch(t);
    free(t);
}
