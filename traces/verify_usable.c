/* verify_usable.c: what makes a trace file usable beyond its datasets, for
 * olmoe-traces verify: the superblock's open-by-writer mark, every object's
 * header readable (a write into the file that was interrupted leaves
 * unreadable ones), and the groups its attributes promise. */
#include "common.h"
#include "internal.h"
#include "traces.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    trace_problems p;
    int64_t bad;          /* unreadable objects (reported: the first few) */
    char first_bad[256];
} usable;

/* The superblock's file consistency flags (bit 0: open for writing, bit 2:
 * open by a SWMR writer); -1 when the superblock is not at offset 0 or of an
 * unknown version. */
static int writer_flags(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    unsigned char b[24];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (n < sizeof b || memcmp(b, sig, 8) != 0) return -1;
    if (b[8] == 2 || b[8] == 3) return b[11];
    if (b[8] == 0 || b[8] == 1) return b[16] | b[17] << 8;
    return -1;
}

static herr_t visit(hid_t g, const char *name, const H5L_info_t *info, void *op) {
    usable *u = op;
    if (info->type != H5L_TYPE_HARD) return 0;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    int ok = o >= 0;
    if (ok && H5Iget_type(o) == H5I_DATASET) {
        hid_t sp = H5Dget_space(o), ty = H5Dget_type(o);
        ok = sp >= 0 && ty >= 0;
        if (sp >= 0) H5Sclose(sp);
        if (ty >= 0) H5Tclose(ty);
    }
    if (o >= 0) H5Oclose(o);
    if (!ok && u->bad++ == 0) snprintf(u->first_bad, sizeof u->first_bad, "/%s", name);
    H5Eclear2(H5E_DEFAULT);
    return 0;
}

static int has_rows(hid_t f, const char *path) {
    int rank;
    int64_t d[OLMOE_H5_MAX_RANK];
    if (olmoe_h5_exists(f, path) != 1) return 0;
    return olmoe_h5_shape(f, path, &rank, d) == 0 && rank >= 1 && d[0] > 0;
}

int64_t olmoe_trace_verify_usable(const char *path, hid_t f, int complete, int64_t n_tokens,
                                  olmoe_trace_report_fn fn, void *ctx) {
    usable u = {{fn, ctx, NULL, 0}, 0, ""};
    int flags = writer_flags(path);
    if (flags > 0 && (flags & 5) && complete)
        trace_problem(&u.p, "marked open by a writer although complete: a process was killed while writing "
                "into it (or still writes it); once none has it open, 'h5clear -s --increment %s' "
                "clears the mark (try it on a copy), then verify again", path);
    herr_t rc = H5Lvisit(f, H5_INDEX_NAME, H5_ITER_NATIVE, visit, &u);
    H5Eclear2(H5E_DEFAULT);
    if (rc < 0)
        trace_problem(&u.p, "its group structure cannot be read: the file was damaged (a write into it was "
                "interrupted); capture it again, or restore a copy");
    else if (u.bad)
        trace_problem(&u.p, "%lld object%s cannot be read (first: %s): the file was damaged (a write into it "
                "was interrupted); capture it again, or restore a copy", (long long)u.bad,
            u.bad == 1 ? "" : "s", u.first_bad);
    char *field = NULL;
    if (olmoe_h5_has_attr(f, ".", OLMOE_ATTR_GROUP_FIELD) == 1 &&
        olmoe_h5_get_attr_str(f, ".", OLMOE_ATTR_GROUP_FIELD, &field) == 0 && *field &&
        n_tokens > 0) {
        if (!has_rows(f, "/documents"))
            trace_problem(&u.p, "captured with --group-field %s but /documents is missing or empty: the "
                    "capture lost its header; capture it again", field);
        if (!has_rows(f, "/groups"))
            trace_problem(&u.p, "captured with --group-field %s but /groups is missing or empty: the "
                    "capture lost its header; capture it again", field);
    }
    free(field);
    H5Eclear2(H5E_DEFAULT);
    return u.p.n;
}
