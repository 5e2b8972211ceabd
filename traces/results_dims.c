/* results_dims.c: named dimensions for every dataset of a results file, so
 * that netCDF readers (xarray with h5netcdf) open each of its groups without
 * phony dimensions. Run when a results file is committed, over the whole
 * file: each dataset axis without a dimension scale gets one in the
 * dataset's own group, a dimension without values as netCDF-4 writes one
 * (an HDF5 dimension scale never written, so it takes no space, whose NAME
 * says "This is a netCDF dimension but not a netCDF variable."), named
 *   nll, argmax             [token]
 *   experts                 [token, layer]
 *   k_hist                  [layer, k]        (k = 0..n_experts)
 *   load                    [layer, expert]
 *   mean_k_layer            [layer]
 *   per-layer statistics    [layer]  (mean_k, sd_k, ..., /stats/<id>/)
 *   group_k_hist, group_load, group_<statistic>  [group, layer, ...]
 *   1-D columns of /match and /validate           [row]
 *   any other dataset D     [D_dim0, D_dim1, ...]
 * A known name already taken in that group by a dataset that is not a scale
 * of the same length falls back to D_dim<i>, so names never collide. Axes
 * that already have a scale (a dataset written with them, or a file committed
 * before) are left alone, so the pass is idempotent. */
#include "common.h"
#include "internal.h"
#include "traces.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char **paths;
    int n, cap;
} path_list;

static herr_t add_dataset(hid_t g, const char *name, const H5L_info_t *info, void *ctx) {
    path_list *l = ctx;
    if (info->type != H5L_TYPE_HARD) return 0;
    H5O_info_t oi;
    if (H5Oget_info_by_name(g, name, &oi, H5P_DEFAULT) < 0) return -1;
    if (oi.type != H5O_TYPE_DATASET) return 0;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 32;
        l->paths = xrealloc(l->paths, xmul((size_t)l->cap, sizeof *l->paths));
    }
    l->paths[l->n++] = xstrdup(name);
    return 0;
}

/* the dimension name of axis i of a dataset named base (rank r) in a group
 * named gbase; NULL: fallback */
static const char *known_dim(const char *gbase, const char *base, int rank, int i) {
    static const struct {
        const char *name;
        int rank;
        const char *dims[3];
    } known[] = {{"nll", 1, {"token"}},
                 {"argmax", 1, {"token"}},
                 {"experts", 2, {"token", "layer"}},
                 {"k_hist", 2, {"layer", "k"}},
                 {"load", 2, {"layer", "expert"}},
                 {"mean_k_layer", 1, {"layer"}},
                 {"group_k_hist", 3, {"group", "layer", "k"}},
                 {"group_load", 3, {"group", "layer", "expert"}}};
    static const char *const per_layer[] = {"mean_k", "sd_k", "share_min_k", "share_max_k",
                                            "coverage", "precision", "load_cv", "overlap_sum"};
    if (strcmp(gbase, "match") == 0 || strcmp(gbase, "validate") == 0)
        return rank == 1 ? "row" : NULL; /* tables: one row per result */
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
        if (strcmp(base, known[k].name) == 0 && rank == known[k].rank) return known[k].dims[i];
    const char *b = strncmp(base, "group_", 6) == 0 ? base + 6 : base;
    int grouped = b != base;
    for (size_t k = 0; k < sizeof per_layer / sizeof per_layer[0]; k++)
        if (strcmp(b, per_layer[k]) == 0 && rank == 1 + grouped)
            return grouped && i == 0 ? "group" : "layer";
    return NULL;
}

/* a dimension named name of length n in group g, reused when the group has
 * it already; H5I_INVALID_HID with *taken set when the name is taken by
 * something else, without on error */
