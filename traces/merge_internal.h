/* merge_internal.h (internal to traces/): what the merge files of libtraces share (merge.c builds
 * the merged file, merge_check.c reads and checks the shards, merge_copy.c
 * materialises a self-contained copy). */
#ifndef OLMOE_TRACES_MERGE_INTERNAL_H
#define OLMOE_TRACES_MERGE_INTERNAL_H

#include "internal.h"

/* one shard trace and its place in the run (traces.h, OLMOE_ATTR_SHARD_*) */
typedef struct {
    const char *path;
    olmoe_trace *t;
    const olmoe_trace_info *in;
    int64_t index, count, run_windows, run_tokens, run_documents;
    int64_t w_begin, w_end;   /* global windows */
    int64_t offset;           /* global position of its row 0 */
    int64_t s_begin, s_end;   /* global positions it contributes */
    int64_t d_begin;          /* global index of its first document */
    char *input_sum;
    int64_t input_bytes, max_tokens, batch;
    char *rel; /* its path relative to the merged file's directory */
} mshard;

/* opens a complete shard trace and reads its plan */
int merge_shard_open(mshard *s, const char *path);
void merge_shard_close(mshard *s);
/* same run, distinct, covering it; sorts s by index */
int merge_check_run(mshard *s, int n);
/* the merged virtual trace at vds copied into a standard trace at path */
int merge_copy(const char *vds, const char *path, const olmoe_trace_attr *extra, int n_extra);

#endif
