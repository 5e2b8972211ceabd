/* bootstrap.c: see bootstrap.h. */
#include "bootstrap.h"

#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void olmoe_boot_units_init(olmoe_boot_units *u, const int64_t *bounds, int64_t n, const char *unit) {
    memset(u, 0, sizeof *u);
    u->n_units = n;
    u->unit = unit;
    u->bounds = xmalloc(xmul((size_t)n + 1, sizeof *u->bounds));
    memcpy(u->bounds, bounds, ((size_t)n + 1) * sizeof *bounds);
    u->sum_a = xcalloc((size_t)n + 1, sizeof *u->sum_a);
    u->sum_b = xcalloc((size_t)n + 1, sizeof *u->sum_b);
    u->n = xcalloc((size_t)n + 1, sizeof *u->n);
}

void olmoe_boot_units_free(olmoe_boot_units *u) {
    free(u->bounds);
    free(u->sum_a);
    free(u->sum_b);
    free(u->n);
    memset(u, 0, sizeof *u);
}

static int by_start(const void *a, const void *b) {
    const olmoe_trace_document *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

int olmoe_boot_trace_units(olmoe_trace *t, olmoe_boot_units *u) {
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    int64_t N = in->n_tokens, nd = in->n_documents, nw = in->n_windows;
    if (nd > 0) {
        olmoe_trace_document *d = xmalloc(xmul((size_t)nd, sizeof *d));
        if (olmoe_trace_read_documents(t, 0, nd, d) != 0) {
            free(d);
            return -1;
        }
        qsort(d, (size_t)nd, sizeof *d, by_start);
        int64_t *b = xmalloc(xmul((size_t)nd + 1, sizeof *b));
        for (int64_t i = 0; i < nd; i++) b[i] = d[i].start < N ? d[i].start : N;
        b[0] = 0; /* documents tile the stream; the first starts at 0 */
        b[nd] = N;
        olmoe_boot_units_init(u, b, nd, "document");
        free(b);
        free(d);
        return 0;
    }
    if (nw < 1) return olmoe_errorf("%s: no documents and no windows to resample", olmoe_trace_path(t));
    olmoe_trace_window *w = xmalloc(xmul((size_t)nw, sizeof *w));
    if (olmoe_trace_read_windows(t, 0, nw, w) != 0) {
        free(w);
        return -1;
    }
    int64_t *b = xmalloc(xmul((size_t)nw + 1, sizeof *b));
    for (int64_t i = 0; i < nw; i++) b[i] = w[i].start + w[i].stored_from;
    b[nw] = N;
    olmoe_boot_units_init(u, b, nw, "window");
    free(b);
    free(w);
    return 0;
}

void olmoe_boot_units_fill(olmoe_boot_units *u, const float *a, const float *b, int64_t N) {
    for (int64_t k = 0; k < u->n_units; k++) {
        double sa = 0, sb = 0;
        int64_t n = 0;
        int64_t hi = u->bounds[k + 1] < N ? u->bounds[k + 1] : N;
        for (int64_t i = u->bounds[k]; i < hi; i++)
            if (isfinite(a[i]) && isfinite(b[i])) sa += a[i], sb += b[i], n++;
        u->sum_a[k] = sa, u->sum_b[k] = sb, u->n[k] = n;
    }
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* the q-quantile of sorted x[n], linear between order statistics */
static double quantile(const double *x, int n, double q) {
    double h = (n - 1) * q;
    int lo = (int)floor(h);
    if (lo >= n - 1) return x[n - 1];
    return x[lo] + (h - lo) * (x[lo + 1] - x[lo]);
}

static void interval(double *x, int n, double *lo, double *hi) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    *lo = quantile(x, n, 0.025);
    *hi = quantile(x, n, 0.975);
}

int olmoe_boot_paired(const olmoe_boot_units *u, int R, uint64_t seed, olmoe_boot_result *r) {
    memset(r, 0, sizeof *r);
    const int64_t U = u->n_units;
    double sa = 0, sb = 0;
    int64_t n = 0;
    for (int64_t k = 0; k < U; k++) sa += u->sum_a[k], sb += u->sum_b[k], n += u->n[k];
    if (n == 0 || U == 0) return olmoe_errorf("bootstrap: no token is scored by both");
    if (R < 1) return olmoe_errorf("bootstrap: %d resamples (at least 1)", R);
    int64_t *idx = xmalloc(xmul((size_t)U, sizeof *idx)), V = 0; /* units holding scored tokens */
    for (int64_t k = 0; k < U; k++)
        if (u->n[k] > 0) idx[V++] = k;
    r->resamples = R, r->seed = seed, r->n_units = V, r->n_tokens = n;
    r->ppl_a = exp(sa / n), r->ppl_b = exp(sb / n);
    r->delta = r->ppl_a / r->ppl_b - 1, r->dnll = (sa - sb) / n;
    double *pa = xmalloc(xmul((size_t)R, 4 * sizeof *pa)), *pb = pa + R, *dl = pb + R, *dn = dl + R;
    uint64_t s = seed;
    int64_t le = 0, ge = 0;
    for (int i = 0; i < R; i++) {
        double a = 0, b = 0;
        int64_t m = 0;
        for (int64_t j = 0; j < V; j++) {
            int64_t k = idx[(uint64_t)(((unsigned __int128)splitmix64(&s) * (uint64_t)V) >> 64)];
            a += u->sum_a[k], b += u->sum_b[k], m += u->n[k];
        }
        if (m == 0) m = 1; /* a draw of units without scored tokens: NLL 0 */
        pa[i] = exp(a / m), pb[i] = exp(b / m);
        dl[i] = pa[i] / pb[i] - 1, dn[i] = (a - b) / m;
        le += dn[i] <= 0, ge += dn[i] >= 0;
    }
    interval(pa, R, &r->ppl_a_lo, &r->ppl_a_hi);
    interval(pb, R, &r->ppl_b_lo, &r->ppl_b_hi);
    interval(dl, R, &r->delta_lo, &r->delta_hi);
    interval(dn, R, &r->dnll_lo, &r->dnll_hi);
    double p = 2.0 * (double)((le < ge ? le : ge) + 1) / (double)(R + 1);
    r->p_value = p > 1 ? 1 : p;
    free(pa);
    free(idx);
    return 0;
}
