/* test_kde.c: the binned FFT KDE against a direct O(n * grid) KDE written
 * here, against the analytic pdf/cdf of a normal and of a two-component
 * mixture (smoothed by the kernel: N(mu, s^2 + h^2)), the CDF's shape, the
 * KS distance against one computed exactly here, the sort, quantiles,
 * bandwidth rules, errors, and null.h5 round trips. */
#include "check.h"
#include "common.h"
#include "kde.h"

#include <stdint.h>
#include <unistd.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand())) * cos(2 * M_PI * urand()); }
static double Phi(double z) { return 0.5 * erfc(-z / sqrt(2.0)); }
static double phi(double z) { return exp(-0.5 * z * z) / sqrt(2 * M_PI); }

/* the KDE evaluated directly: what binning approximates */
static void direct(const float *x, size_t n, double h, const double *g, int G, double *pdf,
                   double *cdf) {
    for (int j = 0; j < G; j++) {
        double sp = 0, sc = 0;
        for (size_t i = 0; i < n; i++) {
            double u = (g[j] - x[i]) / h;
            sp += phi(u);
            sc += Phi(u);
        }
        pdf[j] = sp / (n * h);
        cdf[j] = sc / n;
    }
}

static float *normal_sample(size_t n, double mu, double sd) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)(mu + sd * nrand());
    return x;
}

static void check_shape(const olmoe_kde_layer *l) {
    int mono = 1;
    for (int j = 1; j < l->n_grid; j++) mono &= l->cdf[j] >= l->cdf[j - 1];
    CHECK(mono, "cdf is monotone");
    CHECK(l->cdf[0] >= 0 && l->cdf[0] <= 3.2e-5, "cdf starts at 0 (%g)", l->cdf[0]);
    CHECK(l->cdf[l->n_grid - 1] <= 1 && l->cdf[l->n_grid - 1] >= 1 - 3.2e-5, "cdf ends at 1 (%.12g)",
          l->cdf[l->n_grid - 1]);
    double lo = l->min - 4 * l->bandwidth, hi = l->max + 4 * l->bandwidth;
    CHECK_CLOSE(l->grid[0], lo, 1e-12, "grid starts at min - 4h");
    CHECK_CLOSE(l->grid[l->n_grid - 1], hi, 1e-12, "grid ends at max + 4h");
}

static void test_binned_vs_direct(void) {
    size_t n = 500;
    float *x = normal_sample(n, 0.3, 1.7);
    x[7] = 6.0f; /* an outlier and a tie */
    x[8] = x[9];
    float *keep = malloc(n * sizeof *keep);
    memcpy(keep, x, n * sizeof *x);
    const int grids[2] = {16384, 2048};
    const double tol[2] = {1e-6, 1e-4};
    for (int gi = 0; gi < 2; gi++) {
        memcpy(x, keep, n * sizeof *x);
        olmoe_kde_opts o = OLMOE_KDE_OPTS_DEFAULT;
        o.n_grid = grids[gi];
        olmoe_kde_layer l;
        CHECK(olmoe_kde_fit(x, n, &o, &l) == 0, "%s", olmoe_error());
        int G = l.n_grid;
        CHECK(G == grids[gi], "grid %d", G);
        double *pdf = malloc(G * sizeof *pdf), *cdf = malloc(G * sizeof *cdf);
        direct(keep, n, l.bandwidth, l.grid, G, pdf, cdf);
        double dp = 0, dc = 0;
        for (int j = 0; j < G; j++) {
            dp = fmax(dp, fabs(l.pdf[j] - pdf[j]));
            dc = fmax(dc, fabs(l.cdf[j] - cdf[j]));
        }
        if (getenv("KDE_VERBOSE")) fprintf(stderr, "grid %d: dp %.3g dc %.3g\n", G, dp, dc);
        CHECK(dp <= tol[gi], "grid %d: max |pdf - direct| = %.3g", G, dp);
        CHECK(dc <= tol[gi], "grid %d: max |cdf - direct| = %.3g", G, dc);
        check_shape(&l);
        olmoe_kde_layer_free(&l);
        free(pdf);
        free(cdf);
    }
    free(x);
    free(keep);
}

