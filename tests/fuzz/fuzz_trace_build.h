/* fuzz_trace_build.h: builds an HDF5 trace in memory (core driver, no file)
 * from fuzz bytes, so the trace reader and verifier get files that HDF5
 * itself finds well formed but whose content breaks olmoe-trace(5) in every
 * way: attributes missing, of another type or out of range, datasets absent
 * or of another rank, shape or type, windows that do not tile, ids past the
 * vocabulary, NaN where numbers belong. Byte mutations of a real file mostly
 * hit HDF5's metadata checksums; this reaches the reader's own logic.
 *
 *   fuzz_bytes in = {data, size};
 *   size_t n;
 *   void *image = trace_build(&in, &n);   // NULL if HDF5 refused to build it
 *
 * Layout of the bytes: a choice byte per decision (fuzz_pick), values
 * following; running out of bytes means "0" for every later choice, which is
 * the ordinary valid trace, so short inputs are valid files. */
#ifndef OLMOE_FUZZ_TRACE_BUILD_H
#define OLMOE_FUZZ_TRACE_BUILD_H

#include "fuzz.h"
#include "traces.h"

#include <hdf5.h>
#include <hdf5_hl.h>
#include <math.h>

#define TB_MAX_ROWS 12

/* path created with the core driver (in memory, written out at close),
 * in the latest format when the bytes pick it; -1 when HDF5 refuses */
static inline hid_t tb_create_core(fuzz_bytes *b, const char *path) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 1 << 16, 1);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    if (fuzz_pick(b, 2)) H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    return f;
}

/* an int: usually the sensible value, sometimes one that must be refused */
static inline int64_t tb_int(fuzz_bytes *b, int64_t sensible) {
    static const int64_t weird[] = {0, -1, 1, 2, 3, 255, 65536, INT32_MAX, (int64_t)INT32_MAX + 1,
                                    INT64_MAX, INT64_MIN};
    uint32_t c = fuzz_u8(b);
    if (c < 224) return sensible;
    return weird[(c - 224) % (sizeof weird / sizeof weird[0])];
}

/* a scalar attribute, usually of the type the schema says */
static inline void tb_attr_int(fuzz_bytes *b, hid_t f, const char *name, int64_t v, int is64) {
    uint32_t how = fuzz_pick(b, 16);
    hid_t sp = H5Screate(H5S_SCALAR), ty;
    double d = (double)v;
    const char *s = "1";
    switch (how) {
    case 13: H5Sclose(sp); return; /* absent */
    case 14: ty = H5Tcopy(H5T_IEEE_F64LE); break;
    case 15: ty = H5Tcopy(H5T_C_S1), H5Tset_size(ty, H5T_VARIABLE); break;
    case 12: ty = H5Tcopy(is64 ? H5T_STD_I32LE : H5T_STD_I64LE); break;
    case 11: ty = H5Tcopy(H5T_STD_U8LE); break;
    default: ty = H5Tcopy(is64 ? H5T_STD_I64LE : H5T_STD_I32LE); break;
    }
    hid_t a = H5Acreate2(f, name, ty, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        if (how == 14) H5Awrite(a, H5T_NATIVE_DOUBLE, &d);
        else if (how == 15) H5Awrite(a, ty, &s);
        else H5Awrite(a, H5T_NATIVE_INT64, &v); /* converted (clipped) by HDF5 */
        H5Aclose(a);
    }
    H5Tclose(ty);
    H5Sclose(sp);
}

static inline void tb_attr_f64(fuzz_bytes *b, hid_t f, const char *name, double v) {
    static const double weird[] = {NAN, INFINITY, -1.0, 0.0, 1e308};
    uint32_t how = fuzz_pick(b, 16);
    if (how == 15) return;
    if (how >= 10) v = weird[how - 10];
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) H5Awrite(a, H5T_NATIVE_DOUBLE, &v), H5Aclose(a);
    H5Sclose(sp);
}

/* strings: variable length (the schema), fixed length, bytes from the input,
 * an int in place of a string, or absent */
