/* main_replay_match.c: olmoe-replay --match-k: every family calibrated to each
 * target mean experts per token-layer, then scored (replay; with --exact
 * also the exact forward pass) next to top-k at the same k.
 *
 * Order: options -> families built and checked -> outputs reserved -> the
 * trace opened (residuals checked when scoring), nulls loaded, a probe of
 * every family bound, /match refused without --force (every error so far
 * comes before any work) -> empirical null if a family needs it -> the
 * calibration logits -> bisection per family and target -> the policies'
 * results refused without --force -> scoring -> table, CSV, HDF5. */
#include "common.h"
#include "main_replay.h"
#include "match.h"
#include "policy.h"
#include "replay.h"
#include "traces.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "usage: olmoe-replay TRACE --match-k K1,K2,... [--model DIR] [--calibrate CALIB] "
    "[--families LIST] [--exact] [options]\n"
    "\n"
    "Matched compute: calibrates each family's continuous parameter (topp p, bh alpha,\n"
    "threshold tau, skip beta, entropy scale, hc beta) by bisection on the calibration\n"
    "trace's captured router logits (default: TRACE itself) until its mean experts per\n"
    "token-layer is each target, then scores every family at every target by replay\n"
    "(with --exact also the exact forward pass) next to top-k at the same k. Without\n"
    "--model only the calibration is done.";


/* "a,b(c=1,d={2,3}),e" -> items split at top-level commas (xstrdup'd) */
static int split_top(const char *s, char **items, int max) {
    int n = 0, depth = 0;
    const char *start = s;
    for (const char *p = s;; p++) {
        if (*p == '(' || *p == '{') depth++;
        if (*p == ')' || *p == '}') depth--;
        if ((*p == ',' && depth == 0) || !*p) {
            const char *a = start, *b = p;
            while (a < b && *a == ' ') a++;
            while (b > a && b[-1] == ' ') b--;
            if (b > a) {
                if (n == max) die_usage("--families: more than %d", max);
                items[n] = xmalloc((size_t)(b - a) + 1);
                memcpy(items[n], a, (size_t)(b - a));
                items[n][b - a] = '\0';
                n++;
            }
            if (!*p) break;
            start = p + 1;
        }
    }
    return n;
}

static int parse_targets(const char *s, double *t, int max) {
    char *items[64];
    int n = split_top(s, items, 64), bad = 0;
    if (n > max) die_usage("--match-k: at most %d targets", max);
    for (int i = 0; i < n; i++) {
        if (olmoe_parse_double(items[i], &t[i]) != 0 || !(t[i] >= 1)) bad = 1;
        for (int j = 0; j < i; j++) bad |= t[j] == t[i];
        if (bad) die_usage("--match-k: '%s' is not a new number >= 1", items[i]);
        free(items[i]);
    }
    if (n == 0) die_usage("--match-k: no targets (e.g. --match-k 1,2,4,8)");
    return n;
}

/* the top-k reference at k, with the options top-k takes (T, norm) */
static void topk_spec(int k, const olmoe_policy_cli *cli, int *used, char *buf, size_t n) {
    size_t at = (size_t)snprintf(buf, n, "topk(k=%d", k);
    if (cli->value[OLMOE_PARAM_T]) {
        at += (size_t)snprintf(buf + at, n - at, ",T=%s", cli->value[OLMOE_PARAM_T]);
        used[OLMOE_PARAM_T] = 1;
    }
    if (cli->value[OLMOE_PARAM_NORM]) {
        at += (size_t)snprintf(buf + at, n - at, ",norm=%s", cli->value[OLMOE_PARAM_NORM]);
        used[OLMOE_PARAM_NORM] = 1;
    }
    snprintf(buf + at, n - at, ")");
}

/* the command line of --match-k */
typedef struct {
    const char *mode, *match_k, *families;
    const char *model_dir, *routing_s, *device, *calib_trace;
    const char *kde_path; /* the policy options' --kde */
    const char *out_path, *csv_path, *json_path;
    long max_tokens, chunk, calib_tokens;
    long match_max_k, threads;
    double tol;
    int exact, force, skip_existing, quiet, calibrate_scored;
} match_opts;

