/* fuzz.h: what the fuzz targets share (docs/DESIGN.md §12).
 *
 *   #include "fuzz.h"
 *   FUZZ_TARGET(config) {              // int fuzz_config(const uint8_t *data, size_t size)
 *       olmoe_config c;
 *       if (olmoe_config_parse((const char *)data, size, "f/config.json", &c) != 0)
 *           FUZZ_ERROR_NAMES("f/config.json");   // one line, naming the file
 *       else olmoe_config_free(&c);
 *       return 0;
 *   }
 *
 * Each tests/fuzz/fuzz_<name>.c is built twice: by `make fuzz` with clang
 * -fsanitize=fuzzer, where FUZZ_TARGET also defines LLVMFuzzerTestOneInput,
 * and inside tests/test_fuzz_regress.c (FUZZ_REPLAY defined), which includes
 * every target into one program and feeds it the saved corpus and regression
 * inputs, so `make test` and `make asan-test` replay them without libFuzzer.
 * Because of that one translation unit, every static name in a target starts
 * with the target's name.
 *
 * A broken invariant is FUZZ_ASSERT: it prints the reason and aborts, which
 * libFuzzer records as a crash (and the replay as a failure). Error messages
 * are checked with FUZZ_ERROR_NAMES: one line, non-empty, naming the input.
 */
#ifndef OLMOE_FUZZ_H
#define OLMOE_FUZZ_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#ifdef FUZZ_REPLAY
#define FUZZ_ENTRY(name)
#else
/* the input being run: soft findings save it */
static const uint8_t *fuzz_cur_data;
static size_t fuzz_cur_size;
#define FUZZ_ENTRY(name)                                                        \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);               \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {              \
        fuzz_cur_data = data, fuzz_cur_size = size;                             \
        fuzz_##name(data, size);                                                \
        return 0;                                                               \
    }
#endif

#define FUZZ_TARGET(name)                                                       \
    int fuzz_##name(const uint8_t *data, size_t size);                          \
    FUZZ_ENTRY(name)                                                            \
    int fuzz_##name(const uint8_t *data, size_t size)

#define FUZZ_ASSERT(cond, ...)                                                  \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "fuzz: %s:%d: invariant broken: %s: ", __FILE__,    \
                    __LINE__, #cond);                                           \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* A message rule broken (not one line, or not naming the input). In the
 * replay it fails like FUZZ_ASSERT. While fuzzing it is a soft finding: each
 * new kind (the message with quoted text and digits dropped) is printed once
 * and its input saved to $FUZZ_FINDINGS (run.sh: BUILD/findings/NAME), and the
 * run goes on, since one echoing parser would otherwise stop a target long
 * before it reaches anything that corrupts memory. */
static inline void fuzz_message_finding(const char *rule, const char *m) {
#ifdef FUZZ_REPLAY
    fprintf(stderr, "fuzz: message rule broken (%s): %s\n", rule, m);
    abort();
#else
    static uint64_t seen[64];
    static int n_seen;
    /* its kind: the text before the first quote, after the last ": " there
     * (the problem, not the names), digits dropped ("invalid escape near ") */
    const char *q = strchr(m, '\''), *from = m;
    for (const char *c = strstr(m, ": "); c && (!q || c < q); c = strstr(c + 2, ": ")) from = c + 2;
    char shape[96];
    size_t k = 0;
    for (const char *p = from; *p && *p != '\'' && k + 1 < sizeof shape; p++)
        if (!(*p >= '0' && *p <= '9')) shape[k++] = *p;
    shape[k] = '\0';
    olmoe_hash h;
    olmoe_hash_bytes(shape, k, &h);
    uint64_t key = strtoull(h.hex + 16, NULL, 16);
    for (int i = 0; i < n_seen; i++)
        if (seen[i] == key) return;
    if (n_seen == 64) return; /* enough kinds for one run */
    seen[n_seen++] = key;
    fprintf(stderr, "fuzz: finding (%s): %s\n", rule, m);
    const char *dir = getenv("FUZZ_FINDINGS");
    if (dir && fuzz_cur_data) {
        char path[512];
        snprintf(path, sizeof path, "%s/msg-%s", dir, h.hex);
        FILE *f = fopen(path, "wb");
        if (f) fwrite(fuzz_cur_data, 1, fuzz_cur_size, f), fclose(f);
    }
#endif
}

static inline int fuzz_one_line(const char *m) { return !strchr(m, '\n'); }

/* any message: non-empty, one line */
#define FUZZ_MESSAGE_OK()                                                       \
    do {                                                                        \
        const char *m_ = olmoe_error();                                         \
        FUZZ_ASSERT(m_[0] && strcmp(m_, "unknown error") != 0,                  \
                    "failed without a message");                                \
        if (!fuzz_one_line(m_)) fuzz_message_finding("not one line", m_);       \
    } while (0)

