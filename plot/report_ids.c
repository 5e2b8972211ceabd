/* report_ids.c: what the report reads from a canonical policy id
 * ("bh(alpha=0.1,max_k=8,min_k=1,T=1,pvalue=kde,norm=model)"): the family, k,
 * alpha, min_k/max_k, a short label for legends, the key that groups an alpha
 * sweep, and the order policies are listed and drawn in. The id is the only
 * description of a policy in the results, so nothing else is needed. */
#include "report_internal.h"
#include "policy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


/* value of name= in a canonical id ("bh(alpha=0.1,max_k=8)"), NULL if absent */
static const char *id_value(const char *id, const char *name, size_t *len) {
    size_t n = strlen(name);
    for (const char *p = strchr(id, '('); p && *p; p++) {
        if ((*p == '(' || *p == ',') && strncmp(p + 1, name, n) == 0 && p[1 + n] == '=') {
            const char *v = p + 2 + n;
            *len = strcspn(v, ",)");
            return v;
        }
    }
    return NULL;
}

static double id_number(const char *id, const char *name) {
    size_t len;
    const char *v = id_value(id, name, &len);
    if (!v) return NAN;
    char buf[64];
    if (len >= sizeof buf) return NAN;
    memcpy(buf, v, len);
    buf[len] = '\0';
    double x;
    return olmoe_parse_double(buf, &x) == 0 ? x : NAN;
}

/* whether a parameter's value in the id is the family's default */
static int is_default(const olmoe_policy_family *f, const char *name, const char *v, size_t len) {
    if (!f) return 0;
    for (int i = 0; i < f->n_params; i++) {
        const olmoe_param_info *pi = &olmoe_param_table[f->params[i].id];
        if (strcmp(pi->name, name) != 0) continue;
        if (f->params[i].flags & OLMOE_FP_REQUIRED) return 0;
        char buf[64];
        if (len >= sizeof buf) return 0;
        memcpy(buf, v, len);
        buf[len] = '\0';
        if (pi->type == OLMOE_PARAM_ENUM) return strcmp(buf, pi->names[(int)f->params[i].def]) == 0;
        double x;
        return olmoe_parse_double(buf, &x) == 0 && x == f->params[i].def;
    }
    return 0;
}

void rep_describe_policy(olmoe_report_policy *p) {
    const char *id = p->id, *par = strchr(id, '(');
    size_t fl = par ? (size_t)(par - id) : strlen(id);
    if (fl >= sizeof p->family) fl = sizeof p->family - 1;
    memcpy(p->family, id, fl);
    p->family[fl] = '\0';
    p->k = id_number(id, "k");
    p->alpha = id_number(id, "alpha");
    double mn = id_number(id, "min_k"), mx = id_number(id, "max_k");
    if (!strcmp(p->family, "topk") && isfinite(p->k)) mn = mx = p->k;
    p->min_k = isfinite(mn) ? (int)mn : 0;
    p->max_k = isfinite(mx) ? (int)mx : 0;

    /* the sweep key: the id without its alpha */
    size_t alen;
    const char *av = id_value(id, "alpha", &alen);
    if (av) {
        const char *from = av - strlen("alpha="), *to = av + alen;
        if (*to == ',') to++;
        else if (from[-1] == ',') from--;
        size_t n = strlen(id);
        p->sweep_key = xmalloc(n + 1);
        memcpy(p->sweep_key, id, (size_t)(from - id));
        strcpy(p->sweep_key + (from - id), to);
    } else {
        p->sweep_key = xstrdup(id);
    }

    /* the label: top-K, or the family with its non-default parameters (and
     * max_k always: the figures compare it) */
    if (!strcmp(p->family, "topk") && isfinite(p->k) && strstr(id, "norm=model")) {
        snprintf(p->label, sizeof p->label, "top-%g", p->k);
        return;
    }
    const olmoe_policy_family *f = olmoe_policy_family_find(p->family);
    if (!f || !par) {
        snprintf(p->label, sizeof p->label, "%s", id);
        return;
    }
    size_t o = (size_t)snprintf(p->label, sizeof p->label, "%s", p->family);
    const char *s = par + 1;
    while (*s && *s != ')') {
        size_t nl = strcspn(s, "=,)");
        if (s[nl] != '=') break;
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)(nl < 31 ? nl : 31), s);
        const char *v = s + nl + 1;
        size_t vl = strcspn(v, ",)");
        if (!is_default(f, name, v, vl) || !strcmp(name, "max_k")) {
            const char *shown = !strcmp(name, "alpha") ? "α" : name;
            if (o < sizeof p->label)
                o += (size_t)snprintf(p->label + o, sizeof p->label - o, " %s=%.*s", shown, (int)vl, v);
        }
        s = v + vl;
        if (*s == ',') s++;
    }
}

static int family_rank(const char *f) {
    static const char *const order[] = {"topk", "bh", "topp", "threshold", "skip", "entropy", "hc"};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (!strcmp(f, order[i])) return (int)i;
    return 100;
}

static int cmp_num(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) - isnan(b);
    return (a > b) - (a < b);
}

int rep_cmp_policy(const void *va, const void *vb) {
    const olmoe_report_policy *a = va, *b = vb;
    int c = family_rank(a->family) - family_rank(b->family);
    if (!c) c = strcmp(a->family, b->family);
    if (!c) c = cmp_num(a->k, b->k);
    if (!c) c = a->max_k - b->max_k;
    if (!c) c = cmp_num(a->alpha, b->alpha);
    if (!c) c = strcmp(a->id, b->id);
    return c;
}

