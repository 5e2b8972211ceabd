/* match_calib.c: the calibration half of matched compute (match.h): the
 * calibration trace's router logits in memory, the mean experts per
 * token-layer of a policy on them, each family's knob, and the bisection
 * that finds the knob's value for a target mean. */
#include "common.h"
#include "match.h"
#include "traces.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- data ---- */

int olmoe_match_data_from(olmoe_match_data *d, const float *logits, int64_t n, int L, int E) {
    memset(d, 0, sizeof *d);
    if (n < 1 || L < 1 || E < 1 || E > OLMOE_POLICY_MAX_E)
        return olmoe_errorf("calibration data: %lld tokens x %d layers x %d experts",
                            (long long)n, L, E);
    size_t cells = xmul(xmul((size_t)n, (size_t)L), (size_t)E);
    for (size_t i = 0; i < cells; i++)
        if (!isfinite(logits[i]))
            return olmoe_errorf("calibration data: router logit %zu is not finite", i);
    d->n_layers = L, d->n_experts = E, d->n_rows = n, d->n_trace = n, d->stride = 1;
    d->logits = xmalloc(xmul(cells, sizeof *d->logits));
    memcpy(d->logits, logits, cells * sizeof *d->logits);
    olmoe_hash h;
    olmoe_hash_bytes(d->logits, cells * sizeof *d->logits, &h);
    memcpy(d->checksum, h.hex, sizeof d->checksum);
    d->n_threads = 1;
    return 0;
}

int olmoe_match_data_load(olmoe_match_data *d, const char *path, int64_t first_n, int64_t max_rows) {
    memset(d, 0, sizeof *d);
    olmoe_trace *t = olmoe_trace_open(path);
    if (!t) return -1;
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    int L = in->meta.n_layers, E = in->meta.n_experts;
    int64_t N = in->n_tokens;
    if (first_n > 0 && first_n < N) N = first_n;
    if (N < 1 || E > OLMOE_POLICY_MAX_E) {
        olmoe_trace_close(t);
        return olmoe_errorf("%s: %s", path, N < 1 ? "the trace has no tokens" : "too many experts");
    }
    int64_t stride = max_rows > 0 && N > max_rows ? (N + max_rows - 1) / max_rows : 1;
    int64_t rows = (N + stride - 1) / stride;
    size_t LE = (size_t)L * (size_t)E;
    d->logits = xmalloc(xmul(xmul((size_t)rows, LE), sizeof *d->logits));
    const int64_t C = 1024;
    float *buf = xmalloc(xmul(xmul((size_t)C, LE), sizeof *buf)); /* [C, L, E] */
    int64_t at = 0;
    int rc = 0;
    for (int64_t s = 0; s < N && rc == 0; s += C) {
        int64_t n = N - s < C ? N - s : C;
        if (olmoe_trace_read_router_logits(t, s, n, buf) != 0) {
            rc = -1;
            break;
        }
        for (int64_t i = 0; i < n; i++) {
            if ((s + i) % stride) continue;
            const float *row = buf + (size_t)i * LE;
            for (size_t c = 0; c < LE; c++)
                if (!isfinite(row[c])) {
                    rc = olmoe_errorf("%s: router logit of token %lld, layer %zu, expert %zu is "
                                      "not finite", path, (long long)(s + i), c / E, c % E);
                    break;
                }
            memcpy(d->logits + (size_t)at * LE, row, LE * sizeof *row);
            at++;
        }
    }
    free(buf);
    olmoe_trace_close(t);
    if (rc != 0) {
        free(d->logits);
        memset(d, 0, sizeof *d);
        return -1;
    }
    d->n_layers = L, d->n_experts = E, d->n_rows = rows, d->n_trace = N, d->stride = stride;
    olmoe_hash h;
    olmoe_hash_bytes(d->logits, (size_t)rows * LE * sizeof *d->logits, &h);
    memcpy(d->checksum, h.hex, sizeof d->checksum);
    d->n_threads = 1;
    return 0;
}

