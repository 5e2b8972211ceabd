/* test_tokenizer_bpe.c: the BPE model: merge order worked out by hand, a
 * plain O(n^2) BPE (lowest rank first, leftmost among equals) as the reference
 * on random vocabularies and words, very long words, unk / byte fallback /
 * ignore_merges, and decode(encode(x)) == x over a full byte vocabulary.
 */
#include "test_tokenizer_util.h"

#include <stdlib.h>

static uint64_t rng = 88172645463325252ULL;
static uint32_t rnd(uint32_t n) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static void test_merge_order(void) {
    {
        tb b = tb_new();
        int32_t h = tb_vocab(&b, "h"), e = tb_vocab(&b, "e"), l = tb_vocab(&b, "l");
        int32_t o = tb_vocab(&b, "o");
        tb_vocab(&b, "ll"), tb_vocab(&b, "he"), tb_vocab(&b, "hell");
        int32_t hello = tb_vocab(&b, "hello");
        tb_merge(&b, "l", "l");
        tb_merge(&b, "h", "e");
        tb_merge(&b, "he", "ll");
        tb_merge(&b, "hell", "o");
        olmoe_tokenizer *t = tb_open(&b);
        int32_t w1[] = {hello};
        CHECK(t && ids_equal(t, "hello", 5, w1, 1, "hello"), "hello");
        /* "helo": h+e merges; "he"+"l" is no merge */
        int32_t he = olmoe_tokenizer_token_to_id(t, "he");
        int32_t w2[] = {he, l, o};
        CHECK(t && ids_equal(t, "helo", 4, w2, 3, "helo"), "helo");
        int32_t w3[] = {o, h};
        CHECK(t && ids_equal(t, "oh", 2, w3, 2, "oh"), "oh %d", e);
        olmoe_tokenizer_close(t);
    }
    {   /* equal ranks go left to right */
        tb b = tb_new();
        int32_t a = tb_vocab(&b, "a"), aa = tb_vocab(&b, "aa");
        tb_merge(&b, "a", "a");
        olmoe_tokenizer *t = tb_open(&b);
        int32_t w1[] = {aa, a};
        CHECK(t && ids_equal(t, "aaa", 3, w1, 2, "aaa"), "aaa");
        int32_t w2[] = {aa, aa, a};
        CHECK(t && ids_equal(t, "aaaaa", 5, w2, 3, "aaaaa"), "aaaaa");
        olmoe_tokenizer_close(t);
    }
    for (int order = 0; order < 2; order++) {   /* the lower rank wins */
        tb b = tb_new();
        int32_t a = tb_vocab(&b, "a"), bb = tb_vocab(&b, "b"), c = tb_vocab(&b, "c");
        int32_t bc = tb_vocab(&b, "bc"), ab = tb_vocab(&b, "ab");
        if (order == 0) {
            tb_merge(&b, "b", "c");
            tb_merge(&b, "a", "b");
        } else {
            tb_merge(&b, "a", "b");
            tb_merge(&b, "b", "c");
        }
        olmoe_tokenizer *t = tb_open(&b);
        int32_t w0[] = {a, bc}, w1[] = {ab, c};
        CHECK(t && ids_equal(t, "abc", 3, order ? w1 : w0, 2, "rank"), "order %d %d", order, bb);
        olmoe_tokenizer_close(t);
    }
    {   /* merges written as "a b" strings read the same as pairs */
        const char *j =
            "{\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false},"
            "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"vocab\":"
            "{\"a\":0,\"b\":1,\"c\":2,\"bc\":3,\"ab\":4},\"merges\":[\"#version: 0.2\",\"b c\","
            "\"a b\"]}}";
        olmoe_tokenizer *t = NULL;
        CHECK(olmoe_tokenizer_open_json(j, strlen(j), "s.json", &t) == 0, "%s", olmoe_error());
        int32_t w[] = {0, 3};
        CHECK(t && ids_equal(t, "abc", 3, w, 2, "string merges"), "strings");
        olmoe_tokenizer_close(t);
    }
}

