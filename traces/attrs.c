/* attrs.c: scalar attributes (strings, integers, doubles) on any object.
 * Setting replaces an existing attribute of the same name; strings are
 * written variable-length UTF-8 (what h5py gives back as str) and read from
 * either variable- or fixed-length storage. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

hid_t trace_vstr_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    if (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

static const char *objname(const char *obj) { return obj && *obj ? obj : "."; }

/* creates (replacing) a scalar attribute of file type ftype and writes value */
static int set_attr(hid_t loc, const char *obj, const char *name, hid_t ftype, hid_t mtype,
                    const void *value) {
    olmoe_h5_init();
    hid_t sp = H5I_INVALID_HID, a = H5I_INVALID_HID;
    obj = objname(obj);
    htri_t e;
    H5_CHECK(e = H5Aexists_by_name(loc, obj, name, H5P_DEFAULT), "%s: attribute '%s'", obj, name);
    if (e) H5_CHECK(H5Adelete_by_name(loc, obj, name, H5P_DEFAULT),
                    "%s: cannot replace attribute '%s'", obj, name);
    H5_CHECK(sp = H5Screate(H5S_SCALAR), "%s: attribute '%s'", obj, name);
    H5_CHECK(a = H5Acreate_by_name(loc, obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT,
                                   H5P_DEFAULT),
             "%s: cannot create attribute '%s'", obj, name);
    H5_CHECK(H5Awrite(a, mtype, value), "%s: cannot write attribute '%s'", obj, name);
    H5Aclose(a);
    H5Sclose(sp);
    return 0;
fail:
    olmoe_h5_close_id(a);
    olmoe_h5_close_id(sp);
    return -1;
}

int olmoe_h5_set_attr_str(hid_t loc, const char *obj, const char *name, const char *value) {
    hid_t t = trace_vstr_type();
    if (t < 0) return olmoe_errorf("%s: string type", name);
    const char *v = value ? value : "";
    int r = set_attr(loc, obj, name, t, t, &v);
    H5Tclose(t);
    return r;
}

int olmoe_h5_set_attr_i32(hid_t loc, const char *obj, const char *name, int32_t value) {
    return set_attr(loc, obj, name, H5T_STD_I32LE, H5T_NATIVE_INT32, &value);
}

