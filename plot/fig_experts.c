/* fig_experts.c: how many experts the selected policies use (histogram of
 * experts per token-layer, mean per layer) and where they go (expert load
 * heatmap of one policy, coefficient of variation of the load per layer). */
#include "report_internal.h"
#include "policy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *source_words(const olmoe_report_policy *p) {
    const olmoe_report_result *r = olmoe_report_routing(p);
    return r == &p->res[OLMOE_REPORT_REPLAY] ? "replay" : r == &p->res[OLMOE_REPORT_EXACT] ? "exact" : "stats";
}

/* the selected policies that have what a figure needs */
static int pick(const olmoe_report_data *d, int need_hist, int need_layer, int need_cv, int *idx) {
    int n = 0;
    for (int i = 0; i < d->n_policies; i++) {
        const olmoe_report_policy *p = &d->pol[i];
        const olmoe_report_result *r = olmoe_report_routing(p);
        if (!p->selected || !r) continue;
        if ((need_hist && !r->k_hist) || (need_layer && !r->mean_k_layer && !r->k_hist) ||
            (need_cv && !r->load_cv_layer))
            continue;
        idx[n++] = i;
    }
    return n;
}

/* one x range for every panel: up to the largest k any of them uses; the
 * y axis (log) down to the decade of the smallest share drawn */
static void hist_extent(const olmoe_report_data *d, const int *idx, int n, int *kmax, double *yfloor) {
    const int L = d->L, E = d->E;
    double smin = 1;
    *kmax = 1;
    for (int s = 0; s < n; s++) {
        const int64_t *h = olmoe_report_routing(&d->pol[idx[s]])->k_hist;
        double tot = 0;
        for (size_t z = 0; z < (size_t)L * (E + 1); z++) tot += (double)h[z];
        for (int k = 0; k <= E; k++) {
            double c = 0;
            for (int l = 0; l < L; l++) c += (double)h[(size_t)l * (E + 1) + k];
            if (c > 0 && k > *kmax) *kmax = k;
            if (c > 0 && c / tot < smin) smin = c / tot;
        }
    }
    *yfloor = pow(10, floor(log10(smin)));
    if (*yfloor < 1e-6) *yfloor = 1e-6;
    if (*yfloor > 0.01) *yfloor = 0.01;
}

/* each policy's share of token-layers per k, all layers pooled */
static int write_hist(rep_out *o, const olmoe_report_data *d, const int *idx, int n, int kmax) {
    const int L = d->L, E = d->E;
    FILE *f = rep_file(o, "experts_hist.dat");
    if (!f) return -1;
    fprintf(f, "# experts_hist: share of token-layers that used k experts (all layers pooled), one "
               "block per policy (gnuplot: index N)\n# k share count\n");
    for (int s = 0; s < n; s++) {
        const olmoe_report_policy *p = &d->pol[idx[s]];
        const int64_t *h = olmoe_report_routing(p)->k_hist;
        double tot = 0;
        for (size_t z = 0; z < (size_t)L * (E + 1); z++) tot += (double)h[z];
        rep_block(f, s, "policy %d: %s (%s)", s, p->id, source_words(p));
        for (int k = 0; k <= kmax; k++) {
            int64_t c = 0;
            for (int l = 0; l < L; l++) c += h[(size_t)l * (E + 1) + k];
            fprintf(f, "%d ", k);
            rep_put_num(f, tot > 0 ? (double)c / tot : NAN);
            fprintf(f, " %lld\n", (long long)c);
        }
    }
    return rep_close(f, "experts_hist.dat");
}

static int is_bh(const olmoe_report_data *d, const int *idx, int s) { return !strcmp(d->pol[idx[s]].family, "bh"); }

/* The panels in order into slot (indices into idx, -1 an empty slot): the
 * other policies first, then the BH ones as a grid, a row per max_k and a
 * column per alpha, when they form one (each cell at most one policy).
 * Returns the number of slots; *cols the columns (0: no grid). */
