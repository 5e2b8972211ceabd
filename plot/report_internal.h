/* report_internal.h (internal to plot/): what the files of plot/ share (not installed, not public):
 * HDF5 reading helpers for optional results, the report's output context,
 * figure scripts, and the figure and markdown writers. */
#ifndef OLMOE_REPORT_INTERNAL_H
#define OLMOE_REPORT_INTERNAL_H

#include <stdio.h>
#include <sys/types.h>

#include "common.h"
#include "plot.h"

/* ---- HDF5 (report_h5.c) ---- */
/* a string dataset [n] (variable or fixed length); caller frees */
int rep_h5_strings(hid_t loc, const char *path, char ***out, int64_t *n);
void rep_free_strings(char **s, int64_t n);
/* optional attributes: NaN / fallback / fresh "" when absent */
double rep_attr_f64(hid_t loc, const char *obj, const char *name);
int64_t rep_attr_i64(hid_t loc, const char *obj, const char *name, int64_t fallback);
char *rep_attr_str(hid_t loc, const char *obj, const char *name);
/* reads a dataset of exactly the expected shape (rank, dims); 0 absent, 1 read,
 * -1 present with another shape or unreadable (message names file and path) */
int rep_h5_read_shape(hid_t loc, const char *file, const char *path, olmoe_h5_kind kind,
                      int rank, const int64_t *dims, void *out);

/* ---- the commands that stored the results (report_prov.c) ---- */
/* d->rec from every input's /provenance records */
int rep_load_records(olmoe_report_data *d);
void rep_free_records(olmoe_report_data *d);
/* the "## Commands" section of report.md */
void rep_md_records(FILE *md, const olmoe_report_data *d);

/* ---- error bars and headroom (report_paper.c): sections of report.md ---- */
int rep_paper_sections(FILE *md, const olmoe_report_data *d);

/* ---- policy ids (report_ids.c) ---- */
/* fills family, k, alpha, min_k, max_k, label and sweep_key from p->id */
void rep_describe_policy(olmoe_report_policy *p);
/* qsort order: top-k by k, then BH by max_k and alpha, then the other families */
int rep_cmp_policy(const void *a, const void *b);

/* ---- the output: directory, gnuplot, figures (report_gp.c) ---- */
enum { REP_PNG = 1, REP_SVG = 2, REP_PDF = 4 };
/* gnuplot's own messages (warnings included), per figure, in the report */
#define REP_GNUPLOT_LOG "gnuplot.log"

typedef struct {
    char name[96];     /* file stem: name.gp, name.png, ... */
    char title[400];
    char section[32];  /* where report.md shows it */
    char key[320];     /* the result it draws, when one of several (analyses: its path) */
    int ok;            /* every format drawn */
} rep_fig;

typedef struct {
    pid_t pid;
    int fig;           /* index into figs */
} rep_job;

typedef struct {
    olmoe_outdir od;
    const char *gnuplot;
    char png_term[16]; /* "pngcairo", or "png" when cairo is missing */
    int formats;       /* REP_* */
    int jobs;
    rep_job *run;      /* [jobs] */
    int n_run;
    rep_fig *figs;
    int n_figs, cap_figs;
    int quiet;
    int n_failed;
    char *first_error;
    int log_used;      /* gnuplot.log holds gnuplot's messages */
    int n_files;       /* data and script files written */
    char **files;      /* [n_files] their names, for report.md's list */
} rep_out;

int rep_out_begin(rep_out *o, const olmoe_report_opts *opts);
int rep_out_commit(rep_out *o);
void rep_out_abort(rep_out *o);
/* a data or text file in the report: opened for writing, registered */
FILE *rep_file(rep_out *o, const char *name);
/* closes f, -1 + message on a write error */
int rep_close(FILE *f, const char *name);

/* Starts figure name: writes name.gp's header (formats loop, terminal of
 * w x h pixels, common style) and returns the script, to which the caller
 * writes the body. */
