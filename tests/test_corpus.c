/* test_corpus.c: corpus readers (capture/corpus.h): the three formats,
 * groups, EOS after every document, --max-tokens, and their errors, with a
 * hand-made tokenizer whose vocab is the expected pre-tokens (so expected ids
 * are written by hand); then the Brown test split through the bundled
 * model's tokenizer against the token stream HF built for the same split
 * (models/olmoe-brown/reference.h5, written by models/eval_brown.py).
 */
#include "corpus.h"
#include "test_tokenizer_util.h"

#include <hdf5.h>
#include <jansson.h>
#include <hdf5_hl.h>
#include <stdlib.h>
#include <unistd.h>

static char tmpdir[512];

static const char *write_tmp(const char *name, const char *data, size_t n) {
    static char path[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/%s", tmpdir, name);
    FILE *f = fopen(path[k], "wb");
    fwrite(data, 1, n, f);
    fclose(f);
    return path[k];
}

/* pieces: a=0 b=1 Ġb=2 yy=3 z=4 x=5 Ċ=6 ĊĊ... ; EOS is an added special token */
static int32_t A, B, GB, YY, Z, X, NL, C, EOS;
static olmoe_tokenizer *make_tok(void) {
    tb b = tb_new();
    b.ignore_merges = 1;
    A = tb_vocab(&b, "a"), B = tb_vocab(&b, "b"), GB = tb_vocab(&b, "Ġb");
    YY = tb_vocab(&b, "yy"), Z = tb_vocab(&b, "z"), X = tb_vocab(&b, "x");
    NL = tb_vocab(&b, "Ċ"), C = tb_vocab(&b, "c");
    EOS = tb_added(&b, "<|endoftext|>", 1, 0, 0, 0, 0);
    return tb_open(&b);
}

static int stream_is(const olmoe_token_stream *s, const int32_t *want, size_t n) {
    int ok = (size_t)s->n_tokens == n && memcmp(s->tokens, want, n * sizeof *want) == 0;
    if (!ok) {
        fprintf(stderr, "  stream [");
        for (int64_t i = 0; i < s->n_tokens; i++) fprintf(stderr, " %d", s->tokens[i]);
        fprintf(stderr, " ] want [");
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, " ]\n");
    }
    return ok;
}

static int docs_are(const olmoe_token_stream *s, const int64_t (*d)[3], int64_t n) {
    if (s->n_docs != n) return 0;
    for (int64_t i = 0; i < n; i++)
        if (s->doc_start[i] != d[i][0] || s->doc_length[i] != d[i][1] ||
            s->doc_group[i] != d[i][2])
            return 0;
    return 1;
}

static void test_formats(void) {
    olmoe_tokenizer *t = make_tok();
    if (!t) return;
    olmoe_token_stream s;
    olmoe_corpus_opts o = {.format = OLMOE_CORPUS_TEXT, .eos_id = EOS};

    /* text: the whole file, newlines included, is one document */
    const char *p = write_tmp("t.txt", "a b\n\nc", 6);
    CHECK(olmoe_corpus_read(p, t, &o, &s) == 0, "%s", olmoe_error());
    int32_t w1[] = {A, GB, NL, NL, C, EOS};
    int64_t d1[][3] = {{0, 6, -1}};
    CHECK(stream_is(&s, w1, 6) && docs_are(&s, d1, 1), "text");
    CHECK(s.n_groups == 0, "no groups");
    olmoe_token_stream_free(&s);

    /* lines: line ends dropped ("\r\n" too), blank lines skipped */
    p = write_tmp("l.txt", "x\n\n \t\nyy\r\na b\nz", 16);
    o.format = OLMOE_CORPUS_LINES;
    CHECK(olmoe_corpus_read(p, t, &o, &s) == 0, "%s", olmoe_error());
    int32_t w2[] = {X, EOS, YY, EOS, A, GB, EOS, Z, EOS};
    int64_t d2[][3] = {{0, 2, -1}, {2, 2, -1}, {4, 3, -1}, {7, 2, -1}};
    CHECK(stream_is(&s, w2, 9) && docs_are(&s, d2, 4), "lines");
    olmoe_token_stream_free(&s);

    /* jsonl with groups, numbered as they first appear; empty text skipped */
    const char *j = "{\"text\": \"a\", \"genre\": \"news\"}\n"
                    "\n"
                    "{\"genre\": \"fiction\", \"text\": \"yy\", \"doc\": 7}\n"
                    "{\"text\": \"\", \"genre\": \"lore\"}\n"
                    "{\"text\": \"x\\nz\", \"genre\": \"news\"}\n";
    p = write_tmp("j.jsonl", j, strlen(j));
    o = (olmoe_corpus_opts){.format = OLMOE_CORPUS_JSONL, .group_field = "genre", .eos_id = EOS};
    CHECK(olmoe_corpus_read(p, t, &o, &s) == 0, "%s", olmoe_error());
    int32_t w3[] = {A, EOS, YY, EOS, X, NL, Z, EOS};
    int64_t d3[][3] = {{0, 2, 0}, {2, 2, 1}, {4, 4, 0}};
    CHECK(stream_is(&s, w3, 8) && docs_are(&s, d3, 3), "jsonl");
    CHECK(s.n_groups == 3 && !strcmp(s.groups[0], "news") && !strcmp(s.groups[1], "fiction") &&
              !strcmp(s.groups[2], "lore"),
          "groups: %d", s.n_groups);
    olmoe_token_stream_free(&s);

    /* another field, no groups */
    j = "{\"body\": \"z\"}\n{\"body\": \"a b\"}\n";
    p = write_tmp("k.jsonl", j, strlen(j));
    o = (olmoe_corpus_opts){.format = OLMOE_CORPUS_JSONL, .field = "body", .eos_id = EOS};
    CHECK(olmoe_corpus_read(p, t, &o, &s) == 0, "%s", olmoe_error());
    int32_t w4[] = {Z, EOS, A, GB, EOS};
    int64_t d4[][3] = {{0, 2, -1}, {2, 3, -1}};
    CHECK(stream_is(&s, w4, 5) && docs_are(&s, d4, 2), "field");
    olmoe_token_stream_free(&s);
    olmoe_tokenizer_close(t);
}

