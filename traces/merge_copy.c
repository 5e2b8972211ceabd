/* merge_copy.c: olmoe-traces merge --copy: the merged virtual trace read
 * through and written as a standard, self-contained trace (the layout an
 * unsharded capture writes), so the shards can be deleted. */
#include "merge_internal.h"

#include <stdlib.h>
#include <string.h>

int merge_copy(const char *vds, const char *path, const olmoe_trace_attr *extra, int n_extra) {
    olmoe_trace *v = olmoe_trace_open(vds), *t = NULL;
    if (!v) return -1;
    olmoe_trace_meta m = olmoe_trace_info_of(v)->meta;
    m.created = NULL; /* now */
    m.chunk_rows = 0;
    m.extra = extra;
    m.n_extra = n_extra;
    int rc = -1;
    if (!(t = olmoe_trace_create(path, &m))) goto out;
    if (trace_copy_documents(v, t) != 0 || trace_copy_windows(v, t) != 0) {
        olmoe_trace_abort(t);
        goto out;
    }
    rc = olmoe_trace_close(t);
out:
    olmoe_trace_close(v);
    return rc;
}
