/* kde_io.c: null.h5 (format "olmoe-kde" version 1, layout in man/olmoe-kde.1)
 * and the compact survival-function table that policies read.
 * Fits are stacked: row i of every per-fit dataset belongs to model layer
 * /layer[i]; all fits share one grid size. */
#include "common.h"
#include "kde.h"

#include "traces.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* the per-fit summaries stored as one float64 column each, in file order */
static const struct {
    const char *name;
    size_t offset; /* of the double in olmoe_kde_layer */
} fit_columns[] = {
    {"bandwidth", offsetof(olmoe_kde_layer, bandwidth)},
    {"mean", offsetof(olmoe_kde_layer, mean)},
    {"sd", offsetof(olmoe_kde_layer, sd)},
    {"min", offsetof(olmoe_kde_layer, min)},
    {"max", offsetof(olmoe_kde_layer, max)},
    {"ks", offsetof(olmoe_kde_layer, ks)},
};
enum { N_FIT_COLUMNS = sizeof fit_columns / sizeof fit_columns[0] };

static double *fit_column(olmoe_kde_layer *l, int c) {
    return (double *)((char *)l + fit_columns[c].offset);
}

/* Each olmoe_h5_* call names the dataset and the failing HDF5 call itself. */

/* the root attributes: format, provenance and sizes */
static int write_attrs(hid_t f, const olmoe_kde_null *null, const char *command, int G) {
    char created[32];
    time_t now = time(NULL);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    OLMOE_TRY(olmoe_h5_set_attr_str(f, ".", "format", OLMOE_KDE_FORMAT));
    OLMOE_TRY(olmoe_h5_set_attr_i32(f, ".", "format_version", OLMOE_KDE_FORMAT_VERSION));
    OLMOE_TRY(olmoe_h5_set_attr_str(f, ".", "tool_version", OLMOE_VERSION));
    OLMOE_TRY(olmoe_h5_set_attr_str(f, ".", "command", command ? command : ""));
    OLMOE_TRY(olmoe_h5_set_attr_str(f, ".", "created", created));
    OLMOE_TRY(olmoe_h5_set_attr_str(f, ".", "source", null->source));
    OLMOE_TRY(olmoe_h5_set_attr_str(f, ".", "model_checksum", null->model_checksum));
    OLMOE_TRY(olmoe_h5_set_attr_str(f, ".", "construction", null->construction));
    OLMOE_TRY(olmoe_h5_set_attr_str(f, ".", "bandwidth_rule", null->rule));
    OLMOE_TRY(olmoe_h5_set_attr_i32(f, ".", "n_layers", null->n_layers));
    OLMOE_TRY(olmoe_h5_set_attr_i32(f, ".", "n_experts", null->n_experts));
    OLMOE_TRY(olmoe_h5_set_attr_i32(f, ".", "n_fits", null->n_fits));
    OLMOE_TRY(olmoe_h5_set_attr_i32(f, ".", "grid_points", G));
    OLMOE_TRY(olmoe_h5_set_attr_i64(f, ".", "max_tokens", null->max_tokens));
    OLMOE_TRY(olmoe_h5_set_attr_i32(f, ".", "per_expert", null->per_expert));
    return 0;
fail:
    return -1;
}

/* the per-grid-point arrays of a fit, stacked into [F, G] datasets */
static const char *const grid_names[3] = {"grid", "pdf", "cdf"};

static double *grid_array(const olmoe_kde_layer *l, int k) {
    return k == 0 ? l->grid : (k == 1 ? l->pdf : l->cdf);
}