/* --calibrate-scored: a policy's mean k as the scoring run measures it (the
 * replayed stream's router under replay, the exact forward under --exact),
 * so that "matched" means matched in what is scored */
typedef struct {
    olmoe_replay_opts o;
    int evaluations;
} scored_measure;

static double measure_scored(void *ctx, const olmoe_policy *p) {
    scored_measure *sm = ctx;
    olmoe_policy copy = *p, *pp = &copy;
    olmoe_replay_opts o = sm->o;
    o.policies = &pp;
    o.n_policies = 1;
    olmoe_replay_run run;
    memset(&run, 0, sizeof run);
    if (olmoe_replay_run_all(&o, &run) != 0) return NAN;
    const olmoe_replay_result *res =
        olmoe_replay_find(&run, o.do_exact ? OLMOE_KIND_EXACT : OLMOE_KIND_REPLAY, p->id);
    double k = res ? res->all.mean_k : NAN;
    if (!res) olmoe_errorf("%s: the scoring run returned no result", p->id);
    olmoe_replay_run_free(&run);
    sm->evaluations++;
    return k;
}

/* the checks of the command line that need no file; the routing it asks for */
static olmoe_replay_routing check_args(match_opts *o, const olmoe_policy_cli *cli) {
    if (!o->match_k) die_usage("--match-k LIST is required here");
    if (o->mode && strcmp(o->mode, "exact") == 0) o->exact = 1;
    else if (o->mode && strcmp(o->mode, "stats") == 0 && o->model_dir)
        die_usage("--mode stats with --match-k calibrates only: leave out --model");
    else if (o->mode && strcmp(o->mode, "replay") != 0 && strcmp(o->mode, "stats") != 0 &&
             strcmp(o->mode, "match-k") != 0)
        die_usage("--match-k goes with --mode replay, exact or stats, not '%s'", o->mode);
    if (cli->n_policies || cli->sweep)
        die_usage("--policy and --sweep do not go with --match-k (choose families with --families)");
    if (!(o->tol > 0 && o->tol < 1e6)) die_usage("--match-tol must be in (0, 1e6), got %g", o->tol);
    olmoe_replay_routing routing = OLMOE_ROUTING_RECOMPUTE;
    if (strcmp(o->routing_s, "captured") == 0) routing = OLMOE_ROUTING_CAPTURED;
    else if (strcmp(o->routing_s, "recompute") != 0)
        die_usage("--routing: '%s' is neither recompute nor captured", o->routing_s);
    if (o->calibrate_scored && o->calib_trace)
        die_usage("--calibrate-scored measures on TRACE itself: leave out --calibrate");
    return routing;
}

/* the families, their calibrated points and top-k's own mean at each target:
 * what the table is made of */
typedef struct {
    char *fspec[32];
    olmoe_match_family *fam;
    int nf;
    olmoe_match_point *pt;          /* [nf * n_targets], family-major */
    double topk_k[64];              /* top-k's mean k; NaN where the target is not whole */
    const olmoe_policy_cli *cli;
    int used[OLMOE_PARAM_COUNT];    /* the policy options some family (or top-k) takes */
} match_plan;

/* --families with the policy options; every option given must be taken */
static void make_families(match_plan *mp, const char *families, int dmax) {
    mp->nf = split_top(families, mp->fspec, 32);
    if (mp->nf == 0) die_usage("--families: none given");
    mp->fam = xcalloc((size_t)mp->nf, sizeof *mp->fam);
    for (int i = 0; i < mp->nf; i++) {
        if (olmoe_match_family_init(&mp->fam[i], mp->fspec[i], mp->cli->value, mp->used, dmax) != 0)
            die_usage("%s", olmoe_error());
        for (int j = 0; j < i; j++)
            if (!strcmp(mp->fspec[i], mp->fspec[j]))
                die_usage("--families: %s given twice", mp->fspec[i]);
    }
    char tk[96];
    topk_spec(1, mp->cli, mp->used, tk, sizeof tk);
    for (int i = 0; i < OLMOE_PARAM_COUNT; i++)
        if (mp->cli->value[i] && !mp->used[i])
            die_usage("--%s: no family given takes %s", olmoe_param_table[i].option,
                      olmoe_param_table[i].name);
}

