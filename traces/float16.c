/* float16.c: bfloat16 and IEEE float16 <-> float conversions (round to
 * nearest, ties to even), and their HDF5 types.
 *
 * HDF5 1.10 knows neither bfloat16 nor (as a predefined type) float16, but
 * describes any binary float by its bit fields: both are copies of
 * H5T_IEEE_F32LE with the fields moved and the size shrunk to 2 bytes. Stock
 * tools (h5dump, h5py) then read them, converting to float32. */
#include "internal.h"

#include <math.h>
#include <string.h>

uint16_t olmoe_bf16_from_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    /* adding 0x7fff plus the lowest kept bit rounds half to even; a carry
     * into the exponent is the right answer, up to infinity */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float olmoe_bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

uint16_t olmoe_f16_from_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
    /* 65520 is halfway between 65504 (largest half) and 65536: ties go to the
     * even neighbour, which is infinity */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) { /* normal half: rebias the exponent 127 -> 15 */
        uint32_t r = a - 0x38000000u;
        r += 0xfffu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    /* subnormal half (or zero): units of 2^-24; scaling by a power of two is
     * exact and nearbyintf rounds half to even. 1024 units is the smallest
     * normal, which is also its encoding. */
    float m = nearbyintf(fabsf(x) * 16777216.0f);
    return (uint16_t)(sign | (uint16_t)m);
}

float olmoe_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0) {
        float v = ldexpf((float)m, -24);
        return sign ? -v : v;
    }
    if (e == 31)
        u = sign | 0x7f800000u | (m << 13);
    else
        u = sign | ((e + 112u) << 23) | (m << 13);
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

void olmoe_bf16_from_f32_n(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = olmoe_bf16_from_f32(src[i]);
}
void olmoe_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = olmoe_bf16_to_f32(src[i]);
}
void olmoe_f16_from_f32_n(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = olmoe_f16_from_f32(src[i]);
}
void olmoe_f16_to_f32_n(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = olmoe_f16_to_f32(src[i]);
}

/* The fields are set while the type is still 32 bits wide (they must fit
 * its precision), then the precision and size shrink around them. */
static hid_t make_half(const char *what, size_t epos, size_t esize, size_t msize,
                       size_t ebias) {
    olmoe_h5_init();
    hid_t t = H5I_INVALID_HID;
    H5_CHECK(t = H5Tcopy(H5T_IEEE_F32LE), "%s type", what);
    H5_CHECK(H5Tset_fields(t, 15, epos, esize, 0, msize), "%s type: fields", what);
    H5_CHECK(H5Tset_precision(t, 16), "%s type: precision", what);
    H5_CHECK(H5Tset_size(t, 2), "%s type: size", what);
    H5_CHECK(H5Tset_ebias(t, ebias), "%s type: exponent bias", what);
    return t;
fail:
    olmoe_h5_close_id(t);
    return H5I_INVALID_HID;
}

hid_t olmoe_h5_type_bf16(void) { return make_half("bfloat16", 7, 8, 7, 127); }
hid_t olmoe_h5_type_f16(void) { return make_half("float16", 10, 5, 10, 15); }

static const char *const dtype_names[OLMOE_DTYPE_COUNT] = {"float32", "float16", "bfloat16"};

const char *olmoe_trace_dtype_name(olmoe_trace_dtype d) {
    return (unsigned)d < OLMOE_DTYPE_COUNT ? dtype_names[d] : "unknown";
}

int olmoe_trace_dtype_parse(const char *s, olmoe_trace_dtype *out) {
    static const char *const short_names[OLMOE_DTYPE_COUNT] = {"f32", "f16", "bf16"};
    for (int d = 0; d < OLMOE_DTYPE_COUNT; d++)
        if (s && (strcmp(s, dtype_names[d]) == 0 || strcmp(s, short_names[d]) == 0)) {
            *out = (olmoe_trace_dtype)d;
            return 0;
        }
    return olmoe_errorf("unknown dtype '%s' (float32, float16 or bfloat16)", s ? s : "");
}
