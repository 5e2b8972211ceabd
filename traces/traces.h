/* traces.h: the traces layer, the one public header of traces/ (above
 * common/ only): the trace format library, with the float16/bfloat16
 * conversions and the HDF5 helpers the layers above share: the HDF5 trace
 * of a capture ("olmoe-trace" format version 1, see olmoe-trace(5)), and
 * small generic HDF5 helpers other modules use to store their results inside
 * a trace or in a file of their own.
 *
 * Writing (olmoe-capture):
 *   olmoe_trace_meta m = {.config_json = cfg, .model_checksum = sum, ..., .n_layers = 16,
 *                         .n_experts = 64, .hidden_size = 2048, .vocab_size = 50304,
 *                         .top_k = 8, .ctx = 2048, .logits_dtype = OLMOE_DTYPE_F32};
 *   olmoe_trace *t = olmoe_trace_create("run.h5.partial", &m);
 *   if (!t) die("%s", olmoe_error());
 *   olmoe_trace_add_groups(t, names, n_groups);        // optional, before the first window
 *   olmoe_trace_add_documents(t, docs, n_docs);        // optional
 *   for each window w:                 // its stored rows only: [start + stored_from, stored_end)
 *       olmoe_trace_rows r = {.tokens = tok, .router_logits = lg, .nll = nll, .argmax = am};
 *       if (olmoe_trace_append_window(t, &w, &r) != 0) die("%s", olmoe_error());
 *   if (olmoe_trace_close(t) != 0) die("%s", olmoe_error());   // complete = 1
 *
 * Reading (olmoe-kde, olmoe-replay, ...):
 *   olmoe_trace *t = olmoe_trace_open("run.h5");
 *   const olmoe_trace_info *in = olmoe_trace_info_of(t);   // meta and sizes
 *   float *lg = xmalloc(xmul(rows * in->meta.n_layers, in->meta.n_experts * sizeof *lg));
 *   for (int64_t s = 0; s < in->n_tokens; s += rows)       // any on-disk dtype -> float
 *       olmoe_trace_read_router_logits(t, s, min(rows, in->n_tokens - s), lg);
 *   olmoe_trace_close(t);
 *
 * Crash safety: the trace is built under "<path>.creating" and renamed into
 * place already in HDF5 single-writer/multi-reader (SWMR) mode; every append
 * call writes the per-token rows, flushes, writes the /windows rows, flushes,
 * then commits them by rewriting the root attribute n_tokens (N) in place.
 * A capture killed at any moment leaves either no file at path or one that
 * olmoe_trace_open reads (falling back to a SWMR read of a file still marked
 * open for writing) holding every window whose append call returned, and
 * that olmoe_trace_resume continues (copying the committed part into a fresh
 * file). Rows and windows past N are ignored by readers and dropped by
 * resume. Group names given after the first window are written at close only.
 *
 * Every function returns 0 (or a handle) on success and -1 (or NULL) after
 * olmoe_errorf() with a one-line message naming the file and the dataset; the
 * library never exits and never prints HDF5's own error stack.
 */
#ifndef OLMOE_TRACES_H
#define OLMOE_TRACES_H

#include "common.h"

#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>

#define OLMOE_TRACE_FORMAT "olmoe-trace"
#define OLMOE_TRACE_FORMAT_VERSION 1
#define OLMOE_TRACE_CHUNK_ROWS 256 /* default rows per chunk along the token axis */

/* dtype of /router_logits on disk (the API always takes and gives float) */
typedef enum {
    OLMOE_DTYPE_F32 = 0,
    OLMOE_DTYPE_F16,
    OLMOE_DTYPE_BF16,
    OLMOE_DTYPE_COUNT
} olmoe_trace_dtype;
/* "float32", "float16", "bfloat16" */
const char *olmoe_trace_dtype_name(olmoe_trace_dtype d);
/* parses the names above (and "f32", "f16", "bf16"); -1 + message when unknown */
int olmoe_trace_dtype_parse(const char *s, olmoe_trace_dtype *out);

