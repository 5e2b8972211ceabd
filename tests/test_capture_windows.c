/* test_capture_windows.c: windowing of token streams (capture/windows.c) and
 * the --tokens text reader. The stride windows are checked against a direct
 * transcription of transformers' "perplexity of fixed-length models" loop
 * (which tokens each window labels), not against our own formula. */
#include "check.h"
#include "windows.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test_capture_tiny.h"

/* every position stored exactly once, windows in order, each stored range
 * inside its window; returns the number of problems */
static int check_tiling(const olmoe_window *w, int64_t nw, int64_t N, const char *what) {
    int bad = 0;
    int64_t next = 0;
    for (int64_t i = 0; i < nw; i++) {
        int64_t lo = w[i].start + w[i].stored_from, hi = olmoe_windows_stored_end(w, nw, i);
        if (lo != next || hi <= lo || w[i].stored_from < 0 || hi > w[i].start + w[i].length) {
            CHECK(0, "%s: window %lld [%lld,+%lld) sf %lld stores [%lld,%lld), expected from %lld", what,
                  (long long)i, (long long)w[i].start, (long long)w[i].length,
                  (long long)w[i].stored_from, (long long)lo, (long long)hi, (long long)next);
            bad++;
        }
        next = hi;
    }
    if (next != N) {
        CHECK(next == N, "%s: stored ranges end at %lld, stream has %lld", what, (long long)next, (long long)N);
        bad++;
    }
    return bad;
}

static void test_documents(void) {
    /* lengths around ctx, including empty documents */
    const int64_t lens[] = {5, 0, 1, 4, 3, 8, 9, 0, 2, 12};
    int nd = (int)(sizeof lens / sizeof *lens);
    int64_t start[16], N = 0;
    for (int d = 0; d < nd; d++) start[d] = N, N += lens[d];
    for (int64_t ctx = 1; ctx <= 13; ctx++) {
        olmoe_window *w;
        int64_t nw;
        CHECK(olmoe_windows_documents(start, lens, nd, ctx, &w, &nw) == 0, "%s", olmoe_error());
        char what[32];
        snprintf(what, sizeof what, "ctx %lld", (long long)ctx);
        check_tiling(w, nw, N, what);
        /* windows never cross a document; each is as long as allowed; count matches */
        int64_t want = 0;
        for (int d = 0; d < nd; d++) want += (lens[d] + ctx - 1) / ctx;
        CHECK(nw == want, "ctx %lld: %lld windows, want %lld", (long long)ctx, (long long)nw, (long long)want);
        for (int64_t i = 0; i < nw; i++) {
            int d = -1;
            for (int j = 0; j < nd; j++)
                if (lens[j] > 0 && w[i].start >= start[j] && w[i].start < start[j] + lens[j]) d = j;
            if (d < 0) {
                CHECK(d >= 0, "ctx %lld: window %lld starts outside every document", (long long)ctx, (long long)i);
                continue;
            }
            CHECK(w[i].start + w[i].length <= start[d] + lens[d], "ctx %lld: window %lld crosses document %d",
                  (long long)ctx, (long long)i, d);
            CHECK(w[i].length >= 1 && w[i].length <= ctx && w[i].stored_from == 0, "window %lld", (long long)i);
            int64_t rel = w[i].start - start[d];
            CHECK(rel % ctx == 0, "window %lld starts at %lld into its document", (long long)i, (long long)rel);
        }
        free(w);
    }
    olmoe_window *w;
    int64_t nw;
    CHECK(olmoe_windows_documents(start, lens, nd, 0, &w, &nw) != 0, "ctx 0 accepted");
    int64_t bad_start[2] = {0, 3}, bad_len[2] = {5, 2};
    CHECK(olmoe_windows_documents(bad_start, bad_len, 2, 4, &w, &nw) != 0, "overlapping documents accepted");
}

/* transformers' loop, transcribed: which window labels (scores) each token */
static void hf_labels(int64_t N, int64_t ctx, int64_t stride, int64_t *scorer /*[N]*/, int64_t *nwin) {
    for (int64_t i = 0; i < N; i++) scorer[i] = -1;
    int64_t prev_end = 0, w = 0;
    for (int64_t begin = 0; begin < N; begin += stride) {
        int64_t end = begin + ctx < N ? begin + ctx : N;
        int64_t trg_len = end - prev_end;
        /* labels are the last trg_len tokens; the first token of a window has no prediction */
        for (int64_t t = end - trg_len; t < end; t++)
            if (t > begin) scorer[t] = w;
        prev_end = end;
        w++;
        if (end == N) break;
    }
    *nwin = w;
}

