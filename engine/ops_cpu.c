/* ops_cpu.c: fp32 row operations of the forward pass (see ops_cpu.h). The
 * order of float operations follows transformers where it is cheap to do so
 * (rmsnorm scales by the inverse root first, then by the weight); sums that
 * transformers does in float32 are done in double here, which can only be
 * closer to the exact value. */
#include "ops_cpu.h"

#include <math.h>

void olmoe_rmsnorm(const float *x, const float *w, float *out, size_t rows, int dim, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * (size_t)dim;
        float *o = out + r * (size_t)dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float var = (float)(ss / dim);
        float inv = 1.0f / sqrtf(var + eps);
        for (int i = 0; i < dim; i++) o[i] = w[i] * (xr[i] * inv);
    }
}

void olmoe_rope_table(int max_pos, int head_dim, double theta, float *cos_t, float *sin_t) {
    int half = head_dim / 2;
    float base = (float)theta;
    for (int i = 0; i < half; i++) {
        float inv_freq = 1.0f / powf(base, (float)(2 * i) / (float)head_dim);
        for (int p = 0; p < max_pos; p++) {
            float f = inv_freq * (float)p;
            cos_t[(size_t)p * half + i] = cosf(f);
            sin_t[(size_t)p * half + i] = sinf(f);
        }
    }
}

void olmoe_rope_apply(float *x, int n, int heads, int head_dim, size_t ld, const float *cos_t,
                      const float *sin_t) {
    int half = head_dim / 2;
    for (int p = 0; p < n; p++) {
        const float *c = cos_t + (size_t)p * half, *s = sin_t + (size_t)p * half;
        for (int h = 0; h < heads; h++) {
            float *v = x + (size_t)p * ld + (size_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

void olmoe_clamp(float *x, size_t n, float lim) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] > lim ? lim : x[i] < -lim ? -lim : x[i];
}

void olmoe_softmax(float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void olmoe_silu_mul(float *g, const float *u, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

double olmoe_logsumexp(const float *x, int n, int *argmax) {
    int am = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[am]) am = i;
    double mx = x[am], sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    if (argmax) *argmax = am;
    return mx + log(sum);
}
