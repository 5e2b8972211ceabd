/* resume.c: the output rules of a capture that may be interrupted (docs/DESIGN.md
 * §2, §12). The trace is written as "<out>.partial" and renamed when
 * complete, as every output; unlike other outputs, a partial holding
 * committed windows is kept on SIGINT/SIGTERM, on a kill and on a fatal
 * error, because `olmoe-capture ... --resume` continues it: hours of work are
 * not thrown away. Until the first window is committed it is removed as
 * usual (common's cleanup registry). */
#include "shard.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int olmoe_file_checksum(const char *path, olmoe_hash *out, int64_t *bytes) {
    struct stat st;
    if (stat(path, &st) != 0) return olmoe_errorf("%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) { /* a pipe was read once already: nothing to hash */
        memset(out, 0, sizeof *out);
        *bytes = -1;
        return 0;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) return olmoe_errorf("%s: %s", path, strerror(errno));
    enum { B = 1 << 20 };
    char *buf = xmalloc(B);
    olmoe_hasher *h = olmoe_hasher_new();
    int64_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf, B);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            olmoe_hasher_end(h, out);
            free(buf);
            close(fd);
            return olmoe_errorf("%s: %s", path, strerror(e));
        }
        if (r == 0) break;
        olmoe_hasher_feed(h, buf, (size_t)r);
        n += r;
    }
    olmoe_hasher_end(h, out);
    free(buf);
    close(fd);
    *bytes = n;
    return 0;
}

/* ---- the output ---- */

static struct {
    olmoe_capture_out *o; /* kept: the partial survives an error */
    char *hint;
    int committed;
} keep;

static void keep_note(void) {
    /* at exit after die(): the partial holds committed windows */
    if (keep.o && keep.o->partial && keep.hint && olmoe_file_exists(keep.o->partial))
        fprintf(stderr, "%s: kept %s (every completed batch); continue with: %s\n", olmoe_prog(),
                keep.o->partial, keep.hint);
}

int olmoe_capture_out_begin(olmoe_capture_out *o, const char *final, int force, int resume) {
    memset(o, 0, sizeof *o);
    if (!final || !*final) return olmoe_errorf("empty output file name");
    size_t n = strlen(final);
    o->final = xstrdup(final);
    o->partial = xmalloc(n + sizeof ".partial");
    memcpy(o->partial, final, n);
    memcpy(o->partial + n, ".partial", sizeof ".partial");
    o->resume = resume;
    /* before anything else: the partial may be another capture's */
    if (olmoe_lock_output(final) != 0) return -1;
    struct stat st;
    if (stat(final, &st) == 0 && !S_ISREG(st.st_mode))
        return olmoe_errorf("%s: exists and is not a file (--force replaces files only)", final);
    int have_final = olmoe_file_exists(final), have_partial = olmoe_file_exists(o->partial);
    if (resume && have_final && !have_partial)
        return olmoe_errorf("%s: already complete (nothing to resume)", final);
    if (have_final && !force)
        return olmoe_errorf("%s: already exists (use --force to overwrite)", final);
    if (resume && !have_partial)
        return olmoe_errorf("%s: no interrupted capture to resume (%s does not exist)", final,
                            o->partial);
    if (!resume && have_partial && !force)
        return olmoe_errorf("%s: an interrupted capture is there (%s): add --resume to continue "
                            "it, or --force to start over", final, o->partial);
    char *dcopy = xstrdup(final);
    const char *dir = dirname(dcopy);
    if (access(dir, W_OK) != 0) {
        olmoe_errorf("%s: cannot write in '%s': %s", final, dir, strerror(errno));
        free(dcopy);
        return -1;
    }
    free(dcopy);
    /* what a capture or resume killed while creating its file left: never an input */
    static const char *const stale[] = {".creating", ".resume", ".resume.creating"};
    for (size_t i = 0; i < sizeof stale / sizeof stale[0]; i++) {
        char *p = xmalloc(strlen(o->partial) + strlen(stale[i]) + 1);
        strcpy(p, o->partial);
        strcat(p, stale[i]);
        unlink(p);
        free(p);
    }
    if (!resume) {
        if (unlink(o->partial) != 0 && errno != ENOENT)
            return olmoe_errorf("%s: cannot remove %s: %s", final, o->partial, strerror(errno));
        olmoe_cleanup_add(o->partial);
    }
    return 0;
}

