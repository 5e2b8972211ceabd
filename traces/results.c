/* results.c: the results file beside a trace (olmoe-trace(5), "RESULTS").
 *
 * A complete trace is never written to again: commands that store results
 * (olmoe-replay, olmoe-replay --mode stats --store, olmoe-analyze --in-trace)
 * write them to "<trace minus .h5>.results.h5", laid out as results stored in
 * a trace used to be (/replay, /exact, /validate, /stats, /analyze, /match),
 * so a reader opens one file and finds everything. Each writer locks the
 * results file, copies it (or, the first time, the results an old trace holds
 * in place) into "<results>.partial", adds its own and renames it into place:
 * a writer killed at any moment leaves the previous results file intact. The
 * file records the trace's identity checksum and is refused beside any other
 * trace. */
#include "common.h"
#include "internal.h"
#include "traces.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* groups commands used to store in a trace, copied into a first results file */
static const char *const result_groups[] = {"replay", "exact", "validate", "stats", "analyze",
                                            "match"};

char *olmoe_results_path(const char *trace_path) {
    size_t n = strlen(trace_path);
    if (n > 3 && strcmp(trace_path + n - 3, ".h5") == 0) n -= 3;
    char *s = xmalloc(n + sizeof ".results.h5");
    memcpy(s, trace_path, n);
    memcpy(s + n, ".results.h5", sizeof ".results.h5");
    return s;
}

/* ---- the trace's identity ---- */
static void feed_str(olmoe_hasher *h, hid_t f, const char *name) {
    char *v = NULL;
    if (olmoe_h5_has_attr(f, ".", name) == 1 && olmoe_h5_get_attr_str(f, ".", name, &v) == 0) {
        olmoe_hasher_feed(h, name, strlen(name) + 1);
        olmoe_hasher_feed(h, v, strlen(v) + 1);
    }
    free(v);
}

static void feed_num(olmoe_hasher *h, hid_t f, const char *name, int is_int) {
    char buf[64];
    int64_t i = 0;
    double d = NAN;
    if (olmoe_h5_has_attr(f, ".", name) != 1) return;
    if (is_int ? olmoe_h5_get_attr_i64(f, ".", name, &i) : olmoe_h5_get_attr_f64(f, ".", name, &d))
        return;
    int n = is_int ? snprintf(buf, sizeof buf, "%s=%lld", name, (long long)i)
                   : snprintf(buf, sizeof buf, "%s=%a", name, d);
    olmoe_hasher_feed(h, buf, (size_t)n + 1);
}

int olmoe_trace_identity(hid_t f, olmoe_hash *out) {
    int fmt = olmoe_h5_has_attr(f, ".", "format");
    if (fmt != 1) return olmoe_errorf("not an olmoe trace (no format attribute)");
    static const char *const strs[] = {"format", "created", "command", "model_checksum",
                                       "tokenizer_checksum", OLMOE_ATTR_INPUT_CHECKSUM,
                                       OLMOE_ATTR_MERGE_COMMAND, OLMOE_ATTR_MERGED_FROM};
    static const char *const ints[] = {"n_tokens", "n_windows", "complete", "n_scored"};
    olmoe_hasher *h = olmoe_hasher_new();
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) feed_str(h, f, strs[i]);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) feed_num(h, f, ints[i], 1);
    feed_num(h, f, "nll_sum", 0);
    olmoe_hasher_end(h, out);
    return 0;
}

/* ---- opening for reading ---- */
static int check_owner(hid_t r, const char *path, const char *trace_path, hid_t trace) {
    static const char *const results[] = {OLMOE_RESULTS_FORMAT, NULL};
    char *sum = NULL;
    olmoe_hash id;
    int rc = -1;
    if (olmoe_h5_check_format(r, path, results, "an olmoe results file; move it away") != 0) {
        /* its message says what the file is */
    } else if (olmoe_h5_get_attr_str(r, ".", "trace_checksum", &sum) != 0) {
        olmoe_error_prefix("%s", path);
    } else if (olmoe_trace_identity(trace, &id) != 0) {
        olmoe_error_prefix("%s", trace_path);
    } else if (strcmp(sum, id.hex) != 0) {
        olmoe_errorf("%s: holds the results of another trace (trace_checksum %s; %s is %s): "
                     "move it away, or put it beside its own trace", path, sum, trace_path, id.hex);
    } else {
        rc = 0;
    }
    free(sum);
    return rc;
}

