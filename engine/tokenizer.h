/* tokenizer.h (part of engine.h: include engine.h):
 * HuggingFace BPE tokenizers (tokenizer.json): byte-level (the
 * GPT-NeoX / OLMoE and Qwen kinds) and SentencePiece style (Mixtral, Llama),
 * encoding and decoding exactly as `tokenizers` does.
 *
 *   olmoe_tokenizer *tok;
 *   if (olmoe_tokenizer_open("models/olmoe-brown/tokenizer.json", &tok) != 0)
 *       die("%s", olmoe_error());
 *   olmoe_ids ids = {0};
 *   if (olmoe_tokenizer_encode(tok, text, strlen(text), &ids) != 0)  // appends
 *       die("corpus.txt: %s", olmoe_error());   // "invalid UTF-8 at byte 1234"
 *   char *back; size_t n;
 *   olmoe_tokenizer_decode(tok, ids.v, ids.n, 0, &back, &n);
 *   free(back); olmoe_ids_free(&ids); olmoe_tokenizer_close(tok);
 *
 * What is supported (anything else is refused at open, naming the part):
 *   normalizer     null, NFC, NFD, NFKC, NFKD, or a Sequence of those (utf8proc);
 *                  Prepend("▁") and Replace(" " -> "▁") after them (SentencePiece
 *                  style, then with no pre_tokenizer)
 *   pre_tokenizer  ByteLevel (add_prefix_space, use_regex with the GPT-2 split
 *                  regex, run by PCRE2); Sequence [Split(Regex, Isolated),
 *                  ByteLevel(use_regex false)] (Qwen2: the file's regex);
 *                  Metaspace("▁", prepend_scheme first/always/never, split)
 *   model          BPE: vocab, merges as "a b" strings or [a, b] pairs,
 *                  unk_token/fuse_unk, byte_fallback, ignore_merges; no dropout,
 *                  no continuing_subword_prefix / end_of_word_suffix
 *   decoder        ByteLevel; Sequence [Replace("▁" -> " "), ByteFallback, Fuse,
 *                  Strip(" ", 1, 0)] with the SentencePiece style
 *   post_processor null, ByteLevel, TemplateProcessing, Sequence: read but not
 *                  applied: encode is HF's encode(text, add_special_tokens=False);
 *                  documents get their EOS from capture/corpus.h
 *   added_tokens   special or not, single_word/lstrip/rstrip/normalized as HF
 *   truncation, padding: ignored (encode never truncates or pads)
 * Input must be valid UTF-8 (HF takes Rust strings, so it never sees invalid
 * UTF-8): encode refuses anything else, naming the byte offset.
 * Character classes and normalization come from PCRE2's and utf8proc's Unicode
 * tables (Unicode 14 and 13 with Debian 12's libraries); HF's are newer, so
 * characters assigned since may be split or normalized differently.
 *
 * A tokenizer keeps a cache of encoded words, so one olmoe_tokenizer must not
 * be used by two threads at once.
 */
#ifndef OLMOE_TOKENIZER_H
#define OLMOE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

/* a growable array of token ids; zero-initialise, then encode appends */
typedef struct {
    int32_t *v; // [n], capacity cap
    size_t n, cap;
} olmoe_ids;
void olmoe_ids_push(olmoe_ids *a, int32_t id);
void olmoe_ids_free(olmoe_ids *a);

typedef struct olmoe_tokenizer olmoe_tokenizer;

/* Reads and validates a tokenizer.json. -1 with a message naming the file. */
int olmoe_tokenizer_open(const char *path, olmoe_tokenizer **out);
/* Same from memory; name is used in messages (and the checksum is of json). */
int olmoe_tokenizer_open_json(const char *json, size_t len, const char *name,
                              olmoe_tokenizer **out);
void olmoe_tokenizer_close(olmoe_tokenizer *t);

/* Appends the ids of text[0..len) to out. -1 on invalid UTF-8 ("invalid UTF-8
 * at byte N", N counted from text), out then holds what it held before. */
int olmoe_tokenizer_encode(olmoe_tokenizer *t, const char *text, size_t len, olmoe_ids *out);

/* offset of the first byte of text that is not UTF-8 (Rust's rules: no
 * surrogates, overlongs or code points past U+10FFFF), len if it all is */
size_t olmoe_tokenizer_utf8_check(const char *text, size_t len);

/* HF's decode(ids, skip_special_tokens): ids unknown to the tokenizer are
 * skipped as HF does; bytes that are not UTF-8 become U+FFFD as Rust's
 * String::from_utf8_lossy does. *text is NUL-terminated; the caller frees it. */
int olmoe_tokenizer_decode(const olmoe_tokenizer *t, const int32_t *ids, size_t n,
                           int skip_special, char **text, size_t *len);

/* -1 when absent */
int32_t olmoe_tokenizer_token_to_id(const olmoe_tokenizer *t, const char *token);
/* NULL when the id is not a token; the string belongs to the tokenizer */
const char *olmoe_tokenizer_id_to_token(const olmoe_tokenizer *t, int32_t id);
/* 1 + the largest id (of the vocab and the added tokens) */
int32_t olmoe_tokenizer_vocab_size(const olmoe_tokenizer *t);
/* the id of "<|endoftext|>", else -1 (the model's config may name another) */
int32_t olmoe_tokenizer_eos_id(const olmoe_tokenizer *t);
/* 1 if id is a special added token */
int olmoe_tokenizer_is_special(const olmoe_tokenizer *t, int32_t id);
/* XXH3-128 of the tokenizer.json bytes, hex */
const char *olmoe_tokenizer_checksum(const olmoe_tokenizer *t);
/* the path or name it was opened from */
const char *olmoe_tokenizer_name(const olmoe_tokenizer *t);

#endif