static int bh_grid_slots(const olmoe_report_data *d, const int *idx, int n, int *slot, int *cols) {
    double *al = xmalloc(((size_t)n + 1) * sizeof *al), *mk = xmalloc(((size_t)n + 1) * sizeof *mk);
    double *va = xmalloc(((size_t)n + 1) * sizeof *va), *vm = xmalloc(((size_t)n + 1) * sizeof *vm);
    int nb = 0, ns = 0;
    for (int s = 0; s < n; s++)
        if (is_bh(d, idx, s)) {
            va[nb] = d->pol[idx[s]].alpha;
            vm[nb++] = d->pol[idx[s]].max_k;
        }
    int na = rep_distinct(va, nb, al), nm = rep_distinct(vm, nb, mk);
    int grid = na >= 2 && nm >= 1 && na <= 8;
    for (int s = 0; s < n && grid; s++)
        for (int t = s + 1; t < n && grid; t++)
            if (is_bh(d, idx, s) && is_bh(d, idx, t) && d->pol[idx[s]].alpha == d->pol[idx[t]].alpha &&
                d->pol[idx[s]].max_k == d->pol[idx[t]].max_k)
                grid = 0;
    *cols = grid ? na : 0;
    if (grid) {
        for (int s = 0; s < n; s++)
            if (!is_bh(d, idx, s)) slot[ns++] = s;
        while (ns % na) slot[ns++] = -1;
        for (int m = 0; m < nm; m++)
            for (int a = 0; a < na; a++) {
                int found = -1;
                for (int s = 0; s < n; s++)
                    if (is_bh(d, idx, s) && d->pol[idx[s]].alpha == al[a] && d->pol[idx[s]].max_k == mk[m])
                        found = s;
                slot[ns++] = found;
            }
    }
    free(al);
    free(mk);
    free(va);
    free(vm);
    return ns;
}

/* the panel in slot z of ns: policy pol's histogram (block s of the data) in its colour */
static void hist_panel(FILE *gp, const olmoe_report_data *d, int pol, int s, int z, int ns, int cols) {
    const olmoe_report_policy *p = &d->pol[pol];
    const olmoe_report_result *r = olmoe_report_routing(p);
    char t[256], st[128], q[1024];
    snprintf(t, sizeof t, "%s: mean %.2f", p->label, r->mean_k);
    rep_style(d, pol, st, sizeof st);
    char *lc = strstr(st, "lc rgb '");
    char col[16] = "#0072B2";
    if (lc) snprintf(col, sizeof col, "%.7s", lc + 8);
    fprintf(gp, "set title %s font ',11'\n", rep_gq(t, q, sizeof q));
    rep_panel_labels(gp, z, ns, cols, "'experts k'", "'share of token-layers'");
    fprintf(gp, "plot 'experts_hist.dat' index %d u 1:($2 > 0 ? $2 : NaN) w boxes lc rgb '%s' notitle\n", s, col);
}

/* the small multiples of the histograms, written by write_hist */
static int hist_fig(rep_out *o, const olmoe_report_data *d, const int *idx, int n, int kmax, double yfloor) {
    int *slot = xmalloc(((size_t)n * 4 + 16) * sizeof *slot), rows, cols;
    int ns = bh_grid_slots(d, idx, n, slot, &cols);
    if (!cols) {
        for (ns = 0; ns < n; ns++) slot[ns] = ns;
        rep_panel_grid(n, 2, &rows, &cols);
    }
    rows = (ns + cols - 1) / cols;
    int w = cols <= 2 ? 520 * cols + 120 : 430 * cols, h = 330 * rows + 110;
    const char *title = "Experts per token: share of token-layers using k experts (log scale)";
    FILE *gp = rep_fig_begin(o, "experts_hist", "experts", title, w, h);
    if (!gp) {
        free(slot);
        return -1;
    }
    rep_panel_layout(gp, rows, cols, title, w, h, 80, 70);
    fprintf(gp, "set boxwidth 0.8\nset xrange [-0.5:%d.5]\nset logscale y\nset yrange [%g:2]\n"
                "set format y '1e%%T'\nset grid noxtics\nunset key\n",
            kmax, yfloor);
    if (kmax > 24) fprintf(gp, "set xtics 8\n");
    else if (kmax > 10) fprintf(gp, "set xtics 2\n");
    else fprintf(gp, "set xtics 1\n");
    for (int z = 0; z < ns; z++) {
        if (slot[z] < 0) fprintf(gp, "set multiplot next\n");
        else hist_panel(gp, d, idx[slot[z]], slot[z], z, ns, cols);
    }
    free(slot);
    fprintf(gp, "unset multiplot\n");
    return rep_fig_end(o, gp);
}

/* a panel per selected policy: how many experts its token-layers used */
static int experts_hist(rep_out *o, const olmoe_report_data *d) {
    int *idx = xmalloc(((size_t)d->n_policies + 1) * sizeof *idx);
    int n = pick(d, 1, 0, 0, idx), rc = 0, kmax;
    double yfloor;
    if (n > 0) {
        hist_extent(d, idx, n, &kmax, &yfloor);
        rc = write_hist(o, d, idx, n, kmax) != 0 ? -1 : hist_fig(o, d, idx, n, kmax, yfloor);
    }
    free(idx);
    return rc;
}

