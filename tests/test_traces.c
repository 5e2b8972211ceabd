/* test_traces.c: the trace library: bfloat16/float16 rounding against
 * independent references, HDF5 reading our 16-bit types, write/read round
 * trips for every logits dtype, the generic HDF5 helpers, and error paths.
 *
 * Also a helper for tests/test_traces.sh:
 *   test_traces --write-sample FILE   writes a synthetic trace and prints the
 *                                     expected numbers (computed here, from the
 *                                     arrays written, not read back)
 *   test_traces --write-killed FILE   the same, killed (_exit) after 3 windows */
#include "check.h"
#include "test_traces_synth.h"

#include <ctype.h>
#include <hdf5.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ---- 16-bit floats ---- */
/* reference: the nearest of the two 16-bit neighbours of |x| by exact
 * (double) distance, ties to the even one; the value above the largest
 * finite is 2^(emax+1), which makes overflow round as IEEE says */
static double half_value(uint32_t bits, int mbits, int ebias, int ebits) {
    uint32_t e = bits >> mbits, m = bits & ((1u << mbits) - 1);
    if (e == (1u << ebits) - 1) return ldexp(1.0, (int)(1u << ebits) - 1 - ebias); /* "inf" */
    if (e == 0) return ldexp((double)m, 1 - ebias - mbits);
    return ldexp((double)(m | (1u << mbits)), (int)e - ebias - mbits);
}

static uint16_t ref_round(float x, int mbits, int ebias, int ebits) {
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x);
    uint32_t maxmag = ((1u << ebits) - 1) << mbits; /* infinity */
    if (isinf(x)) return (uint16_t)(sign | maxmag);
    uint32_t lo = 0, hi = maxmag; /* binary search: largest lo with value(lo) <= a */
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (half_value(mid, mbits, ebias, ebits) <= a) lo = mid; else hi = mid;
    }
    double vl = half_value(lo, mbits, ebias, ebits), vh = half_value(lo + 1, mbits, ebias, ebits);
    uint32_t r;
    if (a - vl < vh - a) r = lo;
    else if (a - vl > vh - a) r = lo + 1;
    else r = (lo & 1) ? lo + 1 : lo;
    return (uint16_t)(sign | r);
}