/* mixture of normals: weights w, means m, sds s; smoothed by h */
static void mix(int k, const double *w, const double *m, const double *s, double h, double x,
                double *pdf, double *cdf) {
    *pdf = *cdf = 0;
    for (int i = 0; i < k; i++) {
        double sd = sqrt(s[i] * s[i] + h * h);
        *pdf += w[i] * phi((x - m[i]) / sd) / sd;
        *cdf += w[i] * Phi((x - m[i]) / sd);
    }
}

static void check_against(int k, const double *w, const double *m, const double *s, size_t n) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        double u = urand(), acc = 0;
        int c = k - 1;
        for (int j = 0; j < k; j++)
            if (u < (acc += w[j])) {
                c = j;
                break;
            }
        x[i] = (float)(m[c] + s[c] * nrand());
    }
    olmoe_kde_opts o = OLMOE_KDE_OPTS_DEFAULT;
    olmoe_kde_layer l;
    CHECK(olmoe_kde_fit(x, n, &o, &l) == 0, "%s", olmoe_error());
    double dp = 0, dc = 0, peak = 0;
    for (int j = 0; j < l.n_grid; j++) {
        double p, c;
        mix(k, w, m, s, l.bandwidth, l.grid[j], &p, &c);
        dp = fmax(dp, fabs(l.pdf[j] - p));
        dc = fmax(dc, fabs(l.cdf[j] - c));
        peak = fmax(peak, p);
    }
    /* sampling noise at n = 400k: pdf sd ~ 0.002 at the peak, cdf ~ 1 / sqrt(n) */
    if (getenv("KDE_VERBOSE")) fprintf(stderr, "k=%d dp %.3g dc %.3g ks %.3g peak %.3g\n", k, dp, dc, l.ks, peak);
    CHECK(dp <= 0.012 * peak / 0.4, "%d component(s): max |pdf - analytic| = %.4g", k, dp);
    CHECK(dc <= 0.005, "%d component(s): max |cdf - analytic| = %.4g", k, dc);
    CHECK(l.ks > 0 && l.ks <= 0.005, "KS %.4g", l.ks);
    double mean = 0;
    for (int i = 0; i < k; i++) mean += w[i] * m[i];
    CHECK(fabs(l.mean - mean) < 0.01, "mean %g vs %g", l.mean, mean);
    check_shape(&l);
    olmoe_kde_layer_free(&l);
    free(x);
}

static void test_normal(void) {
    double w = 1, m = 0.5, s = 2.0;
    check_against(1, &w, &m, &s, 400000);
}

static void test_mixture(void) {
    double w[2] = {0.3, 0.7}, m[2] = {-2, 1.5}, s[2] = {0.5, 1.0};
    check_against(2, w, m, s, 400000);
}

static int cmp_float(const void *a, const void *b) {
    float u = *(const float *)a, v = *(const float *)b;
    return (u > v) - (u < v);
}

static void test_ks_quantiles_moments(void) {
    size_t n = 400;
    float *x = normal_sample(n, -1, 0.5), *s = malloc(n * sizeof *s);
    memcpy(s, x, n * sizeof *x);
    qsort(s, n, sizeof *s, cmp_float);
    olmoe_kde_opts o = OLMOE_KDE_OPTS_DEFAULT;
    o.n_grid = 8192;
    olmoe_kde_layer l;
    CHECK(olmoe_kde_fit(x, n, &o, &l) == 0, "%s", olmoe_error());
    /* KS exactly: the direct KDE CDF at each sample point vs the ECDF */
    double ks = 0, mean = 0, ss = 0;
    for (size_t i = 0; i < n; i++) {
        double F = 0;
        for (size_t j = 0; j < n; j++) F += Phi((s[i] - s[j]) / l.bandwidth);
        F /= n;
        ks = fmax(ks, fmax(F - (double)i / n, (double)(i + 1) / n - F));
        mean += s[i];
    }
    mean /= n;
    for (size_t i = 0; i < n; i++) ss += (s[i] - mean) * (s[i] - mean);
    CHECK(fabs(l.ks - ks) < 1e-5, "ks %.8g vs exact %.8g", l.ks, ks);
    CHECK_CLOSE(l.mean, mean, 1e-9, "mean");
    CHECK_CLOSE(l.sd, sqrt(ss / (n - 1)), 1e-9, "sd with n - 1");
    CHECK_CLOSE(l.bandwidth, l.sd * pow(n, -0.2), 1e-12, "scott");
    CHECK(l.min == s[0] && l.max == s[n - 1], "min/max");
    for (int q = 0; q < OLMOE_KDE_NQ; q++) {
        double pos = olmoe_kde_quantile_levels[q] * (n - 1);
        int i = (int)floor(pos);
        double want = s[i] + (pos - i) * ((double)s[i + 1] - s[i]);
        CHECK_CLOSE(l.quantiles[q], want, 1e-9, "quantile %g", olmoe_kde_quantile_levels[q]);
    }
    CHECK(memcmp(x, s, n * sizeof *x) == 0, "fit leaves the sample sorted");
    olmoe_kde_layer_free(&l);
    CHECK_CLOSE(olmoe_kde_bandwidth(OLMOE_KDE_SILVERMAN, 0, 2.0, 1000), 2.0 * pow(750.0, -0.2), 1e-12,
                "silverman (scipy's)");
    CHECK(olmoe_kde_bandwidth(OLMOE_KDE_FIXED, 0.25, 2.0, 1000) == 0.25, "fixed");
    free(x);
    free(s);
}

