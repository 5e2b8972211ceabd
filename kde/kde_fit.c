/* kde_fit.c: one layer's null: a Gaussian KDE on a uniform grid by linear
 * binning and FFT convolution (GSL radix-2 real transforms), its exact-CDF
 * counterpart, moments, quantiles and the KS distance to the sample's own
 * empirical CDF (kde.h has the definitions).
 *
 * The CDF kernel Phi does not decay on the right, so it is split as
 * Phi(u) = D(u) + step(u) with step = 0, 1/2, 1 for u <, =, > 0: D is odd and
 * decays like the Gaussian tail, so it convolves like the pdf kernel, and the
 * step part is a running sum of the binned counts. */
#include "common.h"
#include "kde.h"
#include "kde_internal.h"

#include <gsl/gsl_cdf.h>
#include <gsl/gsl_fft_halfcomplex.h>
#include <gsl/gsl_fft_real.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const double olmoe_kde_quantile_levels[OLMOE_KDE_NQ] = {0.001, 0.01, 0.05, 0.25, 0.5,
                                                        0.75,  0.95, 0.99, 0.999};

/* ---- bandwidth ---- */

double olmoe_kde_bandwidth(olmoe_kde_rule rule, double fixed, double sd, double n) {
    switch (rule) {
    case OLMOE_KDE_SILVERMAN:
        return sd * pow(n * 3.0 / 4.0, -0.2);
    case OLMOE_KDE_FIXED:
        return fixed;
    default:
        return sd * pow(n, -0.2);
    }
}

/* ---- FFT convolution ---- */

/* halfcomplex a *= b (radix-2 layout, length P) */
static void hc_mul(double *a, const double *b, size_t P) {
    a[0] *= b[0];
    a[P / 2] *= b[P / 2];
    for (size_t k = 1; k < P / 2; k++) {
        double ar = a[k], ai = a[P - k], br = b[k], bi = b[P - k];
        a[k] = ar * br - ai * bi;
        a[P - k] = ar * bi + ai * br;
    }
}

static void fft_fwd(double *x, size_t P) { gsl_fft_real_radix2_transform(x, 1, P); }
static void fft_inv(double *x, size_t P) { gsl_fft_halfcomplex_radix2_inverse(x, 1, P); }

/* binned counts c[0..G) -> pdf (density) and cdf at the grid points */
static void convolve(const double *c, int G, double dx, double h, double n, double *pdf,
                     double *cdf) {
    /* kernel reach: phi and the CDF tail are below 1e-18 past 9 bandwidths */
    double reach = ceil(9.0 * h / dx);
    int M = reach > G - 1 ? G - 1 : (int)reach;
    size_t P = 1;
    while (P < (size_t)G + (size_t)M) P *= 2;
    double *fc = xcalloc(P, sizeof *fc), *kp = xcalloc(P, sizeof *kp), *kd = xcalloc(P, sizeof *kd);
    memcpy(fc, c, (size_t)G * sizeof *fc);
    for (int m = -M; m <= M; m++) {
        double u = m * dx / h;
        size_t at = m >= 0 ? (size_t)m : P - (size_t)(-m);
        kp[at] = exp(-0.5 * u * u) / sqrt(2.0 * M_PI);
        kd[at] = m > 0 ? -gsl_cdf_ugaussian_Q(u) : (m < 0 ? gsl_cdf_ugaussian_P(u) : 0.0);
    }
    fft_fwd(fc, P);
    fft_fwd(kp, P);
    fft_fwd(kd, P);
    hc_mul(kp, fc, P);
    hc_mul(kd, fc, P);
    fft_inv(kp, P);
    fft_inv(kd, P);
    double below = 0.0; /* counts at grid points left of j */
    for (int j = 0; j < G; j++) {
        double d = kp[j] / (n * h);
        pdf[j] = d > 0 ? d : 0.0; /* FFT round-off can dip below 0 in empty tails */
        cdf[j] = (kd[j] + below + 0.5 * c[j]) / n;
        below += c[j];
    }
    free(fc);
    free(kp);
    free(kd);
}

double olmoe_kde_layer_cdf(const olmoe_kde_layer *l, double x) {
    double lo = l->grid[0], inv = (l->n_grid - 1) / (l->grid[l->n_grid - 1] - lo);
    double t = (x - lo) * inv;
    if (t < 0) return 0.0;
    if (t >= l->n_grid - 1) return t == l->n_grid - 1 ? l->cdf[l->n_grid - 1] : 1.0;
    int i = (int)t;
    double f = t - i;
    return l->cdf[i] + f * (l->cdf[i + 1] - l->cdf[i]);
}

/* mean, sd, min and max of the sample in one pass, or an error when a value
 * is not finite or all are equal; moments about the first value (which
 * keeps the sum of squares from cancelling when the mean is large) */
