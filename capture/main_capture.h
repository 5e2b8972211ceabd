/* main_capture.h (internal to capture/): what olmoe-capture's main
 * (main_capture.c) hands to its generation mode (main_capture_generate.c),
 * both command code linked into olmoe-capture only. */
#ifndef OLMOE_MAIN_CAPTURE_H
#define OLMOE_MAIN_CAPTURE_H

#include "capture.h"

/* the generation options of olmoe-capture's option table */
typedef struct {
    const char *prompts;       /* --prompts FILE */
    long n_new;                /* --generate N (0: not given) */
    const char *prompt_format; /* --prompt-format text|ids */
    int stop_at_eos;           /* --stop-at-eos */
    int print_ids;             /* --print-ids */
    int no_cache;              /* --no-cache */
} olmoe_generate_args;

/* what the rest of olmoe-capture's command line says */
typedef struct {
    const char *model_dir, *device, *out_path, *command;
    int force, quiet;
    long top_k;         /* --top-k, 0: the config's */
    int stream_options; /* a capture-only option was given (--tokens, --input, ...) */
    int policy_options; /* --kde or --empirical without --policy */
    /* --policy: builds and binds it for the model (dies on error), given
     * policy_ctx; NULL: top-k */
    olmoe_policy *(*make_policy)(void *policy_ctx, const olmoe_config *c);
    void *policy_ctx;
    const olmoe_generate_args *args; /* the generation options */
} olmoe_generate_env;

/* Runs generation mode; returns the exit status, dies on errors. */
int cmd_capture_generate(const olmoe_generate_env *env);

#endif
