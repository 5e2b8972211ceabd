/* results_list.c: what a results file holds, and which command made each
 * result (olmoe-trace(5), RESULTS).
 *
 * A result is a group: /replay/<policy>, /exact/<policy>, /stats/<policy>,
 * /analyze/<analysis>/<name> (result_names.c: the names typable, the key in
 * an attribute), or /validate and /match themselves. Each carries
 * an int64 attribute "provenance": the n of the /provenance/<n> record of
 * the command that wrote it (-1: written before commands were recorded, or
 * copied from an old trace). olmoe_results_begin marks what it finds
 * unmarked with -1, olmoe_results_commit marks what is still unmarked (what
 * the committing command wrote) with its own record. */
#include "common.h"
#include "traces.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* the top-level groups of results, and how deep their results lie */
static const struct {
    const char *kind;
    int depth; /* 0: the group itself, 1: its children, 2: their children */
} kinds[] = {{"replay", 1}, {"exact", 1}, {"validate", 0}, {"stats", 1}, {"analyze", 2},
             {"match", 0}};

typedef int (*result_fn)(hid_t f, const char *kind, const char *path, void *ctx);

/* 1 if path is a group, 0 if another object, -1 + message */
static int is_group(hid_t f, const char *path) {
    hid_t o = H5Oopen(f, path, H5P_DEFAULT);
    if (o < 0) return olmoe_errorf("/%s: cannot open it", path);
    int g = H5Iget_type(o) == H5I_GROUP;
    H5Oclose(o);
    return g;
}

/* fn for every result (a group) at depth under path */
static int walk(hid_t f, const char *kind, const char *path, int depth, result_fn fn, void *ctx) {
    if (depth == 0) {
        int g = is_group(f, path);
        return g <= 0 ? g : fn(f, kind, path, ctx);
    }
    char **names;
    int n;
    if (olmoe_h5_links(f, path, &names, &n) != 0) return -1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        char *sub = xmalloc(strlen(path) + strlen(names[i]) + 2);
        sprintf(sub, "%s/%s", path, names[i]);
        rc = walk(f, kind, sub, depth - 1, fn, ctx);
        free(sub);
    }
    olmoe_h5_links_free(names, n);
    return rc;
}

static int each_result(hid_t f, result_fn fn, void *ctx) {
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        int e = olmoe_h5_exists(f, kinds[k].kind);
        if (e < 0) return -1;
        if (e && walk(f, kinds[k].kind, kinds[k].kind, kinds[k].depth, fn, ctx) != 0) return -1;
    }
    return 0;
}

static int mark_one(hid_t f, const char *kind, const char *path, void *ctx) {
    (void)kind;
    int h = olmoe_h5_has_attr(f, path, "provenance");
    if (h < 0) return -1;
    return h ? 0 : olmoe_h5_set_attr_i64(f, path, "provenance", *(const int64_t *)ctx);
}

int olmoe_results_mark(hid_t f, int64_t n) {
    return each_result(f, mark_one, &n);
}

int64_t olmoe_provenance_count(hid_t f) {
    int64_t n = 0;
    char g[64];
    for (;; n++) {
        snprintf(g, sizeof g, "provenance/%lld", (long long)n);
        int e = olmoe_h5_exists(f, g);
        if (e < 0) return -1;
        if (!e) return n;
    }
}

typedef struct {
    olmoe_result_entry *e;
    int n, cap;
} entry_list;

/* a policy result's id: its "policy" attribute, else (old) its name */
static int policy_id(hid_t f, const char *path, olmoe_result_entry *r) {
    int h = olmoe_h5_has_attr(f, path, "policy");
    if (h < 0 || (h && olmoe_h5_get_attr_str(f, path, "policy", &r->id) != 0)) return -1;
    if (!r->id) r->id = xstrdup(strchr(path, '/') ? strchr(path, '/') + 1 : "");
    return 0;
}

/* an analysis result's id: <analysis>/<its "name" attribute, else (old) its
 * group's name> */
static int analysis_id(hid_t f, const char *path, olmoe_result_entry *r) {
    const char *an = strchr(path, '/') + 1, *leaf = strrchr(path, '/') + 1;
    char *name = NULL;
    int h = olmoe_h5_has_attr(f, path, "name");
    if (h < 0 || (h && olmoe_h5_get_attr_str(f, path, "name", &name) != 0)) return -1;
    if (!name) name = xstrdup(leaf);
    r->id = xmalloc((size_t)(leaf - an) + strlen(name) + 1);
    sprintf(r->id, "%.*s%s", (int)(leaf - an), an, name);
    free(name);
    return 0;
}

