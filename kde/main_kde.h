/* main_kde.h (internal to kde/): olmoe-kde check (main_kde_check.c), a
 * command: it exits on error. */
#ifndef OLMOE_MAIN_KDE_H
#define OLMOE_MAIN_KDE_H

int olmoe_kde_cmd_check(int argc, char **argv);

#endif