static float f32_of(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static int is_half_nan(uint16_t h, int mbits) {
    uint16_t emask = (uint16_t)(0x7fff & ~((1u << mbits) - 1));
    return (h & emask) == emask && (h & ((1u << mbits) - 1));
}

static void test_float_to_half(void) {
    /* every 65537th bit pattern of all 2^32 (all exponents and signs), plus edges */
    static const uint32_t edges[] = {0x00000000, 0x80000000, 0x3f800000, 0x7f7fffff, 0x7f800000,
                                     0xff800000, 0x7fc00000, 0x7f800001, 0x477fe000, 0x477fefff,
                                     0x477ff000, 0x477ff001, 0x38800000, 0x387fffff, 0x33800000,
                                     0x33000000, 0x33000001, 0x3f808000, 0x3f818000, 0x3f80c000,
                                     0x7f7f8000, 0x7f7f7fff, 0x00000001, 0x3f801000, 0x3f803000};
    int bad_bf = 0, bad_h = 0;
    for (uint64_t k = 0; k < (1ull << 32) / 65537 + sizeof edges / sizeof edges[0]; k++) {
        uint32_t u = k < sizeof edges / sizeof edges[0] ? edges[k]
                                                        : (uint32_t)(k * 65537u + (k >> 3));
        float x = f32_of(u);
        uint16_t b = olmoe_bf16_from_f32(x), h = olmoe_f16_from_f32(x);
        if (isnan(x)) {
            if (!is_half_nan(b, 7) && bad_bf++ < 3) CHECK(0, "bf16 of NaN %08x is %04x", u, b);
            if (!is_half_nan(h, 10) && bad_h++ < 3) CHECK(0, "f16 of NaN %08x is %04x", u, h);
            continue;
        }
        uint16_t rb = ref_round(x, 7, 127, 8), rh = ref_round(x, 10, 15, 5);
        if (b != rb && bad_bf++ < 3) CHECK(0, "bf16(%a = %08x) = %04x, reference %04x", x, u, b, rb);
        if (h != rh && bad_h++ < 3) CHECK(0, "f16(%a = %08x) = %04x, reference %04x", x, u, h, rh);
#ifdef __FLT16_MAX__
        _Float16 c = (_Float16)x; /* the compiler's own conversion, a second reference */
        uint16_t ch;
        memcpy(&ch, &c, 2);
        if (h != ch && bad_h++ < 3) CHECK(0, "f16(%a) = %04x, _Float16 gives %04x", x, h, ch);
#endif
    }
    /* every low half below a few high halves, where bfloat16 rounds */
    static const uint32_t highs[] = {0x3f80, 0x0001, 0x7f7f, 0xc2f0, 0x0080, 0x4780};
    for (size_t hi = 0; hi < sizeof highs / sizeof highs[0]; hi++)
        for (uint32_t lo = 0; lo < 65536; lo++) {
            float x = f32_of(highs[hi] << 16 | lo);
            uint16_t b = olmoe_bf16_from_f32(x), rb = ref_round(x, 7, 127, 8);
            if (b != rb && bad_bf++ < 3) CHECK(0, "bf16(%a) = %04x, reference %04x", x, b, rb);
        }
    /* float16's subnormal and lowest normal range, densely */
    for (uint32_t u = 0x33000000u; u < 0x39000000u; u += 257) {
        float x = f32_of(u);
        uint16_t h = olmoe_f16_from_f32(x), rh = ref_round(x, 10, 15, 5);
        if (h != rh && bad_h++ < 3) CHECK(0, "f16(%a) = %04x, reference %04x", x, h, rh);
    }
    /* ties: 1 + 2^-8 is halfway between bf16 1 and 1 + 2^-7: even is 1 */
    CHECK(olmoe_bf16_from_f32(1.00390625f) == 0x3f80, "tie to even down");
    CHECK(olmoe_bf16_from_f32(1.01171875f) == 0x3f82, "tie to even up");
    CHECK(olmoe_f16_from_f32(65520.0f) == 0x7c00, "65520 rounds to f16 infinity");
    CHECK(olmoe_f16_from_f32(65519.0f) == 0x7bff, "65519 rounds to 65504");
    CHECK(olmoe_f16_from_f32(5.9604645e-08f) == 0x0001, "smallest f16 subnormal");
    CHECK(olmoe_f16_from_f32(2.9802322e-08f) == 0x0000, "half of it ties to 0");
    CHECK(olmoe_f16_from_f32(-0.0f) == 0x8000, "-0");
}

static void test_half_to_float(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float b = olmoe_bf16_to_f32((uint16_t)h), f = olmoe_f16_to_f32((uint16_t)h);
        uint32_t ub;
        memcpy(&ub, &b, 4);
        if (ub != h << 16 && bad++ < 3) CHECK(0, "bf16 %04x -> %08x", h, ub);
        double want = (h & 0x8000 ? -1 : 1) * half_value(h & 0x7fff, 10, 15, 5);
        if (((h >> 10) & 0x1f) == 0x1f)
            want = (h & 0x3ff) ? NAN : (h & 0x8000 ? -INFINITY : INFINITY);
        if (isnan(want) ? !isnan(f) : (double)f != want || !!signbit(f) != !!(h & 0x8000))
            if (bad++ < 3) CHECK(0, "f16 %04x -> %a, want %a", h, f, want);
        /* round trip of every half is the identity (NaNs stay NaN) */
        if (!isnan(f) && olmoe_f16_from_f32(f) != h && bad++ < 3) CHECK(0, "f16 %04x round trip", h);
        if (!isnan(b) && olmoe_bf16_from_f32(b) != h && bad++ < 3) CHECK(0, "bf16 %04x round trip", h);
    }
}

/* HDF5's own conversion of our 2-byte types to float32 equals our decoders
 * for all 65536 patterns: the type definitions are the layouts we write */