/* ---- a plain BPE to compare with ---- */

typedef struct {
    char **tok;   // [n] token strings of the random vocab
    int n;
    char **ml, **mr; // [m] merges
    int m;
} rvocab;

static int tok_index(const rvocab *v, const char *s, size_t len) {
    for (int i = 0; i < v->n; i++)
        if (strlen(v->tok[i]) == len && memcmp(v->tok[i], s, len) == 0) return i;
    return -1;
}

/* symbols as strings; each step merges the lowest-ranked adjacent pair,
 * leftmost among equals */
static size_t naive_bpe(const rvocab *v, const char *w, int32_t *out) {
    size_t n = strlen(w);
    char **sym = malloc(n * sizeof *sym);
    for (size_t i = 0; i < n; i++) {
        sym[i] = malloc(2);
        sym[i][0] = w[i];
        sym[i][1] = 0;
    }
    for (;;) {
        int best = -1;
        size_t at = 0;
        for (size_t i = 0; i + 1 < n; i++)
            for (int r = 0; r < v->m && (best < 0 || r < best); r++)
                if (!strcmp(sym[i], v->ml[r]) && !strcmp(sym[i + 1], v->mr[r])) best = r, at = i;
        if (best < 0) break;
        char *j = malloc(strlen(sym[at]) + strlen(sym[at + 1]) + 1);
        strcpy(j, sym[at]);
        strcat(j, sym[at + 1]);
        free(sym[at]);
        free(sym[at + 1]);
        sym[at] = j;
        memmove(sym + at + 1, sym + at + 2, (n - at - 2) * sizeof *sym);
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        out[i] = tok_index(v, sym[i], strlen(sym[i]));
        free(sym[i]);
    }
    free(sym);
    return n;
}

static void random_vocab(rvocab *v, tb *b, const char *alphabet, int n_merges) {
    v->tok = malloc((strlen(alphabet) + (size_t)n_merges) * sizeof *v->tok);
    v->ml = malloc((size_t)n_merges * sizeof *v->ml);
    v->mr = malloc((size_t)n_merges * sizeof *v->mr);
    v->n = v->m = 0;
    for (const char *c = alphabet; *c; c++) {
        char s[2] = {*c, 0};
        v->tok[v->n++] = strdup(s);
        tb_vocab(b, s);
    }
    for (int tries = 0; v->m < n_merges && tries < 100000; tries++) {
        /* favour short tokens so that merges chain like trained ones */
        int x = (int)rnd((uint32_t)(rnd(2) ? v->n : (v->n < 8 ? v->n : 8)));
        int y = (int)rnd((uint32_t)(rnd(2) ? v->n : (v->n < 8 ? v->n : 8)));
        size_t lx = strlen(v->tok[x]), ly = strlen(v->tok[y]);
        if (lx + ly > 12) continue;
        char *s = malloc(lx + ly + 1);
        strcpy(s, v->tok[x]);
        strcat(s, v->tok[y]);
        if (tok_index(v, s, lx + ly) >= 0) { /* each merge makes a new token */
            free(s);
            continue;
        }
        v->ml[v->m] = v->tok[x];
        v->mr[v->m] = v->tok[y];
        v->m++;
        tb_merge(b, v->tok[x], v->tok[y]);
        tb_vocab(b, s);
        v->tok[v->n++] = s;
    }
}

static void free_rvocab(rvocab *v) {
    for (int i = 0; i < v->n; i++) free(v->tok[i]);
    free(v->tok);
    free(v->ml);
    free(v->mr);
}

