/* report_gp.c: the report directory and gnuplot. Each figure is a script
 * NAME.gp next to its data files; it loops over the output formats itself, so
 * `cd report && gnuplot NAME.gp` redraws every format without this program.
 * gnuplot runs as a child process (stdin from /dev/null, so it never waits
 * for a pager; stderr to a log read back after it exits), several at once, and
 * a figure counts only when gnuplot exits 0 and every output file is there. */
#include "report_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const ext_of[3] = {"png", "svg", "pdf"};

/* runs argv with stdin/stdout /dev/null and stderr to errpath (or /dev/null)
 * in directory dir (or here); returns the pid, -1 + message */
static pid_t spawn(char *const argv[], const char *dir, const char *errpath) {
    pid_t pid = fork();
    if (pid < 0) return olmoe_errorf("fork: %s", strerror(errno));
    if (pid == 0) {
        if (dir && chdir(dir) != 0) _exit(126);
        int nul = open("/dev/null", O_RDWR);
        int err = errpath ? open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0666) : nul;
        if (nul < 0 || err < 0) _exit(126);
        dup2(nul, 0);
        dup2(nul, 1);
        dup2(err, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int wait_status(pid_t pid) {
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

int olmoe_report_probe_gnuplot(const char *gnuplot) {
    static const char *const terms[] = {"pngcairo", "png", "svg", "pdfcairo"};
    int have = 0;
    for (int i = 0; i < 4; i++) {
        char cmd[64];
        snprintf(cmd, sizeof cmd, "set terminal %s", terms[i]);
        char *argv[] = {(char *)gnuplot, "-e", cmd, NULL};
        pid_t pid = spawn(argv, NULL, NULL);
        if (pid < 0) return -1;
        int rc = wait_status(pid);
        if (rc == 127)
            return olmoe_errorf("%s: cannot run it (install gnuplot, e.g. the Debian package "
                                "gnuplot-nox, or give --gnuplot PATH)",
                                gnuplot);
        if (rc == 0) have |= 1 << i;
    }
    return have;
}

static int parse_formats(const char *s, int *out) {
    *out = 0;
    const char *p = s;
    while (*p) {
        size_t n = strcspn(p, ",");
        int f = n == 3 && !strncmp(p, "png", 3)   ? REP_PNG
                : n == 3 && !strncmp(p, "svg", 3) ? REP_SVG
                : n == 3 && !strncmp(p, "pdf", 3) ? REP_PDF
                                                  : 0;
        if (!f) return olmoe_errorf("--format: unknown format '%.*s' (png, svg, pdf)", (int)n, p);
        *out |= f;
        p += n;
        if (*p == ',') p++;
    }
    return *out ? 0 : olmoe_errorf("--format: no format given");
}

int olmoe_report_check_formats(const char *list) {
    int want;
    return parse_formats(list, &want);
}

int rep_out_begin(rep_out *o, const olmoe_report_opts *opts) {
    memset(o, 0, sizeof *o);
    o->quiet = opts->quiet;
    o->gnuplot = opts->gnuplot ? opts->gnuplot : getenv("OLMOE_GNUPLOT");
    if (!o->gnuplot || !*o->gnuplot) o->gnuplot = "gnuplot";
    int want = 0;
    if (opts->formats && parse_formats(opts->formats, &want) != 0) return -1;
    int have = olmoe_report_probe_gnuplot(o->gnuplot);
    if (have < 0) return -1;
    if (!(have & 3)) return olmoe_errorf("%s: has neither the pngcairo nor the png terminal", o->gnuplot);
    if (have & 1) {
        strcpy(o->png_term, "pngcairo");
    } else {
        strcpy(o->png_term, "png");
        warnf("%s: no pngcairo terminal, the PNGs are drawn with the png (libgd) terminal: "
              "no anti-aliasing or transparency",
              o->gnuplot);
    }
    if (!opts->formats) want = REP_PNG | REP_SVG | ((have & 8) ? REP_PDF : 0);
    if ((want & REP_SVG) && !(have & 4)) return olmoe_errorf("%s: has no svg terminal", o->gnuplot);
    if ((want & REP_PDF) && !(have & 8))
        return olmoe_errorf("%s: has no pdfcairo terminal for --format pdf", o->gnuplot);
    o->formats = want;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    /* gnuplot spends most of its wall time starting up, not computing: twice the CPUs */
    long j = 2 * (ncpu < 1 ? 1 : ncpu);
    o->jobs = opts->jobs > 0 ? opts->jobs : (int)(j > 8 ? 8 : j);
    if (olmoe_outdir_begin(&o->od, opts->out, "report.md", opts->force) != 0) return -1;
    o->run = xcalloc((size_t)o->jobs, sizeof *o->run);
    return 0;
}

static void out_free(rep_out *o) {
    free(o->run);
    free(o->figs);
    free(o->first_error);
    for (int i = 0; i < o->n_files; i++) free(o->files[i]);
    free(o->files);
    memset(o, 0, sizeof *o);
}

int rep_out_commit(rep_out *o) {
    int rc = olmoe_outdir_commit(&o->od);
    out_free(o);
    return rc;
}

void rep_out_abort(rep_out *o) {
    for (int i = 0; i < o->n_run; i++) { /* our own children only */
        kill(o->run[i].pid, SIGTERM);
        wait_status(o->run[i].pid);
    }
    o->n_run = 0;
    olmoe_outdir_abort(&o->od);
    out_free(o);
}

FILE *rep_file(rep_out *o, const char *name) {
    char *p = olmoe_outdir_file(&o->od, name);
    FILE *f = fopen(p, "w");
    if (!f) olmoe_errorf("%s: cannot create: %s", p, strerror(errno));
    free(p);
    if (f) {
        o->files = xrealloc(o->files, (size_t)(o->n_files + 1) * sizeof *o->files);
        o->files[o->n_files++] = xstrdup(name);
    }
    return f;
}

int rep_close(FILE *f, const char *name) {
    return olmoe_fclose_out(f, name);
}

/* ---- figure scripts ---- */

static rep_fig *cur_fig(rep_out *o) { return &o->figs[o->n_figs - 1]; }

FILE *rep_fig_begin(rep_out *o, const char *name, const char *section, const char *title, int w,
                    int h) {
    for (int i = 0; i < o->n_figs; i++)
        if (!strcmp(o->figs[i].name, name)) {
            olmoe_errorf("figure %s: drawn twice (a bug)", name);
            return NULL;
        }
    if (o->n_figs == o->cap_figs)
        o->figs = xrealloc(o->figs, (size_t)(o->cap_figs = o->cap_figs ? 2 * o->cap_figs : 16) * sizeof *o->figs);
    rep_fig *fg = &o->figs[o->n_figs++];
    memset(fg, 0, sizeof *fg);
    snprintf(fg->name, sizeof fg->name, "%s", name);
    snprintf(fg->section, sizeof fg->section, "%s", section);
    snprintf(fg->title, sizeof fg->title, "%s", title);
    char file[128];
    snprintf(file, sizeof file, "%s.gp", name);
    FILE *gp = rep_file(o, file);
    if (!gp) return NULL;
    char fmts[16] = "";
    for (int i = 0; i < 3; i++)
        if (o->formats & (1 << i))
            snprintf(fmts + strlen(fmts), sizeof fmts - strlen(fmts), "%s%s", *fmts ? " " : "", ext_of[i]);
    /* the SVG's id: an identifier (gnuplot prefixes its element ids with it) */
    char svg_id[100];
    rep_safe_name(name, svg_id, sizeof svg_id);
    for (char *c = svg_id; *c; c++)
        if (*c == '-') *c = '_';
    fprintf(gp, "# %s.gp: %s\n", name, title);
    fprintf(gp, "# Written by olmoe-report %s. Draws %s.{%s} from the data files next to it.\n",
            OLMOE_VERSION, name, fmts);
    fprintf(gp, "# Run it from this directory:  gnuplot %s.gp\n", name);
    fprintf(gp, "# One format only:             gnuplot -e 'formats=\"png\"' %s.gp\n", name);
    fprintf(gp, "if (!exists(\"formats\")) formats = \"%s\"\n", fmts);
    fprintf(gp, "do for [fmt in formats] {\n");
    fprintf(gp, "reset\n");
    fprintf(gp,
            "if (fmt eq \"png\") { set terminal %s size %d,%d noenhanced font \"DejaVu Sans,12\" "
            "linewidth 1.4 background rgb \"white\" }\n",
            o->png_term, w, h);
    fprintf(gp,
            "if (fmt eq \"svg\") { set terminal svg size %d,%d noenhanced font \"DejaVu Sans,12\" "
            "linewidth 1.4 background rgb \"white\" name '%s' }\n",
            w, h, svg_id);
    fprintf(gp,
            "if (fmt eq \"pdf\") { set terminal pdfcairo size %.2fin,%.2fin noenhanced font "
            "\"DejaVu Sans,12\" linewidth 1.4 }\n",
            w / 96.0, h / 96.0);
    fprintf(gp, "set output '%s.'.fmt\n", name);
    fprintf(gp, "set encoding utf8\n");
    fprintf(gp, "set border 3 lc rgb '#404040'\n");
    fprintf(gp, "set tics nomirror out scale 0.6\n");
    fprintf(gp, "set style line 100 lt 1 lc rgb '#e4e4e4' lw 1 dt 1\n");
    fprintf(gp, "set grid ls 100\n");
    fprintf(gp, "set key box lc rgb '#bbbbbb' opaque samplen 2.5 spacing 1.1\n");
    fprintf(gp, "set style fill solid 0.85 border -1\n");
    fprintf(gp, "set datafile missing 'NaN'\n");
    for (int i = 0; i < 3; i++)
        if (o->formats & (1 << i)) {
            char out[128];
            snprintf(out, sizeof out, "%s.%s", name, ext_of[i]);
            olmoe_outdir_expect(&o->od, out);
        }
    return gp;
}

/* gnuplot's messages for one figure, appended to gnuplot.log in the report */
static void keep_log(rep_out *o, const char *fig, const char *text) {
    if (!text || !*text) return;
    if (!o->log_used) {
        olmoe_outdir_expect(&o->od, REP_GNUPLOT_LOG);
        o->log_used = 1;
    }
    char *path = olmoe_path_join(o->od.tmp, REP_GNUPLOT_LOG);
    FILE *f = fopen(path, "a");
    free(path);
    if (!f) return; /* the log only explains; a figure does not depend on it */
    fprintf(f, "== %s.gp ==\n%s%s", fig, text, text[strlen(text) - 1] == '\n' ? "" : "\n");
    fclose(f);
}

static int reap_one(rep_out *o, int blocking) {
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, blocking ? 0 : WNOHANG);
        if (pid == 0) return 0;
        if (pid < 0) {
            if (errno == EINTR) continue;
            return olmoe_errorf("waitpid: %s", strerror(errno));
        }
        int j = -1;
        for (int i = 0; i < o->n_run; i++)
            if (o->run[i].pid == pid) j = i;
        if (j < 0) continue; /* not a gnuplot of ours */
        rep_fig *fg = &o->figs[o->run[j].fig];
        o->run[j] = o->run[--o->n_run];
        int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);

        char log[128], *lpath, *text = NULL;
        snprintf(log, sizeof log, ".%s.log", fg->name);
        lpath = olmoe_path_join(o->od.tmp, log);
        olmoe_read_file(lpath, &text, NULL);
        unlink(lpath);
        free(lpath);
        keep_log(o, fg->name, text);
        char why[400] = "";
        /* gnuplot's own messages go to gnuplot.log, never to the terminal
         * ("Skipping data file with no valid points" is a warning, not news);
         * the first error explains a failure */
        for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n")) {
            while (*line == ' ') line++;
            if (!*line || *line == '^' || strstr(line, "warning:")) continue;
            if (!*why) snprintf(why, sizeof why, "%s", line);
        }
        free(text);
        int missing = -1;
        if (rc == 0)
            for (int i = 0; i < 3 && missing < 0; i++)
                if (o->formats & (1 << i)) {
                    char out[128];
                    snprintf(out, sizeof out, "%s.%s", fg->name, ext_of[i]);
                    char *p = olmoe_path_join(o->od.tmp, out);
                    struct stat sb;
                    if (stat(p, &sb) != 0 || sb.st_size == 0) missing = i;
                    free(p);
                }
        if (rc == 0 && missing < 0) {
            fg->ok = 1;
        } else {
            o->n_failed++;
            char msg[700];
            if (rc == 127)
                snprintf(msg, sizeof msg, "%s.gp: cannot run %s", fg->name, o->gnuplot);
            else if (rc != 0)
                snprintf(msg, sizeof msg, "%s.gp: gnuplot exited with status %d%s%s", fg->name, rc,
                         *why ? ": " : "", why);
            else
                snprintf(msg, sizeof msg, "%s.gp: gnuplot wrote no %s.%s", fg->name, fg->name,
                         ext_of[missing]);
            if (!o->first_error) {
                size_t at = strlen(msg);
                if (o->log_used)
                    snprintf(msg + at, sizeof msg - at, " (gnuplot's messages: %s/%s)", o->od.final,
                             REP_GNUPLOT_LOG);
                o->first_error = xstrdup(msg);
            }
        }
        return 1;
    }
}