/* A root attribute beyond the schema's, for a command's own provenance
 * (olmoe-capture: the input's checksum, --batch, --shard, ...): an int64, or
 * a string when str is not NULL. */
typedef struct {
    const char *name;
    const char *str;  /* string value, or NULL for the integer */
    int64_t i64;
    int defines_data; /* olmoe_trace_resume refuses a file whose value differs */
} olmoe_trace_attr;

/* The root attributes. The writer reads it (strings borrowed, NULL = ""); the
 * reader fills it with strings owned by the handle, valid until close. */
typedef struct {
    const char *command;            /* the command line */
    const char *created;            /* ISO-8601 UTC; NULL when writing = now */
    const char *tool_version;       /* NULL when writing = OLMOE_VERSION */
    const char *config_json;        /* the model's config.json text */
    const char *model_checksum;     /* hex */
    const char *tokenizer_checksum; /* hex, "" when tokens were given as ids */
    const char *model_dir;
    const char *policy;        /* canonical policy id, "topk(k=8,norm=model)" baseline */
    const char *device;        /* "cpu" / "cuda:<name>" */
    const char *compute_dtype; /* "float32" / "bfloat16" */
    const char *corpus;        /* input path or "" */
    int n_layers, n_experts, hidden_size, vocab_size;
    int top_k;          /* num_experts_per_tok in effect */
    int norm_topk_prob; /* 0/1 */
    int ctx, stride;    /* stride 0 = none */
    olmoe_trace_dtype logits_dtype;
    int save_residuals; /* 1: /residual/attn [N, L, D] bfloat16 is written */
    int chunk_rows;     /* rows per chunk along the token axis; 0 = OLMOE_TRACE_CHUNK_ROWS */
    int gzip;           /* 0 = off (default), 1..9 deflate level for the big datasets */
    /* more root attributes, written at create (before SWMR writing starts) and
     * by olmoe_trace_resume into the continued file. The reader leaves these
     * NULL/0: read such attributes with olmoe_h5_get_attr_* on olmoe_trace_hid. */
    const olmoe_trace_attr *extra; /* [n_extra] */
    int n_extra;
} olmoe_trace_meta;

/* What a handle knows; for a writer it follows the appends. */
typedef struct {
    olmoe_trace_meta meta;
    int format_version;
    int complete;         /* 1 after a clean close, 0 while written / after a kill */
    int64_t n_tokens;     /* committed rows N (the attribute n_tokens) */
    int64_t n_windows;    /* committed windows */
    int64_t n_documents;  /* rows of /documents (0 when absent) */
    int64_t n_groups;     /* rows of /groups (0 when absent) */
    int has_residuals;    /* /residual/attn present */
    int64_t n_cut;        /* committed windows cut short by the next one */
    /* close-time attributes: valid when complete; else n_scored = -1, NaN */
    int64_t n_scored;
    double nll_sum, perplexity;
    int64_t file_bytes;   /* size on disk when opened (0 for a writer) */
} olmoe_trace_info;

typedef struct olmoe_trace olmoe_trace;

/* ---- windows, rows, documents ---- */
/* Window w covers stream positions [start, start + length); the positions
 * [start + stored_from, stored_end) are stored from it, in stream order, and
 * the stored ranges of consecutive windows tile [0, N). stored_end is
 * start + length except for a window cut short by the next one (sliding
 * windows: the last position of a window whose next token only the next
 * window scores belongs to that window). On disk only the first three are
 * kept (man/olmoe-trace.5, /windows): stored_end is the next window's start + stored_from,
 * capped at start + length, and N for the last window.
 * Writing: stored_end 0 means start + length. Reading: always filled. */
typedef struct {
    int64_t start, length, stored_from;
    int64_t stored_end;
} olmoe_trace_window;

/* The stored rows of one or more windows, n = sum of
 * (stored_end - start - stored_from), in stream order.
 * L = n_layers, E = n_experts, D = hidden_size. Residuals: give either the
 * float array (rounded to bfloat16, nearest-even) or the bfloat16 bits; both
 * NULL is an error when the trace saves residuals. */
