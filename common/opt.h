/* opt.h (part of common.h: include common.h): the one option parser every olmoe-* command uses.
 *
 *   static long ctx = 2048; static const char *out = NULL; static int force = 0;
 *   static const olmoe_opt opts[] = {
 *       OPT_LONG_RANGE("ctx", &ctx, "N", "tokens per evaluation window", 2, 1 << 20),
 *       OPT_STRING("out", &out, "FILE", "trace to write"),
 *       OPT_FLAG("force", &force, "overwrite an existing output"),
 *       OPT_END};
 *   int npos = olmoe_opt_parse(argc, argv, opts, usage);  // argv[0..npos) = positionals
 *
 * Accepts --name value, --name=value and "--" to end options. --help prints the
 * usage text and the option table, then exits 0; anything unknown or malformed
 * is a usage error (exit 129) naming the option.
 */
#ifndef OLMOE_OPT_H
#define OLMOE_OPT_H

typedef enum {
    OLMOE_OPT_END = 0,
    OLMOE_OPT_FLAG,     /* int*, set to 1 */
    OLMOE_OPT_LONG,     /* long*, within [lo, hi] */
    OLMOE_OPT_DOUBLE,   /* double* */
    OLMOE_OPT_STRING,   /* const char** (points into argv) */
    OLMOE_OPT_CALLBACK, /* cb(value, ctx) returns 0 or -1 with olmoe_errorf */
} olmoe_opt_kind;

typedef struct olmoe_opt {
    const char *name;
    olmoe_opt_kind kind;
    void *dest;
    const char *arg; /* placeholder shown in --help, e.g. "N" */
    const char *help;
    long lo, hi;
    int (*cb)(const char *value, void *ctx);
} olmoe_opt;

#define OPT_FLAG(n, d, h) {(n), OLMOE_OPT_FLAG, (d), NULL, (h), 0, 0, NULL}
#define OPT_LONG_RANGE(n, d, a, h, lo, hi) {(n), OLMOE_OPT_LONG, (d), (a), (h), (lo), (hi), NULL}
#define OPT_DOUBLE(n, d, a, h) {(n), OLMOE_OPT_DOUBLE, (d), (a), (h), 0, 0, NULL}
#define OPT_STRING(n, d, a, h) {(n), OLMOE_OPT_STRING, (d), (a), (h), 0, 0, NULL}
#define OPT_CALLBACK(n, cb, ctx, a, h) {(n), OLMOE_OPT_CALLBACK, (ctx), (a), (h), 0, 0, (cb)}
#define OPT_END {NULL, OLMOE_OPT_END, NULL, NULL, NULL, 0, 0, NULL}

/* Parses argv[1..argc), moves positionals to argv[0..n) and returns n. */
int olmoe_opt_parse(int argc, char **argv, const olmoe_opt *opts, const char *usage);
/* prints usage and the option table to f */
void olmoe_opt_help(FILE *f, const olmoe_opt *opts, const char *usage);

/* subcommand dispatch, git style: { "info", cmd_info }, ..., {NULL, NULL} */
typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} olmoe_subcmd;
int olmoe_subcmd_run(int argc, char **argv, const olmoe_subcmd *cmds, const char *usage);

#endif