void olmoe_match_data_free(olmoe_match_data *d) {
    free(d->logits);
    memset(d, 0, sizeof *d);
}

/* ---- mean k ---- */

typedef struct {
    const olmoe_match_data *d;
    const olmoe_policy *p;
    int64_t r0, r1;
    int64_t sum; /* experts over the rows; -1: a routing error */
} mean_job;

static void *mean_worker(void *arg) {
    mean_job *j = arg;
    const int L = j->d->n_layers, E = j->d->n_experts;
    int ex[OLMOE_POLICY_MAX_E];
    int64_t sum = 0;
    for (int64_t r = j->r0; r < j->r1; r++)
        for (int l = 0; l < L; l++) {
            int k = olmoe_policy_route((void *)j->p, l, j->d->logits + ((size_t)r * L + l) * E, E,
                                       ex, NULL);
            if (k < 1 || k > E) {
                j->sum = -1;
                return NULL;
            }
            sum += k;
        }
    j->sum = sum;
    return NULL;
}

double olmoe_match_mean_k(const olmoe_match_data *d, const olmoe_policy *p) {
    enum { MAX_THREADS = 64 };
    int T = d->n_threads < 1 ? 1 : (d->n_threads > MAX_THREADS ? MAX_THREADS : d->n_threads);
    if (d->n_rows < 64 * T) T = 1;
    mean_job jobs[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int i = 0; i < T; i++)
        jobs[i] = (mean_job){d, p, d->n_rows * i / T, d->n_rows * (i + 1) / T, 0};
    for (int i = 1; i < T; i++) started[i] = pthread_create(&th[i], NULL, mean_worker, &jobs[i]) == 0;
    mean_worker(&jobs[0]);
    int64_t total = 0;
    int bad = jobs[0].sum < 0;
    for (int i = 1; i < T; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        else mean_worker(&jobs[i]); /* no thread to be had: do it here */
        bad |= jobs[i].sum < 0;
        total += jobs[i].sum;
    }
    total += jobs[0].sum;
    if (bad) return NAN;
    return (double)total / ((double)d->n_rows * d->n_layers);
}

/* ---- knobs ---- */

const olmoe_match_knob olmoe_match_knobs[] = {
    {"topp", "p", 1, 0, 0, 1e-9, 1},
    /* linear: bh's k moves with alpha over (0.1, 1), hardly near 1e-12 */
    {"bh", "alpha", 1, 0, 0, 1e-12, 1 - 1e-12},
    {"threshold", "tau", 0, 1, 0, 1e-9, 1},
    {"skip", "beta", 0, 0, 0, 0, 1},
    {"entropy", "scale", 1, 1, 0, 1e-4, 512},
    {"hc", "beta", 1, 0, 1, 0, 1},
    {NULL, NULL, 0, 0, 0, 0, 0},
};

const olmoe_match_knob *olmoe_match_knob_find(const char *family) {
    for (const olmoe_match_knob *k = olmoe_match_knobs; k->family; k++)
        if (strcmp(k->family, family) == 0) return k;
    return NULL;
}

static size_t appendf(char *buf, size_t n, size_t at, const char *fmt, const char *a,
                      const char *b) {
    if (at >= n) return at;
    return at + (size_t)snprintf(buf + at, n - at, fmt, a, b);
}