typedef struct {
    const int32_t *tokens;         /* [n] */
    const float *router_logits;    /* [n, L, E] pre-softmax router logits */
    const float *nll;              /* [n] NaN exactly at the last position of each window
                                      that stores it (not cut short) */
    const int32_t *argmax;         /* [n] */
    const float *residual;         /* [n, L, D] or NULL */
    const uint16_t *residual_bf16; /* [n, L, D] or NULL: bfloat16 bit patterns */
} olmoe_trace_rows;

typedef struct {
    int64_t start, length;
    int32_t group; /* index into /groups, -1 when none */
} olmoe_trace_document;

/* ---- writing ---- */
/* Creates path (truncating it: use olmoe_out_begin for the refuse/partial
 * logic) with every root attribute and the empty, extendible datasets. */
olmoe_trace *olmoe_trace_create(const char *path, const olmoe_trace_meta *meta);
/* The same with /groups and /documents written before the file appears at
 * path, so no file there ever lacks them (a capture's partial killed at any
 * moment has its header). */
typedef struct {
    const char *const *groups; /* [n_groups] */
    int64_t n_groups;
    const olmoe_trace_document *documents; /* [n_documents] */
    int64_t n_documents;
} olmoe_trace_header;
olmoe_trace *olmoe_trace_create_with_header(const char *path, const olmoe_trace_meta *meta,
                                            const olmoe_trace_header *header);

/* Appends windows in stream order: the first stored position of each must
 * equal the rows already stored (N). Checks the rows (tokens and argmax <
 * vocab_size, nll NaN exactly at a window's stored last position, finite >= 0
 * elsewhere, router logits finite in the file's dtype) before writing
 * anything, then writes and flushes: when it returns 0 the windows survive a
 * kill. A window cut short must be followed by one that stores from its
 * stored_end (in this call or the next). */
int olmoe_trace_append_windows(olmoe_trace *t, int64_t n_windows,
                               const olmoe_trace_window *w /* [n_windows] */,
                               const olmoe_trace_rows *rows);
int olmoe_trace_append_window(olmoe_trace *t, const olmoe_trace_window *w,
                              const olmoe_trace_rows *rows);

/* Group names (/groups), appended; a document's group indexes them. Names given
 * before the first window are on disk at once, later ones at close (a kill
 * loses them: give them first when you can). */
int olmoe_trace_add_groups(olmoe_trace *t, const char *const *names /* [n] */, int64_t n);
/* Documents (/documents), appended at any time; checked against N at close. */
int olmoe_trace_add_documents(olmoe_trace *t, const olmoe_trace_document *docs /* [n] */,
                              int64_t n);

/* Writer: writes n_tokens, n_windows, n_scored, nll_sum, perplexity (from the
 * stored nll) and complete = 1, then closes; refuses (leaving the trace
 * incomplete) when the last window is cut short. Reader: closes. Always frees t,
 * also on error. NULL is a no-op. */
int olmoe_trace_close(olmoe_trace *t);
/* Writer: flushes and closes leaving complete = 0 (the file stays resumable,
 * e.g. on SIGINT). Reader: same as close. Frees t. */
int olmoe_trace_abort(olmoe_trace *t);

/* Reopens an incomplete trace (killed or aborted capture) for appending. Every
 * field of meta that changes the data (checksums, sizes, top_k, norm, policy,
 * ctx, stride, device, compute and logits dtype, residuals, and the extra
 * attributes marked defines_data) must equal the file's: a mismatch is an
 * error naming the attribute. Rows past the last
 * committed window are dropped; olmoe_trace_info_of(t)->n_tokens / n_windows
 * (and olmoe_trace_read_windows) say where to continue. A complete trace
 * (killed between close and rename) is copied whole: closing the copy gives
 * the same trace. */
olmoe_trace *olmoe_trace_resume(const char *path, const olmoe_trace_meta *meta);

/* ---- reading ---- */
/* Opens read-only; checks format and version (with a hint on mismatch) and the
 * sizes. A trace still marked open by a killed writer opens too (complete = 0). */
