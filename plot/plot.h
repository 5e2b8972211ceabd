/* plot.h: the plot layer, the one public header of plot/, the top layer:
 * olmoe-report, figures (gnuplot) and report.md from results in HDF5.
 *
 *   olmoe_report_opts o = OLMOE_REPORT_OPTS_DEFAULT;
 *   const char *in[] = {"run.h5"};
 *   o.inputs = in; o.n_inputs = 1; o.kde = "null.h5"; o.out = "report"; o.force = 1;
 *   olmoe_report_data d;
 *   if (olmoe_report_load(&d, &o) != 0) die("%s", olmoe_error());   // reads every result
 *   if (olmoe_report_write(&d, &o) != 0) die("%s", olmoe_error());  // report/ complete or absent
 *   olmoe_report_data_free(&d);
 *
 * Inputs are traces (olmoe-trace(5)) holding results, or results files that
 * hold the same groups at their root:
 *   /replay/<policy id>/, /exact/<policy id>/  replay and exact results (contracts:
 *                                      attributes perplexity, accuracy, mean_k, ...;
 *                                      k_hist [L, E+1], load [L, E], mean_k_layer [L],
 *                                      groups/<name>/ per document group)
 *   /stats/<policy id>/                 olmoe-replay --mode stats (olmoe-replay(1))
 *   /validate                           replay against exact, a table over policies
 *   /analyze/<analysis>/<name>/         olmoe-analyze (olmoe-analyze(1))
 *   /match                              matched compute (olmoe-replay --match-k; report_match.c)
 * A policy's results of each kind are taken from the first input that has
 * them. The provenance comes from the first trace among the inputs, else from
 * the trace a results file names (its "trace" attribute) when that opens.
 *
 * Every number in report.md is read from these groups (nothing is recomputed
 * except what the tables label as derived: Δ vs baseline, load CV when a
 * result lacks it), and each figure's data file holds exactly what is drawn.
 */
#ifndef OLMOE_PLOT_H
#define OLMOE_PLOT_H

#include <hdf5.h>
#include <stdint.h>

#include "kde.h"
#include "traces.h"

typedef enum {
    OLMOE_REPORT_REPLAY = 0, /* frozen-attention replay */
    OLMOE_REPORT_EXACT,      /* exact forward pass */
    OLMOE_REPORT_STATS,      /* routing statistics on the captured logits */
    OLMOE_REPORT_KIND_COUNT
} olmoe_report_kind;
/* "replay", "exact", "stats": the group names */
extern const char *const olmoe_report_kind_names[OLMOE_REPORT_KIND_COUNT];

/* One policy's results of one kind. Doubles are NaN when the file lacks them. */
typedef struct {
    int present;
    const char *file;        /* the input it came from */
    char *routing, *device;  /* replay/exact attributes, "" when absent */
    int64_t n_scored;        /* -1 when absent (stats) */
    double seconds, nll_sum, perplexity, accuracy, mean_k, sd_k, share_min_k, share_max_k,
        compute_saved, tokens_per_second, baseline_perplexity, coverage, load_cv;
    int64_t *k_hist;       /* [L, E + 1] token-layers by experts used; NULL when absent */
    int64_t *load;         /* [L, E] token-layers per expert; NULL when absent */
    double *mean_k_layer;  /* [L] (stats: its mean_k dataset); NULL when absent */
    double *load_cv_layer; /* [L] stats' load_cv, else computed from load; NULL when absent */
    int n_groups;
    char **group_names;    /* [n_groups] */
    double *group_ppl, *group_mean_k, *group_acc; /* [n_groups] */
    int64_t *group_n;      /* [n_groups] scored tokens (replay), -1 when absent */
} olmoe_report_result;

typedef struct {
    char *id;          /* canonical policy id, the group name */
    char family[32];   /* text before '(' */
    char label[160];   /* short form for legends: "top-8", "bh α=0.1 max_k=8" */
    char *sweep_key;   /* the id without alpha: policies that differ only in alpha */
    double k, alpha;   /* NaN when the id has none */
    int min_k, max_k;  /* from the id (topk: k), 0 when unknown */
    int selected;      /* drawn in the per-policy figures */
    olmoe_report_result res[OLMOE_REPORT_KIND_COUNT];
} olmoe_report_policy;

/* /validate (olmoe-replay --validate) */
typedef struct {
    int present;
    const char *file;
    int n;
    char **policy;                        /* [n] */
    double *replay_ppl, *exact_ppl, *rel_diff, *nll_corr, *nll_mad, *replay_seconds,
        *exact_seconds;                   /* [n] */
    int ranking_agrees;                   /* -1 when absent */
    double kendall_tau;
} olmoe_report_validate;

