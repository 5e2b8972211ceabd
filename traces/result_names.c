/* result_names.c: the groups of policy results (/replay, /exact, /stats)
 * and the names they are stored under (olmoe-trace(5), RESULTS).
 *
 * The key of a result is its canonical policy spec, stored in the group's
 * string attribute "policy"; the group's name is only where it lies, chosen
 * so a reader can type it: every run of characters other than [A-Za-z0-9]
 * becomes one '_', leading and trailing '_' dropped ("topk(k=4,norm=model)"
 * -> "topk_k_4_norm_model"). Two specs that give the same name (the first
 * one there keeps it) get "_2", "_3", ... in the order they are written.
 * Names are kept whole however long: HDF5 link names have no practical
 * limit, and a cut name would collide more and say less.
 *
 * Files written before this rule name each group by the spec itself
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

typedef struct {
    char **names;
    int n, cap;
} name_list;

static herr_t add_name(hid_t g, const char *name, const H5L_info_t *info, void *ctx) {
    (void)g, (void)info;
    name_list *l = ctx;
    if (l->n == l->cap) l->names = xrealloc(l->names, (size_t)(l->cap = l->cap * 2 + 8) * sizeof *l->names);
    l->names[l->n++] = xstrdup(name);
    return 0;
}

static void free_names(name_list *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    *l = (name_list){0};
}

/* the links under kind, in name order (none when kind is absent) */
static int list_kind(hid_t f, const char *kind, name_list *l) {
    *l = (name_list){0};
    int e = olmoe_h5_exists(f, kind);
    if (e <= 0) return e;
    hid_t g = H5I_INVALID_HID;
    H5_CHECK(g = H5Gopen2(f, kind, H5P_DEFAULT), "/%s", kind);
    hsize_t idx = 0;
    H5_CHECK(H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, add_name, l), "/%s", kind);
    H5Gclose(g);
    return 0;
fail:
    if (g >= 0) H5Gclose(g);
    free_names(l);
    return -1;
}

/* the spec path holds: its "policy" attribute, else (an old group without
 * one) its name; NULL when path is no group. Fresh; -1 + message. */
static int spec_of(hid_t f, const char *path, const char *name, char **spec) {
    *spec = NULL;
    hid_t o = H5Oopen(f, path, H5P_DEFAULT);
    if (o < 0) return olmoe_errorf("/%s: cannot open it", path);
    int group = H5Iget_type(o) == H5I_GROUP;
    H5Oclose(o);
    if (!group) return 0;
    int h = olmoe_h5_has_attr(f, path, "policy");
    if (h < 0 || (h && olmoe_h5_get_attr_str(f, path, "policy", spec) != 0)) return -1;
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
    name_list l;
    if (list_kind(f, kind, &l) != 0) return -1;
    olmoe_result_group *g = xcalloc((size_t)l.n + 1, sizeof *g);
    int m = 0, rc = 0;
    for (int i = 0; i < l.n && rc == 0; i++) {
        char *path = join(kind, l.names[i]), *spec = NULL;
        rc = spec_of(f, path, l.names[i], &spec);
        if (rc == 0 && spec) g[m++] = (olmoe_result_group){.spec = spec, .path = path};
        else free(path);
    }
    free_names(&l);
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
    if (e == 1 && spec_of(f, p, spec, &s) != 0) e = -1;
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
        if (e == 1 && spec_of(f, p, p + strlen(kind) + 1, &s) != 0) e = -1;
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