/* per layer mean of experts from k_hist when the result has no mean_k_layer */
static double layer_mean(const olmoe_report_result *r, int l, int E) {
    if (r->mean_k_layer) return r->mean_k_layer[l];
    double s = 0, c = 0;
    for (int k = 0; k <= E; k++) {
        double v = (double)r->k_hist[(size_t)l * (E + 1) + k];
        s += k * v;
        c += v;
    }
    return c > 0 ? s / c : NAN;
}

/* one line per selected policy against the layer */
static int per_layer(rep_out *o, const olmoe_report_data *d, int cv) {
    const int L = d->L, E = d->E;
    int *idx = xmalloc(((size_t)d->n_policies + 1) * sizeof *idx);
    int n = pick(d, 0, !cv, cv, idx), rc = 0;
    const char *name = cv ? "load_cv" : "experts_layer";
    char q[1024], file[64];
    if (n == 0) goto out;
    rc = -1;
    snprintf(file, sizeof file, "%s.dat", name);
    FILE *f = rep_file(o, file);
    if (!f) goto out;
    fprintf(f, "# %s: %s per layer, one block per policy (gnuplot: index N)\n# layer %s\n", name,
            cv ? "coefficient of variation of the expert load (sd / mean over the layer's experts)"
               : "mean experts per token",
            cv ? "load_cv" : "mean_k");
    for (int s = 0; s < n; s++) {
        const olmoe_report_policy *p = &d->pol[idx[s]];
        const olmoe_report_result *r = olmoe_report_routing(p);
        rep_block(f, s, "policy %d: %s (%s)", s, p->id, source_words(p));
        for (int l = 0; l < L; l++) {
            fprintf(f, "%d ", l);
            rep_put_num(f, cv ? r->load_cv_layer[l] : layer_mean(r, l, E));
            fputc('\n', f);
        }
    }
    if (rep_close(f, file)) goto out;
    const char *title = cv ? "Expert load balance: coefficient of variation of the load per layer"
                           : "Experts per token by layer";
    int tall = n > 12;
    FILE *gp = rep_fig_begin(o, name, cv ? "load" : "experts", title, 1280, tall ? 900 : 760);
    if (!gp) goto out;
    fprintf(gp, "set title %s\n", rep_gq(title, q, sizeof q));
    fprintf(gp, "set xlabel 'layer'\nset ylabel %s\n",
            cv ? "'load CV (sd / mean over experts; 0 = balanced)'" : "'experts per token (mean)'");
    fprintf(gp, "set xrange [-0.3:%g]\nset xtics 1\n", L - 0.7);
    if (L > 16) fprintf(gp, "set xtics 2\n");
    if (!cv) {
        double lo = INFINITY, hi = -INFINITY;
        for (int s = 0; s < n; s++)
            for (int l = 0; l < L; l++) {
                double v = layer_mean(olmoe_report_routing(&d->pol[idx[s]]), l, E);
                if (isfinite(v) && v > 0) {
                    if (v < lo) lo = v;
                    if (v > hi) hi = v;
                }
            }
        if (lo < INFINITY && hi / lo > 6)
            fprintf(gp, "set logscale y 2\nset ylabel 'experts per token (mean, log scale)'\nset yrange [%.6g:%.6g]\n",
                    lo / 1.15, hi * 1.15);
        else if (lo < INFINITY)
            fprintf(gp, "set yrange [0:%.6g]\n", hi * 1.08);
    } else {
        fprintf(gp, "set yrange [0:*]\nset offsets 0, 0, graph 0.05, 0\n");
    }
    fprintf(gp, "set key at screen 0.75, graph 1 left top vertical Left reverse font ',%d'\n"
                "set rmargin at screen 0.72\n",
            n > 20 ? 10 : 11);
    fprintf(gp, "plot ");
    for (int s = 0; s < n; s++) {
        char st[128];
        rep_style(d, idx[s], st, sizeof st);
        fprintf(gp, "%s'%s' index %d u 1:2 w lp %s t %s", s ? ", \\\n  " : "", file, s, st,
                rep_gq(d->pol[idx[s]].label, q, sizeof q));
    }
    fprintf(gp, "\n");
    rc = rep_fig_end(o, gp);
out:
    free(idx);
    return rc;
}

int rep_fig_experts(rep_out *o, const olmoe_report_data *d) {
    if (experts_hist(o, d) != 0) return -1;
    return per_layer(o, d, 0);
}

