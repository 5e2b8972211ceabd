/* test_policy_spec.c: policy specs, canonical ids, validation errors, sweep
 * expansion (sets, presets, files, command-line options). Expected ids are
 * written by hand from docs/DESIGN.md §6. */
#include "check.h"
#include "common.h"
#include "policy.h"

#include <unistd.h>

static const char *id_of(const char *spec) {
    static olmoe_policy p;
    if (olmoe_policy_parse(spec, &p) != 0) return olmoe_error();
    return p.id;
}

static void test_ids(void) {
    CHECK(strcmp(id_of("bh(alpha=0.1,max_k=8)"),
                 "bh(alpha=0.1,max_k=8,min_k=1,T=1,pvalue=kde,norm=model)") == 0,
          "%s", id_of("bh(alpha=0.1,max_k=8)"));
    CHECK(strcmp(id_of(" bh ( alpha = 0.10 , max-k=8, temperature=1.0,norm=model ) "),
                 "bh(alpha=0.1,max_k=8,min_k=1,T=1,pvalue=kde,norm=model)") == 0,
          "spaces, aliases, number forms: %s",
          id_of(" bh ( alpha = 0.10 , max-k=8, temperature=1.0,norm=model ) "));
    CHECK(strcmp(id_of("topk"), "topk(k=8,norm=model)") == 0, "baseline: %s", id_of("topk"));
    CHECK(strcmp(id_of("topk(k=8,T=1)"), "topk(k=8,norm=model)") == 0, "%s", id_of("topk(k=8,T=1)"));
    CHECK(strcmp(id_of("topk(T=0.5,k=4)"), "topk(k=4,T=0.5,norm=model)") == 0, "%s",
          id_of("topk(T=0.5,k=4)"));
    CHECK(strcmp(id_of("topp(p=0.9)"), "topp(p=0.9,max_k=8,min_k=1,T=1,norm=model)") == 0, "%s",
          id_of("topp(p=0.9)"));
    CHECK(strcmp(id_of("bh(alpha=5e-2,pvalue=pseudo,pvalue_floor=0.0078125,norm=selected)"),
                 "bh(alpha=0.05,max_k=8,min_k=1,T=1,pvalue=pseudo,norm=selected,"
                 "pvalue_floor=0.0078125)") == 0,
          "%s", id_of("bh(alpha=5e-2,pvalue=pseudo,pvalue_floor=0.0078125,norm=selected)"));
    CHECK(strcmp(id_of("bh(alpha=0.1,pvalue_floor=1e-7)"),
                 "bh(alpha=0.1,max_k=8,min_k=1,T=1,pvalue=kde,norm=model)") == 0,
          "default floor left out: %s", id_of("bh(alpha=0.1,pvalue_floor=1e-7)"));
    /* ids parse back to themselves */
    const char *again = id_of("bh(alpha=0.3,max_k=16,min_k=2,T=0.25,pvalue=empirical,norm=selected)");
    char copy[OLMOE_POLICY_ID_MAX];
    snprintf(copy, sizeof copy, "%s", again);
    CHECK(strcmp(id_of(copy), copy) == 0, "round trip %s", copy);
    char b[32];
    olmoe_policy_fmt_number(0.1, b, sizeof b);
    CHECK(strcmp(b, "0.1") == 0, "%s", b);
    olmoe_policy_fmt_number(1e-7, b, sizeof b);
    CHECK(strcmp(b, "1e-07") == 0, "%s", b);
    olmoe_policy_fmt_number(0.1 + 0.2, b, sizeof b);
    CHECK(strcmp(b, "0.30000000000000004") == 0, "distinct doubles stay distinct: %s", b);
}

/* spec must fail with a message containing want */
static void expect_error(const char *spec, const char *want) {
    olmoe_policy p;
    int rc = olmoe_policy_parse(spec, &p);
    CHECK(rc == -1, "'%s' was accepted as %s", spec, rc == 0 ? p.id : "?");
    if (rc == -1) CHECK(strstr(olmoe_error(), want) != NULL, "'%s': message '%s' lacks '%s'", spec, olmoe_error(), want);
}

