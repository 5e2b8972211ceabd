/* common.c: fatal errors, library error messages, checked allocation and
 * number parsing. Everything here is process-wide and tiny on purpose. */
#include "cleanup.h"
#include "common.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *prog_name = "olmoe";
static int quiet; /* notef's switch (olmoe_set_quiet) */

void olmoe_set_quiet(int q) { quiet = q != 0; }
int olmoe_is_quiet(void) { return quiet; }

void olmoe_set_prog(const char *argv0) {
    const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
    prog_name = slash ? slash + 1 : (argv0 ? argv0 : "olmoe");
}

const char *olmoe_prog(void) { return prog_name; }

static void vreport(const char *kind, const char *fmt, va_list ap) {
    fflush(stdout);
    if (kind)
        fprintf(stderr, "%s: %s: ", prog_name, kind);
    else
        fprintf(stderr, "%s: ", prog_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport("fatal", fmt, ap);
    va_end(ap);
    olmoe_cleanup_run();
    exit(OLMOE_EXIT_FATAL);
}

void die_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport("usage", fmt, ap);
    va_end(ap);
    fprintf(stderr, "try '%s --help'\n", prog_name);
    olmoe_cleanup_run();
    exit(OLMOE_EXIT_USAGE);
}

void warnf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport("warning", fmt, ap);
    va_end(ap);
}

void notef(const char *fmt, ...) {
    if (quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vreport(NULL, fmt, ap);
    va_end(ap);
}

/* ---- library errors ---- */

static _Thread_local char err_buf[1024];

/* Errors end up on one line of stderr, and parts of them (a JSON parser's
   message, a tensor or file name) come from the input; a newline or other
   control byte there would break that line, so show it as '?'. */
static void one_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

/* Formatted in a buffer of its own first: callers may pass olmoe_error()
   (the previous message) as an argument, which points into err_buf. */
int olmoe_errorf(const char *fmt, ...) {
    char msg[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(err_buf, msg, sizeof err_buf);
    one_line(err_buf);
    return -1;
}

const char *olmoe_error(void) { return err_buf[0] ? err_buf : "unknown error"; }

int olmoe_error_prefix(const char *fmt, ...) {
    char head[512], old[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    /* head, ": ", old, truncated to the buffer (long messages lose their tail) */
    size_t n = 0, cap = sizeof err_buf - 1;
    const char *parts[3] = {head, ": ", old};
    for (int i = 0; i < 3 && n < cap; i++) {
        size_t m = strlen(parts[i]);
        if (m > cap - n) m = cap - n;
        memcpy(err_buf + n, parts[i], m);
        n += m;
    }
    err_buf[n] = '\0';
    one_line(err_buf);
    return -1;
}

/* ---- allocation ---- */

void *olmoe_xmalloc(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory allocating %zu bytes at %s:%d", n, file, line);
    return p;
}

void *olmoe_xcalloc(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) die("out of memory allocating %zu x %zu bytes at %s:%d", n, size, file, line);
    return p;
}

void *olmoe_xrealloc(void *p, size_t n, const char *file, int line) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die("out of memory reallocating %zu bytes at %s:%d", n, file, line);
    return q;
}

char *olmoe_xstrdup(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *p = olmoe_xmalloc(n, file, line);
    memcpy(p, s, n);
    return p;
}

size_t olmoe_mul(size_t n, size_t size, const char *file, int line) {
    if (size && n > SIZE_MAX / size) die("size overflow (%zu x %zu) at %s:%d", n, size, file, line);
    return n * size;
}

/* ---- numbers ---- */

int olmoe_parse_long(const char *s, long lo, long hi, long *out) {
    if (!s || !*s) return olmoe_errorf("empty number");
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno == ERANGE || *end != '\0' || end == s) return olmoe_errorf("'%s' is not an integer", s);
    if (v < lo || v > hi) return olmoe_errorf("%ld is out of range [%ld, %ld]", v, lo, hi);
    *out = v;
    return 0;
}

int olmoe_parse_double(const char *s, double *out) {
    if (!s || !*s) return olmoe_errorf("empty number");
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0' || end == s || (errno == ERANGE && fabs(v) > 1) || !isfinite(v))
        return olmoe_errorf("'%s' is not a finite number", s);
    if (errno == ERANGE) /* below DBL_MIN: a denormal or 0, not the value written */
        return olmoe_errorf("'%s' is too small (below %g)", s, DBL_MIN);
    *out = v;
    return 0;
}

