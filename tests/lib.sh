# tests/lib.sh: helpers for the shell tests (sourced).
#   pass NAME / fail NAME WHY     one result line each
#   expect_fail NAME PATTERN CMD...   CMD must exit non-zero and print PATTERN on stderr
#   none_listed NAME FILE WHAT    passes when FILE is empty, else fails with its count and first lines
#   typable SPEC                  the group name a policy spec's results are stored under
#   same_trace A B [DATASET...]       two traces hold the same data (h5diff: NaN = NaN)
# $OLMOE_BIN holds the commands under test; $T is a fresh scratch directory.
set -u
T=$(mktemp -d "${TMPDIR:-/tmp}/olmoe-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
FIX=tests/fixtures
test_name=$(basename "$0" .sh)
pass() { echo "PASS $test_name/$1"; }
fail() { echo "FAIL $test_name/$1: $2"; }
check() { # check NAME CONDITION-COMMAND...
    n=$1; shift
    if "$@"; then pass "$n"; else fail "$n" "'$*' was false"; fi
}
same_trace() { # same_trace A B [DATASET...]: B has A's captured datasets (and those named) and close-time totals
    _st_a=$1 _st_b=$2
    shift 2
    for _st_d in /tokens /token /router_logits /baseline/nll /baseline/argmax /windows /documents "$@"; do
        h5diff -q "$_st_a" "$_st_b" "$_st_d" >/dev/null 2>&1 || { echo "$_st_b: dataset $_st_d differs" >&2; return 1; }
    done
    for _st_t in n_tokens n_windows n_scored nll_sum perplexity complete; do
        _st_x=$(h5dump -a "/$_st_t" "$_st_a" 2>/dev/null | grep '(0)')
        _st_y=$(h5dump -a "/$_st_t" "$_st_b" 2>/dev/null | grep '(0)')
        [ -n "$_st_x" ] && [ "$_st_x" = "$_st_y" ] || { echo "$_st_b: attribute $_st_t: '$_st_x' vs '$_st_y'" >&2; return 1; }
    done
}
expect_fail() { # expect_fail NAME PATTERN CMD...
    n=$1 pat=$2; shift 2
    if "$@" >"$T/stdout" 2>"$T/stderr"; then
        fail "$n" "exit 0, wanted an error matching '$pat'"
    elif ! grep -q -- "$pat" "$T/stderr"; then
        fail "$n" "stderr lacks '$pat': $(head -c 300 "$T/stderr")"
    elif [ "$(wc -l <"$T/stderr")" -gt 3 ]; then
        fail "$n" "error is not short: $(head -c 300 "$T/stderr")"
    else
        pass "$n"
    fi
}
none_listed() { # none_listed NAME FILE WHAT: FILE holds one problem a line (all go to stderr)
    if [ -s "$2" ]; then
        sed 's/^/    /' "$2" >&2
        fail "$1" "$(wc -l <"$2") $3: $(head -n 3 "$2" | tr '\n' ' ')"
    else
        pass "$1"
    fi
}
typable() { # olmoe-trace(5) RESULTS: runs of [^A-Za-z0-9] -> one "_", none at either end
    printf '%s\n' "$1" | LC_ALL=C sed 's/[^A-Za-z0-9][^A-Za-z0-9]*/_/g; s/^_//; s/_$//'
}
