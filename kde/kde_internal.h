/* kde_internal.h (internal to kde/): shared between the files of kde/ only. */
#ifndef OLMOE_KDE_INTERNAL_H
#define OLMOE_KDE_INTERNAL_H

#include <stddef.h>

/* Linear binning of x[0..n) onto the grid lo + j / inv_dx, j < G (bins[G],
 * total n), and x sorted ascending on the way: x is first distributed by
 * grid cell (t = (x - lo) * inv_dx, cell floor(t), which orders like x), then
 * each cell is sorted on its own, in cache. x must lie in [lo, lo + (G-1)/inv_dx]. */
void olmoe_kde_bin_and_sort(float *x /*[n]*/, size_t n, double lo, double inv_dx, int G,
                            double *bins /*[G]*/);

#endif
