/* common.h: the common layer, the one public header of common/, below every
 * other layer: errors (olmoe_error, die), checked allocation, the option
 * parser (opt.h), outputs that appear whole or not at all (outdir.h, .partial
 * then rename), checksums, CSV, large allocations (bigmem.h), a thread pool
 * (pool.h) and a background worker (worker.h). Its parts are included at the
 * end of this file. What every olmoe-routing library and command shares:
 *
 *   olmoe_set_prog(argv[0]);            // once, first thing in main()
 *   float *x = xmalloc(n * sizeof *x);  // dies with file:line on failure
 *   if (olmoe_load_something(...) != 0) // libraries never exit: they
 *       die("%s", olmoe_error());       // set a message and return -1
 *
 * Messages follow git: "olmoe-capture: fatal: model.safetensors: tensor 'x' ...",
 * lower case, no full stop. die() exits 128, usage errors exit 129. Temporary
 * outputs registered with olmoe_cleanup_add() are removed by die() and on
 * SIGINT/SIGTERM, so a failed command leaves nothing behind.
 */
#ifndef OLMOE_COMMON_H
#define OLMOE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define OLMOE_VERSION "0.1.0"

#if defined(__GNUC__)
#define OLMOE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define OLMOE_NORETURN __attribute__((noreturn))
#else
#define OLMOE_PRINTF(a, b)
#define OLMOE_NORETURN
#endif

/* Checks a call of ours that returns 0 on success (olmoe_error() set on
 * failure) and jumps to the function's "fail:" label otherwise. Raw HDF5
 * calls (negative on failure) go through H5_CHECK (traces.h). */
#define OLMOE_TRY(call)             \
    do {                            \
        if ((call) != 0) goto fail; \
    } while (0)

#define OLMOE_EXIT_FATAL 128
#define OLMOE_EXIT_USAGE 129

/* ---- program name and fatal errors ---- */
void olmoe_set_prog(const char *argv0);
const char *olmoe_prog(void);
void die(const char *fmt, ...) OLMOE_PRINTF(1, 2) OLMOE_NORETURN;
void die_usage(const char *fmt, ...) OLMOE_PRINTF(1, 2) OLMOE_NORETURN;
void warnf(const char *fmt, ...) OLMOE_PRINTF(1, 2);
/* verbose notes on stderr ("olmoe-capture: ..."), silenced by a command's
 * --quiet through olmoe_set_quiet(1); like the program name, one setting
 * of the process's diagnostics, set by main before any work */
void olmoe_set_quiet(int quiet);
int olmoe_is_quiet(void);
void notef(const char *fmt, ...) OLMOE_PRINTF(1, 2);

/* ---- library errors: set a thread-local message, return -1 ---- */
int olmoe_errorf(const char *fmt, ...) OLMOE_PRINTF(1, 2);
const char *olmoe_error(void);
/* prefix the current message: "ctx: old message" (returns -1) */
int olmoe_error_prefix(const char *fmt, ...) OLMOE_PRINTF(1, 2);

/* ---- checked allocation: dies naming file:line ---- */
void *olmoe_xmalloc(size_t n, const char *file, int line);
void *olmoe_xcalloc(size_t n, size_t size, const char *file, int line);
void *olmoe_xrealloc(void *p, size_t n, const char *file, int line);
char *olmoe_xstrdup(const char *s, const char *file, int line);
#define xmalloc(n) olmoe_xmalloc((n), __FILE__, __LINE__)
#define xcalloc(n, s) olmoe_xcalloc((n), (s), __FILE__, __LINE__)
#define xrealloc(p, n) olmoe_xrealloc((p), (n), __FILE__, __LINE__)
#define xstrdup(s) olmoe_xstrdup((s), __FILE__, __LINE__)
/* n * size, dying on overflow */
size_t olmoe_mul(size_t n, size_t size, const char *file, int line);
#define xmul(n, s) olmoe_mul((n), (s), __FILE__, __LINE__)

/* ---- checked number parsing (never atoi): 0 on success, -1 + message ---- */
int olmoe_parse_long(const char *s, long lo, long hi, long *out);
int olmoe_parse_double(const char *s, double *out);
/* --shard i/N (olmoe-capture, olmoe-replay): 0 <= i < N <= OLMOE_SHARD_MAX */
#define OLMOE_SHARD_MAX 65536
int olmoe_parse_shard(const char *s, int *index, int *count);
/* "all" (or NULL) or a list like "0,3,8-15" of indices below n into want[0..n)
 * (1 = listed); at least one index */
int olmoe_parse_index_list(const char *s, int n, unsigned char *want /* [n] */);

/* ---- files ---- */
/* whole file into memory, NUL-terminated; caller frees */
int olmoe_read_file(const char *path, char **data, size_t *len);
/* closes f, an output written as path: 0, or -1 + "PATH: write error: WHY"
 * (strerror of the failed write: "No space left on device", ...) */
int olmoe_fclose_out(FILE *f, const char *path);
int olmoe_file_exists(const char *path);
/* path joining into a fresh string */
char *olmoe_path_join(const char *dir, const char *name);

/* Outputs are written under "<final>.partial" and renamed when complete.
 * olmoe_out_begin refuses an existing final name unless force, removes a stale
 * partial, and registers the partial for cleanup; olmoe_out_commit fsyncs and
 * renames it into place. */