static inline void tb_attr_str(fuzz_bytes *b, hid_t f, const char *name, const char *v) {
    uint32_t how = fuzz_pick(b, 16);
    char raw[40];
    if (how == 15) return;
    if (how == 14) {
        int32_t x = 1;
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(f, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) H5Awrite(a, H5T_NATIVE_INT32, &x), H5Aclose(a);
        H5Sclose(sp);
        return;
    }
    if (how == 13) { /* input bytes, not necessarily UTF-8 or terminated early */
        size_t n = fuzz_u8(b) % (sizeof raw - 1);
        for (size_t i = 0; i < n; i++) raw[i] = (char)(fuzz_u8(b) | 1);
        raw[n] = '\0';
        v = raw;
    }
    hid_t ty = H5Tcopy(H5T_C_S1);
    int fixed = how == 12 && v[0];
    H5Tset_size(ty, fixed ? strlen(v) : H5T_VARIABLE);
    H5Tset_cset(ty, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, ty, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        if (fixed) H5Awrite(a, ty, v);
        else H5Awrite(a, ty, &v);
        H5Aclose(a);
    }
    H5Sclose(sp);
    H5Tclose(ty);
}

/* a dataset of rank 1..3 (dims[0] rows), type ftype, chunked along axis 0
 * with unlimited rows or contiguous, filled from the input */
static inline void tb_dataset(fuzz_bytes *b, hid_t f, const char *path, int rank, const hsize_t *dims,
                       hid_t ftype, hid_t mtype, size_t msize) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hsize_t maxd[3] = {dims[0], rank > 1 ? dims[1] : 0, rank > 2 ? dims[2] : 0};
    int chunked = fuzz_pick(b, 4) != 0;
    if (chunked) {
        hsize_t chunk[3] = {1 + fuzz_pick(b, 4), 1, 1};
        for (int i = 1; i < rank; i++) chunk[i] = dims[i] ? dims[i] : 1;
        maxd[0] = H5S_UNLIMITED;
        H5Pset_chunk(dcpl, rank, chunk);
    }
    hid_t sp = H5Screate_simple(rank, dims, maxd);
    hid_t d = H5Dcreate2(f, path, ftype, sp, lcpl, dcpl, H5P_DEFAULT);
    size_t n = 1;
    for (int i = 0; i < rank; i++) n *= (size_t)dims[i];
    if (d >= 0 && n && n <= 4096) {
        unsigned char *buf = calloc(n, msize);
        if (!buf) abort();
        if (H5Tget_class(mtype) == H5T_STRING) { /* variable-length strings */
            static const char *pool[] = {"news", "", "lore", "x\xff", "news"};
            for (size_t i = 0; i < n; i++)
                ((const char **)buf)[i] = pool[fuzz_pick(b, 5)];
        } else if (mtype == H5T_NATIVE_FLOAT) {
            static const float pool[] = {0.5f, 1.25f, -3.0f, 0.0f, NAN, INFINITY, -1.0f, 7.0f};
            for (size_t i = 0; i < n; i++) ((float *)buf)[i] = pool[fuzz_pick(b, 8)];
        } else if (mtype == H5T_NATIVE_INT32) {
            for (size_t i = 0; i < n; i++) ((int32_t *)buf)[i] = (int32_t)tb_int(b, (int64_t)(i % 7));
        } else if (mtype == H5T_NATIVE_INT64) {
            for (size_t i = 0; i < n; i++) ((int64_t *)buf)[i] = tb_int(b, (int64_t)i);
        } else if (msize == 2) {
            for (size_t i = 0; i < n; i++) ((uint16_t *)buf)[i] = (uint16_t)fuzz_u16(b);
        } else {
            for (size_t i = 0; i < n * msize; i++) buf[i] = (unsigned char)fuzz_u8(b);
        }
        H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        free(buf);
    }
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
}

/* the documents' compound, packed little-endian as the writer stores it */
static inline hid_t tb_doc_type(void) {
    hid_t t = H5Tcreate(H5T_COMPOUND, 20);
    H5Tinsert(t, "start", 0, H5T_STD_I64LE);
    H5Tinsert(t, "length", 8, H5T_STD_I64LE);
    H5Tinsert(t, "group", 16, H5T_STD_I32LE);
    return t;
}

/* the windows: document-mode tiling of [0, N) (one window per 1..3
 * positions), or rows straight from the input */
