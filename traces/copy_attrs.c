/* copy_attrs.c: a group copied from one file into another with its
 * attributes, for the results an old trace holds in place.
 *
 * H5Ocopy of HDF5 1.10 crashes (SIGSEGV in H5A__dense_post_copy_file_all)
 * copying an object whose attributes lie in dense storage (more than 8 of
 * them) and include variable-length strings, as every replay result group
 * has: so the objects are copied without their attributes, and each
 * attribute is then read and written again with its own stored type. */
#include "internal.h"

#include <stdlib.h>

/* attribute name of obj, written again on the object *op (its copy) */
static herr_t copy_attr(hid_t obj, const char *name, const H5A_info_t *info, void *op) {
    (void)info;
    hid_t dst = *(const hid_t *)op;
    hid_t a = H5I_INVALID_HID, ty = H5I_INVALID_HID, sp = H5I_INVALID_HID, b = H5I_INVALID_HID;
    void *buf = NULL;
    herr_t rc = -1;
    H5_CHECK(a = H5Aopen(obj, name, H5P_DEFAULT), "attribute %s", name);
    H5_CHECK(ty = H5Aget_type(a), "attribute %s", name);
    H5_CHECK(sp = H5Aget_space(a), "attribute %s", name);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    size_t sz = H5Tget_size(ty);
    H5_CHECK(n < 0 || sz == 0 ? -1 : 0, "attribute %s: its size", name);
    buf = xcalloc((size_t)(n ? n : 1), sz);
    H5_CHECK(H5Aread(a, ty, buf), "attribute %s", name);
    H5_CHECK(b = H5Acreate2(dst, name, ty, sp, H5P_DEFAULT, H5P_DEFAULT), "attribute %s", name);
    herr_t w = H5Awrite(b, ty, buf);
    if (H5Tdetect_class(ty, H5T_VLEN) > 0 || (H5Tget_class(ty) == H5T_STRING && H5Tis_variable_str(ty) > 0))
        H5Dvlen_reclaim(ty, sp, H5P_DEFAULT, buf);
    H5_CHECK(w, "attribute %s", name);
    rc = 0;
fail:
    olmoe_h5_close_id(b);
    olmoe_h5_close_id(a);
    olmoe_h5_close_id(ty);
    olmoe_h5_close_id(sp);
    free(buf);
    return rc;
}

/* the attributes of one object under the copied group (name "." is the
 * group), onto the same path under *op, the destination's copy */
static herr_t copy_attrs_of(hid_t src_root, const char *name, const H5O_info_t *info, void *op) {
    (void)info;
    hid_t s = H5Oopen(src_root, name, H5P_DEFAULT), d = H5Oopen(*(const hid_t *)op, name, H5P_DEFAULT);
    herr_t rc = -1;
    if (s >= 0 && d >= 0) {
        hsize_t idx = 0;
        rc = H5Aiterate2(s, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_attr, &d);
    }
    olmoe_h5_close_id(s);
    olmoe_h5_close_id(d);
    return rc;
}

int trace_copy_group(hid_t src, const char *path, hid_t dst) {
    hid_t pl = H5I_INVALID_HID, sg = H5I_INVALID_HID, dg = H5I_INVALID_HID;
    int rc = -1;
    H5_CHECK(pl = H5Pcreate(H5P_OBJECT_COPY), "/%s", path);
    H5_CHECK(H5Pset_copy_object(pl, H5O_COPY_WITHOUT_ATTR_FLAG), "/%s", path);
    H5_CHECK(H5Ocopy(src, path, dst, path, pl, H5P_DEFAULT), "/%s: cannot copy", path);
    H5_CHECK(sg = H5Oopen(src, path, H5P_DEFAULT), "/%s", path);
    H5_CHECK(dg = H5Oopen(dst, path, H5P_DEFAULT), "/%s", path);
    H5_CHECK(H5Ovisit(sg, H5_INDEX_NAME, H5_ITER_INC, copy_attrs_of, &dg), "/%s: its attributes", path);
    rc = 0;
fail:
    olmoe_h5_close_id(sg);
    olmoe_h5_close_id(dg);
    olmoe_h5_close_id(pl);
    return rc;
}
