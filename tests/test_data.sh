#!/bin/sh
# tests/test_data.sh: the Brown corpus converter (data/convert.sh, data/brown.awk)
# on small hand-written tagged documents, against hand-written expected JSON
# lines; the split rule; its errors; make-data.sh's refusals. No network.
# (tests/test_data_jsonl.c checks the committed data/brown-test.jsonl.)
. tests/lib.sh
D=$FIX/data

# quotes, punctuation spacing, paragraphs, headlines, datelines, doubled ; ? !,
# slashes in words, single quotes, inch marks, JSON escaping of " and \
if sh data/convert.sh "$D" >"$T/got.jsonl" 2>"$T/err" && cmp -s "$T/got.jsonl" "$D/expected.jsonl"; then
    pass fixture_text
else
    fail fixture_text "$(diff "$T/got.jsonl" "$D/expected.jsonl" | head -n 6) $(head -c 200 "$T/err")"
fi

# control characters become \u00XX, CR of CRLF lines is dropped, tabs separate
mkdir "$T/ctl"
printf 'c01 misc\r\n' >"$T/ctl/cats.txt"
printf '\r\n\ta\001b/nn c\037/nn\t./.\r\n' >"$T/ctl/c01"
want='{"doc": "c01", "genre": "misc", "text": "a\u0001b c\u001f."}'
got=$(sh data/convert.sh "$T/ctl" 2>&1)
if [ "$got" = "$want" ]; then pass control_chars; else fail control_chars "got $got"; fi

# the split: within each genre, in cats.txt order, the i-th document (from 0)
# goes to test if i % 10 == 9, to valid if i % 10 == 8, else to train; two
# genres interleaved so that each must be counted on its own
mkdir "$T/sp" "$T/sp/out"
: >"$T/sp/cats.txt"
for i in 00 01 02 03 04 05 06 07 08 09 10 11; do
    echo "d$i big" >>"$T/sp/cats.txt"
    echo "d$i/nn" >"$T/sp/d$i"
    case $i in 00|01|02)
        echo "e$i small" >>"$T/sp/cats.txt"
        echo "e$i/nn" >"$T/sp/e$i" ;;
    esac
done
line() { printf '{"doc": "%s", "genre": "%s", "text": "%s"}\n' "$1" "$2" "$1"; }
{ line d00 big; line e00 small; line d01 big; line e01 small; line d02 big; line e02 small
  for i in 03 04 05 06 07 10 11; do line "d$i" big; done; } >"$T/sp/want-train"
line d08 big >"$T/sp/want-valid"
line d09 big >"$T/sp/want-test"
if sh data/convert.sh -o "$T/sp/out" "$T/sp" 2>"$T/err"; then
    ok=1
    for s in train valid test; do
        cmp -s "$T/sp/out/$s.jsonl" "$T/sp/want-$s" || { ok=0; fail split "$s.jsonl: $(head -c 300 "$T/sp/out/$s.jsonl")"; }
    done
    [ $ok = 1 ] && pass split
    extra=""
    for f in "$T/sp/out"/* "$T/sp/out"/.[!.]*; do
        [ -e "$f" ] || continue
        case ${f##*/} in train.jsonl|valid.jsonl|test.jsonl) ;; *) extra="$extra ${f##*/}" ;; esac
    done
    if [ -z "$extra" ]; then pass split_no_leftovers; else fail split_no_leftovers "left:$extra"; fi
else
    fail split "exit status $?: $(head -c 300 "$T/err")"
fi

# same input, same bytes
sh data/convert.sh "$D" >"$T/again.jsonl" 2>/dev/null
check deterministic cmp -s "$T/got.jsonl" "$T/again.jsonl"

# errors: one line, exit 128, and no output left behind
mkdir "$T/bad" "$T/bad/out"
echo "b01 misc" >"$T/bad/cats.txt"
printf 'fine/jj notag ./.\n' >"$T/bad/b01"
expect_fail token_without_tag "b01: line 1: token 'notag' is not word/tag" \
    sh data/convert.sh -o "$T/bad/out" "$T/bad"
check no_output_on_error test -z "$(ls -A "$T/bad/out")"
printf 'caf\351/nn ./.\n' >"$T/bad/b01"
expect_fail non_ascii "b01: line 1: byte outside ASCII" sh data/convert.sh "$T/bad"
echo "b02 misc" >"$T/bad/cats.txt"
expect_fail missing_document "b02: cannot read" sh data/convert.sh "$T/bad"
echo "b01" >"$T/bad/cats.txt"
expect_fail bad_cats_line "cats.txt: line 1: want 'DOC GENRE'" sh data/convert.sh "$T/bad"
expect_fail no_cats "cats.txt: no such file" sh data/convert.sh "$T"
sh data/convert.sh >/dev/null 2>&1
st=$?
if [ $st -eq 129 ]; then pass usage_exit; else fail usage_exit "exit status $st, want 129"; fi

# make-data.sh: without npm it says how to get it; a wrong tarball is refused
mkdir "$T/bin"
for c in dirname mktemp rm; do ln -s "$(command -v $c)" "$T/bin/$c"; done
expect_fail make_data_no_npm "WITH_NPM=1 make deps" env PATH="$T/bin" /bin/sh data/make-data.sh
echo "not the corpus" | gzip >"$T/fake.tgz"
expect_fail make_data_bad_sha512 "sha512 is" env BROWN_TGZ="$T/fake.tgz" sh data/make-data.sh