static void test_max_tokens(void) {
    olmoe_tokenizer *t = make_tok();
    if (!t) return;
    olmoe_token_stream s;
    /* the third line is never read: its bad UTF-8 does not matter */
    const char *p = write_tmp("m.txt", "a b\nyy\n\xFF\n", 10);
    olmoe_corpus_opts o = {.format = OLMOE_CORPUS_LINES, .eos_id = EOS, .max_tokens = 4};
    CHECK(olmoe_corpus_read(p, t, &o, &s) == 0, "%s", olmoe_error());
    int32_t w1[] = {A, GB, EOS, YY};
    int64_t d1[][3] = {{0, 3, -1}, {3, 1, -1}};
    CHECK(stream_is(&s, w1, 4) && docs_are(&s, d1, 2), "cut inside a document");
    olmoe_token_stream_free(&s);
    o.max_tokens = 3; /* exactly at a document's end */
    CHECK(olmoe_corpus_read(p, t, &o, &s) == 0, "%s", olmoe_error());
    int64_t d2[][3] = {{0, 3, -1}};
    CHECK(stream_is(&s, w1, 3) && docs_are(&s, d2, 1), "cut at a boundary");
    olmoe_token_stream_free(&s);
    o = (olmoe_corpus_opts){.format = OLMOE_CORPUS_TEXT, .eos_id = EOS, .max_tokens = 2};
    p = write_tmp("m2.txt", "a b\n\nc", 6);
    CHECK(olmoe_corpus_read(p, t, &o, &s) == 0, "%s", olmoe_error());
    CHECK(stream_is(&s, w1, 2), "text cut");
    olmoe_token_stream_free(&s);
    olmoe_tokenizer_close(t);
}

static void expect_error(olmoe_tokenizer *t, const char *name, const char *data, size_t n,
                         olmoe_corpus_opts o, const char *want) {
    const char *p = data ? write_tmp(name, data, n) : name;
    olmoe_token_stream s;
    int rc = olmoe_corpus_read(p, t, &o, &s);
    char full[700];
    snprintf(full, sizeof full, "%s%s", data ? p : "", want);
    CHECK(rc == -1 && strstr(olmoe_error(), full) && s.n_tokens == 0 && s.tokens == NULL,
          "want '%s', got '%s'", full, rc ? olmoe_error() : "success");
    if (rc == 0) olmoe_token_stream_free(&s);
}