static void test_hdf5_half_types(void) {
    hid_t types[2] = {olmoe_h5_type_bf16(), olmoe_h5_type_f16()};
    CHECK(types[0] >= 0 && types[1] >= 0, "types: %s", olmoe_error());
    if (types[0] < 0 || types[1] < 0) return;
    const char *path = tmp_path("halves.h5");
    hid_t f = olmoe_h5_create(path);
    CHECK(f >= 0, "%s", olmoe_error());
    uint16_t *all = xmalloc(65536 * 2);
    float *got = xmalloc(65536 * 4);
    for (uint32_t i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    for (int k = 0; k < 2; k++) {
        CHECK(H5Tget_size(types[k]) == 2 && H5Tget_precision(types[k]) == 16, "size");
        CHECK(H5Tget_ebias(types[k]) == (k ? 15u : 127u), "ebias");
        hsize_t n = 65536;
        hid_t sp = H5Screate_simple(1, &n, NULL);
        hid_t ds = H5Dcreate2(f, k ? "f16" : "bf16", types[k], sp, H5P_DEFAULT, H5P_DEFAULT,
                              H5P_DEFAULT);
        CHECK(ds >= 0 && H5Dwrite(ds, types[k], H5S_ALL, H5S_ALL, H5P_DEFAULT, all) >= 0, "write");
        CHECK(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, got) >= 0, "read");
        int bad = 0;
        for (uint32_t i = 0; i < 65536; i++) {
            float want = k ? olmoe_f16_to_f32((uint16_t)i) : olmoe_bf16_to_f32((uint16_t)i);
            int ok = isnan(want) ? isnan(got[i]) : (got[i] == want && signbit(got[i]) == signbit(want));
            if (!ok && bad++ < 3) CHECK(0, "%s %04x: hdf5 %a, ours %a", k ? "f16" : "bf16", i, got[i], want);
        }
        H5Dclose(ds);
        H5Sclose(sp);
        H5Tclose(types[k]);
    }
    olmoe_h5_close(f);
    unlink(path);
    free(all);
    free(got);
}

/* ---- round trip ---- */
static void roundtrip(olmoe_trace_dtype dt, int res) {
    synth s;
    synth_default(&s, dt, res);
    const char *path = tmp_path("rt.h5");
    CHECK(synth_write(&s, path, s.W, 1, -1) != NULL, "write: %s", olmoe_error());
    check_contents(&s, path, s.W);
    olmoe_trace *t = olmoe_trace_open(path);
    if (t) {
        const olmoe_trace_info *in = olmoe_trace_info_of(t);
        double sum = 0;
        int64_t n = 0;
        for (int64_t p = 0; p < s.N; p++)
            if (!isnan(s.nll[p])) sum += s.nll[p], n++;
        CHECK(in->complete == 1, "complete");
        int64_t uncut = 0;
        for (int64_t k = 0; k < s.W; k++) uncut += s.w[k].stored_end == s.w[k].start + s.w[k].length;
        CHECK(in->n_scored == n && n == s.N - uncut, "n_scored %lld, want %lld", (long long)in->n_scored,
              (long long)n);
        CHECK(in->nll_sum == sum, "nll_sum %.17g vs %.17g", in->nll_sum, sum);
        CHECK_CLOSE(in->perplexity, exp(sum / (double)n), 1e-12, "perplexity");
        char **g;
        int64_t ng;
        CHECK(olmoe_trace_read_groups(t, &g, &ng) == 0 && ng == 3, "groups");
        if (ng == 3)
            CHECK(!strcmp(g[0], "news") && !strcmp(g[1], "fiction") && !strcmp(g[2], "late"), "names");
        olmoe_trace_free_groups(g, ng);
        /* a stock reader: HDF5 converting the file type to float32 itself */
        hid_t ds = H5Dopen2(olmoe_trace_hid(t), "/router_logits", H5P_DEFAULT);
        float *lg = xmalloc((size_t)s.N * s.L * s.E * 4);
        CHECK(ds >= 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, lg) >= 0, "h5 read");
        int bad = 0;
        for (size_t i = 0; i < (size_t)s.N * s.L * s.E; i++)
            if (lg[i] != stored(dt, s.logits[i]) && bad++ < 3) CHECK(0, "hdf5 conversion %zu", i);
        free(lg);
        H5Dclose(ds);
        olmoe_trace_close(t);
    }
    int64_t p = olmoe_trace_verify(path, NULL, NULL);
    CHECK(p == 0, "verify found %lld problems", (long long)p);
    unlink(path);
    synth_free(&s);
}

static void test_roundtrip_f32(void) { roundtrip(OLMOE_DTYPE_F32, 1); }
static void test_roundtrip_f16(void) { roundtrip(OLMOE_DTYPE_F16, 0); }
static void test_roundtrip_bf16(void) { roundtrip(OLMOE_DTYPE_BF16, 1); }

