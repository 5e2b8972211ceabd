#!/bin/sh
# test_design_refs.sh: docs/DESIGN.md and the pointers to it stay true as
# files move. Every "DESIGN.md §N" (also "§N-M", "section N", the man pages'
# "\(scN") in the sources, man pages, bench notes, models and README names a
# section that DESIGN.md has, as do DESIGN.md's own "§N"; every repository
# path DESIGN.md names (braces expanded, globs matched) and every source or
# test file it names by its bare name exists. Each failure names file:line.
. tests/lib.sh
D=docs/DESIGN.md

grep -oE '^## [0-9]+\.' "$D" | grep -oE '[0-9]+' >"$T/sections"
# the tree's own files (not build outputs, data or hidden directories)
find . \( -name '.?*' -o -path ./build -o -path './build-*' -o -path ./bin -o -path './bin-*' \
    -o -path ./demo-out -o -path ./data/brown -o -path ./data/raw -o -path ./data/node_modules \) -prune \
    -o -type f -print | sed 's|^\./||' >"$T/files"

# file:line<TAB>N for every section number a pointer to DESIGN.md cites
# (the pointer may continue on the next comment line: "DESIGN.md\n * §2")
grep -E '\.(c|h|cu|sh|py|md)$|^man/|^Makefile$' "$T/files" | grep -v "^$D\$" | xargs perl -ne '
    my $line = $_;
    my $text = $pend ne "" ? $pend . " " . $line : $line;
    my $at = $pend ne "" ? $. - 1 : $.;
    $pend = "";
    while ($text =~ /DESIGN\.md(.*)$/mg) {
        my $tail = $1;
        if ($tail =~ /^\s*$/ && $text eq $line) { $pend = "DESIGN.md"; next; }
        $tail =~ s/^[\s*#]*//;
        $tail =~ s/[).;:"].*$//;
        while ($tail =~ /(?:§|\\\(sc|section )(\d+)(?:-(\d+))?/g) {
            print "$ARGV:$at\t$1\n";
            print "$ARGV:$at\t$2\n" if defined $2;
        }
    }
    if (eof) { close ARGV; $pend = ""; }
' >"$T/cited"
# DESIGN.md's own references
grep -noE '§[0-9]+' "$D" | sed 's/^\([0-9]*\):§/'"$(echo "$D" | sed 's/\//\\\//g')"':\1\t/' >>"$T/cited"

: >"$T/bad"
while IFS="$(printf '\t')" read -r where n; do
    grep -qx "$n" "$T/sections" || echo "$where: cites DESIGN.md §$n, which does not exist" >>"$T/bad"
done <"$T/cited"
if [ ! -s "$T/cited" ]; then
    fail sections "found no pointer to DESIGN.md at all (the scan is broken)"
else
    none_listed sections "$T/bad" "pointer(s) to missing sections"
fi

# no pointer to a notes file this repository does not have
grep -E '\.(c|h|cu|sh|py|md)$|^man/|^Makefile$' "$T/files" | grep -v '^tests/test_design_refs.sh$' |
    xargs grep -n 'contracts\.md' >"$T/contracts"
if [ -s "$T/contracts" ]; then
    fail contracts "points to contracts.md, which is not in the repository: $(head -n 3 "$T/contracts" | tr '\n' ' ')"
else
    pass contracts
fi

# repository paths DESIGN.md names: dir/... with a known top directory, not
# an HDF5 path (those follow a '/')
: >"$T/missing"
grep -noE '(^|[^/A-Za-z0-9_.])(common|traces|kde|policy|engine|capture|analyze|plot|tests|man|bench|models|data|docs|\.ci)/[A-Za-z0-9_.{},*/-]*' "$D" |
    sed 's/^\([0-9]*\):[^a-z.]*/\1 /; s/[.,]*$//' | while read -r line p; do
    case $p in *...) continue ;; esac
    # every expansion of a {a,b} must exist; a glob must match something
    for x in $(echo "$p" | perl -ne 'chomp; if (/^(.*)\{([^}]*)\}(.*)$/) { print "$1$_$3\n" for split /,/, $2 } else { print "$_\n" }'); do
        found=0
        for m in $x; do [ -e "$m" ] && found=1; done
        [ $found = 1 ] || echo "$D:$line: names $x, which does not exist" >>"$T/missing"
    done
done
# bare file names in backticks or table cells: somewhere in the tree
grep -noE '(`|\| |, |\()[A-Za-z0-9_]+\.(c|h|cu|sh|py)\b' "$D" | sed 's/^\([0-9]*\):[`|,( ]*/\1 /' |
    while read -r line name; do
        case $name in *NAME*) continue ;; esac # a pattern: main_NAME.c
        grep -qE "(^|/)$name\$" "$T/files" || echo "$D:$line: names $name, which no file of the tree is" >>"$T/missing"
    done
none_listed paths "$T/missing" "name(s) of missing files"
