/* synth_trace.c: writes a synthetic trace (tests/test_stats_synth.h) for
 * timing olmoe-kde fit and olmoe-replay --mode stats; built and run by
 * bench/stats_bench.sh. usage: synth_trace OUT N_TOKENS [L E GROUPS SEED] */
#include "../tests/test_stats_synth.h"

int main(int argc, char **argv) {
    olmoe_set_prog(argv[0]);
    if (argc < 3) die_usage("usage: synth_trace OUT N_TOKENS [L E GROUPS SEED]");
    long n, L = 16, E = 64, groups = 15, seed = 1;
    if (olmoe_parse_long(argv[2], 1, 1L << 40, &n) != 0 ||
        (argc > 3 && olmoe_parse_long(argv[3], 1, 1024, &L) != 0) ||
        (argc > 4 && olmoe_parse_long(argv[4], 1, 256, &E) != 0) ||
        (argc > 5 && olmoe_parse_long(argv[5], 0, 1000, &groups) != 0) ||
        (argc > 6 && olmoe_parse_long(argv[6], 1, 1L << 62, &seed) != 0))
        die_usage("%s", olmoe_error());
    olmoe_out out;
    if (olmoe_out_begin(&out, argv[1], 1) != 0) die("%s", olmoe_error());
    double t0 = olmoe_now();
    if (synth_trace_write(out.tmp, n, (int)L, (int)E, E < 8 ? (int)E : 8, 0, (int)groups, 2048,
                          OLMOE_DTYPE_F32, (uint64_t)seed) != 0)
        die("%s", olmoe_error());
    if (olmoe_out_commit(&out) != 0) die("%s", olmoe_error());
    notef("%s: %ld tokens x %ld layers x %ld experts in %.1f s", argv[1], n, L, E, olmoe_now() - t0);
    return 0;
}
