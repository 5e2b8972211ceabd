#!/bin/sh
# test_shard.sh: olmoe-capture --shard i/N and olmoe-traces merge.
# Shards captured one after another on the CPU, merged, equal the unsharded
# capture bit for bit (every dataset and the totals): document windows on a
# tiny random model, sliding windows over grouped JSON-lines on the bundled
# model, 2 and 3 shards, --batch 1 and 2, virtual and copied merges. The
# merged trace verifies, moves with its shards, reads with h5py; every way a
# set of shards can be wrong is refused with one line naming it.
. tests/lib.sh
CAP="$OLMOE_BIN/olmoe-capture"
TR="$OLMOE_BIN/olmoe-traces"
"$OLMOE_TESTBIN/test_forward_ref" --write-model "$T/model" >/dev/null ||
    { fail setup "cannot write the tiny model"; exit 0; }
awk 'BEGIN { srand(11); for (d = 0; d < 90; d++) { n = 2 + int(rand() * 20); s = "";
     for (i = 0; i < n; i++) s = s " " 1 + int(rand() * 90); print s } }' >"$T/tok.txt"

# run NAME N ARGS...: the unsharded capture NAME.h5 and N shards NAME-i.h5, merged
# into NAME-m.h5 (virtual, shards given in reverse) and NAME-c.h5 (--copy)
run() {
    name=$1 ns=$2
    shift 2
    "$CAP" "$@" --quiet --out "$T/$name.h5" >/dev/null || { fail "$name-full" "exit $?"; return; }
    list=""
    i=0
    while [ $i -lt "$ns" ]; do
        "$CAP" "$@" --quiet --shard $i/"$ns" --out "$T/$name-$i.h5" >/dev/null 2>"$T/err" ||
            { fail "$name-shard$i" "$(head -c 300 "$T/err")"; return; }
        list="$T/$name-$i.h5 $list"
        i=$((i + 1))
    done
    "$TR" merge "$T/$name-m.h5" $list >"$T/merge.out" 2>"$T/err" || { fail "$name-merge" "$(head -c 300 "$T/err")"; return; }
    check "$name-merged-equals-unsharded" same_trace "$T/$name.h5" "$T/$name-m.h5" /groups
    check "$name-merged-verifies" sh -c "'$TR' verify '$T/$name-m.h5' | grep -q 'ok (merged from $ns shards)'"
    "$TR" merge "$T/$name-c.h5" $list --copy >/dev/null 2>"$T/err" || { fail "$name-copy" "$(head -c 300 "$T/err")"; return; }
    check "$name-copy-equals-unsharded" same_trace "$T/$name.h5" "$T/$name-c.h5" /groups
}

run doc2 2 --model "$T/model" --tokens "$T/tok.txt" --ctx 8 --batch 2
# sliding windows (a window's first stored position is not its start), on the
# bundled model: documents of two groups, cut across shards
awk 'BEGIN { srand(5); split("the of a man said time house water night city old people long", w, " ");
     for (d = 0; d < 14; d++) { n = 5 + int(rand() * 60); s = "";
     for (i = 0; i < n; i++) s = s w[1 + int(rand() * 13)] " ";
     printf "{\"genre\": \"%s\", \"text\": \"%s.\"}\n", d % 3 ? "news" : "fiction", s } }' >"$T/docs.jsonl"
M=models/olmoe-brown
J="--model $M --input $T/docs.jsonl --format jsonl --group-field genre --ctx 48 --stride 16"
run stride3 3 $J --batch 2

# the shards' own traces are valid traces of their part of the stream
check shard-verifies sh -c "'$TR' verify '$T/stride3-1.h5' | grep -q ': ok$'"
check merge-prints-totals grep -q "stride3-m.h5: 3 shards merged (virtual datasets): [0-9]* tokens" "$T/merge.out"
check several-documents sh -c "'$TR' info '$T/stride3-m.h5' | grep -q '^documents: *14 in 2 groups (fiction, news)'"
# our reader reads through the virtual datasets (export of the whole nll)
"$TR" export "$T/stride3.h5" --what nll >"$T/a.csv"
"$TR" export "$T/stride3-m.h5" --what nll >"$T/b.csv"
check merged-export-equal sh -c "[ -s '$T/a.csv' ] && cmp -s '$T/a.csv' '$T/b.csv'"