int rep_fig_load(rep_out *o, const olmoe_report_data *d, const char *load_policy) {
    const int L = d->L, E = d->E;
    int k = -1;
    if (load_policy) {
        olmoe_policy pol; /* as given, or its canonical id */
        k = olmoe_report_find(d, load_policy);
        if (k < 0 && olmoe_policy_parse(load_policy, &pol) == 0) k = olmoe_report_find(d, pol.id);
        if (k < 0) return olmoe_errorf("--load-policy %s: no results for it", load_policy);
        if (!olmoe_report_routing(&d->pol[k]) || !olmoe_report_routing(&d->pol[k])->load)
            return olmoe_errorf("--load-policy %s: its results have no expert load", load_policy);
    } else { /* the baseline, else the first selected policy with a load */
        k = olmoe_report_find(d, d->baseline_id);
        if (k >= 0 && (!olmoe_report_routing(&d->pol[k]) || !olmoe_report_routing(&d->pol[k])->load)) k = -1;
        for (int i = 0; i < d->n_policies && k < 0; i++)
            if (d->pol[i].selected && olmoe_report_routing(&d->pol[i]) && olmoe_report_routing(&d->pol[i])->load)
                k = i;
    }
    if (k >= 0) {
        const olmoe_report_policy *p = &d->pol[k];
        const olmoe_report_result *r = olmoe_report_routing(p);
        FILE *f = rep_file(o, "load_heatmap.dat");
        if (!f) return -1;
        fprintf(f, "# load_heatmap: token-layers routed to each expert under %s (%s), a blank line "
                   "after each layer (gnuplot's image grid)\n# layer expert count relative_load (count / the layer's mean)\n",
                p->id, source_words(p));
        double top = 0, lowest = 1;
        for (int l = 0; l < L; l++) {
            double s = 0;
            for (int e = 0; e < E; e++) s += (double)r->load[(size_t)l * E + e];
            double mean = s / E;
            for (int e = 0; e < E; e++) {
                double c = (double)r->load[(size_t)l * E + e], rel = mean > 0 ? c / mean : NAN;
                if (rel > top) top = rel;
                if (rel > 0 && rel < lowest) lowest = rel;
                fprintf(f, "%d %d %lld ", l, e, (long long)r->load[(size_t)l * E + e]);
                rep_put_num(f, rel);
                fputc('\n', f);
            }
            fputc('\n', f);
        }
        if (rep_close(f, "load_heatmap.dat")) return -1;
        char title[400], q[1024];
        snprintf(title, sizeof title, "Expert load under %s: token-layers per expert relative to the layer's mean (1 = balanced; log colour scale)",
                 p->label);
        int h = 220 + (L > 16 ? 16 : L) * 36;
        if (h < 420) h = 420;
        FILE *gp = rep_fig_begin(o, "load_heatmap", "load", title, 1400, h);
        if (!gp) return -1;
        /* a log2 colour scale symmetric around 1, so that half and twice the mean
         * load are equally far from balanced; zero load is drawn at the bottom */
        double span = 2;
        while (span < top && span < 8) span *= 2;
        (void)lowest; /* an idle expert (load 0) would stretch the scale: clipped at 1/span */
        fprintf(gp, "set title %s\n", rep_gq(title, q, sizeof q));
        fprintf(gp, "set xlabel 'expert'\nset ylabel 'layer'\nunset grid\nset tics scale 0\n");
        fprintf(gp, "set xrange [-0.5:%g]\nset yrange [%g:-0.5]\n", E - 0.5, L - 0.5);
        fprintf(gp, "set xtics %d\nset ytics 1\n", E > 32 ? 4 : 1);
        if (L > 16) fprintf(gp, "set ytics 2\n");
        fprintf(gp, "set palette defined (0 '#2166ac', 0.5 '#f7f7f7', 1 '#b2182b')\n");
        fprintf(gp, "set logscale cb 2\nset cbrange [%g:%g]\nset cbtics (", 1 / span, span);
        for (double t = 1 / span; t <= span * 1.0001; t *= 2)
            fprintf(gp, "%s'%s%s%g' %g", t == 1 / span ? "" : ", ", t == 1 / span ? "≤" : t >= span ? "≥" : "",
                    t < 1 ? "1/" : "", t < 1 ? 1 / t : t, t);
        fprintf(gp, ")\nset cblabel 'load / layer mean'\nunset key\n");
        fprintf(gp, "plot 'load_heatmap.dat' u 2:1:($4 < %g ? %g : $4 > %g ? %g : $4) w image notitle\n", 1 / span,
                1 / span, span, span);
        if (rep_fig_end(o, gp) != 0) return -1;
    }
    return per_layer(o, d, 1);
}