/* no stride, residuals given as bfloat16 bits, gzip on */
static void test_roundtrip_variants(void) {
    synth s;
    synth_default(&s, OLMOE_DTYPE_F32, 1);
    s.stride = 0;
    synth_free(&s);
    s.stride = 0;
    synth_make(&s);
    olmoe_trace_meta m = synth_meta(&s);
    m.gzip = 4;
    const char *path = tmp_path("var.h5");
    olmoe_trace *t = olmoe_trace_create(path, &m);
    CHECK(t != NULL, "%s", olmoe_error());
    if (!t) return;
    uint16_t *bits = xmalloc((size_t)s.N * s.L * s.D * 2);
    olmoe_bf16_from_f32_n(bits, s.resid, (size_t)s.N * s.L * s.D);
    for (int64_t k = 0; k < s.W; k++) {
        olmoe_trace_rows r = synth_rows(&s, k);
        int64_t p = s.w[k].start + s.w[k].stored_from;
        r.residual = NULL;
        r.residual_bf16 = bits + p * s.L * s.D;
        CHECK(olmoe_trace_append_window(t, &s.w[k], &r) == 0, "%s", olmoe_error());
    }
    CHECK(olmoe_trace_close(t) == 0, "%s", olmoe_error());
    /* documents and groups absent here: written by synth_write only */
    t = olmoe_trace_open(path);
    CHECK(t && olmoe_trace_info_of(t)->n_documents == 0 && olmoe_trace_info_of(t)->n_groups == 0, "none");
    if (t) {
        uint16_t *rb = xmalloc((size_t)s.N * s.L * s.D * 2);
        CHECK(olmoe_trace_read_residual_bf16(t, 0, s.N, rb) == 0 &&
              memcmp(rb, bits, (size_t)s.N * s.L * s.D * 2) == 0, "bits");
        free(rb);
        olmoe_trace_close(t);
    }
    CHECK(olmoe_trace_verify(path, NULL, NULL) == 0, "verify");
    free(bits);
    unlink(path);
    synth_free(&s);
}

