/* hash_time.c: XXH3-128 checksums (libxxhash) and monotonic time with a
 * progress line on stderr for long work (only when stderr is a terminal). */
#include "common.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

static void to_hex(XXH128_hash_t h, olmoe_hash *out) {
    snprintf(out->hex, sizeof out->hex, "%016llx%016llx", (unsigned long long)h.high64,
             (unsigned long long)h.low64);
}

void olmoe_hash_bytes(const void *data, size_t n, olmoe_hash *out) {
    to_hex(XXH3_128bits(data, n), out);
}

struct olmoe_hasher {
    XXH3_state_t *st;
};

olmoe_hasher *olmoe_hasher_new(void) {
    olmoe_hasher *h = xmalloc(sizeof *h);
    h->st = XXH3_createState();
    if (!h->st) die("out of memory creating a hash state");
    XXH3_128bits_reset(h->st);
    return h;
}

void olmoe_hasher_feed(olmoe_hasher *h, const void *data, size_t n) {
    XXH3_128bits_update(h->st, data, n);
}

void olmoe_hasher_end(olmoe_hasher *h, olmoe_hash *out) {
    to_hex(XXH3_128bits_digest(h->st), out);
    XXH3_freeState(h->st);
    free(h);
}

double olmoe_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Progress on stderr, unless --quiet: on a terminal one line redrawn twice a
 * second; otherwise (a log file, a Slurm job) whole lines, one a minute at
 * most and one at the end ($OLMOE_PROGRESS_SECONDS sets the minute) */
void olmoe_progress_begin(olmoe_progress *p, const char *what, double total) {
    p->what = what;
    p->total = total;
    p->done = 0;
    p->t0 = p->last = olmoe_now();
    p->tty = isatty(STDERR_FILENO);
    p->enabled = !olmoe_is_quiet();
    p->interval = p->tty ? 0.5 : 60;
    const char *env = getenv("OLMOE_PROGRESS_SECONDS");
    double v;
    if (!p->tty && env && olmoe_parse_double(env, &v) == 0 && v >= 0) p->interval = v;
}

void olmoe_progress_step(olmoe_progress *p, double done) {
    p->done = done;
    if (!p->enabled) return;
    double now = olmoe_now();
    if (now - p->last < p->interval && done < p->total) return;
    if (!p->tty && done >= p->total && p->printed_end) return;
    p->last = now;
    double el = now - p->t0, rate = el > 0 ? done / el : 0;
    double eta = rate > 0 && p->total > done ? (p->total - done) / rate : 0;
    fprintf(stderr, "%s%s: %.0f/%.0f %s (%.1f%%), %.0f %s/s, ETA %.0f s%s", p->tty ? "\r" : "",
            olmoe_prog(), done, p->total, p->what, p->total > 0 ? 100.0 * done / p->total : 100.0,
            rate, p->what, eta, p->tty ? "   " : "\n");
    if (!p->tty) fflush(stderr);
    p->printed_end = done >= p->total;
    p->any = 1;
}

void olmoe_progress_end(olmoe_progress *p) {
    if (p->enabled && p->tty && p->any) fputc('\n', stderr);
}
