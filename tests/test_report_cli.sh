#!/bin/sh
# test_report_cli.sh: olmoe-report as a command: real olmoe-analyze results
# drawn, the scripts rerun standalone, --force rules, clear errors for missing
# or wrong inputs, gnuplot failures and the png fallback, nothing left behind
# on an error or an interrupt. (test_report.c checks the figures and numbers.)
. tests/lib.sh
B=$OLMOE_BIN
if ! "$OLMOE_TESTBIN/test_report" --write "$T/run.h5" "$T/stats.h5" "$T/null.h5" 2>"$T/err"; then
    fail setup "$(cat "$T/err")"
    exit 0
fi
R() { "$B/olmoe-report" "$@"; }
nothing_left() { [ ! -e "$1" ] && [ ! -e "$1.partial" ]; }

# ---- real olmoe-analyze results, in a results file of their own ----
ok=1
for a in coactivation flow; do
    "$B/olmoe-analyze" $a "$T/run.h5" --out "$T/an_$a.h5" --name real --quiet >/dev/null 2>>"$T/err" || ok=0
done
"$B/olmoe-analyze" specialization "$T/run.h5" --by group --out "$T/an_sg.h5" --name real --quiet >/dev/null 2>>"$T/err" || ok=0
if [ $ok = 1 ] && R "$T/stats.h5" "$T/an_coactivation.h5" "$T/an_flow.h5" "$T/an_sg.h5" --out "$T/an" \
    --format png --quiet >/dev/null 2>"$T/err"; then
    pass analyze_results
else
    fail analyze_results "$(cat "$T/err")"
fi
for f in coactivation_real flow_real specialization_group_real; do
    check "png_$f" test -s "$T/an/$f.png"
done
check analyze_in_md grep -q '^### coactivation: `real`' "$T/an/report.md"
# the stats file names its trace: the provenance comes from it
check provenance_from_results grep -q '| corpus | `synth.jsonl` |' "$T/an/report.md"

# ---- reports to work on (few figures: gnuplot starts slowly on small machines) ----
"$OLMOE_TESTBIN/test_report" --write-trace "$T/bare.h5" 2>/dev/null
BARE="$T/bare.h5 --kde $T/null.h5"   # three null figures
if R "$T/stats.h5" --out "$T/rep" --format png,svg --quiet >/dev/null 2>"$T/err"; then pass stats_only
else fail stats_only "$(cat "$T/err")"; fi
check stats_only_no_quality test ! -e "$T/rep/quality.png" -a -s "$T/rep/sweep.svg"
if R $BARE --out "$T/bare_rep" --format png --quiet >/dev/null 2>"$T/err"; then pass bare_with_kde
else fail bare_with_kde "$(cat "$T/err")"; fi
check bare_null_fig test -s "$T/bare_rep/null_pdf.png"
# each script redraws its figure on its own, from the report directory
rm -f "$T/rep/sweep.png" "$T/rep/sweep.svg" "$T/bare_rep/null_cdf.png"
if (cd "$T/rep" && gnuplot sweep.gp && cd "$T/bare_rep" && gnuplot -e 'formats="png"' null_cdf.gp) 2>"$T/err"; then
    pass standalone_scripts
else
    fail standalone_scripts "$(cat "$T/err")"
fi
check standalone_outputs test -s "$T/rep/sweep.png" -a -s "$T/rep/sweep.svg" -a -s "$T/bare_rep/null_cdf.png"

# ---- --force rules ----
expect_fail exists "rep: already exists (use --force" R "$T/run.h5" --out "$T/rep"
if R $BARE --out "$T/rep" --force --format png --quiet >/dev/null 2>"$T/err"; then pass force_replaces
else fail force_replaces "$(cat "$T/err")"; fi
check force_new_content test ! -e "$T/rep/sweep.png" -a -e "$T/rep/null_cdf.png"
check force_no_old sh -c "! ls '$T' | grep -q 'rep.old'"
mkdir "$T/thesis" && echo draft >"$T/thesis/chapter1.tex"
expect_fail force_user_dir "not an earlier output; refusing" R "$T/run.h5" --out "$T/thesis" --force
check user_dir_kept test -s "$T/thesis/chapter1.tex"
mkdir -p "$T/nested/sub" && touch "$T/nested/report.md"
expect_fail force_subdir "not a plain file" R "$T/run.h5" --out "$T/nested" --force
echo x >"$T/afile"
expect_fail out_is_file "not a directory" R "$T/run.h5" --out "$T/afile" --force
mkdir "$T/empty"
if R $BARE --out "$T/empty/" --force --format png --quiet >/dev/null 2>"$T/err"; then pass force_empty_dir
else fail force_empty_dir "$(cat "$T/err")"; fi
mkdir "$T/stale.partial" && touch "$T/stale.partial/junk.dat"
if R $BARE --out "$T/stale" --format png --quiet >/dev/null 2>"$T/err"; then pass stale_partial
else fail stale_partial "$(cat "$T/err")"; fi
check stale_removed test ! -e "$T/stale.partial" -a ! -e "$T/stale/junk.dat"