olmoe_trace *olmoe_trace_open(const char *path);
/* Same, read-write, for commands that add their results (/kde, /replay, ...)
 * through olmoe_trace_hid() and the olmoe_h5_* helpers below. */
olmoe_trace *olmoe_trace_open_rw(const char *path);

const olmoe_trace_info *olmoe_trace_info_of(const olmoe_trace *t);
const char *olmoe_trace_path(const olmoe_trace *t);
/* the open HDF5 file, owned by t: for olmoe_h5_* calls */
hid_t olmoe_trace_hid(const olmoe_trace *t);

/* Rows [start, start + count) of the per-token datasets, count >= 0,
 * start + count <= n_tokens; out is caller-allocated. */
int olmoe_trace_read_tokens(olmoe_trace *t, int64_t start, int64_t count,
                            int32_t *out /* [count] */);
int olmoe_trace_read_router_logits(olmoe_trace *t, int64_t start, int64_t count,
                                   float *out /* [count, L, E] */);
/* one layer only (what a per-layer statistic needs) */
int olmoe_trace_read_router_logits_layer(olmoe_trace *t, int layer, int64_t start,
                                         int64_t count, float *out /* [count, E] */);
int olmoe_trace_read_nll(olmoe_trace *t, int64_t start, int64_t count, float *out /* [count] */);
int olmoe_trace_read_argmax(olmoe_trace *t, int64_t start, int64_t count,
                            int32_t *out /* [count] */);
/* error when the trace has no residuals ("captured without --save-residuals") */
int olmoe_trace_read_residual(olmoe_trace *t, int64_t start, int64_t count,
                              float *out /* [count, L, D] */);
int olmoe_trace_read_residual_bf16(olmoe_trace *t, int64_t start, int64_t count,
                                   uint16_t *out /* [count, L, D] */);
/* windows [start, start + count) of n_windows */
int olmoe_trace_read_windows(olmoe_trace *t, int64_t start, int64_t count,
                             olmoe_trace_window *out /* [count] */);
int olmoe_trace_read_documents(olmoe_trace *t, int64_t start, int64_t count,
                               olmoe_trace_document *out /* [count] */);
/* all group names: *names is [n_groups] strings, free with olmoe_trace_free_groups */
int olmoe_trace_read_groups(olmoe_trace *t, char ***names, int64_t *n);
void olmoe_trace_free_groups(char **names, int64_t n);
/* sum of the finite nll over [0, N) in stream order (double), and their count:
 * what close stores; works on incomplete traces */
int olmoe_trace_nll_total(olmoe_trace *t, double *nll_sum, int64_t *n_scored);

/* ---- checking (olmoe-traces verify) ---- */
/* Called once per problem with a one-line message (no newline). */
typedef void (*olmoe_trace_report_fn)(void *ctx, const char *problem);
/* Schema and consistency checks of olmoe-trace(5). Returns the number of
 * problems found (0: valid; an incomplete trace from a killed capture is
 * valid), reporting each through report (NULL: silent). Never -1: a file that
 * does not open is one problem. */
int64_t olmoe_trace_verify(const char *path, olmoe_trace_report_fn report, void *ctx);

/* ---- shards (olmoe-capture --shard i/N) and merging them (merge*.c) ---- */
/* Root attributes olmoe-capture adds through meta.extra (int64 unless said):
 * every capture records its input and batching; a shard also its place in
 * the full run. A shard's trace is a trace of its own sub-stream, which
 * starts at global position shard_offset; rows [shard_stored_begin -
 * shard_offset, shard_stored_end - shard_offset) are its part of the run,
 * global windows [shard_window_begin, shard_window_end) its windows, and its
 * documents are those of the run from shard_document_begin on, clipped. */
