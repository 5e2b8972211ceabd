/* bootstrap.h (part of analyze.h: include analyze.h):
 * paired bootstrap intervals for perplexity over resampling
 * units (documents, or windows when the trace has none).
 *
 *   olmoe_boot_units u;
 *   if (olmoe_boot_trace_units(t, &u) != 0) die("%s", olmoe_error());  // documents or windows
 *   olmoe_boot_units_fill(&u, nll_policy, nll_baseline, N);             // per-unit sums
 *   olmoe_boot_result r;
 *   olmoe_boot_paired(&u, 1000, 1, &r);       // 95 % intervals, seed 1
 *   printf("%.2f [%.2f, %.2f]\n", r.ppl_a, r.ppl_a_lo, r.ppl_a_hi);
 *   olmoe_boot_units_free(&u);
 *
 * Why units and not tokens: the NLLs of the tokens of one document are
 * correlated (topic, style, the document's own difficulty), so resampling
 * tokens as if independent makes intervals far too narrow. A document (a
 * window when there are no documents: a capture of one text) is the unit
 * drawn with replacement; every token of a drawn unit comes with it, and the
 * two policies are always scored on the same draw (paired), so what they
 * share (the text) cancels in their difference. Perplexity of a draw is
 * exp(sum of NLL / number of tokens) over the drawn units. Token i (whose
 * NLL scores token i + 1) belongs to the unit holding position i. Only tokens
 * scored by both a and b count, and only units holding such tokens are
 * drawn (a run over the first N tokens leaves the rest out). The generator is splitmix64 from the seed,
 * so a seed gives the same draws on every machine. Intervals are the 2.5th
 * and 97.5th percentiles of the R draws (linear interpolation).
 */
#ifndef OLMOE_BOOTSTRAP_H
#define OLMOE_BOOTSTRAP_H

#include <stdint.h>

#include "traces.h"

typedef struct {
    int64_t n_units;
    int64_t *bounds;  /* [n_units + 1] token ranges [bounds[u], bounds[u+1]) */
    const char *unit; /* "document" or "window" */
    double *sum_a;    /* [n_units] NLL sums of a */
    double *sum_b;    /* [n_units] of b */
    int64_t *n;       /* [n_units] tokens scored by both */
} olmoe_boot_units;

/* the trace's documents (sorted, contiguous ranges) or else its windows'
 * stored ranges; sums zeroed */
int olmoe_boot_trace_units(olmoe_trace *t, olmoe_boot_units *u);
/* units from explicit bounds [n + 1] (copied) */
void olmoe_boot_units_init(olmoe_boot_units *u, const int64_t *bounds, int64_t n, const char *unit);
/* per-unit sums of nll_a and nll_b over tokens [0, N) finite in both */
void olmoe_boot_units_fill(olmoe_boot_units *u, const float *nll_a, const float *nll_b, int64_t N);
void olmoe_boot_units_free(olmoe_boot_units *u);

typedef struct {
    int resamples;
    uint64_t seed;
    int64_t n_units, n_tokens;
    double ppl_a, ppl_a_lo, ppl_a_hi;
    double ppl_b, ppl_b_lo, ppl_b_hi;
    double delta, delta_lo, delta_hi; /* ppl_a / ppl_b - 1 */
    double dnll, dnll_lo, dnll_hi;    /* mean NLL of a minus b, nats */
    double p_value; /* two-sided: 2 min(#(delta* <= 0) + 1, #(delta* >= 0) + 1) / (R + 1), at most 1 */
} olmoe_boot_result;

/* R >= 1 resamples of the units; 0, or -1 + message (no tokens) */
int olmoe_boot_paired(const olmoe_boot_units *u, int resamples, uint64_t seed, olmoe_boot_result *r);

#endif
