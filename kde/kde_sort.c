/* kde_sort.c: sorting the null sample (for its quantiles and the KS
 * distance) and binning it onto the grid, with few passes over memory.
 *
 * Floats sort as 32-bit keys that order like the values (sign bit flipped
 * for positives, all bits for negatives). olmoe_kde_sort is a plain LSD
 * radix sort, 3 passes of 11 bits. The fit instead distributes the sample by
 * grid cell in one pass (cells order like the values) and radix-sorts each
 * cell in cache on key - min key, which needs fewer digits because a cell
 * spans a narrow range of values. */
#include "common.h"
#include "kde.h"
#include "kde_internal.h"

#include <stdlib.h>
#include <string.h>

enum { BITS = 11, RADIX = 1 << BITS };

static inline uint32_t to_key(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u ^ ((u >> 31) ? 0xFFFFFFFFu : 0x80000000u);
}
static inline float from_key(uint32_t k) {
    uint32_t u = k ^ ((k >> 31) ? 0x80000000u : 0xFFFFFFFFu);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
/* keys live in float storage: every access goes through memcpy */
static inline uint32_t get_u(const void *base, size_t i) {
    uint32_t u;
    memcpy(&u, (const char *)base + 4 * i, 4);
    return u;
}
static inline void put_u(void *base, size_t i, uint32_t u) { memcpy((char *)base + 4 * i, &u, 4); }

/* LSD radix sort of the keys a[0..n) minus base, whose values are below
 * 2^(passes * BITS); tmp has room for n keys; the result ends in a */
static void radix_keys(void *a, void *tmp, size_t n, uint32_t base, int passes, size_t *count) {
    void *src = a, *dst = tmp;
    for (int p = 0; p < passes; p++) {
        int shift = p * BITS;
        memset(count, 0, RADIX * sizeof *count);
        for (size_t i = 0; i < n; i++) count[((get_u(src, i) - base) >> shift) & (RADIX - 1)]++;
        size_t sum = 0;
        for (int d = 0; d < RADIX; d++) {
            size_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++) {
            uint32_t k = get_u(src, i);
            put_u(dst, count[((k - base) >> shift) & (RADIX - 1)]++, k);
        }
        void *t = src;
        src = dst;
        dst = t;
    }
    if (src != a) memcpy(a, src, n * 4);
}

/* sorts a[0..n) (floats) using tmp (n floats) */
static void sort_floats(float *a, size_t n, void *tmp, size_t *count) {
    if (n < 2) return;
    if (n <= 32) {
        for (size_t i = 1; i < n; i++) {
            float v = a[i];
            uint32_t kv = to_key(v);
            size_t j = i;
            while (j > 0 && to_key(a[j - 1]) > kv) a[j] = a[j - 1], j--;
            a[j] = v;
        }
        return;
    }
    uint32_t lo = UINT32_MAX, hi = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = to_key(a[i]);
        put_u(a, i, k);
        lo = k < lo ? k : lo;
        hi = k > hi ? k : hi;
    }
    int passes = 0;
    for (uint32_t r = hi - lo; r; r >>= BITS) passes++;
    radix_keys(a, tmp, n, lo, passes, count);
    for (size_t i = 0; i < n; i++) {
        float f = from_key(get_u(a, i));
        memcpy((char *)a + 4 * i, &f, 4);
    }
}

void olmoe_kde_sort(float *x, size_t n) {
    if (n < 2) return;
    void *tmp = xmalloc_big(xmul(n, 4));
    size_t *count = xmalloc(RADIX * sizeof *count);
    sort_floats(x, n, tmp, count);
    free(tmp);
    free(count);
}

void olmoe_kde_bin_and_sort(float *x, size_t n, double lo, double inv_dx, int G, double *bins) {
    size_t *start = xcalloc((size_t)G + 1, sizeof *start); /* cell sizes, then offsets */
    memset(bins, 0, (size_t)G * sizeof *bins);
    for (size_t i = 0; i < n; i++) {
        double t = ((double)x[i] - lo) * inv_dx;
        t = t < 0 ? 0 : (t > G - 1 ? G - 1 : t);
        int k = (int)t;
        if (k >= G - 1) {
            bins[G - 1] += 1.0;
            start[G - 1]++;
            continue;
        }
        double f = t - k;
        bins[k] += 1.0 - f;
        bins[k + 1] += f;
        start[k]++;
    }
    size_t sum = 0, biggest = 0;
    for (int k = 0; k <= G; k++) {
        size_t c = start[k];
        start[k] = sum;
        sum += c;
        biggest = c > biggest ? c : biggest;
    }
    float *by_cell = xmalloc_big(xmul(n, sizeof *by_cell));
    size_t *at = xmalloc(((size_t)G + 1) * sizeof *at);
    memcpy(at, start, ((size_t)G + 1) * sizeof *at);
    for (size_t i = 0; i < n; i++) {
        double t = ((double)x[i] - lo) * inv_dx;
        t = t < 0 ? 0 : (t > G - 1 ? G - 1 : t);
        int k = (int)t;
        by_cell[at[k]++] = x[i];
    }
    void *tmp = xmalloc(xmul(biggest + 1, 4));
    size_t *count = xmalloc(RADIX * sizeof *count);
    for (int k = 0; k < G; k++) sort_floats(by_cell + start[k], start[k + 1] - start[k], tmp, count);
    memcpy(x, by_cell, n * sizeof *x);
    free(tmp);
    free(count);
    free(at);
    free(start);
    free(by_cell);
}