static void free_plan(match_plan *mp) {
    for (int i = 0; i < mp->nf; i++) free(mp->fspec[i]);
    free(mp->fam);
    free(mp->pt);
}

/* The nulls the families need (m->null from --kde), and each family bound
 * once at its widest before any work; 1 when one needs the empirical null */
static int bind_families(const match_plan *mp, const match_opts *o, olmoe_trace *t,
                         olmoe_policy_model *m, olmoe_kde_null *null, olmoe_kde_cdf *cdf) {
    const char *trace_path = olmoe_trace_path(t);
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    int need_kde = 0, need_emp = 0;
    olmoe_policy probe;
    for (int i = 0; i < mp->nf; i++) {
        char text[600];
        const olmoe_match_family *f = &mp->fam[i];
        olmoe_match_spec(f, f->knob.per_expert ? 1.0 : f->knob.hi, text, sizeof text);
        if (olmoe_policy_parse(text, &probe) != 0) die_usage("%s", olmoe_error());
        need_kde |= olmoe_policy_needs(&probe, OLMOE_PVALUE_KDE);
        need_emp |= olmoe_policy_needs(&probe, OLMOE_PVALUE_EMPIRICAL);
    }
    if (o->kde_path) {
        if (olmoe_cmd_load_null(o->kde_path, trace_path, &in->meta, null, cdf) != 0)
            die("%s", olmoe_error());
        m->null = cdf;
    } else if (need_kde) {
        die_usage("pvalue=kde needs --kde NULL.h5 (make one with olmoe-kde fit %s --out null.h5), "
                  "or use --pvalue pseudo|empirical", trace_path);
    }
    float one = 0;
    olmoe_policy_empirical fake;
    olmoe_policy_model m0 = *m;
    if (need_emp) { /* the right shape for the checks; the real table follows */
        fake = (olmoe_policy_empirical){m->n_layers, m->n_experts, 1, 1, 1, 1, &one};
        m0.emp = &fake;
    }
    for (int i = 0; i < mp->nf; i++) {
        const olmoe_match_family *f = &mp->fam[i];
        if (olmoe_match_policy(f, f->knob.per_expert ? 1.0 : f->knob.hi, &m0, &probe) != 0)
            die("%s", olmoe_error());
    }
    return need_emp;
}

/* the model: --model, else the one the trace records when it can be
 * replayed (residuals) and is there; without one, calibration only. Into
 * o->model_dir (the caller frees what is returned). */
static char *find_model(match_opts *o, const olmoe_trace_info *in, const char *trace_path) {
    int calib_only = o->mode && strcmp(o->mode, "stats") == 0;
    char *dir = NULL;
    if (o->model_dir ||
        (!calib_only && in->has_residuals && in->meta.model_dir && in->meta.model_dir[0])) {
        dir = olmoe_model_for_trace(o->model_dir, in->meta.model_dir, trace_path);
        if (!dir && o->model_dir) die("%s", olmoe_error());
        if (!dir && (o->exact || o->calibrate_scored)) die_usage("%s", olmoe_error());
        if (dir && !o->model_dir) notef("--model: %s (recorded in %s)", dir, trace_path);
        o->model_dir = dir;
    }
    if (o->exact && !o->model_dir) die_usage("--exact needs --model DIR");
    if (o->calibrate_scored && !o->model_dir)
        die_usage("--calibrate-scored needs --model DIR (it scores)");
    return dir;
}

