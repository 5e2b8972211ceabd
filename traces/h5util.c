/* h5util.c: the checked-call error messages and the generic file and dataset
 * helpers (olmoe_h5_*) that modules use to store results in HDF5.
 *
 * HDF5 prints its whole error stack by default; we switch that off once and
 * turn a failure into one line: our context (file, dataset, what we were
 * doing), HDF5's innermost reason, and the call with its file:line. */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* HDF5 1.10.8 dereferences NULL in its exit handler (H5F__close_cb) when a
 * file it still has open saw a failed write (full disk, file size limit):
 * the process would die by SIGSEGV after its one-line error. On an error exit
 * the handler is skipped: files left open are then as after a kill, which
 * traces survive and which a failed command's outputs (removed) do not mind.
 * Registered after HDF5's own, so it runs first. */
static void skip_hdf5_exit(int status, void *arg) {
    (void)arg;
    if (status == 0) return;
    fflush(NULL);
    _exit(status);
}

void olmoe_h5_init(void) {
    static int done;
    /* HDF5 built thread-safe (Debian's is) keeps the error-printing switch per
     * thread: a writer thread (olmoe-capture's) must switch it off too */
    static _Thread_local int silenced;
    if (!silenced) {
        H5open();
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        silenced = 1;
    }
    if (done) return;
    done = 1;
    on_exit(skip_hdf5_exit, NULL);
}

void olmoe_h5_close_id(hid_t id) {
    if (id <= 0) return;
    switch (H5Iget_type(id)) {
    case H5I_FILE: H5Fclose(id); break;
    case H5I_GROUP: H5Gclose(id); break;
    case H5I_DATATYPE: H5Tclose(id); break;
    case H5I_DATASPACE: H5Sclose(id); break;
    case H5I_DATASET: H5Dclose(id); break;
    case H5I_ATTR: H5Aclose(id); break;
    case H5I_GENPROP_LST: H5Pclose(id); break;
    default: break;
    }
}

static herr_t walk_innermost(unsigned n, const H5E_error2_t *e, void *data) {
    if (n == 0 && e->desc) snprintf((char *)data, 256, "%s", e->desc);
    return 0;
}

const char *olmoe_h5_reason(void) {
    static char buf[256];
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_innermost, buf);
    /* system call failures carry errno's text inside a long description */
    const char *m = strstr(buf, "error message = '");
    if (m) {
        m += strlen("error message = '");
        const char *q = strchr(m, '\'');
        size_t k = q ? (size_t)(q - m) : strlen(m);
        memmove(buf, m, k);
        buf[k] = '\0';
    }
    if (strstr(buf, "file signature not found")) snprintf(buf, sizeof buf, "not an HDF5 file");
    /* HDF5's messages start in lower case already; drop a trailing full stop */
    size_t k = strlen(buf);
    if (k && buf[k - 1] == '.') buf[k - 1] = '\0';
    return buf;
}

