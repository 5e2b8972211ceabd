/* paper.h: the olmoe-analyze subcommands of paper_cmd.c (commands: they exit
 * on error): intervals, compare-policies, headroom. */
#ifndef OLMOE_PAPER_H
#define OLMOE_PAPER_H

int olmoe_cmd_intervals(int argc, char **argv);
int olmoe_cmd_compare_policies(int argc, char **argv);
int olmoe_cmd_headroom(int argc, char **argv);

#endif