int olmoe_match_family_init(olmoe_match_family *f, const char *spec, const char *const *options,
                            int *used, int default_max_k) {
    memset(f, 0, sizeof *f);
    /* the spec without its knob: the family and the syntax are checked here,
     * the values once the knob is in (below) */
    if (olmoe_policy_spec_sets(spec, "k") < 0) return olmoe_error_prefix("--families: %s", spec);
    char name[32];
    size_t nl = strcspn(spec, "( ");
    snprintf(name, sizeof name, "%.*s", (int)(nl < sizeof name ? nl : sizeof name - 1), spec);
    const olmoe_policy_family *fam = olmoe_policy_family_find(name);
    if (!fam) return olmoe_errorf("--families: unknown family '%s'", name);
    const olmoe_match_knob *k = olmoe_match_knob_find(fam->name);
    if (!k) {
        char known[128];
        size_t at = 0;
        known[0] = '\0';
        for (const olmoe_match_knob *q = olmoe_match_knobs; q->family; q++)
            at = appendf(known, sizeof known, at, "%s%s", at ? ", " : "", q->family);
        return olmoe_errorf("--families: %s has no continuous parameter to calibrate (these do: %s)",
                            fam->name, known);
    }
    if (olmoe_policy_spec_sets(spec, k->param) == 1)
        return olmoe_errorf("--families: %s: leave %s out, --match-k calibrates it", spec, k->param);
    f->knob = *k;
    snprintf(f->name, sizeof f->name, "%s", fam->name);
    /* the spec's own parameters, as written between its parentheses */
    const char *open = strchr(spec, '('), *close = strrchr(spec, ')');
    size_t at = 0;
    if (open && close && close > open) {
        const char *s = open + 1;
        while (*s == ' ') s++;
        size_t len = (size_t)(close - s);
        while (len && s[len - 1] == ' ') len--;
        if (len >= sizeof f->params) return olmoe_errorf("--families: %s is too long", spec);
        memcpy(f->params, s, len);
        f->params[len] = '\0';
        at = len;
    }
    for (int i = 0; i < fam->n_params; i++) {
        olmoe_param_id id = fam->params[i].id;
        const olmoe_param_info *pi = &olmoe_param_table[id];
        if (strcmp(pi->name, k->param) == 0) {
            if (options && options[id])
                return olmoe_errorf("--%s: --match-k calibrates %s", pi->option, pi->name);
            continue;
        }
        if (olmoe_policy_spec_sets(spec, pi->name) == 1) continue;
        char dflt[16];
        const char *v = options ? options[id] : NULL;
        if (v) {
            if (strpbrk(v, ",{"))
                return olmoe_errorf("--%s: one value with --match-k, not '%s'", pi->option, v);
            if (used) used[id] = 1;
        } else if (id == OLMOE_PARAM_MAX_K && default_max_k > 0) {
            snprintf(dflt, sizeof dflt, "%d", default_max_k);
            v = dflt;
        }
        if (v) at = appendf(f->params, sizeof f->params, at, at ? ",%s=%s" : "%s=%s", pi->name, v);
    }
    if (at >= sizeof f->params) return olmoe_errorf("--families: %s is too long", spec);
    /* the family must parse with some knob value: bad options fail here */
    char text[600];
    olmoe_policy probe;
    olmoe_match_spec(f, k->per_expert ? 1.0 : k->hi, text, sizeof text);
    if (olmoe_policy_parse(text, &probe) != 0) return olmoe_error_prefix("--families: %s", spec);
    return 0;
}

void olmoe_match_spec(const olmoe_match_family *f, double x, char *buf, size_t n) {
    char v[40];
    olmoe_policy_fmt_number(x, v, sizeof v);
    snprintf(buf, n, "%s(%s=%s%s%s)", f->name, f->knob.param, v, f->params[0] ? "," : "",
             f->params);
}

int olmoe_match_policy(const olmoe_match_family *f, double x, const olmoe_policy_model *m,
                       olmoe_policy *out) {
    char text[600];
    olmoe_match_spec(f, x, text, sizeof text);
    if (olmoe_policy_parse(text, out) != 0) return -1;
    return olmoe_policy_bind(out, m);
}

/* ---- bisection ---- */

typedef struct {
    const olmoe_match_data *d;
    olmoe_match_family *f;
    const olmoe_policy_model *m;
    olmoe_match_point *pt;
    int E;
} solver;

/* mean k at knob value x (NaN + message on error) */
static double eval_at(solver *s, double x) {
    olmoe_policy p;
    s->pt->evaluations++;
    if (olmoe_match_policy(s->f, x, s->m, &p) != 0) return NAN;
    if (s->d->measure) return s->d->measure(s->d->measure_ctx, &p);
    double k = olmoe_match_mean_k(s->d, &p);
    if (isnan(k)) olmoe_errorf("%s: routing failed on the calibration data", p.id);
    return k;
}

