/* main_traces_results.c: the results part of olmoe-traces info: every result
 * in the results file beside the trace (or held in place by an old trace),
 * its kind and policy or analysis, and the command that stored it, from the
 * /provenance/<n> record its "provenance" attribute names. A result is shown
 * by its policy spec; its group's name follows when it is not the spec. */
#include "common.h"
#include "main_traces.h"
#include "traces.h"

#include <stdlib.h>
#include <string.h>

static void print_records(hid_t f, const olmoe_result_entry *e, int n, int64_t n_prov) {
    for (int64_t k = 0; k < n_prov; k++) {
        olmoe_provenance p;
        if (olmoe_provenance_read(f, k, &p) != 0) die("%s", olmoe_error());
        char *cmd = olmoe_provenance_command(p.argv), *ins = olmoe_provenance_inputs(p.inputs);
        printf("  [%lld] %s\n       olmoe %s, %s; inputs: %s\n       made:", (long long)k, cmd,
               p.tool_version, p.created, *ins ? ins : "none");
        int any = 0;
        for (int i = 0; i < n; i++)
            if (e[i].provenance == k) {
                char *w = olmoe_result_shown(&e[i]);
                printf("%s %s", any++ ? "," : "", w);
                free(w);
            }
        printf("%s\n", any ? "" : " (since replaced)");
        free(cmd);
        free(ins);
        olmoe_provenance_free(&p);
    }
}

void cmd_traces_print_results(const char *path, hid_t trace) {
    hid_t f;
    /* a bad results file is one line of the trace's info, not the end of it */
    int own = olmoe_results_open(path, trace, &f);
    olmoe_result_entry *e;
    int n;
    int64_t n_prov = own < 0 ? -1 : olmoe_provenance_count(f);
    if (n_prov < 0 || olmoe_results_list(f, &e, &n) != 0) {
        printf("results:        none shown: %s\n", olmoe_error());
        if (own > 0) olmoe_h5_close(f);
        return;
    }
    char *rpath = olmoe_results_path(path);
    printf("results:        %d in %s\n", n, own ? rpath : "the trace itself (an old trace)");
    free(rpath);
    for (int i = 0; i < n; i++) {
        printf("  %-9s %-32s ", e[i].kind, *e[i].id ? e[i].id : "-");
        if (e[i].provenance >= 0) printf("command [%lld]", (long long)e[i].provenance);
        else printf("command not recorded");
        char *w = olmoe_result_shown(&e[i]); /* where it lies, when that is not kind/spec */
        if (strcmp(w, e[i].path) != 0) printf("  in /%s", e[i].path);
        printf("\n");
        free(w);
    }
    if (n_prov) printf("commands:\n");
    print_records(f, e, n, n_prov);
    olmoe_results_list_free(e, n);
    if (own) olmoe_h5_close(f);
}