# ---- inputs ----
expect_fail missing_input "none.h5: No such file" R "$T/none.h5" --out "$T/r1"
check missing_nothing_left nothing_left "$T/r1"
echo "not hdf5" >"$T/text.h5"
expect_fail not_hdf5 "text.h5: .*not an HDF5 file" R "$T/text.h5" --out "$T/r1"
expect_fail null_as_input "is a null distribution (olmoe-kde), not results: give it with --kde" R "$T/null.h5" --out "$T/r1"
expect_fail no_results "bare.h5: no results to report" R "$T/bare.h5" --out "$T/r1"
expect_fail missing_kde "nokde.h5" R "$T/run.h5" --kde "$T/nokde.h5" --out "$T/r1"
expect_fail kde_not_null "not a null distribution" R "$T/run.h5" --kde "$T/run.h5" --out "$T/r1"
expect_fail unknown_policy "--policy topk(k=3,norm=model): no results for it" R "$T/run.h5" --policy 'topk(k=3)' --out "$T/r1"
expect_fail unknown_load_policy "--load-policy bh(alpha=0.5): no results for it" R "$T/run.h5" --load-policy 'bh(alpha=0.5)' --out "$T/r1"
check unknown_policy_nothing_left nothing_left "$T/r1"
expect_fail bad_format "unknown format 'gif'" R "$T/run.h5" --format png,gif --out "$T/r1"
expect_fail no_out "--out DIR is required" R "$T/run.h5"
R "$T/run.h5" >/dev/null 2>&1
check usage_129 test $? -eq 129
# a bad --format is a usage error too (man page, EXIT STATUS), found before any input is read
R "$T/run.h5" --format gif --out "$T/r1" >/dev/null 2>&1
check bad_format_129 test $? -eq 129
R "$T/no-such.h5" --format png,gif --out "$T/r1" >/dev/null 2>"$T/err"
check bad_format_first grep -q "unknown format 'gif'" "$T/err"
# an empty --gnuplot (an unset variable) is refused, not taken for the default
expect_fail gnuplot_empty "usage: --gnuplot: empty program name" R "$T/run.h5" --gnuplot '' --out "$T/r1"
R "$T/run.h5" --gnuplot '' --out "$T/r1" >/dev/null 2>&1
check gnuplot_empty_129 test $? -eq 129
check gnuplot_empty_nothing_left nothing_left "$T/r1"
expect_fail no_input "no results file given" R --out "$T/r1"

# ---- gnuplot ----
expect_fail no_gnuplot "cannot run it (install gnuplot" R "$T/run.h5" --gnuplot "$T/no-such-gnuplot" --out "$T/r1"
check no_gnuplot_nothing_left nothing_left "$T/r1"
GP=$(command -v gnuplot)
# a gnuplot that probes fine but fails on one figure's script
cat >"$T/badgp" <<EOF
#!/bin/sh
case "\$1" in -e) exec "$GP" "\$@" ;; esac
case "\$1" in null_cdf.gp) echo '"null_cdf.gp" line 9: undefined variable: boom' >&2; exit 1 ;; esac
exec "$GP" "\$@"
EOF
chmod +x "$T/badgp"
expect_fail gnuplot_fails "null_cdf.gp: gnuplot exited with status 1: \"null_cdf.gp\" line 9: undefined variable: boom" \
    R $BARE --gnuplot "$T/badgp" --format png --out "$T/r2"
check gnuplot_fails_nothing_left nothing_left "$T/r2"
# gnuplot's warnings go to the report's gnuplot.log, not to the terminal
cat >"$T/warngp" <<EOF
#!/bin/sh
case "\$1" in -e) exec "$GP" "\$@" ;; esac
echo "\"\$1\" line 3: warning: Skipping data file with no valid points" >&2
exec "$GP" "\$@"
EOF
chmod +x "$T/warngp"
if R $BARE --gnuplot "$T/warngp" --format png --out "$T/rw" >/dev/null 2>"$T/err"; then pass gnuplot_warns
else fail gnuplot_warns "$(cat "$T/err")"; fi
check gnuplot_warning_not_shown sh -c "! grep -q 'Skipping data file' '$T/err'"
check gnuplot_warning_logged grep -q '^"null_cdf.gp" line 3: warning: Skipping' "$T/rw/gnuplot.log"
# a gnuplot without cairo: the png terminal, with a warning
cat >"$T/nocairo" <<EOF
#!/bin/sh
case "\$*" in *"set terminal pngcairo"*|*"set terminal pdfcairo"*) exit 1 ;; esac
exec "$GP" "\$@"
EOF
chmod +x "$T/nocairo"
if R $BARE --gnuplot "$T/nocairo" --out "$T/r3" >/dev/null 2>"$T/err"; then pass png_fallback
else fail png_fallback "$(cat "$T/err")"; fi
check png_fallback_warns grep -q "no pngcairo terminal, the PNGs are drawn with the png (libgd) terminal" "$T/err"
check png_fallback_png sh -c "head -c 4 '$T/r3/null_pdf.png' | grep -q PNG"
check png_fallback_no_pdf test ! -e "$T/r3/null_pdf.pdf" -a -s "$T/r3/null_pdf.svg"
expect_fail pdf_unavailable "no pdfcairo terminal" R "$T/run.h5" --gnuplot "$T/nocairo" --format pdf --out "$T/r4"

# ---- an interrupt (SIGTERM: background jobs of sh ignore SIGINT) leaves nothing ----
cat >"$T/slowgp" <<EOF
#!/bin/sh
case "\$1" in -e) exec "$GP" "\$@" ;; esac
sleep 2
exec "$GP" "\$@"
EOF
chmod +x "$T/slowgp"
"$B/olmoe-report" $BARE --gnuplot "$T/slowgp" --jobs 1 --format png --out "$T/r5" --quiet >/dev/null 2>/dev/null &
pid=$!
sleep 1
kill -TERM $pid
wait $pid
check interrupt_status test $? -ne 0
sleep 0.2
if nothing_left "$T/r5"; then pass interrupt_nothing_left
else fail interrupt_nothing_left "$(ls -la "$T" "$T/r5.partial" 2>&1 | tr '\n' ' ')"; fi
check interrupt_no_lock_left test ! -e "$T/r5.lock"

check help sh -c "'$B/olmoe-report' --help | grep -q -- '--load-policy ID'"
check man_page test -s man/olmoe-report.1