#define OLMOE_ATTR_INPUT_CHECKSUM "input_checksum" /* string, XXH3-128 of the input file */
#define OLMOE_ATTR_INPUT_BYTES "input_bytes"
#define OLMOE_ATTR_MAX_TOKENS "max_tokens"         /* 0: none */
#define OLMOE_ATTR_GROUP_FIELD "group_field"       /* string, "" when none */
#define OLMOE_ATTR_ROUTING_PATH "routing_path"     /* string: "topk" (default) or "policy" */
#define OLMOE_ATTR_BATCH "batch"
#define OLMOE_ATTR_PLANNED_WINDOWS "planned_windows" /* windows of this file when complete */
#define OLMOE_ATTR_SHARD_INDEX "shard_index"
#define OLMOE_ATTR_SHARD_COUNT "shard_count"
#define OLMOE_ATTR_RUN_WINDOWS "run_windows"
#define OLMOE_ATTR_RUN_TOKENS "run_tokens"
#define OLMOE_ATTR_RUN_DOCUMENTS "run_documents"
#define OLMOE_ATTR_SHARD_WINDOW_BEGIN "shard_window_begin"
#define OLMOE_ATTR_SHARD_WINDOW_END "shard_window_end"
#define OLMOE_ATTR_SHARD_OFFSET "shard_offset"
#define OLMOE_ATTR_SHARD_STORED_BEGIN "shard_stored_begin"
#define OLMOE_ATTR_SHARD_STORED_END "shard_stored_end"
#define OLMOE_ATTR_SHARD_DOCUMENT_BEGIN "shard_document_begin"
/* a merged trace: how many shards, their paths relative to it (string, one
 * a line; virtual datasets only) and the merge command line (string) */
#define OLMOE_ATTR_MERGED_SHARDS "merged_shards"
#define OLMOE_ATTR_MERGED_FROM "merged_from"
#define OLMOE_ATTR_MERGE_COMMAND "merge_command"

typedef struct {
    const char *command; /* the merge command line (attribute merge_command) */
    int copy;            /* 1: a self-contained trace (data copied), else virtual datasets */
} olmoe_trace_merge_opts;

/* Joins the complete shard traces shards[0..n) (any order) into a new trace
 * at path (truncated: use olmoe_out_begin; the final name goes in final_name,
 * whose directory the virtual datasets' source paths are made relative to).
 * Checks that the shards come from one run (model, tokenizer, settings,
 * input, batch: every attribute defining data), are complete, and that their
 * indices are distinct and cover 0..N-1 with windows and positions tiling the
 * run without gap or overlap. The merged trace is what the unsharded capture
 * writes: per-token datasets map the shards' rows through HDF5 virtual
 * datasets (or copies with opts->copy), /windows and /documents in global
 * positions, complete = 1 with the run's totals. */
int olmoe_trace_merge(const char *path, const char *final_name, const char *const *shards,
                      int n, const olmoe_trace_merge_opts *opts);
/* For a trace with virtual datasets: every source file must exist, open, and
 * be the complete shard trace the merge saw (same model checksum); each
 * problem reported (as olmoe_trace_verify does). Returns the number of
 * problems (0 for a trace without virtual datasets). */
int64_t olmoe_trace_check_sources(const char *path, olmoe_trace_report_fn report, void *ctx);

/* ---- results beside a trace (results.c, provenance.c) ---- */
/* A complete trace is never written to after its capture: results go to
 * "<trace minus .h5>.results.h5" ("run.h5" -> "run.results.h5"), which has
 * the layout results stored in a trace had (/replay, /exact, /validate,
 * /stats, /analyze, /match) and records the trace's identity checksum:
 *
 *   olmoe_results w;
 *   if (olmoe_results_begin(&w, "run.h5", olmoe_trace_hid(t)) != 0) die(...);
 *   ... write groups into w.f, olmoe_results_provenance(w.f, in, n) ...
 *   if (olmoe_results_commit(&w) != 0) die(...);
 */
#define OLMOE_RESULTS_FORMAT "olmoe-results"
#define OLMOE_RESULTS_FORMAT_VERSION 1
/* the results file of a trace: fresh string, caller frees */
char *olmoe_results_path(const char *trace_path);
/* XXH3-128 of the trace's identifying root attributes (format, created,
 * command, checksums of model, tokenizer and input, merge provenance, sizes,
 * complete, nll_sum): differs between any two captures, costs no data read */
