/* bench_tokenizer.c: tokenizer throughput (MB/s of input text, tokens/s) on
 * one core. Not part of the build or the tests; build it after `make`:
 *
 *   cc -std=c17 -D_GNU_SOURCE -O2 -Icommon -Icapture bench/bench_tokenizer.c \
 *      build/libcapture.a build/libcommon.a -ljansson -lpcre2-8 -lutf8proc -lxxhash -lm \
 *      -o build/bench_tokenizer
 *   build/bench_tokenizer models/olmoe-brown/tokenizer.json data/brown/train.jsonl
 *
 * FILE is plain text (one document) or, if its name ends in .jsonl, JSON
 * lines whose "text" fields are the documents. Each pass opens a fresh
 * tokenizer, so the first pass includes filling the word cache; the best of
 * the passes is reported too.
 */
#include "common.h"
#include "tokenizer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char **text; // [n]
    size_t *len; // [n]
    size_t n, bytes;
} docs;

static void load_docs(const char *path, docs *d) {
    char *data;
    size_t len;
    if (olmoe_read_file(path, &data, &len) != 0) die("%s", olmoe_error());
    memset(d, 0, sizeof *d);
    size_t pl = strlen(path);
    if (pl < 6 || strcmp(path + pl - 6, ".jsonl") != 0) {
        d->text = xmalloc(sizeof *d->text);
        d->len = xmalloc(sizeof *d->len);
        d->text[0] = data;
        d->len[0] = len;
        d->n = 1;
        d->bytes = len;
        return;
    }
    size_t cap = 64;
    d->text = xmalloc(cap * sizeof *d->text);
    d->len = xmalloc(cap * sizeof *d->len);
    for (char *line = data, *end; *line; line = end) {
        end = strchr(line, '\n');
        end = end ? end + 1 : line + strlen(line);
        json_error_t err;
        json_t *o = json_loadb(line, (size_t)(end - line), 0, &err);
        json_t *t = o ? json_object_get(o, "text") : NULL;
        if (!json_is_string(t)) {
            json_decref(o);
            continue;
        }
        if (d->n == cap) {
            cap *= 2;
            d->text = xrealloc(d->text, cap * sizeof *d->text);
            d->len = xrealloc(d->len, cap * sizeof *d->len);
        }
        d->len[d->n] = json_string_length(t);
        d->text[d->n] = xmalloc(d->len[d->n] + 1);
        memcpy(d->text[d->n], json_string_value(t), d->len[d->n] + 1);
        d->bytes += d->len[d->n++];
        json_decref(o);
    }
    free(data);
}

int main(int argc, char **argv) {
    olmoe_set_prog(argv[0]);
    if (argc < 3) die_usage("bench_tokenizer TOKENIZER.json FILE [PASSES]");
    long passes = 5;
    if (argc > 3 && olmoe_parse_long(argv[3], 1, 1000, &passes) != 0)
        die_usage("passes: %s", olmoe_error());
    docs d;
    load_docs(argv[2], &d);
    double best = 1e30;
    size_t tokens = 0;
    for (long p = 0; p < passes; p++) {
        olmoe_tokenizer *t;
        if (olmoe_tokenizer_open(argv[1], &t) != 0) die("%s", olmoe_error());
        olmoe_ids ids = {0};
        double t0 = olmoe_now();
        for (size_t i = 0; i < d.n; i++) {
            ids.n = 0;
            if (olmoe_tokenizer_encode(t, d.text[i], d.len[i], &ids) != 0)
                die("%s: document %zu: %s", argv[2], i, olmoe_error());
            if (p == 0) tokens += ids.n;
        }
        double dt = olmoe_now() - t0;
        if (dt < best) best = dt;
        printf("pass %ld: %.3f s  %.2f MB/s  %.0f tokens/s\n", p + 1, dt, d.bytes / dt / 1e6,
               tokens / dt);
        olmoe_ids_free(&ids);
        olmoe_tokenizer_close(t);
    }
    printf("%s: %zu documents, %.2f MB, %zu tokens (%.2f bytes/token); best %.2f MB/s, "
           "%.0f tokens/s\n",
           argv[2], d.n, d.bytes / 1e6, tokens, (double)d.bytes / (double)tokens,
           d.bytes / best / 1e6, tokens / best);
    for (size_t i = 0; i < d.n; i++) free(d.text[i]);
    free(d.text);
    free(d.len);
    return 0;
}
