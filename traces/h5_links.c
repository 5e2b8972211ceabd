/* h5_links.c: the names of the links in a group, the one listing every
 * reader of results goes through (result_names.c, results_list.c, the
 * report). */
#include "internal.h"
#include "traces.h"

#include <stdlib.h>

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

int olmoe_h5_links(hid_t loc, const char *path, char ***names, int *n) {
    *names = NULL, *n = 0;
    int e = olmoe_h5_exists(loc, path);
    if (e <= 0) return e;
    name_list l = {0};
    hid_t o = H5I_INVALID_HID;
    H5_CHECK(o = H5Oopen(loc, path, H5P_DEFAULT), "/%s", path);
    H5I_type_t type = H5Iget_type(o);
    H5_CHECK(type, "/%s", path);
    hsize_t idx = 0;
    if (type == H5I_GROUP)
        H5_CHECK(H5Literate(o, H5_INDEX_NAME, H5_ITER_INC, &idx, add_name, &l), "/%s", path);
    H5Oclose(o);
    *names = l.names, *n = l.n;
    return 0;
fail:
    if (o >= 0) H5Oclose(o);
    olmoe_h5_links_free(l.names, l.n);
    return -1;
}

void olmoe_h5_links_free(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}