int olmoe_trace_identity(hid_t trace, olmoe_hash *out);
/* For reading: *out is the results file beside the trace (returns 1; close it
 * with olmoe_h5_close), or the trace itself when there is none (returns 0:
 * an old trace may hold results in place; do not close). -1 + message when
 * the results file is unreadable or belongs to another trace. */
int olmoe_results_open(const char *trace_path, hid_t trace, hid_t *out);
typedef struct {
    char *final, *tmp; /* the results file, and "<final>.partial" written until commit */
    hid_t f;           /* tmp, open read-write */
} olmoe_results;
/* Locks the results file (refusing while another process writes it), copies
 * it, or the first time the results the trace holds in place, into the
 * partial and opens that read-write. The trace stays untouched. */
int olmoe_results_begin(olmoe_results *r, const char *trace_path, hid_t trace);
/* The same for adding to any existing HDF5 file: locks final, copies it into
 * the partial and opens that read-write. */
int olmoe_h5_update_begin(olmoe_results *r, const char *final);
/* closes, fsyncs and renames the partial into place; unlocks. A results
 * file (format olmoe-results) gets olmoe_results_dims first. */
int olmoe_results_commit(olmoe_results *r);
/* names every dataset axis of f that has no dimension scale yet (netCDF-4
 * dimensions: token, layer, expert, k, else <dataset>_dim<i>; results_dims.c) */
int olmoe_results_dims(hid_t f);
/* removes the partial; the results file stays as it was */
void olmoe_results_abort(olmoe_results *r);
/* An input of a result: checksum NULL = XXH3-128 of the file's bytes. */
typedef struct {
    const char *role, *path, *checksum;
} olmoe_input;
/* adds /provenance/<n>: argv (olmoe_save_argv), tool_version, created, inputs (see provenance.c) */
int olmoe_results_provenance(hid_t f, const olmoe_input *in, int n_in);
/* ---- what a results file holds (results_list.c) ----
 * Each result group carries "provenance" = n of the /provenance/<n> record
 * of the command that wrote it (-1: not recorded). */
typedef struct {
    const char *kind;   /* replay, exact, validate, stats, analyze, match */
    char *path;         /* the group, from the root: "replay/topk_k_8", "validate" */
    char *id;           /* the "policy" attribute of replay, exact and stats results;
                         * analyze: "<analysis>/<its "name" attribute>"
                         * ("coactivation/topk(k=8,norm=model)"); "" for validate, match */
    int64_t provenance; /* -1: not recorded */
} olmoe_result_entry;
/* what a result is to a reader: "kind/id" ("replay/topk(k=4,norm=model)"),
 * not where it lies ("replay/topk_k_4_norm_model"); the path when id is ""; fresh */
char *olmoe_result_shown(const olmoe_result_entry *e);
/* every result of f (a results file, or a trace holding results in place) */
int olmoe_results_list(hid_t f, olmoe_result_entry **out, int *n);
void olmoe_results_list_free(olmoe_result_entry *e, int n);
/* ---- result groups and their names (result_names.c) ----
 * A result of a policy lies in <kind>/<name> (kind: replay, exact, stats),
 * keyed by its canonical spec in the group's "policy" attribute; an analysis
 * result in analyze/<analysis>/<name> (kind "analyze/<analysis>"), keyed by
 * its name (olmoe-analyze --name, default the policy spec) in the attribute
 * "name". The group's name is the key made typable: runs of characters
 * other than [A-Za-z0-9] become one '_', leading and trailing '_' dropped,
 * kept whole however long ("topk(k=4,norm=model)" -> "topk_k_4_norm_model"),
 * with "_2", "_3", ... when another key's group has it. Files written before
 * hold groups named by the key itself ("replay/topk(k=4,norm=model)");
 * readers find those too. Groups named "*.partial" (being written) are none.
 *
 *   char *g;                                  // reading
 *   int e = olmoe_result_find(f, "replay", pol.id, &g);   // 1 found, 0 none, -1
 *   char *g;                                  // writing (after removing the found one)
 *   olmoe_result_new_path(f, "replay", pol.id, &g); ... write g, its "policy" ...
 */
