/* provenance.c: what produced a results file, one group per writing command
 * under /provenance/<n> (n = 0, 1, ... in the order they ran): attributes
 * argv (a JSON array of the exact arguments, olmoe_save_argv), tool_version, created (ISO 8601
 * UTC) and inputs (a JSON array of {"role", "path", "checksum"}). JSON holds
 * UTF-8 only: an argument or path that is not has its bad bytes as U+FFFD
 * (olmoe_json_str, the rule of every JSON we write). */
#include "common.h"
#include "traces.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* the saved argv as a JSON array and the inputs as [{"role", "path",
 * "checksum"}], on one line with ", " and ": " between items */
static void prov_json(const olmoe_input *in, int n_in, char **argv_json, char **inputs_json) {
    int argc = 0;
    char *const *argv = olmoe_saved_argv(&argc);
    json_t *a = json_array(), *b = json_array();
    for (int i = 0; i < argc; i++) json_array_append_new(a, olmoe_json_str(argv[i]));
    for (int i = 0; i < n_in; i++) {
        olmoe_hash h;
        const char *sum = in[i].checksum;
        char *data = NULL;
        size_t len = 0;
        if (!sum && olmoe_read_file(in[i].path, &data, &len) == 0) { /* small inputs only */
            olmoe_hash_bytes(data, len, &h);
            sum = h.hex;
        }
        free(data);
        json_t *o = json_object();
        json_object_set_new(o, "role", olmoe_json_str(in[i].role));
        json_object_set_new(o, "path", olmoe_json_str(in[i].path));
        json_object_set_new(o, "checksum", olmoe_json_str(sum ? sum : ""));
        json_array_append_new(b, o);
    }
    *argv_json = json_dumps(a, 0);
    *inputs_json = json_dumps(b, 0);
    json_decref(a);
    json_decref(b);
    if (!*argv_json || !*inputs_json) die("out of memory for the provenance JSON");
}

int olmoe_results_provenance(hid_t f, const olmoe_input *in, int n_in) {
    char *a, *b;
    prov_json(in, n_in, &a, &b);
    char now[32], g[64];
    time_t sec = time(NULL);
    struct tm tm;
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&sec, &tm));
    int k = 0, e;
    do {
        snprintf(g, sizeof g, "provenance/%d", k++);
    } while ((e = olmoe_h5_exists(f, g)) == 1);
    int rc = e < 0 || olmoe_h5_make_groups(f, g) || olmoe_h5_set_attr_str(f, g, "argv", a) ||
                     olmoe_h5_set_attr_str(f, g, "tool_version", OLMOE_VERSION) ||
                     olmoe_h5_set_attr_str(f, g, "created", now) ||
                     olmoe_h5_set_attr_str(f, g, "inputs", b)
                 ? -1
                 : 0;
    free(a);
    free(b);
    return rc;
}
