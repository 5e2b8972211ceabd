/* token_ids.c: the --tokens input: token ids as decimal text, one document
 * per line. Strict on purpose: anything that is not a decimal id below the
 * vocabulary is an error naming file:line, since a silently skipped word
 * would shift every position after it. */
#include "windows.h"

#include "common.h"

#include <stdlib.h>
#include <string.h>

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

int olmoe_token_ids_read(const char *path, int vocab_size, olmoe_token_stream *out) {
    memset(out, 0, sizeof *out);
    char *text;
    size_t len;
    if (olmoe_read_file(path, &text, &len) != 0) return -1;
    olmoe_hash sum;
    olmoe_hash_bytes(text, len, &sum);
    if (memchr(text, '\0', len)) {
        free(text);
        return olmoe_errorf("%s: holds a NUL byte; expected token ids as text", path);
    }
    size_t cap_t = 1024, cap_d = 64;
    out->tokens = xmalloc(cap_t * sizeof *out->tokens);
    out->doc_start = xmalloc(cap_d * sizeof *out->doc_start);
    out->doc_length = xmalloc(cap_d * sizeof *out->doc_length);
    long line = 0;
    int rc = 0;
    for (char *p = text; *p && rc == 0;) {
        char *eol = strchr(p, '\n');
        if (eol) *eol = '\0';
        line++;
        int64_t start = out->n_tokens;
        for (char *q = p; *q && rc == 0;) {
            while (is_space(*q)) q++;
            if (!*q) break;
            char *w = q;
            while (*q && !is_space(*q)) q++;
            char save = *q;
            *q = '\0';
            long id;
            if (w[0] < '0' || w[0] > '9' || olmoe_parse_long(w, 0, 1L << 40, &id) != 0)
                rc = olmoe_errorf("%s:%ld: '%.40s' is not a token id", path, line, w);
            else if (id >= vocab_size)
                rc = olmoe_errorf("%s:%ld: token id %ld is not below vocab_size %d", path, line, id,
                                  vocab_size);
            *q = save;
            if (rc) break;
            if ((size_t)out->n_tokens == cap_t) {
                cap_t *= 2;
                out->tokens = xrealloc(out->tokens, xmul(cap_t, sizeof *out->tokens));
            }
            out->tokens[out->n_tokens++] = (int32_t)id;
        }
        if (rc == 0 && out->n_tokens > start) {
            if ((size_t)out->n_docs == cap_d) {
                cap_d *= 2;
                out->doc_start = xrealloc(out->doc_start, xmul(cap_d, sizeof *out->doc_start));
                out->doc_length = xrealloc(out->doc_length, xmul(cap_d, sizeof *out->doc_length));
            }
            out->doc_start[out->n_docs] = start;
            out->doc_length[out->n_docs++] = out->n_tokens - start;
        }
        if (!eol) break;
        p = eol + 1;
    }
    free(text);
    if (rc == 0 && out->n_tokens == 0) rc = olmoe_errorf("%s: no token ids", path);
    if (rc != 0) {
        olmoe_token_stream_free(out);
        return -1;
    }
    out->input_sum = sum;
    out->input_bytes = (int64_t)len;
    out->doc_group = xmalloc(xmul((size_t)out->n_docs, sizeof *out->doc_group));
    for (int64_t d = 0; d < out->n_docs; d++) out->doc_group[d] = -1;
    return 0;
}

void olmoe_token_stream_free(olmoe_token_stream *s) {
    free(s->tokens);
    free(s->doc_start);
    free(s->doc_length);
    free(s->doc_group);
    for (int i = 0; i < s->n_groups; i++) free(s->groups[i]);
    free(s->groups);
    memset(s, 0, sizeof *s);
}
