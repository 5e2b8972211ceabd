/* outdir.c: directory outputs written under "<dir>.partial/" and renamed into
 * place when complete (see outdir.h). One directory output per process at a
 * time: the cleanup registry below is process-wide, like files.c's. */
#include "cleanup.h"
#include "common.h"
#include "outdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Registered paths live in fixed blocks that never move, so the signal handler
 * can walk them while the main program appends. */
#define BLOCK 64
typedef struct block {
    char *path[BLOCK];
    struct block *next;
} block;
static block *reg_head;
static char *reg_dir;               /* the partial directory, NULL when none */
static volatile sig_atomic_t reg_live;
static int hooks_installed;

static void remove_registered(void) {
    for (block *b = reg_head; b; b = b->next)
        for (int i = 0; i < BLOCK; i++)
            if (b->path[i]) unlink(b->path[i]);
    if (reg_dir) rmdir(reg_dir);
}

void olmoe_outdir_unlink_partial(void) {
    if (reg_live) remove_registered();
}

static int remove_dir(const char *dir);

/* die() and exit(): reading the directory is safe here, so unregistered
 * leftovers go too */
static void at_exit(void) {
    if (!reg_live) return;
    remove_registered();
    if (reg_dir && olmoe_file_exists(reg_dir)) remove_dir(reg_dir);
}

static void reg_clear(void) {
    reg_live = 0;
    block *b = reg_head;
    reg_head = NULL;
    while (b) {
        block *n = b->next;
        for (int i = 0; i < BLOCK; i++) free(b->path[i]);
        free(b);
        b = n;
    }
    free(reg_dir);
    reg_dir = NULL;
}

static void reg_add(const char *path) {
    for (block *b = reg_head; b; b = b->next)
        for (int i = 0; i < BLOCK; i++)
            if (b->path[i] && strcmp(b->path[i], path) == 0) return;
    for (block *b = reg_head; b; b = b->next)
        for (int i = 0; i < BLOCK; i++)
            if (!b->path[i]) {
                b->path[i] = xstrdup(path);
                return;
            }
    block *nb = xcalloc(1, sizeof *nb);
    nb->path[0] = xstrdup(path);
    nb->next = reg_head;
    reg_head = nb;
}

static void install_hooks(void) {
    if (hooks_installed) return;
    hooks_installed = 1;
    atexit(at_exit);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = olmoe_cleanup_on_signal;
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        sigaction(sigs[i], NULL, &old);
        if (old.sa_handler == SIG_DFL) sigaction(sigs[i], &sa, NULL);
    }
}

/* fn(dir, name, path, ctx) for each entry of dir but . and .., until one
 * returns non-zero; that value, or -1 + message when dir cannot be read */
typedef int (*entry_fn)(const char *dir, const char *name, const char *path, void *ctx);
static int each_entry(const char *dir, entry_fn fn, void *ctx) {
    DIR *d = opendir(dir);
    if (!d) return olmoe_errorf("%s: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = olmoe_path_join(dir, e->d_name);
        rc = fn(dir, e->d_name, p, ctx);
        free(p);
    }
    closedir(d);
    return rc;
}

typedef struct {
    const char *marker;
    int n_files, has_marker;
} scan_state;

static int scan_entry(const char *dir, const char *name, const char *path, void *ctx) {
    scan_state *s = ctx;
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return olmoe_errorf("%s: holds '%s', which is not a plain file; refusing to replace it", dir, name);
    s->n_files++;
    if (s->marker && !strcmp(name, s->marker)) s->has_marker = 1;
    return 0;
}

/* 0: only plain files (and the marker?) in dir; -1 + message otherwise.
 * *n_files and *has_marker say what is there. */
static int scan_dir(const char *dir, const char *marker, int *n_files, int *has_marker) {
    scan_state s = {marker, 0, 0};
    int rc = each_entry(dir, scan_entry, &s);
    *n_files = s.n_files;
    *has_marker = s.has_marker;
    return rc;
}

static int remove_entry(const char *dir, const char *name, const char *path, void *ctx) {
    (void)dir, (void)name, (void)ctx;
    if (unlink(path) != 0 && errno != ENOENT) return olmoe_errorf("%s: %s", path, strerror(errno));
    return 0;
}

/* removes the plain files of dir, then dir */
static int remove_dir(const char *dir) {
    int rc = each_entry(dir, remove_entry, NULL);
    if (rc == 0 && rmdir(dir) != 0) rc = olmoe_errorf("%s: %s", dir, strerror(errno));
    return rc;
}

/* an existing final directory may be replaced: force, plain files only, and
 * empty or holding the marker */
static int check_replaceable(const olmoe_outdir *o) {
    struct stat st;
    if (stat(o->final, &st) != 0) return 0;
    if (!o->force) return olmoe_errorf("%s: already exists (use --force to overwrite)", o->final);
    if (!S_ISDIR(st.st_mode)) return olmoe_errorf("%s: exists and is not a directory", o->final);
    int n, mark;
    if (scan_dir(o->final, o->marker, &n, &mark) != 0) return -1;
    if (n > 0 && o->marker && !mark)
        return olmoe_errorf("%s: not empty and has no %s, so it is not an earlier output; "
                            "refusing to replace it",
                            o->final, o->marker);
    return 0;
}

