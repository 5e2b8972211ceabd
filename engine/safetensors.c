/* safetensors.c: mmap and validate safetensors files (format: 8-byte
 * little-endian header length, a JSON header {name: {dtype, shape,
 * data_offsets}}, then the data area the offsets are relative to).
 * Nothing in a header is trusted: lengths, offsets, shapes and dtypes are all
 * checked before any pointer into the mapping is handed out. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* the reference implementation refuses larger headers too */
#define HEADER_MAX (100u << 20)
#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

const char *olmoe_st_dtype_name(olmoe_st_dtype t) {
    static const char *names[OLMOE_ST_DTYPE_COUNT] = {"F32", "BF16", "F16"};
    return (unsigned)t < OLMOE_ST_DTYPE_COUNT ? names[t] : "?";
}

size_t olmoe_st_dtype_size(olmoe_st_dtype t) { return t == OLMOE_ST_F32 ? 4 : 2; }

static int parse_dtype(const char *s, olmoe_st_dtype *out) {
    for (int t = 0; t < OLMOE_ST_DTYPE_COUNT; t++)
        if (strcmp(s, olmoe_st_dtype_name(t)) == 0) {
            *out = t;
            return 0;
        }
    return -1;
}

static olmoe_checkpoint *ckpt_new(const char *label) {
    olmoe_checkpoint *ck = xcalloc(1, sizeof *ck);
    ck->label = xstrdup(label);
    return ck;
}

void olmoe_ckpt_close(olmoe_checkpoint *ck) {
    if (!ck) return;
    for (int i = 0; i < ck->n_files; i++) {
        if (ck->files[i].map) munmap((void *)ck->files[i].map, ck->files[i].size);
        free(ck->files[i].path);
        free(ck->files[i].label);
    }
    for (int i = 0; i < ck->n_tensors; i++) free(ck->tensors[i].name);
    free(ck->files);
    free(ck->tensors);
    free(ck->label);
    free(ck);
}