/* /grid, /pdf, /cdf [F, G] and /quantiles [F, NQ], stacked from the fits */
static int write_grids(hid_t f, const char *path, const olmoe_kde_null *null, int G) {
    int F = null->n_fits, rc = -1;
    for (int i = 0; i < F; i++)
        if (null->fits[i].n_grid != G)
            return olmoe_errorf("%s: fits have different grid sizes (%d, %d)", path, G,
                                null->fits[i].n_grid);
    size_t FG = (size_t)F * (size_t)G, FQ = (size_t)F * OLMOE_KDE_NQ;
    double *buf = xmalloc(xmul((FG > FQ ? FG : FQ) + 1, sizeof *buf));
    int64_t d2[2] = {F, G}, dq[2] = {F, OLMOE_KDE_NQ}, dl[1] = {OLMOE_KDE_NQ};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < F; i++)
            memcpy(buf + (size_t)i * G, grid_array(&null->fits[i], k), (size_t)G * sizeof *buf);
        OLMOE_TRY(olmoe_h5_write(f, grid_names[k], OLMOE_H5_F64, 2, d2, buf));
    }
    for (int i = 0; i < F; i++)
        memcpy(buf + (size_t)i * OLMOE_KDE_NQ, null->fits[i].quantiles, sizeof null->fits[i].quantiles);
    OLMOE_TRY(olmoe_h5_write(f, "quantiles", OLMOE_H5_F64, 2, dq, buf));
    OLMOE_TRY(olmoe_h5_write(f, "quantile_levels", OLMOE_H5_F64, 1, dl, olmoe_kde_quantile_levels));
    rc = 0;
fail:
    free(buf);
    return rc;
}

/* the per-fit columns [F]: /expert (per-expert nulls), /layer, the
 * float64 summaries, /n and /n_tokens */
static int write_columns(hid_t f, const olmoe_kde_null *null) {
    int F = null->n_fits, rc = -1;
    int64_t d1[1] = {F};
    double *col = xmalloc(((size_t)F + 1) * sizeof *col);
    int64_t *col64 = xmalloc(((size_t)F + 1) * sizeof *col64);
    int32_t *col32 = xmalloc(((size_t)F + 1) * sizeof *col32);
    if (null->per_expert) {
        for (int i = 0; i < F; i++) col32[i] = null->fits[i].expert;
        OLMOE_TRY(olmoe_h5_write(f, "expert", OLMOE_H5_I32, 1, d1, col32));
    }
    for (int i = 0; i < F; i++) col32[i] = null->fits[i].layer;
    OLMOE_TRY(olmoe_h5_write(f, "layer", OLMOE_H5_I32, 1, d1, col32));
    for (int c = 0; c < N_FIT_COLUMNS; c++) {
        for (int i = 0; i < F; i++) col[i] = *fit_column(&null->fits[i], c);
        OLMOE_TRY(olmoe_h5_write(f, fit_columns[c].name, OLMOE_H5_F64, 1, d1, col));
    }
    for (int i = 0; i < F; i++) col64[i] = null->fits[i].n;
    OLMOE_TRY(olmoe_h5_write(f, "n", OLMOE_H5_I64, 1, d1, col64));
    for (int i = 0; i < F; i++) col64[i] = null->fits[i].n_tokens;
    OLMOE_TRY(olmoe_h5_write(f, "n_tokens", OLMOE_H5_I64, 1, d1, col64));
    rc = 0;
fail:
    free(col);
    free(col64);
    free(col32);
    return rc;
}

int olmoe_kde_write(const char *path, const olmoe_kde_null *null, const char *command) {
    int G = null->n_fits ? null->fits[0].n_grid : 0, rc = -1;
    hid_t f = olmoe_h5_create(path);
    if (f < 0) return -1;
    if (write_attrs(f, null, command, G) == 0 && write_grids(f, path, null, G) == 0 &&
        write_columns(f, null) == 0)
        rc = 0;
    if (olmoe_h5_close(f) != 0) rc = -1;
    return rc;
}

/* a dataset of rank `rank` with the given dims, or an error */
static int check_dims(hid_t f, const char *path, const char *name, int rank, const int64_t *want) {
    int r;
    int64_t dims[OLMOE_H5_MAX_RANK];
    if (olmoe_h5_exists(f, name) != 1) return olmoe_errorf("%s: dataset /%s is missing", path, name);
    if (olmoe_h5_shape(f, name, &r, dims) != 0) return -1;
    if (r != rank)
        return olmoe_errorf("%s: dataset /%s has rank %d, expected %d", path, name, r, rank);
    for (int i = 0; i < rank; i++)
        if (dims[i] != want[i])
            return olmoe_errorf("%s: dataset /%s has dimension %d of size %lld, expected %lld",
                                path, name, i, (long long)dims[i], (long long)want[i]);
    return 0;
}