static void test_random_vs_plain(void) {
    for (int round = 0; round < 6; round++) {
        tb b = tb_new();
        rvocab v;
        random_vocab(&v, &b, round % 2 ? "ab" : "abcd", 20 + 40 * round);
        olmoe_tokenizer *t = tb_open(&b);
        CHECK(t != NULL, "open");
        if (!t) break;
        int bad = 0;
        for (int k = 0; k < 300 && bad < 3; k++) {
            /* words up to 300 letters: past the cache's 256, and some repeat */
            size_t n = 1 + rnd(k % 10 == 0 ? 300 : 30);
            char w[301];
            for (size_t i = 0; i < n; i++) w[i] = (round % 2 ? "ab" : "abcd")[rnd(round % 2 ? 2 : 4)];
            w[n] = 0;
            int32_t want[301];
            size_t nw = naive_bpe(&v, w, want);
            for (int rep = 0; rep < 2; rep++) /* the second time from the cache */
                if (!ids_equal(t, w, n, want, nw, w)) bad++;
        }
        CHECK(bad == 0, "round %d: %d words differ", round, bad);
        olmoe_tokenizer_close(t);
        free_rvocab(&v);
    }
}

static void test_long_word(void) {
    tb b = tb_new();
    rvocab v;
    random_vocab(&v, &b, "ab", 60);
    olmoe_tokenizer *t = tb_open(&b);
    if (!t) return;
    /* a few thousand letters against the plain BPE */
    size_t n = 3000;
    char *w = malloc(n + 1);
    for (size_t i = 0; i < n; i++) w[i] = "ab"[rnd(2)];
    w[n] = 0;
    int32_t *want = malloc(n * sizeof *want);
    size_t nw = naive_bpe(&v, w, want);
    CHECK(ids_equal(t, w, n, want, nw, "3000 letters"), "long word");
    free(want);
    free(w);
    /* two million letters in one pre-token: must not be quadratic */
    n = 2000000;
    w = malloc(n);
    for (size_t i = 0; i < n; i++) w[i] = "ab"[rnd(2)];
    olmoe_ids ids = {0};
    double t0 = olmoe_now();
    CHECK(olmoe_tokenizer_encode(t, w, n, &ids) == 0, "encode");
    double dt = olmoe_now() - t0;
    char *back;
    size_t blen;
    olmoe_tokenizer_decode(t, ids.v, ids.n, 0, &back, &blen);
    CHECK(blen == n && memcmp(back, w, n) == 0, "round trip of the long word");
    fprintf(stderr, "  2M-letter word: %zu tokens in %.2f s\n", ids.n, dt);
    free(back);
    free(w);
    olmoe_ids_free(&ids);
    olmoe_tokenizer_close(t);
    free_rvocab(&v);
}

static void test_unknown_bytes(void) {
    for (int mode = 0; mode < 4; mode++) {
        tb b = tb_new();
        int32_t a = tb_vocab(&b, "a"), unk = tb_vocab(&b, "<unk>");
        int32_t fb = tb_vocab(&b, "<0x62>"), c4 = tb_vocab(&b, "<0xC4>");
        int32_t a0 = tb_vocab(&b, "<0xA0>");
        if (mode == 1) b.unk = "<unk>";
        if (mode == 2) b.unk = "<unk>", b.fuse_unk = 1;
        if (mode == 3) b.byte_fallback = 1;
        olmoe_tokenizer *t = tb_open(&b);
        if (!t) continue;
        int32_t w0[] = {a, a}, w1[] = {a, unk, unk, a}, w2[] = {a, unk, a};
        int32_t w3[] = {a, fb, fb, a};
        const int32_t *want[] = {w0, w1, w2, w3};
        size_t nw[] = {2, 4, 3, 4};
        CHECK(ids_equal(t, "abba", 4, want[mode], nw[mode], "unknown bytes"), "mode %d", mode);
        if (mode == 3) { /* the space's byte-level character is U+0120, C4 A0 */
            int32_t w[] = {a, c4, a0, a};
            CHECK(ids_equal(t, "a a", 3, w, 4, "fallback of a space"), "fallback space");
        }
        olmoe_tokenizer_close(t);
    }
    {   /* ignore_merges: a whole word in the vocab wins over the merges */
        for (int ig = 0; ig < 2; ig++) {
            tb b = tb_new();
            int32_t a = tb_vocab(&b, "a"), bb = tb_vocab(&b, "b"), c = tb_vocab(&b, "c");
            int32_t abc = tb_vocab(&b, "abc");
            b.ignore_merges = ig;
            olmoe_tokenizer *t = tb_open(&b);
            int32_t w0[] = {a, bb, c}, w1[] = {abc};
            CHECK(t && ids_equal(t, "abc", 3, ig ? w1 : w0, ig ? 1 : 3, "ignore_merges"), "%d", ig);
            olmoe_tokenizer_close(t);
        }
    }
}