int olmoe_h5_failf(const char *src, int line, const char *call, const char *fmt, ...) {
    char ctx[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    const char *why = olmoe_h5_reason();
    /* name the HDF5 function: the identifier just before the first '(' */
    char fn[64] = "hdf5 call";
    const char *p = strchr(call, '(');
    if (p) {
        const char *b = p;
        while (b > call && (b[-1] == '_' || (b[-1] >= '0' && b[-1] <= '9') ||
                            (b[-1] >= 'a' && b[-1] <= 'z') || (b[-1] >= 'A' && b[-1] <= 'Z')))
            b--;
        if (p > b) snprintf(fn, sizeof fn, "%.*s", (int)(p - b), b);
    }
    const char *base = strrchr(src, '/');
    base = base ? base + 1 : src;
    H5Eclear2(H5E_DEFAULT);
    if (*why) return olmoe_errorf("%s: %s (%s at traces/%s:%d)", ctx, why, fn, base, line);
    return olmoe_errorf("%s: %s failed (traces/%s:%d)", ctx, fn, base, line);
}

/* ---- files ---- */
hid_t olmoe_h5_create(const char *path) {
    olmoe_h5_init();
    hid_t f = H5I_INVALID_HID;
    H5_CHECK(f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "%s: cannot create",
             path);
    return f;
fail:
    return H5I_INVALID_HID;
}

hid_t olmoe_h5_open(const char *path, int writable) {
    olmoe_h5_init();
    if (!writable) olmoe_input_add(path); /* read: no output of ours may replace it */
    if (access(path, F_OK) != 0) {
        olmoe_errorf("%s: %s", path, strerror(errno));
        return H5I_INVALID_HID;
    }
    hid_t f = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0) return f;
    if (!writable) {
        /* a file a SWMR writer still marks open (it was killed): SWMR read,
         * which also tolerates the end-of-allocation the writer had not yet
         * recorded */
        /* A damaged file fails its checksums on every try: SWMR's default of
         * 100 tries with doubling sleeps never ends (tests/fuzz/regress). */
        hid_t sfapl = H5Pcreate(H5P_FILE_ACCESS);
        if (sfapl >= 0) H5Pset_metadata_read_attempts(sfapl, 4);
        hid_t f2 = H5Fopen(path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, sfapl >= 0 ? sfapl : H5P_DEFAULT);
        olmoe_h5_close_id(sfapl);
        if (f2 >= 0) return f2;
        /* marked by a plain writer: read it ignoring the mark (what h5clear
         * -s would clear), without changing the file */
        hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
        hbool_t clear = 1;
        if (fapl >= 0 && H5Pexist(fapl, "clear_status_flags") > 0 &&
            H5Pset(fapl, "clear_status_flags", &clear) >= 0)
            f2 = H5Fopen(path, H5F_ACC_RDONLY, fapl);
        olmoe_h5_close_id(fapl);
        if (f2 >= 0) return f2;
    }
    f = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        if (writable && strstr(olmoe_h5_reason(), "already open for write")) {
            H5Eclear2(H5E_DEFAULT);
            olmoe_errorf("%s: marked open by a writer (still running, or killed); if no process "
                         "has it open, 'h5clear -s %s' clears the mark", path, path);
        } else {
            olmoe_h5_failf(__FILE__, __LINE__, "H5Fopen()", "%s: cannot open", path);
        }
    }
    return f;
}

int olmoe_h5_close(hid_t file) {
    olmoe_h5_init();
    if (file <= 0) return 0;
    char name[512] = "";
    H5Fget_name(file, name, sizeof name);
    H5_CHECK(H5Fclose(file), "%s: cannot close", name);
    return 0;
fail:
    return -1;
}

int olmoe_h5_flush(hid_t file) {
    olmoe_h5_init();
    H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL), "cannot flush");
    return 0;
fail:
    return -1;
}

/* ---- links ---- */
int olmoe_h5_exists(hid_t loc, const char *path) {
    olmoe_h5_init();
    size_t n = strlen(path);
    char *buf = xmalloc(n + 1);
    int r = 1;
    for (size_t i = 0; i <= n && r == 1; i++) {
        if (i < n && path[i] != '/') continue;
        if (i == 0) continue; /* a leading '/' */
        memcpy(buf, path, i);
        buf[i] = '\0';
        htri_t e = H5Lexists(loc, buf, H5P_DEFAULT);
        if (e < 0) {
            olmoe_h5_failf(__FILE__, __LINE__, "H5Lexists()", "%s: cannot look up", buf);
            r = -1;
        } else if (e == 0) {
            r = 0;
        }
    }
    free(buf);
    return r;
}

int olmoe_h5_make_groups(hid_t loc, const char *path) {
    olmoe_h5_init();
    hid_t lcpl = H5I_INVALID_HID, g = H5I_INVALID_HID;
    int e = olmoe_h5_exists(loc, path);
    if (e != 0) return e < 0 ? -1 : 0;
    H5_CHECK(lcpl = H5Pcreate(H5P_LINK_CREATE), "%s: group", path);
    H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1), "%s: group", path);
    H5_CHECK(g = H5Gcreate2(loc, path, lcpl, H5P_DEFAULT, H5P_DEFAULT), "%s: cannot create group",
             path);
    H5Gclose(g);
    H5Pclose(lcpl);
    return 0;