static void get_str(hid_t f, const char *name, char *buf, size_t n) {
    char *v = NULL;
    buf[0] = '\0';
    if (olmoe_h5_has_attr(f, ".", name) == 1 && olmoe_h5_get_attr_str(f, ".", name, &v) == 0)
        snprintf(buf, n, "%s", v);
    free(v);
}

static int get_i32(hid_t f, const char *path, const char *name, int *out) {
    int64_t v;
    if (olmoe_h5_get_attr_i64(f, ".", name, &v) != 0) return olmoe_error_prefix("%s", path);
    if (v < -2147483647 || v > 2147483647)
        return olmoe_errorf("%s: attribute %s = %lld is out of range", path, name, (long long)v);
    *out = (int)v;
    return 0;
}

/* the root attributes into out (fits not allocated) and the grid size;
 * refuses another format, another version and implausible sizes */
static int read_attrs(hid_t f, const char *path, olmoe_kde_null *out, int *G) {
    int version = 0;
    int64_t max_tokens = 0;
    char format[64];
    get_str(f, "format", format, sizeof format);
    if (strcmp(format, OLMOE_KDE_FORMAT) != 0)
        return olmoe_errorf("%s: not a null distribution (format is '%s', not '%s'; make one with "
                            "olmoe-kde fit)", path, format, OLMOE_KDE_FORMAT);
    if (get_i32(f, path, "format_version", &version) != 0) return -1;
    if (version != OLMOE_KDE_FORMAT_VERSION)
        return olmoe_errorf("%s: olmoe-kde format version %d, this tool reads version %d", path,
                            version, OLMOE_KDE_FORMAT_VERSION);
    if (get_i32(f, path, "n_fits", &out->n_fits) != 0 ||
        get_i32(f, path, "n_layers", &out->n_layers) != 0 ||
        get_i32(f, path, "n_experts", &out->n_experts) != 0 || get_i32(f, path, "grid_points", G) != 0)
        return -1;
    if (olmoe_h5_get_attr_i64(f, ".", "max_tokens", &max_tokens) != 0)
        return olmoe_error_prefix("%s", path);
    out->max_tokens = max_tokens;
    if (olmoe_h5_has_attr(f, ".", "per_expert") == 1 && /* files before it are per layer */
        get_i32(f, path, "per_expert", &out->per_expert) != 0)
        return -1;
    get_str(f, "construction", out->construction, sizeof out->construction);
    get_str(f, "bandwidth_rule", out->rule, sizeof out->rule);
    get_str(f, "source", out->source, sizeof out->source);
    get_str(f, "model_checksum", out->model_checksum, sizeof out->model_checksum);
    /* A null is a few fits per layer and expert on a grid of thousands; the
       product bound keeps a forged header from asking for terabytes. */
    int F = out->n_fits;
    if (F < 1 || F > 100000 || *G < 2 || *G > (1 << 24) || out->n_layers < 1 ||
        (int64_t)F * *G > ((int64_t)1 << 28))
        return olmoe_errorf("%s: implausible sizes (%d fits, %d grid points, %d layers)", path, F,
                            *G, out->n_layers);
    return 0;
}

/* every dataset there with the shape the attributes say */
static int check_shapes(hid_t f, const char *path, const olmoe_kde_null *null, int G) {
    int F = null->n_fits;
    int64_t d2[2] = {F, G}, d1[1] = {F}, dq[2] = {F, OLMOE_KDE_NQ};
    static const char *const per_fit[] = {"n", "n_tokens", "layer"};
    for (int k = 0; k < 3; k++) OLMOE_TRY(check_dims(f, path, grid_names[k], 2, d2));
    for (int c = 0; c < N_FIT_COLUMNS; c++) OLMOE_TRY(check_dims(f, path, fit_columns[c].name, 1, d1));
    for (int i = 0; i < 3; i++) OLMOE_TRY(check_dims(f, path, per_fit[i], 1, d1));
    OLMOE_TRY(check_dims(f, path, "quantiles", 2, dq));
    return 0;
fail:
    return -1;
}

