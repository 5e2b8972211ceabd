#!/bin/sh
# test_arch_cli.sh: the commands on Qwen3-MoE, Mixtral and Qwen2-MoE
# checkpoints (tiny ones from test_forward_ref --write-model DIR ARCH):
# capture records the architecture and the shared expert; kde, replay (its
# self-check replays the captured top-k through replay_cpu's own expert,
# shared-expert and norm code against the capture's NLL), --exact (equal to
# the capture), stats and an analysis run unchanged; a checkpoint with dense
# layers, an unknown model_type and the CUDA engine (where built) are refused
# in one line.
. tests/lib.sh
B=$OLMOE_BIN
awk 'BEGIN { srand(5); for (d = 0; d < 3; d++) { s = ""; n = 20 + 17 * d;
      for (i = 0; i < n; i++) s = s (i ? " " : "") int(rand() * 97); print s } }' >"$T/tok.txt"
attr() { h5dump -a "/$2" "$1" 2>/dev/null | sed -n 's/^ *(0): //p' | tr -d '"'; }

for arch in qwen3_moe mixtral qwen2_moe; do
    M=$T/$arch
    if ! "$OLMOE_TESTBIN/test_forward_ref" --write-model "$M" $arch >/dev/null 2>"$T/err"; then
        fail "${arch}_setup" "$(cat "$T/err")"
        continue
    fi
    if ! "$B/olmoe-capture" --model "$M" --tokens "$T/tok.txt" --ctx 24 --device cpu --save-residuals \
        --out "$T/$arch.h5" --quiet >"$T/cap" 2>"$T/err"; then
        fail "${arch}_capture" "$(cat "$T/err")"
        continue
    fi
    pass "${arch}_capture"
    check "${arch}_architecture" test "$(attr "$T/$arch.h5" architecture)" = $arch
    shared=0
    [ $arch = qwen2_moe ] && shared=1
    check "${arch}_shared_experts" test "$(attr "$T/$arch.h5" shared_experts)" = $shared
    check "${arch}_verifies" sh -c "'$B/olmoe-traces' verify '$T/$arch.h5' >/dev/null"
    check "${arch}_kde" sh -c "'$B/olmoe-kde' fit '$T/$arch.h5' --out '$T/$arch.null.h5' --quiet >/dev/null 2>&1"
    "$B/olmoe-replay" "$T/$arch.h5" --model "$M" --policy topk --k 1,2 --kde "$T/$arch.null.h5" \
        --quiet >"$T/rep" 2>"$T/err" || fail "${arch}_replay" "$(cat "$T/err")"
    # the captured top-2 replayed with bfloat16 residuals: NLL within a few 1e-3 relative
    rel=$(sed -n 's/^# self-check: .*(relative \([0-9.e+-]*\)).*/\1/p' "$T/rep")
    check "${arch}_replay_self_check" awk -v r="${rel:-9}" 'BEGIN { exit !(r < 0.01) }'
    ppl=$(sed -n 's/^perplexity \([0-9.]*\) .*/\1/p' "$T/cap")
    "$B/olmoe-replay" "$T/$arch.h5" --model "$M" --policy topk --k 2 --exact --quiet >"$T/ex" 2>"$T/err" ||
        fail "${arch}_exact" "$(cat "$T/err")"
    exact=$(awk '$1 == "exact" { print $3 }' "$T/ex")
    check "${arch}_exact_equals_capture" awk -v a="${exact:-0}" -v b="${ppl:-1}" \
        'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * b) }'
    check "${arch}_stats" sh -c "'$B/olmoe-replay' '$T/$arch.h5' --mode stats --policy 'bh(alpha=0.1,max_k=4)' \
        --kde '$T/$arch.null.h5' --quiet >/dev/null 2>&1"
    check "${arch}_analyze" sh -c "'$B/olmoe-analyze' coactivation '$T/$arch.h5' --in-trace >/dev/null 2>&1"
done

"$OLMOE_TESTBIN/test_forward_ref" --write-model "$T/dense" qwen3_moe dense >/dev/null
expect_fail dense_layers_refused "1 of its 3 layers are dense" \
    "$B/olmoe-capture" --model "$T/dense" --tokens "$T/tok.txt" --out "$T/dense.h5"
sed 's/"qwen3_moe"/"deepseek_v3"/' "$T/dense/config.json" >"$T/cfg" && mv "$T/cfg" "$T/dense/config.json"
expect_fail unknown_model_type 'model_type "deepseek_v3" is not supported (supported: olmoe, qwen3_moe, mixtral, qwen2_moe)' \
    "$B/olmoe-capture" --model "$T/dense" --tokens "$T/tok.txt" --out "$T/dense.h5"
if "$B/olmoe-capture" --help 2>&1 | grep -q 'cuda' && [ -n "$(command -v nvidia-smi)" ]; then
    expect_fail cuda_refuses_other_architectures "the CUDA engine runs olmoe checkpoints only" \
        "$B/olmoe-capture" --model "$T/mixtral" --tokens "$T/tok.txt" --device cuda --out "$T/cu.h5"
fi
