/* internal.h (internal to traces/): what the files of libtraces share and nobody else sees: the
 * checked-call macro, the schema tables (datasets and root attributes, walked
 * by create, open, resume, verify and, later, merge) and the handle. */
#ifndef OLMOE_TRACES_INTERNAL_H
#define OLMOE_TRACES_INTERNAL_H

#include "common.h"
#include "traces.h"

#include <hdf5.h>
#include <hdf5_hl.h>
#include <stddef.h>

/* silences HDF5's automatic error printing; every entry point calls it */
void olmoe_h5_init(void);
/* closes any id kind (dataset, group, type, space, plist, attribute, file), ignoring <= 0 */
void olmoe_h5_close_id(hid_t id);
/* the innermost message of the current HDF5 error stack (static buffer) */
const char *olmoe_h5_reason(void);

/* ---- netCDF dimensions of /windows, /documents, /groups (dims.c) ---- */
/* creates /window, /window_field, /document (empty) and attaches them; makes
 * /groups its own dimension "groups" */
int trace_dims_make(hid_t f, hid_t windows, hid_t documents, hid_t groups);
/* /window and /document as long as /windows and /documents (no-op without them) */
int trace_dims_sync(hid_t f);

/* ---- datasets of a trace ---- */
typedef enum {
    TDS_TOKENS = 0,
    TDS_TOKEN_SCALE, /* /token: positions 0..N-1, the "token" dimension scale */
    TDS_ROUTER_LOGITS,
    TDS_NLL,
    TDS_ARGMAX,
    TDS_RESIDUAL,
    TDS_WINDOWS,
    TDS_DOCUMENTS,
    TDS_GROUPS,
    TDS_COUNT
} trace_ds;

/* row shape of a dataset beyond its first axis */
typedef enum { ROW_SCALAR, ROW_LE, ROW_LD, ROW_3, ROW_COMPOUND, ROW_STRING } trace_row;

typedef struct {
    const char *path;  /* "/router_logits" */
    int per_token;     /* one row per stream position */
    int required;      /* must exist in every trace */
    trace_row row;
} trace_ds_desc;
extern const trace_ds_desc trace_ds_table[TDS_COUNT];

/* ---- root attributes mirrored in olmoe_trace_meta ---- */
typedef enum { ATTR_STR, ATTR_I32 } trace_attr_kind;
typedef struct {
    const char *name;
    trace_attr_kind kind;
    size_t off;        /* offsetof(olmoe_trace_meta, field) */
    int defines_data;  /* resume must match it */
} trace_attr_desc;
extern const trace_attr_desc trace_attr_table[];
extern const size_t trace_attr_count;
/* format, format_version and every table attribute of m on f's root;
 * "created" is now when m has none or when stamp_now, tool_version this
 * build's when m has none. -1 with the error set (not prefixed). */
int trace_write_meta_attrs(hid_t f, const olmoe_trace_meta *m, int stamp_now);
/* close-time attributes */
#define TRACE_ATTR_N_TOKENS "n_tokens"
#define TRACE_ATTR_N_WINDOWS "n_windows"
#define TRACE_ATTR_N_SCORED "n_scored"
#define TRACE_ATTR_NLL_SUM "nll_sum"
#define TRACE_ATTR_PERPLEXITY "perplexity"
#define TRACE_ATTR_COMPLETE "complete"

/* the documents' compound type in memory (matches olmoe_trace_document) and
 * on disk (little-endian, packed); caller closes */
hid_t trace_doc_mem_type(void);
hid_t trace_doc_file_type(void);
/* variable-length UTF-8 string type; caller closes */
hid_t trace_vstr_type(void);