static double value_at(const solver *s, double u);

/* mean k at position u, measured once per family and data */
static double eval_u(solver *s, double u) {
    olmoe_match_family *f = s->f;
    for (int i = 0; i < f->n_seen; i++)
        if (f->seen_u[i] == u) return f->seen_k[i];
    double k = eval_at(s, value_at(s, u));
    if (!isnan(k) && f->n_seen < (int)(sizeof f->seen_u / sizeof f->seen_u[0])) {
        f->seen_u[f->n_seen] = u;
        f->seen_k[f->n_seen++] = k;
    }
    return k;
}

/* the knob's value at position u of the search: u in [0, 1], or m in
 * 1..E for per-expert knobs; oriented so that k grows with u */
static double value_at(const solver *s, double u) {
    const olmoe_match_knob *k = &s->f->knob;
    if (k->per_expert) return u / s->E;
    if (!k->increasing) u = 1 - u;
    if (k->log_scale) return exp(log(k->lo) + u * (log(k->hi) - log(k->lo)));
    return k->lo + u * (k->hi - k->lo);
}

static void fmt(double x, char *buf, size_t n) {
    olmoe_policy_fmt_number(x, buf, n);
}

/* x rounded to d significant digits */
static double round_sig(double x, int d) {
    char b[40];
    snprintf(b, sizeof b, "%.*g", d, x);
    return strtod(b, NULL);
}

static int finish(solver *s, double x, double k) {
    olmoe_match_point *pt = s->pt;
    pt->value = x;
    pt->achieved = k;
    olmoe_policy p;
    if (olmoe_match_policy(s->f, x, s->m, &p) != 0) return -1;
    snprintf(pt->id, sizeof pt->id, "%s", p.id);
    return 0;
}

/* the search interval in u, with the mean k at each end, and the answer
 * once found (u NaN until then) */
typedef struct {
    double a, fa, b, fb;
    double u, fu;
} bracket;

/* an end within the tolerance is the answer; what earlier targets measured
 * narrows the bracket, or is the answer */
static void use_seen(const olmoe_match_family *f, double target, double tol, bracket *br) {
    if (fabs(br->fa - target) <= tol) br->u = br->a, br->fu = br->fa;
    else if (fabs(br->fb - target) <= tol) br->u = br->b, br->fu = br->fb;
    for (int i = 0; isnan(br->u) && i < f->n_seen; i++) {
        double ui = f->seen_u[i], ki = f->seen_k[i];
        if (fabs(ki - target) <= tol) br->u = ui, br->fu = ki;
        else if (ki < target && ui > br->a) br->a = ui, br->fa = ki;
        else if (ki > target && ui < br->b) br->b = ui, br->fb = ki;
    }
    if (isnan(br->u)) return;
    /* the bracket around the answer, for the rounding after */
    for (int i = 0; i < f->n_seen; i++) {
        double ui = f->seen_u[i], ki = f->seen_k[i];
        if (ki < target - tol && ui > br->a && ui < br->u) br->a = ui, br->fa = ki;
        if (ki > target + tol && ui < br->b && ui > br->u) br->b = ui, br->fb = ki;
    }
    if (br->a > br->u) br->a = br->u;
    if (br->b < br->u) br->b = br->u;
}

/* invariant: fa < target - tol < target + tol < fb. Steps alternate
 * between interpolation (the mean is often near linear in u, so this
 * usually lands within a step or two) and halving (which bounds the
 * count at twice bisection's). Leaves u NaN at a plateau. */
