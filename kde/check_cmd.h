/* check_cmd.h: olmoe-kde check (check_cmd.c), a command: it exits on error. */
#ifndef OLMOE_CHECK_CMD_H
#define OLMOE_CHECK_CMD_H

int olmoe_kde_cmd_check(int argc, char **argv);

#endif