fail:
    olmoe_h5_close_id(lcpl);
    return -1;
}

int olmoe_h5_delete(hid_t loc, const char *path) {
    olmoe_h5_init();
    int e = olmoe_h5_exists(loc, path);
    if (e <= 0) return e;
    H5_CHECK(H5Ldelete(loc, path, H5P_DEFAULT), "%s: cannot delete", path);
    return 0;
fail:
    return -1;
}

/* ---- whole datasets ---- */
static hid_t mem_type(olmoe_h5_kind k) {
    switch (k) {
    case OLMOE_H5_F32: return H5T_NATIVE_FLOAT;
    case OLMOE_H5_F64: return H5T_NATIVE_DOUBLE;
    case OLMOE_H5_I32: return H5T_NATIVE_INT32;
    case OLMOE_H5_I64: return H5T_NATIVE_INT64;
    default: return H5I_INVALID_HID;
    }
}

static hid_t file_type(olmoe_h5_kind k) {
    switch (k) {
    case OLMOE_H5_F32: return H5T_IEEE_F32LE;
    case OLMOE_H5_F64: return H5T_IEEE_F64LE;
    case OLMOE_H5_I32: return H5T_STD_I32LE;
    case OLMOE_H5_I64: return H5T_STD_I64LE;
    default: return H5I_INVALID_HID;
    }
}

int olmoe_h5_write(hid_t loc, const char *path, olmoe_h5_kind kind, int rank,
                   const int64_t *dims, const void *data) {
    olmoe_h5_init();
    hid_t sp = H5I_INVALID_HID, lcpl = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    if ((unsigned)kind >= OLMOE_H5_KIND_COUNT) return olmoe_errorf("%s: bad element kind", path);
    if (rank < 0 || rank > OLMOE_H5_MAX_RANK)
        return olmoe_errorf("%s: rank %d outside 0..%d", path, rank, OLMOE_H5_MAX_RANK);
    hsize_t d[OLMOE_H5_MAX_RANK];
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0) return olmoe_errorf("%s: negative dimension %lld", path, (long long)dims[i]);
        d[i] = (hsize_t)dims[i];
    }
    H5_CHECK(sp = rank ? H5Screate_simple(rank, d, NULL) : H5Screate(H5S_SCALAR), "%s: dataspace",
             path);
    H5_CHECK(lcpl = H5Pcreate(H5P_LINK_CREATE), "%s", path);
    H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1), "%s", path);
    H5_CHECK(ds = H5Dcreate2(loc, path, file_type(kind), sp, lcpl, H5P_DEFAULT, H5P_DEFAULT),
             "%s: cannot create dataset", path);
    H5_CHECK(H5Dwrite(ds, mem_type(kind), H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
             "%s: cannot write", path);
    H5Dclose(ds);
    H5Pclose(lcpl);
    H5Sclose(sp);
    return 0;
fail:
    olmoe_h5_close_id(ds);
    olmoe_h5_close_id(lcpl);
    olmoe_h5_close_id(sp);
    return -1;
}

int olmoe_h5_shape(hid_t loc, const char *path, int *rank, int64_t dims[OLMOE_H5_MAX_RANK]) {
    olmoe_h5_init();
    hid_t ds = H5I_INVALID_HID, sp = H5I_INVALID_HID;
    int r = 0;
    hsize_t d[OLMOE_H5_MAX_RANK];
    H5_CHECK(ds = H5Dopen2(loc, path, H5P_DEFAULT), "%s: cannot open dataset", path);
    H5_CHECK(sp = H5Dget_space(ds), "%s", path);
    H5_CHECK(r = H5Sget_simple_extent_ndims(sp), "%s", path);
    if (r > OLMOE_H5_MAX_RANK) {
        olmoe_errorf("%s: rank %d above %d", path, r, OLMOE_H5_MAX_RANK);
        goto fail;
    }
    H5_CHECK(H5Sget_simple_extent_dims(sp, d, NULL), "%s", path);
    *rank = r;
    for (int i = 0; i < r; i++) dims[i] = (int64_t)d[i];
    H5Sclose(sp);
    H5Dclose(ds);
    return 0;
fail:
    olmoe_h5_close_id(sp);
    olmoe_h5_close_id(ds);
    return -1;
}