typedef struct {
    char *final;   /* the name the user asked for */
    char *tmp;     /* where it is written until commit */
    int to_stdout; /* final is "-": commit copies tmp to standard output */
} olmoe_out;
int olmoe_out_begin(olmoe_out *o, const char *final, int force);
/* Inputs (traces, results files, nulls) are recorded as they are opened, and
 * olmoe_out_begin and olmoe_out_commit refuse an output that is one of them
 * (even with force). olmoe_input_named: 1 when path is a recorded input. */
void olmoe_input_add(const char *path);
int olmoe_input_named(const char *path);
int olmoe_out_commit(olmoe_out *o);
void olmoe_out_abort(olmoe_out *o);
/* The text outputs (--json, --csv, olmoe-traces export --out) take "-" for
 * standard output: olmoe_out_begin_text writes it to a temporary file and
 * commit copies that to stdout, so stdout gets the whole output or nothing,
 * as a file does. olmoe_out_begin refuses "-" (an HDF5 file or an image on
 * a terminal helps nobody) rather than create a file named "-". */
int olmoe_out_begin_text(olmoe_out *o, const char *final, int force);
int olmoe_out_is_stdout(const char *name); /* name is "-" */
/* A command whose --json or --csv is "-" prints nothing else on stdout (its
 * table would corrupt the output): 1 when one of them is "-", 0 when
 * neither, -1 + a message when both are. */
int olmoe_out_stdout_taken(const char *json, const char *csv);
/* One writer per output: an exclusive lock on "<output>.lock" (recording the
 * pid) held until olmoe_unlock_output or exit; -1 + a message naming the
 * holder's pid when another process holds it. olmoe_out_begin takes it. */
int olmoe_lock_output(const char *output);
void olmoe_unlock_output(const char *output);
/* remove these paths in die() and on SIGINT/SIGTERM */
void olmoe_cleanup_add(const char *path);
void olmoe_cleanup_remove(const char *path);
int olmoe_fsync_path(const char *path);

/* ---- checksums (XXH3-128, hex, 33 bytes with NUL) ---- */
typedef struct { char hex[33]; } olmoe_hash;
void olmoe_hash_bytes(const void *data, size_t n, olmoe_hash *out);
/* streaming: begin, feed any number of pieces, end */
typedef struct olmoe_hasher olmoe_hasher;
olmoe_hasher *olmoe_hasher_new(void);
void olmoe_hasher_feed(olmoe_hasher *h, const void *data, size_t n);
void olmoe_hasher_end(olmoe_hasher *h, olmoe_hash *out); /* frees h */

/* ---- time and progress ---- */
double olmoe_now(void); /* monotonic seconds */
typedef struct {
    const char *what; /* "tokens" */
    double total, done, t0, last;
    double interval;  /* seconds between lines */
    int enabled, tty, any, printed_end;
} olmoe_progress;
void olmoe_progress_begin(olmoe_progress *p, const char *what, double total);
void olmoe_progress_step(olmoe_progress *p, double done);
void olmoe_progress_end(olmoe_progress *p);

/* ---- the command line as one string (for provenance attributes) ---- */
/* main() saves its argv as given (before option parsing reorders it) */
void olmoe_save_argv(int argc, char **argv);
char *const *olmoe_saved_argv(int *argc);
char *olmoe_join_argv(int argc, char **argv);

/* ---- number formatting ---- */
/* bytes as "123.4 MiB" into buf */
const char *olmoe_fmt_bytes(double bytes, char *buf, size_t n);

/* ---- CSV ---- */
/* the n bytes of s as one quoted CSV field, quotes doubled (RFC 4180) */
void olmoe_csv_quoted(FILE *f, const char *s, size_t n);
/* the string s as one quoted CSV field */
void olmoe_csv_field(FILE *f, const char *s);

/* ---- text for JSON (jansson) ---- */
/* Every JSON writer makes its strings with olmoe_json_str, one rule for all:
 * JSON holds UTF-8 only, and jansson's json_string returns NULL for anything
 * else, which json_object_set_new takes as "leave the key out". Text from the
 * model or corpus (decoded tokens, group names) and file paths and command
 * lines alike have each ill-formed byte sequence replaced by U+FFFD, as HF's
 * decode does: a path that is not UTF-8 is written recognisably altered
 * rather than refused, because refusing would discard a finished run's
 * output over a field that only records which file was read (the results
 * file's checksums identify it), and a rule per kind of string is the kind
 * of special case that let keys vanish. s NULL gives JSON null. */
struct json_t;
struct json_t *olmoe_json_str(const char *s);
/* root dumped to path with jansson's flags, then a newline; a failed write
 * says why, naming shown (the output's final name when path is its
 * temporary). 0, or -1 + message. */
int olmoe_json_write(const struct json_t *root, const char *path, size_t flags, const char *shown);
/* the n bytes of s with each maximal ill-formed subsequence replaced by
 * U+FFFD (Unicode's recommended practice; Rust's from_utf8_lossy, Python's
 * errors="replace"); fresh, NUL-terminated, its length in *len when len */
char *olmoe_utf8_lossy(const char *s, size_t n, size_t *len);

/* the parts of this header, each in a file of its own */
#include "bigmem.h"
#include "opt.h"
#include "outdir.h"
#include "pool.h"
#include "worker.h"

#endif