struct olmoe_trace {
    char *path;
    hid_t file;
    int writer;    /* created or resumed for appending */
    int swmr;      /* SWMR writing started */
    int writable;  /* opened read-write */
    int failed;    /* a write failed half-way: refuse more, close leaves complete = 0 */
    int64_t last_start; /* start of the last committed window */
    int64_t last_end;   /* its end, start + length */
    olmoe_trace_info info;
    char *owned[24]; /* strings behind info.meta (reader) */
    hid_t ds[TDS_COUNT]; /* open datasets, 0 when absent */
    int64_t rows_on_disk; /* per-token rows on disk (>= n_tokens after a kill) */
    int64_t win_rows_on_disk; /* rows of /windows on disk (>= n_windows after a kill) */
    /* writer: groups given after SWMR started, written at close */
    char **late_groups;
    int64_t n_late_groups;
    uint16_t *bf16_buf; /* writer scratch for residual conversion */
    size_t bf16_cap;
};

/* ---- shared between create/open/resume ---- */
/* opens every dataset present and reads sizes and meta into t->info; commits
 * = windows prefix that tiles [0, N) */
int trace_load(olmoe_trace *t);
/* a merged trace's virtual datasets read shards that are present and match
 * (merge_sources.c); -1 naming the first problem and the fix otherwise */
int trace_check_sources_open(olmoe_trace *t);
/* rows of a dataset along axis 0 */
int trace_ds_rows(olmoe_trace *t, trace_ds which, int64_t *rows);
/* elements per row of a per-token dataset */
size_t trace_row_elems(const olmoe_trace_info *in, trace_ds which);
/* reads rows [start, start+count) of a dataset into out with memory type
 * mtype; layer >= 0 selects that index of axis 1 only */
int trace_read_rows(olmoe_trace *t, trace_ds which, hid_t mtype, int64_t start,
                    int64_t count, int layer, void *out);
/* frees everything behind the handle and the handle */
void trace_free(olmoe_trace *t);
/* copy.c: from's groups and documents (fill-value rows a killed writer left
 * dropped), then its committed windows with their rows, appended to to */
/* group path of src copied to the same path in dst, attributes included
 * (copy_attrs.c: H5Ocopy alone crashes on dense attributes) */
int trace_copy_group(hid_t src, const char *path, hid_t dst);
int trace_copy_documents(olmoe_trace *from, olmoe_trace *to);
int trace_copy_windows(olmoe_trace *from, olmoe_trace *to);

/* Which leading window rows are committed: well formed, tiling [0, N), and
 * storing from below N = the attribute n_tokens (rows a killed writer left
 * past them are fill values or not yet committed). Feed the rows in order,
 * in blocks; n stops growing at the first row past N or breaking the rules. */
typedef struct {
    int64_t limit;      /* N: windows storing from here on are not committed */
    int64_t n;          /* committed rows so far */
    int64_t s_prev;     /* first stored position of the last committed window */
    int64_t end_prev;   /* its end, start + length */
    int64_t start_prev; /* its start */
    int64_t n_cut;      /* committed windows cut short by their successor */
    int stopped;        /* a row past N or breaking the rules */
    int broken;         /* a row below N broke the rules */
} trace_tiling;
void trace_tiling_feed(trace_tiling *s, const olmoe_trace_window *w, int64_t n);
/* only [0-9a-f] (the empty string too) */
int trace_is_hex(const char *s);
/* windows rows as int64 triples -> structs (stored_end 0) */
void trace_windows_from_rows(olmoe_trace_window *w, const int64_t *rows, int64_t n);

/* the checks' problems: each formatted (after "PREFIX: " when prefix is not
 * NULL), counted, and passed to fn when there is one (verify.c) */
typedef struct {
    olmoe_trace_report_fn fn;
    void *ctx;
    const char *prefix;
    int64_t n;
} trace_problems;
void trace_problem(trace_problems *p, const char *fmt, ...) OLMOE_PRINTF(2, 3);

/* verify_usable.c: the writer mark, unreadable objects, promised groups;
 * returns the number of problems reported */
int64_t olmoe_trace_verify_usable(const char *path, hid_t f, int complete, int64_t n_tokens,
                                  olmoe_trace_report_fn fn, void *ctx);

#endif