static size_t count_elems(const char *path, int rank, const int64_t *dims, int *ok) {
    size_t n = 1;
    *ok = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] != 0 && n > SIZE_MAX / 16 / (size_t)dims[i]) {
            olmoe_errorf("%s: dataset too large", path);
            *ok = 0;
            return 0;
        }
        n *= (size_t)dims[i];
    }
    return n;
}

int olmoe_h5_read(hid_t loc, const char *path, olmoe_h5_kind kind, void *out, size_t n) {
    olmoe_h5_init();
    hid_t ds = H5I_INVALID_HID;
    int rank, ok;
    int64_t dims[OLMOE_H5_MAX_RANK];
    if ((unsigned)kind >= OLMOE_H5_KIND_COUNT) return olmoe_errorf("%s: bad element kind", path);
    if (olmoe_h5_shape(loc, path, &rank, dims) != 0) return -1;
    size_t have = count_elems(path, rank, dims, &ok);
    if (!ok) return -1;
    if (have != n)
        return olmoe_errorf("%s: holds %zu elements, the caller expects %zu", path, have, n);
    H5_CHECK(ds = H5Dopen2(loc, path, H5P_DEFAULT), "%s: cannot open dataset", path);
    if (n) H5_CHECK(H5Dread(ds, mem_type(kind), H5S_ALL, H5S_ALL, H5P_DEFAULT, out),
                    "%s: cannot read", path);
    H5Dclose(ds);
    return 0;
fail:
    olmoe_h5_close_id(ds);
    return -1;
}

int olmoe_h5_read_alloc(hid_t loc, const char *path, olmoe_h5_kind kind, void **out, int *rank,
                        int64_t dims[OLMOE_H5_MAX_RANK]) {
    static const size_t esize[OLMOE_H5_KIND_COUNT] = {4, 8, 4, 8};
    int ok;
    *out = NULL;
    if ((unsigned)kind >= OLMOE_H5_KIND_COUNT) return olmoe_errorf("%s: bad element kind", path);
    if (olmoe_h5_shape(loc, path, rank, dims) != 0) return -1;
    size_t n = count_elems(path, *rank, dims, &ok);
    if (!ok) return -1;
    void *buf = xmalloc(n ? n * esize[kind] : 1);
    if (olmoe_h5_read(loc, path, kind, buf, n) != 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

int olmoe_h5_write_strings(hid_t loc, const char *path, char *const *s, int64_t n) {
    hid_t ty = H5I_INVALID_HID, sp = H5I_INVALID_HID, ds = H5I_INVALID_HID,
          lcpl = H5I_INVALID_HID;
    hsize_t dim = (hsize_t)n;
    const char **v = xmalloc(((size_t)n + 1) * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = s[i] ? s[i] : "";
    int rc = -1;
    H5_CHECK(ty = H5Tcopy(H5T_C_S1), "%s", path);
    H5_CHECK(H5Tset_size(ty, H5T_VARIABLE), "%s", path);
    H5_CHECK(H5Tset_cset(ty, H5T_CSET_UTF8), "%s", path);
    H5_CHECK(sp = H5Screate_simple(1, &dim, NULL), "%s", path);
    H5_CHECK(lcpl = H5Pcreate(H5P_LINK_CREATE), "%s", path);
    H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1), "%s", path);
    H5_CHECK(ds = H5Dcreate2(loc, path, ty, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT), "%s", path);
    if (n > 0) H5_CHECK(H5Dwrite(ds, ty, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), "%s", path);
    rc = 0;
fail:
    if (ds >= 0) H5Dclose(ds);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (sp >= 0) H5Sclose(sp);
    if (ty >= 0) H5Tclose(ty);
    free(v);
    return rc;
}