int olmoe_outdir_begin(olmoe_outdir *o, const char *final, const char *marker, int force) {
    memset(o, 0, sizeof *o);
    if (!final || !*final) return olmoe_errorf("empty output directory name");
    if (reg_live) return olmoe_errorf("%s: another directory output is being written", final);
    size_t n = strlen(final);
    while (n > 1 && final[n - 1] == '/') n--; /* "report/" -> "report" */
    o->final = xmalloc(n + 1);
    memcpy(o->final, final, n);
    o->final[n] = '\0';
    o->tmp = xmalloc(n + sizeof ".partial");
    memcpy(o->tmp, o->final, n);
    memcpy(o->tmp + n, ".partial", sizeof ".partial");
    o->marker = marker ? xstrdup(marker) : NULL;
    o->force = force;
    /* before anything else: the partial directory may be another writer's */
    if (olmoe_lock_output(o->final) != 0) goto fail;
    if (check_replaceable(o) != 0) goto fail;
    char *dcopy = xstrdup(o->final);
    const char *parent = dirname(dcopy);
    if (access(parent, W_OK) != 0) {
        olmoe_errorf("%s: cannot write in '%s': %s", o->final, parent, strerror(errno));
        free(dcopy);
        goto fail;
    }
    free(dcopy);
    struct stat st;
    if (lstat(o->tmp, &st) == 0) { /* a stale partial output of an interrupted run */
        int nf, mark;
        if (!S_ISDIR(st.st_mode)) {
            olmoe_errorf("%s: exists and is not a directory; remove it", o->tmp);
            goto fail;
        }
        if (scan_dir(o->tmp, NULL, &nf, &mark) != 0 || remove_dir(o->tmp) != 0) goto fail;
    }
    if (mkdir(o->tmp, 0777) != 0) {
        olmoe_errorf("%s: cannot create: %s", o->tmp, strerror(errno));
        goto fail;
    }
    install_hooks();
    reg_dir = xstrdup(o->tmp);
    reg_live = 1;
    return 0;
fail:
    olmoe_unlock_output(o->final);
    free(o->final);
    free(o->tmp);
    free(o->marker);
    memset(o, 0, sizeof *o);
    return -1;
}

char *olmoe_outdir_file(olmoe_outdir *o, const char *name) {
    char *p = olmoe_path_join(o->tmp, name);
    reg_add(p);
    return p;
}

void olmoe_outdir_expect(olmoe_outdir *o, const char *name) { free(olmoe_outdir_file(o, name)); }

void olmoe_outdir_unlink(olmoe_outdir *o, const char *name) {
    char *p = olmoe_path_join(o->tmp, name);
    unlink(p);
    free(p);
}

int olmoe_outdir_commit(olmoe_outdir *o) {
    for (block *b = reg_head; b; b = b->next)
        for (int i = 0; i < BLOCK; i++)
            if (b->path[i] && olmoe_file_exists(b->path[i]) && olmoe_fsync_path(b->path[i]) != 0)
                return -1;
    if (olmoe_fsync_path(o->tmp) != 0) return -1;
    /* checked again: the directory may have changed while we worked */
    if (check_replaceable(o) != 0) return -1;
    char *old = NULL;
    if (olmoe_file_exists(o->final)) {
        size_t n = strlen(o->final) + 32;
        old = xmalloc(n);
        snprintf(old, n, "%s.old-%ld", o->final, (long)getpid());
        if (rename(o->final, old) != 0) {
            int e = errno;
            free(old);
            return olmoe_errorf("%s: cannot move the old output aside: %s", o->final, strerror(e));
        }
    }
    if (rename(o->tmp, o->final) != 0) {
        int e = errno;
        if (old) rename(old, o->final);
        free(old);
        return olmoe_errorf("%s: rename from %s: %s", o->final, o->tmp, strerror(e));
    }
    reg_clear();
    int rc = 0;
    if (old) {
        rc = remove_dir(old);
        if (rc) olmoe_error_prefix("%s: the new output is in place, but the old one remains", o->final);
        free(old);
    }
    olmoe_unlock_output(o->final);
    free(o->final);
    free(o->tmp);
    free(o->marker);
    memset(o, 0, sizeof *o);
    return rc;
}

void olmoe_outdir_abort(olmoe_outdir *o) {
    if (o->tmp && reg_live) {
        remove_registered();
        if (olmoe_file_exists(o->tmp)) remove_dir(o->tmp);
    }
    reg_clear();
    if (o->final) olmoe_unlock_output(o->final);
    free(o->final);
    free(o->tmp);
    free(o->marker);
    memset(o, 0, sizeof *o);
}
