/* bigmem.h (part of common.h: include common.h):
 * allocations of hundreds of MiB that are filled once and read
 * through (samples, sort buffers).
 *
 *   float *x = xmalloc_big(xmul(n, sizeof *x));   // dies with file:line on failure
 *   ...
 *   free(x);                                      // plain free()
 *
 * Blocks are 2 MiB aligned and marked for transparent huge pages where the
 * kernel offers them (madvise), so that first touching 1 GiB costs 512 page
 * faults rather than 262144: on virtual machines each fault is microseconds,
 * which made page faults a fifth of olmoe-kde fit's time. Elsewhere it is an
 * ordinary aligned allocation. */
#ifndef OLMOE_BIGMEM_H
#define OLMOE_BIGMEM_H

#include <stddef.h>

void *olmoe_xmalloc_big(size_t n, const char *file, int line);
#define xmalloc_big(n) olmoe_xmalloc_big((n), __FILE__, __LINE__)

#endif