static void test_errors(void) {
    olmoe_tokenizer *t = make_tok();
    if (!t) return;
    olmoe_corpus_opts lines = {.format = OLMOE_CORPUS_LINES, .eos_id = EOS};
    olmoe_corpus_opts text = {.format = OLMOE_CORPUS_TEXT, .eos_id = EOS};
    olmoe_corpus_opts jl = {.format = OLMOE_CORPUS_JSONL, .eos_id = EOS};
    olmoe_corpus_opts jg = {.format = OLMOE_CORPUS_JSONL, .group_field = "g", .eos_id = EOS};
    /* the offset is the file's: line 2 starts at byte 4 */
    expect_error(t, "u.txt", "a b\nyy\xC3(\n", 8, lines, ":2: invalid UTF-8 at byte 6");
    expect_error(t, "u2.txt", "a b\nyy\xC3(\n", 8, text, ": invalid UTF-8 at byte 6");
    /* read in pieces: the offset is still the file's */
    olmoe_corpus_opts small = text;
    small.piece_bytes = 4;
    expect_error(t, "u3.txt", "a b a b a b a\xC3(b", 15, small, ": invalid UTF-8 at byte 13");
    expect_error(t, "e.txt", "\n \n", 3, lines, ": no text");
    expect_error(t, "e2.txt", "", 0, text, ": no text");
    /* jsonl: each input fails at its line */
    const struct {
        const char *name, *text;
        const olmoe_corpus_opts *o;
        const char *want;
    } js[] = {
        {"j1.jsonl", "{\"text\": \"a\"}\n{\"text\": \"a\",}\n", &jl, ":2: invalid JSON: "},
        {"j2.jsonl", "{\"text\": \"a\"}\n\n{\"txt\": \"a\"}\n", &jl, ":3: no field 'text'"},
        {"j3.jsonl", "{\"text\": 5}\n", &jl, ":1: field 'text' is not a string"},
        {"j4.jsonl", "[\"text\"]\n", &jl, ":1: not a JSON object"},
        {"j5.jsonl", "{\"text\": \"a\", \"g\": \"x\"}\n{\"text\": \"a\"}\n", &jg, ":2: no field 'g'"},
        {"j6.jsonl", "{\"text\": \"a\", \"g\": null}\n", &jg, ":1: field 'g' is not a string"},
        {"j7.jsonl", "{\"text\": \"a\xFF\"}\n", &jl, ":1: invalid UTF-8 at byte 11"},
        {"j8.jsonl", "{\"text\": \"a\"} {}\n", &jl, ":1: invalid JSON: "},
    };
    for (size_t i = 0; i < sizeof js / sizeof js[0]; i++)
        expect_error(t, js[i].name, js[i].text, strlen(js[i].text), *js[i].o, js[i].want);
    olmoe_corpus_opts lg = lines;
    lg.group_field = "g";
    expect_error(t, "g.txt", "a\n", 2, lg, ": groups need the jsonl format");
    olmoe_corpus_opts bad_eos = lines;
    bad_eos.eos_id = 999;
    expect_error(t, "b.txt", "a\n", 2, bad_eos, ": EOS id 999 is not a token");
    expect_error(t, "/nonexistent/c.txt", NULL, 0, lines, "/nonexistent/c.txt: No such file");
    expect_error(t, "/nonexistent/c.txt", NULL, 0, text, "/nonexistent/c.txt: No such file");
    olmoe_corpus_format f;
    CHECK(olmoe_corpus_parse_format("jsonl", &f) == 0 && f == OLMOE_CORPUS_JSONL, "jsonl");
    CHECK(olmoe_corpus_parse_format("csv", &f) == -1 && strstr(olmoe_error(), "'csv'"), "csv");
    olmoe_tokenizer_close(t);
}

/* The text format reads and tokenizes a piece at a time: the Brown test
 * split as one text, its documents joined by <|endoftext|> (an added token,
 * cut out before pre-tokenization, so HF's ids are each document's ids and
 * EOS), read in pieces small enough to be cut thousands of times (and cut
 * inside multi-byte characters), gives HF's stream exactly; with
 * max_tokens it stops reading long before the end of the file. */
