/* fuzz_policy.c: policy strings, as --policy SPEC and the parameter options
 * give them. Input: the spec on the first line; then lines "option=value"
 * (--alpha 0.1,0.2 is "alpha=0.1,0.2"); then, after "\xff\xfe", a byte
 * choosing E (and norm_topk_prob) and logits to route (fuzz_policy_check.h).
 * Runs olmoe_policy_parse, olmoe_policy_set_add_spec and
 * olmoe_policy_cli_build; every error is one line (the set's names the
 * given place), every id reads back as itself, and whatever binds routes as
 * policy.h defines it. */
#include "fuzz.h"
#include "fuzz_policy_check.h"
#include "policy.h"

FUZZ_TARGET(policy) {
    const uint8_t *text, *bin;
    size_t nt, nb;
    fuzz_split(data, size, "\xff\xfe", &text, &nt, &bin, &nb);
    char *s = fuzz_strndup(text, nt);
    int E = 8, norm = 0;
    if (nb) {
        E = bin[0] == 0xFF ? OLMOE_POLICY_MAX_E : 1 + bin[0] % 96;
        norm = bin[0] & 0x80 ? 1 : 0;
        bin++, nb--;
    }
    char *nl = strchr(s, '\n');
    if (nl) *nl = '\0';
    const char *spec = s;

    olmoe_policy p;
    if (olmoe_policy_parse(spec, &p) == 0) {
        olmoe_policy q;
        FUZZ_ASSERT(olmoe_policy_parse(p.id, &q) == 0 && strcmp(q.id, p.id) == 0,
                    "id '%s' does not read back", p.id);
        for (int i = 0; i < OLMOE_PARAM_COUNT; i++)
            FUZZ_ASSERT((isnan(p.param[i]) && isnan(q.param[i])) || p.param[i] == q.param[i],
                        "%s: parameter %d changes through the id", p.id, i);
    } else {
        FUZZ_MESSAGE_OK();
    }

    olmoe_policy_set set = {0};
    if (olmoe_policy_set_add_spec(&set, spec, "fuzz:1") == 0) {
        FUZZ_ASSERT(set.n >= 1 && set.n <= OLMOE_POLICY_MAX_SWEEP, "%d policies", set.n);
        pc_check_set(&set, bin, nb, E, norm);
    } else {
        FUZZ_ERROR_NAMES("fuzz:1");
    }
    olmoe_policy_set_free(&set);

    /* the command-line form: the spec plus option lines */
    if (nl) {
        olmoe_policy_cli cli;
        memset(&cli, 0, sizeof cli);
        cli.policies[cli.n_policies++] = spec;
        for (char *line = nl + 1; line && *line;) {
            char *next = strchr(line, '\n');
            if (next) *next++ = '\0';
            char *eq = strchr(line, '=');
            if (eq) {
                *eq = '\0';
                for (int i = 0; i < OLMOE_PARAM_COUNT; i++)
                    if (strcmp(line, olmoe_param_table[i].option) == 0 && !cli.value[i])
                        cli.value[i] = eq + 1;
            } else if (cli.n_policies < 64) {
                cli.policies[cli.n_policies++] = line; /* another --policy */
            }
            line = next;
        }
        olmoe_policy_set cs = {0};
        if (olmoe_policy_cli_build(&cli, &cs) == 0)
            pc_check_set(&cs, bin, nb, E, norm);
        else
            FUZZ_MESSAGE_OK();
        olmoe_policy_set_free(&cs);
    }
    free(s);
    return 0;
}