int olmoe_h5_set_attr_i64(hid_t loc, const char *obj, const char *name, int64_t value) {
    return set_attr(loc, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

int olmoe_h5_set_attr_f64(hid_t loc, const char *obj, const char *name, double value) {
    return set_attr(loc, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

int olmoe_h5_has_attr(hid_t loc, const char *obj, const char *name) {
    olmoe_h5_init();
    obj = objname(obj);
    htri_t e;
    H5_CHECK(e = H5Aexists_by_name(loc, obj, name, H5P_DEFAULT), "%s: attribute '%s'", obj, name);
    return e > 0;
fail:
    return -1;
}

/* opens a one-element attribute and returns its type class in *cls */
static hid_t open_attr(hid_t loc, const char *obj, const char *name, hid_t *type,
                       H5T_class_t *cls) {
    hid_t a = H5I_INVALID_HID, sp = H5I_INVALID_HID;
    *type = H5I_INVALID_HID;
    hssize_t np;
    htri_t e;
    H5_CHECK(e = H5Aexists_by_name(loc, obj, name, H5P_DEFAULT), "%s: attribute '%s'", obj, name);
    if (!e) {
        olmoe_errorf("%s: attribute '%s' is missing", obj, name);
        goto fail;
    }
    H5_CHECK(a = H5Aopen_by_name(loc, obj, name, H5P_DEFAULT, H5P_DEFAULT),
             "%s: cannot open attribute '%s'", obj, name);
    H5_CHECK(sp = H5Aget_space(a), "%s: attribute '%s'", obj, name);
    H5_CHECK(np = H5Sget_simple_extent_npoints(sp), "%s: attribute '%s'", obj, name);
    if (np != 1) {
        olmoe_errorf("%s: attribute '%s' holds %lld values, expected one", obj, name,
                     (long long)np);
        goto fail;
    }
    H5_CHECK(*type = H5Aget_type(a), "%s: attribute '%s'", obj, name);
    H5_CHECK(*cls = H5Tget_class(*type), "%s: attribute '%s'", obj, name);
    H5Sclose(sp);
    return a;
fail:
    olmoe_h5_close_id(*type);
    *type = H5I_INVALID_HID;
    olmoe_h5_close_id(sp);
    olmoe_h5_close_id(a);
    return H5I_INVALID_HID;
}

int olmoe_h5_get_attr_str(hid_t loc, const char *obj, const char *name, char **value) {
    olmoe_h5_init();
    obj = objname(obj);
    *value = NULL;
    hid_t type, mt = H5I_INVALID_HID, sp = H5I_INVALID_HID;
    H5T_class_t cls;
    htri_t vl;
    hid_t a = open_attr(loc, obj, name, &type, &cls);
    if (a < 0) return -1;
    if (cls != H5T_STRING) {
        olmoe_errorf("%s: attribute '%s' is not a string", obj, name);
        goto fail;
    }
    H5_CHECK(vl = H5Tis_variable_str(type), "%s: attribute '%s'", obj, name);
    if (vl) {
        char *s = NULL;
        H5_CHECK(mt = trace_vstr_type(), "%s: attribute '%s'", obj, name);
        H5_CHECK(H5Aread(a, mt, &s), "%s: cannot read attribute '%s'", obj, name);
        *value = xstrdup(s ? s : "");
        H5_CHECK(sp = H5Aget_space(a), "%s: attribute '%s'", obj, name);
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, &s);
    } else {
        size_t n = H5Tget_size(type);
        if (n == 0 || n > (1u << 30)) {
            olmoe_errorf("%s: attribute '%s' has a bad string size", obj, name);
            goto fail;
        }
        char *buf = xcalloc(n + 1, 1);
        H5_CHECK(mt = H5Tcopy(H5T_C_S1), "%s: attribute '%s'", obj, name);
        if (H5Tset_size(mt, n) < 0 || H5Aread(a, mt, buf) < 0) {
            free(buf);
            H5_CHECK(-1, "%s: cannot read attribute '%s'", obj, name);
        }
        buf[n] = '\0';
        *value = buf;
    }
    olmoe_h5_close_id(sp);
    olmoe_h5_close_id(mt);
    H5Tclose(type);
    H5Aclose(a);
    return 0;
fail:
    olmoe_h5_close_id(sp);
    olmoe_h5_close_id(mt);
    olmoe_h5_close_id(type);
    H5Aclose(a);
    return -1;
}

static int get_number(hid_t loc, const char *obj, const char *name, int want_int, void *out) {
    olmoe_h5_init();
    obj = objname(obj);
    hid_t type;
    H5T_class_t cls;
    hid_t a = open_attr(loc, obj, name, &type, &cls);
    if (a < 0) return -1;
    if (cls != H5T_INTEGER && (want_int || cls != H5T_FLOAT)) {
        olmoe_errorf("%s: attribute '%s' is not %s", obj, name, want_int ? "an integer" : "a number");
        goto fail;
    }
    H5_CHECK(H5Aread(a, want_int ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, out),
             "%s: cannot read attribute '%s'", obj, name);
    H5Tclose(type);
    H5Aclose(a);
    return 0;
fail:
    olmoe_h5_close_id(type);
    H5Aclose(a);
    return -1;
}

int olmoe_h5_get_attr_i64(hid_t loc, const char *obj, const char *name, int64_t *value) {
    return get_number(loc, obj, name, 1, value);
}

int olmoe_h5_get_attr_f64(hid_t loc, const char *obj, const char *name, double *value) {
    return get_number(loc, obj, name, 0, value);
}

int olmoe_h5_check_format(hid_t f, const char *path, const char *const *formats, const char *what) {
    char *fmt = NULL;
    int e = olmoe_h5_has_attr(f, ".", "format");
    if (e < 0 || (e == 1 && olmoe_h5_get_attr_str(f, ".", "format", &fmt) != 0))
        return olmoe_error_prefix("%s", path);
    for (int i = 0; fmt && formats[i]; i++)
        if (strcmp(fmt, formats[i]) == 0) {
            free(fmt);
            return 0;
        }
    if (fmt)
        olmoe_errorf("%s: is a file of format '%s', not %s", path, fmt, what);
    else
        olmoe_errorf("%s: has no 'format' attribute: not %s", path, what);
    free(fmt);
    return -1;
}
