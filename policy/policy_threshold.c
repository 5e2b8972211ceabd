/* policy_threshold.c: threshold tau= (definition in policy.h): every expert
 * whose probability reaches tau, at least min_k, at most max_k. The "top-any"
 * gate of DynMoE applied to the softmax p; XMoE's threshold routing. */
#include "common.h"
#include "policy.h"
#include "policy_internal.h"

int olmoe_policy_bind_threshold(olmoe_policy *p) {
    if (olmoe_policy_bind_kclamped(p) != 0) return -1;
    p->tau = (float)p->param[OLMOE_PARAM_TAU];
    return 0;
}

int olmoe_policy_route_threshold(const olmoe_policy *pol, int layer, const float *r, int E,
                                 int *ex, float *w) {
    (void)layer;
    float p[OLMOE_POLICY_MAX_E];
    olmoe_policy_softmax(r, E, pol->T, p);
    const float tau = pol->tau;
    int K = 0;
    for (int e = 0; e < E; e++) K += p[e] >= tau;
    K = K < pol->min_k ? pol->min_k : (K > pol->max_k ? pol->max_k : K);
    olmoe_policy_most_probable(p, E, K, ex);
    if (w) olmoe_policy_put_weights(pol, p, ex, K, w);
    return K;
}
