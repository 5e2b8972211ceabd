#!/bin/sh
# tests/test_layers.sh: the dependency rule, read from the sources. Layers,
# bottom up: common traces kde policy engine capture analyze plot (capture and
# analyze are siblings above the engine; plot sits above analyze). Every
# #include "..." in a layer's .c, .h and .cu files must name a header of its
# own directory, or the public header of a layer below (the one named after
# its directory: common.h, traces.h, ...). Each failure names file:line.
# Also: every layer has its public header, and every other header says in
# its first line that it is internal to its directory or a part of the public
# header. The Makefile enforces the same at compile time (per-layer -I).
# Last: no file names an issue number.
. tests/lib.sh
cd "${LAYERS_ROOT:-.}" || exit 1

# the layers a directory may include from (besides itself)
below() {
    case $1 in
    common) echo "" ;;
    traces) echo "common" ;;
    kde) echo "common traces" ;;
    policy) echo "common traces kde" ;;
    engine) echo "common traces kde policy" ;;
    capture | analyze) echo "common traces kde policy engine" ;;
    plot) echo "common traces kde policy engine analyze" ;;
    esac
}
LAYERS="common traces kde policy engine capture analyze plot"

: >"$T/bad"
for d in $LAYERS; do
    allowed=$(below "$d")
    for f in "$d"/*.c "$d"/*.h "$d"/*.cu; do
        [ -e "$f" ] || continue
        grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" |
            sed 's/^\([0-9]*\):[^"]*"\([^"]*\)".*/\1 \2/' |
            while read -r line hdr; do
                [ -e "$d/$hdr" ] && continue # its own directory
                owner=
                for o in $LAYERS; do
                    if [ -e "$o/$hdr" ]; then owner=$o; break; fi
                done
                if [ -z "$owner" ]; then
                    echo "$f:$line: includes \"$hdr\", a header of no layer" >>"$T/bad"
                    continue
                fi
                ok=0
                for a in $allowed; do [ "$a" = "$owner" ] && ok=1; done
                if [ $ok = 0 ]; then
                    echo "$f:$line: includes \"$hdr\" of $owner/, a layer not below $d/" >>"$T/bad"
                elif [ "$hdr" != "$owner.h" ]; then
                    echo "$f:$line: includes \"$hdr\", internal to $owner/ (include $owner.h)" >>"$T/bad"
                fi
            done
    done
done
none_listed includes "$T/bad" "include(s) break the layer rule"

: >"$T/hdr"
for d in $LAYERS; do
    [ -e "$d/$d.h" ] || echo "$d/: no public header $d.h" >>"$T/hdr"
    for h in "$d"/*.h; do
        [ -e "$h" ] && [ "$h" != "$d/$d.h" ] || continue
        head -n 1 "$h" | grep -q "internal to $d/\|internal to the $d \|part of $d\.h" ||
            echo "$h:1: neither says it is internal to $d/ nor part of $d.h" >>"$T/hdr"
    done
done
none_listed headers "$T/hdr" "header(s) without their first-line role"

# Comments say why, never which issue asked: no source, man page, test,
# bench note or doc names an issue number (tests/test_design_refs.sh checks
# the pointers to the design).
: >"$T/refs"
for f in Makefile README.md */*.c */*.h */*.cu */*.sh */*.py */*.md tests/*/*.c tests/*/*.h tests/*/*.sh \
    tests/*/*.py tests/*/*.md man/* models/*/*.md models/*.py; do
    [ -f "$f" ] || continue
    grep -n -i 'issues\{0,1\} *#\{0,1\}[0-9]\|issue-[0-9]' "$f" | sed "s|^|$f:|" >>"$T/refs"
done
none_listed refs "$T/refs" "line(s) name an issue"
