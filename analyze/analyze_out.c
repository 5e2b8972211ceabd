/* analyze_out.c: what the analyses share for their outputs: JSON numbers
 * (NaN has no JSON form: null), CSV quoting, printable token text, string
 * datasets, and result groups that appear under their final name only once
 * complete (written under "<name>.partial", then renamed), so a result read
 * by the report is never half written; their names are typable and the
 * result's name their key (traces/result_names.c). */
#include "common.h"
#include "analyze.h"
#include "engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* a failed raw HDF5 call: one line naming what, the call and file:line */
json_t *olmoe_analyze_jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

void olmoe_analyze_csv_str(FILE *f, const char *s) {
    if (!s) return;
    if (strpbrk(s, ",\"\r\n")) olmoe_csv_quoted(f, s, strlen(s));
    else fputs(s, f);
}

void olmoe_analyze_escape(const char *s, char *buf, size_t n) {
    size_t o = 0;
    if (!n) return;
    for (; s && *s && o + 5 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n')
            buf[o++] = '\\', buf[o++] = 'n';
        else if (c == '\t')
            buf[o++] = '\\', buf[o++] = 't';
        else if (c == '\r')
            buf[o++] = '\\', buf[o++] = 'r';
        else if (c == '\\' || c == '"')
            buf[o++] = '\\', buf[o++] = (char)c;
        else if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(buf + o, n - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    buf[o] = '\0';
}

static char *kind_of(const char *analysis) {
    char *k = xmalloc(strlen(analysis) + sizeof "analyze/");
    sprintf(k, "analyze/%s", analysis);
    return k;
}

int olmoe_analyze_h5_find(hid_t file, const char *analysis, const char *name, char **path) {
    char *kind = kind_of(analysis);
    int e = olmoe_result_find(file, kind, name, path);
    free(kind);
    return e;
}

/* where name's result is written until complete: <typable name>.partial */
static char *partial_path(const char *analysis, const char *name) {
    char *leaf = olmoe_result_name(name), *p = xmalloc(strlen(analysis) + strlen(leaf) + 32);
    sprintf(p, "analyze/%s/%s.partial", analysis, leaf);
    free(leaf);
    return p;
}

/* an existing result of name: refused unless force, else removed when remove */
static int replace_old(hid_t file, const char *analysis, const char *name, int force, int remove) {
    char *old = NULL;
    int e = olmoe_analyze_h5_find(file, analysis, name, &old);
    if (e == 1 && !force)
        e = olmoe_errorf("/%s exists (use --force to replace it, or --name to store another)", old);
    else if (e == 1 && remove && olmoe_h5_delete(file, old) != 0)
        e = -1;
    free(old);
    return e < 0 ? -1 : 0;
}

int olmoe_analyze_name_check(const char *name) {
    if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return olmoe_errorf("result name '%s' must be non-empty, not '.' or '..', and hold no '/'",
                            name);
    return 0;
}

int olmoe_analyze_h5_begin(hid_t file, const char *analysis, const char *name, int force, hid_t *g) {
    *g = H5I_INVALID_HID;
    if (olmoe_analyze_name_check(name) != 0) return -1;
    if (replace_old(file, analysis, name, force, 0) != 0) return -1;
    char *tmp = partial_path(analysis, name);
    int rc = -1;
    if (olmoe_h5_delete(file, tmp) != 0 || olmoe_h5_make_groups(file, tmp) != 0) goto fail;
    H5_CHECK(*g = H5Gopen2(file, tmp, H5P_DEFAULT), "%s", tmp);
    rc = olmoe_h5_set_attr_str(*g, ".", "name", name);
fail:
    free(tmp);
    return rc;
}

int olmoe_analyze_h5_commit(hid_t file, const char *analysis, const char *name, int force, hid_t g) {
    char *tmp = partial_path(analysis, name), *fin = NULL, *kind = kind_of(analysis);
    int rc = -1;
    if (g >= 0) H5Gclose(g);
    if (replace_old(file, analysis, name, force, 1) != 0 ||
        olmoe_result_new_path(file, kind, name, &fin) != 0)
        goto fail;
    H5_CHECK(H5Lmove(file, tmp, file, fin, H5P_DEFAULT, H5P_DEFAULT), "%s", fin);
    rc = 0;
fail:
    free(fin);
    free(tmp);
    free(kind);
    return rc;
}

int olmoe_analyze_decode_ids(const char *tokenizer_json, const int32_t *ids, int64_t n,
                             char ***text) {
    olmoe_tokenizer *tok;
    *text = NULL;
    if (olmoe_tokenizer_open(tokenizer_json, &tok) != 0) return -1;
    char **t = xcalloc((size_t)n + 1, sizeof *t);
    for (int64_t k = 0; k < n; k++) {
        size_t len;
        if (olmoe_tokenizer_decode(tok, &ids[k], 1, 0, &t[k], &len) != 0) {
            for (int64_t i = 0; i < k; i++) free(t[i]);
            free(t);
            olmoe_tokenizer_close(tok);
            return olmoe_error_prefix("%s: token %d", tokenizer_json, ids[k]);
        }
    }
    olmoe_tokenizer_close(tok);
    *text = t;
    return 0;
}
