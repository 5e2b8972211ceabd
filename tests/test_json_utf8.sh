#!/bin/sh
# test_json_utf8.sh: the one rule of every JSON we write (common/json_text.c)
# seen from the commands: JSON holds UTF-8 only, and a string that is not has
# each bad byte sequence as U+FFFD instead of its key quietly left out. A
# trace whose path holds a Latin-1 byte, analysed, replayed (--json, and the
# provenance record in the results file) and summarised by the paper
# commands, gives strict UTF-8 JSON whose "trace" and "command" are there with
# U+FFFD in place of the byte; token texts decoded by a byte-level tokenizer
# (lone bytes that are no UTF-8 by themselves) are U+FFFD, not missing.
. tests/lib.sh
B=$OLMOE_BIN
A="$B/olmoe-analyze"
M=$FIX/tiny-f32
"$B/olmoe-capture" --model "$M" --tokens "$M/tokens.txt" --ctx 24 --device cpu --top-k 4 \
    --out "$T/t.h5" --quiet >/dev/null 2>"$T/err" || { fail setup "$(cat "$T/err")"; exit 0; }
bad="$T/caf$(printf '\351').h5"
cp "$T/t.h5" "$bad"

# strict: the file is UTF-8 (Python refuses anything else) and JSON; then
# the Python expression holds, with d the document and p the path as written
has() { # has FILE EXPR
    python3 - "$@" "$T" <<'PYEOF'
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8", errors="strict"))
p = sys.argv[3] + "/caf\ufffd.h5"
sys.exit(not eval(sys.argv[2]))
PYEOF
}

"$A" coactivation "$bad" --json "$T/co.json" --quiet >/dev/null 2>"$T/err" || fail coactivation_runs "$(cat "$T/err")"
check coactivation_trace has "$T/co.json" 'd["trace"] == p'
check coactivation_command has "$T/co.json" 'p in d["command"]'
"$A" compare "$bad" "$T/t.h5" --json "$T/cmp.json" --quiet >/dev/null 2>"$T/err" || fail compare_runs "$(cat "$T/err")"
check compare_traces has "$T/cmp.json" 'd["trace"] == p and d["trace_b"].endswith("/t.h5")'

# olmoe-brown's byte-level ids 96..223 each decode to one byte that is no
# UTF-8 alone (0xA1..0xFF and the others HF maps past U+0100): U+FFFD
"$A" specialization "$bad" --by token --min-count 1 --top 400 --json "$T/tok.json" \
    --tokenizer models/olmoe-brown/tokenizer.json --quiet >/dev/null 2>"$T/err" || fail token_runs "$(cat "$T/err")"
check token_every_text has "$T/tok.json" 'len(d["ids"]) > 100 and all("text" in t for t in d["ids"]) and all("text" in t for l in d["layers"] for x in l["experts"] for t in x["tokens"])'
check token_lone_byte has "$T/tok.json" 'any(t["id"] == 100 and t["text"] == "\ufffd" for t in d["ids"])'

"$B/olmoe-replay" "$bad" --model "$M" --exact --policy 'topk(k=2)' --json "$T/r.json" --quiet \
    >/dev/null 2>"$T/err" || fail replay_runs "$(cat "$T/err")"
check replay_trace has "$T/r.json" 'd["trace"] == p'
# the provenance record (JSON in an HDF5 attribute) parses: its inputs are
# listed as "role path (checksum)", not shown as the raw attribute
"$B/olmoe-traces" info "$bad" >"$T/info" 2>"$T/err" || fail info_runs "$(cat "$T/err")"
check provenance_inputs grep -q "inputs: trace $T/caf$(printf '\357\277\275').h5 (" "$T/info"
check provenance_command grep -q "^  \\[0\\] [^[].*olmoe-replay '$T/caf$(printf '\357\277\275').h5' " "$T/info"

"$A" intervals "$bad" --resamples 20 --json "$T/i.json" --quiet >/dev/null 2>"$T/err" || fail intervals_runs "$(cat "$T/err")"
check intervals_trace has "$T/i.json" 'd["trace"] == p'

# the source: no writer makes a JSON string of runtime bytes but through the helper
grep -rnE 'json_string(n)?(_nocheck)?\([^")]' --include=*.c common traces kde policy engine capture analyze plot |
    grep -v '^common/json_text\.c:' >"$T/raw"
none_listed raw_json_string "$T/raw" "JSON string(s) made without olmoe_json_str"
