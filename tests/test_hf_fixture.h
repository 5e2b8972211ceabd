/* test_hf_fixture.h: the HuggingFace fixtures of tests/fixtures/<model>/
 * (reference.h5, written by tests/fixtures/make_fixtures.py) as the CPU and
 * GPU tests read them: the list of fixture directories, and one fixture's
 * tokens, documents, windows and recorded top-k values. */
#ifndef OLMOE_TEST_HF_FIXTURE_H
#define OLMOE_TEST_HF_FIXTURE_H

#include <dirent.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "traces.h"

/* the whole dataset at path (dies on error); *rows its first dimension */
static inline void *hf_read_all(hid_t h, const char *path, olmoe_h5_kind kind, int64_t *rows) {
    void *p;
    int rank;
    int64_t dims[OLMOE_H5_MAX_RANK];
    if (olmoe_h5_read_alloc(h, path, kind, &p, &rank, dims) != 0) die("%s", olmoe_error());
    if (rows) *rows = dims[0];
    return p;
}

static inline int hf_cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* the names (sorted, xstrdup'd) of root's directories that hold a
 * reference.h5 and that keep(dir, name) accepts (every one when keep is
 * NULL), at most max; -1 when root cannot be opened */
static inline int hf_fixture_names(const char *root, int (*keep)(const char *dir, const char *name),
                                   char **names, int max) {
    DIR *d = opendir(root);
    if (!d) return -1;
    int nn = 0;
    for (struct dirent *de; (de = readdir(d)) && nn < max;) {
        if (de->d_name[0] == '.') continue;
        char *dir = olmoe_path_join(root, de->d_name), *ref = olmoe_path_join(dir, "reference.h5");
        if (olmoe_file_exists(ref) && (!keep || keep(dir, de->d_name))) names[nn++] = xstrdup(de->d_name);
        free(dir), free(ref);
    }
    closedir(d);
    qsort(names, nn, sizeof *names, hf_cmp_name);
    return nn;
}

typedef struct {
    char *dir, *name;
    hid_t h5;
    int64_t N, ctx;
    int32_t *tokens;  /* [N] */
    int64_t *docs;    /* [D, 2] */
    int64_t n_docs;
    int64_t *windows; /* [W, 3] */
    int64_t n_windows;
    int topks[16], n_topks;
} hf_fixture;

static inline int hf_fixture_open(hf_fixture *f, const char *dir, const char *name) {
    memset(f, 0, sizeof *f);
    f->dir = xstrdup(dir);
    f->name = xstrdup(name);
    char *p = olmoe_path_join(dir, "reference.h5");
    f->h5 = olmoe_h5_open(p, 0);
    free(p);
    if (f->h5 < 0) return -1;
    f->tokens = hf_read_all(f->h5, "tokens", OLMOE_H5_I32, &f->N);
    f->docs = hf_read_all(f->h5, "documents", OLMOE_H5_I64, &f->n_docs);
    f->windows = hf_read_all(f->h5, "windows", OLMOE_H5_I64, &f->n_windows);
    if (olmoe_h5_get_attr_i64(f->h5, ".", "ctx", &f->ctx) != 0) return -1;
    /* the list of top-k is an array attribute, which the traces helpers do not read */
    hid_t a = H5Aopen(f->h5, "topks", H5P_DEFAULT);
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (n < 1 || n > 16 || H5Aread(a, H5T_NATIVE_INT, f->topks) < 0) return olmoe_errorf("%s: bad topks", name);
    f->n_topks = (int)n;
    H5Sclose(sp);
    H5Aclose(a);
    return 0;
}

static inline void hf_fixture_close(hf_fixture *f) {
    if (f->h5 >= 0) olmoe_h5_close(f->h5);
    free(f->tokens), free(f->docs), free(f->windows), free(f->dir), free(f->name);
}

/* HF's greedy generate recorded in reference.h5 /generate: the prompt [np],
 * the whole sequence [nw] (prompt, then the new tokens), at top-k k */
typedef struct {
    int32_t *prompt, *output;
    int64_t np, nw, k;
} hf_generation;

/* prompt_i and output_i of h (prompt and output when i < 0); k is not read */
static inline void hf_generation_at(hid_t h, int i, hf_generation *g) {
    char name[48];
    snprintf(name, sizeof name, i < 0 ? "generate/prompt" : "generate/prompt_%d", i);
    g->prompt = hf_read_all(h, name, OLMOE_H5_I32, &g->np);
    snprintf(name, sizeof name, i < 0 ? "generate/output" : "generate/output_%d", i);
    g->output = hf_read_all(h, name, OLMOE_H5_I32, &g->nw);
    g->k = 0;
}

/* a tiny fixture's generation, at its recorded top-k */
static inline void hf_generation_read(const char *dir, hf_generation *g) {
    char *ref = olmoe_path_join(dir, "reference.h5");
    hid_t h = olmoe_h5_open(ref, 0);
    free(ref);
    if (h < 0) die("%s", olmoe_error());
    hf_generation_at(h, -1, g);
    if (olmoe_h5_get_attr_i64(h, "generate", "top_k", &g->k) != 0) die("%s", olmoe_error());
    olmoe_h5_close(h);
}

static inline void hf_generation_free(hf_generation *g) { free(g->prompt), free(g->output); }

/* the bundled model, whose reference.h5 holds HF's generation from these
 * three text prompts (generate/prompt_i, output_i) */
#define HF_BROWN "models/olmoe-brown"
static const char *const hf_brown_prompts[3] = {"The jury said that", "In the evening, the old man",
                                                "Scientists have found"};

#endif