typedef struct {
    uint64_t begin, end;
    int idx;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int get_u64(json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

/* one header entry into ck->tensors (data checked against the data area) */
static int parse_entry(olmoe_checkpoint *ck, int fi, const char *name, json_t *info,
                       const unsigned char *data, uint64_t data_size) {
    const char *lab = ck->files[fi].label;
    if (!json_is_object(info)) return olmoe_errorf("%s: header entry '%s' is not an object", lab, name);
    json_t *dt = json_object_get(info, "dtype"), *sh = json_object_get(info, "shape"),
           *off = json_object_get(info, "data_offsets");
    if (!json_is_string(dt)) return olmoe_errorf("%s: tensor '%s' has no dtype string", lab, name);
    olmoe_st_dtype dtype;
    if (parse_dtype(json_string_value(dt), &dtype) != 0)
        return olmoe_errorf("%s: tensor '%s' has dtype %s; only F32, BF16 and F16 are supported", lab,
                            name, json_string_value(dt));
    if (!json_is_array(sh)) return olmoe_errorf("%s: tensor '%s' has no shape array", lab, name);
    size_t ndim = json_array_size(sh);
    if (ndim > OLMOE_MAX_DIMS)
        return olmoe_errorf("%s: tensor '%s' has %zu dimensions (at most %d)", lab, name, ndim,
                            OLMOE_MAX_DIMS);
    olmoe_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dtype;
    t.ndim = (int)ndim;
    /* the product is checked against the byte length, so bound it first */
    unsigned __int128 count = 1;
    for (size_t d = 0; d < ndim; d++) {
        uint64_t x;
        if (get_u64(json_array_get(sh, d), &x) != 0 || x > (1ull << 48))
            return olmoe_errorf("%s: tensor '%s' has a bad shape entry %zu", lab, name, d);
        t.shape[d] = (int64_t)x;
        count *= x;
        if (count > ((unsigned __int128)1 << 62)) count = (unsigned __int128)1 << 62;
    }
    uint64_t b, e;
    if (!json_is_array(off) || json_array_size(off) != 2 || get_u64(json_array_get(off, 0), &b) != 0 ||
        get_u64(json_array_get(off, 1), &e) != 0)
        return olmoe_errorf("%s: tensor '%s' needs data_offsets [begin, end]", lab, name);
    if (b > e || e > data_size)
        return olmoe_errorf("%s: tensor '%s' has data_offsets [%llu, %llu] outside the data area "
                            "(%llu bytes)",
                            lab, name, (unsigned long long)b, (unsigned long long)e,
                            (unsigned long long)data_size);
    unsigned __int128 want = count * olmoe_st_dtype_size(dtype);
    if (want != (unsigned __int128)(e - b))
        return olmoe_errorf("%s: tensor '%s' holds %llu bytes, its shape and dtype need %llu", lab,
                            name, (unsigned long long)(e - b), (unsigned long long)want);
    t.data = data + b;
    t.nbytes = (size_t)(e - b);
    ck->tensors = xrealloc(ck->tensors, (ck->n_tensors + 1) * sizeof *ck->tensors);
    olmoe_st_tensor *st = &ck->tensors[ck->n_tensors++];
    st->name = xstrdup(name);
    st->t = t;
    st->t.name = st->name;
    st->file = fi;
    st->used = 0;
    return 0;
}

static int check_overlaps(olmoe_checkpoint *ck, int first, const unsigned char *data) {
    int n = ck->n_tensors - first;
    if (n < 2) return 0;
    span *s = xmalloc(xmul((size_t)n, sizeof *s));
    for (int i = 0; i < n; i++) {
        const olmoe_tensor *t = &ck->tensors[first + i].t;
        s[i].begin = (uint64_t)((const unsigned char *)t->data - data);
        s[i].end = s[i].begin + t->nbytes;
        s[i].idx = first + i;
    }
    qsort(s, n, sizeof *s, cmp_span);
    int rc = 0;
    for (int i = 1; i < n && rc == 0; i++)
        if (s[i].begin < s[i - 1].end)
            rc = olmoe_errorf("%s: tensors '%s' and '%s' overlap in the data area",
                              ck->files[ck->tensors[s[i].idx].file].label, ck->tensors[s[i - 1].idx].name,
                              ck->tensors[s[i].idx].name);
    free(s);
    return rc;
}

static int map_file(olmoe_st_file *f) {
    int fd = open(f->path, O_RDONLY);
    if (fd < 0) return olmoe_errorf("%s: %s", f->label, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return olmoe_errorf("%s: %s", f->label, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return olmoe_errorf("%s: not a regular file", f->label);
    }
    f->size = (size_t)st.st_size;
    if (f->size < 8) {
        close(fd);
        return olmoe_errorf("%s: %zu bytes is too short for a safetensors file", f->label, f->size);
    }
    void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return olmoe_errorf("%s: mmap: %s", f->label, strerror(e));
    f->map = p;
    return 0;
}

/* maps one file and appends its tensors */
static int add_file(olmoe_checkpoint *ck, const char *path, const char *label) {
    ck->files = xrealloc(ck->files, (ck->n_files + 1) * sizeof *ck->files);
    int fi = ck->n_files++;
    olmoe_st_file *f = &ck->files[fi];
    memset(f, 0, sizeof *f);
    f->path = xstrdup(path);
    f->label = xstrdup(label);
    if (map_file(f) != 0) return -1;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->map[i];
    if (hlen > f->size - 8)
        return olmoe_errorf("%s: header length %llu runs past the end of the file (%zu bytes); "
                            "truncated or not a safetensors file",
                            label, (unsigned long long)hlen, f->size);
    if (hlen > HEADER_MAX)
        return olmoe_errorf("%s: header length %llu is larger than %u bytes", label,
                            (unsigned long long)hlen, HEADER_MAX);
    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return olmoe_errorf("%s: bad header JSON at byte %d: %s", label, jerr.position + 8, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return olmoe_errorf("%s: header is not a JSON object", label);
    }
    const unsigned char *data = f->map + 8 + hlen;
    uint64_t data_size = f->size - 8 - hlen;
    int first = ck->n_tensors, rc = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                rc = olmoe_errorf("%s: __metadata__ is not an object", label);
                break;
            }
            continue;
        }
        if ((rc = parse_entry(ck, fi, key, val, data, data_size)) != 0) break;
    }
    json_decref(root);
    if (rc == 0) rc = check_overlaps(ck, first, data);
    return rc;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const olmoe_st_tensor *)a)->name, ((const olmoe_st_tensor *)b)->name);
}

static int finish(olmoe_checkpoint *ck) {
    if (ck->n_tensors > 1) /* tensors is NULL when there are none */
        qsort(ck->tensors, ck->n_tensors, sizeof *ck->tensors, cmp_tensor_name);
    for (int i = 0; i < ck->n_tensors; i++) ck->tensors[i].t.name = ck->tensors[i].name;
    for (int i = 1; i < ck->n_tensors; i++)
        if (strcmp(ck->tensors[i].name, ck->tensors[i - 1].name) == 0)
            return olmoe_errorf("%s: tensor '%s' appears in both %s and %s", ck->label,
                                ck->tensors[i].name, ck->files[ck->tensors[i - 1].file].label,
                                ck->files[ck->tensors[i].file].label);
    return 0;
}

int olmoe_ckpt_open_file(const char *path, const char *label, olmoe_checkpoint **out) {
    olmoe_checkpoint *ck = ckpt_new(label);
    if (add_file(ck, path, label) != 0 || finish(ck) != 0) {
        olmoe_ckpt_close(ck);
        return -1;
    }
    *out = ck;
    return 0;
}

