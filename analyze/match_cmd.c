/* match_cmd.c: olmoe-replay --match-k: every family calibrated to each
 * target mean experts per token-layer, then scored (replay; with --exact
 * also the exact forward pass) next to top-k at the same k.
 *
 * Order: options -> families built and checked -> outputs reserved -> the
 * trace opened (residuals checked when scoring), nulls loaded, a probe of
 * every family bound, /match refused without --force (every error so far
 * comes before any work) -> empirical null if a family needs it -> the
 * calibration logits -> bisection per family and target -> the policies'
 * results refused without --force -> scoring -> table, CSV, HDF5. */
#include "cmd_inputs.h"
#include "common.h"
#include "match.h"
#include "opt.h"
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

static const char *mode, *match_k, *families = "topp,bh,threshold,skip,entropy,hc";
static const char *model_dir, *routing_s = "recompute", *device = "auto", *calib_trace;
static const char *out_path, *csv_path, *json_path;
static long max_tokens = 0, chunk = 4096, calib_tokens = 262144;
static long match_max_k = 0, threads = 0;
static double tol = 0.01;
static int exact, force, quiet, calibrate_scored;

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

int olmoe_match_main(int argc, char **argv) {
    static olmoe_policy_cli cli;
    enum { OWN = 24 };
    olmoe_opt opts[OWN + OLMOE_POLICY_CLI_NOPTS + 1] = {
        OPT_STRING("mode", &mode, "MODE", "match-k; with --match-k: replay (default), exact (= --exact) or stats (calibrate only)"),
        OPT_STRING("match-k", &match_k, "LIST", "target mean experts per token-layer, e.g. 1,2,4,8"),
        OPT_STRING("families", &families, "LIST",
                   "families to calibrate, specs without their knob (default "
                   "topp,bh,threshold,skip,entropy,hc)"),
        OPT_DOUBLE("match-tol", &tol, "X", "how close the mean must come (default 0.01)"),
        OPT_LONG_RANGE("match-max-k", &match_max_k, "N",
                       "max_k of families whose spec has none (default 2 x the trace's top_k, at "
                       "most E)", 1, OLMOE_POLICY_MAX_E),
        OPT_LONG_RANGE("calib-tokens", &calib_tokens, "N",
                       "calibrate on at most N tokens, spread evenly (default 262144; 0 = all)",
                       0, 1L << 40),
        OPT_LONG_RANGE("threads", &threads, "N", "threads for calibration (default: every CPU)",
                       1, 64),
        OPT_STRING("model", &model_dir, "DIR", "the checkpoint, to score (default: the trace's; none: calibrate only)"),
        OPT_STRING("calibrate", &calib_trace, "CALIB",
                   "the trace whose logits the knobs are calibrated on (default: TRACE)"),
        OPT_FLAG("exact", &exact, "score with the exact forward pass too"),
        OPT_STRING("routing", &routing_s, "HOW", "replay: recompute (default) or captured"),
        OPT_STRING("device", &device, "DEV", "auto (default: cuda when built with it and a GPU is there), cpu or cuda"),
        OPT_STRING("out", &out_path, "FILE", "results in a new HDF5 file instead of TRACE.results.h5"),
        OPT_STRING("csv", &csv_path, "FILE", "write the table as CSV"),
        OPT_STRING("json", &json_path, "FILE", "write the table as JSON"),
        OPT_FLAG("calibrate-scored", &calibrate_scored,
                 "calibrate on the mean k the scoring run measures (replay, or exact with --exact)"),
        OPT_LONG_RANGE("max-tokens", &max_tokens, "N",
                       "only the windows within the first N tokens (scoring and calibration on "
                       "the trace itself)", 1, 1L << 62),
        OPT_LONG_RANGE("chunk", &chunk, "N", "tokens per chunk of whole windows (default 4096)", 1,
                       1L << 24),
        OPT_FLAG("force", &force, "overwrite existing outputs and results"),
        OPT_FLAG("quiet", &quiet, "no notes or progress"),
        OPT_END};
    int own = 0;
    while (opts[own].name) own++;
    own += olmoe_policy_cli_options(&cli, opts + own, OLMOE_POLICY_CLI_SWEEP);
    opts[own] = (olmoe_opt)OPT_END;

    char *command = olmoe_join_argv(argc, argv);
    int npos = olmoe_opt_parse(argc, argv, opts, usage);
    olmoe_quiet = quiet;
    device = olmoe_device_resolve(device);
    if (npos != 1) die_usage(npos ? "one trace, please" : "which trace? (olmoe-replay TRACE --match-k 1,2,4,8 ...)");
    if (!match_k) die_usage("--match-k LIST is required here");
    if (mode && strcmp(mode, "exact") == 0) exact = 1;
    else if (mode && strcmp(mode, "stats") == 0 && model_dir)
        die_usage("--mode stats with --match-k calibrates only: leave out --model");
    else if (mode && strcmp(mode, "replay") != 0 && strcmp(mode, "stats") != 0 &&
             strcmp(mode, "match-k") != 0)
        die_usage("--match-k goes with --mode replay, exact or stats, not '%s'", mode);
    if (cli.n_policies || cli.sweep)
        die_usage("--policy and --sweep do not go with --match-k (choose families with --families)");
    if (!(tol > 0 && tol < 1e6)) die_usage("--match-tol must be > 0");
    olmoe_replay_routing routing;
    if (strcmp(routing_s, "recompute") == 0) routing = OLMOE_ROUTING_RECOMPUTE;
    else if (strcmp(routing_s, "captured") == 0) routing = OLMOE_ROUTING_CAPTURED;
    else die_usage("--routing: '%s' is neither recompute nor captured", routing_s);
    if (calibrate_scored && calib_trace)
        die_usage("--calibrate-scored measures on TRACE itself: leave out --calibrate");
    olmoe_match_table tab;
    memset(&tab, 0, sizeof tab);
    tab.n_targets = parse_targets(match_k, tab.targets, 64);
    const char *trace_path = argv[0];
    const char *calib_path = calib_trace ? calib_trace : trace_path;

    olmoe_cmd_output rc, ro;
    olmoe_cmd_output rjs;
    olmoe_cmd_reserve(&rc, csv_path, force);
    olmoe_cmd_reserve(&rjs, json_path, force);
    olmoe_cmd_reserve(&ro, out_path, force);

    olmoe_trace *t = olmoe_trace_open(trace_path);
    if (!t) die("%s", olmoe_error());
    const olmoe_trace_info *in = olmoe_trace_info_of(t);
    const int L = in->meta.n_layers, E = in->meta.n_experts;
    if (!in->complete) warnf("%s: the trace is incomplete (its capture did not finish)", trace_path);
    /* the model: --model, else the one the trace records when it can be
     * replayed (residuals) and is there; without one, calibration only */
    int calib_only = mode && strcmp(mode, "stats") == 0;
    if (model_dir || (!calib_only && in->has_residuals && in->meta.model_dir && in->meta.model_dir[0])) {
        char *dir = olmoe_model_for_trace(model_dir, in->meta.model_dir, trace_path);
        if (!dir && model_dir) die("%s", olmoe_error());
        if (!dir && (exact || calibrate_scored)) die_usage("%s", olmoe_error());
        if (dir && !model_dir) notef("--model: %s (recorded in %s)", dir, trace_path);
        model_dir = dir;
    }
    if (exact && !model_dir) die_usage("--exact needs --model DIR");
    if (calibrate_scored && !model_dir) die_usage("--calibrate-scored needs --model DIR (it scores)");
    if (model_dir && !in->has_residuals)
        die("%s: no attention residuals to replay (capture with --save-residuals)", trace_path);
    for (int j = 0; j < tab.n_targets; j++)
        if (tab.targets[j] > E) die_usage("--match-k: %g is more than the %d experts", tab.targets[j], E);
    int64_t N = in->n_tokens;
    if (max_tokens > 0 && max_tokens < N) N = max_tokens;
    int dmax = (int)match_max_k;
    if (!dmax) dmax = 2 * in->meta.top_k < E ? 2 * in->meta.top_k : E;

    /* families, with the policy options */
    char *fspec[32];
    int nf = split_top(families, fspec, 32), used[OLMOE_PARAM_COUNT] = {0};
    if (nf == 0) die_usage("--families: none given");
    olmoe_match_family *fam = xcalloc((size_t)nf, sizeof *fam);
    for (int i = 0; i < nf; i++) {
        if (olmoe_match_family_init(&fam[i], fspec[i], cli.value, used, dmax) != 0)
            die_usage("%s", olmoe_error());
        for (int j = 0; j < i; j++)
            if (!strcmp(fspec[i], fspec[j])) die_usage("--families: %s given twice", fspec[i]);
    }
    char tk[96];
    topk_spec(1, &cli, used, tk, sizeof tk);
    for (int i = 0; i < OLMOE_PARAM_COUNT; i++)
        if (cli.value[i] && !used[i])
            die_usage("--%s: no family given takes %s", olmoe_param_table[i].option,
                      olmoe_param_table[i].name);

    /* nulls, and a probe of each family bound before any work */
    olmoe_kde_null null;
    olmoe_kde_cdf cdf;
    memset(&null, 0, sizeof null);
    memset(&cdf, 0, sizeof cdf);
    olmoe_policy_model m = {L, E, in->meta.norm_topk_prob, NULL, NULL, NULL, 0};
    int need_kde = 0, need_emp = 0;
    olmoe_policy probe;
    for (int i = 0; i < nf; i++) {
        char text[600];
        olmoe_match_spec(&fam[i], fam[i].knob.per_expert ? 1.0 : fam[i].knob.hi, text, sizeof text);
        if (olmoe_policy_parse(text, &probe) != 0) die_usage("%s", olmoe_error());
        need_kde |= olmoe_policy_needs(&probe, OLMOE_PVALUE_KDE);
        need_emp |= olmoe_policy_needs(&probe, OLMOE_PVALUE_EMPIRICAL);
    }
    if (cli.kde) {
        olmoe_cmd_load_null(cli.kde, trace_path, &in->meta, &null, &cdf);
        m.null = &cdf;
    } else if (need_kde) {
        die_usage("pvalue=kde needs --kde NULL.h5 (make one with olmoe-kde fit %s --out null.h5), "
                  "or use --pvalue pseudo|empirical", trace_path);
    }
    static float one = 0;
    static olmoe_policy_empirical fake;
    olmoe_policy_model m0 = m;
    if (need_emp) {
        fake = (olmoe_policy_empirical){L, E, 1, 1, 1, 1, &one};
        m0.emp = &fake;
    }
    for (int i = 0; i < nf; i++)
        if (olmoe_match_policy(&fam[i], fam[i].knob.per_expert ? 1.0 : fam[i].knob.hi, &m0,
                               &probe) != 0)
            die("%s", olmoe_error());
    /* without --out: the results file beside the trace, locked from now on */
    olmoe_results res = {.f = H5I_INVALID_HID};
    olmoe_hash tid;
    if (olmoe_trace_identity(olmoe_trace_hid(t), &tid) != 0) die("%s: %s", trace_path, olmoe_error());
    if (!out_path && olmoe_results_begin(&res, trace_path, olmoe_trace_hid(t)) != 0)
        die("%s", olmoe_error());
    if (!out_path && !force && olmoe_h5_exists(res.f, "match") == 1)
        die("%s: /match already exists (--force replaces it)", res.final);
    olmoe_policy_empirical emp;
    memset(&emp, 0, sizeof emp);
    if (need_emp) {
        olmoe_cmd_empirical_cli(&cli, t, N, &emp);
        m.emp = &emp;
    }
    olmoe_trace_close(t);

    /* calibration */
    olmoe_match_data d;
    int same = strcmp(calib_path, trace_path) == 0;
    if (olmoe_match_data_load(&d, calib_path, same ? N : 0, calib_tokens) != 0)
        die("%s", olmoe_error());
    if (d.n_layers != L || d.n_experts != E)
        die("%s: %d layers x %d experts, %s has %d x %d", calib_path, d.n_layers, d.n_experts,
            trace_path, L, E);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    d.n_threads = threads ? (int)threads : (ncpu > 0 ? (int)(ncpu < 64 ? ncpu : 64) : 1);
    olmoe_model model;
    int scored = model_dir != NULL;
    if (scored && olmoe_model_open(model_dir, &model) != 0) die("%s", olmoe_error());
    scored_measure sm = {.o = {.trace_path = trace_path, .model = &model, .do_replay = !exact,
                               .do_exact = exact, .routing = routing, .device = device,
                               .max_tokens = max_tokens, .chunk_tokens = chunk,
                               .bind_model = &m}};
    tab.calibrated_on = "logits";
    if (calibrate_scored) {
        d.measure = measure_scored, d.measure_ctx = &sm;
        tab.calibrated_on = exact ? "exact" : "replay";
        notef("--calibrate-scored: every step of the search is a %s run over %s",
              tab.calibrated_on, trace_path);
    }
    notef("calibrating %d famil%s x %d targets on %s (%lld tokens%s)", nf, nf == 1 ? "y" : "ies",
          tab.n_targets, calib_path, (long long)d.n_rows, d.stride > 1 ? ", subsampled" : "");
    tab.trace = trace_path;
    tab.calibration = calib_path;
    tab.calib_rows = d.n_rows;
    tab.calib_trace_tokens = d.n_trace;
    tab.calib_stride = d.stride;
    memcpy(tab.calib_checksum, d.checksum, sizeof tab.calib_checksum);
    tab.tol = tol;
    tab.default_max_k = dmax;
    tab.command = command;
    int npts = nf * tab.n_targets;
    olmoe_match_point *pt = xcalloc((size_t)npts, sizeof *pt);
    double t0 = olmoe_now();
    for (int i = 0; i < nf; i++)
        for (int j = 0; j < tab.n_targets; j++) {
            olmoe_match_point *p = &pt[i * tab.n_targets + j];
            if (olmoe_match_solve(&d, &fam[i], &m, tab.targets[j], tol, p) != 0)
                die("%s", olmoe_error());
            notef("%s at %g: %s=%.6g, mean k %.4f%s%s (%d evaluations)", fam[i].name,
                  tab.targets[j], fam[i].knob.param, p->value, p->achieved,
                  p->reached ? "" : ": not reached: ", p->note, p->evaluations);
        }
    /* top-k's own mean on the calibration data, for the table */
    double topk_k[64];
    for (int j = 0; j < tab.n_targets; j++) {
        topk_k[j] = NAN;
        double K = tab.targets[j];
        if (K != floor(K)) continue;
        topk_spec((int)K, &cli, used, tk, sizeof tk);
        if (olmoe_policy_parse(tk, &probe) != 0 || olmoe_policy_bind(&probe, &m) != 0)
            die("%s", olmoe_error());
        topk_k[j] = olmoe_match_mean_k(&d, &probe);
    }
    notef("calibration: %.1f s", olmoe_now() - t0);

    /* the policies to score: top-k at each whole target, then every point */
    olmoe_policy_set set = {0};
    for (int j = 0; j < tab.n_targets; j++) {
        if (isnan(topk_k[j])) continue;
        topk_spec((int)tab.targets[j], &cli, used, tk, sizeof tk);
        if (olmoe_policy_set_add_spec(&set, tk, NULL) != 0) die("%s", olmoe_error());
    }
    for (int i = 0; i < npts; i++) {
        char text[600];
        olmoe_match_spec(&fam[i / tab.n_targets], pt[i].value, text, sizeof text);
        if (olmoe_policy_set_add_spec(&set, text, NULL) != 0) die("%s", olmoe_error());
    }
    if (olmoe_policy_set_bind(&set, &m) != 0) die("%s", olmoe_error());

    olmoe_replay_run run;
    memset(&run, 0, sizeof run);
    olmoe_policy **pols = xmalloc(xmul((size_t)set.n, sizeof *pols));
    for (int i = 0; i < set.n; i++) pols[i] = &set.items[i];
    if (scored) {
        if (!out_path && !force) {
            const char *which = NULL;
            int c = olmoe_replay_h5_conflict(res.f, pols, set.n, 1, exact, 0, &which);
            if (c < 0) die("%s: %s", res.final, olmoe_error());
            if (c > 0) die("%s: /%s already exists (--force replaces it)", res.final, which);
        }
        olmoe_replay_opts o = {.trace_path = trace_path, .model = &model, .policies = pols,
                               .n_policies = set.n, .do_replay = 1, .do_exact = exact,
                               .routing = routing, .device = device, .max_tokens = max_tokens,
                               .chunk_tokens = chunk, .self_check = 1, .bind_model = &m,
                               .progress = !quiet};
        notef("scoring %d policies: replay%s on %s", set.n, exact ? " and exact" : "", device);
        if (olmoe_replay_run_all(&o, &run) != 0) die("%s", olmoe_error());
        notef("%.2f s wall, %.2f s reading the trace", run.total_seconds, run.read_seconds);
    }

    /* the table: per kind, per target, top-k then the families */
    const char *kinds[2] = {scored ? "replay" : "calibration", "exact"};
    for (int kk = 0; kk < (exact ? 2 : 1); kk++) {
        olmoe_replay_kind rk = kk ? OLMOE_KIND_EXACT : OLMOE_KIND_REPLAY;
        for (int j = 0; j < tab.n_targets; j++) {
            double ref_ppl = NAN;
            for (int i = -1; i < nf; i++) {
                if (i < 0 && isnan(topk_k[j])) continue;
                olmoe_match_row *r = olmoe_match_add_row(&tab);
                r->kind = kinds[kk];
                r->target_k = tab.targets[j];
                if (i < 0) {
                    topk_spec((int)tab.targets[j], &cli, used, tk, sizeof tk);
                    if (olmoe_policy_parse(tk, &probe) != 0) die("%s", olmoe_error());
                    snprintf(r->family, sizeof r->family, "topk");
                    snprintf(r->param_name, sizeof r->param_name, "k");
                    r->param_value = tab.targets[j];
                    snprintf(r->policy, sizeof r->policy, "%s", probe.id);
                    r->achieved_k = topk_k[j];
                    r->reached = 1;
                } else {
                    const olmoe_match_point *p = &pt[i * tab.n_targets + j];
                    snprintf(r->family, sizeof r->family, "%s", fam[i].name);
                    snprintf(r->param_name, sizeof r->param_name, "%s", fam[i].knob.param);
                    r->param_value = p->value;
                    snprintf(r->policy, sizeof r->policy, "%s", p->id);
                    r->achieved_k = p->achieved;
                    r->reached = p->reached;
                    snprintf(r->note, sizeof r->note, "%s", p->note);
                }
                if (!scored) continue;
                const olmoe_replay_result *res = olmoe_replay_find(&run, rk, r->policy);
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

    olmoe_match_print(&tab, stdout);
    if (rc.used && olmoe_match_write_csv(&tab, rc.out.tmp) != 0) die("%s", olmoe_error());
    if (rjs.used && olmoe_match_write_json(&tab, rjs.out.tmp) != 0) die("%s", olmoe_error());
    hid_t f = ro.used ? olmoe_h5_create(ro.out.tmp) : res.f;
    if (f < 0) die("%s", olmoe_error());
    const olmoe_input inputs[] = {{"trace", trace_path, tid.hex},
                                  {"model", model_dir ? model_dir : "", ""},
                                  {"kde", cli.kde ? cli.kde : "", cli.kde ? NULL : ""}};
    if (olmoe_results_provenance(f, inputs, 3) != 0 ||
        (ro.used && olmoe_h5_set_attr_str(f, ".", "trace_checksum", tid.hex) != 0))
        die("%s: %s", ro.used ? out_path : res.final, olmoe_error());
    if (ro.used && (olmoe_h5_set_attr_str(f, ".", "format", "olmoe-replay") != 0 ||
                    olmoe_h5_set_attr_i32(f, ".", "format_version", 1) != 0 ||
                    olmoe_h5_set_attr_str(f, ".", "trace", trace_path) != 0 ||
                    olmoe_h5_set_attr_str(f, ".", "model_dir", model_dir ? model_dir : "") != 0 ||
                    olmoe_h5_set_attr_str(f, ".", "command", command) != 0))
        die("%s: %s", out_path, olmoe_error());
    if ((scored && olmoe_replay_write_h5(&run, NULL, f, force) != 0) ||
        olmoe_match_write_h5(&tab, f, force) != 0)
        die("%s: %s", ro.used ? out_path : res.final, olmoe_error());
    if (ro.used ? olmoe_h5_close(f) != 0 : olmoe_results_commit(&res) != 0)
        die("%s", olmoe_error());
    olmoe_cmd_commit(&rc);
    olmoe_cmd_commit(&rjs);
    olmoe_cmd_commit(&ro);
    if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");

    if (scored) {
        olmoe_replay_run_free(&run);
        olmoe_model_close(&model);
    }
    free(pols);
    olmoe_policy_set_free(&set);
    free(pt);
    olmoe_match_data_free(&d);
    olmoe_match_table_free(&tab);
    olmoe_policy_empirical_free(&emp);
    olmoe_kde_cdf_free(&cdf);
    olmoe_kde_null_free(&null);
    for (int i = 0; i < nf; i++) free(fspec[i]);
    free(fam);
    free(command);
    return 0;
}