static inline void tb_windows(fuzz_bytes *b, hid_t f, int64_t N, int *W_out) {
    int64_t rows[TB_MAX_ROWS * 3];
    int W = 0;
    if (fuzz_pick(b, 4) != 3) {
        for (int64_t at = 0; at < N && W < TB_MAX_ROWS;) {
            int64_t len = 1 + fuzz_pick(b, 3);
            if (at + len > N) len = N - at;
            rows[3 * W] = tb_int(b, at), rows[3 * W + 1] = tb_int(b, len);
            rows[3 * W + 2] = tb_int(b, 0);
            W++, at += len;
        }
    } else {
        W = (int)fuzz_pick(b, 5);
        for (int i = 0; i < 3 * W; i++) rows[i] = tb_int(b, (int64_t)fuzz_pick(b, 6) - 1);
    }
    *W_out = W;
    uint32_t how = fuzz_pick(b, 8);
    hsize_t dims[2] = {(hsize_t)W, how == 7 ? 2 : 3};
    if (how == 6) return; /* absent */
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hsize_t maxd[2] = {H5S_UNLIMITED, dims[1]}, chunk[2] = {4, dims[1]};
    H5Pset_chunk(dcpl, 2, chunk);
    int64_t fill = -1;
    H5Pset_fill_value(dcpl, H5T_NATIVE_INT64, &fill);
    hid_t sp = H5Screate_simple(2, dims, maxd);
    hid_t d = H5Dcreate2(f, "/windows", how == 5 ? H5T_STD_I32LE : H5T_STD_I64LE, sp, lcpl, dcpl,
                         H5P_DEFAULT);
    if (d >= 0) {
        if (W && dims[1] == 3) H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows);
        if (how == 4) { /* rows a killed writer left: extended, never written */
            hsize_t more[2] = {(hsize_t)W + 2, 3};
            H5Dset_extent(d, more);
        }
        H5Dclose(d);
    }
    H5Sclose(sp);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
}

/* a per-token dataset: rows N (sometimes N +- 1), its row shape, or a wrong
 * rank / shape / type */
static inline void tb_per_token(fuzz_bytes *b, hid_t f, const char *path, int64_t N, int rank,
                         int64_t r1, int64_t r2, hid_t ftype, hid_t mtype, size_t msize) {
    uint32_t how = fuzz_pick(b, 16);
    if (how == 15) return; /* absent */
    hsize_t dims[3] = {(hsize_t)N, (hsize_t)(r1 > 0 && r1 < 8 ? r1 : 1),
                       (hsize_t)(r2 > 0 && r2 < 8 ? r2 : 1)};
    if (how == 14 && N > 0) dims[0]--;
    if (how == 13) dims[0]++;
    if (how == 12) rank = rank == 1 ? 2 : rank - 1;
    if (how == 11 && rank > 1) dims[rank - 1]++;
    if (how == 10) ftype = H5T_STD_I8LE, mtype = H5T_NATIVE_UCHAR, msize = 1;
    if (how == 9) ftype = H5T_IEEE_F64LE, mtype = H5T_NATIVE_DOUBLE, msize = 8;
    tb_dataset(b, f, path, rank, dims, ftype, mtype, msize);
}

