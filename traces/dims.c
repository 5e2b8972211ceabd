/* dims.c: netCDF-4 dimensions (HDF5 dimension scales) for the datasets whose
 * axes are not token, layer, expert or hidden, so that netCDF readers
 * (xarray with h5netcdf, netCDF-C) open a trace with every axis named:
 *   /window       int64 [W] 0..W-1, dimension 0 of /windows
 *   /window_field string [3] "start", "length", "stored_from": its columns
 *   /document     int64 [D] 0..D-1, dimension 0 of /documents
 *   /groups       its own dimension "groups" (a coordinate: the names;
 *                 netCDF names a coordinate variable's dimension after it)
 * /window and /document grow with the rows they index (trace_dims_sync);
 * a trace written before them simply lacks them. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static hid_t index_scale(hid_t f, const char *name) {
    hid_t sp = H5I_INVALID_HID, pl = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hsize_t d = 0, mx = H5S_UNLIMITED, ch = 1024;
    H5_CHECK(sp = H5Screate_simple(1, &d, &mx), "/%s", name);
    H5_CHECK(pl = H5Pcreate(H5P_DATASET_CREATE), "/%s", name);
    H5_CHECK(H5Pset_chunk(pl, 1, &ch), "/%s", name);
    H5_CHECK(ds = H5Dcreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, pl, H5P_DEFAULT), "/%s: cannot create", name);
    H5_CHECK(H5DSset_scale(ds, name), "/%s: dimension scale", name);
    H5Pclose(pl);
    H5Sclose(sp);
    return ds;
fail:
    olmoe_h5_close_id(ds);
    olmoe_h5_close_id(pl);
    olmoe_h5_close_id(sp);
    return H5I_INVALID_HID;
}

static hid_t field_scale(hid_t f) {
    static const char *const names[3] = {"start", "length", "stored_from"};
    hid_t st = H5I_INVALID_HID, sp = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hsize_t d = 3;
    H5_CHECK(st = trace_vstr_type(), "/window_field"); /* UTF-8: readers decode it to text */
    H5_CHECK(sp = H5Screate_simple(1, &d, NULL), "/window_field");
    H5_CHECK(ds = H5Dcreate2(f, "window_field", st, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), "/window_field");
    H5_CHECK(H5Dwrite(ds, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, names), "/window_field");
    H5_CHECK(H5DSset_scale(ds, "window_field"), "/window_field: dimension scale");
    H5Tclose(st);
    H5Sclose(sp);
    return ds;
fail:
    olmoe_h5_close_id(ds);
    olmoe_h5_close_id(sp);
    olmoe_h5_close_id(st);
    return H5I_INVALID_HID;
}

int trace_dims_make(hid_t f, hid_t windows, hid_t documents, hid_t groups) {
    hid_t w = index_scale(f, "window"), fl = field_scale(f), d = index_scale(f, "document");
    int rc = -1;
    if (w < 0 || fl < 0 || d < 0) goto fail;
    H5_CHECK(H5DSattach_scale(windows, w, 0), "/windows: attaching /window");
    H5_CHECK(H5DSattach_scale(windows, fl, 1), "/windows: attaching /window_field");
    H5_CHECK(H5DSattach_scale(documents, d, 0), "/documents: attaching /document");
    H5_CHECK(H5DSset_scale(groups, "groups"), "/groups: dimension scale");
    rc = 0;
fail:
    olmoe_h5_close_id(w);
    olmoe_h5_close_id(fl);
    olmoe_h5_close_id(d);
    return rc;
}

/* scale name as long as dataset of: the new indices written */
static int sync_one(hid_t f, const char *name, const char *of) {
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) return 0; /* a trace from before these scales */
    hid_t ds = H5I_INVALID_HID, src = H5I_INVALID_HID, sp = H5I_INVALID_HID, ms = H5I_INVALID_HID;
    int64_t *v = NULL;
    int rc = -1;
    hsize_t n, have, dims[2];
    H5_CHECK(src = H5Dopen2(f, of, H5P_DEFAULT), "%s", of);
    H5_CHECK(sp = H5Dget_space(src), "%s", of);
    H5_CHECK(H5Sget_simple_extent_dims(sp, dims, NULL), "%s", of);
    n = dims[0];
    H5Sclose(sp);
    sp = H5I_INVALID_HID;
    H5_CHECK(ds = H5Dopen2(f, name, H5P_DEFAULT), "/%s", name);
    H5_CHECK(sp = H5Dget_space(ds), "/%s", name);
    H5_CHECK(H5Sget_simple_extent_dims(sp, &have, NULL), "/%s", name);
    H5Sclose(sp);
    sp = H5I_INVALID_HID;
    if (have != n) H5_CHECK(H5Dset_extent(ds, &n), "/%s: cannot resize to %llu", name, (unsigned long long)n);
    if (n > have) {
        hsize_t cnt = n - have;
        v = xmalloc(xmul((size_t)cnt, sizeof *v));
        for (hsize_t i = 0; i < cnt; i++) v[i] = (int64_t)(have + i);
        H5_CHECK(sp = H5Dget_space(ds), "/%s", name);
        H5_CHECK(H5Sselect_hyperslab(sp, H5S_SELECT_SET, &have, NULL, &cnt, NULL), "/%s", name);
        H5_CHECK(ms = H5Screate_simple(1, &cnt, NULL), "/%s", name);
        H5_CHECK(H5Dwrite(ds, H5T_NATIVE_INT64, ms, sp, H5P_DEFAULT, v), "/%s: write", name);
    }
    rc = 0;
fail:
    free(v);
    olmoe_h5_close_id(ms);
    olmoe_h5_close_id(sp);
    olmoe_h5_close_id(ds);
    olmoe_h5_close_id(src);
    return rc;
}

int trace_dims_sync(hid_t f) {
    return sync_one(f, "window", "windows") || sync_one(f, "document", "documents") ? -1 : 0;
}
