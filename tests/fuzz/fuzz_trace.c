/* fuzz_trace.c: the trace reader and verifier (fuzz_trace_check.h) on traces
 * built from the fuzz bytes by fuzz_trace_build.h: well-formed HDF5 whose
 * content breaks olmoe-trace(5) in every way. FUZZ_TRACE_DUMP=FILE writes the
 * built image (how the seeds of fuzz_trace_image were made). */
#include "fuzz.h"
#include "fuzz_trace_build.h"
#include "fuzz_trace_check.h"

FUZZ_TARGET(trace) {
    fuzz_bytes in = {data, size};
    olmoe_h5_init();
    size_t n;
    void *image = trace_build(&in, &n);
    if (!image) return 0;
    const char *dump = getenv("FUZZ_TRACE_DUMP");
    if (dump) fuzz_write_file(dump, image, n);
    trace_check_image(image, n);
    free(image);
    return 0;
}