/* each family solved at each target on d, and top-k's own mean there */
static void calibrate(match_plan *mp, const olmoe_match_data *d, const olmoe_match_table *tab,
                      const olmoe_policy_model *m, double tol) {
    mp->pt = xcalloc((size_t)mp->nf * (size_t)tab->n_targets, sizeof *mp->pt);
    double t0 = olmoe_now();
    for (int i = 0; i < mp->nf; i++)
        for (int j = 0; j < tab->n_targets; j++) {
            olmoe_match_point *p = &mp->pt[i * tab->n_targets + j];
            const olmoe_match_family *f = &mp->fam[i];
            if (olmoe_match_solve(d, &mp->fam[i], m, tab->targets[j], tol, p) != 0)
                die("%s", olmoe_error());
            notef("%s at %g: %s=%.6g, mean k %.4f%s%s (%d evaluations)", f->name, tab->targets[j],
                  f->knob.param, p->value, p->achieved, p->reached ? "" : ": not reached: ", p->note,
                  p->evaluations);
        }
    for (int j = 0; j < tab->n_targets; j++) {
        mp->topk_k[j] = NAN;
        double K = tab->targets[j];
        if (K != floor(K)) continue;
        char tk[96];
        olmoe_policy probe;
        topk_spec((int)K, mp->cli, mp->used, tk, sizeof tk);
        if (olmoe_policy_parse(tk, &probe) != 0 || olmoe_policy_bind(&probe, m) != 0)
            die("%s", olmoe_error());
        mp->topk_k[j] = olmoe_match_mean_k(d, &probe);
    }
    notef("calibration: %.1f s", olmoe_now() - t0);
}

/* the calibration data of --calibrate (or the trace's first N tokens), into
 * tab's provenance; with --calibrate-scored, measured by scoring runs (sm) */
static void load_calibration(olmoe_match_data *d, olmoe_match_table *tab, const match_opts *o,
                             const char *calib_path, const char *trace_path, int64_t N, int L,
                             int E, int nf, scored_measure *sm) {
    int same = strcmp(calib_path, trace_path) == 0;
    if (olmoe_match_data_load(d, calib_path, same ? N : 0, o->calib_tokens) != 0)
        die("%s", olmoe_error());
    if (d->n_layers != L || d->n_experts != E)
        die("%s: %d layers x %d experts, %s has %d x %d", calib_path, d->n_layers, d->n_experts,
            trace_path, L, E);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    d->n_threads = o->threads ? (int)o->threads : (ncpu > 0 ? (int)(ncpu < 64 ? ncpu : 64) : 1);
    tab->calibrated_on = "logits";
    if (o->calibrate_scored) {
        d->measure = measure_scored, d->measure_ctx = sm;
        tab->calibrated_on = o->exact ? "exact" : "replay";
        notef("--calibrate-scored: every step of the search is a %s run over %s",
              tab->calibrated_on, trace_path);
    }
    notef("calibrating %d famil%s x %d targets on %s (%lld tokens%s)", nf, nf == 1 ? "y" : "ies",
          tab->n_targets, calib_path, (long long)d->n_rows, d->stride > 1 ? ", subsampled" : "");
    tab->trace = trace_path;
    tab->calibration = calib_path;
    tab->calib_rows = d->n_rows;
    tab->calib_trace_tokens = d->n_trace;
    tab->calib_stride = d->stride;
    memcpy(tab->calib_checksum, d->checksum, sizeof tab->calib_checksum);
}

/* the policies to score: top-k at each whole target, then every point */
static void make_policy_set(olmoe_policy_set *set, match_plan *mp, const olmoe_match_table *tab,
                            const olmoe_policy_model *m) {
    char tk[96];
    for (int j = 0; j < tab->n_targets; j++) {
        if (isnan(mp->topk_k[j])) continue;
        topk_spec((int)tab->targets[j], mp->cli, mp->used, tk, sizeof tk);
        if (olmoe_policy_set_add_spec(set, tk, NULL) != 0) die("%s", olmoe_error());
    }
    for (int i = 0; i < mp->nf * tab->n_targets; i++) {
        char text[600];
        olmoe_match_spec(&mp->fam[i / tab->n_targets], mp->pt[i].value, text, sizeof text);
        if (olmoe_policy_set_add_spec(set, text, NULL) != 0) die("%s", olmoe_error());
    }
    if (olmoe_policy_set_bind(set, m) != 0) die("%s", olmoe_error());
}

