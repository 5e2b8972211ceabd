/* policy_spec.c: policy specs -> policies. Grammar (spaces allowed between
 * tokens):
 *     spec  := family [ "(" [ param "=" value { "," param "=" value } ] ")" ]
 *     value := atom | "{" atom { "," atom } "}"        (a set: a sweep axis)
 * Every value is checked against the parameter table (type, range, names)
 * and every policy against its family's cross check, so a bad sweep fails
 * before any work. Canonical ids list every parameter in the family's order
 * with numbers in their shortest round-trip form, so equal policies have
 * equal ids. */
#include "common.h"
#include "policy.h"
#include "policy_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void olmoe_policy_fmt_number(double v, char *buf, size_t n) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

static const char *skip_ws(const char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    return s;
}

static int is_atom_char(int c) {
    return isalnum(c) || c == '_' || c == '.' || c == '+' || c == '-';
}

static int find_param(const olmoe_policy_family *f, const char *name, size_t len) {
    for (int i = 0; i < f->n_params; i++) {
        const olmoe_param_info *pi = &olmoe_param_table[f->params[i].id];
        if ((strlen(pi->name) == len && strncmp(pi->name, name, len) == 0) ||
            (strlen(pi->option) == len && strncmp(pi->option, name, len) == 0) ||
            (pi->alias && strlen(pi->alias) == len && strncmp(pi->alias, name, len) == 0))
            return i;
    }
    return -1;
}

static void list_params(const olmoe_policy_family *f, char *buf, size_t n) {
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < f->n_params && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%s", i ? ", " : "",
                               olmoe_param_table[f->params[i].id].name);
}

static void list_families(char *buf, size_t n) {
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < olmoe_policy_n_families && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%s", i ? ", " : "",
                               olmoe_policy_families[i].name);
}

int olmoe_policy_parse_value(olmoe_param_id id, const char *atom, double *out) {
    const olmoe_param_info *pi = &olmoe_param_table[id];
    if (pi->type == OLMOE_PARAM_ENUM) {
        for (int i = 0; pi->names[i]; i++)
            if (strcmp(pi->names[i], atom) == 0) {
                *out = i;
                return 0;
            }
        char names[128];
        size_t at = 0;
        names[0] = '\0';
        for (int i = 0; pi->names[i] && at < sizeof names; i++)
            at += (size_t)snprintf(names + at, sizeof names - at, "%s%s", i ? ", " : "",
                                   pi->names[i]);
        return olmoe_errorf("%s must be one of %s, got '%s'", pi->name, names, atom);
    }
    double v;
    if (pi->word) { /* "median", "median-<12 hex digits>" (policy.h) */
        size_t wl = strlen(pi->word);
        if (strcmp(atom, pi->word) == 0) {
            *out = pi->word_value;
            return 0;
        }
        if (strncmp(atom, pi->word, wl) == 0 && atom[wl] == '-') {
            const char *h = atom + wl + 1;
            if (strlen(h) != 12 || strspn(h, "0123456789abcdef") != 12)
                return olmoe_errorf("%s: '%s' is not %s-<12 lower-case hex digits>", pi->name, atom,
                                    pi->word);
            *out = pi->word_value - 1.0 - (double)strtoull(h, NULL, 16);
            return 0;
        }
    }
    if (pi->type == OLMOE_PARAM_INT) {
        long l;
        if (olmoe_parse_long(atom, -1000000000L, 1000000000L, &l) != 0)
            return olmoe_errorf("%s must be an integer, got '%s'", pi->name, atom);
        v = (double)l;
    } else if (olmoe_parse_double(atom, &v) != 0) {
        return olmoe_errorf("%s must be a number, got '%s'", pi->name, atom);
    }
    int below = pi->lo_open ? !(v > pi->lo) : !(v >= pi->lo);
    int above = pi->hi_open ? !(v < pi->hi) : !(v <= pi->hi);
    if (below || above) {
        char lo[32], hi[32];
        olmoe_policy_fmt_number(pi->lo, lo, sizeof lo);
        olmoe_policy_fmt_number(pi->hi, hi, sizeof hi);
        if (isinf(pi->hi))
            return olmoe_errorf("%s must be %s %s, got %s", pi->name, pi->lo_open ? ">" : ">=", lo,
                                atom);
        return olmoe_errorf("%s must be in %s%s, %s%s, got %s", pi->name, pi->lo_open ? "(" : "[",
                            lo, hi, pi->hi_open ? ")" : "]", atom);
    }
    *out = v;
    return 0;
}