static void test_text_pieces_vs_hf(const int *want, int64_t n_want) {
    FILE *f = fopen("data/brown-test.jsonl", "rb");
    CHECK(f != NULL, "data/brown-test.jsonl");
    if (!f) return;
    size_t cap = 1 << 20, len = 0;
    char *all = malloc(cap), *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    while ((got = getline(&line, &lcap, f)) > 0) {
        json_t *o = json_loadb(line, (size_t)got, 0, NULL), *t = o ? json_object_get(o, "text") : NULL;
        size_t n = t ? json_string_length(t) : 0;
        if (n) {
            while (len + n + 16 > cap) all = realloc(all, cap *= 2);
            if (len) memcpy(all + len, "<|endoftext|>", 13), len += 13;
            memcpy(all + len, json_string_value(t), n);
            len += n;
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    const char *p = write_tmp("brown.txt", all, len);
    free(all);
    olmoe_tokenizer *tok;
    CHECK(olmoe_tokenizer_open("models/olmoe-brown/tokenizer.json", &tok) == 0, "%s", olmoe_error());
    if (!tok) return;
    static const size_t pieces[] = {0, 4096, 1000, 37};
    for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
        olmoe_corpus_opts o = {.format = OLMOE_CORPUS_TEXT, .eos_id = 0, .piece_bytes = pieces[k]};
        olmoe_token_stream s;
        CHECK(olmoe_corpus_read(p, tok, &o, &s) == 0, "%s", olmoe_error());
        int64_t diff = -1;
        for (int64_t i = 0; i < s.n_tokens && i < n_want && diff < 0; i++)
            if (s.tokens[i] != want[i]) diff = i;
        CHECK(s.n_tokens == n_want && diff < 0 && s.n_docs == 1,
              "pieces of %zu: %lld tokens, HF %lld; first difference at %lld", pieces[k],
              (long long)s.n_tokens, (long long)n_want, (long long)diff);
        CHECK(s.input_bytes == (int64_t)len, "all %zu bytes consumed, not %lld", len,
              (long long)s.input_bytes);
        olmoe_token_stream_free(&s);
        o.max_tokens = 1000;
        CHECK(olmoe_corpus_read(p, tok, &o, &s) == 0, "%s", olmoe_error());
        CHECK(s.n_tokens == 1000 && memcmp(s.tokens, want, 1000 * sizeof *want) == 0,
              "pieces of %zu, max_tokens 1000: HF's first 1000", pieces[k]);
        CHECK(s.input_bytes < (int64_t)len / 4 || pieces[k] == 0,
              "pieces of %zu: stops reading at max_tokens (%lld of %zu bytes)", pieces[k],
              (long long)s.input_bytes, len);
        olmoe_token_stream_free(&s);
    }
    olmoe_tokenizer_close(tok);
}

/* HF's stream of the Brown test split (each document's HF tokens, then
 * <|endoftext|>) against ours from the committed data/brown-test.jsonl */
static void test_brown_vs_hf(void) {
    const char *dir = "models/olmoe-brown";
    hid_t f = H5Fopen("models/olmoe-brown/reference.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0, "cannot open %s/reference.h5", dir);
    if (f < 0) return;
    hsize_t n = 0;
    H5T_class_t cls;
    size_t sz;
    CHECK(H5LTget_dataset_info(f, "/test_tokens", &n, &cls, &sz) >= 0, "no /test_tokens");
    int *want = malloc((n + 1) * sizeof *want);
    CHECK(H5LTread_dataset_int(f, "/test_tokens", want) >= 0, "read /test_tokens");
    H5Fclose(f);

    olmoe_corpus_input in = {.path = "data/brown-test.jsonl", .format = "jsonl",
                             .group_field = "genre", .tokenizer = "models/olmoe-brown/tokenizer.json",
                             .vocab_size = 4103, .eos_id = -1};
    olmoe_token_stream s;
    olmoe_hash h;
    CHECK(olmoe_corpus_input_read(&in, &s, &h) == 0, "%s", olmoe_error());
    if (s.tokens) {
        int64_t first_diff = -1;
        for (int64_t i = 0; i < s.n_tokens && i < (int64_t)n && first_diff < 0; i++)
            if (s.tokens[i] != want[i]) first_diff = i;
        CHECK((hsize_t)s.n_tokens == n && first_diff < 0,
              "%lld tokens, HF %llu; first difference at %lld", (long long)s.n_tokens,
              (unsigned long long)n, (long long)first_diff);
        int eos_ok = 1, tiled = 1;
        for (int64_t d = 0; d < s.n_docs; d++) {
            eos_ok &= s.tokens[s.doc_start[d] + s.doc_length[d] - 1] == 0;
            tiled &= s.doc_start[d] == (d ? s.doc_start[d - 1] + s.doc_length[d - 1] : 0);
        }
        CHECK(eos_ok && tiled && s.doc_start[s.n_docs - 1] + s.doc_length[s.n_docs - 1] == s.n_tokens,
              "documents end with EOS and tile the stream");
        CHECK(s.n_docs >= 30 && s.n_groups >= 10 && s.n_groups <= 15, "%lld docs, %d groups",
              (long long)s.n_docs, s.n_groups);
        CHECK(strlen(h.hex) == 32, "checksum");
        fprintf(stderr, "  brown test split: %lld tokens, %lld documents, %d genres\n",
                (long long)s.n_tokens, (long long)s.n_docs, s.n_groups);
        olmoe_token_stream_free(&s);
        test_text_pieces_vs_hf(want, (int64_t)n);
    }
    free(want);
    /* the model's checks */
    in.vocab_size = 4000;
    CHECK(olmoe_corpus_input_read(&in, &s, NULL) == -1 &&
              strstr(olmoe_error(), "token ids reach 4102, the model's vocab_size is 4000"),
          "%s", olmoe_error());
    in.vocab_size = 4103;
    in.format = "xml";
    CHECK(olmoe_corpus_input_read(&in, &s, NULL) == -1 && strstr(olmoe_error(), "'xml'"), "%s",
          olmoe_error());
}

int main(void) {
    const char *td = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_corpus.XXXXXX", td ? td : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_formats);
    RUN(test_max_tokens);
    RUN(test_errors);
    RUN(test_brown_vs_hf);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir);
    return check_summary();
}