/* a stored olmoe-analyze result: /analyze/<analysis>/<name> in an input */
typedef struct {
    char *analysis, *name;     /* name: the result's key ("topk(k=4,norm=model)") */
    int input;                 /* index into inputs */
    char *path;                /* its group: "analyze/<analysis>/topk_k_4_norm_model" */
} olmoe_report_analysis;

/* a provenance line: what ran, and its command line */
typedef struct {
    char *what, *command;
} olmoe_report_command;

/* a /provenance/<n> record of an input: the command that stored results */
typedef struct {
    int input;                 /* index into inputs */
    int64_t n;
    char *command;             /* argv joined, shell-quoted */
    char *tool_version, *created;
    char *inputs;              /* "role path (checksum), ..." */
    char *made;                /* the results that point to it, ", "-joined ("" if none) */
} olmoe_report_record;

typedef struct {
    int n_inputs;
    char **inputs;           /* [n_inputs] paths */
    hid_t *h5;               /* [n_inputs] open files (a trace's own handle for traces) */
    olmoe_trace **traces;    /* [n_inputs] the trace handle, or NULL for results files */
    olmoe_trace *trace;      /* provenance trace (may be one of traces[], or opened apart) */
    int own_trace;           /* trace was opened apart: close it */
    char *trace_path;
    int L, E, top_k;         /* from the trace, else from the results' shapes */
    char *baseline_id;       /* "topk(k=<top_k>,norm=model)" */
    double baseline_ppl;     /* the trace's perplexity, else results' baseline_perplexity */
    int n_policies;
    olmoe_report_policy *pol; /* [n_policies], topk first (by k), then bh, then the rest */
    int n_selected;
    olmoe_report_validate val; /* the first input's /validate (the fidelity figure) */
    int n_more_val;
    olmoe_report_validate *more_val; /* [n_more_val]: the other inputs' /validate */
    char *kde_path;
    olmoe_kde_null null;     /* --kde */
    int has_null;
    int n_analyses;
    olmoe_report_analysis *an; /* [n_analyses] */
    int n_matches;
    olmoe_report_analysis *match; /* [n_matches] an input's /match table */
    int n_commands;
    olmoe_report_command *cmd; /* [n_commands] */
    int n_records;
    olmoe_report_record *rec; /* [n_records] every input's /provenance records */
    char *replay_check;      /* replay's self-check (attributes of /replay), a sentence, or NULL */
    char **group_names;      /* [n_groups] the trace's /groups, else a result's */
    int n_groups;
} olmoe_report_data;

typedef struct {
    const char **inputs;       /* [n_inputs] results files or traces */
    int n_inputs;
    const char *kde;           /* null.h5 or NULL */
    const char **policies;     /* [n_policy_args] --policy, canonicalised; NULL: seed set */
    int n_policy_args;
    const char *load_policy;   /* the expert-load heatmap's policy; NULL: baseline */
    const char *out;           /* the report directory */
    const char *formats;       /* "png,svg,pdf" or a subset; NULL: png,svg (+pdf if available) */
    const char *gnuplot;       /* the program; NULL: $OLMOE_GNUPLOT or "gnuplot" */
    const char *command;       /* olmoe-report's command line (report.md) */
    int force, quiet, jobs;    /* jobs: gnuplot processes at once, 0 = 2 x CPUs (at most 8) */
} olmoe_report_opts;
#define OLMOE_REPORT_OPTS_DEFAULT {0}

/* Opens the inputs, reads every result and the null; checks that they fit
 * together (one L and E); selects the policies. 0 or -1 + message. */
int olmoe_report_load(olmoe_report_data *d, const olmoe_report_opts *o);
void olmoe_report_data_free(olmoe_report_data *d);
/* index of a policy by canonical id, -1 if absent */
int olmoe_report_find(const olmoe_report_data *d, const char *id);
/* the results a figure uses for a policy's routing numbers: replay, else
 * exact, else stats (NULL when it has none) */
const olmoe_report_result *olmoe_report_routing(const olmoe_report_policy *p);

/* --format's LIST (png, svg, pdf, comma-separated): 0, or -1 + a message
 * naming what is wrong, for the command to report as a usage error */
int olmoe_report_check_formats(const char *list);

/* Writes the report directory (figures, data, scripts, report.md): under
 * <out>.partial, renamed into place when complete; nothing is left on error. */
int olmoe_report_write(olmoe_report_data *d, const olmoe_report_opts *o);

/* the gnuplot terminals available: bit 1 pngcairo, 2 png, 4 svg, 8 pdfcairo;
 * -1 + message when the program does not run */
int olmoe_report_probe_gnuplot(const char *gnuplot);

#endif