olmoe_st_tensor *olmoe_ckpt_find(olmoe_checkpoint *ck, const char *name) {
    size_t lo = 0, hi = (size_t)ck->n_tensors;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(ck->tensors[mid].name, name);
        if (c == 0) return &ck->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *olmoe_ckpt_file_label(const olmoe_checkpoint *ck, const olmoe_st_tensor *t) {
    return ck->files[t->file].label;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* a plain file name beside the index (and short enough that an error
   message naming it still fits on its line) */
static int shard_name_ok(const char *s) {
    return *s && strlen(s) <= 255 && !strchr(s, '/') && strcmp(s, ".") != 0 &&
           strcmp(s, "..") != 0;
}

/* the shards named by the index, each mapped, then cross-checked both ways */
static int open_index(const char *dir, const char *index_path, olmoe_checkpoint *ck) {
    char *text;
    size_t len;
    if (olmoe_read_file(index_path, &text, &len) != 0) return -1;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root)
        return olmoe_errorf("%s: bad JSON at line %d column %d: %s", INDEX_NAME, jerr.line,
                            jerr.column, jerr.text);
    json_t *wm = json_object_get(root, "weight_map");
    int rc = 0;
    if (!json_is_object(wm)) rc = olmoe_errorf("%s: no weight_map object", INDEX_NAME);
    size_t n_names = rc == 0 ? json_object_size(wm) : 0;
    const char **shards = xcalloc(n_names ? n_names : 1, sizeof *shards);
    size_t n_shards = 0;
    const char *key;
    json_t *val;
    if (rc == 0) {
        json_object_foreach(wm, key, val) {
            if (!json_is_string(val) || !shard_name_ok(json_string_value(val))) {
                rc = olmoe_errorf("%s: weight_map entry '%.200s' is not a file name in the "
                                  "model directory",
                                  INDEX_NAME, key);
                break;
            }
            shards[n_shards++] = json_string_value(val);
        }
    }
    if (rc == 0 && n_shards == 0) rc = olmoe_errorf("%s: weight_map is empty", INDEX_NAME);
    qsort(shards, n_shards, sizeof *shards, cmp_str);
    for (size_t i = 0; i < n_shards && rc == 0; i++) {
        if (i && strcmp(shards[i], shards[i - 1]) == 0) continue;
        char *p = olmoe_path_join(dir, shards[i]);
        rc = add_file(ck, p, shards[i]);
        free(p);
    }
    if (rc == 0) rc = finish(ck);
    if (rc == 0) {
        json_object_foreach(wm, key, val) {
            olmoe_st_tensor *t = olmoe_ckpt_find(ck, key);
            if (!t || strcmp(ck->files[t->file].label, json_string_value(val)) != 0) {
                rc = olmoe_errorf("%s: tensor '%s' is listed in %s, which does not hold it",
                                  INDEX_NAME, key, json_string_value(val));
                break;
            }
        }
    }
    for (int i = 0; i < ck->n_tensors && rc == 0; i++)
        if (!json_object_get(wm, ck->tensors[i].name))
            rc = olmoe_errorf("%s: tensor '%s' is not listed in %s", ck->files[ck->tensors[i].file].label,
                              ck->tensors[i].name, INDEX_NAME);
    free(shards);
    json_decref(root);
    return rc;
}

int olmoe_ckpt_open_dir(const char *dir, olmoe_checkpoint **out) {
    struct stat st;
    if (stat(dir, &st) != 0) return olmoe_errorf("%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return olmoe_errorf("%s: not a directory", dir);
    char *single = olmoe_path_join(dir, SINGLE_NAME);
    char *index = olmoe_path_join(dir, INDEX_NAME);
    int rc;
    olmoe_checkpoint *ck = NULL;
    /* transformers looks for the single file first, and so do we */
    if (olmoe_file_exists(single)) {
        rc = olmoe_ckpt_open_file(single, SINGLE_NAME, &ck);
    } else if (olmoe_file_exists(index)) {
        ck = ckpt_new(INDEX_NAME);
        rc = open_index(dir, index, ck);
        if (rc != 0) {
            olmoe_ckpt_close(ck);
            ck = NULL;
        }
    } else {
        rc = olmoe_errorf("%s: no %s or %s", dir, SINGLE_NAME, INDEX_NAME);
    }
    free(single);
    free(index);
    if (rc == 0) *out = ck;
    return rc;
}

void olmoe_ckpt_checksum(const olmoe_checkpoint *ck, olmoe_hash *out) {
    olmoe_hasher *h = olmoe_hasher_new();
    const size_t chunk = (size_t)64 << 20;
    for (int i = 0; i < ck->n_files; i++) {
        const olmoe_st_file *f = &ck->files[i];
        madvise((void *)f->map, f->size, MADV_SEQUENTIAL);
        for (size_t at = 0; at < f->size; at += chunk) {
            size_t n = f->size - at < chunk ? f->size - at : chunk;
            olmoe_hasher_feed(h, f->map + at, n);
        }
        madvise((void *)f->map, f->size, MADV_NORMAL);
    }
    olmoe_hasher_end(h, out);
}

size_t olmoe_ckpt_bytes(const olmoe_checkpoint *ck) {
    size_t n = 0;
    for (int i = 0; i < ck->n_files; i++) n += ck->files[i].size;
    return n;
}
