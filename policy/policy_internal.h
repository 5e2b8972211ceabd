/* policy_internal.h (internal to policy/): what the policy library's files share and nobody else
 * uses: the parsed form of a spec before its sets are expanded. */
#ifndef OLMOE_POLICY_INTERNAL_H
#define OLMOE_POLICY_INTERNAL_H

#include "policy.h"

#include <stdint.h>
#include <string.h>

#define OLMOE_POLICY_MAX_SET 64 /* values in one set */

typedef struct {
    const olmoe_policy_family *family;
    int nval[OLMOE_PARAM_COUNT];                        /* per family slot: values given */
    double val[OLMOE_PARAM_COUNT][OLMOE_POLICY_MAX_SET]; /* [slot][value] */
    const char *end;                                    /* parse position (internal) */
    char path[OLMOE_POLICY_ID_MAX];                     /* file: path= */
    char sum[13];                                       /* file: sum= */
} olmoe_policy_spec;

int olmoe_policy_spec_parse(const char *text, olmoe_policy_spec *sp);
/* value forms: "v", "{v1,v2}" (in specs), "v1,v2" (command-line options) */
enum { OLMOE_VALUES_ONE, OLMOE_VALUES_SET, OLMOE_VALUES_LIST };
int olmoe_policy_spec_add_values(olmoe_policy_spec *sp, int slot, const char *list, int form);
int olmoe_policy_parse_value(olmoe_param_id id, const char *atom, double *out);
int olmoe_policy_set_add_parsed(olmoe_policy_set *set, const olmoe_policy_spec *sp, int from_preset);

/* ---- the pieces families route with (policy_select.c) ---- */
static inline uint32_t olmoe_policy_f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}
/* Selection keys are rank key << 32 | expert index: distinct, and ascending
 * keys break ties toward the lower index. Larger p first (p in [0, 1], whose
 * fp32 bit patterns order like the values): */
static inline uint64_t olmoe_policy_key_desc(float p, int e) {
    return (uint64_t)(0x7F800000u - olmoe_policy_f2u(p)) << 32 | (uint32_t)e;
}
/* smaller q first (q > 0) */
static inline uint64_t olmoe_policy_key_asc(float q, int e) {
    return (uint64_t)olmoe_policy_f2u(q) << 32 | (uint32_t)e;
}
static inline float olmoe_policy_clampf(float q, float lo, float hi) {
    return q < lo ? lo : (q > hi ? hi : q);
}
/* p = softmax(r / T) in fp32, exactly as policy.h defines it */
void olmoe_policy_softmax(const float *r /*[E]*/, int E, float T, float *p /*[E]*/);
/* ascending, n <= OLMOE_POLICY_MAX_E */
void olmoe_policy_sort_keys(uint64_t *a /*[n]*/, int n);
/* best[0..K) = the K smallest of key[0..E) ascending (key is clobbered) */
void olmoe_policy_select_smallest(uint64_t *key /*[E]*/, int E, int K, uint64_t *best /*[K]*/);
/* the K best by p without computing p, when that provably gives the same
 * experts in the same order; 1 if so (best then holds K + 1 keys) */
int olmoe_policy_topk_by_logits(const float *r /*[E]*/, int E, float T, int K,
                                uint64_t *best /*[K + 1]*/);
void olmoe_policy_put_experts(const uint64_t *best /*[K]*/, int K, int *experts /*[K]*/);
/* ex[0..K) = the K experts of largest p, largest first (ties: lower index) */
void olmoe_policy_most_probable(const float *p /*[E]*/, int E, int K, int *ex /*[K]*/);
/* the chosen experts' weights from p, as the policy's norm says */
void olmoe_policy_put_weights(const olmoe_policy *pol, const float *p /*[E]*/, const int *ex,
                              int K, float *w /*[K]*/);
/* bh's p-values (and those of any family built on them, e.g. hc), clamped;
 * returns 1 when it computed the softmax into p on the way, else 0 */
int olmoe_policy_pvalues(const olmoe_policy *pol, int layer, const float *r /*[E]*/, int E,
                         float *q /*[E]*/, float *p /*[E]*/);

/* ---- what the literature families reuse (policy_table.c, policy_route.c,
 * policy_spec.c) ---- */
int olmoe_policy_check_k_range(const olmoe_policy *p); /* min_k <= max_k */
int olmoe_policy_bind_kclamped(olmoe_policy *p);       /* max_k, min_k <= E */
int olmoe_policy_bind_bh(olmoe_policy *p);             /* and the nulls pvalue= needs */
/* p->id from p->family and p->param again (skip: after beta=median resolved) */
int olmoe_policy_make_id(olmoe_policy *p);

/* the literature families: policy_threshold.c, policy_skip.c, policy_entropy.c, policy_hc.c */
int olmoe_policy_route_threshold(const olmoe_policy *p, int layer, const float *r, int E, int *ex,
                                 float *w);
int olmoe_policy_bind_threshold(olmoe_policy *p);
int olmoe_policy_route_skip(const olmoe_policy *p, int layer, const float *r, int E, int *ex,
                            float *w);
int olmoe_policy_check_skip(const olmoe_policy *p);
int olmoe_policy_bind_skip(olmoe_policy *p);
/* the file family: policy_file.c */
int olmoe_policy_bind_file(olmoe_policy *p);
int olmoe_policy_route_file(const olmoe_policy *p, int layer, int64_t pos, const float *r, int E,
                            int *ex, float *w);
void olmoe_policy_free_routing(olmoe_policy *p);
int olmoe_policy_route_entropy(const olmoe_policy *p, int layer, const float *r, int E, int *ex,
                               float *w);
int olmoe_policy_bind_entropy(olmoe_policy *p);
int olmoe_policy_route_hc(const olmoe_policy *p, int layer, const float *r, int E, int *ex,
                          float *w);
int olmoe_policy_check_hc(const olmoe_policy *p);
int olmoe_policy_bind_hc(olmoe_policy *p);

#endif