static int add_entry(hid_t f, const char *kind, const char *path, void *ctx) {
    entry_list *l = ctx;
    if (l->n == l->cap) l->e = xrealloc(l->e, (size_t)(l->cap = l->cap * 2 + 8) * sizeof *l->e);
    olmoe_result_entry *r = &l->e[l->n++];
    *r = (olmoe_result_entry){.kind = kind, .path = xstrdup(path), .provenance = -1};
    int h = olmoe_h5_has_attr(f, path, "provenance");
    if (h < 0 || (h && olmoe_h5_get_attr_i64(f, path, "provenance", &r->provenance) != 0))
        return -1;
    return strcmp(kind, "analyze") == 0 ? analysis_id(f, path, r) : policy_id(f, path, r);
}

int olmoe_results_list(hid_t f, olmoe_result_entry **out, int *n) {
    entry_list l = {0};
    int rc = each_result(f, add_entry, &l);
    if (rc != 0) {
        olmoe_results_list_free(l.e, l.n);
        l = (entry_list){0};
    }
    *out = l.e;
    *n = l.n;
    return rc;
}

char *olmoe_result_shown(const olmoe_result_entry *e) {
    if (!*e->id) return xstrdup(e->path);
    char *s = xmalloc(strlen(e->kind) + strlen(e->id) + 2);
    sprintf(s, "%s/%s", e->kind, e->id);
    return s;
}

void olmoe_results_list_free(olmoe_result_entry *e, int n) {
    for (int i = 0; i < n; i++) {
        free(e[i].path);
        free(e[i].id);
    }
    free(e);
}

int olmoe_provenance_read(hid_t f, int64_t n, olmoe_provenance *p) {
    char g[64];
    snprintf(g, sizeof g, "provenance/%lld", (long long)n);
    *p = (olmoe_provenance){0};
    if (olmoe_h5_get_attr_str(f, g, "argv", &p->argv) != 0 ||
        olmoe_h5_get_attr_str(f, g, "tool_version", &p->tool_version) != 0 ||
        olmoe_h5_get_attr_str(f, g, "created", &p->created) != 0 ||
        olmoe_h5_get_attr_str(f, g, "inputs", &p->inputs) != 0) {
        olmoe_provenance_free(p);
        return olmoe_error_prefix("/%s", g);
    }
    return 0;
}

void olmoe_provenance_free(olmoe_provenance *p) {
    free(p->argv);
    free(p->tool_version);
    free(p->created);
    free(p->inputs);
    *p = (olmoe_provenance){0};
}

char *olmoe_provenance_command(const char *argv_json) {
    json_t *a = json_loads(argv_json, 0, NULL);
    if (!json_is_array(a)) {
        json_decref(a);
        return xstrdup(argv_json);
    }
    size_t n = json_array_size(a);
    char **v = xmalloc((n + 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        v[i] = (char *)(s ? s : "");
    }
    char *s = olmoe_join_argv((int)n, v);
    free(v);
    json_decref(a);
    return s;
}

char *olmoe_provenance_inputs(const char *inputs_json) {
    json_t *a = json_loads(inputs_json, 0, NULL);
    if (!json_is_array(a)) {
        json_decref(a);
        return xstrdup(inputs_json);
    }
    size_t cap = 64, len = 0;
    char *s = xmalloc(cap);
    s[0] = '\0';
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *o = json_array_get(a, i);
        const char *role = json_string_value(json_object_get(o, "role"));
        const char *path = json_string_value(json_object_get(o, "path"));
        const char *sum = json_string_value(json_object_get(o, "checksum"));
        role = role ? role : "?", path = path ? path : "", sum = sum ? sum : "";
        size_t need = strlen(role) + strlen(path) + strlen(sum) + 16;
        if (len + need >= cap) s = xrealloc(s, cap = (len + need) * 2);
        len += (size_t)sprintf(s + len, "%s%s %s (%s)", i ? ", " : "", role, path,
                               *sum ? sum : "no checksum");
    }
    json_decref(a);
    return s;
}
