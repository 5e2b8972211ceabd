/* bigmem.c: see bigmem.h. */
#include "bigmem.h"
#include "common.h"

#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

void *olmoe_xmalloc_big(size_t n, const char *file, int line) {
    if (n < HUGE_PAGE) return olmoe_xmalloc(n, file, line);
    void *p = NULL;
    if (posix_memalign(&p, HUGE_PAGE, n) != 0 || !p)
        die("out of memory allocating %zu bytes at %s:%d", n, file, line);
#ifdef MADV_HUGEPAGE
    madvise(p, n, MADV_HUGEPAGE); /* a hint: failure changes nothing */
#endif
    return p;
}
