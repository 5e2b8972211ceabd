#!/bin/sh
# test_deps_check.sh: `make test` and `make demo` check the Debian packages
# before compiling anything (.ci/install-deps). dpkg-query, id and apt-get are
# replaced by stand-ins on PATH, so the test runs the same as root or not and
# installs nothing: two packages are "missing"; as a user each target must
# print the one apt-get line and stop non-zero with nothing built; as root it
# must ask apt-get for exactly those packages and go on.
. tests/lib.sh
fake=$T/fake
mkdir -p "$fake"
cat >"$fake/dpkg-query" <<'EOF'
#!/bin/sh
for p; do :; done
case " $FAKE_MISSING " in
*" $p "*) printf 'unknown ok not-installed'; exit 1 ;;
*) printf 'install ok installed' ;;
esac
EOF
cat >"$fake/id" <<'EOF'
#!/bin/sh
echo "$FAKE_UID"
EOF
cat >"$fake/apt-get" <<'EOF'
#!/bin/sh
echo "apt-get $*" >>"$FAKE_APT_LOG"
EOF
chmod +x "$fake/dpkg-query" "$fake/id" "$fake/apt-get"

# run_make UID MISSING ARGS...: make in this tree with the stand-ins, outputs
# under $T/TAG; stdout, stderr and exit status in $T/out, $T/err, $rc
run_make() {
    uid=$1 missing=$2; shift 2
    rm -f "$T/apt.log"
    env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS PATH="$fake:$PATH" FAKE_UID="$uid" \
        FAKE_MISSING="$missing" FAKE_APT_LOG="$T/apt.log" \
        make --no-print-directory BUILD="$T/build" BIN="$T/bin" "$@" >"$T/out" 2>"$T/err"
    rc=$?
}
line="apt-get install -y libgsl-dev libxxhash-dev"

for target in test demo; do
    run_make 1000 "libgsl-dev libxxhash-dev" $target
    check user-$target-fails [ "$rc" -ne 0 ]
    check user-$target-one-install-line [ "$(grep -c '^apt-get install' "$T/err")" -eq 1 ]
    check user-$target-the-line grep -qx "$line" "$T/err"
    check user-$target-nothing-built [ ! -e "$T/build" ] && [ ! -e "$T/bin" ]
    check user-$target-no-apt [ ! -e "$T/apt.log" ]
    check user-$target-no-compiler-ran sh -c "! grep -q -- '-c .*\.c -o' '$T/out'"
done

# make deps says the same
run_make 1000 "libgsl-dev" deps
check user-deps-fails [ "$rc" -ne 0 ]
check user-deps-line grep -qx "apt-get install -y libgsl-dev" "$T/err"

# as root: apt-get installs what is missing, then make goes on (-n: prints
# the build it would run)
run_make 0 "libgsl-dev libxxhash-dev" -n demo
check root-demo-goes-on [ "$rc" -eq 0 ]
check root-apt-update grep -qx "apt-get update -qq" "$T/apt.log"
check root-apt-install grep -qx "apt-get install -y -qq --no-install-recommends libgsl-dev libxxhash-dev" "$T/apt.log"
check root-then-builds grep -q -- "-c .*\.c -o $T/build/" "$T/out"

# nothing missing: silent, no apt-get
run_make 1000 "" -n test
check complete-goes-on [ "$rc" -eq 0 ]
check complete-no-apt [ ! -e "$T/apt.log" ]
check complete-silent [ ! -s "$T/err" ]

# make (all) does not check: it never installs anything
run_make 0 "libgsl-dev" -n all
check all-no-check [ ! -e "$T/apt.log" ]