/* GPT-2's byte table written out as its Python definition reads */
static void gpt2_table(uint32_t cp[256]) {
    int in[256] = {0}, n = 0;
    for (int b = '!'; b <= '~'; b++) in[b] = 1;
    for (int b = 0xA1; b <= 0xAC; b++) in[b] = 1;
    for (int b = 0xAE; b <= 0xFF; b++) in[b] = 1;
    for (int b = 0; b < 256; b++) cp[b] = in[b] ? (uint32_t)b : (uint32_t)(256 + n++);
}

static void utf8(uint32_t c, char *o) {
    if (c < 0x80) {
        o[0] = (char)c, o[1] = 0;
    } else if (c < 0x800) {
        o[0] = (char)(0xC0 | (c >> 6)), o[1] = (char)(0x80 | (c & 63)), o[2] = 0;
    } else {
        o[0] = (char)(0xE0 | (c >> 12)), o[1] = (char)(0x80 | ((c >> 6) & 63));
        o[2] = (char)(0x80 | (c & 63)), o[3] = 0;
    }
}

static void test_roundtrip(void) {
    uint32_t cp[256];
    gpt2_table(cp);
    CHECK(cp[' '] == 0x120 && cp['\n'] == 0x10A && cp['\t'] == 0x109 && cp[0] == 0x100 &&
              cp[0xAD] == 0x143 && cp['a'] == 'a' && cp[0x7F] == 0x121,
          "the table's known values");
    tb b = tb_new();
    char s[8], s2[8], s3[16];
    for (int i = 0; i < 256; i++) utf8(cp[i], s), tb_vocab(&b, s);
    /* merges of common pairs: space+letter, letter+letter */
    const char *pairs[] = {"Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s", "a n",
                           "Ġ w", "Ġ Ġ", "ĠĠ ĠĠ", "Ċ Ċ", "ä ½", "ä½ ł"};
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        sscanf(pairs[i], "%7s %7s", s, s2);
        snprintf(s3, sizeof s3, "%s%s", s, s2);
        tb_vocab(&b, s3);
        tb_merge(&b, s, s2);
    }
    b.prefix = 0;
    olmoe_tokenizer *t = tb_open(&b);
    if (!t) return;
    const char *pool[] = {"the", " ", "  ", "\n", "\t", "in", "ear", "\u00E9", "\u4F60",
                          "\u597D", "\U0001F600", "123", "'s", "!", "\r\n", "\u0301",
                          "\u3000", "x", "<|endoftext|>", "\x7F", "\x01"};
    int bad = 0;
    for (int k = 0; k < 500; k++) {
        char text[512];
        size_t n = 0;
        int parts = 1 + (int)rnd(40);
        for (int p = 0; p < parts; p++) {
            const char *x = pool[rnd(sizeof pool / sizeof *pool)];
            size_t l = strlen(x);
            if (n + l >= sizeof text) break;
            memcpy(text + n, x, l);
            n += l;
        }
        olmoe_ids ids = {0};
        if (olmoe_tokenizer_encode(t, text, n, &ids) != 0) bad++;
        char *back;
        size_t blen;
        olmoe_tokenizer_decode(t, ids.v, ids.n, 0, &back, &blen);
        if (blen != n || memcmp(back, text, n) != 0) bad++;
        free(back);
        olmoe_ids_free(&ids);
    }
    CHECK(bad == 0, "%d texts did not come back", bad);
    olmoe_tokenizer_close(t);
}

int main(void) {
    RUN(test_merge_order);
    RUN(test_random_vs_plain);
    RUN(test_long_word);
    RUN(test_unknown_bytes);
    RUN(test_roundtrip);
    return check_summary();
}
