/* policy_entropy.c: entropy scale= (definition in policy.h): as many experts
 * as scale times the router's effective number of experts exp(H). A flat
 * router (a token it cannot place) gets many, a peaked one few: the idea of
 * Adaptive-K routing, with one continuous knob instead of thresholds. */
#include "common.h"
#include "policy.h"
#include "policy_internal.h"

#include <math.h>

int olmoe_policy_bind_entropy(olmoe_policy *p) {
    if (olmoe_policy_bind_kclamped(p) != 0) return -1;
    p->scale = p->param[OLMOE_PARAM_SCALE];
    return 0;
}

int olmoe_policy_route_entropy(const olmoe_policy *pol, int layer, const float *r, int E, int *ex,
                               float *w) {
    (void)layer;
    float p[OLMOE_POLICY_MAX_E];
    olmoe_policy_softmax(r, E, pol->T, p);
    double H = 0.0;
    for (int e = 0; e < E; e++)
        if (p[e] > 0.0f) H -= (double)p[e] * log((double)p[e]);
    /* clamped as a double first: scale * exp(H) may exceed any int, and is
     * NaN when the logits are (then min_k) */
    double k = round(pol->scale * exp(H));
    int K = k >= pol->max_k ? pol->max_k : (k >= pol->min_k ? (int)k : pol->min_k);
    olmoe_policy_most_probable(p, E, K, ex);
    if (w) olmoe_policy_put_weights(pol, p, ex, K, w);
    return K;
}
