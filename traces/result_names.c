/* result_names.c: the groups of results keyed by a string, and the names
 * they are stored under (olmoe-trace(5), RESULTS): policy results (/replay,
 * /exact, /stats, keyed by the canonical policy spec in the group's string
 * attribute "policy") and analysis results (/analyze/<analysis>, keyed by
 * the result's name, olmoe-analyze --name, default the policy spec, in the
 * attribute "name").
 *
 * The group's name is only where it lies, chosen so a reader can type it:
 * every run of characters other than [A-Za-z0-9] of the key becomes one
 * '_', leading and trailing '_' dropped ("topk(k=4,norm=model)" ->
 * "topk_k_4_norm_model"). Two keys that give the same name (the first one
 * there keeps it) get "_2", "_3", ... in the order they are written. Names
 * are kept whole however long: HDF5 link names have no practical limit, and
 * a cut name would collide more and say less. A group whose name ends in
 * ".partial" is one being written, no result.
 *
 * Files written before this rule name each group by the key itself
 * ("replay/topk(k=4,norm=model)"); readers find those by that name, and a
 * writer replacing such a result removes it and writes the new name. */
#include "internal.h"
#include "traces.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

char *olmoe_result_name(const char *spec) {
    size_t n = strlen(spec);
    char *s = xmalloc(n + sizeof "policy");
    size_t at = 0;
    for (const char *p = spec; *p; p++) {
        int keep = isascii((unsigned char)*p) && isalnum((unsigned char)*p);
        if (keep) s[at++] = *p;
        else if (at > 0 && s[at - 1] != '_') s[at++] = '_';
    }
    if (at > 0 && s[at - 1] == '_') at--;
    s[at] = '\0';
    if (at == 0) strcpy(s, "policy"); /* a spec of punctuation only */
    return s;
}

/* the attribute holding a result's key: an analysis result's name, else
 * the policy spec */
static const char *key_attr(const char *kind) {
    return strncmp(kind, "analyze/", 8) == 0 ? "name" : "policy";
}

/* a group being written (olmoe_analyze_h5_begin): no result yet */
static int is_partial(const char *name) {
    size_t n = strlen(name);
    return n > 8 && strcmp(name + n - 8, ".partial") == 0;
}

/* the key path holds: its key attribute, else (an old group without one)
 * its name; NULL when path is no group. Fresh; -1 + message. */
static int spec_of(hid_t f, const char *kind, const char *path, const char *name, char **spec) {
    *spec = NULL;
    hid_t o = H5Oopen(f, path, H5P_DEFAULT);
    if (o < 0) return olmoe_errorf("/%s: cannot open it", path);
    int group = H5Iget_type(o) == H5I_GROUP;
    H5Oclose(o);
    if (!group) return 0;
    const char *attr = key_attr(kind);
    int h = olmoe_h5_has_attr(f, path, attr);
    if (h < 0 || (h && olmoe_h5_get_attr_str(f, path, attr, spec) != 0)) return -1;
    if (!h) *spec = xstrdup(name);
    return 0;
}

static char *join(const char *kind, const char *name) {
    char *p = xmalloc(strlen(kind) + strlen(name) + 2);
    sprintf(p, "%s/%s", kind, name);
    return p;
}

static int by_spec(const void *a, const void *b) {
    return strcmp(((const olmoe_result_group *)a)->spec, ((const olmoe_result_group *)b)->spec);
}

int olmoe_result_groups(hid_t f, const char *kind, olmoe_result_group **out, int *n) {
    *out = NULL, *n = 0;
    char **names;
    int nn;
    if (olmoe_h5_links(f, kind, &names, &nn) != 0) return -1;
    olmoe_result_group *g = xcalloc((size_t)nn + 1, sizeof *g);
    int m = 0, rc = 0;
    for (int i = 0; i < nn && rc == 0; i++) {
        if (is_partial(names[i])) continue;
        char *path = join(kind, names[i]), *spec = NULL;
        rc = spec_of(f, kind, path, names[i], &spec);
        if (rc == 0 && spec) g[m++] = (olmoe_result_group){.spec = spec, .path = path};
        else free(path);
    }
    olmoe_h5_links_free(names, nn);
    if (rc != 0) {
        olmoe_result_groups_free(g, m);
        return -1;
    }
    /* in spec order, as listings were when groups were named by their spec */
    qsort(g, (size_t)m, sizeof *g, by_spec);
    *out = g, *n = m;
    return 0;
}

void olmoe_result_groups_free(olmoe_result_group *g, int n) {
    for (int i = 0; i < n; i++) {
        free(g[i].spec);
        free(g[i].path);
    }
    free(g);
}

/* an old-style group literally named kind/spec: 1 + *path, 0, -1 */
static int find_literal(hid_t f, const char *kind, const char *spec, char **path) {
    char *p = join(kind, spec), *s = NULL;
    int e = olmoe_h5_exists(f, p);
    if (e == 1 && spec_of(f, kind, p, spec, &s) != 0) e = -1;
    /* a group carrying another policy's spec is not this one's */
    if (e == 1 && (!s || strcmp(s, spec) != 0)) e = 0;
    free(s);
    if (e == 1) *path = p;
    else free(p);
    return e;
}

int olmoe_result_find(hid_t f, const char *kind, const char *spec, char **path) {
    *path = NULL;
    olmoe_result_group *g;
    int n;
    if (olmoe_result_groups(f, kind, &g, &n) != 0) return -1;
    for (int i = 0; i < n && !*path; i++)
        if (strcmp(g[i].spec, spec) == 0) *path = xstrdup(g[i].path);
    olmoe_result_groups_free(g, n);
    return *path ? 1 : find_literal(f, kind, spec, path);
}

int olmoe_result_new_path(hid_t f, const char *kind, const char *spec, char **path) {
    *path = NULL;
    char *base = olmoe_result_name(spec);
    char *p = xmalloc(strlen(kind) + strlen(base) + 32);
    for (int k = 1;; k++) {
        if (k == 1) sprintf(p, "%s/%s", kind, base);
        else sprintf(p, "%s/%s_%d", kind, base, k);
        int e = olmoe_h5_exists(f, p);
        char *s = NULL;
        if (e == 1 && spec_of(f, kind, p, p + strlen(kind) + 1, &s) != 0) e = -1;
        int mine = e == 1 && s && strcmp(s, spec) == 0;
        free(s);
        if (e < 0) {
            free(base), free(p);
            return -1;
        }
        if (e == 0 || mine) break;
    }
    free(base);
    *path = p;
    return 0;
}
