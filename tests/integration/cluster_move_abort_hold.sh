#!/usr/bin/env bash
# roo-ctl move --abort past the pre-copy, while the workers hold the moving partitions'
# messages. Two grows of a 3-worker cluster whose joiner is killed (kill -9) for good: one in
# the state transfer (widened with the test-only ROO_TEST_TRANSFER_DELAY_MS), one in the hold
# (the joiner dies before it holds, so the hold waits for it), during which worker2 is killed
# too. Each abort returns to the table before the move: status shows whom the move waits
# for, the held messages go to the old owners, worker1 restarted after the first abort and
# worker2 restarted after the second (holding a move that no longer runs) serve on. Then a
# shrink (worker2 leaves) is aborted in its transfer while a new owner, worker1, is down:
# back with the state it imported, it drops it. Under two resumable streams every vote is
# counted exactly once.
#
# MOVE_APP=python (test python_move_abort) runs the same on roo-python workers running the
# partitioned Alphabet (tests/python/alphabet_partitioned_bin.py): their held messages are
# pickled objects, re-routed by the partition the engine wrote before them. Their state holds
# Python objects, which roo-ctl query shows only as pickled bytes: there the sink's check is
# the exact one.
PYAPP=${MOVE_APP:-}
if [ "$PYAPP" = python ]; then
    source "$(dirname "$0")/python_lib.sh"
else
    source "$(dirname "$0")/lib.sh"
fi
watchdog 300

export ROO_TEST_TRANSFER_DELAY_MS=60000 # the transfer waits: the move stays in it
RATE=${MOVE_RATE:-2000}
san=$(meson introspect --buildoptions "$BUILD" 2>/dev/null |
    grep -Eo '"name": "b_sanitize", "value": "[a-z,]+"' | sed 's/.*"value": "//; s/"$//' || true)
if [ -n "$san" ] && [ "$san" != none ]; then RATE=${MOVE_RATE:-1000}; fi
MSGS=$((RATE * 25)) # 25 s of votes: the three aborts take about 20 s
OUT=$(free_port)
APP=$ALPHABET
[ "$PYAPP" = python ] && APP=$(py_cluster_app alphabet_partitioned_bin)
setup_cluster "$APP" 3 "$OUT"
make_votes a "$MSGS" 91
make_votes b "$MSGS" 92
make_truth "$T/a.bin" "$T/b.bin"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/expected.json" \
    --allow-repeats --timeout 200 --quiet
wait_log recv 'listening on' 10
# The initializer waits 3 s between a move's pre-copy and its hold (a test-only hook): time
# to kill the second joiner before it holds.
ROO_TEST_HOLD_DELAY_MS=3000 run_worker 0 w0
run_worker 1 w1
run_worker 2 w2
cluster_ready w0 w1 w2
EXT0=127.0.0.1:${CL_EXT[0]}
H0=127.0.0.1:${CL_IN[0]}
H1=127.0.0.1:${CL_IN[1]}
H2=127.0.0.1:${CL_IN[2]}
start senderA "$SENDER" --resumable --stream hold-a --host "$H1,$H0,$H2" --file "$T/a.bin" \
    --rate "$RATE" --batch-size 100 --connect-timeout 60 --ack-timeout 5
start senderB "$SENDER" --resumable --stream hold-b --host "$H2,$H0,$H1" --file "$T/b.bin" \
    --rate "$RATE" --batch-size 100 --connect-timeout 60 --ack-timeout 5
sleep 2

