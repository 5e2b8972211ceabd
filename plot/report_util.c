/* report_util.c: the visual encodings the figures share (a policy looks the
 * same in every figure: BH alpha is a colour on one sequential ramp, max_k a
 * point shape, top-k black) and the Pareto front. */
#include "report_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* filled circle, square, triangle up, triangle down, diamond, pentagon; then open ones */
const int rep_point_types[] = {7, 5, 9, 11, 13, 15, 6, 4, 8, 10, 12, 14};
const int rep_n_point_types = 12;

/* Okabe-Ito, without black (top-k's) and yellow (unreadable on white) */
const char *const rep_colors[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                  "#56B4E9", "#E69F00", "#7F7F7F"};
const int rep_n_colors = 7;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int rep_distinct(const double *v, int n, double *out) {
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) out[m++] = v[i];
    qsort(out, (size_t)m, sizeof *out, cmp_double);
    int k = 0;
    for (int i = 0; i < m; i++)
        if (k == 0 || out[i] != out[k - 1]) out[k++] = out[i];
    return k;
}

int rep_index_of(const double *v, int n, double x) {
    for (int i = 0; i < n; i++)
        if (v[i] == x) return i;
    return -1;
}

/* a ramp from deep blue through purple to orange (plasma without its pale
 * yellow end): every step readable on white, ordered by lightness */
void rep_ramp(int i, int n, char out[8]) {
    static const double stops[][3] = {
        {0x0d, 0x08, 0x87}, {0x6a, 0x00, 0xa8}, {0xb1, 0x2a, 0x90}, {0xe1, 0x64, 0x62}, {0xf2, 0x84, 0x1b}};
    const int ns = 5;
    double t = n > 1 ? (double)i / (n - 1) : 0.0;
    double pos = t * (ns - 1);
    int a = (int)pos;
    if (a >= ns - 1) a = ns - 2;
    double f = pos - a;
    int rgb[3];
    for (int c = 0; c < 3; c++) rgb[c] = (int)lround(stops[a][c] + f * (stops[a + 1][c] - stops[a][c]));
    snprintf(out, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

void rep_pareto(const double *x, const double *y, int n, int *flags) {
    for (int i = 0; i < n; i++) {
        flags[i] = isfinite(x[i]) && isfinite(y[i]);
        for (int j = 0; j < n && flags[i]; j++) {
            if (j == i || !isfinite(x[j]) || !isfinite(y[j])) continue;
            if (x[j] <= x[i] && y[j] <= y[i] && (x[j] < x[i] || y[j] < y[i])) flags[i] = 0;
        }
    }
}

/* the distinct BH alphas and max_ks of every policy of the report */
static int bh_values(const olmoe_report_data *d, int alpha, double *out) {
    double *v = xmalloc(((size_t)d->n_policies + 1) * sizeof *v);
    int n = 0;
    for (int i = 0; i < d->n_policies; i++)
        if (!strcmp(d->pol[i].family, "bh")) v[n++] = alpha ? d->pol[i].alpha : d->pol[i].max_k;
    int m = rep_distinct(v, n, out);
    free(v);
    return m;
}

int rep_bh_alphas(const olmoe_report_data *d, double *out) { return bh_values(d, 1, out); }
int rep_bh_maxks(const olmoe_report_data *d, double *out) { return bh_values(d, 0, out); }

void rep_style(const olmoe_report_data *d, int i, char *buf, size_t n) {
    const olmoe_report_policy *p = &d->pol[i];
    if (!strcmp(p->family, "topk")) {
        /* the baseline solid, other ks dashed in grey */
        if (!strcmp(p->id, d->baseline_id))
            snprintf(buf, n, "lc rgb '#000000' pt 3 ps 1.6 dt 1 lw 2.5");
        else
            snprintf(buf, n, "lc rgb '#606060' pt 1 ps 1.4 dt 2 lw 1.5");
        return;
    }
    if (!strcmp(p->family, "bh")) {
        double *a = xmalloc(((size_t)d->n_policies + 1) * sizeof *a);
        double *m = xmalloc(((size_t)d->n_policies + 1) * sizeof *m);
        int na = rep_bh_alphas(d, a), nm = rep_bh_maxks(d, m);
        char col[8];
        rep_ramp(rep_index_of(a, na, p->alpha), na, col);
        int pt = rep_point_types[rep_index_of(m, nm, p->max_k) % rep_n_point_types];
        snprintf(buf, n, "lc rgb '%s' pt %d ps 1.3 dt 1 lw 1.8", col, pt);
        free(a);
        free(m);
        return;
    }
    /* other families: one colour per family, shapes in order within it */
    int fam = 0, within = 0;
    char seen[32][32];
    int ns = 0;
    for (int j = 0; j <= i; j++) {
        const char *f = d->pol[j].family;
        if (!strcmp(f, "topk") || !strcmp(f, "bh")) continue;
        int k = 0;
        while (k < ns && strcmp(seen[k], f)) k++;
        if (k == ns && ns < 32) snprintf(seen[ns++], sizeof seen[0], "%s", f);
        if (j == i) fam = k;
        if (!strcmp(f, p->family)) within++;
    }
    snprintf(buf, n, "lc rgb '%s' pt %d ps 1.3 dt %d lw 1.8", rep_colors[fam % rep_n_colors],
             rep_point_types[(within - 1) % rep_n_point_types], 1 + (within - 1) / rep_n_point_types);
}