/* ---- generic helpers ---- */
static void test_h5_helpers(void) {
    const char *path = tmp_path("gen.h5");
    hid_t f = olmoe_h5_create(path);
    CHECK(f >= 0, "%s", olmoe_error());
    float a[6] = {1, 2, 3, 4, 5, 6.5f};
    int64_t d2[2] = {2, 3}, d1[1] = {4}, big[4] = {1, -2, 3, INT64_MAX};
    double pi = 3.25;
    CHECK(olmoe_h5_write(f, "kde/layer0/grid", OLMOE_H5_F32, 2, d2, a) == 0, "%s", olmoe_error());
    CHECK(olmoe_h5_write(f, "ids", OLMOE_H5_I64, 1, d1, big) == 0, "ids");
    CHECK(olmoe_h5_write(f, "pi", OLMOE_H5_F64, 0, NULL, &pi) == 0, "scalar");
    CHECK(olmoe_h5_write(f, "ids", OLMOE_H5_I64, 1, d1, big) != 0, "exists: refuse");
    CHECK(olmoe_h5_exists(f, "kde/layer0/grid") == 1 && olmoe_h5_exists(f, "kde/layer1/grid") == 0 &&
          olmoe_h5_exists(f, "/kde") == 1, "exists");
    CHECK(olmoe_h5_make_groups(f, "replay/topk(k=4)/x") == 0 && olmoe_h5_exists(f, "replay/topk(k=4)/x") == 1, "groups");
    CHECK(olmoe_h5_set_attr_str(f, "kde", "method", "gaussian") == 0, "attr");
    CHECK(olmoe_h5_set_attr_str(f, "kde", "method", "epanechnikov") == 0, "attr replaced");
    CHECK(olmoe_h5_set_attr_i32(f, ".", "n", -7) == 0 && olmoe_h5_set_attr_i64(f, ".", "m", INT64_MIN) == 0 &&
          olmoe_h5_set_attr_f64(f, "kde/layer0/grid", "bw", 0.125) == 0, "attrs");
    CHECK(olmoe_h5_close(f) == 0, "close");
    f = olmoe_h5_open(path, 0);
    CHECK(f >= 0, "reopen: %s", olmoe_error());
    int rank;
    int64_t dims[OLMOE_H5_MAX_RANK];
    CHECK(olmoe_h5_shape(f, "kde/layer0/grid", &rank, dims) == 0 && rank == 2 && dims[0] == 2 && dims[1] == 3, "shape");
    double got[6];
    CHECK(olmoe_h5_read(f, "kde/layer0/grid", OLMOE_H5_F64, got, 6) == 0 && got[5] == 6.5, "read converted");
    CHECK(olmoe_h5_read(f, "kde/layer0/grid", OLMOE_H5_F64, got, 5) != 0 && strstr(olmoe_error(), "6 elements"),
          "wrong count: %s", olmoe_error());
    void *p;
    CHECK(olmoe_h5_read_alloc(f, "ids", OLMOE_H5_I64, &p, &rank, dims) == 0 && rank == 1 &&
          memcmp(p, big, sizeof big) == 0, "read_alloc");
    free(p);
    CHECK(olmoe_h5_read(f, "pi", OLMOE_H5_F64, got, 1) == 0 && got[0] == 3.25, "scalar read");
    char *s = NULL;
    int64_t i64;
    double f64;
    CHECK(olmoe_h5_get_attr_str(f, "kde", "method", &s) == 0 && s && strcmp(s, "epanechnikov") == 0, "str");
    free(s);
    CHECK(olmoe_h5_get_attr_i64(f, ".", "n", &i64) == 0 && i64 == -7, "i32 read as i64");
    CHECK(olmoe_h5_get_attr_i64(f, ".", "m", &i64) == 0 && i64 == INT64_MIN, "i64");
    CHECK(olmoe_h5_get_attr_f64(f, "kde/layer0/grid", "bw", &f64) == 0 && f64 == 0.125, "f64");
    CHECK(olmoe_h5_get_attr_f64(f, ".", "n", &f64) == 0 && f64 == -7, "int as double");
    CHECK(olmoe_h5_get_attr_i64(f, "kde/layer0/grid", "bw", &i64) != 0 && strstr(olmoe_error(), "not an integer"), "type");
    CHECK(olmoe_h5_get_attr_str(f, ".", "nope", &s) != 0 && strstr(olmoe_error(), "'nope' is missing"),
          "missing: %s", olmoe_error());
    CHECK(olmoe_h5_has_attr(f, ".", "nope") == 0 && olmoe_h5_has_attr(f, ".", "n") == 1, "has");
    CHECK(olmoe_h5_shape(f, "nothing", &rank, dims) != 0 && strstr(olmoe_error(), "nothing"), "names it: %s", olmoe_error());
    CHECK(strchr(olmoe_error(), '\n') == NULL, "one line");
    olmoe_h5_close(f);
    f = olmoe_h5_open(path, 1);
    CHECK(olmoe_h5_delete(f, "ids") == 0 && olmoe_h5_exists(f, "ids") == 0, "delete");
    CHECK(olmoe_h5_delete(f, "ids") == 0, "delete absent is fine");
    olmoe_h5_close(f);
    unlink(path);
}

/* results stored inside a trace keep it valid */
static void test_results_in_trace(void) {
    synth s;
    synth_default(&s, OLMOE_DTYPE_F32, 0);
    const char *path = tmp_path("res.h5");
    CHECK(synth_write(&s, path, s.W, 1, -1) != NULL, "%s", olmoe_error());
    olmoe_trace *t = olmoe_trace_open_rw(path);
    CHECK(t != NULL, "open_rw: %s", olmoe_error());
    if (t) {
        float grid[3] = {0, 1, 2};
        int64_t n = 3;
        CHECK(olmoe_h5_write(olmoe_trace_hid(t), "kde/layer0/grid", OLMOE_H5_F32, 1, &n, grid) == 0, "%s", olmoe_error());
        CHECK(olmoe_h5_set_attr_str(olmoe_trace_hid(t), "kde", "source", path) == 0, "attr");
        olmoe_trace_close(t);
    }
    CHECK(olmoe_trace_verify(path, NULL, NULL) == 0, "still valid");
    t = olmoe_trace_open(path);
    CHECK(t && olmoe_h5_exists(olmoe_trace_hid(t), "kde/layer0/grid") == 1, "readable");
    olmoe_trace_close(t);
    unlink(path);
    synth_free(&s);
}