/* the typable name of a key; fresh */
char *olmoe_result_name(const char *spec);
/* the group of kind holding spec's results: the one whose key attribute is
 * spec, else one literally named kind/spec (an older file). 1 and *path
 * (fresh, "replay/topk_k_4_norm_model"), 0 and *path NULL when none, -1 +
 * message. */
int olmoe_result_find(hid_t f, const char *kind, const char *spec, char **path);
/* where a new group of spec goes: kind/<name>, or the first of kind/<name>_2,
 * _3, ... that is free or already spec's; *path fresh */
int olmoe_result_new_path(hid_t f, const char *kind, const char *spec, char **path);
typedef struct {
    char *spec; /* the key attribute (an old group without one: its name) */
    char *path; /* "replay/topk_k_4_norm_model" */
} olmoe_result_group;
/* the groups under kind (none when kind is absent), in key order; free with
 * olmoe_result_groups_free */
int olmoe_result_groups(hid_t f, const char *kind, olmoe_result_group **out, int *n);
void olmoe_result_groups_free(olmoe_result_group *g, int n);
/* sets provenance = n on every result group that has none */
int olmoe_results_mark(hid_t f, int64_t n);
/* the same with n = the last /provenance record (none: nothing marked): what
 * the writer of that record added. olmoe_results_commit does it; a writer of
 * a file of its own (--out) calls it before closing. */
int olmoe_results_mark_last(hid_t f);
/* the number of /provenance/<n> records (they are 0..count-1); -1 on error */
int64_t olmoe_provenance_count(hid_t f);
typedef struct {
    char *argv, *tool_version, *created, *inputs; /* as stored (argv, inputs: JSON) */
} olmoe_provenance;
int olmoe_provenance_read(hid_t f, int64_t n, olmoe_provenance *p);
void olmoe_provenance_free(olmoe_provenance *p);
/* the stored argv as one shell-quoted line; fresh (the text itself when it is no JSON array) */
char *olmoe_provenance_command(const char *argv_json);
/* the stored inputs as "role path (checksum), ..."; fresh */
char *olmoe_provenance_inputs(const char *inputs_json);

/* ---- bfloat16 and float16 ---- */
/* float -> 16 bits rounds to nearest, ties to even; NaN stays NaN (quiet),
 * overflow gives infinity; 16 bits -> float is exact. */
uint16_t olmoe_bf16_from_f32(float x);
float olmoe_bf16_to_f32(uint16_t b);
uint16_t olmoe_f16_from_f32(float x);
float olmoe_f16_to_f32(uint16_t h);
void olmoe_bf16_from_f32_n(uint16_t *dst, const float *src, size_t n);
void olmoe_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n);
void olmoe_f16_from_f32_n(uint16_t *dst, const float *src, size_t n);
void olmoe_f16_to_f32_n(float *dst, const uint16_t *src, size_t n);
/* little-endian HDF5 float types of 2 bytes (HDF5 1.10 has no bfloat16 and no
 * predefined float16); HDF5 converts them to and from H5T_NATIVE_FLOAT. The
 * caller closes them with H5Tclose. -1 + message on failure. */
hid_t olmoe_h5_type_bf16(void);
hid_t olmoe_h5_type_f16(void);

/* ---- generic HDF5 helpers (results inside a trace or in their own file) ---- */
/* Paths are relative to loc ("kde/layer3/grid"); missing groups are created
 * on write. obj names the object an attribute sits on, "." for loc itself. */
/* ---- the one check of raw HDF5 calls, for every layer ----
 * Checks an HDF5 call (any negative return is failure), sets a one-line
 * message from the printf-style context plus HDF5's innermost reason and
 * file:line, and jumps to the function's "fail:" label. */