# status_move PHASE WORKER: the status shows the move in PHASE, waiting for WORKER.
status_move() {
    "$ROO_CTL" --external "$EXT0" status >"$T/moving.json" || fail "status during the move failed"
    grep -q "\"phase\": \"$1\"" "$T/moving.json" ||
        fail "status shows no move in its $1: $(grep -o '"move": {[^}]*}' "$T/moving.json")"
    grep -q "\"waiting_for\": \[\"$2\"\]" "$T/moving.json" ||
        fail "status does not show the move waiting for $2: $(grep -o '"move": {[^}]*}' "$T/moving.json")"
    grep -q '"phase_for_ms": [0-9]' "$T/moving.json" || fail "status: no phase_for_ms"
}
# abort_move WHAT: roo-ctl move --abort answers that WHAT was aborted, table version 1.
abort_move() {
    "$ROO_CTL" --external "$EXT0" move --abort >"$T/abort.json" 2>&1 ||
        fail "the abort failed: $(cat "$T/abort.json")"
    grep -q "\"aborted\": \"growing by 1 worker(s) ($1)\"" "$T/abort.json" ||
        fail "abort answer: $(cat "$T/abort.json")"
    grep -q '"table_version": 1' "$T/abort.json" || fail "abort answer: $(cat "$T/abort.json")"
}
# serving LOG: the cluster is ready at table version 1 with its 3 workers and no move.
serving() {
    "$ROO_CTL" --external "$EXT0" status --wait-ready 30 >"$T/after.json" ||
        fail "the cluster is not ready after the abort"
    grep -q '"worker_count": 3' "$T/after.json" || fail "status: $(head -c 300 "$T/after.json")"
    grep -q '"move"' "$T/after.json" && fail "a move is still shown: $(head -c 400 "$T/after.json")"
    owned=$(grep '"index"' "$T/after.json" | grep -o '"partitions": [0-9]*' |
        awk '{s += $2} END {print s}')
    [ "$owned" = 256 ] || fail "the workers own $owned partitions in all, want 256"
}

# 1. The joiner dies in the transfer.
join_worker 3 w3
wait_log w0 'every worker holds; transferring state' 60
sleep 0.5
kill9 w3
status_move transfer worker3
abort_move worker3
for w in w0 w1 w2; do wait_log "$w" 'partition move to table version 2 aborted' 30; done
serving
pass "a grow whose joiner died in the transfer was aborted; back to table version 1"
log "kill -9 worker1, then restart it"
kill9 w1
sleep 1
run_worker 1 w1b
wait_log w1b 'ready: application' 30

# 2. The joiner dies before it holds; worker2 dies while the others hold, and comes back
# after the abort holding the move, which it must drop.
join_worker 4 w4
wait_log w0 'partition move 3: holding in 3000 ms \(test delay\)' 60
kill9 w4
wait_log w1b 'partition move 3: holding the moving partitions' 30
wait_log w2 'partition move 3: holding the moving partitions' 30
sleep 0.5 # its pending table stored
kill9 w2
sleep 1
status_move hold worker4
abort_move worker4
for w in w0 w1b; do wait_log "$w" 'partition move to table version 3 aborted' 30; done
run_worker 2 w2b
wait_log w2b 'partition move to table version 3 aborted \(the initializer no longer runs it\)' 30
serving
pass "a grow waiting in its hold for a dead joiner was aborted; worker2, back with it, dropped it"

# 3. A shrink in its transfer (worker2's state waits: ROO_TEST_TRANSFER_DELAY_MS); worker1,
# a new owner with its pre-copy committed, is killed; abort; worker1 comes back.
start shrink "$ROO_CTL" --external "$EXT0" shrink --workers worker2
wait_log w0 'partition move 4: every worker holds; transferring state' 60
sleep 0.5
kill9 w1b
"$ROO_CTL" --external "$EXT0" move --abort >"$T/abort.json" 2>&1 ||
    fail "the shrink's abort failed: $(cat "$T/abort.json")"
grep -q '"aborted": "shrinking by 1 worker(s) (worker2)"' "$T/abort.json" ||
    fail "abort answer: $(cat "$T/abort.json")"
wait_exit shrink 30 && fail "roo-ctl shrink succeeded although its move was aborted"
grep -q 'aborted' "$T/shrink.log" || fail "roo-ctl shrink does not say why: $(cat "$T/shrink.log")"
run_worker 1 w1c
wait_log w1c 'partition move to table version 4 aborted \(the initializer no longer runs it\).*the state imported for it is dropped' 30
serving
pass "a shrink aborted in its transfer; worker1, back with the state it imported, dropped it"

wait_exit senderA 180 || fail "sender A did not finish: $(tail -2 "$T/senderA.log")"
wait_exit senderB 180 || fail "sender B did not finish: $(tail -2 "$T/senderB.log")"
[ "$PYAPP" = python ] || check_state_totals "${CL_EXT[0]}" "$T/expected.json"
sleep 2
stop recv TERM || fail "sink check failed: $(tail -1 "$T/recv.log")"
"$ROO_CTL" --external "$EXT0" shutdown >/dev/null || fail "shutdown failed"
for w in w0 w1c w2b; do wait_exit "$w" 40 || fail "$w exited $? at shutdown"; done
pass "two grows and a shrink aborted past their pre-copy, workers restarted: every vote counted once"