static int sample_moments(const float *x, size_t n, olmoe_kde_layer *out) {
    double shift = x[0], s1 = 0.0, s2 = 0.0;
    float mnf = x[0], mxf = x[0];
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (!isfinite(v)) return olmoe_errorf("value %zu of the sample is not finite", i);
        double d = (double)v - shift;
        s1 += d;
        s2 += d * d;
        mnf = v < mnf ? v : mnf;
        mxf = v > mxf ? v : mxf;
    }
    double var = (s2 - s1 * s1 / (double)n) / (double)(n - 1);
    out->mean = shift + s1 / (double)n;
    out->sd = sqrt(var > 0 ? var : 0);
    out->min = mnf;
    out->max = mxf;
    if (!(out->max > out->min))
        return olmoe_errorf("all %zu values of the sample are equal (%g)", n, out->min);
    return 0;
}

/* the prototype's CDF: the normalised running sum of the pdf */
static void prototype_cdf(olmoe_kde_layer *l) {
    double s = 0.0;
    for (int j = 0; j < l->n_grid; j++) s += l->pdf[j];
    double run = 0.0;
    for (int j = 0; j < l->n_grid; j++) {
        run += l->pdf[j];
        l->cdf[j] = run / s;
    }
}

/* the exact CDF is monotone in [0, 1]; removes round-off that is not */
static void make_monotone(double *cdf, int G) {
    double run = 0.0;
    for (int j = 0; j < G; j++) {
        double v = cdf[j] < 0 ? 0 : (cdf[j] > 1 ? 1 : cdf[j]);
        run = v > run ? v : run;
        cdf[j] = run;
    }
}

/* the quantile levels of the sorted sample, numpy's linear rule */
static void sample_quantiles(const float *x, size_t n, double *q /*[OLMOE_KDE_NQ]*/) {
    for (int k = 0; k < OLMOE_KDE_NQ; k++) {
        double pos = olmoe_kde_quantile_levels[k] * (double)(n - 1);
        size_t i = (size_t)pos;
        double f = pos - (double)i;
        q[k] = i + 1 < n ? x[i] + f * ((double)x[i + 1] - x[i]) : x[n - 1];
    }
}

/* KS distance of the fit to the sorted sample: the empirical CDF jumps from
 * i/n to (i+1)/n at x[i]; the KDE CDF between grid points is interpolated as
 * olmoe_kde_layer_cdf does */
static double ks_distance(const float *x, size_t n, const olmoe_kde_layer *l) {
    const int G = l->n_grid;
    const double lo = l->grid[0], inv = (G - 1) / (l->grid[G - 1] - lo), *F = l->cdf;
    double ks = 0.0;
    for (size_t i = 0; i < n; i++) {
        double t = ((double)x[i] - lo) * inv, Fx;
        if (t >= G - 1) {
            Fx = t == G - 1 ? F[G - 1] : 1.0;
        } else {
            int j = (int)t;
            Fx = F[j] + (t - j) * (F[j + 1] - F[j]);
        }
        double a = Fx - (double)i / (double)n, b = (double)(i + 1) / (double)n - Fx;
        ks = a > ks ? a : ks;
        ks = b > ks ? b : ks;
    }
    return ks;
}

int olmoe_kde_fit(float *x, size_t n, const olmoe_kde_opts *o, olmoe_kde_layer *out) {
    memset(out, 0, sizeof *out);
    out->layer = -1;
    out->expert = -1;
    if (n < 2) return olmoe_errorf("a null needs at least 2 values, got %zu", n);
    if (sample_moments(x, n, out) != 0) return -1;
    double mn = out->min, mx = out->max;
    double h = olmoe_kde_bandwidth(o->rule, o->bandwidth, out->sd, (double)n);
    if (!(h > 0) || !isfinite(h)) return olmoe_errorf("bandwidth %g is not positive", h);

    int proto = o->construction == OLMOE_KDE_PROTOTYPE;
    int G = o->n_grid > 0 ? o->n_grid : (proto ? OLMOE_KDE_PROTOTYPE_GRID : OLMOE_KDE_DEFAULT_GRID);
    if (G < 16 || G > (1 << 24)) return olmoe_errorf("grid of %d points (want 16 .. 2^24)", G);
    double lo = proto ? mn - 0.2 * fabs(mn) : mn - 4.0 * h;
    double hi = proto ? mx + 0.2 * fabs(mx) : mx + 4.0 * h;
    double dx = (hi - lo) / (G - 1);

    out->n = (int64_t)n;
    out->bandwidth = h;
    out->n_grid = G;
    out->grid = xmalloc((size_t)G * sizeof *out->grid);
    out->pdf = xmalloc((size_t)G * sizeof *out->pdf);
    out->cdf = xmalloc((size_t)G * sizeof *out->cdf);
    for (int j = 0; j < G; j++) out->grid[j] = lo + j * dx;
    out->grid[G - 1] = hi;

    double *c = xmalloc((size_t)G * sizeof *c);
    olmoe_kde_bin_and_sort(x, n, lo, 1.0 / dx, G, c); /* x is sorted from here on */
    convolve(c, G, dx, h, (double)n, out->pdf, out->cdf);
    free(c);
    if (proto) prototype_cdf(out);
    make_monotone(out->cdf, G);
    sample_quantiles(x, n, out->quantiles);
    out->ks = ks_distance(x, n, out);
    return 0;
}

void olmoe_kde_layer_free(olmoe_kde_layer *l) {
    free(l->grid);
    free(l->pdf);
    free(l->cdf);
    memset(l, 0, sizeof *l);
}
