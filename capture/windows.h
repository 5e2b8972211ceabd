/* windows.h (part of capture.h: include capture.h):
 * the token stream a capture runs over and how it is cut into
 * evaluation windows (docs/DESIGN.md §9; the /windows triples: man/olmoe-trace.5).
 *
 *   olmoe_token_stream ts;
 *   if (olmoe_token_ids_read("tokens.txt", cfg.vocab_size, &ts) != 0) die("%s", olmoe_error());
 *   olmoe_window *w; int64_t nw;
 *   olmoe_windows_documents(ts.doc_start, ts.doc_length, ts.n_docs, 2048, &w, &nw);
 *   for (int64_t i = 0; i < nw; i++)   // positions [lo, hi) of the trace come from window i
 *       lo = w[i].start + w[i].stored_from, hi = olmoe_windows_stored_end(w, nw, i);
 *   free(w); olmoe_token_stream_free(&ts);
 *
 * A window scores the next token at each of its positions but the last. Per
 * document, windows never cross a document and each stores all its
 * positions. With a stride S < ctx over the whole stream (the HF "perplexity
 * of fixed-length models" method), windows start every S tokens and each
 * later one scores only its last S tokens (fewer at the end), so every token
 * after the stream's first is scored exactly once; a position is stored by the
 * window that scores its next token, which makes the last position of a
 * non-final window belong to the next window. Hence the stored range of
 * window i ends where window i+1's begins (start + length for the last
 * window and for every window in document mode).
 */
#ifndef OLMOE_WINDOWS_H
#define OLMOE_WINDOWS_H

#include <stdint.h>

#include "common.h"

typedef struct {
    int64_t start, length, stored_from;
} olmoe_window;

/* documents [doc_start[d], +doc_length[d]) in stream order, not overlapping;
 * empty ones get no window. *out is the caller's to free. */
int olmoe_windows_documents(const int64_t *doc_start /*[n_docs]*/, const int64_t *doc_length /*[n_docs]*/,
                            int64_t n_docs, int64_t ctx, olmoe_window **out, int64_t *n_out);
/* one stream of n_tokens, windows of ctx starting every stride (1 <= stride < ctx) */
int olmoe_windows_stride(int64_t n_tokens, int64_t ctx, int64_t stride, olmoe_window **out,
                         int64_t *n_out);
/* one past the last stream position window i stores */
int64_t olmoe_windows_stored_end(const olmoe_window *w, int64_t n, int64_t i);

/* ---- the token stream ---- */

typedef struct {
    int32_t *tokens;     /* [n_tokens] the documents concatenated */
    int64_t n_tokens;
    int64_t *doc_start;  /* [n_docs] */
    int64_t *doc_length; /* [n_docs] */
    int32_t *doc_group;  /* [n_docs] index into groups, -1 when none */
    int64_t n_docs;
    char **groups; /* [n_groups] */
    int n_groups;
    /* the input bytes the stream was made of (a prefix of the file when
     * --max-tokens stopped reading): what identifies a piped input */
    olmoe_hash input_sum;
    int64_t input_bytes;
} olmoe_token_stream;

/* token ids as text: whitespace-separated, one document per line, blank
 * lines skipped; ids must be below vocab_size. Errors name path:line. */
int olmoe_token_ids_read(const char *path, int vocab_size, olmoe_token_stream *out);
void olmoe_token_stream_free(olmoe_token_stream *s);

#endif