/* every policy of the set scored by replay (and exact) on the trace */
static void score(const match_opts *o, const char *trace_path, const olmoe_results *res,
                  olmoe_policy_set *set, olmoe_replay_routing routing,
                  const olmoe_policy_model *m, olmoe_model *model, olmoe_replay_run *run) {
    olmoe_policy **pols = xmalloc(xmul((size_t)set->n, sizeof *pols));
    for (int i = 0; i < set->n; i++) pols[i] = &set->items[i];
    if (!o->out_path && !o->force) {
        const char *which = NULL;
        int c = olmoe_replay_h5_conflict(res->f, pols, set->n, 1, o->exact, 0, &which);
        if (c < 0) die("%s: %s", res->final, olmoe_error());
        if (c > 0 && !o->skip_existing)
            die("%s: /%s already exists (--force recomputes it)", res->final, which);
    }
    olmoe_replay_opts ropt = {.trace_path = trace_path, .model = model, .policies = pols,
                              .n_policies = set->n, .do_replay = 1, .do_exact = o->exact,
                              .routing = routing, .device = o->device, .max_tokens = o->max_tokens,
                              .chunk_tokens = o->chunk, .self_check = 1, .bind_model = m,
                              .progress = !o->quiet};
    notef("scoring %d policies: replay%s on %s", set->n, o->exact ? " and exact" : "", o->device);
    if (olmoe_replay_run_all(&ropt, run) != 0) die("%s", olmoe_error());
    notef("%.2f s wall, %.2f s reading the trace (%.2f s of it waited for)", run->total_seconds,
          run->read_seconds, run->read_wait_seconds);
    free(pols);
}

/* row i of target j (i = -1: top-k), and its scores when run is not NULL */
static void fill_row(olmoe_match_row *r, match_plan *mp, const olmoe_match_table *tab, int i,
                     int j) {
    r->target_k = tab->targets[j];
    if (i < 0) {
        char tk[96];
        olmoe_policy probe;
        topk_spec((int)tab->targets[j], mp->cli, mp->used, tk, sizeof tk);
        if (olmoe_policy_parse(tk, &probe) != 0) die("%s", olmoe_error());
        snprintf(r->family, sizeof r->family, "topk");
        snprintf(r->param_name, sizeof r->param_name, "k");
        r->param_value = tab->targets[j];
        snprintf(r->policy, sizeof r->policy, "%s", probe.id);
        r->achieved_k = mp->topk_k[j];
        r->reached = 1;
    } else {
        const olmoe_match_point *p = &mp->pt[i * tab->n_targets + j];
        snprintf(r->family, sizeof r->family, "%s", mp->fam[i].name);
        snprintf(r->param_name, sizeof r->param_name, "%s", mp->fam[i].knob.param);
        r->param_value = p->value;
        snprintf(r->policy, sizeof r->policy, "%s", p->id);
        r->achieved_k = p->achieved;
        r->reached = p->reached;
        snprintf(r->note, sizeof r->note, "%s", p->note);
    }
}

/* the table: per kind, per target, top-k then the families (run NULL:
 * calibration only) */
