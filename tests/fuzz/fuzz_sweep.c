/* fuzz_sweep.c: bytes as a sweep file (one policy spec a line, '#'
 * comments) for olmoe_policy_set_add_sweep, then bound and routed as in
 * fuzz_policy_check.h. Errors must be one line naming the file (and the line).
 * The file part may be followed by "\xff\xfe", an E byte and logits. */
#include "fuzz.h"
#include "fuzz_policy_check.h"
#include "policy.h"

FUZZ_TARGET(sweep) {
    static char path[300];
    if (!path[0]) fuzz_path(path, sizeof path, "sweep.txt");
    const uint8_t *text, *bin;
    size_t nt, nb;
    fuzz_split(data, size, "\xff\xfe", &text, &nt, &bin, &nb);
    int E = 64, norm = 0;
    if (nb) {
        E = bin[0] == 0xFF ? OLMOE_POLICY_MAX_E : 1 + bin[0] % 96;
        norm = bin[0] & 0x80 ? 1 : 0;
        bin++, nb--;
    }
    fuzz_write_file(path, text, nt);
    olmoe_policy_set set = {0};
    if (olmoe_policy_set_add_sweep(&set, path) == 0) {
        FUZZ_ASSERT(set.n >= 1 && set.n <= OLMOE_POLICY_MAX_SWEEP, "%d policies", set.n);
        pc_check_set(&set, bin, nb, E, norm);
    } else {
        FUZZ_ERROR_NAMES(path);
    }
    olmoe_policy_set_free(&set);
    return 0;
}
