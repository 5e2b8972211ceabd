/* test_data_jsonl.c: the committed test split data/brown-test.jsonl is valid
 * JSON lines {"doc", "genre", "text"} (parsed with jansson), holds exactly the
 * documents the split rule of data/README.md picks, and its text looks like
 * converted prose (no tags, no `` '' quotes, no space before punctuation).
 *
 * The expected documents come from the Brown Corpus Manual, not from our
 * output: genre letters A..R and their sizes; cats.txt numbers each genre's
 * documents 01, 02, ... in order, so "i % 10 == 9" (i from 0) means a
 * document number that is a multiple of 10.
 */
#include "check.h"

#include <jansson.h>
#include <stdbool.h>

#define DATA_FILE "data/brown-test.jsonl"

static const struct {
    char letter;
    const char *genre;
    int n_docs; // documents of the genre in the whole corpus
} genres[] = {
    {'a', "news", 44},        {'b', "editorial", 27},     {'c', "reviews", 17},
    {'d', "religion", 17},    {'e', "hobbies", 36},       {'f', "lore", 48},
    {'g', "belles_lettres", 75}, {'h', "government", 30}, {'j', "learned", 80},
    {'k', "fiction", 29},     {'l', "mystery", 24},       {'m', "science_fiction", 6},
    {'n', "adventure", 29},   {'p', "romance", 29},       {'r', "humor", 9},
};
#define N_GENRES (int)(sizeof genres / sizeof genres[0])

static int genre_of_letter(char c) {
    for (int g = 0; g < N_GENRES; g++)
        if (genres[g].letter == c) return g;
    return -1;
}

/* the first place text breaks a rule of the conversion, or NULL */
static const char *text_problem(const char *s) {
    size_t n = strlen(s);
    if (n == 0) return "empty text";
    if (s[0] == ' ' || s[0] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\n')
        return "leading or trailing white space";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80 || (c < 0x20 && c != '\n')) return "byte outside printable ASCII";
        if (c == '\n' && s[i + 1] != '\n' && (i == 0 || s[i - 1] != '\n'))
            return "newline that is not a paragraph break"; // paragraphs: "\n\n"
        if (c == ' ' && strchr(" ,.;:?!)", s[i + 1])) return "space before punctuation";
        if (c == '(' && s[i + 1] == ' ') return "space after (";
    }
    if (strstr(s, "\n\n\n")) return "empty paragraph";
    if (strstr(s, "``") || strstr(s, "''")) return "`` or '' left";
    static const char *tags[] = {"/nn ", "/at ", "/np ", "/jj ", "/vbd ", "/nns ", "/in ", "/."};
    for (size_t t = 0; t < sizeof tags / sizeof tags[0]; t++)
        if (strstr(s, tags[t])) return "a POS tag left";
    return NULL;
}

static void test_committed_split(void) {
    FILE *f = fopen(DATA_FILE, "r");
    CHECK(f != NULL, "cannot open %s", DATA_FILE);
    if (!f) return;
    int per_genre[N_GENRES] = {0};
    char prev_doc[8] = "";
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, bytes = 0, paragraphs = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        bytes += len;
        CHECK(line[len - 1] == '\n', "line %ld does not end in a newline", lineno);
        json_error_t err;
        json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &err);
        CHECK(o != NULL, "line %ld: %s", lineno, o ? "" : err.text);
        if (!o) continue;
        CHECK(json_is_object(o) && json_object_size(o) == 3, "line %ld: not a 3-key object",
              lineno);
        const char *doc = json_string_value(json_object_get(o, "doc"));
        const char *genre = json_string_value(json_object_get(o, "genre"));
        const char *text = json_string_value(json_object_get(o, "text"));
        CHECK(doc && genre && text, "line %ld: doc, genre, text not all strings", lineno);
        if (doc && genre && text) {
            int g = strlen(doc) == 4 && doc[0] == 'c' ? genre_of_letter(doc[1]) : -1;
            int num = (g >= 0 && doc[2] >= '0' && doc[2] <= '9' && doc[3] >= '0' && doc[3] <= '9')
                          ? (doc[2] - '0') * 10 + (doc[3] - '0')
                          : -1;
            CHECK(g >= 0 && num >= 1, "line %ld: doc '%s' is not a Brown document", lineno, doc);
            if (g >= 0 && num >= 1) {
                CHECK(strcmp(genre, genres[g].genre) == 0, "%s: genre '%s', want '%s'", doc,
                      genre, genres[g].genre);
                CHECK(num % 10 == 0 && num <= genres[g].n_docs,
                      "%s is not a test document (i %% 10 == 9)", doc);
                per_genre[g]++;
            }
            CHECK(strcmp(prev_doc, doc) < 0, "%s after %s: not in cats.txt order", doc, prev_doc);
            snprintf(prev_doc, sizeof prev_doc, "%s", doc);
            const char *why = text_problem(text);
            CHECK(why == NULL, "%s: %s", doc, why);
            for (const char *p = text; (p = strstr(p, "\n\n")); p += 2) paragraphs++;
            paragraphs++;
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    int total = 0;
    for (int g = 0; g < N_GENRES; g++) {
        CHECK(per_genre[g] == genres[g].n_docs / 10, "%s: %d test documents, want %d",
              genres[g].genre, per_genre[g], genres[g].n_docs / 10);
        total += per_genre[g];
    }
    CHECK(lineno == 41 && total == 41, "%ld lines, %d documents, want 41", lineno, total);
    CHECK(bytes > 300000 && bytes < 800000, "%ld bytes, want a few hundred KB", bytes);
    CHECK(paragraphs > 41, "%ld paragraphs: paragraphs were not kept", paragraphs);
}

int main(void) {
    RUN(test_committed_split);
    return check_summary();
}