static void test_validation(void) {
    expect_error("bh(alpha=0)", "alpha must be in (0, 1)");
    expect_error("bh(alpha=1)", "alpha must be in (0, 1)");
    expect_error("bh(alpha=-0.1)", "alpha must be in (0, 1)");
    expect_error("bh", "bh needs alpha");
    expect_error("bh(alpha=0.1,min_k=5,max_k=4)", "min_k (5) is larger than max_k (4)");
    expect_error("bh(alpha=0.1,max_k=0)", "max_k must be in [1, 256]");
    expect_error("topk(k=0)", "k must be in [1, 256]");
    expect_error("topk(k=2.5)", "k must be an integer");
    expect_error("topk(k=8,T=0)", "T must be in [1e-06, 1e+06], got 0");
    expect_error("topk(k=8,T=-1)", "T must be in [1e-06, 1e+06]");
    expect_error("topk(k=8,T=1e-50)", "T must be in [1e-06, 1e+06]"); /* 0 as fp32 */
    expect_error("topk(k=8,T=1e300)", "T must be in [1e-06, 1e+06]"); /* inf as fp32 */
    CHECK(olmoe_policy_parse("topk(k=8,T=1e-6)", &(olmoe_policy){0}) == 0, "T = 1e-6 is allowed");
    expect_error("topp(p=0)", "p must be in (0, 1]");
    expect_error("topp(p=1.5)", "p must be in (0, 1]");
    CHECK(olmoe_policy_parse("topp(p=1)", &(olmoe_policy){0}) == 0, "p = 1 is allowed");
    expect_error("topp(p=nan)", "p must be a number");
    expect_error("bh(alpha=0.1,pvalue=fdr)", "pvalue must be one of kde, empirical, pseudo");
    expect_error("bh(alpha=0.1,norm=none)", "norm must be one of model, selected");
    expect_error("bh(alpha=0.1,pvalue_floor=0.5)", "pvalue_floor must be in [1e-30, 0.5)");
    expect_error("bh(alpha=0.1,pvalue_floor=1e-300)", "pvalue_floor must be in [1e-30, 0.5)");
    expect_error("bhq(alpha=0.1)", "unknown policy 'bhq' (known: topk, topp, bh, threshold, skip, entropy, hc, file)");
    expect_error("topk(alpha=0.1)", "topk has no parameter 'alpha' (it takes k, T, norm)");
    expect_error("bh(alpha=0.1,alpha=0.2)", "alpha given twice");
    expect_error("bh(alpha=0.1", "expected ',' or ')'");
    expect_error("bh(alpha=)", "expected a value");
    expect_error("bh(alpha=0.1,)", "expected a parameter");
    expect_error("bh(alpha 0.1)", "expected '='");
    expect_error("bh(alpha=0.1) x", "unexpected");
    expect_error("", "expected a policy name");
    expect_error("bh(alpha={0.1,0.2})", "a set of values is a sweep");
    expect_error("bh(alpha={0.1,0.1})", "value 0.1 given twice");
    expect_error("bh(alpha={0.1,0.2)", "expected ',' or '}'");
}