int olmoe_results_open(const char *trace_path, hid_t trace, hid_t *out) {
    *out = H5I_INVALID_HID;
    char *path = olmoe_results_path(trace_path);
    if (access(path, F_OK) != 0) {
        free(path);
        *out = trace; /* results an old trace holds in place, if any */
        return 0;
    }
    hid_t r = olmoe_h5_open(path, 0);
    if (r < 0 || check_owner(r, path, trace_path, trace) != 0) {
        if (r >= 0) olmoe_h5_close(r);
        free(path);
        return -1;
    }
    free(path);
    *out = r;
    return 1;
}

/* ---- writing ---- */
static int copy_file(const char *from, const char *to) {
    int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
    if (in < 0) return olmoe_errorf("%s: %s", from, strerror(errno));
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        olmoe_errorf("%s: %s", to, strerror(errno));
        goto done;
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0) {
            olmoe_errorf("%s: read: %s", from, strerror(errno));
            goto done;
        }
        if (n == 0) break;
        for (ssize_t at = 0; at < n;) {
            ssize_t w = write(out, buf + at, (size_t)(n - at));
            if (w < 0) {
                olmoe_errorf("%s: write: %s", to, strerror(errno));
                goto done;
            }
            at += w;
        }
    }
    rc = 0;
done:
    close(in);
    if (out >= 0 && close(out) != 0 && rc == 0) rc = olmoe_errorf("%s: %s", to, strerror(errno));
    return rc;
}

/* a first results file: its attributes and what the trace held in place */
static int start_file(olmoe_results *r, const char *trace_path, hid_t trace) {
    olmoe_hash id;
    if (olmoe_trace_identity(trace, &id) != 0) return olmoe_error_prefix("%s", trace_path);
    if ((r->f = olmoe_h5_create(r->tmp)) < 0) return -1;
    const char *base = strrchr(trace_path, '/');
    if (olmoe_h5_set_attr_str(r->f, ".", "format", OLMOE_RESULTS_FORMAT) ||
        olmoe_h5_set_attr_i32(r->f, ".", "format_version", OLMOE_RESULTS_FORMAT_VERSION) ||
        olmoe_h5_set_attr_str(r->f, ".", "trace", base ? base + 1 : trace_path) ||
        olmoe_h5_set_attr_str(r->f, ".", "trace_checksum", id.hex))
        return olmoe_error_prefix("%s", r->final);
    for (size_t i = 0; i < sizeof result_groups / sizeof result_groups[0]; i++) {
        int e = olmoe_h5_exists(trace, result_groups[i]);
        if (e < 0) return olmoe_error_prefix("%s", trace_path);
        if (e && trace_copy_group(trace, result_groups[i], r->f) != 0)
            return olmoe_error_prefix("%s: copying from %s", r->final, trace_path);
    }
    return 0;
}

/* An update writes a copy and renames it over the file, which never asks
 * the file's own permission: asked here. A file no one may write (mode 444)
 * is refused even for root, as rm asks before removing one: someone made it
 * read-only on purpose. */
static int check_writable(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return errno == ENOENT ? 0 : olmoe_errorf("%s: %s", path, strerror(errno));
    if ((st.st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) == 0 || access(path, W_OK) != 0)
        return olmoe_errorf("%s: is read-only (mode %03o): results are not added to it (make it "
                            "writable, or move it away)", path, (unsigned)(st.st_mode & 0777));
    return 0;
}

