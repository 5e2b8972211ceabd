/* opt.c: the shared option parser and subcommand dispatcher (see opt.h). */
#include "common.h"
#include "opt.h"

#include <stdlib.h>
#include <string.h>

void olmoe_opt_help(FILE *f, const olmoe_opt *opts, const char *usage) {
    fprintf(f, "%s", usage);
    if (usage[0] && usage[strlen(usage) - 1] != '\n') fputc('\n', f);
    fprintf(f, "\noptions:\n");
    for (const olmoe_opt *o = opts; o && o->name; o++) {
        char left[64];
        if (o->arg)
            snprintf(left, sizeof left, "--%s %s", o->name, o->arg);
        else
            snprintf(left, sizeof left, "--%s", o->name);
        fprintf(f, "  %-24s %s\n", left, o->help ? o->help : "");
    }
    fprintf(f, "  %-24s %s\n", "--help", "show this help and exit");
}

static const olmoe_opt *find_opt(const olmoe_opt *opts, const char *name, size_t len) {
    for (const olmoe_opt *o = opts; o && o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) return o;
    return NULL;
}

static void apply(const olmoe_opt *o, const char *value) {
    switch (o->kind) {
    case OLMOE_OPT_FLAG:
        *(int *)o->dest = 1;
        break;
    case OLMOE_OPT_LONG: {
        long lo = o->lo, hi = o->hi;
        if (lo == 0 && hi == 0) lo = -2147483647L, hi = 2147483647L;
        if (olmoe_parse_long(value, lo, hi, (long *)o->dest) != 0)
            die_usage("--%s: %s", o->name, olmoe_error());
        break;
    }
    case OLMOE_OPT_DOUBLE:
        if (olmoe_parse_double(value, (double *)o->dest) != 0)
            die_usage("--%s: %s", o->name, olmoe_error());
        break;
    case OLMOE_OPT_STRING:
        *(const char **)o->dest = value;
        break;
    case OLMOE_OPT_CALLBACK:
        if (o->cb(value, o->dest) != 0) die_usage("--%s: %s", o->name, olmoe_error());
        break;
    case OLMOE_OPT_END:
        break;
    }
}

int olmoe_opt_parse(int argc, char **argv, const olmoe_opt *opts, const char *usage) {
    int npos = 0, only_pos = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            argv[npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            olmoe_opt_help(stdout, opts, usage);
            if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");
            exit(0);
        }
        if (a[1] != '-') die_usage("unknown option '%s'", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const olmoe_opt *o = find_opt(opts, name, len);
        if (!o) die_usage("unknown option '--%.*s'", (int)len, name);
        const char *value = NULL;
        if (o->kind == OLMOE_OPT_FLAG) {
            if (eq) die_usage("--%s takes no value", o->name);
        } else if (eq) {
            value = eq + 1;
        } else {
            if (i + 1 >= argc) die_usage("--%s needs a value (%s)", o->name, o->arg ? o->arg : "");
            value = argv[++i];
            if (strcmp(value, "--help") == 0) { /* "--match-k --help": help, not a value */
                olmoe_opt_help(stdout, opts, usage);
                if (fflush(stdout) != 0 || ferror(stdout)) die("cannot write to standard output");
                exit(0);
            }
        }
        apply(o, value);
    }
    return npos;
}

int olmoe_subcmd_run(int argc, char **argv, const olmoe_subcmd *cmds, const char *usage) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        FILE *f = argc < 2 ? stderr : stdout;
        fprintf(f, "%s", usage);
        fprintf(f, "\ncommands:\n");
        for (const olmoe_subcmd *c = cmds; c->name; c++) fprintf(f, "  %-12s %s\n", c->name, c->summary);
        fprintf(f, "\n'%s COMMAND --help' tells more of each\n", olmoe_prog());
        if (argc < 2) exit(OLMOE_EXIT_USAGE);
        exit(0);
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("%s %s\n", olmoe_prog(), OLMOE_VERSION);
        exit(0);
    }
    for (const olmoe_subcmd *c = cmds; c->name; c++)
        if (strcmp(argv[1], c->name) == 0) return c->fn(argc - 1, argv + 1);
    die_usage("unknown command '%s'", argv[1]);
}