static void test_sweeps(void) {
    olmoe_policy_set s = {0};
    CHECK(olmoe_policy_set_add_spec(&s, "bh(alpha={0.01,0.05,0.1,0.2},max_k={4,8,16,32,64})", NULL) == 0,
          "%s", olmoe_error());
    CHECK(s.n == 20, "20 policies, got %d", s.n);
    CHECK(strstr(s.items[0].id, "alpha=0.01,max_k=4,") && strstr(s.items[1].id, "alpha=0.01,max_k=8,") &&
              strstr(s.items[5].id, "alpha=0.05,max_k=4,") && strstr(s.items[19].id, "alpha=0.2,max_k=64,"),
          "order: first parameter slowest: %s, %s", s.items[0].id, s.items[1].id);
    /* a duplicate of an existing id is skipped */
    CHECK(olmoe_policy_set_add_spec(&s, "bh(max_k=8,alpha=0.05)", NULL) == 0 && s.n == 20, "dedupe: %d", s.n);
    /* a set with an invalid member fails as a whole, naming where */
    CHECK(olmoe_policy_set_add_spec(&s, "bh(alpha={0.1,1.5})", "x.txt:4") == -1 &&
              strstr(olmoe_error(), "x.txt:4: "), "%s", olmoe_error());
    olmoe_policy_set_free(&s);

    struct { const char *name; int n; } presets[] = {{"seed", 21}, {"seed-final", 20}, {"topk", 7}};
    for (int i = 0; i < 3; i++) {
        olmoe_policy_set p = {0};
        CHECK(olmoe_policy_set_add_sweep(&p, presets[i].name) == 0, "%s", olmoe_error());
        CHECK(p.n == presets[i].n, "preset %s: %d policies, want %d", presets[i].name, p.n, presets[i].n);
        olmoe_policy_set_free(&p);
    }
    /* the seed preset: top-8 first, then the BH grid */
    olmoe_policy_set seed = {0};
    olmoe_policy_set_add_sweep(&seed, "seed");
    CHECK(strcmp(seed.items[0].id, "topk(k=8,norm=model)") == 0, "%s", seed.items[0].id);
    CHECK(olmoe_policy_set_needs(&seed, OLMOE_PVALUE_KDE) && !olmoe_policy_set_needs(&seed, OLMOE_PVALUE_EMPIRICAL), "needs");
    olmoe_policy_set_free(&seed);

    /* presets drop what does not fit; user specs are refused */
    olmoe_set_quiet(1);
    olmoe_policy_set tk = {0};
    olmoe_policy_set_add_sweep(&tk, "topk");
    olmoe_policy_model m16 = {2, 16, 0, NULL, NULL, NULL, 0};
    CHECK(olmoe_policy_set_bind(&tk, &m16) == 0 && tk.n == 5, "topk preset on 16 experts: %d", tk.n);
    olmoe_policy_set_free(&tk);
    olmoe_policy_set u = {0};
    olmoe_policy_set_add_spec(&u, "topk(k={8,32})", NULL);
    CHECK(olmoe_policy_set_bind(&u, &m16) == -1 && strstr(olmoe_error(), "k=32"), "%s", olmoe_error());
    olmoe_policy_set_free(&u);
    olmoe_set_quiet(0);

    /* sweep files: comments, blank lines, errors with file:line */
    char path[] = "/tmp/olmoe-sweep-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# a sweep\n\ntopk(k={1,2})   # two\n  bh(alpha=0.1,pvalue=pseudo)\n\n");
    fclose(f);
    olmoe_policy_set fs = {0};
    CHECK(olmoe_policy_set_add_sweep(&fs, path) == 0 && fs.n == 3, "file: %d %s", fs.n, olmoe_error());
    olmoe_policy_set_free(&fs);
    f = fopen(path, "w");
    fprintf(f, "topk\n# ok\nbh(alpha=2)\n");
    fclose(f);
    CHECK(olmoe_policy_set_add_sweep(&fs, path) == -1 && strstr(olmoe_error(), ":3: bh: alpha"),
          "%s", olmoe_error());
    olmoe_policy_set_free(&fs);
    f = fopen(path, "w");
    fprintf(f, "# nothing\n");
    fclose(f);
    CHECK(olmoe_policy_set_add_sweep(&fs, path) == -1 && strstr(olmoe_error(), "no policies"), "%s",
          olmoe_error());
    olmoe_policy_set_free(&fs);
    unlink(path);
    CHECK(olmoe_policy_set_add_sweep(&fs, "no-such-preset") == -1 &&
              strstr(olmoe_error(), "neither a preset (seed, seed-final, topk) nor a file"),
          "%s", olmoe_error());
}

