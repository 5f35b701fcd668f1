#!/usr/bin/env bash
# The README's shell blocks marked <!-- run: NAME --> run as written (only build/ and the
# state directories are pointed at this test's): the by-hand Alphabet worker, the 3-worker
# cluster with the metrics (a real Prometheus) and grow-and-shrink blocks inside it, the
# tutorial with its kill -9 and its unit test. Each block must end by itself with what it
# started stopped; the ports are the README's own.
source "$(dirname "$0")/lib.sh"
watchdog 240

block() { # block NAME: the shell block after <!-- run: NAME ...-->, paths made this test's
    awk -v name="$1" '
        index($0, "<!-- run: " name) == 1 { want = 1; next }
        want && /^```sh$/ { inside = 1; next }
        inside && /^```$/ { exit }
        inside { print }' "$SRC/README.md" |
        sed "s|build/|$BUILD/|g; s|/var/tmp/roo/|$T/state/|g; s|/tmp/sums|$T/state/sums|g"
}
readme_ports=(5001 5002 5003 6000 6001 6002 6012 6020 6021 6022 6032 7002 7010 7011 7012 7013 9090)
for p in "${readme_ports[@]}"; do
    port_busy "$p" && skip "port $p, which the README's blocks use, is taken on this machine"
done
run_block() { # run_block NAME FILE: run it in $T/work with a time limit; output in $T/NAME.out
    local rc=0
    mkdir -p "$T/work" "$T/state"
    # Its own session, so that whatever it leaves running is stopped with it.
    (cd "$T/work" && exec setsid timeout 120 bash "$2") >"$T/$1.out" 2>"$T/$1.err" &
    PIDS[block]=$!
    wait "${PIDS[block]}" || rc=$?
    kill -9 -- "-${PIDS[block]}" 2>/dev/null || true
    unset "PIDS[block]"
    [ "$rc" = 0 ] || fail "README block '$1' failed (exit $rc): $(tail -5 "$T/$1.err")"
}

block by-hand >"$T/by-hand.sh"
grep -q 'roo-sender' "$T/by-hand.sh" || fail "no by-hand block in the README"
run_block by-hand "$T/by-hand.sh"
grep -q 'records=1000000' "$T/by-hand.err" "$T/by-hand.out" ||
    fail "by-hand: the sink did not get 1,000,000 outputs: $(tail -3 "$T/by-hand.err")"

# The metrics and grow blocks belong inside the cluster block, before the shutdown line
# (metrics first: it counts the cluster's 1,000,000 votes before the grow sends more).
block cluster >"$T/cluster-only.sh"
block metrics >"$T/metrics.sh"
block grow >"$T/grow.sh"
grep -q 'shutdown' "$T/cluster-only.sh" && grep -q -- '--join' "$T/grow.sh" &&
    grep -q prometheus "$T/metrics.sh" || fail "no cluster, metrics or grow block in the README"
cat "$T/metrics.sh" "$T/grow.sh" >"$T/inside.sh"
awk -v inside="$T/inside.sh" '/roo-ctl .*shutdown/ { while ((getline l < inside) > 0) print l }
    { print }' "$T/cluster-only.sh" >"$T/cluster.sh"
mkdir -p "$T/work/config"
cp "$SRC/config/prometheus.yml" "$T/work/config/"
run_block cluster "$T/cluster.sh"
grep -q '"worker_count": 3' "$T/cluster.out" || fail "cluster: no status with 3 workers"
grep -q '"values": {' "$T/cluster.out" || fail "cluster: no query answer"
grep -q '^roo_source_frames_total{worker=' "$T/cluster.out" || fail "metrics: no /metrics answer"
grep -q '"value":\[[0-9.]*,"1000000"\]' "$T/cluster.out" ||
    fail "metrics: Prometheus did not sum the 1,000,000 frames: $(grep -m1 result "$T/cluster.out")"
grep -q '"done": true' "$T/cluster.out" || fail "cluster: the shrink did not finish"
grep -q '"shutting_down": true' "$T/cluster.out" || fail "cluster: no shutdown"

block tutorial >"$T/tutorial.sh"
cp "$SRC/include" -r "$T/work/include" 2>/dev/null || true
sed -n '/<!-- tutorial:sums.c begin -->/,/<!-- tutorial:sums.c end -->/p' "$SRC/README.md" |
    sed '1,2d;$d' | sed '$d' >"$T/work/sums.c"
san=$(meson introspect --buildoptions "$BUILD" 2>/dev/null |
    grep -Eo '"name": "b_sanitize", "value": "[a-z,]+"' | sed 's/.*"value": "//; s/"$//' || true)
[ -n "$san" ] && [ "$san" != none ] && sed -i "s|^cc |cc -fsanitize=$san |" "$T/tutorial.sh"
run_block tutorial "$T/tutorial.sh"
[ "$(cat "$T/tutorial.out")" = "$(printf 'alice 5\nbob 7\nalice 15\nalice 16')" ] ||
    fail "tutorial printed: $(cat "$T/tutorial.out")"

block tutorial-test >"$T/tutorial-test.sh"
grep -q 'sums_test' "$T/tutorial-test.sh" || fail "no tutorial-test block in the README"
sed -n '/<!-- tutorial:sums_test.c begin -->/,/<!-- tutorial:sums_test.c end -->/p' \
    "$SRC/README.md" | sed '1,2d;$d' | sed '$d' >"$T/work/sums_test.c"
[ -n "$san" ] && [ "$san" != none ] && sed -i "s|^cc |cc -fsanitize=$san |" "$T/tutorial-test.sh"
run_block tutorial-test "$T/tutorial-test.sh"
[ "$(grep -c '^ok - ' "$T/tutorial-test.out")" = 5 ] ||
    fail "the tutorial's unit test printed: $(cat "$T/tutorial-test.out")"
pass "the README's by-hand, cluster (with metrics, Prometheus, grow and shrink), tutorial and tutorial unit-test blocks run as written"