int rep_fig_end(rep_out *o, FILE *gp) {
    rep_fig *fg = cur_fig(o);
    fprintf(gp, "set output\n}\n");
    char file[128];
    snprintf(file, sizeof file, "%s.gp", fg->name);
    if (rep_close(gp, file) != 0) return -1;
    while (o->n_run >= o->jobs)
        if (reap_one(o, 1) < 0) return -1;
    char log[128];
    snprintf(log, sizeof log, ".%s.log", fg->name);
    olmoe_outdir_expect(&o->od, log);
    char *argv[] = {(char *)o->gnuplot, file, NULL};
    pid_t pid = spawn(argv, o->od.tmp, log);
    if (pid < 0) return -1;
    o->run[o->n_run].pid = pid;
    o->run[o->n_run].fig = o->n_figs - 1;
    o->n_run++;
    return 0;
}

int rep_wait_all(rep_out *o) {
    while (o->n_run > 0)
        if (reap_one(o, 1) < 0) return -1;
    if (o->n_failed)
        return olmoe_errorf("%s%s", o->first_error,
                            o->n_failed > 1 ? " (and more figures failed)" : "");
    return 0;
}

/* ---- small helpers ---- */

const char *rep_gq(const char *s, char *buf, size_t n) {
    size_t o = 0;
    if (n < 3) return "";
    buf[o++] = '\'';
    for (; *s && o + 3 < n; s++) {
        if (*s == '\'') buf[o++] = '\'';
        if (*s == '\n') continue;
        buf[o++] = *s;
    }
    buf[o++] = '\'';
    buf[o] = '\0';
    return buf;
}

