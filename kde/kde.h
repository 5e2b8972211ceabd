/* kde.h: the kde layer, the one public header of kde/ (above traces/): the
 * null distributions that p-value policies use, fitted and stored by
 * olmoe-kde: per-layer null distributions of router logits (docs/DESIGN.md §7).
 *
 *   olmoe_kde_opts o = OLMOE_KDE_OPTS_DEFAULT;            // Scott, 2048 points
 *   olmoe_kde_layer fit;
 *   if (olmoe_kde_fit(sample, n, &o, &fit) != 0)           // sorts sample in place
 *       die("%s", olmoe_error());
 *   printf("h = %g, KS = %g\n", fit.bandwidth, fit.ks);
 *
 *   olmoe_kde_null null;                                   // a whole null.h5
 *   olmoe_kde_read("null.h5", &null);
 *   olmoe_kde_cdf cdf;                                     // what policies use
 *   olmoe_kde_cdf_init(&cdf, &null, n_model_layers);
 *   float q = olmoe_kde_cdf_pvalue(&cdf, layer, logit, 1e-7f);
 *   olmoe_kde_cdf_free(&cdf); olmoe_kde_null_free(&null);
 *
 * The KDE: Gaussian kernel, bandwidth h (Scott: h = sd * n^(-1/5), scipy's
 * default; Silverman as scipy: h = sd * (3n/4)^(-1/5); or a fixed number; sd
 * with n - 1), on a uniform grid of G points over [min - 4h, max + 4h]. The
 * sample is linearly binned onto the grid and convolved by FFT (GSL) with the
 * Gaussian density (pdf) and with the Gaussian CDF (cdf: the KDE's own CDF,
 * the mean of Phi((x - x_i) / h), not an integral of the pdf). Binning makes
 * both O(n + G log G); their error is that of linear interpolation of the
 * kernel at spacing dx / h (about 1e-5 of the peak at the default grid).
 * --compat prototype: G = 10000 over [min - 0.2|min|, max + 0.2|max|] and
 * cdf = cumulative sum of the pdf, normalised (the seed prototype).
 */
#ifndef OLMOE_KDE_H
#define OLMOE_KDE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { OLMOE_KDE_SCOTT, OLMOE_KDE_SILVERMAN, OLMOE_KDE_FIXED } olmoe_kde_rule;
typedef enum { OLMOE_KDE_EXACT, OLMOE_KDE_PROTOTYPE } olmoe_kde_construction;

typedef struct {
    olmoe_kde_rule rule;
    double bandwidth; /* OLMOE_KDE_FIXED: h itself (logit units) */
    int n_grid;       /* 0: 2048 (10000 for the prototype construction) */
    olmoe_kde_construction construction;
} olmoe_kde_opts;
#define OLMOE_KDE_OPTS_DEFAULT {OLMOE_KDE_SCOTT, 0.0, 0, OLMOE_KDE_EXACT}
#define OLMOE_KDE_DEFAULT_GRID 2048
#define OLMOE_KDE_PROTOTYPE_GRID 10000

#define OLMOE_KDE_NQ 9
extern const double olmoe_kde_quantile_levels[OLMOE_KDE_NQ]; /* 0.001 ... 0.999 */

/* one layer's null (or, per expert, one expert's at one layer) */
typedef struct {
    int layer;          /* model layer it belongs to */
    int expert;         /* the expert of a per-expert null; -1: the whole layer */
    int64_t n;          /* sample size (tokens x experts) */
    int64_t n_tokens;   /* tokens the sample came from */
    double bandwidth, mean, sd, min, max;
    double ks;          /* sup |KDE CDF - empirical CDF| over the sample */
    double quantiles[OLMOE_KDE_NQ]; /* of the sample, numpy's linear rule */
    int n_grid;
    double *grid; /* [n_grid] uniform */
    double *pdf;  /* [n_grid] */
    double *cdf;  /* [n_grid] nondecreasing, in [0, 1] */
} olmoe_kde_layer;

/* Fits x[0..n) (n >= 2, finite, not all equal; sorted in place). */
int olmoe_kde_fit(float *x /*[n]*/, size_t n, const olmoe_kde_opts *o, olmoe_kde_layer *out);
void olmoe_kde_layer_free(olmoe_kde_layer *l);
/* the bandwidth a rule gives for a sample of size n and sd */
double olmoe_kde_bandwidth(olmoe_kde_rule rule, double fixed, double sd, double n);
/* ascending radix sort of finite floats (-0 before +0) */
void olmoe_kde_sort(float *x /*[n]*/, size_t n);
/* the KDE CDF at x, linear interpolation on the grid (0 below, 1 above) */
double olmoe_kde_layer_cdf(const olmoe_kde_layer *l, double x);