/* ---- errors: one line, naming the file, nothing written half ---- */
static void test_errors(void) {
    synth s;
    synth_default(&s, OLMOE_DTYPE_F16, 0);
    synth_free(&s);
    s.stride = 0; /* windows that store their last position */
    synth_make(&s);
    olmoe_trace_meta m = synth_meta(&s);
    CHECK(olmoe_trace_create("/nonexistent-dir/x.h5", &m) == NULL &&
          strstr(olmoe_error(), "/nonexistent-dir/x.h5") && strstr(olmoe_error(), "No such file"),
          "create in a missing dir: %s", olmoe_error());
    m.top_k = 0;
    CHECK(olmoe_trace_create(tmp_path("e.h5"), &m) == NULL && strstr(olmoe_error(), "top_k"), "top_k");
    m = synth_meta(&s);
    m.device = "gpu";
    CHECK(olmoe_trace_create(tmp_path("e.h5"), &m) == NULL && strstr(olmoe_error(), "device"), "device");
    m = synth_meta(&s);
    CHECK(olmoe_trace_open("/nonexistent.h5") == NULL && strstr(olmoe_error(), "No such file"), "open: %s", olmoe_error());
    const char *junk = tmp_path("junk.h5");
    FILE *fj = fopen(junk, "w");
    fputs("not hdf5 at all\n", fj);
    fclose(fj);
    CHECK(olmoe_trace_open(junk) == NULL && strstr(olmoe_error(), "not an HDF5 file"), "junk: %s", olmoe_error());
    CHECK(strchr(olmoe_error(), '\n') == NULL, "one line");
    unlink(junk);

    const char *path = tmp_path("err.h5");
    olmoe_trace *t = olmoe_trace_create(path, &m);
    CHECK(t != NULL, "%s", olmoe_error());
    if (!t) return;
    olmoe_trace_rows r = synth_rows(&s, 0);
    olmoe_trace_window w = s.w[1]; /* not the first */
    CHECK(olmoe_trace_append_window(t, &w, &r) != 0 && strstr(olmoe_error(), "expected 0"), "order: %s", olmoe_error());
    w = s.w[0];
    float *nll = xmalloc((size_t)w.length * 4);
    memcpy(nll, r.nll, (size_t)w.length * 4);
    nll[w.length - 1] = 1.0f;
    olmoe_trace_rows r2 = r;
    r2.nll = nll;
    CHECK(olmoe_trace_append_window(t, &w, &r2) != 0 && strstr(olmoe_error(), "must be NaN"), "nll end: %s", olmoe_error());
    nll[w.length - 1] = NAN;
    nll[2] = NAN;
    CHECK(olmoe_trace_append_window(t, &w, &r2) != 0 && strstr(olmoe_error(), "finite"), "nll NaN: %s", olmoe_error());
    int32_t *tok = xmalloc((size_t)w.length * 4);
    memcpy(tok, r.tokens, (size_t)w.length * 4);
    tok[3] = s.V;
    r2 = r;
    r2.tokens = tok;
    CHECK(olmoe_trace_append_window(t, &w, &r2) != 0 && strstr(olmoe_error(), "vocabulary"), "token: %s", olmoe_error());
    float *lg = xmalloc((size_t)w.length * s.L * s.E * 4);
    memcpy(lg, r.router_logits, (size_t)w.length * s.L * s.E * 4);
    lg[7] = 1e6f; /* fine in float32, infinite in float16 */
    r2 = r;
    r2.router_logits = lg;
    CHECK(olmoe_trace_append_window(t, &w, &r2) != 0 && strstr(olmoe_error(), "float16"), "f16 overflow: %s", olmoe_error());
    /* nothing was written by the refused calls */
    CHECK(olmoe_trace_append_window(t, &w, &r) == 0, "good window: %s", olmoe_error());
    CHECK(olmoe_trace_info_of(t)->n_tokens == w.length, "N");
    olmoe_trace_document bad_doc = {0, 5, 7};
    CHECK(olmoe_trace_add_documents(t, &bad_doc, 1) != 0 && strstr(olmoe_error(), "group 7"), "doc group");
    CHECK(olmoe_trace_close(t) == 0, "close: %s", olmoe_error());
    /* a complete trace resumes too (its writer was killed between close and
       rename): the copy holds the same committed rows */
    olmoe_trace *rt = olmoe_trace_resume(path, &m);
    CHECK(rt && olmoe_trace_info_of(rt)->n_tokens == w.length, "resume complete: %s", olmoe_error());
    if (rt) CHECK(olmoe_trace_close(rt) == 0, "close resumed: %s", olmoe_error());
    /* a window cut short must be followed: close refuses, leaving it resumable */
    t = olmoe_trace_create(path, &m);
    w = s.w[0];
    w.stored_end = w.start + w.length - 3;
    CHECK(t && olmoe_trace_append_window(t, &w, &r) == 0, "cut window: %s", olmoe_error());
    olmoe_trace_window w1 = s.w[1];
    CHECK(t && olmoe_trace_append_window(t, &w1, &r) != 0 && strstr(olmoe_error(), "expected 13"),
          "after a cut: %s", olmoe_error());
    CHECK(olmoe_trace_close(t) != 0 && strstr(olmoe_error(), "cut short at 13"), "close: %s", olmoe_error());
    t = olmoe_trace_open(path);
    CHECK(t && olmoe_trace_info_of(t)->complete == 0 && olmoe_trace_info_of(t)->n_tokens == 13, "left incomplete");
    olmoe_trace_close(t);
    CHECK(olmoe_trace_verify(path, NULL, NULL) == 0, "and valid");
    free(nll);
    free(tok);
    free(lg);
    unlink(path);
    synth_free(&s);
}