/* one atom at s: copies it into buf, returns the end or NULL */
static const char *read_atom(const char *s, char *buf, size_t n) {
    size_t len = 0;
    while (is_atom_char((unsigned char)s[len])) len++;
    if (len == 0) {
        olmoe_errorf("expected a value at '%.20s'", s);
        return NULL;
    }
    if (len >= n) {
        olmoe_errorf("value '%.20s...' is too long", s);
        return NULL;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    return s + len;
}

/* file(path=...,sum=...): the text up to the next ',' or ')' (a path with
 * those characters cannot be named here), spaces trimmed; sum is 12
 * lower-case hex digits */
static int read_text(olmoe_policy_spec *sp, const char *name, const char **at, int is_sum) {
    const char *key = is_sum ? "sum" : "path";
    char *dst = is_sum ? sp->sum : sp->path;
    size_t cap = is_sum ? sizeof sp->sum : sizeof sp->path - 64;
    const char *s = skip_ws(*at + strlen(key));
    if (dst[0]) return olmoe_errorf("%s: %s given twice", name, key);
    if (*s != '=') return olmoe_errorf("%s: expected '=' after %s", name, key);
    s = skip_ws(s + 1);
    size_t len = strcspn(s, ",)");
    while (len && isspace((unsigned char)s[len - 1])) len--;
    if (len == 0) return olmoe_errorf("%s: %s= needs a value", name, key);
    if (len >= cap) return olmoe_errorf("%s: %s '%.20s...' is too long", name, key, s);
    memcpy(dst, s, len);
    dst[len] = '\0';
    if (is_sum && (len != 12 || strspn(dst, "0123456789abcdef") != 12))
        return olmoe_errorf("%s: sum '%s' is not 12 lower-case hex digits", name, dst);
    s = skip_ws(s + len);
    if (*s == ',') {
        s = skip_ws(s + 1);
        if (*s == ')') return olmoe_errorf("%s: expected a parameter after ','", name);
    } else if (*s != ')') {
        return olmoe_errorf("%s: expected ',' or ')' at '%.20s'", name, s);
    }
    *at = s;
    return 0;
}

int olmoe_policy_spec_add_values(olmoe_policy_spec *sp, int slot, const char *list, int form) {
    int braces = form == OLMOE_VALUES_SET;
    olmoe_param_id id = sp->family->params[slot].id;
    const char *name = olmoe_param_table[id].name;
    const char *s = skip_ws(list);
    if (braces) {
        if (*s != '{') return olmoe_errorf("internal: expected '{'");
        s = skip_ws(s + 1);
    }
    for (;;) {
        char atom[64];
        const char *e = read_atom(s, atom, sizeof atom);
        if (!e) return olmoe_error_prefix("%s", name);
        if (sp->nval[slot] >= OLMOE_POLICY_MAX_SET)
            return olmoe_errorf("%s: more than %d values", name, OLMOE_POLICY_MAX_SET);
        double v;
        if (olmoe_policy_parse_value(id, atom, &v) != 0) return -1;
        for (int i = 0; i < sp->nval[slot]; i++)
            if (sp->val[slot][i] == v) return olmoe_errorf("%s: value %s given twice", name, atom);
        sp->val[slot][sp->nval[slot]++] = v;
        s = skip_ws(e);
        if (*s == ',' && form != OLMOE_VALUES_ONE) {
            s = skip_ws(s + 1);
            continue;
        }
        break;
    }
    if (braces) {
        if (*s != '}') return olmoe_errorf("%s: expected ',' or '}' at '%.20s'", name, s);
        s = skip_ws(s + 1);
    }
    sp->end = s;
    return 0;
}

int olmoe_policy_spec_parse(const char *text, olmoe_policy_spec *sp) {
    memset(sp, 0, sizeof *sp);
    const char *s = skip_ws(text);
    size_t len = 0;
    while (isalnum((unsigned char)s[len]) || s[len] == '_' || s[len] == '-') len++;
    if (len == 0) return olmoe_errorf("expected a policy name at '%.20s'", s);
    char name[64];
    if (len >= sizeof name) return olmoe_errorf("policy name '%.20s...' is too long", s);
    memcpy(name, s, len);
    name[len] = '\0';
    sp->family = olmoe_policy_family_find(name);
    if (!sp->family) {
        char fams[256];
        list_families(fams, sizeof fams);
        return olmoe_errorf("unknown policy '%s' (known: %s)", name, fams);
    }
    s = skip_ws(s + len);
    if (*s == '(') {
        s = skip_ws(s + 1);
        while (*s != ')') {
            size_t pl = 0;
            while (isalnum((unsigned char)s[pl]) || s[pl] == '_' || s[pl] == '-') pl++;
            if (pl == 0) return olmoe_errorf("%s: expected a parameter name at '%.20s'", name, s);
            if (sp->family->route_at && ((pl == 4 && strncmp(s, "path", 4) == 0) ||
                                         (pl == 3 && strncmp(s, "sum", 3) == 0))) {
                if (read_text(sp, name, &s, pl == 3) != 0) return -1;
                continue;
            }
            int slot = find_param(sp->family, s, pl);
            if (slot < 0) {
                char ps[256];
                list_params(sp->family, ps, sizeof ps);
                return olmoe_errorf("%s has no parameter '%.*s' (it takes %s)", name, (int)pl, s,
                                    ps);
            }
            const char *pname = olmoe_param_table[sp->family->params[slot].id].name;
            if (sp->nval[slot]) return olmoe_errorf("%s: %s given twice", name, pname);
            s = skip_ws(s + pl);
            if (*s != '=') return olmoe_errorf("%s: expected '=' after %s", name, pname);
            s = skip_ws(s + 1);
            if (olmoe_policy_spec_add_values(sp, slot, s,
                                             *s == '{' ? OLMOE_VALUES_SET : OLMOE_VALUES_ONE) != 0)
                return olmoe_error_prefix("%s", name);
            s = sp->end;
            if (*s == ',') {
                s = skip_ws(s + 1);
                if (*s == ')') return olmoe_errorf("%s: expected a parameter after ','", name);
            } else if (*s != ')') {
                return olmoe_errorf("%s: expected ',' or ')' at '%.20s'", name, s);
            }
        }
        s = skip_ws(s + 1);
    }
    if (*s) return olmoe_errorf("unexpected '%.20s' after the policy", s);
    return 0;
}

/* fills p->id from p->family and p->param */
static int make_id(olmoe_policy *p) {
    const olmoe_policy_family *f = p->family;
    char buf[OLMOE_POLICY_ID_MAX + 64];
    size_t at = (size_t)snprintf(buf, sizeof buf, "%s(", f->name);
    int first = 1;
    if (p->path[0]) { /* bound: the file's name and checksum (no '/': ids name HDF5 groups) */
        const char *base = strrchr(p->path, '/');
        at += (size_t)snprintf(buf + at, sizeof buf - at, "path=%s", p->routing && base ? base + 1 : p->path);
        if (p->sum[0]) at += (size_t)snprintf(buf + at, sizeof buf - at, ",sum=%s", p->sum);
        first = 0;
    }
    for (int i = 0; i < f->n_params; i++) {
        const olmoe_family_param *fp = &f->params[i];
        const olmoe_param_info *pi = &olmoe_param_table[fp->id];
        double v = p->param[fp->id];
        if ((fp->flags & OLMOE_FP_QUIET) && v == fp->def) continue;
        char val[40];
        if (pi->word && v == pi->word_value)
            snprintf(val, sizeof val, "%s", pi->word);
        else if (pi->word && v < pi->word_value)
            snprintf(val, sizeof val, "%s-%012llx", pi->word,
                     (unsigned long long)(pi->word_value - 1.0 - v));
        else if (pi->type == OLMOE_PARAM_ENUM)
            snprintf(val, sizeof val, "%s", pi->names[(int)v]);
        else if (pi->type == OLMOE_PARAM_INT)
            snprintf(val, sizeof val, "%d", (int)v);
        else
            olmoe_policy_fmt_number(v, val, sizeof val);
        at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%s=%s", first ? "" : ",", pi->name, val);
        first = 0;
        if (at >= OLMOE_POLICY_ID_MAX) return olmoe_errorf("policy id too long");
    }
    at += (size_t)snprintf(buf + at, sizeof buf - at, ")");
    if (at >= OLMOE_POLICY_ID_MAX) return olmoe_errorf("policy id too long");
    memcpy(p->id, buf, at + 1);
    return 0;
}

int olmoe_policy_make_id(olmoe_policy *p) {
    return make_id(p);
}

/* a policy from one value per parameter (choice[slot] indexes sp->val) */
static int make_policy(const olmoe_policy_spec *sp, const int *choice, olmoe_policy *p) {
    memset(p, 0, sizeof *p);
    const olmoe_policy_family *f = sp->family;
    p->family = f;
    for (int i = 0; i < OLMOE_PARAM_COUNT; i++) p->param[i] = NAN;
    for (int i = 0; i < f->n_params; i++) {
        const olmoe_family_param *fp = &f->params[i];
        if (sp->nval[i]) {
            p->param[fp->id] = sp->val[i][choice[i]];
        } else if (fp->flags & OLMOE_FP_REQUIRED) {
            return olmoe_errorf("%s needs %s (e.g. %s(%s=...))", f->name,
                                olmoe_param_table[fp->id].name, f->name,
                                olmoe_param_table[fp->id].name);
        } else {
            p->param[fp->id] = fp->def;
        }
    }
    if (f->route_at && !sp->path[0])
        return olmoe_errorf("%s needs path (e.g. %s(path=routing.h5))", f->name, f->name);
    memcpy(p->path, sp->path, sizeof p->path);
    memcpy(p->sum, sp->sum, sizeof p->sum);
    if (make_id(p) != 0) return -1;
    if (f->check && f->check(p) != 0) return olmoe_error_prefix("%s", p->id);
    return 0;
}

int olmoe_policy_parse(const char *spec, olmoe_policy *out) {
    olmoe_policy_spec sp;
    if (olmoe_policy_spec_parse(spec, &sp) != 0) return -1;
    for (int i = 0; i < sp.family->n_params; i++)
        if (sp.nval[i] > 1)
            return olmoe_errorf("%s: a set of values is a sweep (use --sweep or a policy set)",
                                sp.family->name);
    int choice[OLMOE_PARAM_COUNT] = {0};
    return make_policy(&sp, choice, out);
}

static int cmp_index_by_id(const void *a, const void *b, void *ctx) {
    const olmoe_policy *items = ctx;
    int ia = *(const int *)a, ib = *(const int *)b;
    int c = strcmp(items[ia].id, items[ib].id);
    return c ? c : (ia > ib) - (ia < ib);
}

/* drops later duplicates of an id, keeping the first occurrence and the order */
static void dedupe(olmoe_policy_set *set) {
    if (set->n < 2) return;
    int *idx = xmalloc(xmul((size_t)set->n, sizeof *idx));
    unsigned char *drop = xcalloc((size_t)set->n, 1);
    for (int i = 0; i < set->n; i++) idx[i] = i;
    qsort_r(idx, (size_t)set->n, sizeof *idx, cmp_index_by_id, set->items);
    for (int i = 1; i < set->n; i++)
        if (strcmp(set->items[idx[i]].id, set->items[idx[i - 1]].id) == 0) drop[idx[i]] = 1;
    int o = 0;
    for (int i = 0; i < set->n; i++)
        if (!drop[i]) set->items[o++] = set->items[i];
    set->n = o;
    free(idx);
    free(drop);
}

int olmoe_policy_set_add_parsed(olmoe_policy_set *set, const olmoe_policy_spec *sp,
                                int from_preset) {
    const olmoe_policy_family *f = sp->family;
    size_t total = 1;
    for (int i = 0; i < f->n_params; i++) {
        if (sp->nval[i]) total *= (size_t)sp->nval[i];
        if (total > OLMOE_POLICY_MAX_SWEEP)
            return olmoe_errorf("%s: the sweep has more than %d policies", f->name,
                                OLMOE_POLICY_MAX_SWEEP);
    }
    if ((size_t)set->n + total > OLMOE_POLICY_MAX_SWEEP)
        return olmoe_errorf("the sweep has more than %d policies", OLMOE_POLICY_MAX_SWEEP);
    int choice[OLMOE_PARAM_COUNT] = {0};
    for (size_t t = 0; t < total; t++) {
        if (set->n == set->cap) {
            set->cap = set->cap ? 2 * set->cap : 16;
            set->items = xrealloc(set->items, xmul((size_t)set->cap, sizeof *set->items));
        }
        olmoe_policy *p = &set->items[set->n];
        if (make_policy(sp, choice, p) != 0) return -1;
        p->from_preset = from_preset;
        set->n++;
        /* odometer: the last parameter turns fastest */
        for (int i = f->n_params - 1; i >= 0; i--) {
            if (sp->nval[i] < 2) continue;
            if (++choice[i] < sp->nval[i]) break;
            choice[i] = 0;
        }
    }
    dedupe(set);
    return 0;
}

int olmoe_policy_set_add_spec(olmoe_policy_set *set, const char *spec, const char *where) {
    olmoe_policy_spec sp;
    int rc = olmoe_policy_spec_parse(spec, &sp);
    if (rc == 0) rc = olmoe_policy_set_add_parsed(set, &sp, 0);
    if (rc != 0 && where) olmoe_error_prefix("%s", where);
    return rc;
}

void olmoe_policy_set_free(olmoe_policy_set *set) {
    for (int i = 0; i < set->n; i++) olmoe_policy_free(&set->items[i]);
    free(set->items);
    memset(set, 0, sizeof *set);
}

int olmoe_policy_set_needs(const olmoe_policy_set *set, olmoe_pvalue_kind kind) {
    for (int i = 0; i < set->n; i++)
        if (olmoe_policy_needs(&set->items[i], kind)) return 1;
    return 0;
}

int olmoe_policy_spec_sets(const char *spec, const char *name) {
    olmoe_policy_spec sp;
    if (olmoe_policy_spec_parse(spec, &sp) != 0) return -1;
    int slot = find_param(sp.family, name, strlen(name));
    return slot >= 0 && sp.nval[slot] > 0;
}

double olmoe_policy_get(const olmoe_policy *p, const char *name) {
    int slot = find_param(p->family, name, strlen(name));
    return slot < 0 ? NAN : p->param[p->family->params[slot].id];
}

int olmoe_policy_set_bind(olmoe_policy_set *set, const olmoe_policy_model *m) {
    int o = 0;
    for (int i = 0; i < set->n; i++) {
        olmoe_policy *p = &set->items[i];
        if (p->from_preset && olmoe_policy_max_experts(p) > m->n_experts) {
            notef("note: skipping %s: the model has %d experts", p->id, m->n_experts);
            continue;
        }
        if (olmoe_policy_bind(p, m) != 0) return -1;
        set->items[o++] = *p;
    }
    set->n = o;
    if (o == 0) return olmoe_errorf("no policy fits this model (%d experts)", m->n_experts);
    return 0;
}
