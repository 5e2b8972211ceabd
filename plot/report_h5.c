/* report_h5.c: reading results that may or may not be there. The report
 * takes whatever groups exist; an optional attribute or dataset that is absent
 * is NaN / NULL, while one that is present but malformed is an error naming
 * the file and the path. */
#include "report_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void rep_free_strings(char **s, int64_t n) {
    if (!s) return;
    for (int64_t i = 0; i < n; i++) free(s[i]);
    free(s);
}

int rep_h5_strings(hid_t loc, const char *path, char ***out, int64_t *n) {
    *out = NULL;
    *n = 0;
    hid_t ds = H5I_INVALID_HID, ft = H5I_INVALID_HID, sp = H5I_INVALID_HID, mt = H5I_INVALID_HID;
    char **s = NULL;
    int64_t m = 0;
    H5_CHECK(ds = H5Dopen2(loc, path, H5P_DEFAULT), "%s", path);
    H5_CHECK(ft = H5Dget_type(ds), "%s", path);
    if (H5Tget_class(ft) != H5T_STRING) {
        olmoe_errorf("%s: not a string dataset", path);
        goto fail;
    }
    H5_CHECK(sp = H5Dget_space(ds), "%s", path);
    hsize_t dim = 0;
    if (H5Sget_simple_extent_ndims(sp) != 1) {
        olmoe_errorf("%s: not one-dimensional", path);
        goto fail;
    }
    H5_CHECK(H5Sget_simple_extent_dims(sp, &dim, NULL), "%s", path);
    m = (int64_t)dim;
    s = xcalloc((size_t)m + 1, sizeof *s);
    htri_t vl = H5Tis_variable_str(ft);
    H5_CHECK(vl, "%s", path);
    if (vl) {
        H5_CHECK(mt = H5Tcopy(H5T_C_S1), "%s", path);
        H5_CHECK(H5Tset_size(mt, H5T_VARIABLE), "%s", path);
        H5_CHECK(H5Tset_cset(mt, H5Tget_cset(ft)), "%s", path);
        char **raw = xcalloc((size_t)m + 1, sizeof *raw);
        if (m > 0 && H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0) {
            free(raw);
            olmoe_errorf("%s: cannot read the strings", path);
            goto fail;
        }
        for (int64_t i = 0; i < m; i++) s[i] = xstrdup(raw[i] ? raw[i] : "");
        if (m > 0) H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, raw);
        free(raw);
    } else {
        size_t len = H5Tget_size(ft);
        H5_CHECK(mt = H5Tcopy(H5T_C_S1), "%s", path);
        H5_CHECK(H5Tset_size(mt, len + 1), "%s", path);
        char *buf = xcalloc(xmul((size_t)m + 1, len + 1), 1);
        if (m > 0 && H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            free(buf);
            olmoe_errorf("%s: cannot read the strings", path);
            goto fail;
        }
        for (int64_t i = 0; i < m; i++) s[i] = xstrdup(buf + (size_t)i * (len + 1));
        free(buf);
    }
    H5Tclose(mt);
    H5Sclose(sp);
    H5Tclose(ft);
    H5Dclose(ds);
    *out = s;
    *n = m;
    return 0;
fail:
    if (mt >= 0) H5Tclose(mt);
    if (sp >= 0) H5Sclose(sp);
    if (ft >= 0) H5Tclose(ft);
    if (ds >= 0) H5Dclose(ds);
    rep_free_strings(s, m);
    return -1;
}

double rep_attr_f64(hid_t loc, const char *obj, const char *name) {
    double v;
    if (olmoe_h5_has_attr(loc, obj, name) != 1 || olmoe_h5_get_attr_f64(loc, obj, name, &v) != 0)
        return NAN;
    return v;
}

int64_t rep_attr_i64(hid_t loc, const char *obj, const char *name, int64_t fallback) {
    int64_t v;
    if (olmoe_h5_has_attr(loc, obj, name) != 1 || olmoe_h5_get_attr_i64(loc, obj, name, &v) != 0)
        return fallback;
    return v;
}

char *rep_attr_str(hid_t loc, const char *obj, const char *name) {
    char *v = NULL;
    if (olmoe_h5_has_attr(loc, obj, name) != 1 || olmoe_h5_get_attr_str(loc, obj, name, &v) != 0)
        return xstrdup("");
    return v;
}

int rep_h5_read_shape(hid_t loc, const char *file, const char *path, olmoe_h5_kind kind,
                      int rank, const int64_t *dims, void *out) {
    int e = olmoe_h5_exists(loc, path);
    if (e < 0) return olmoe_error_prefix("%s", file);
    if (e == 0) return 0;
    int r;
    int64_t got[OLMOE_H5_MAX_RANK];
    if (olmoe_h5_shape(loc, path, &r, got) != 0) return olmoe_error_prefix("%s", file);
    int same = r == rank;
    for (int i = 0; same && i < rank; i++) same = got[i] == dims[i];
    if (!same) {
        char want[96] = "", have[96] = "";
        for (int i = 0; i < rank; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? ", " : "",
                     (long long)dims[i]);
        for (int i = 0; i < r && i < OLMOE_H5_MAX_RANK; i++)
            snprintf(have + strlen(have), sizeof have - strlen(have), "%s%lld", i ? ", " : "",
                     (long long)got[i]);
        return olmoe_errorf("%s: /%s has shape [%s], expected [%s]", file, path, have, want);
    }
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
    if (olmoe_h5_read(loc, path, kind, out, n) != 0) return olmoe_error_prefix("%s", file);
    return 1;
}
