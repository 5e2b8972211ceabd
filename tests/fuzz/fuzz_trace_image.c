/* fuzz_trace_image.c: raw bytes as an HDF5 trace file, through every trace
 * reader (fuzz_trace_check.h). Seeds are small real traces (written by
 * fuzz_trace with FUZZ_TRACE_DUMP, and by olmoe-capture); byte mutations
 * mostly meet HDF5's metadata checksums, but the raw data (windows, ids,
 * logits) and HDF5's own parsing of damaged files are reached. */
#include "fuzz.h"
#include "fuzz_trace_check.h"

FUZZ_TARGET(trace_image) {
    if (size < 8) return 0;
    olmoe_h5_init();
    void *image = malloc(size);
    if (!image) abort();
    memcpy(image, data, size);
    trace_check_image(image, size);
    free(image);
    return 0;
}