static void test_stride(void) {
    int cases = 0;
    for (int64_t N = 0; N <= 40; N++)
        for (int64_t ctx = 2; ctx <= 11; ctx++)
            for (int64_t S = 1; S < ctx; S++) {
                olmoe_window *w;
                int64_t nw;
                if (olmoe_windows_stride(N, ctx, S, &w, &nw) != 0) {
                    CHECK(0, "N %lld ctx %lld S %lld: %s", (long long)N, (long long)ctx, (long long)S, olmoe_error());
                    continue;
                }
                char what[64];
                snprintf(what, sizeof what, "N %lld ctx %lld S %lld", (long long)N, (long long)ctx, (long long)S);
                int bad = check_tiling(w, nw, N, what);
                int64_t *scorer = xmalloc((size_t)(N + 1) * sizeof *scorer), hw;
                hf_labels(N, ctx, S, scorer, &hw);
                CHECK(nw == hw, "%s: %lld windows, transformers has %lld", what, (long long)nw, (long long)hw);
                for (int64_t i = 0; i < nw && !bad; i++) {
                    CHECK(w[i].start == i * S && w[i].length == (i * S + ctx < N ? ctx : N - i * S),
                          "%s: window %lld", what, (long long)i);
                    /* the window storing position p must be the one transformers scores token p+1 in */
                    for (int64_t p = w[i].start + w[i].stored_from; p < olmoe_windows_stored_end(w, nw, i); p++) {
                        if (p + 1 < N) {
                            CHECK(scorer[p + 1] == i, "%s: position %lld stored by window %lld, token %lld scored by %lld",
                                  what, (long long)p, (long long)i, (long long)(p + 1), (long long)scorer[p + 1]);
                            /* and that window actually has p and p+1 */
                            CHECK(p + 1 < w[i].start + w[i].length, "%s: position %lld is its window's last", what,
                                  (long long)p);
                        } else {
                            CHECK(i == nw - 1, "%s: the stream's last position is not in the last window", what);
                        }
                    }
                }
                /* every token after the first is scored exactly once (by exactly one window) */
                for (int64_t t = 1; t < N; t++)
                    CHECK(scorer[t] >= 0, "%s: transformers leaves token %lld unscored", what, (long long)t);
                free(scorer);
                free(w);
                cases++;
            }
    CHECK(cases > 1000, "only %d cases", cases);
    olmoe_window *w;
    int64_t nw;
    CHECK(olmoe_windows_stride(10, 4, 4, &w, &nw) != 0, "stride == ctx accepted");
    CHECK(olmoe_windows_stride(10, 4, 0, &w, &nw) != 0, "stride 0 accepted");
}

static char *scratch;

static int read_ids(const char *text, int vocab, olmoe_token_stream *ts) {
    char *p = olmoe_path_join(scratch, "tokens.txt");
    tt_write_text(p, text);
    int rc = olmoe_token_ids_read(p, vocab, ts);
    free(p);
    return rc;
}

static void test_token_text(void) {
    olmoe_token_stream ts;
    CHECK(read_ids("1 2 3\n\n  \t\n4\t5\r\n6", 10, &ts) == 0, "%s", olmoe_error());
    CHECK(ts.n_tokens == 6 && ts.n_docs == 3, "%lld tokens %lld docs", (long long)ts.n_tokens, (long long)ts.n_docs);
    if (ts.n_docs == 3) {
        CHECK(ts.doc_start[0] == 0 && ts.doc_length[0] == 3, "doc 0");
        CHECK(ts.doc_start[1] == 3 && ts.doc_length[1] == 2, "doc 1");
        CHECK(ts.doc_start[2] == 5 && ts.doc_length[2] == 1, "doc 2");
        CHECK(ts.doc_group[0] == -1, "group");
    }
    for (int i = 0; i < 6 && i < ts.n_tokens; i++) CHECK(ts.tokens[i] == i + 1, "token %d is %d", i, ts.tokens[i]);
    olmoe_token_stream_free(&ts);

    struct {
        const char *text, *msg;
    } bad[] = {
        {"1 2\n3 x4\n", "tokens.txt:2: 'x4' is not a token id"},
        {"1 2\n3 10\n", "tokens.txt:2: token id 10 is not below vocab_size 10"},
        {"-1\n", "tokens.txt:1: '-1' is not a token id"},
        {"1.5\n", "'1.5' is not a token id"},
        {"99999999999999999999999\n", "is not a token id"},
        {"\n \n", "no token ids"},
        {"", "no token ids"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = read_ids(bad[i].text, 10, &ts);
        CHECK(rc != 0 && strstr(olmoe_error(), bad[i].msg), "input %zu: rc %d, message '%s', want '%s'", i, rc,
              rc ? olmoe_error() : "", bad[i].msg);
    }
    char *missing = olmoe_path_join(scratch, "nope.txt");
    CHECK(olmoe_token_ids_read(missing, 10, &ts) != 0 && strstr(olmoe_error(), "nope.txt"), "missing file: %s",
          olmoe_error());
    free(missing);
}

int main(void) {
    scratch = tt_tmpdir();
    RUN(test_documents);
    RUN(test_stride);
    RUN(test_token_text);
    tt_rmdir(scratch);
    free(scratch);
    return check_summary();
}