static int search(solver *s, double target, double tol, bracket *br) {
    for (int it = 0; isnan(br->u) && it < 200; it++) {
        double a = br->a, b = br->b, c = (a + b) / 2;
        if (it % 2 == 0) {
            double w = (b - a) / 64;
            c = a + (target - br->fa) / (br->fb - br->fa) * (b - a);
            c = c < a + w ? a + w : (c > b - w ? b - w : c);
        }
        if (s->f->knob.per_expert) c = floor(c) > a ? floor(c) : floor(c) + 1;
        if (c <= a || c >= b || value_at(s, c) == value_at(s, a) || value_at(s, c) == value_at(s, b))
            break; /* nothing left between them */
        double fc = eval_u(s, c);
        if (isnan(fc)) return -1;
        if (fabs(fc - target) <= tol) br->u = c, br->fu = fc;
        else if (fc < target) br->a = c, br->fa = fc;
        else br->b = c, br->fb = fc;
    }
    return 0;
}

/* the answer's value with the fewest significant digits still within the
 * tolerance: *x and *fk in, shortened in place */
static int shorten(solver *s, const bracket *br, double target, double tol, double *x, double *fk) {
    const olmoe_match_knob *kn = &s->f->knob;
    if (kn->per_expert) return 0;
    /* a rounded value outside (x_a, x_b) is outside the tolerance, unseen */
    double xa = value_at(s, br->a), xb = value_at(s, br->b);
    double xlo = xa < xb ? xa : xb, xhi = xa < xb ? xb : xa;
    for (int dig = 1; dig <= 6; dig++) {
        double r = round_sig(*x, dig);
        if (r == *x) break;
        if (r < kn->lo || r > kn->hi) continue; /* the range is valid for the parameter */
        if ((br->u != br->a && br->u != br->b) && !(r > xlo && r < xhi)) continue;
        double fr = eval_at(s, r);
        if (isnan(fr)) return -1;
        if (fabs(fr - target) <= tol) {
            *x = r, *fk = fr;
            break;
        }
    }
    return 0;
}

int olmoe_match_solve(const olmoe_match_data *d, olmoe_match_family *f,
                      const olmoe_policy_model *m, double target, double tol,
                      olmoe_match_point *pt) {
    memset(pt, 0, sizeof *pt);
    pt->target = target;
    solver s = {d, f, m, pt, m->n_experts};
    const olmoe_match_knob *kn = &f->knob;
    if (f->seen_on != d) f->seen_on = d, f->n_seen = 0;
    bracket br = {.a = kn->per_expert ? 1 : 0, .b = kn->per_expert ? m->n_experts : 1,
                  .u = NAN, .fu = NAN};
    br.fa = eval_u(&s, br.a), br.fb = eval_u(&s, br.b);
    if (isnan(br.fa) || isnan(br.fb)) return -1;
    char va[40], vb[40];
    fmt(value_at(&s, br.a), va, sizeof va);
    fmt(value_at(&s, br.b), vb, sizeof vb);
    if (target < br.fa - tol) {
        snprintf(pt->note, sizeof pt->note,
                 "cannot go below %.3f experts per token-layer (%s=%s; min_k bounds it)", br.fa,
                 kn->param, va);
        return finish(&s, value_at(&s, br.a), br.fa);
    }
    if (target > br.fb + tol) {
        snprintf(pt->note, sizeof pt->note,
                 "cannot reach it: at most %.3f experts per token-layer (%s=%s; max_k bounds it)",
                 br.fb, kn->param, vb);
        return finish(&s, value_at(&s, br.b), br.fb);
    }
    use_seen(f, target, tol, &br);
    if (search(&s, target, tol, &br) != 0) return -1;
    if (isnan(br.u)) {
        int near_a = target - br.fa <= br.fb - target;
        fmt(value_at(&s, br.a), va, sizeof va);
        fmt(value_at(&s, br.b), vb, sizeof vb);
        snprintf(pt->note, sizeof pt->note,
                 "a plateau: mean k jumps from %.3f (%s=%s) to %.3f (%s=%s), nothing in between",
                 br.fa, kn->param, va, br.fb, kn->param, vb);
        return finish(&s, value_at(&s, near_a ? br.a : br.b), near_a ? br.fa : br.fb);
    }
    pt->reached = 1;
    double x = value_at(&s, br.u), fk = br.fu;
    if (shorten(&s, &br, target, tol, &x, &fk) != 0) return -1;
    return finish(&s, x, fk);
}
