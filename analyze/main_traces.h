/* main_traces.h (internal to analyze/): parts of olmoe-traces in files of
 * their own, main_traces_*.c, linked into olmoe-traces only. */
#ifndef OLMOE_MAIN_TRACES_H
#define OLMOE_MAIN_TRACES_H

#include <hdf5.h>

/* info: every stored result of the trace at path (open as trace) with the
 * command that made it; dies on an unreadable results file */
void cmd_traces_print_results(const char *path, hid_t trace);

#endif
