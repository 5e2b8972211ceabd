/* replay_boot.c: 95 % intervals for a run's results (olmoe_replay_bootstrap
 * in replay.h), the same paired bootstrap over documents as olmoe-analyze
 * intervals (bootstrap.h), so that olmoe-replay's JSON and CSV carry them. */
#include "bootstrap.h"
#include "common.h"
#include "replay.h"

#include <math.h>

int olmoe_replay_bootstrap(olmoe_replay_run *r, const char *trace_path, int R, uint64_t seed) {
    olmoe_trace *t = olmoe_trace_open(trace_path);
    if (!t) return -1;
    olmoe_boot_units u;
    int rc = olmoe_boot_trace_units(t, &u);
    olmoe_trace_close(t);
    if (rc != 0) return -1;
    r->boot_resamples = R, r->boot_seed = seed, r->boot_unit = u.unit;
    for (int i = 0; i < r->n_results && rc == 0; i++) {
        olmoe_replay_result *res = &r->res[i];
        if (!res->stored) continue;
        olmoe_boot_units_fill(&u, res->nll, r->baseline_nll, r->n_tokens);
        olmoe_boot_result b;
        if ((rc = olmoe_boot_paired(&u, R, seed, &b)) != 0) break;
        res->ci[0] = b.ppl_a_lo, res->ci[1] = b.ppl_a_hi, res->ci[2] = b.delta_lo, res->ci[3] = b.delta_hi;
        r->boot_units = b.n_units;
    }
    olmoe_boot_units_free(&u);
    return rc;
}
