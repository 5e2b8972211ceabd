/* fuzz_token_ids.c: the --tokens input of olmoe-capture (token ids as text,
 * one document per line) through olmoe_token_ids_read. Byte 0 sets the
 * vocabulary size (1 + 37 x byte), the rest is the file. The whole result is
 * predicted here from the format's definition (windows.h): words split on
 * spaces, tabs, CR, VT and FF; a word must be decimal digits naming an id
 * below the vocabulary; lines with ids are documents; a NUL byte or no id at
 * all is an error. Errors must name the file (and line). */
#include "fuzz.h"
#include "windows.h"

static int token_ids_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

/* 0 and the stream, or -1 when the file must be refused */
static int token_ids_predict(const uint8_t *f, size_t n, int64_t vocab, int32_t *tok, int64_t *ntok,
                             int64_t *doc_len, int64_t *ndoc) {
    *ntok = *ndoc = 0;
    if (memchr(f, '\0', n)) return -1;
    size_t i = 0;
    while (i <= n) {
        int64_t start = *ntok;
        while (i < n && f[i] != '\n') {
            while (i < n && token_ids_space(f[i])) i++;
            if (i == n || f[i] == '\n') break;
            uint64_t v = 0;
            int digits = 1;
            for (; i < n && f[i] != '\n' && !token_ids_space(f[i]); i++) {
                if (f[i] < '0' || f[i] > '9') digits = 0;
                else if (v < (1ull << 41)) v = v * 10 + (uint64_t)(f[i] - '0');
            }
            if (!digits || v >= (uint64_t)vocab) return -1;
            tok[(*ntok)++] = (int32_t)v;
        }
        if (*ntok > start) doc_len[(*ndoc)++] = *ntok - start;
        i++; /* past the '\n' (or the end) */
    }
    return *ntok ? 0 : -1;
}

FUZZ_TARGET(token_ids) {
    if (size < 1) return 0;
    int64_t vocab = 1 + 37 * (int64_t)data[0];
    const uint8_t *f = data + 1;
    size_t n = size - 1;
    static char path[300];
    if (!path[0]) fuzz_path(path, sizeof path, "tokens.txt");
    fuzz_write_file(path, f, n);

    int32_t *tok = malloc((n / 2 + 1) * sizeof *tok);
    int64_t *dl = malloc((n / 2 + 1) * sizeof *dl);
    if (!tok || !dl) abort();
    int64_t nt, nd;
    int want = token_ids_predict(f, n, vocab, tok, &nt, dl, &nd);

    olmoe_token_stream s;
    int r = olmoe_token_ids_read(path, (int)vocab, &s);
    FUZZ_ASSERT(r == want, "read %s, the format says %s (%s)", r ? "failed" : "succeeded",
                want ? "refuse" : "accept", r ? olmoe_error() : "");
    if (r != 0) {
        FUZZ_ERROR_NAMES(path);
    } else {
        FUZZ_ASSERT(s.n_tokens == nt && memcmp(s.tokens, tok, (size_t)nt * sizeof *tok) == 0,
                    "tokens differ (%lld vs %lld)", (long long)s.n_tokens, (long long)nt);
        FUZZ_ASSERT(s.n_docs == nd, "%lld documents, expected %lld", (long long)s.n_docs, (long long)nd);
        int64_t at = 0;
        for (int64_t d = 0; d < nd; d++) {
            FUZZ_ASSERT(s.doc_start[d] == at && s.doc_length[d] == dl[d] && s.doc_group[d] == -1,
                        "document %lld", (long long)d);
            at += dl[d];
        }
        olmoe_token_stream_free(&s);
    }
    free(tok);
    free(dl);
    return 0;
}
