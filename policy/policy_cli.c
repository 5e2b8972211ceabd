/* policy_cli.c: policies from the command line (--policy SPEC, repeatable;
 * --sweep PRESET|FILE; parameter options such as --alpha 0.1 --max-k 8 that
 * apply to every given policy whose family has the parameter) and from sweep
 * files (one spec a line, '#' comments). */
#include "common.h"
#include "policy.h"
#include "policy_internal.h"

#include <stdlib.h>
#include <string.h>

/* parses text, adds the option values, expands into set; used[id] marks the
 * options some policy took */
static int add_text(olmoe_policy_set *set, const char *text, const char *where, int from_preset,
                    const olmoe_policy_cli *cli, int *used) {
    olmoe_policy_spec sp;
    int rc = olmoe_policy_spec_parse(text, &sp);
    for (int slot = 0; rc == 0 && cli && slot < sp.family->n_params; slot++) {
        olmoe_param_id id = sp.family->params[slot].id;
        const char *v = cli->value[id];
        if (!v) continue;
        used[id] = 1;
        if (sp.nval[slot]) {
            rc = olmoe_errorf("%s: %s is given both in the policy and as --%s", sp.family->name,
                              olmoe_param_table[id].name, olmoe_param_table[id].option);
            break;
        }
        const char *s = v;
        while (*s == ' ') s++;
        rc = olmoe_policy_spec_add_values(&sp, slot, v,
                                          *s == '{' ? OLMOE_VALUES_SET : OLMOE_VALUES_LIST);
        if (rc == 0 && *sp.end)
            rc = olmoe_errorf("--%s: unexpected '%.20s'", olmoe_param_table[id].option, sp.end);
    }
    if (rc == 0) rc = olmoe_policy_set_add_parsed(set, &sp, from_preset);
    if (rc != 0 && where) olmoe_error_prefix("%s", where);
    return rc;
}

static int add_sweep(olmoe_policy_set *set, const char *name, const olmoe_policy_cli *cli,
                     int *used) {
    for (const olmoe_policy_preset *p = olmoe_policy_presets; p->name; p++) {
        if (strcmp(p->name, name) != 0) continue;
        for (int i = 0; p->specs[i]; i++)
            if (add_text(set, p->specs[i], name, 1, cli, used) != 0) return -1;
        return 0;
    }
    if (!olmoe_file_exists(name)) {
        char presets[128];
        size_t at = 0;
        presets[0] = '\0';
        for (const olmoe_policy_preset *p = olmoe_policy_presets; p->name; p++)
            at += (size_t)snprintf(presets + at, sizeof presets - at, "%s%s",
                                   p == olmoe_policy_presets ? "" : ", ", p->name);
        return olmoe_errorf("%s: neither a preset (%s) nor a file", name, presets);
    }
    char *text;
    if (olmoe_read_file(name, &text, NULL) != 0) return -1;
    int before = set->n, rc = 0, lineno = 0;
    for (char *s = text, *line; rc == 0;) {
        /* keep empty lines in the count: split by hand */
        line = s;
        char *nl = strchr(s, '\n');
        if (nl) *nl = '\0';
        lineno++;
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        if (strlen(line) != strspn(line, " \t\r")) {
            char where[1100];
            snprintf(where, sizeof where, "%s:%d", name, lineno);
            rc = add_text(set, line, where, 0, cli, used);
        }
        if (!nl) break;
        s = nl + 1;
    }
    free(text);
    if (rc == 0 && set->n == before) rc = olmoe_errorf("%s: no policies in the file", name);
    return rc;
}

int olmoe_policy_set_add_sweep(olmoe_policy_set *set, const char *name_or_file) {
    return add_sweep(set, name_or_file, NULL, NULL);
}

static int policy_cb(const char *value, void *ctx) {
    olmoe_policy_cli *cli = ctx;
    int max = (int)(sizeof cli->policies / sizeof cli->policies[0]);
    if (cli->n_policies == max) return olmoe_errorf("more than %d policies (use --sweep FILE)", max);
    cli->policies[cli->n_policies++] = value;
    return 0;
}

static int routing_cb(const char *value, void *ctx) {
    olmoe_policy_cli *cli = ctx;
    int max = (int)(sizeof cli->routing / sizeof cli->routing[0]);
    if (cli->n_routing == max) return olmoe_errorf("more than %d routing files", max);
    char *spec = cli->routing[cli->n_routing];
    if ((size_t)snprintf(spec, sizeof cli->routing[0], "file(path=%s)", value) >= sizeof cli->routing[0])
        return olmoe_errorf("'%.40s...': path too long", value);
    if (strpbrk(value, ",)")) return olmoe_errorf("'%s': a routing file's name cannot hold ',' or ')'", value);
    cli->n_routing++;
    return policy_cb(spec, cli);
}

static int param_cb(const char *value, void *ctx) {
    olmoe_policy_cli_slot *s = ctx;
    if (s->cli->value[s->param]) return olmoe_errorf("given twice (a set is 'a,b,c')");
    s->cli->value[s->param] = value;
    return 0;
}

