/* main_report.c: olmoe-report, the command (see man/olmoe-report.1). */
#include "common.h"
#include "plot.h"

#include <errno.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: olmoe-report RESULTS.h5 [MORE.h5...] --out DIR [options]\n"
    "\n"
    "Draws the figures (gnuplot: PNG, SVG, PDF) of a trace's or results file's\n"
    "replay, exact, stats, validation and analysis results, with the data and the\n"
    "gnuplot script of each next to it, and writes DIR/report.md.";

#define MAX_POLICIES 256
/* the --policy arguments, in order */
typedef struct {
    const char *ids[MAX_POLICIES];
    int n;
} policy_args;

static int add_policy(const char *v, void *ctx) {
    policy_args *p = ctx;
    if (p->n == MAX_POLICIES) return olmoe_errorf("--policy: at most %d", MAX_POLICIES);
    p->ids[p->n++] = v;
    return 0;
}

int main(int argc, char **argv) {
    olmoe_set_prog(argv[0]);
    olmoe_save_argv(argc, argv);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char *command = olmoe_join_argv(argc, argv);
    const char *out = NULL, *kde = NULL, *formats = NULL, *gnuplot = NULL, *load_policy = NULL;
    int force = 0, quiet = 0;
    long jobs = 0;
    policy_args policies = {0};
    const olmoe_opt opts[] = {
        OPT_STRING("out", &out, "DIR", "the report directory to write (required)"),
        OPT_STRING("kde", &kde, "NULL", "null distributions (olmoe-kde fit) to draw"),
        OPT_CALLBACK("policy", add_policy, &policies, "ID",
                     "a policy for the per-policy figures (repeatable; default: the seed set present)"),
        OPT_STRING("load-policy", &load_policy, "ID", "the expert-load heatmap's policy (default: the baseline)"),
        OPT_STRING("format", &formats, "LIST", "png,svg,pdf or a subset (default: png,svg and pdf when gnuplot has pdfcairo)"),
        OPT_STRING("gnuplot", &gnuplot, "PATH", "the gnuplot program (default: $OLMOE_GNUPLOT or gnuplot)"),
        OPT_LONG_RANGE("jobs", &jobs, "N", "gnuplot processes at once (default: twice the CPUs, at most 8)", 1, 256),
        OPT_FLAG("force", &force, "replace an existing report directory"),
        OPT_FLAG("quiet", &quiet, "no notes or progress on stderr"),
        OPT_END};
    int npos = olmoe_opt_parse(argc, argv, opts, usage);
    if (npos < 1) die_usage("no results file given");
    if (!out) die_usage("--out DIR is required");
    if (formats && olmoe_report_check_formats(formats) != 0) die_usage("%s", olmoe_error());
    /* an empty value is a mistake (an unset variable), not a request for the default */
    if (gnuplot && !*gnuplot) die_usage("--gnuplot: empty program name");
    olmoe_set_quiet(quiet);
    /* refuse early, before reading anything */
    if (!force && olmoe_file_exists(out)) die("%s: already exists (use --force to overwrite)", out);

    olmoe_report_opts o = OLMOE_REPORT_OPTS_DEFAULT;
    o.inputs = (const char **)argv;
    o.n_inputs = npos;
    o.kde = kde;
    o.policies = policies.ids;
    o.n_policy_args = policies.n;
    o.load_policy = load_policy;
    o.out = out;
    o.formats = formats;
    o.gnuplot = gnuplot;
    o.command = command;
    o.force = force;
    o.quiet = quiet;
    o.jobs = (int)jobs;
    olmoe_report_data d;
    if (olmoe_report_load(&d, &o) != 0) die("%s", olmoe_error());
    if (olmoe_report_write(&d, &o) != 0) die("%s", olmoe_error());
    olmoe_report_data_free(&d);
    printf("report: %s/report.md\n", out);
    if (fflush(stdout) != 0 || ferror(stdout)) die("standard output: write error: %s", strerror(errno));
    free(command);
    return 0;
}
