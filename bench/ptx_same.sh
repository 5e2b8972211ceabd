#!/bin/sh
# ptx_same.sh BASE [REV]: which CUDA files' device code differs between two
# commits (REV defaults to HEAD), by the PTX nvcc makes for sm_90a. It needs
# nvcc, no GPU: a refactor of the CUDA files whose PTX is unchanged changed
# only host code. Prints "same FILE" or "differs FILE (N lines)" per file and
# exits 1 when any differs.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 BASE [REV]" >&2; exit 2; }
base=$1 rev=${2:-HEAD}
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
[ -x "$nvcc" ] || { echo "$0: no nvcc (set NVCC)" >&2; exit 2; }
top=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for c in "$base" "$rev"; do
    d=$tmp/$(git -C "$top" rev-parse --short "$c")
    mkdir -p "$d/ptx"
    git -C "$top" archive "$c" common traces kde policy engine | tar -x -C "$d"
    for f in "$d"/engine/*.cu; do
        (cd "$d" && "$nvcc" -O2 -gencode=arch=compute_90a,code=sm_90a -std=c++17 -DOLMOE_HAVE_CUDA \
            -Icommon -Itraces -Ikde -Ipolicy -Iengine -I/usr/include/hdf5/serial \
            -ptx "engine/${f##*/}" -o "ptx/$(basename "$f" .cu).ptx")
    done
done

a=$tmp/$(git -C "$top" rev-parse --short "$base")/ptx
b=$tmp/$(git -C "$top" rev-parse --short "$rev")/ptx
status=0
for f in $(ls "$a" "$b" | grep '\.ptx$' | sort -u); do
    if [ ! -f "$a/$f" ] || [ ! -f "$b/$f" ]; then
        echo "only in $([ -f "$a/$f" ] && echo "$base" || echo "$rev"): $f"
        status=1
    elif cmp -s "$a/$f" "$b/$f"; then
        echo "same $f"
    else
        echo "differs $f ($(diff "$a/$f" "$b/$f" | grep -c '^[<>]') lines)"
        status=1
    fi
done
exit $status
