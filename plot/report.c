/* report.c: olmoe_report_write, the order of the work: the output directory
 * (and gnuplot's terminals) first, then every figure (gnuplot runs in the
 * background while the next figure's data is written), then report.md, which
 * embeds the figures that were drawn, then the rename into place. */
#include "report_internal.h"

int olmoe_report_write(olmoe_report_data *d, const olmoe_report_opts *opts) {
    rep_out o;
    if (rep_out_begin(&o, opts) != 0) return -1;
    if (rep_fig_quality(&o, d) != 0 || rep_fig_sweep(&o, d) != 0 || rep_fig_experts(&o, d) != 0 ||
        rep_fig_load(&o, d, opts->load_policy) != 0 || rep_fig_fidelity(&o, d) != 0 ||
        rep_fig_null(&o, d) != 0 || rep_fig_analyze(&o, d) != 0 || rep_fig_match(&o, d) != 0 ||
        rep_wait_all(&o) != 0 || rep_write_md(&o, d, opts) != 0) {
        rep_out_abort(&o);
        return -1;
    }
    int n = o.n_figs;
    if (rep_out_commit(&o) != 0) return -1;
    if (!opts->quiet) notef("%d figure(s) and report.md in %s/", n, opts->out);
    return 0;
}