static void fill_table(olmoe_match_table *tab, match_plan *mp, const olmoe_replay_run *run,
                       int exact) {
    const char *kinds[2] = {run ? "replay" : "calibration", "exact"};
    for (int kk = 0; kk < (exact ? 2 : 1); kk++) {
        olmoe_replay_kind rk = kk ? OLMOE_KIND_EXACT : OLMOE_KIND_REPLAY;
        for (int j = 0; j < tab->n_targets; j++) {
            double ref_ppl = NAN;
            for (int i = -1; i < mp->nf; i++) {
                if (i < 0 && isnan(mp->topk_k[j])) continue;
                olmoe_match_row *r = olmoe_match_add_row(tab);
                r->kind = kinds[kk];
                fill_row(r, mp, tab, i, j);
                if (!run) continue;
                const olmoe_replay_result *res = olmoe_replay_find(run, rk, r->policy);
                if (!res) die("internal: no %s result for %s", kinds[kk], r->policy);
                r->perplexity = res->all.perplexity;
                r->accuracy = res->all.accuracy;
                r->scored_k = res->all.mean_k;
                if (i < 0) ref_ppl = r->perplexity;
                if (r->reached && !isnan(ref_ppl)) {
                    r->delta_vs_topk = r->perplexity - ref_ppl;
                    r->rel_vs_topk = r->perplexity / ref_ppl - 1;
                }
            }
        }
    }
}

/* the table on stdout, --csv, --json, and /match (with the run's results when
 * scored) in --out or the results file beside the trace; outputs committed */
static void write_outputs(const olmoe_match_table *tab, const olmoe_replay_run *run,
                          const match_opts *o, const char *trace_path, const char *command,
                          const olmoe_hash *tid, olmoe_results *res, cmd_replay_outputs *outs) {
    olmoe_cmd_output *rc = &outs->csv, *rjs = &outs->json, *ro = &outs->out;
    if (!outs->stdout_taken) olmoe_match_print(tab, stdout);
    if (rc->used && olmoe_match_write_csv(tab, rc->out.tmp) != 0) die("%s", olmoe_error());
    if (rjs->used && olmoe_match_write_json(tab, rjs->out.tmp) != 0) die("%s", olmoe_error());
    hid_t f = ro->used ? olmoe_h5_create(ro->out.tmp) : res->f;
    if (f < 0) die("%s", olmoe_error());
    const olmoe_input inputs[] = {{"trace", trace_path, tid->hex},
                                  {"model", o->model_dir ? o->model_dir : "", ""},
                                  {"kde", o->kde_path ? o->kde_path : "", o->kde_path ? NULL : ""}};
    if (olmoe_results_provenance(f, inputs, 3) != 0 ||
        (ro->used && olmoe_h5_set_attr_str(f, ".", "trace_checksum", tid->hex) != 0))
        die("%s: %s", ro->used ? o->out_path : res->final, olmoe_error());
    if (ro->used && olmoe_replay_results_attrs(f, trace_path, o->model_dir, command) != 0)
        die("%s: %s", o->out_path, olmoe_error());
    if ((run && olmoe_replay_write_h5(run, NULL, f, o->force || o->skip_existing) != 0) ||
        olmoe_match_write_h5(tab, f, o->force) != 0)
        die("%s: %s", ro->used ? o->out_path : res->final, olmoe_error());
    if (ro->used && olmoe_results_mark_last(f) != 0) die("%s: %s", o->out_path, olmoe_error());
    if (ro->used ? olmoe_h5_close(f) != 0 : olmoe_results_commit(res) != 0)
        die("%s", olmoe_error());
    cmd_replay_commit(outs);
    if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");
}