/* one item of an index list: "A" or "A-B", each a run of digits */
static int index_item(const char *tok, long n, long *a, long *b) {
    size_t da = strspn(tok, "0123456789");
    const char *rest = tok + da;
    size_t db = *rest == '-' ? strspn(rest + 1, "0123456789") : 0;
    int single = da > 0 && *rest == '\0';
    int range = da > 0 && *rest == '-' && db > 0 && rest[1 + db] == '\0';
    if (!single && !range) return olmoe_errorf("'%s' is not a number or a range A-B", tok);
    errno = 0;
    *a = strtol(tok, NULL, 10);
    *b = range ? strtol(rest + 1, NULL, 10) : *a;
    if (errno == ERANGE || *a >= n || *b >= n)
        return olmoe_errorf("%s is out of range [0, %ld]", tok, n - 1);
    if (*b < *a) return olmoe_errorf("'%s' runs backwards", tok);
    return 0;
}

int olmoe_parse_index_list(const char *s, int n, unsigned char *want) {
    if (!s || strcmp(s, "all") == 0) {
        memset(want, 1, (size_t)n);
        return 0;
    }
    memset(want, 0, (size_t)n);
    char *copy = xstrdup(s), *save = NULL;
    int rc = 0, any = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
        long a = 0, b = -1;
        rc = index_item(tok, n, &a, &b);
        for (long i = a; rc == 0 && i <= b; i++) want[i] = 1, any = 1;
    }
    free(copy);
    if (rc == 0 && !any) rc = olmoe_errorf("none given");
    return rc;
}

int olmoe_parse_shard(const char *s, int *index, int *count) {
    const char *slash = s ? strchr(s, '/') : NULL;
    long i = -1, n = 0;
    if (slash) {
        char a[32];
        size_t k = (size_t)(slash - s);
        if (k < sizeof a) {
            memcpy(a, s, k);
            a[k] = '\0';
            if (olmoe_parse_long(a, 0, OLMOE_SHARD_MAX - 1, &i) != 0 ||
                olmoe_parse_long(slash + 1, 1, OLMOE_SHARD_MAX, &n) != 0)
                i = -1;
        }
    }
    if (i < 0)
        return olmoe_errorf("--shard: '%s' is not i/N with 0 <= i < N <= %d", s ? s : "",
                            OLMOE_SHARD_MAX);
    if (i >= n) return olmoe_errorf("--shard %s: the index must be below the count %ld", s, n);
    *index = (int)i;
    *count = (int)n;
    return 0;
}

/* ---- argv ---- */

static char **saved_argv;
static int saved_argc;

void olmoe_save_argv(int argc, char **argv) {
    saved_argv = xmalloc(xmul((size_t)argc + 1, sizeof *saved_argv));
    for (int i = 0; i < argc; i++) saved_argv[i] = xstrdup(argv[i]);
    saved_argv[argc] = NULL;
    saved_argc = argc;
}

char *const *olmoe_saved_argv(int *argc) {
    *argc = saved_argc;
    return saved_argv;
}

/* one argument as the shell reads it back: bare when it holds only
 * characters no shell treats specially, else in single quotes (a quote
 * inside written '\'') */
static char *shell_quote(char *p, const char *a) {
    if (*a && strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@%+=:,./-") ==
                  strlen(a))
        return p + sprintf(p, "%s", a);
    *p++ = '\'';
    for (; *a; a++) {
        if (*a == '\'') p += sprintf(p, "'\\''");
        else *p++ = *a;
    }
    *p++ = '\'';
    return p;
}

char *olmoe_join_argv(int argc, char **argv) {
    size_t n = 1;
    for (int i = 0; i < argc; i++) n += 4 * strlen(argv[i]) + 3;
    char *s = xmalloc(n), *p = s;
    for (int i = 0; i < argc; i++) {
        if (i) *p++ = ' ';
        p = shell_quote(p, argv[i]);
    }
    *p = '\0';
    return s;
}

const char *olmoe_fmt_bytes(double bytes, char *buf, size_t n) {
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
    return buf;
}