/* After a parser returned -1: its message is one non-empty line that names
 * what it read (docs/DESIGN.md §2 and §12: one line naming the file and the
 * problem). */
#define FUZZ_ERROR_NAMES(name)                                                  \
    do {                                                                        \
        FUZZ_MESSAGE_OK();                                                      \
        if (!strstr(olmoe_error(), (name)))                                     \
            fuzz_message_finding("does not name the input", olmoe_error());         \
    } while (0)

/* HDF5 1.10.8 leaks small blocks on some error paths of damaged files
 * (direct leaks from inside libhdf5, not ids we left open: those would still
 * be referenced). LeakSanitizer reads this hook in both the libFuzzer and the
 * replay builds; everywhere else it is an unused function. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5_serial.so\nleak:libhdf5.so\n"; }

/* HDF5 asks malloc for absurd sizes read from damaged files and copes with
 * NULL; ASan would abort instead. Our own code allocates through xmalloc,
 * which dies on NULL, and libFuzzer reports that exit, so nothing of ours
 * hides behind this. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

/* reads whose values do not matter, only that they happen (for ASan) */
static volatile unsigned fuzz_sink;
static inline void fuzz_touch(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) fuzz_sink += b[i];
}

/* A private scratch directory for inputs that must be files (mmap, HDF5 by
 * path, sweep files): /dev/shm when there is one, so it stays fast. Made
 * once per process, removed at exit. */
static char fuzz_dir_path[256];

static inline void fuzz_dir_remove(void) {
    if (!fuzz_dir_path[0]) return;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_path);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fuzz_dir_path);
}

static inline const char *fuzz_dir(void) {
    if (fuzz_dir_path[0]) return fuzz_dir_path;
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : NULL;
    if (!base) base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/olmoe-fuzz.XXXXXX", base);
    if (!mkdtemp(fuzz_dir_path)) {
        fprintf(stderr, "fuzz: mkdtemp %s: %s\n", fuzz_dir_path, strerror(errno));
        abort();
    }
    atexit(fuzz_dir_remove);
    return fuzz_dir_path;
}

/* fuzz_dir()/name into buf */
static inline const char *fuzz_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", fuzz_dir(), name);
    return buf;
}

/* writes data to path (replacing it); aborts on failure: that is the harness
 * failing, not the code under test */
static inline void fuzz_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
}

/* a NUL-terminated copy of the input (parsers of strings take C strings) */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Splits the input at the first occurrence of sep (a byte string): the part
 * before in *a, the rest in *b. Lets one input carry two things (a spec and
 * option values, a tokenizer and a text). Without sep, *b is empty. */
static inline void fuzz_split(const uint8_t *data, size_t size, const char *sep,
                              const uint8_t **a, size_t *na, const uint8_t **b, size_t *nb) {
    size_t k = strlen(sep);
    for (size_t i = 0; k && i + k <= size; i++)
        if (memcmp(data + i, sep, k) == 0) {
            *a = data, *na = i, *b = data + i + k, *nb = size - i - k;
            return;
        }
    *a = data, *na = size, *b = data + size, *nb = 0;
}

/* Offset of the first byte that is not part of valid UTF-8 (Rust's str:
 * no overlong forms, no surrogates, nothing above U+10FFFF), or n. Written
 * here from the definition, independent of the tokenizer's own check. */
static inline size_t fuzz_utf8_bad(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) k = 1, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) k = 2, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) k = 3, cp = c & 0x07, min = 0x10000;
        else return i;
        if (i + k >= n) return i; /* truncated */
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return i;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += k + 1;
    }
    return n;
}

/* ---- a tiny byte reader for structure-aware targets ---- */
typedef struct {
    const uint8_t *p;
    size_t n;
} fuzz_bytes;

static inline uint32_t fuzz_u8(fuzz_bytes *b) {
    if (!b->n) return 0;
    b->n--;
    return *b->p++;
}
/* sequenced reads: the replay (gcc) must take the same bytes as libFuzzer (clang) */
static inline uint32_t fuzz_u16(fuzz_bytes *b) {
    uint32_t lo = fuzz_u8(b);
    return lo | fuzz_u8(b) << 8;
}
static inline uint32_t fuzz_u32(fuzz_bytes *b) {
    uint32_t lo = fuzz_u16(b);
    return lo | fuzz_u16(b) << 16;
}
/* one of n choices (n >= 1) */
static inline uint32_t fuzz_pick(fuzz_bytes *b, uint32_t n) { return fuzz_u8(b) % n; }

#endif