static void test_prototype(void) {
    size_t n = 5000;
    float *x = normal_sample(n, -3, 1);
    olmoe_kde_opts o = OLMOE_KDE_OPTS_DEFAULT;
    o.construction = OLMOE_KDE_PROTOTYPE;
    olmoe_kde_layer l;
    CHECK(olmoe_kde_fit(x, n, &o, &l) == 0, "%s", olmoe_error());
    CHECK(l.n_grid == 10000, "10000 points");
    CHECK_CLOSE(l.grid[0], l.min - 0.2 * fabs(l.min), 1e-12, "lo");
    CHECK_CLOSE(l.grid[l.n_grid - 1], l.max + 0.2 * fabs(l.max), 1e-12, "hi");
    CHECK(l.cdf[l.n_grid - 1] == 1.0, "normalised cumulative sum ends at 1");
    double run = 0, sum = 0;
    for (int j = 0; j < l.n_grid; j++) sum += l.pdf[j];
    int ok = 1;
    for (int j = 0; j < l.n_grid; j++) ok &= fabs(l.cdf[j] - (run += l.pdf[j]) / sum) < 1e-12;
    CHECK(ok, "cdf = cumsum(pdf) / sum(pdf)");
    olmoe_kde_layer_free(&l);
    free(x);
}

static void test_sort(void) {
    size_t n = 100003;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    for (size_t i = 0; i < n; i++) {
        double u = urand();
        a[i] = u < 0.05 ? 0.0f : (u < 0.1 ? -0.0f : (float)(nrand() * pow(10, 6 * urand() - 3)));
    }
    a[3] = 3e38f, a[4] = -3e38f, a[5] = 1e-45f;
    memcpy(b, a, n * sizeof *a);
    olmoe_kde_sort(a, n);
    qsort(b, n, sizeof *b, cmp_float);
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= a[i] == b[i];
    for (size_t i = 1; i < n; i++) ok &= !(a[i] == 0 && signbit(a[i - 1]) == 0 && signbit(a[i]));
    CHECK(ok, "radix sort agrees with qsort");
    free(a);
    free(b);
}

static void test_errors(void) {
    olmoe_kde_opts o = OLMOE_KDE_OPTS_DEFAULT;
    olmoe_kde_layer l;
    float one[1] = {1}, same[4] = {2, 2, 2, 2}, bad[3] = {1, NAN, 2};
    CHECK(olmoe_kde_fit(one, 1, &o, &l) == -1 && strstr(olmoe_error(), "at least 2"), "%s", olmoe_error());
    CHECK(olmoe_kde_fit(same, 4, &o, &l) == -1 && strstr(olmoe_error(), "are equal"), "%s", olmoe_error());
    CHECK(olmoe_kde_fit(bad, 3, &o, &l) == -1 && strstr(olmoe_error(), "not finite"), "%s", olmoe_error());
    o.rule = OLMOE_KDE_FIXED;
    o.bandwidth = 0;
    float ok[3] = {1, 2, 3};
    CHECK(olmoe_kde_fit(ok, 3, &o, &l) == -1 && strstr(olmoe_error(), "bandwidth"), "%s", olmoe_error());
}