/* the mode's own options, into opts (room for the policy options after them) */
enum { OWN_OPTS = 24 };
static void option_table(match_opts *o, olmoe_opt *opts) {
    const olmoe_opt own[OWN_OPTS] = {
        OPT_STRING("mode", &o->mode, "MODE", "match-k; with --match-k: replay (default), exact (= --exact) or stats (calibrate only)"),
        OPT_STRING("match-k", &o->match_k, "LIST", "target mean experts per token-layer, e.g. 1,2,4,8"),
        OPT_STRING("families", &o->families, "LIST",
                   "families to calibrate, specs without their knob (default "
                   "topp,bh,threshold,skip,entropy,hc)"),
        OPT_DOUBLE("match-tol", &o->tol, "X", "how close the mean must come (default 0.01)"),
        OPT_LONG_RANGE("match-max-k", &o->match_max_k, "N",
                       "max_k of families whose spec has none (default 2 x the trace's top_k, at "
                       "most E)", 1, OLMOE_POLICY_MAX_E),
        OPT_LONG_RANGE("calib-tokens", &o->calib_tokens, "N",
                       "calibrate on at most N tokens, spread evenly (default 262144; 0 = all)",
                       0, 1L << 40),
        OPT_LONG_RANGE("threads", &o->threads, "N", "threads for calibration (default: every CPU)",
                       1, 64),
        OPT_STRING("model", &o->model_dir, "DIR", "the checkpoint, to score (default: the trace's; none: calibrate only)"),
        OPT_STRING("calibrate", &o->calib_trace, "CALIB",
                   "the trace whose logits the knobs are calibrated on (default: TRACE)"),
        OPT_FLAG("exact", &o->exact, "score with the exact forward pass too"),
        OPT_STRING("routing", &o->routing_s, "HOW", "replay: recompute (default) or captured"),
        OPT_STRING("device", &o->device, "DEV", "auto (default: cuda when built with it and a GPU is there), cpu, cuda[:N]"),
        OPT_STRING("out", &o->out_path, "FILE", "results in a new HDF5 file instead of TRACE.results.h5"),
        OPT_STRING("csv", &o->csv_path, "FILE", "write the table as CSV (-: stdout, no table)"),
        OPT_STRING("json", &o->json_path, "FILE", "write the table as JSON (-: stdout, no table)"),
        OPT_FLAG("calibrate-scored", &o->calibrate_scored,
                 "calibrate on the mean k the scoring run measures (replay, or exact with --exact)"),
        OPT_LONG_RANGE("max-tokens", &o->max_tokens, "N",
                       "only the windows within the first N tokens (scoring and calibration on "
                       "the trace itself)", 1, 1L << 62),
        OPT_LONG_RANGE("chunk", &o->chunk, "N", "tokens per chunk of whole windows (default 4096)", 1,
                       1L << 24),
        OPT_FLAG("force", &o->force, "overwrite existing outputs and results"),
        OPT_FLAG("skip-existing", &o->skip_existing,
                 "nothing to do when /match is stored; else its scoring replaces stored results"),
        OPT_FLAG("quiet", &o->quiet, "no notes or progress on stderr"),
        OPT_END};
    memcpy(opts, own, sizeof own);
}

/* the trace fits the targets (and has residuals to replay when scoring);
 * returns the max_k of families whose spec has none */
static int check_trace(const match_opts *o, const olmoe_trace_info *in,
                       const olmoe_match_table *tab, const char *trace_path) {
    const int E = in->meta.n_experts;
    if (o->model_dir && !in->has_residuals)
        die("%s: no attention residuals to replay (capture with --save-residuals)", trace_path);
    for (int j = 0; j < tab->n_targets; j++)
        if (tab->targets[j] > E) die_usage("--match-k: %g is more than the %d experts", tab->targets[j], E);
    int dmax = (int)o->match_max_k;
    if (!dmax) dmax = 2 * in->meta.top_k < E ? 2 * in->meta.top_k : E;
    return dmax;
}

/* /match already stored (without --out and --force): refused, or with
 * --skip-existing nothing to do (1) */
static int match_stored(const match_opts *o, const olmoe_results *res) {
    if (o->out_path || o->force || olmoe_h5_exists(res->f, "match") != 1) return 0;
    if (!o->skip_existing)
        die("%s: /match already exists (--force recomputes it, --skip-existing leaves it)",
            res->final);
    notef("skipped (stored): /match");
    return 1;
}

/* the calibration (on --calibrate's logits, or scored runs), each point
 * scored when there is a model, the table filled and written */
