/* cleanup.h (internal to common/): what a command leaves behind when it stops
 * early, shared by the files that keep a registry of it. files.c holds the
 * partial single-file outputs and the one signal handler, outdir.c the
 * partial directory output, lock.c the output locks. Every function here
 * but olmoe_cleanup_run is async-signal-safe (unlink and rmdir only). */
#ifndef OLMOE_CLEANUP_H
#define OLMOE_CLEANUP_H

/* die() and die_usage(): the partials and locks go before exit (files.c) */
void olmoe_cleanup_run(void);
/* SIGINT, SIGTERM, ...: removes what every registry holds, then dies of sig
 * as it would have (files.c); outdir.c installs it too */
void olmoe_cleanup_on_signal(int sig);
/* the lock files of this process's outputs (lock.c; also its atexit) */
void olmoe_unlink_locks(void);
/* the partial directory output and its registered files, if one is being
 * written (outdir.c) */
void olmoe_outdir_unlink_partial(void);

#endif