static void test_file_roundtrip(void) {
    char path[] = "/tmp/olmoe-null-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    olmoe_kde_null null;
    memset(&null, 0, sizeof null);
    null.n_layers = 4;
    null.n_experts = 8;
    null.n_fits = 2;
    strcpy(null.construction, "kde");
    strcpy(null.rule, "scott");
    strcpy(null.source, "synthetic");
    null.fits = calloc(2, sizeof *null.fits);
    olmoe_kde_opts o = OLMOE_KDE_OPTS_DEFAULT;
    o.n_grid = 256;
    for (int i = 0; i < 2; i++) {
        float *x = normal_sample(3000, i, 1 + i);
        CHECK(olmoe_kde_fit(x, 3000, &o, &null.fits[i]) == 0, "%s", olmoe_error());
        null.fits[i].layer = 1 + 2 * i; /* layers 1 and 3 */
        null.fits[i].n_tokens = 375;
        free(x);
    }
    CHECK(olmoe_kde_write(path, &null, "test") == 0, "%s", olmoe_error());
    olmoe_kde_null back;
    CHECK(olmoe_kde_read(path, &back) == 0, "%s", olmoe_error());
    CHECK(back.n_fits == 2 && back.n_layers == 4 && back.n_experts == 8, "sizes");
    CHECK(strcmp(back.rule, "scott") == 0 && strcmp(back.source, "synthetic") == 0, "attrs");
    int same = 1;
    for (int i = 0; i < 2; i++) {
        const olmoe_kde_layer *a = &null.fits[i], *b = &back.fits[i];
        same &= a->layer == b->layer && a->n == b->n && a->n_tokens == b->n_tokens &&
                a->bandwidth == b->bandwidth && a->ks == b->ks && a->quantiles[4] == b->quantiles[4];
        for (int j = 0; j < 256; j++) same &= a->cdf[j] == b->cdf[j] && a->pdf[j] == b->pdf[j] && a->grid[j] == b->grid[j];
    }
    CHECK(same, "fits read back bit for bit");
    olmoe_kde_cdf c;
    CHECK(olmoe_kde_cdf_init(&c, &back, 4) == 0, "cdf init");
    CHECK(!c.present[0] && c.present[1] && !c.present[2] && c.present[3], "present");
    const olmoe_kde_layer *l3 = olmoe_kde_null_layer(&back, 3);
    /* at grid points: 1 - cdf; between: the interpolation; outside: 1 / 0 (clamped) */
    float p = olmoe_kde_cdf_pvalue(&c, 3, (float)l3->grid[100], 1e-7f);
    double t = ((double)(float)l3->grid[100] - c.x0[3]) * c.inv_dx[3];
    CHECK(fabs(t - 100) < 1e-3, "t %g", t);
    CHECK(fabs(p - (1 - olmoe_kde_layer_cdf(l3, (float)l3->grid[100]))) < 1e-6, "p %g", p);
    float mid = (float)(0.5 * (l3->grid[40] + l3->grid[41]));
    CHECK(fabs(olmoe_kde_cdf_pvalue(&c, 3, mid, 1e-7f) - (1 - 0.5 * (l3->cdf[40] + l3->cdf[41]))) < 1e-5,
          "midpoint");
    CHECK(olmoe_kde_cdf_pvalue(&c, 3, -1e9f, 1e-7f) == 1.0f - 1e-7f, "below");
    CHECK(olmoe_kde_cdf_pvalue(&c, 3, 1e9f, 1e-7f) == 1e-7f, "above");
    olmoe_kde_cdf_free(&c);
    olmoe_kde_null_free(&back);
    olmoe_kde_null_free(&null);

    /* not a null: a text file, and an HDF5 file of another format */
    FILE *f = fopen(path, "w");
    fputs("hello\n", f);
    fclose(f);
    CHECK(olmoe_kde_read(path, &back) == -1 && strstr(olmoe_error(), path), "%s", olmoe_error());
    unlink(path);
    CHECK(olmoe_kde_read(path, &back) == -1 && strstr(olmoe_error(), "No such file"), "%s", olmoe_error());
}

int main(void) {
    RUN(test_binned_vs_direct);
    RUN(test_normal);
    RUN(test_mixture);
    RUN(test_ks_quantiles_moments);
    RUN(test_prototype);
    RUN(test_sort);
    RUN(test_errors);
    RUN(test_file_roundtrip);
    return check_summary();
}