/* ---- null.h5: format "olmoe-kde" version 1 (man/olmoe-kde.1) ---- */
#define OLMOE_KDE_FORMAT "olmoe-kde"
#define OLMOE_KDE_FORMAT_VERSION 1
typedef struct {
    int n_fits;             /* layers fitted */
    int n_layers;           /* the model's layers */
    int n_experts;
    char construction[16];  /* "kde" or "prototype" */
    char rule[16];          /* "scott", "silverman" or "fixed" */
    char source[1024];      /* the trace it came from */
    char model_checksum[64];
    int64_t max_tokens;     /* 0: all */
    int per_expert;         /* 1: a fit per layer and expert (olmoe-kde fit --per-expert) */
    olmoe_kde_layer *fits;  /* [n_fits], ascending (layer, expert) */
} olmoe_kde_null;

/* writes path (as given: callers pass their olmoe_out tmp name) */
int olmoe_kde_write(const char *path, const olmoe_kde_null *null, const char *command);
int olmoe_kde_read(const char *path, olmoe_kde_null *out);
void olmoe_kde_null_free(olmoe_kde_null *null);
/* the fit of a model layer, or NULL */
const olmoe_kde_layer *olmoe_kde_null_layer(const olmoe_kde_null *null, int layer);
/* a null of another depth is another model's: 0, or -1 + "NULL_PATH:
 * fitted to a model of A layers, MODEL has B" (model: the trace or
 * checkpoint it would be used on) */
int olmoe_kde_null_check_depth(const olmoe_kde_null *null, const char *null_path, const char *model,
                               int n_layers);

/* ---- the compact form policies read: survival function per model layer
 * (or per layer and expert: slot l * E + e) ---- */
typedef struct {
    int n_layers;          /* model layers */
    int n_experts;         /* E of a per-expert null; 0: one null per layer */
    int n_grid;
    unsigned char *present; /* [S] 1 where the slot was fitted (S = L, or L * E) */
    double *x0;            /* [S] first grid point */
    double *inv_dx;        /* [S] 1 / grid spacing */
    float *sf;             /* [S, G] 1 - CDF at the grid points (fp32) */
} olmoe_kde_cdf;

/* All fits must share one grid size. Layers the null lacks stay absent. */
int olmoe_kde_cdf_init(olmoe_kde_cdf *c, const olmoe_kde_null *null, int n_layers);
void olmoe_kde_cdf_free(olmoe_kde_cdf *c);
/* the slot of a layer's (per-expert null: a layer's expert's) survival table */
static inline int olmoe_kde_cdf_slot(const olmoe_kde_cdf *c, int layer, int expert) {
    return c->n_experts ? layer * c->n_experts + expert : layer;
}

/* p = 1 - CDF(x): t = (x - x0) * inv_dx (double); t < 0 (or NaN) -> 1;
 * t > G - 1 -> 0; else i = floor(t), f = (float)(t - i),
 * p = sf[i] + f * (sf[i+1] - sf[i]) in fp32 (sf[G-1] at t = G - 1);
 * then clamped to [floor, 1 - floor] in fp32. Interpolating 1 - CDF rather
 * than CDF gives the same number with fp32 resolution in the upper tail,
 * where the small p-values that BH acts on are. */
static inline float olmoe_kde_cdf_pvalue_slot(const olmoe_kde_cdf *c, int slot, float x,
                                              float pv_floor) {
    double t = ((double)x - c->x0[slot]) * c->inv_dx[slot];
    const float *s = c->sf + (size_t)slot * (size_t)c->n_grid;
    float p;
    if (!(t >= 0)) {
        p = 1.0f;
    } else if (t >= (double)(c->n_grid - 1)) {
        p = t == (double)(c->n_grid - 1) ? s[c->n_grid - 1] : 0.0f;
    } else {
        int i = (int)t;
        float f = (float)(t - i);
        p = s[i] + f * (s[i + 1] - s[i]);
    }
    float hi = 1.0f - pv_floor;
    return p < pv_floor ? pv_floor : (p > hi ? hi : p);
}
/* the p-value of expert e's logit x at a layer: under the layer's null, or
 * under the expert's own when the null is per expert */
static inline float olmoe_kde_cdf_pvalue_expert(const olmoe_kde_cdf *c, int layer, int expert,
                                                float x, float pv_floor) {
    return olmoe_kde_cdf_pvalue_slot(c, olmoe_kde_cdf_slot(c, layer, expert), x, pv_floor);
}
/* a per-layer null's p-value (expert 0 of a per-expert one) */
static inline float olmoe_kde_cdf_pvalue(const olmoe_kde_cdf *c, int layer, float x, float pv_floor) {
    return olmoe_kde_cdf_pvalue_expert(c, layer, 0, x, pv_floor);
}

#endif