/* the whole file; NULL when HDF5 refused some part that makes it unusable */
static inline void *trace_build(fuzz_bytes *b, size_t *size) {
    *size = 0;
    /* Built in memory, written out once at close: HDF5 1.10.8's
     * H5Fget_file_image patches the end-of-file address of a version 2/3
     * superblock without redoing its checksum, so an image taken from the
     * open file would not open again. */
    static char path[300];
    if (!path[0]) fuzz_path(path, sizeof path, "built.h5");
    hid_t f = tb_create_core(b, path);
    if (f < 0) return NULL;

    /* sizes as attributes say, and as datasets are shaped (small) */
    int64_t L = 1 + fuzz_pick(b, 3), E = 1 + fuzz_pick(b, 4), D = 1 + fuzz_pick(b, 3);
    int64_t V = 2 + fuzz_pick(b, 30), N = fuzz_pick(b, TB_MAX_ROWS + 1);
    int complete = fuzz_pick(b, 3) != 2;
    int residuals = fuzz_pick(b, 2);
    tb_attr_str(b, f, "format", fuzz_pick(b, 8) != 7 ? OLMOE_TRACE_FORMAT : "olmoe-kde");
    tb_attr_int(b, f, "format_version", tb_int(b, OLMOE_TRACE_FORMAT_VERSION), 0);
    char cfg[200];
    snprintf(cfg, sizeof cfg,
             "{\"num_hidden_layers\": %lld, \"num_experts\": %lld, \"hidden_size\": %lld, "
             "\"vocab_size\": %lld}",
             (long long)L, (long long)E, (long long)(fuzz_pick(b, 8) != 7 ? D : D + 1), (long long)V);
    const struct {
        const char *name;
        const char *str;
        int64_t num;
    } attrs[] = {
        {"tool_version", OLMOE_VERSION, 0}, {"command", "olmoe-capture --fuzz", 0},
        {"created", fuzz_pick(b, 8) != 7 ? "2026-01-02T03:04:05Z" : "yesterday", 0},
        {"config_json", fuzz_pick(b, 8) != 7 ? cfg : "{\"num_experts\": ", 0},
        {"model_checksum", fuzz_pick(b, 8) != 7 ? "0123456789abcdef0123456789abcdef" : "XYZ", 0},
        {"tokenizer_checksum", "", 0}, {"model_dir", "models/x", 0},
        {"policy", fuzz_pick(b, 8) != 7 ? "topk(k=1,norm=model)" : "", 0},
        {"device", fuzz_pick(b, 8) != 7 ? "cpu" : "tpu", 0},
        {"compute_dtype", fuzz_pick(b, 8) != 7 ? "float32" : "float8", 0}, {"corpus", "", 0},
        {"n_layers", NULL, L}, {"n_experts", NULL, E}, {"hidden_size", NULL, D},
        {"vocab_size", NULL, V}, {"top_k", NULL, 1}, {"norm_topk_prob", NULL, 0},
        {"ctx", NULL, 4}, {"stride", NULL, 0},
    };
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        if (attrs[i].str) tb_attr_str(b, f, attrs[i].name, attrs[i].str);
        else tb_attr_int(b, f, attrs[i].name, tb_int(b, attrs[i].num), 0);
    }
    int W = 0;
    tb_windows(b, f, N, &W);
    tb_attr_int(b, f, "complete", tb_int(b, complete), 0);
    tb_attr_int(b, f, "n_tokens", tb_int(b, N), 1);
    tb_attr_int(b, f, "n_windows", tb_int(b, W), 1);
    tb_attr_int(b, f, "n_scored", tb_int(b, N > W ? N - W : 0), 1);
    tb_attr_f64(b, f, "nll_sum", 1.5);
    tb_attr_f64(b, f, "perplexity", 2.0);

    hid_t bf16 = olmoe_h5_type_bf16(), f16 = olmoe_h5_type_f16();
    tb_per_token(b, f, "/tokens", N, 1, 0, 0, H5T_STD_I32LE, H5T_NATIVE_INT32, 4);
    tb_per_token(b, f, "/token", N, 1, 0, 0, H5T_STD_I64LE, H5T_NATIVE_INT64, 8);
    uint32_t lt = fuzz_pick(b, 3);
    hid_t lty = lt == 0 ? H5T_IEEE_F32LE : lt == 1 ? f16 : bf16;
    tb_per_token(b, f, "/router_logits", N, 3, L, E, lty, lt ? lty : H5T_NATIVE_FLOAT, lt ? 2 : 4);
    tb_per_token(b, f, "/baseline/nll", N, 1, 0, 0, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4);
    tb_per_token(b, f, "/baseline/argmax", N, 1, 0, 0, H5T_STD_I32LE, H5T_NATIVE_INT32, 4);
    if (residuals)
        tb_per_token(b, f, "/residual/attn", N, 3, L, D, fuzz_pick(b, 4) == 3 ? f16 : bf16, bf16, 2);
    if (fuzz_pick(b, 2)) {
        hid_t dt = tb_doc_type();
        hsize_t nd = fuzz_pick(b, 5);
        tb_dataset(b, f, "/documents", 1, &nd, dt, dt, 20);
        H5Tclose(dt);
    }
    if (fuzz_pick(b, 2)) {
        hid_t st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, H5T_VARIABLE);
        H5Tset_cset(st, H5T_CSET_UTF8);
        hsize_t ng = fuzz_pick(b, 4);
        tb_dataset(b, f, "/groups", 1, &ng, st, st, sizeof(char *));
        H5Tclose(st);
    }
    if (bf16 >= 0) H5Tclose(bf16);
    if (f16 >= 0) H5Tclose(f16);

    if (H5Fclose(f) < 0) return NULL;
    char *image;
    if (olmoe_read_file(path, &image, size) != 0) return NULL;
    return image;
}

#endif
