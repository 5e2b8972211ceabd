/* main_replay.h (internal to analyze/): the modes of olmoe-replay, each the
 * command code of one mode in its own main_replay_*.c, linked into
 * olmoe-replay only; main_replay.c picks one from its table. Each parses all
 * of argv itself (its option table includes --mode) and may exit. */
#ifndef OLMOE_MAIN_REPLAY_H
#define OLMOE_MAIN_REPLAY_H

int cmd_replay_run(int argc, char **argv);   /* replay, exact, validate (main_replay_run.c) */
int cmd_replay_stats(int argc, char **argv); /* --mode stats (main_replay_stats.c) */
int cmd_replay_match(int argc, char **argv); /* --match-k (main_replay_match.c) */
int cmd_replay_merge(int argc, char **argv); /* --mode merge (main_replay_merge.c) */

#endif
