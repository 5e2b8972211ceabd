/* main_analyze.h (internal to analyze/): the olmoe-analyze subcommands of
 * main_analyze_paper.c (commands: they exit on error): intervals,
 * compare-policies, headroom. */
#ifndef OLMOE_MAIN_ANALYZE_H
#define OLMOE_MAIN_ANALYZE_H

int olmoe_cmd_intervals(int argc, char **argv);
int olmoe_cmd_compare_policies(int argc, char **argv);
int olmoe_cmd_headroom(int argc, char **argv);

#endif