/* /grid, /pdf and /cdf into the fits (allocated here) */
static int read_grids(hid_t f, olmoe_kde_null *out, int G) {
    int F = out->n_fits, rc = -1;
    size_t FG = (size_t)F * (size_t)G;
    double *buf = xmalloc(xmul(FG, sizeof *buf));
    for (int i = 0; i < F; i++) {
        olmoe_kde_layer *l = &out->fits[i];
        l->n_grid = G;
        l->grid = xmalloc((size_t)G * sizeof *l->grid);
        l->pdf = xmalloc((size_t)G * sizeof *l->pdf);
        l->cdf = xmalloc((size_t)G * sizeof *l->cdf);
    }
    for (int k = 0; k < 3; k++) {
        OLMOE_TRY(olmoe_h5_read(f, grid_names[k], OLMOE_H5_F64, buf, FG));
        for (int i = 0; i < F; i++)
            memcpy(grid_array(&out->fits[i], k), buf + (size_t)i * G, (size_t)G * sizeof *buf);
    }
    rc = 0;
fail:
    free(buf);
    return rc;
}

/* the per-fit columns and /quantiles into the fits */
static int read_columns(hid_t f, const char *path, olmoe_kde_null *out) {
    int F = out->n_fits, rc = -1;
    double *col = xmalloc((size_t)F * OLMOE_KDE_NQ * sizeof *col);
    int64_t *col64 = xmalloc((size_t)F * sizeof *col64), d1[1] = {F};
    int32_t *col32 = xmalloc((size_t)F * sizeof *col32);
    for (int c = 0; c < N_FIT_COLUMNS; c++) {
        OLMOE_TRY(olmoe_h5_read(f, fit_columns[c].name, OLMOE_H5_F64, col, (size_t)F));
        for (int i = 0; i < F; i++) *fit_column(&out->fits[i], c) = col[i];
    }
    OLMOE_TRY(olmoe_h5_read(f, "quantiles", OLMOE_H5_F64, col, (size_t)F * OLMOE_KDE_NQ));
    for (int i = 0; i < F; i++)
        memcpy(out->fits[i].quantiles, col + (size_t)i * OLMOE_KDE_NQ, sizeof out->fits[i].quantiles);
    OLMOE_TRY(olmoe_h5_read(f, "n", OLMOE_H5_I64, col64, (size_t)F));
    for (int i = 0; i < F; i++) out->fits[i].n = col64[i];
    OLMOE_TRY(olmoe_h5_read(f, "n_tokens", OLMOE_H5_I64, col64, (size_t)F));
    for (int i = 0; i < F; i++) out->fits[i].n_tokens = col64[i];
    OLMOE_TRY(olmoe_h5_read(f, "layer", OLMOE_H5_I32, col32, (size_t)F));
    for (int i = 0; i < F; i++) out->fits[i].layer = col32[i], out->fits[i].expert = -1;
    if (out->per_expert) {
        OLMOE_TRY(check_dims(f, path, "expert", 1, d1));
        OLMOE_TRY(olmoe_h5_read(f, "expert", OLMOE_H5_I32, col32, (size_t)F));
        for (int i = 0; i < F; i++) out->fits[i].expert = col32[i];
    }
    rc = 0;
fail:
    free(col);
    free(col64);
    free(col32);
    return rc;
}

/* fits in strictly ascending (layer, expert) order, each in range, on an
 * increasing grid with a monotone CDF in [0, 1] */
static int check_fits(const char *path, const olmoe_kde_null *out, int G) {
    for (int i = 0; i < out->n_fits; i++) {
        const olmoe_kde_layer *l = &out->fits[i];
        int64_t key = (int64_t)l->layer * (out->n_experts + 1) + l->expert + 1;
        int64_t prev = i ? (int64_t)out->fits[i - 1].layer * (out->n_experts + 1) +
                               out->fits[i - 1].expert + 1
                         : -1;
        if (l->layer < 0 || l->layer >= out->n_layers || key <= prev ||
            (out->per_expert && (l->expert < 0 || l->expert >= out->n_experts)))
            return olmoe_errorf("%s: fit %d (layer %d, expert %d) is out of order or range (%d "
                                "layers, %d experts)", path, i, l->layer, l->expert, out->n_layers,
                                out->n_experts);
        if (!(l->grid[G - 1] > l->grid[0]))
            return olmoe_errorf("%s: layer %d: the grid is empty or reversed", path, l->layer);
        for (int j = 0; j < G; j++)
            if (!(l->cdf[j] >= 0 && l->cdf[j] <= 1) || (j && l->cdf[j] < l->cdf[j - 1]))
                return olmoe_errorf("%s: layer %d: the cdf is not monotone in [0, 1] at point %d",
                                    path, l->layer, j);
    }
    return 0;
}