/* --null: the name analyze gave the null file before every command said --kde */
static int null_cb(const char *value, void *ctx) {
    olmoe_policy_cli *cli = ctx;
    warnf("--null is deprecated: say --kde %s", value);
    cli->kde = value;
    return 0;
}

static int empirical_max_cb(const char *value, void *ctx) {
    olmoe_policy_cli *cli = ctx;
    long v;
    if (olmoe_parse_long(value, 0, 1L << 40, &v) != 0) return -1;
    cli->empirical_max = v;
    cli->empirical_max_given = 1;
    return 0;
}

int olmoe_policy_cli_options(olmoe_policy_cli *cli, olmoe_opt *opts, int flags) {
    int n = 0;
    cli->empirical_max = OLMOE_POLICY_CLI_EMPIRICAL_MAX;
    opts[n++] = (olmoe_opt){"policy", OLMOE_OPT_CALLBACK, cli, "SPEC",
                            "routing policy, e.g. 'bh(alpha=0.1,max_k=8)' or bh --alpha 0.1",
                            0, 0, policy_cb};
    if (flags & OLMOE_POLICY_CLI_SWEEP) {
        opts[n++] = (olmoe_opt){"sweep", OLMOE_OPT_STRING, &cli->sweep, "NAME|FILE",
                                "policies of a preset (seed, seed-final, topk) or a file", 0, 0, NULL};
        opts[n++] = (olmoe_opt){"routing-file", OLMOE_OPT_CALLBACK, cli, "FILE",
                                "the routing stored in FILE: short for --policy 'file(path=FILE)'", 0,
                                0, routing_cb};
    }
    opts[n++] = (olmoe_opt){"kde", OLMOE_OPT_STRING, &cli->kde, "FILE",
                            "pvalue=kde: the null distributions (olmoe-kde fit)", 0, 0, NULL};
    if (flags & OLMOE_POLICY_CLI_NULL_ALIAS)
        opts[n++] = (olmoe_opt){"null", OLMOE_OPT_CALLBACK, cli, "FILE",
                                "deprecated name of --kde", 0, 0, null_cb};
    opts[n++] = (olmoe_opt){"empirical", OLMOE_OPT_STRING, &cli->empirical, "TRACE",
                            "pvalue=empirical: the trace whose logits are the null", 0, 0, NULL};
    opts[n++] = (olmoe_opt){"empirical-max", OLMOE_OPT_CALLBACK, cli, "N",
                            "pvalue=empirical: at most N tokens per expert (default 32768; 0 = all)",
                            0, 0, empirical_max_cb};
    opts[n++] = (olmoe_opt){"beta-trace", OLMOE_OPT_STRING, &cli->beta_trace, "TRACE",
                            "skip(beta=median): the trace its betas are measured on", 0, 0, NULL};
    for (int i = 0; i < OLMOE_PARAM_COUNT; i++) {
        const olmoe_param_info *pi = &olmoe_param_table[i];
        cli->slot[i].cli = cli;
        cli->slot[i].param = i;
        opts[n++] = (olmoe_opt){pi->option, OLMOE_OPT_CALLBACK, &cli->slot[i],
                                pi->type == OLMOE_PARAM_ENUM ? "NAME" : "X", pi->help, 0, 0,
                                param_cb};
    }
    return n;
}

int olmoe_policy_cli_given(const olmoe_policy_cli *cli) {
    int given = cli->n_policies || cli->sweep || cli->kde || cli->empirical ||
                cli->empirical_max_given || cli->beta_trace;
    for (int i = 0; i < OLMOE_PARAM_COUNT; i++) given |= cli->value[i] != NULL;
    return given;
}

int olmoe_policy_cli_build(const olmoe_policy_cli *cli, olmoe_policy_set *set) {
    int used[OLMOE_PARAM_COUNT] = {0}, given = 0;
    for (int i = 0; i < OLMOE_PARAM_COUNT; i++) given |= cli->value[i] != NULL;
    if (cli->n_policies == 0 && !cli->sweep) {
        if (given) return olmoe_errorf("policy parameters given without --policy or --sweep");
        return olmoe_errorf("no policy given (--policy SPEC or --sweep PRESET|FILE)");
    }
    for (int i = 0; i < cli->n_policies; i++)
        if (add_text(set, cli->policies[i], NULL, 0, cli, used) != 0) return -1;
    if (cli->sweep && add_sweep(set, cli->sweep, cli, used) != 0) return -1;
    for (int i = 0; i < OLMOE_PARAM_COUNT; i++)
        if (cli->value[i] && !used[i])
            return olmoe_errorf("--%s: no policy given takes %s", olmoe_param_table[i].option,
                                olmoe_param_table[i].name);
    if (cli->beta_trace) {
        if (!olmoe_policy_set_needs_calibration(set))
            return olmoe_errorf("--beta-trace: no policy given uses it (skip(beta=median) does)");
        olmoe_policy_set_calibration(set, cli->beta_trace, 1);
    }
    return 0;
}