static int build(olmoe_policy_cli *cli, olmoe_policy_set *s) {
    memset(s, 0, sizeof *s);
    return olmoe_policy_cli_build(cli, s);
}

static void test_cli(void) {
    olmoe_policy_cli cli;
    olmoe_opt opts[OLMOE_POLICY_CLI_NOPTS + 1];
    memset(&cli, 0, sizeof cli);
    int n = olmoe_policy_cli_options(&cli, opts, OLMOE_POLICY_CLI_SWEEP);
    opts[n] = (olmoe_opt)OPT_END;
    char *argv[] = {"prog", "--policy", "bh", "--alpha", "0.1", "--max-k=8", "run.h5", NULL};
    int npos = olmoe_opt_parse(7, argv, opts, "usage");
    CHECK(npos == 1 && strcmp(argv[0], "run.h5") == 0, "positional");
    olmoe_policy_set s;
    CHECK(build(&cli, &s) == 0 && s.n == 1, "%s", olmoe_error());
    CHECK(s.n == 1 && strcmp(s.items[0].id, "bh(alpha=0.1,max_k=8,min_k=1,T=1,pvalue=kde,norm=model)") == 0,
          "%s", s.n ? s.items[0].id : "");
    olmoe_policy_set_free(&s);

    /* options apply to every policy of a sweep whose family takes them */
    memset(&cli, 0, sizeof cli);
    cli.sweep = "seed";
    cli.value[OLMOE_PARAM_PVALUE] = "pseudo";
    cli.value[OLMOE_PARAM_NORM] = "selected";
    CHECK(build(&cli, &s) == 0 && s.n == 21, "%d %s", s.n, olmoe_error());
    CHECK(!olmoe_policy_set_needs(&s, OLMOE_PVALUE_KDE) && strcmp(s.items[0].id, "topk(k=8,norm=selected)") == 0,
          "%s", s.items[0].id);
    olmoe_policy_set_free(&s);

    /* a list in an option is a set */
    memset(&cli, 0, sizeof cli);
    cli.policies[cli.n_policies++] = "topk";
    cli.value[OLMOE_PARAM_K] = "1,2,4";
    CHECK(build(&cli, &s) == 0 && s.n == 3, "%d %s", s.n, olmoe_error());
    olmoe_policy_set_free(&s);

    memset(&cli, 0, sizeof cli);
    cli.policies[cli.n_policies++] = "bh(alpha=0.1)";
    cli.value[OLMOE_PARAM_ALPHA] = "0.2";
    CHECK(build(&cli, &s) == -1 && strstr(olmoe_error(), "both in the policy and as --alpha"), "%s", olmoe_error());
    olmoe_policy_set_free(&s);
    memset(&cli, 0, sizeof cli);
    cli.policies[cli.n_policies++] = "bh(alpha=0.1)";
    cli.value[OLMOE_PARAM_K] = "3";
    CHECK(build(&cli, &s) == -1 && strstr(olmoe_error(), "--k: no policy given takes k"), "%s", olmoe_error());
    olmoe_policy_set_free(&s);
    memset(&cli, 0, sizeof cli);
    cli.value[OLMOE_PARAM_ALPHA] = "0.2";
    CHECK(build(&cli, &s) == -1 && strstr(olmoe_error(), "without --policy"), "%s", olmoe_error());
    memset(&cli, 0, sizeof cli);
    CHECK(build(&cli, &s) == -1 && strstr(olmoe_error(), "no policy given"), "%s", olmoe_error());
    memset(&cli, 0, sizeof cli);
    cli.policies[cli.n_policies++] = "bh";
    cli.value[OLMOE_PARAM_ALPHA] = "1.5";
    CHECK(build(&cli, &s) == -1 && strstr(olmoe_error(), "alpha must be in (0, 1), got 1.5"), "%s", olmoe_error());
    olmoe_policy_set_free(&s);
}

int main(void) {
    RUN(test_ids);
    RUN(test_validation);
    RUN(test_sweeps);
    RUN(test_cli);
    return check_summary();
}
