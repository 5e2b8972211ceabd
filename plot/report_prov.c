/* report_prov.c: the commands that stored the results a report shows: every
 * /provenance/<n> record of every input (olmoe-trace(5), RESULTS), with the
 * results whose "provenance" attribute names it, as report.md's "Commands"
 * section. */
#include "report_internal.h"
#include "traces.h"

#include <stdlib.h>
#include <string.h>

/* the results that point to record n, as kind/policy, ", "-joined; fresh */
static char *made_by(const olmoe_result_entry *e, int n_e, int64_t n) {
    size_t len = 0;
    for (int i = 0; i < n_e; i++)
        if (e[i].provenance == n) len += strlen(e[i].kind) + strlen(e[i].id) + strlen(e[i].path) + 3;
    char *s = xmalloc(len + 1);
    s[0] = '\0';
    for (int i = 0; i < n_e; i++)
        if (e[i].provenance == n) {
            char *w = olmoe_result_shown(&e[i]);
            if (*s) strcat(s, ", ");
            strcat(s, w);
            free(w);
        }
    return s;
}

static int load_input(olmoe_report_data *d, int input) {
    hid_t f = d->h5[input];
    int64_t n = olmoe_provenance_count(f);
    olmoe_result_entry *e = NULL;
    int n_e = 0;
    if (n < 0 || (n > 0 && olmoe_results_list(f, &e, &n_e) != 0))
        return olmoe_error_prefix("%s", d->inputs[input]);
    int rc = 0;
    for (int64_t k = 0; k < n && rc == 0; k++) {
        olmoe_provenance p;
        if (olmoe_provenance_read(f, k, &p) != 0) {
            rc = olmoe_error_prefix("%s", d->inputs[input]);
            break;
        }
        d->rec = xrealloc(d->rec, (size_t)(d->n_records + 1) * sizeof *d->rec);
        d->rec[d->n_records++] = (olmoe_report_record){
            .input = input, .n = k, .command = olmoe_provenance_command(p.argv),
            .tool_version = xstrdup(p.tool_version), .created = xstrdup(p.created),
            .inputs = olmoe_provenance_inputs(p.inputs), .made = made_by(e, n_e, k)};
        olmoe_provenance_free(&p);
    }
    olmoe_results_list_free(e, n_e);
    return rc;
}

int rep_load_records(olmoe_report_data *d) {
    for (int i = 0; i < d->n_inputs; i++)
        if (load_input(d, i) != 0) return -1;
    return 0;
}

void rep_free_records(olmoe_report_data *d) {
    for (int i = 0; i < d->n_records; i++) {
        olmoe_report_record *r = &d->rec[i];
        free(r->command);
        free(r->tool_version);
        free(r->created);
        free(r->inputs);
        free(r->made);
    }
    free(d->rec);
    d->rec = NULL;
    d->n_records = 0;
}

void rep_md_records(FILE *md, const olmoe_report_data *d) {
    if (!d->n_records) return;
    fprintf(md, "\n## Commands\n\nThe command that stored each result (the results files' "
                "`/provenance` records):\n");
    for (int i = 0; i < d->n_records; i++) {
        const olmoe_report_record *r = &d->rec[i];
        fprintf(md, "\n%d. `%s` [%lld]\n\n   ```\n   %s\n   ```\n\n", i + 1,
                d->inputs[r->input], (long long)r->n, r->command);
        fprintf(md, "   olmoe %s, %s. Inputs: %s.\n", r->tool_version, r->created,
                *r->inputs ? r->inputs : "none");
        if (*r->made) fprintf(md, "   Results: %s.\n", r->made);
        else fprintf(md, "   Results: none left (replaced since, or not linked).\n");
    }
}