int olmoe_kde_read(const char *path, olmoe_kde_null *out) {
    memset(out, 0, sizeof *out);
    int rc = -1, G = 0;
    hid_t f = olmoe_h5_open(path, 0);
    if (f < 0) return -1;
    OLMOE_TRY(read_attrs(f, path, out, &G));
    OLMOE_TRY(check_shapes(f, path, out, G));
    out->fits = xcalloc((size_t)out->n_fits, sizeof *out->fits);
    OLMOE_TRY(read_grids(f, out, G));
    OLMOE_TRY(read_columns(f, path, out));
    OLMOE_TRY(check_fits(path, out, G));
    rc = 0;
fail:
    olmoe_h5_close(f);
    if (rc != 0) olmoe_kde_null_free(out);
    return rc;
}

void olmoe_kde_null_free(olmoe_kde_null *null) {
    for (int i = 0; null->fits && i < null->n_fits; i++) olmoe_kde_layer_free(&null->fits[i]);
    free(null->fits);
    memset(null, 0, sizeof *null);
}

int olmoe_kde_null_check_depth(const olmoe_kde_null *null, const char *null_path, const char *model,
                               int n_layers) {
    if (null->n_layers == n_layers) return 0;
    return olmoe_errorf("%s: fitted to a model of %d layers, %s has %d", null_path, null->n_layers, model,
                        n_layers);
}

const olmoe_kde_layer *olmoe_kde_null_layer(const olmoe_kde_null *null, int layer) {
    for (int i = 0; i < null->n_fits; i++)
        if (null->fits[i].layer == layer) return &null->fits[i];
    return NULL;
}

int olmoe_kde_cdf_init(olmoe_kde_cdf *c, const olmoe_kde_null *null, int n_layers) {
    memset(c, 0, sizeof *c);
    if (null->n_fits < 1) return olmoe_errorf("the null distribution has no fits");
    int G = null->fits[0].n_grid;
    for (int i = 0; i < null->n_fits; i++)
        if (null->fits[i].n_grid != G)
            return olmoe_errorf("the null's fits have different grid sizes");
    c->n_layers = n_layers;
    c->n_experts = null->per_expert ? null->n_experts : 0;
    c->n_grid = G;
    size_t S = xmul((size_t)n_layers, c->n_experts ? (size_t)c->n_experts : 1);
    c->present = xcalloc(S, 1);
    c->x0 = xcalloc(S, sizeof *c->x0);
    c->inv_dx = xcalloc(S, sizeof *c->inv_dx);
    c->sf = xcalloc(xmul(S, (size_t)G), sizeof *c->sf);
    for (int i = 0; i < null->n_fits; i++) {
        const olmoe_kde_layer *l = &null->fits[i];
        if (l->layer < 0 || l->layer >= n_layers) continue;
        if (c->n_experts && (l->expert < 0 || l->expert >= c->n_experts)) continue;
        int slot = olmoe_kde_cdf_slot(c, l->layer, l->expert);
        c->present[slot] = 1;
        c->x0[slot] = l->grid[0];
        c->inv_dx[slot] = (G - 1) / (l->grid[G - 1] - l->grid[0]);
        float *s = c->sf + (size_t)slot * G;
        for (int j = 0; j < G; j++) s[j] = (float)(1.0 - l->cdf[j]);
    }
    return 0;
}

void olmoe_kde_cdf_free(olmoe_kde_cdf *c) {
    free(c->present);
    free(c->x0);
    free(c->inv_dx);
    free(c->sf);
    memset(c, 0, sizeof *c);
}