void rep_safe_name(const char *s, char *buf, size_t n) {
    size_t o = 0;
    int last_us = 0;
    for (; *s && o + 1 < n; s++) {
        char c = *s;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (ok) {
            buf[o++] = c;
            last_us = 0;
        } else if (!last_us && o > 0) {
            buf[o++] = '_';
            last_us = 1;
        }
    }
    while (o > 0 && buf[o - 1] == '_') o--;
    buf[o] = '\0';
}

void rep_put_num(FILE *f, double v) {
    if (v != v)
        fputs("NaN", f);
    else
        fprintf(f, "%.10g", v);
}

void rep_put_row(FILE *f, const double *v, int n) {
    for (int i = 0; i < n; i++) {
        if (i) fputc(' ', f);
        rep_put_num(f, v[i]);
    }
}

void rep_block(FILE *f, int i, const char *fmt, ...) {
    fputs(i ? "\n\n# " : "# ", f);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
}

/* ---- small multiples ---- */

void rep_panel_grid(int n, int one_row, int *rows, int *cols) {
    if (n <= one_row) {
        *rows = 1;
        *cols = n;
        return;
    }
    int c = 1;
    while (c * c < n) c++;
    *cols = c;
    *rows = (n + c - 1) / c;
}

void rep_panel_layout(FILE *gp, int rows, int cols, const char *title, int w, int h, double left_px,
                      double gap_px) {
    char q[1024];
    fprintf(gp, "set multiplot layout %d,%d title %s font ',15' margins %.3f,0.98,%.3f,%.3f spacing %.3f,%.3f\n",
            rows, cols, rep_gq(title, q, sizeof q), left_px / w, 60.0 / h, 1 - 95.0 / h, gap_px / w, 80.0 / h);
}

void rep_panel_labels(FILE *gp, int i, int n, int cols, const char *xlabel, const char *ylabel) {
    fprintf(gp, "set xlabel %s\nset ylabel %s\n", i + cols >= n ? xlabel : "''", i % cols == 0 ? ylabel : "''");
}