static hid_t dim_scale(hid_t g, const char *name, hsize_t n, int *taken) {
    *taken = 0;
    htri_t e = H5Lexists(g, name, H5P_DEFAULT);
    if (e < 0) return olmoe_errorf("%s: cannot look it up", name), H5I_INVALID_HID;
    if (e) {
        hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
        if (ds < 0) {
            H5Eclear2(H5E_DEFAULT);
            *taken = 1;
            return H5I_INVALID_HID;
        }
        hid_t sp = H5Dget_space(ds);
        hsize_t d[H5S_MAX_RANK];
        int r = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, d, NULL);
        olmoe_h5_close_id(sp);
        if (H5DSis_scale(ds) > 0 && r == 1 && d[0] == n) return ds;
        H5Dclose(ds);
        *taken = 1;
        return H5I_INVALID_HID;
    }
    hid_t sp = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    char label[128]; /* netCDF-4's mark of a dimension without values */
    snprintf(label, sizeof label, "This is a netCDF dimension but not a netCDF variable.%10llu",
             (unsigned long long)n);
    H5_CHECK(sp = H5Screate_simple(1, &n, NULL), "%s", name);
    H5_CHECK(ds = H5Dcreate2(g, name, H5T_IEEE_F32BE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "%s: cannot create", name);
    H5_CHECK(H5DSset_scale(ds, label), "%s: dimension scale", name);
    H5Sclose(sp);
    return ds;
fail:
    olmoe_h5_close_id(ds);
    olmoe_h5_close_id(sp);
    return H5I_INVALID_HID;
}

/* attaches a scale to axis i of ds (in group g, named base) */
static int name_axis(hid_t g, hid_t ds, const char *gbase, const char *base, int rank, int i,
                     hsize_t n) {
    char fallback[512];
    snprintf(fallback, sizeof fallback, "%s_dim%d", base, i);
    const char *name = known_dim(gbase, base, rank, i);
    int taken = 0;
    hid_t sc = name ? dim_scale(g, name, n, &taken) : H5I_INVALID_HID;
    if (sc < 0 && name && !taken) return -1;
    if (sc < 0) sc = dim_scale(g, fallback, n, &taken);
    if (sc < 0) return taken ? olmoe_errorf("%s: name taken", fallback) : -1;
    int rc = 0;
    if (H5DSattach_scale(ds, sc, (unsigned)i) < 0) {
        H5Eclear2(H5E_DEFAULT);
        rc = olmoe_errorf("%s: cannot attach dimension %d", base, i);
    }
    H5Dclose(sc);
    return rc;
}

static int name_dataset(hid_t f, const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char *gpath = xstrdup(slash ? path : ".");
    if (slash) gpath[slash - path] = 0;
    hid_t g = H5Gopen2(f, gpath, H5P_DEFAULT), ds = H5Dopen2(f, path, H5P_DEFAULT);
    hid_t sp = ds < 0 ? H5I_INVALID_HID : H5Dget_space(ds);
    int rc = -1, rank = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    hsize_t d[H5S_MAX_RANK];
    if (g < 0 || rank < 0 || H5Sget_simple_extent_dims(sp, d, NULL) < 0) {
        H5Eclear2(H5E_DEFAULT);
        olmoe_errorf("/%s: cannot open it", path);
        goto done;
    }
    if (H5DSis_scale(ds) > 0 || H5Sget_simple_extent_type(sp) != H5S_SIMPLE) {
        rc = 0;
        goto done;
    }
    rc = 0;
    const char *gslash = strrchr(gpath, '/'), *gbase = gslash ? gslash + 1 : gpath;
    for (int i = 0; i < rank && rc == 0; i++)
        if (H5DSget_num_scales(ds, (unsigned)i) <= 0)
            rc = name_axis(g, ds, gbase, base, rank, i, d[i]);
    H5Eclear2(H5E_DEFAULT);
    if (rc) olmoe_error_prefix("/%s", path);
done:
    olmoe_h5_close_id(sp);
    olmoe_h5_close_id(ds);
    olmoe_h5_close_id(g);
    free(gpath);
    return rc;
}

int olmoe_results_dims(hid_t f) {
    path_list l = {NULL, 0, 0};
    int rc = 0;
    if (H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, add_dataset, &l) < 0) {
        H5Eclear2(H5E_DEFAULT);
        rc = olmoe_errorf("cannot list the datasets");
    }
    for (int i = 0; i < l.n; i++) {
        if (rc == 0) rc = name_dataset(f, l.paths[i]);
        free(l.paths[i]);
    }
    free(l.paths);
    return rc;
}
