/* corpus.h (part of capture.h: include capture.h):
 * raw-text corpora -> the token stream a capture runs over
 * (olmoe_token_stream of windows.h): each document's tokens followed by EOS,
 * documents and their groups recorded.
 *
 *   olmoe_corpus_opts o = {.format = OLMOE_CORPUS_JSONL, .field = "text",
 *                          .group_field = "genre", .eos_id = 0};
 *   olmoe_token_stream ts;
 *   if (olmoe_corpus_read("data/brown-test.jsonl", tok, &o, &ts) != 0)
 *       die("%s", olmoe_error());   // "data/x.jsonl:7: field 'text' is not a string"
 *   ...
 *   olmoe_token_stream_free(&ts);
 *
 * Formats:
 *   text   the whole file is one document, read and tokenized a piece
 *          at a time (cut only where the tokens cannot change);
 *   lines  one document per line, without its line end ("\n" or "\r\n");
 *          blank lines (nothing but spaces and tabs) are skipped;
 *   jsonl  one JSON object per line (blank lines skipped), the document is
 *          the string field `field`; with `group_field`, the string there
 *          names the document's group (groups numbered in order of first
 *          appearance).
 * lines and jsonl are read a line at a time: memory is the stream (4 bytes a
 * token) plus the longest line (text: the longest run without a cut). A
 * document whose text is empty is skipped.
 * A document's length counts its EOS, so documents tile the stream. With
 * max_tokens, the stream stops at that many tokens (the last document cut
 * short, without its EOS) and the rest of the file is not read. The
 * stream records the checksum and count of the bytes it was made of.
 * Text must be valid UTF-8: "corpus.txt: invalid UTF-8 at byte 1234" (the
 * offset in the file; lines and jsonl also name the line).
 */
#ifndef OLMOE_CORPUS_H
#define OLMOE_CORPUS_H

#include <stdint.h>

#include "common.h"
#include "engine.h"
#include "windows.h"

typedef enum {
    OLMOE_CORPUS_TEXT,
    OLMOE_CORPUS_LINES,
    OLMOE_CORPUS_JSONL,
    OLMOE_CORPUS_FORMAT_COUNT
} olmoe_corpus_format;

/* "text", "lines", "jsonl" */
int olmoe_corpus_parse_format(const char *s, olmoe_corpus_format *out);

typedef struct {
    olmoe_corpus_format format;
    const char *field;       /* jsonl: the text field (NULL: "text") */
    const char *group_field; /* jsonl: the group field, or NULL for none */
    int32_t eos_id;          /* appended after every document */
    int64_t max_tokens;      /* 0: no limit */
    size_t piece_bytes;      /* text: read this much at a time (0: 1 MiB) */
} olmoe_corpus_opts;

int olmoe_corpus_read(const char *path, olmoe_tokenizer *tok, const olmoe_corpus_opts *o,
                      olmoe_token_stream *out);

/* What olmoe-capture --input does with a model: the tokenizer file, EOS from
 * the config (eos_id >= 0) or else the tokenizer's <|endoftext|>, every id
 * checked against the model's vocab_size; the tokenizer's checksum for the
 * trace's provenance. */
typedef struct {
    const char *path;        /* the corpus */
    const char *format;      /* NULL: "text" */
    const char *field;       /* NULL: "text" */
    const char *group_field; /* NULL: none */
    int64_t max_tokens;      /* 0: all */
    const char *tokenizer;   /* tokenizer.json */
    int vocab_size;          /* the model's */
    long eos_id;             /* the config's eos_token_id, -1 when it has none */
} olmoe_corpus_input;

int olmoe_corpus_input_read(const olmoe_corpus_input *in, olmoe_token_stream *out,
                            olmoe_hash *tokenizer_checksum);

#endif
