/* test_stats_synth.h: synthetic traces for the stats and KDE tests and the
 * stats benchmark (bench/stats_bench.sh). Nothing here is committed data:
 * every trace is generated from a seed.
 *
 * Logits look like a router's: per layer, each expert has its own mean;
 * each token adds a common offset (which softmax ignores and a pooled null
 * does not), Gaussian noise, and a boost of 2..5 to a few (0..6) experts it
 * "prefers", so policies that adapt k have something to adapt to. Documents
 * of random length tile the stream, with group = document index % n_groups
 * (n_groups 0: no /documents). Windows of ctx tokens, no stride. Logits
 * stored as bfloat16 round to 8 significant bits, which makes exact ties. */
#ifndef OLMOE_TEST_STATS_SYNTH_H
#define OLMOE_TEST_STATS_SYNTH_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "traces.h"

typedef struct {
    uint64_t s;
} synth_rng;
static inline uint64_t synth_next(synth_rng *r) {
    r->s ^= r->s << 13, r->s ^= r->s >> 7, r->s ^= r->s << 17;
    return r->s;
}
static inline double synth_u(synth_rng *r) {
    return ((double)(synth_next(r) >> 11) + 0.5) / 9007199254740992.0;
}
/* two normals per call */
static inline void synth_n2(synth_rng *r, double *a, double *b) {
    double m = sqrt(-2 * log(synth_u(r))), t = 2 * M_PI * synth_u(r);
    *a = m * cos(t);
    *b = m * sin(t);
}

/* fills logits [n, L, E] for tokens [first, first + n) of a stream (the
 * expert means come from mu [L, E]) */
static void synth_logits(synth_rng *r, const float *mu, int64_t n, int L, int E, float *out) {
    for (int64_t t = 0; t < n; t++) {
        for (int l = 0; l < L; l++) {
            float *row = out + ((size_t)t * L + l) * E;
            double a, b;
            synth_n2(r, &a, &b);
            double offset = 0.5 * a;
            for (int e = 0; e < E; e += 2) {
                double z1, z2;
                synth_n2(r, &z1, &z2);
                row[e] = (float)(mu[l * E + e] + offset + z1);
                if (e + 1 < E) row[e + 1] = (float)(mu[l * E + e + 1] + offset + z2);
            }
            int pref = (int)(synth_u(r) * 7);
            for (int i = 0; i < pref; i++) row[(int)(synth_u(r) * E)] += (float)(2 + 3 * synth_u(r));
        }
    }
}

/* writes a complete trace at path; 0 or -1 + olmoe_error() */
static int synth_trace_write(const char *path, int64_t N, int L, int E, int top_k, int norm,
                             int n_groups, int ctx, olmoe_trace_dtype dtype, uint64_t seed) {
    synth_rng r = {seed ? seed : 1};
    float *mu = malloc(sizeof(float) * (size_t)L * E);
    for (int i = 0; i < L * E; i++) mu[i] = (float)(0.5 * (synth_u(&r) - 0.5) * 2);
    olmoe_trace_meta m;
    memset(&m, 0, sizeof m);
    m.command = "synthetic";
    m.config_json = "{}";
    m.model_checksum = "00000000000000000000000000000000";
    m.tokenizer_checksum = "";
    m.model_dir = "synthetic";
    m.policy = "topk(k=8,norm=model)";
    m.device = "cpu";
    m.compute_dtype = "float32";
    m.corpus = "";
    m.n_layers = L;
    m.n_experts = E;
    m.hidden_size = 64;
    m.vocab_size = 1000;
    m.top_k = top_k;
    m.norm_topk_prob = norm;
    m.ctx = ctx;
    m.logits_dtype = dtype; /* bfloat16 on disk: many exact ties */
    olmoe_trace *t = olmoe_trace_create(path, &m);
    if (!t) {
        free(mu);
        return -1;
    }
    int rc = -1;
    if (n_groups > 0) {
        const char **names = malloc(sizeof *names * (size_t)n_groups);
        char (*buf)[32] = malloc(32 * (size_t)n_groups);
        for (int g = 0; g < n_groups; g++) {
            snprintf(buf[g], 32, "genre-%d", g);
            names[g] = buf[g];
        }
        int grc = olmoe_trace_add_groups(t, names, n_groups);
        free(names);
        free(buf);
        if (grc != 0) goto done;
        for (int64_t s = 0, d = 0; s < N; d++) {
            int64_t len = 50 + (int64_t)(synth_u(&r) * 3000);
            if (len > N - s) len = N - s;
            olmoe_trace_document doc = {s, len, (int32_t)(d % n_groups)};
            if (olmoe_trace_add_documents(t, &doc, 1) != 0) goto done;
            s += len;
        }
    }
    float *lg = malloc(sizeof(float) * (size_t)ctx * L * E), *nll = malloc(sizeof(float) * (size_t)ctx);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)ctx), *am = malloc(sizeof(int32_t) * (size_t)ctx);
    for (int64_t s = 0; s < N; s += ctx) {
        int64_t n = N - s < ctx ? N - s : ctx;
        synth_logits(&r, mu, n, L, E, lg);
        for (int64_t i = 0; i < n; i++) {
            tok[i] = (int32_t)(synth_next(&r) % 1000);
            am[i] = (int32_t)(synth_next(&r) % 1000);
            nll[i] = i == n - 1 ? NAN : (float)(4 * synth_u(&r));
        }
        olmoe_trace_window w = {s, n, 0, 0}; /* stored_end 0: start + length */
        olmoe_trace_rows rows = {tok, lg, nll, am, NULL, NULL};
        if (olmoe_trace_append_window(t, &w, &rows) != 0) {
            free(lg), free(nll), free(tok), free(am);
            goto done;
        }
    }
    free(lg), free(nll), free(tok), free(am);
    rc = 0;
done:
    free(mu);
    if (rc == 0) return olmoe_trace_close(t);
    olmoe_trace_abort(t);
    return -1;
}

#endif