FILE *rep_fig_begin(rep_out *o, const char *name, const char *section, const char *title, int w,
                    int h);
/* ends the script and starts gnuplot on it (in the background) */
int rep_fig_end(rep_out *o, FILE *gp);
/* waits for every gnuplot run; -1 + message naming the first failed figure */
int rep_wait_all(rep_out *o);

/* gnuplot single-quoted string literal of s ('' doubles a quote) into buf */
const char *rep_gq(const char *s, char *buf, size_t n);
/* s made a file name: [A-Za-z0-9-], runs of others one '_' */
void rep_safe_name(const char *s, char *buf, size_t n);
/* a data file value: "%.10g", "NaN" for NaN */
void rep_put_num(FILE *f, double v);
/* n values so, separated by one space */
void rep_put_row(FILE *f, const double *v, int n);
/* starts block i of a data file (gnuplot's index i): two blank lines before
 * every block but the first, then the comment line "# <fmt ...>" */
void rep_block(FILE *f, int i, const char *fmt, ...) OLMOE_PRINTF(3, 4);

/* ---- small multiples: one panel per layer, policy or block ---- */
/* rows and columns for n panels: one row up to one_row panels, else a square-ish grid */
void rep_panel_grid(int n, int one_row, int *rows, int *cols);
/* the multiplot of rows x cols panels in a w x h figure, the title over them:
 * left_px of margin for the y labels, gap_px between the columns */
void rep_panel_layout(FILE *gp, int rows, int cols, const char *title, int w, int h, double left_px,
                      double gap_px);
/* the axis labels of panel i of n: the x label under the bottom row only, the
 * y label left of the first column only (both gnuplot literals, e.g. "'layer'") */
void rep_panel_labels(FILE *gp, int i, int n, int cols, const char *xlabel, const char *ylabel);

/* ---- figures (fig_*.c): each returns 0 (also when it has nothing to draw) or -1 ---- */
int rep_fig_quality(rep_out *o, const olmoe_report_data *d);
int rep_fig_sweep(rep_out *o, const olmoe_report_data *d);
int rep_fig_fidelity(rep_out *o, const olmoe_report_data *d);
int rep_fig_experts(rep_out *o, const olmoe_report_data *d);
int rep_fig_load(rep_out *o, const olmoe_report_data *d, const char *load_policy);
int rep_fig_null(rep_out *o, const olmoe_report_data *d);
int rep_fig_analyze(rep_out *o, const olmoe_report_data *d);
int rep_fig_match(rep_out *o, const olmoe_report_data *d);

/* policy encodings shared by the figures: BH alpha -> colour index, max_k -> point type */
int rep_distinct(const double *v, int n, double *out /* [n] sorted distinct */);
int rep_index_of(const double *v, int n, double x);
extern const int rep_point_types[];   /* filled shapes, cycled */
extern const int rep_n_point_types;
extern const char *const rep_colors[]; /* Okabe-Ito, cycled */
extern const int rep_n_colors;
/* n colours along a dark-to-light sequential ramp (alpha) into out[i] "#rrggbb" */
void rep_ramp(int i, int n, char out[8]);
/* the distinct alphas / max_ks of the report's BH policies, ascending; out holds n_policies */
int rep_bh_alphas(const olmoe_report_data *d, double *out);
int rep_bh_maxks(const olmoe_report_data *d, double *out);
/* gnuplot line/point style of policy i: "lc rgb '#..' pt N ps S dt D lw W" */
void rep_style(const olmoe_report_data *d, int i, char *buf, size_t n);
/* Pareto front of (x, y) (minimise both): flags[i] = 1 when no other point has
 * x <= and y <= with one strict; NaN points are never on it */
void rep_pareto(const double *x, const double *y, int n, int *flags);

/* report.md's matched-compute tables (report_match.c) */
int rep_match_table(FILE *md, const olmoe_report_data *d);

/* ---- report.md (report_md.c) ---- */
int rep_write_md(rep_out *o, const olmoe_report_data *d, const olmoe_report_opts *opts);

#endif
