/* shard.h (part of capture.h: include capture.h):
 * what part of a capture one process runs (--shard i/N), and the
 * output rules of a capture that can be interrupted and resumed (--resume).
 *
 *   olmoe_shard_plan p;
 *   if (olmoe_shard_plan_make(win, nwin, &ts, 1, 4, batch, &p) != 0)
 *       die_usage("%s", olmoe_error());
 *   olmoe_window *lw = olmoe_shard_windows(win, &p);      // [p.w_end - p.w_begin]
 *   olmoe_token_stream view;
 *   olmoe_shard_stream(&ts, &p, &view);                   // tokens borrowed from ts
 *   ... capture lw over view, as an unsharded run would over a stream of its own ...
 *   olmoe_shard_stream_free(&view); free(lw);
 *
 * Sharding. The windows are made exactly as the unsharded run makes them;
 * their indices are cut into N contiguous ranges of whole batches (batch b =
 * windows [b*B, (b+1)*B), B = --batch), so every window is forwarded in the
 * same company as in the unsharded run and the results are bit-identical.
 * A shard's trace is a valid trace of its own sub-stream: it starts at its
 * first window's start (global position `offset`), its first window is stored
 * whole (the positions before its stored_from come from it, as the first
 * window of any capture) and its last window is stored to its end (the last
 * position, NaN, belongs to the next shard's first window). Global positions
 * [stored_begin, stored_end) are this shard's part of the full run: rows
 * [stored_begin - offset, stored_end - offset) of its datasets. The plan is
 * recorded as root attributes (OLMOE_SHARD_ATTRS) for olmoe-traces merge.
 *
 * Unsharded (count 0): one range of every window, offset 0; the view is the
 * whole stream.
 */
#ifndef OLMOE_SHARD_H
#define OLMOE_SHARD_H

#include <stdint.h>

#include "common.h"
#include "traces.h"
#include "windows.h"

typedef struct {
    int index, count;          /* --shard index/count; count 0: not sharded */
    int64_t run_windows;       /* W of the unsharded run */
    int64_t run_tokens;        /* stream length of the unsharded run */
    int64_t run_documents;     /* documents of the unsharded run */
    int64_t w_begin, w_end;    /* this shard's windows [w_begin, w_end) */
    int64_t offset;            /* global position of the shard trace's position 0 */
    int64_t stored_begin, stored_end; /* global positions it contributes */
    int64_t local_tokens;      /* length of the shard's own stream */
    int64_t doc_begin, doc_end; /* documents overlapping its stream */
} olmoe_shard_plan;

/* count 0: the whole run. -1 + message when the run has fewer batches than
 * shards (or no window at all). */
int olmoe_shard_plan_make(const olmoe_window *win /*[nwin]*/, int64_t nwin,
                          const olmoe_token_stream *ts, int index, int count, int64_t batch,
                          olmoe_shard_plan *p);
/* the shard's windows in its own positions, the first stored whole; caller frees */
olmoe_window *olmoe_shard_windows(const olmoe_window *win, const olmoe_shard_plan *p);
/* The shard's stream: tokens borrowed from ts, documents overlapping it
 * clipped to it (fresh arrays), groups borrowed (all of them). */
void olmoe_shard_stream(const olmoe_token_stream *ts, const olmoe_shard_plan *p,
                        olmoe_token_stream *view);
void olmoe_shard_stream_free(olmoe_token_stream *view);

/* The root attributes a capture records (traces.h, OLMOE_ATTR_*): the input's
 * checksum and size, --max-tokens, --batch, and when sharded the plan. Those
 * that define the data are marked for olmoe_trace_resume. Strings borrowed
 * from input_sum; returns the number filled. */
#define OLMOE_SHARD_MAX_ATTRS 20 /* 13 of them, and room for the capture's own */
int olmoe_shard_attrs(const olmoe_shard_plan *p, const char *input_sum, int64_t input_bytes,
                      int64_t max_tokens, int64_t batch,
                      olmoe_trace_attr out[OLMOE_SHARD_MAX_ATTRS]);

/* ---- output of a resumable capture (capture/resume.c) ---- */

/* The streaming checksum of a whole file (the capture's input), and its size;
 * "" and -1 for a pipe or device (read once, by the capture). */
int olmoe_file_checksum(const char *path, olmoe_hash *out, int64_t *bytes);

typedef struct {
    char *final;   /* --out */
    char *partial; /* "<final>.partial": the trace while it is written */
    int resume;    /* continue partial */
} olmoe_capture_out;

/* Checks the names before any work: final must not exist (unless force); with
 * resume the partial must exist, without it an existing partial is refused
 * unless force (a killed capture's work is not thrown away silently). */
int olmoe_capture_out_begin(olmoe_capture_out *o, const char *final, int force, int resume);
/* The partial holds committed windows from here on: errors and signals keep
 * it (for --resume) instead of removing it. hint is the resume command. */
void olmoe_capture_out_keep(olmoe_capture_out *o, const char *hint);
/* fsync + rename partial -> final */
int olmoe_capture_out_commit(olmoe_capture_out *o);
void olmoe_capture_out_free(olmoe_capture_out *o);

/* SIGINT/SIGTERM ask for a stop at the next batch boundary. A second signal
 * kills at once (the partial stays valid: every committed batch is on disk). */
void olmoe_capture_signals_install(void);
/* Called between batches: the signal received (0: none). For tests, the
 * environment variable OLMOE_TEST_BATCH_DELAY_MS makes it sleep that long. */
int olmoe_capture_batch_boundary(void);
/* after the clean stop: dies by the signal, as the shell expects */
void olmoe_capture_signals_reraise(int sig) OLMOE_NORETURN;

/* The windows committed in a resumed trace must be this run's first ones;
 * *done = how many. */
int olmoe_capture_resume_check(olmoe_trace *t, const olmoe_window *w /*[nw]*/, int64_t nw,
                               int64_t *done);

/* the command line with --resume added (and --force dropped), for the hint */
char *olmoe_capture_resume_command(int argc, char **argv);

#endif