/* locks final and names its partial; 0, or -1 leaving the partial alone */
static int lock_partial(olmoe_results *r, char *final) {
    memset(r, 0, sizeof *r);
    r->f = H5I_INVALID_HID;
    r->final = final;
    if (check_writable(final) != 0) {
        free(r->final);
        r->final = NULL;
        return -1;
    }
    r->tmp = xmalloc(strlen(r->final) + sizeof ".partial");
    strcpy(r->tmp, r->final);
    strcat(r->tmp, ".partial");
    if (olmoe_lock_output(r->final) != 0) { /* the partial is another writer's: leave it */
        free(r->tmp);
        free(r->final);
        r->tmp = r->final = NULL;
        return -1;
    }
    if (unlink(r->tmp) != 0 && errno != ENOENT) {
        olmoe_errorf("%s: cannot remove a stale partial output: %s", r->tmp, strerror(errno));
        olmoe_results_abort(r);
        return -1;
    }
    olmoe_cleanup_add(r->tmp);
    return 0;
}

int olmoe_h5_update_begin(olmoe_results *r, const char *final) {
    if (lock_partial(r, xstrdup(final)) != 0) return -1;
    if (copy_file(r->final, r->tmp) != 0 || (r->f = olmoe_h5_open(r->tmp, 1)) < 0 ||
        olmoe_results_mark(r->f, -1) != 0) {
        olmoe_results_abort(r);
        return -1;
    }
    return 0;
}

int olmoe_results_begin(olmoe_results *r, const char *trace_path, hid_t trace) {
    if (lock_partial(r, olmoe_results_path(trace_path)) != 0) return -1;
    if (access(r->final, F_OK) == 0) {
        hid_t old = olmoe_h5_open(r->final, 0);
        int bad = old < 0 || check_owner(old, r->final, trace_path, trace) != 0;
        if (old >= 0) olmoe_h5_close(old);
        if (bad || copy_file(r->final, r->tmp) != 0 || (r->f = olmoe_h5_open(r->tmp, 1)) < 0)
            goto fail;
    } else if (start_file(r, trace_path, trace) != 0) {
        goto fail;
    }
    /* what is there already and names no command was written by none recorded */
    if (olmoe_results_mark(r->f, -1) != 0) {
        olmoe_error_prefix("%s", r->final);
        goto fail;
    }
    return 0;
fail:
    olmoe_results_abort(r);
    return -1;
}

/* a results file (not another file updated in place) gets its dimensions */
static int results_dims_if_results(hid_t f) {
    char *fmt = NULL;
    int rc = 0;
    if (olmoe_h5_has_attr(f, ".", "format") == 1 && olmoe_h5_get_attr_str(f, ".", "format", &fmt) == 0 &&
        strcmp(fmt, OLMOE_RESULTS_FORMAT) == 0)
        rc = olmoe_results_dims(f);
    free(fmt);
    return rc;
}

int olmoe_results_mark_last(hid_t f) {
    int64_t n = olmoe_provenance_count(f);
    return n < 0 || (n > 0 && olmoe_results_mark(f, n - 1) != 0) ? -1 : 0;
}

int olmoe_results_commit(olmoe_results *r) {
    if (results_dims_if_results(r->f) != 0) return olmoe_error_prefix("%s", r->final);
    hid_t f = r->f;
    /* the results this writer added point to its record */
    if (olmoe_results_mark_last(f) != 0) return olmoe_error_prefix("%s", r->final);
    r->f = H5I_INVALID_HID;
    if (olmoe_h5_close(f) != 0 || olmoe_fsync_path(r->tmp) != 0) return -1;
    if (rename(r->tmp, r->final) != 0)
        return olmoe_errorf("%s: rename from %s: %s", r->final, r->tmp, strerror(errno));
    olmoe_cleanup_remove(r->tmp);
    olmoe_unlock_output(r->final);
    free(r->tmp);
    free(r->final);
    r->tmp = r->final = NULL;
    return 0;
}

void olmoe_results_abort(olmoe_results *r) {
    if (r->f >= 0) olmoe_h5_close(r->f);
    r->f = H5I_INVALID_HID;
    if (r->tmp) {
        unlink(r->tmp);
        olmoe_cleanup_remove(r->tmp);
    }
    if (r->final) olmoe_unlock_output(r->final);
    free(r->tmp);
    free(r->final);
    r->tmp = r->final = NULL;
}
