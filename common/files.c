/* files.c: reading whole files, path helpers, and outputs that appear under
 * their final name only when complete (write to "<name>.partial", fsync,
 * rename). Paths registered for cleanup are unlinked by die() and by
 * SIGINT/SIGTERM, so an interrupted command leaves no half-written output. */
#include "cleanup.h"
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int olmoe_read_file(const char *path, char **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return olmoe_errorf("%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    int e = 0;
    for (;;) {
        if (n + 1 >= cap) buf = xrealloc(buf, cap *= 2);
        errno = 0;
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        e = errno;
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { /* e.g. a directory: "Is a directory" */
        free(buf);
        return olmoe_errorf("%s: read error%s%s", path, e ? ": " : "", e ? strerror(e) : "");
    }
    buf[n] = '\0';
    *data = buf;
    if (len) *len = n;
    return 0;
}

int olmoe_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

char *olmoe_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *s = xmalloc(a + b + 2);
    memcpy(s, dir, a);
    size_t at = a;
    if (a && dir[a - 1] != '/') s[at++] = '/';
    memcpy(s + at, name, b + 1);
    return s;
}

/* ---- cleanup registry ---- */

#define MAX_CLEANUP 16
static char *cleanup_paths[MAX_CLEANUP];
static volatile sig_atomic_t handlers_installed;

void olmoe_cleanup_run(void) {
    for (int i = 0; i < MAX_CLEANUP; i++)
        if (cleanup_paths[i]) unlink(cleanup_paths[i]);
    olmoe_unlink_locks(); /* an error exit skips atexit handlers (traces/h5util.c) */
}

/* one handler whichever registry installed it, so a command writing both a
 * file and a directory output loses neither's partial */
void olmoe_cleanup_on_signal(int sig) {
    /* unlink is async-signal-safe; the strings are never freed while registered */
    for (int i = 0; i < MAX_CLEANUP; i++)
        if (cleanup_paths[i]) unlink(cleanup_paths[i]);
    olmoe_outdir_unlink_partial();
    olmoe_unlink_locks();
    signal(sig, SIG_DFL);
    raise(sig);
}

void olmoe_cleanup_add(const char *path) {
    if (!handlers_installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = olmoe_cleanup_on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        /* SIGINT belongs to the command when it wants a clean stop (capture) */
        struct sigaction old;
        sigaction(SIGINT, NULL, &old);
        if (old.sa_handler == SIG_DFL) sigaction(SIGINT, &sa, NULL);
        /* past a file-size limit a write then fails (EFBIG) as on a full
         * disk, and the error path removes the partial, instead of a
         * signal killing the command with its partial and lock left */
        signal(SIGXFSZ, SIG_IGN);
        handlers_installed = 1;
    }
    for (int i = 0; i < MAX_CLEANUP; i++)
        if (!cleanup_paths[i]) {
            cleanup_paths[i] = xstrdup(path);
            return;
        }
    die("too many temporary outputs registered for cleanup");
}

void olmoe_cleanup_remove(const char *path) {
    for (int i = 0; i < MAX_CLEANUP; i++)
        if (cleanup_paths[i] && strcmp(cleanup_paths[i], path) == 0) {
            char *p = cleanup_paths[i];
            cleanup_paths[i] = NULL;
            free(p);
        }
}

/* ---- outputs ---- */

int olmoe_fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return olmoe_errorf("%s: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL) return olmoe_errorf("%s: fsync: %s", path, strerror(e));
    return 0;
}

/* ---- inputs, which no output may replace ---- */

/* Every file a command reads (traces, results files, nulls) is recorded, so
 * that --out naming one of them, with --force, is refused instead of
 * replacing the data the command reads (a trace is never written after its
 * capture). Paths are compared by their directory's real path and their
 * name, so that the check holds for outputs not there yet too, and by
 * device and inode where both exist. */
static struct input {
    char *canon; /* realpath(dirname) + "/" + basename */
    dev_t dev;
    ino_t ino;
    int exists;
} *inputs;
static int n_inputs, cap_inputs;

static char *canon_path(const char *path) {
    char *dcopy = xstrdup(path), *bcopy = xstrdup(path);
    char *dir = realpath(dirname(dcopy), NULL);
    char *c = dir ? olmoe_path_join(dir, basename(bcopy)) : xstrdup(path);
    free(dir);
    free(dcopy);
    free(bcopy);
    return c;
}

void olmoe_input_add(const char *path) {
    if (!path || !*path || olmoe_input_named(path)) return;
    if (n_inputs == cap_inputs) { /* every one kept: a merge may read hundreds of shards */
        cap_inputs = cap_inputs ? 2 * cap_inputs : 16;
        inputs = xrealloc(inputs, (size_t)cap_inputs * sizeof *inputs);
    }
    struct stat st;
    inputs[n_inputs].canon = canon_path(path);
    inputs[n_inputs].exists = stat(path, &st) == 0;
    if (inputs[n_inputs].exists) inputs[n_inputs].dev = st.st_dev, inputs[n_inputs].ino = st.st_ino;
    n_inputs++;
}

int olmoe_input_named(const char *path) {
    if (n_inputs == 0) return 0;
    struct stat st;
    int exists = stat(path, &st) == 0;
    char *c = canon_path(path);
    int hit = 0;
    for (int i = 0; i < n_inputs && !hit; i++)
        hit = strcmp(c, inputs[i].canon) == 0 ||
              (exists && inputs[i].exists && st.st_dev == inputs[i].dev && st.st_ino == inputs[i].ino);
    free(c);
    return hit;
}

static int refuse_input(const char *final) {
    return olmoe_errorf("%s: is an input of this command (a trace, its results, a null): "
                        "write the output elsewhere", final);
}

int olmoe_out_begin(olmoe_out *o, const char *final, int force) {
    memset(o, 0, sizeof *o);
    if (!final || !*final) return olmoe_errorf("empty output file name");
    if (olmoe_out_is_stdout(final))
        return olmoe_errorf("'-' (standard output) is for text outputs (--json, --csv): name a file "
                            "for this one");
    if (olmoe_input_named(final)) return refuse_input(final);
    /* before anything else: the partial may be another writer's */
    if (olmoe_lock_output(final) != 0) return -1;
    struct stat st;
    if (stat(final, &st) == 0 && S_ISDIR(st.st_mode)) {
        olmoe_unlock_output(final);
        return olmoe_errorf("%s: exists and is a directory (--force replaces files only)", final);
    }
    if (!force && olmoe_file_exists(final))
        return olmoe_errorf("%s: already exists (use --force to overwrite)", final);
    size_t n = strlen(final);
    o->final = xstrdup(final);
    o->tmp = xmalloc(n + sizeof ".partial");
    memcpy(o->tmp, final, n);
    memcpy(o->tmp + n, ".partial", sizeof ".partial");
    if (unlink(o->tmp) != 0 && errno != ENOENT) {
        int e = errno;
        olmoe_out_abort(o);
        return olmoe_errorf("%s: cannot remove stale partial output: %s", final, strerror(e));
    }
    /* fail now, not after an hour of work, when the directory is not writable */
    char *dcopy = xstrdup(final);
    const char *dir = dirname(dcopy);
    if (access(dir, W_OK) != 0) {
        olmoe_errorf("%s: cannot write in '%s': %s", final, dir, strerror(errno));
        free(dcopy);
        olmoe_out_abort(o);
        return -1;
    }
    free(dcopy);
    olmoe_cleanup_add(o->tmp);
    return 0;
}

int olmoe_out_is_stdout(const char *name) { return name && strcmp(name, "-") == 0; }

int olmoe_out_stdout_taken(const char *json, const char *csv) {
    if (olmoe_out_is_stdout(json) && olmoe_out_is_stdout(csv))
        return olmoe_errorf("--json - and --csv -: only one output can go to standard output");
    return olmoe_out_is_stdout(json) || olmoe_out_is_stdout(csv);
}

int olmoe_out_begin_text(olmoe_out *o, const char *final, int force) {
    if (!olmoe_out_is_stdout(final)) return olmoe_out_begin(o, final, force);
    memset(o, 0, sizeof *o);
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    char *tmp = olmoe_path_join(dir, "olmoe-stdout.XXXXXX");
    int fd = mkstemp(tmp);
    if (fd < 0) {
        olmoe_errorf("%s: cannot create a temporary file for standard output: %s", tmp,
                     strerror(errno));
        free(tmp);
        return -1;
    }
    close(fd);
    o->final = xstrdup("standard output");
    o->tmp = tmp;
    o->to_stdout = 1;
    olmoe_cleanup_add(o->tmp);
    return 0;
}

int olmoe_fclose_out(FILE *f, const char *path) {
    /* a failed write leaves the stream's error flag, and its errno is lost by
     * the time anyone looks: flush first, the data still buffered fails again
     * and says why */
    errno = 0;
    int bad = fflush(f) != 0 || ferror(f), why = errno;
    if (fclose(f) != 0 && !bad) bad = 1, why = errno;
    if (!bad) return 0;
    return olmoe_errorf("%s: write error: %s", path, why ? strerror(why) : "an earlier write failed");
}

/* the finished temporary file onto stdout, then removed */
static int commit_stdout(olmoe_out *o) {
    FILE *f = fopen(o->tmp, "rb");
    if (!f) return olmoe_errorf("%s: %s", o->tmp, strerror(errno));
    char buf[65536];
    size_t n;
    int bad = 0;
    errno = 0;
    while (!bad && (n = fread(buf, 1, sizeof buf, f)) > 0) bad = fwrite(buf, 1, n, stdout) != n;
    bad |= ferror(f);
    int why = errno;
    fclose(f);
    if (!bad && (fflush(stdout) != 0 || ferror(stdout))) bad = 1, why = errno;
    if (bad) return olmoe_errorf("standard output: write error: %s", why ? strerror(why) : "an earlier write failed");
    olmoe_out_abort(o); /* the temporary file has done its job */
    return 0;
}

int olmoe_out_commit(olmoe_out *o) {
    if (o->to_stdout) return commit_stdout(o);
    /* again: an input opened after the output was begun */
    if (olmoe_input_named(o->final)) return refuse_input(o->final);
    if (olmoe_fsync_path(o->tmp) != 0) return -1;
    if (rename(o->tmp, o->final) != 0)
        return olmoe_errorf("%s: rename from %s: %s", o->final, o->tmp, strerror(errno));
    olmoe_cleanup_remove(o->tmp);
    olmoe_unlock_output(o->final);
    free(o->tmp);
    free(o->final);
    o->tmp = o->final = NULL;
    return 0;
}

void olmoe_out_abort(olmoe_out *o) {
    if (o->tmp) {
        unlink(o->tmp);
        olmoe_cleanup_remove(o->tmp);
    }
    if (o->final && !o->to_stdout) olmoe_unlock_output(o->final);
    free(o->tmp);
    free(o->final);
    o->tmp = o->final = NULL;
}
