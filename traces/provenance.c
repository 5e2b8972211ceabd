/* provenance.c: what produced a results file, one group per writing command
 * under /provenance/<n> (n = 0, 1, ... in the order they ran): attributes
 * argv (a JSON array of the exact arguments, olmoe_save_argv), tool_version, created (ISO 8601
 * UTC) and inputs (a JSON array of {"role", "path", "checksum"}). */
#include "common.h"
#include "traces.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* s as a JSON string appended to buf (grown as needed) */
static void json_str(char **buf, size_t *len, size_t *cap, const char *s) {
    for (const char *p = s;; p++) {
        if (*len + 8 >= *cap) *buf = xrealloc(*buf, *cap = *cap * 2 + 64);
        if (p == s) (*buf)[(*len)++] = '"';
        if (!*p) break;
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            (*buf)[(*len)++] = '\\';
            (*buf)[(*len)++] = (char)c;
        } else if (c < 0x20) {
            *len += (size_t)snprintf(*buf + *len, 8, "\\u%04x", c);
        } else {
            (*buf)[(*len)++] = (char)c;
        }
    }
    (*buf)[(*len)++] = '"';
    (*buf)[*len] = '\0';
}

static void put(char **buf, size_t *len, size_t *cap, const char *s) {
    size_t n = strlen(s);
    if (*len + n + 1 >= *cap) *buf = xrealloc(*buf, *cap = (*len + n) * 2 + 64);
    memcpy(*buf + *len, s, n + 1);
    *len += n;
}

int olmoe_results_provenance(hid_t f, const olmoe_input *in, int n_in) {
    int argc = 0;
    char *const *argv = olmoe_saved_argv(&argc);
    char *a = NULL, *b = NULL;
    size_t al = 0, ac = 0, bl = 0, bc = 0;
    put(&a, &al, &ac, "[");
    for (int i = 0; i < argc; i++) {
        if (i) put(&a, &al, &ac, ", ");
        json_str(&a, &al, &ac, argv[i]);
    }
    put(&a, &al, &ac, "]");
    put(&b, &bl, &bc, "[");
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
        put(&b, &bl, &bc, i ? ", {\"role\": " : "{\"role\": ");
        json_str(&b, &bl, &bc, in[i].role);
        put(&b, &bl, &bc, ", \"path\": ");
        json_str(&b, &bl, &bc, in[i].path);
        put(&b, &bl, &bc, ", \"checksum\": ");
        json_str(&b, &bl, &bc, sum ? sum : "");
        put(&b, &bl, &bc, "}");
    }
    put(&b, &bl, &bc, "]");
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