#define H5_CHECK(call, ...)                                           \
    do {                                                              \
        if ((call) < 0) {                                             \
            olmoe_h5_failf(__FILE__, __LINE__, #call, __VA_ARGS__);   \
            goto fail;                                                \
        }                                                             \
    } while (0)
int olmoe_h5_failf(const char *src, int line, const char *call, const char *fmt, ...)
    OLMOE_PRINTF(4, 5);
#define OLMOE_H5_MAX_RANK 8
typedef enum {
    OLMOE_H5_F32 = 0, /* float */
    OLMOE_H5_F64,     /* double */
    OLMOE_H5_I32,     /* int32_t */
    OLMOE_H5_I64,     /* int64_t */
    OLMOE_H5_KIND_COUNT
} olmoe_h5_kind;

/* new file (truncates: use olmoe_out_begin first), HDF5 1.10 format */
hid_t olmoe_h5_create(const char *path);
hid_t olmoe_h5_open(const char *path, int writable);
int olmoe_h5_close(hid_t file);
int olmoe_h5_flush(hid_t file);
/* 1 if every component of path exists under loc, 0 if not, -1 on error */
int olmoe_h5_exists(hid_t loc, const char *path);
/* the names of the links in group path, in name order (h5_links.c): none
 * when path is absent or no group; free with olmoe_h5_links_free */
int olmoe_h5_links(hid_t loc, const char *path, char ***names, int *n);
void olmoe_h5_links_free(char **names, int n);
/* creates the group path and its parents (mkdir -p) */
int olmoe_h5_make_groups(hid_t loc, const char *path);
/* removes a link (dataset or group) if it exists */
int olmoe_h5_delete(hid_t loc, const char *path);
/* Writes a new dataset of any rank (1..OLMOE_H5_MAX_RANK) from a contiguous
 * array of kind; rank 0 writes a scalar. Fails if path exists (delete it first). */
int olmoe_h5_write(hid_t loc, const char *path, olmoe_h5_kind kind, int rank,
                   const int64_t *dims /* [rank] */, const void *data);
/* Writes a new dataset of n variable-length UTF-8 strings (NULL written as
 * ""), creating the parents of path. */
int olmoe_h5_write_strings(hid_t loc, const char *path, char *const *s, int64_t n);
/* shape of a dataset: *rank and dims[0..rank) */
int olmoe_h5_shape(hid_t loc, const char *path, int *rank,
                   int64_t dims[OLMOE_H5_MAX_RANK]);
/* Reads a whole dataset converted to kind into out, which holds n elements
 * (n must equal the dataset's element count). */
int olmoe_h5_read(hid_t loc, const char *path, olmoe_h5_kind kind, void *out, size_t n);
/* Same, allocating: *out (caller frees) and the shape. */
int olmoe_h5_read_alloc(hid_t loc, const char *path, olmoe_h5_kind kind, void **out,
                        int *rank, int64_t dims[OLMOE_H5_MAX_RANK]);

/* Scalar attributes, created or replaced. Strings are variable-length UTF-8. */
int olmoe_h5_set_attr_str(hid_t loc, const char *obj, const char *name, const char *value);
int olmoe_h5_set_attr_i32(hid_t loc, const char *obj, const char *name, int32_t value);
int olmoe_h5_set_attr_i64(hid_t loc, const char *obj, const char *name, int64_t value);
int olmoe_h5_set_attr_f64(hid_t loc, const char *obj, const char *name, double value);
/* 1 if present, 0 if not, -1 on error */
int olmoe_h5_has_attr(hid_t loc, const char *obj, const char *name);
/* *value is a fresh string, caller frees (fixed or variable-length on disk) */
int olmoe_h5_get_attr_str(hid_t loc, const char *obj, const char *name, char **value);
/* any integer type on disk, range-checked */
int olmoe_h5_get_attr_i64(hid_t loc, const char *obj, const char *name, int64_t *value);
int olmoe_h5_get_attr_f64(hid_t loc, const char *obj, const char *name, double *value);
/* 0 when f's root attribute "format" names one of formats (NULL-ended);
 * else -1 + "PATH: is a file of format 'F', not WHAT" (or "has no 'format'
 * attribute: not WHAT"). The readers of traces, results and
 * replay parts check with it, so one message says what a wrong file is. */
int olmoe_h5_check_format(hid_t f, const char *path, const char *const *formats, const char *what);

#endif