/* ---- helper modes for tests/test_traces.sh ---- */
static int write_sample(const char *path, int killed) {
    synth s;
    synth_default(&s, OLMOE_DTYPE_BF16, 1);
    if (killed) {
        if (!synth_write(&s, path, 3, 0, -1)) die("%s", olmoe_error());
        fflush(stdout);
        _exit(0); /* no close: what SIGKILL leaves */
    }
    if (!synth_write(&s, path, s.W, 1, -1)) die("%s", olmoe_error());
    double sum = 0;
    int64_t n = 0;
    for (int64_t p = 0; p < s.N; p++)
        if (!isnan(s.nll[p])) sum += s.nll[p], n++;
    printf("tokens %lld\nwindows %lld\nscored %lld\nperplexity %.6f\n", (long long)s.N,
           (long long)s.W, (long long)n, exp(sum / (double)n));
    printf("tokens_csv");
    for (int64_t p = 0; p < s.N; p++) printf(" %lld,%d", (long long)p, s.tokens[p]);
    printf("\n");
    synth_free(&s);
    return 0;
}

/* ---- the names of policy result groups (olmoe-trace(5), RESULTS) ---- */
static int is_typable(const char *s) {
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_') return 0;
    return 1;
}

/* a group kind/name holding spec (no attribute when spec is NULL) */
static void put_group(hid_t f, const char *path, const char *spec) {
    CHECK(olmoe_h5_make_groups(f, path) == 0 && (!spec || olmoe_h5_set_attr_str(f, path, "policy", spec) == 0),
          "%s: %s", path, olmoe_error());
}

static void check_found(hid_t f, const char *kind, const char *spec, const char *want) {
    char *got = NULL;
    int e = olmoe_result_find(f, kind, spec, &got);
    CHECK(want ? e == 1 && got && strcmp(got, want) == 0 : e == 0 && !got, "find %s %s: %d %s, want %s", kind,
          spec, e, got ? got : "none", want ? want : "none");
    free(got);
}

static void check_new(hid_t f, const char *kind, const char *spec, const char *want) {
    char *got = NULL;
    CHECK(olmoe_result_new_path(f, kind, spec, &got) == 0 && got && strcmp(got, want) == 0, "new %s %s: %s, want %s",
          kind, spec, got ? got : "none", want);
    free(got);
}