void olmoe_capture_out_keep(olmoe_capture_out *o, const char *hint) {
    if (keep.committed) return;
    olmoe_cleanup_remove(o->partial);
    keep.o = o;
    free(keep.hint);
    keep.hint = xstrdup(hint);
    keep.committed = 1;
    atexit(keep_note);
}

int olmoe_capture_out_commit(olmoe_capture_out *o) {
    if (olmoe_fsync_path(o->partial) != 0) return -1;
    if (rename(o->partial, o->final) != 0)
        return olmoe_errorf("%s: rename from %s: %s", o->final, o->partial, strerror(errno));
    olmoe_cleanup_remove(o->partial);
    olmoe_unlock_output(o->final);
    keep.o = NULL;
    return 0;
}

void olmoe_capture_out_free(olmoe_capture_out *o) {
    if (keep.o == o) keep.o = NULL;
    free(keep.hint);
    keep.hint = NULL;
    free(o->final);
    free(o->partial);
    memset(o, 0, sizeof *o);
}

/* ---- signals ---- */

static volatile sig_atomic_t stop_sig;

static void on_stop(int sig) {
    if (stop_sig) { /* the second one: now */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_sig = sig;
    static const char msg[] = "\nolmoe-capture: stopping after the batch in progress "
                              "(again to stop at once)\n";
    ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)r;
}

void olmoe_capture_signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int olmoe_capture_batch_boundary(void) {
    /* tests of interruption need a capture that is still running when the
     * signal comes, whatever the machine's speed */
    static long delay_ms = -1;
    if (delay_ms < 0) {
        const char *e = getenv("OLMOE_TEST_BATCH_DELAY_MS");
        if (!e || olmoe_parse_long(e, 0, 10000, &delay_ms) != 0) delay_ms = 0;
    }
    if (delay_ms > 0 && !stop_sig) {
        struct timespec ts = {delay_ms / 1000, (delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_sig) {}
    }
    return stop_sig;
}

void olmoe_capture_signals_reraise(int sig) {
    fflush(NULL);
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(128 + sig);
}

/* ---- the resume command ---- */

static int needs_quotes(const char *s) {
    if (!*s) return 1;
    for (; *s; s++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%", *s))
            return 1;
    return 0;
}

char *olmoe_capture_resume_command(int argc, char **argv) {
    size_t cap = 64, n = 0;
    for (int i = 0; i < argc; i++) cap += 4 * strlen(argv[i]) + 4;
    char *s = xmalloc(cap);
    int has_resume = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--force") == 0) continue;
        if (strcmp(argv[i], "--resume") == 0) has_resume = 1;
        if (n) s[n++] = ' ';
        if (!needs_quotes(argv[i])) {
            n += (size_t)sprintf(s + n, "%s", argv[i]);
            continue;
        }
        s[n++] = '\'';
        for (const char *c = argv[i]; *c; c++) {
            if (*c == '\'') {
                memcpy(s + n, "'\\''", 4);
                n += 4;
            } else {
                s[n++] = *c;
            }
        }
        s[n++] = '\'';
    }
    if (!has_resume) n += (size_t)sprintf(s + n, " --resume");
    s[n] = '\0';
    return s;
}

/* ---- continuing a partial ---- */

int olmoe_capture_resume_check(olmoe_trace *t, const olmoe_window *w, int64_t nw, int64_t *done) {
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    int64_t n = in->n_windows;
    if (n > nw)
        return olmoe_errorf("%s: cannot resume: it holds %lld windows, this run has %lld",
                            olmoe_trace_path(t), (long long)n, (long long)nw);
    enum { B = 4096 };
    olmoe_trace_window *got = xmalloc(B * sizeof *got);
    for (int64_t s = 0; s < n; s += B) {
        int64_t c = n - s < B ? n - s : B;
        if (olmoe_trace_read_windows(t, s, c, got) != 0) {
            free(got);
            return -1;
        }
        for (int64_t i = 0; i < c; i++) {
            const olmoe_window *x = &w[s + i];
            if (got[i].start != x->start || got[i].length != x->length ||
                got[i].stored_from != x->stored_from) {
                olmoe_errorf("%s: cannot resume: window %lld is (%lld, %lld, %lld) in the file, "
                             "(%lld, %lld, %lld) in this run", olmoe_trace_path(t),
                             (long long)(s + i), (long long)got[i].start, (long long)got[i].length,
                             (long long)got[i].stored_from, (long long)x->start,
                             (long long)x->length, (long long)x->stored_from);
                free(got);
                return -1;
            }
        }
    }
    free(got);
    *done = n;
    return 0;
}