# the set moves together (relative source paths), a missing shard is named
mkdir "$T/moved"
cp "$T/doc2-m.h5" "$T/doc2-0.h5" "$T/doc2-1.h5" "$T/moved/"
check moved-set-verifies sh -c "cd / && '$TR' verify '$T/moved/doc2-m.h5' >/dev/null"
check moved-set-equal same_trace "$T/doc2.h5" "$T/moved/doc2-m.h5" /groups
rm "$T/moved/doc2-1.h5"
"$TR" verify "$T/moved/doc2-m.h5" >"$T/v.out" 2>&1
check missing-shard-fails [ $? -eq 1 ]
check missing-shard-named grep -q "doc2-1.h5: source of /tokens is missing (the shards must stay beside" "$T/v.out"
# every command opening it refuses with one line naming the shard and the fix,
# instead of reading fill values (NaN, -1) for the missing rows
MS="doc2-1.h5: source of /tokens is missing (the shards must stay beside the merged trace, or merge them again with olmoe-traces merge --copy)"
M2="$T/moved/doc2-m.h5"
expect_fail missing-shard-info "$MS" "$TR" info "$M2"
expect_fail missing-shard-export "$MS" "$TR" export "$M2" --what nll
expect_fail missing-shard-replay "$MS" "$OLMOE_BIN/olmoe-replay" "$M2" --model "$T/model" --policy 'topk(k=2)' --quiet
expect_fail missing-shard-analyze "$MS" "$OLMOE_BIN/olmoe-analyze" coactivation "$M2" --quiet
expect_fail missing-shard-kde "$MS" "$OLMOE_BIN/olmoe-kde" fit "$M2" --out "$T/moved/k.h5"
check missing-shard-no-output sh -c "! ls '$T/moved' | grep -q 'results\|k.h5'"
check copy-is-self-contained sh -c "cp '$T/doc2-c.h5' '$T/moved/' && '$TR' verify '$T/moved/doc2-c.h5' >/dev/null"

# h5py (when the system has it) reads the merged trace as the unsharded one
if /usr/bin/python3 -c 'import h5py' 2>/dev/null; then
    check h5py-reads-merged /usr/bin/python3 -c "
import h5py, numpy as np, sys
a = h5py.File('$T/stride3-m.h5', 'r'); b = h5py.File('$T/stride3.h5', 'r')
assert a['router_logits'].is_virtual
for k in ['tokens', 'router_logits', 'baseline/nll', 'baseline/argmax', 'windows', 'documents', 'groups']:
    x, y = a[k][()], b[k][()]
    ok = np.array_equal(x, y) if x.dtype.kind != 'f' else np.array_equal(x, y, equal_nan=True)
    assert ok, k
assert a.attrs['perplexity'] == b.attrs['perplexity']
"
fi

# refusals: one line each, naming the problem
expect_fail missing "a run of 3 shards, 2 given: missing 1" "$TR" merge "$T/x.h5" "$T/stride3-0.h5" "$T/stride3-2.h5"
expect_fail duplicate "both are shard 0/3" "$TR" merge "$T/x.h5" "$T/stride3-0.h5" "$T/stride3-0.h5" "$T/stride3-2.h5"
"$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 8 --batch 1 --quiet --shard 1/2 --out "$T/b1.h5" >/dev/null
"$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 8 --batch 2 --quiet --shard 1/3 --out "$T/s3.h5" >/dev/null
expect_fail other-split "attribute 'shard_count' differs" "$TR" merge "$T/x.h5" "$T/doc2-0.h5" "$T/s3.h5"
expect_fail other-batch "attribute 'batch' differs" "$TR" merge "$T/x.h5" "$T/doc2-0.h5" "$T/b1.h5"
expect_fail not-a-shard "not a shard (no attribute 'shard_index'" "$TR" merge "$T/x.h5" "$T/doc2.h5"
"$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 8 --batch 2 --top-k 1 --quiet --shard 1/2 --out "$T/k1.h5" >/dev/null
expect_fail other-settings "attribute 'top_k' differs" "$TR" merge "$T/x.h5" "$T/doc2-0.h5" "$T/k1.h5"
cp "$T/doc2-1.h5" "$T/inc.h5.partial"
h5modify() { /usr/bin/python3 -c "import h5py; f = h5py.File('$1', 'r+'); f.attrs['complete'] = f.attrs['complete'] * 0" 2>/dev/null; }
if h5modify "$T/inc.h5.partial"; then
    expect_fail incomplete "incomplete (.*windows committed): finish it with olmoe-capture --resume" "$TR" merge "$T/x.h5" "$T/doc2-0.h5" "$T/inc.h5.partial"
fi
check no-output-on-error [ ! -e "$T/x.h5" ] && [ ! -e "$T/x.h5.partial" ]
expect_fail exists "already exists (use --force" "$TR" merge "$T/doc2-m.h5" "$T/doc2-0.h5" "$T/doc2-1.h5"
expect_fail into-a-shard "the output is one of the shards" "$TR" merge "$T/doc2-0.h5" "$T/doc2-0.h5" "$T/doc2-1.h5" --force
expect_fail too-many-shards "use at most" "$CAP" --model "$T/model" --tokens "$T/tok.txt" --ctx 8 --shard 0/1000 --out "$T/y.h5"
expect_fail shard-index "the index must be below the count" "$CAP" --model "$T/model" --tokens "$T/tok.txt" --shard 2/2 --out "$T/y.h5"
expect_fail shard-syntax "is not i/N" "$CAP" --model "$T/model" --tokens "$T/tok.txt" --shard 2 --out "$T/y.h5"