static void calibrate_and_score(match_opts *o, match_plan *mp, olmoe_match_table *tab,
                                olmoe_policy_model *m, olmoe_replay_routing routing,
                                const char *trace_path, int64_t N, const olmoe_hash *tid,
                                olmoe_results *res, cmd_replay_outputs *outs) {
    const char *calib_path = o->calib_trace ? o->calib_trace : trace_path;
    olmoe_match_data d;
    olmoe_model model;
    if (o->model_dir && olmoe_model_open(o->model_dir, &model) != 0) die("%s", olmoe_error());
    scored_measure sm = {.o = {.trace_path = trace_path, .model = &model, .do_replay = !o->exact,
                               .do_exact = o->exact, .routing = routing, .device = o->device,
                               .max_tokens = o->max_tokens, .chunk_tokens = o->chunk,
                               .bind_model = m}};
    load_calibration(&d, tab, o, calib_path, trace_path, N, m->n_layers, m->n_experts, mp->nf, &sm);
    calibrate(mp, &d, tab, m, o->tol);
    olmoe_policy_set set = {0};
    make_policy_set(&set, mp, tab, m);
    olmoe_replay_run run = {0};
    if (o->model_dir) score(o, trace_path, res, &set, routing, m, &model, &run);
    fill_table(tab, mp, o->model_dir ? &run : NULL, o->exact);
    write_outputs(tab, o->model_dir ? &run : NULL, o, trace_path, tab->command, tid, res, outs);
    if (o->model_dir) {
        olmoe_replay_run_free(&run);
        olmoe_model_close(&model);
    }
    olmoe_policy_set_free(&set);
    olmoe_match_data_free(&d);
}

int cmd_replay_match(int argc, char **argv) {
    match_opts o = {.families = "topp,bh,threshold,skip,entropy,hc", .routing_s = "recompute",
                    .device = "auto", .chunk = 4096,
                    .calib_tokens = 262144, .tol = 0.01};
    olmoe_policy_cli cli = {0};
    olmoe_opt opts[OWN_OPTS + OLMOE_POLICY_CLI_NOPTS + 1];
    option_table(&o, opts);
    char *command;
    cmd_replay_parse(argc, argv, opts, &cli, usage, &o.quiet,
                     "which trace? (olmoe-replay TRACE --match-k 1,2,4,8 ...)", &command);
    o.device = olmoe_device_resolve(o.device);
    cmd_replay_check_device(o.device);
    o.kde_path = cli.kde;
    olmoe_replay_routing routing = check_args(&o, &cli);
    olmoe_match_table tab;
    memset(&tab, 0, sizeof tab);
    tab.n_targets = parse_targets(o.match_k, tab.targets, 64);
    const char *trace_path = argv[0];
    cmd_replay_outputs outs;
    cmd_replay_reserve(&outs, o.json_path, o.csv_path, o.out_path, o.force);

    int64_t N;
    olmoe_trace *t = cmd_replay_open_trace(trace_path, o.max_tokens, &N);
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    char *model_dir = find_model(&o, in, trace_path);
    int dmax = check_trace(&o, in, &tab, trace_path);
    match_plan mp = {.cli = &cli};
    make_families(&mp, o.families, dmax);
    cmd_replay_inputs pin = {.m = {in->meta.n_layers, in->meta.n_experts, in->meta.norm_topk_prob,
                                   NULL, NULL, NULL, 0}};
    int need_emp = bind_families(&mp, &o, t, &pin.m, &pin.null, &pin.cdf);
    /* without --out: the results file beside the trace, locked from now on */
    olmoe_results res;
    olmoe_hash tid;
    cmd_replay_results_begin(t, !o.out_path, &res, &tid);
    if (match_stored(&o, &res)) {
        cmd_replay_nothing_to_do(&res, t, &outs);
    } else {
        if (need_emp) {
            if (olmoe_cmd_empirical_cli(&cli, t, N, &pin.emp) != 0) die("%s", olmoe_error());
            pin.m.emp = &pin.emp;
        }
        olmoe_trace_close(t);
        tab.tol = o.tol;
        tab.default_max_k = dmax;
        tab.command = command;
        calibrate_and_score(&o, &mp, &tab, &pin.m, routing, trace_path, N, &tid, &res, &outs);
    }
    olmoe_match_table_free(&tab);
    cmd_replay_inputs_free(&pin);
    free_plan(&mp);
    free(model_dir);
    free(command);
    return 0;
}