static void test_result_names(void) {
    static const char *const cases[][2] = {
        {"topk(k=4,norm=model)", "topk_k_4_norm_model"},
        {"bh(alpha=0.1,max_k=8,min_k=1,T=1,pvalue=pseudo,norm=model)", "bh_alpha_0_1_max_k_8_min_k_1_T_1_pvalue_pseudo_norm_model"},
        {"file(path=/tmp/r.h5,sum=0a1b)", "file_path_tmp_r_h5_sum_0a1b"},
        {"(( x ))", "x"},
        {"caf\xc3\xa9(k=1)", "caf_k_1"},
        {"()", "policy"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *n = olmoe_result_name(cases[i][0]);
        CHECK(strcmp(n, cases[i][1]) == 0 && is_typable(n), "name of %s: %s, want %s", cases[i][0], n, cases[i][1]);
        free(n);
    }
    char long_spec[5000];
    memset(long_spec, 'a', sizeof long_spec - 1);
    long_spec[sizeof long_spec - 1] = '\0';
    long_spec[1] = '(';
    char *n = olmoe_result_name(long_spec);
    CHECK(strlen(n) == sizeof long_spec - 1 && n[1] == '_', "a long spec keeps its whole name: %zu", strlen(n));
    free(n);

    hid_t f = olmoe_h5_create(tmp_path("names.h5"));
    CHECK(f >= 0, "%s", olmoe_error());
    /* new groups: the typable name; a second spec with the same name gets _2, a third _3 */
    check_new(f, "replay", "a(b=1)", "replay/a_b_1");
    put_group(f, "replay/a_b_1", "a(b=1)");
    check_new(f, "replay", "a(b=1)", "replay/a_b_1"); /* its own: never _2 beside itself */
    check_new(f, "replay", "a(b.1)", "replay/a_b_1_2");
    put_group(f, "replay/a_b_1_2", "a(b.1)");
    check_new(f, "replay", "a[b 1]", "replay/a_b_1_3");
    check_found(f, "replay", "a(b=1)", "replay/a_b_1");
    check_found(f, "replay", "a(b.1)", "replay/a_b_1_2");
    check_found(f, "replay", "a[b 1]", NULL);
    check_found(f, "exact", "a(b=1)", NULL); /* another kind */
    /* a name taken by something that is no group of a policy */
    int64_t d1[1] = {1};
    int one = 1;
    CHECK(olmoe_h5_write(f, "stats/x_y", OLMOE_H5_I32, 1, d1, &one) == 0, "%s", olmoe_error());
    check_new(f, "stats", "x(y)", "stats/x_y_2");

    /* files written before: groups named by the spec itself, with or without the attribute */
    put_group(f, "exact/topk(k=4,norm=model)", "topk(k=4,norm=model)");
    put_group(f, "exact/topp(p=0.5)", NULL);
    put_group(f, "exact/file(path=/tmp/r.h5)", "file(path=/tmp/r.h5)"); /* a '/' made it nested */
    put_group(f, "exact/bh(alpha=0.1)", "bh(alpha=0.2)");             /* named for another spec */
    check_found(f, "exact", "topk(k=4,norm=model)", "exact/topk(k=4,norm=model)");
    check_found(f, "exact", "topp(p=0.5)", "exact/topp(p=0.5)");
    check_found(f, "exact", "file(path=/tmp/r.h5)", "exact/file(path=/tmp/r.h5)");
    check_found(f, "exact", "bh(alpha=0.1)", NULL);
    check_found(f, "exact", "bh(alpha=0.2)", "exact/bh(alpha=0.1)");
    /* replacing an old one: removed, then written under its typable name */
    check_new(f, "exact", "topk(k=4,norm=model)", "exact/topk_k_4_norm_model");

    olmoe_result_group *g;
    int ng;
    CHECK(olmoe_result_groups(f, "replay", &g, &ng) == 0 && ng == 2 && strcmp(g[0].spec, "a(b.1)") == 0 &&
              strcmp(g[0].path, "replay/a_b_1_2") == 0 && strcmp(g[1].spec, "a(b=1)") == 0,
          "groups in spec order: %d", ng);
    olmoe_result_groups_free(g, ng);
    CHECK(olmoe_result_groups(f, "validate", &g, &ng) == 0 && ng == 0, "no such kind: none");
    olmoe_result_groups_free(g, ng);
    olmoe_h5_close(f);
}

int main(int argc, char **argv) {
    olmoe_set_prog("test_traces");
    if (argc == 3 && strcmp(argv[1], "--write-sample") == 0) return write_sample(argv[2], 0);
    if (argc == 3 && strcmp(argv[1], "--write-killed") == 0) return write_sample(argv[2], 1);
    RUN(test_float_to_half);
    RUN(test_half_to_float);
    RUN(test_hdf5_half_types);
    RUN(test_roundtrip_f32);
    RUN(test_roundtrip_f16);
    RUN(test_roundtrip_bf16);
    RUN(test_roundtrip_variants);
    RUN(test_h5_helpers);
    RUN(test_result_names);
    RUN(test_results_in_trace);
    RUN(test_errors);
    return check_summary();
}
