#!/usr/bin/env bash
# roo-ctl --external takes a list and asks each address in turn: a dead first address does
# not stop status, query or shrink. The same shrink asked twice is one shrink: a second
# roo-ctl asking while the move runs gets the same answer (the first one may be gone), and
# asking after it is done answers that the workers already left. A shrink whose connection
# breaks is asked again through the rest of the list until it is answered.
source "$(dirname "$0")/lib.sh"
watchdog 150
# A slow transfer phase, so that a move lasts long enough to be asked about twice.
export ROO_TEST_TRANSFER_DELAY_MS=2500

OUT=$(free_port)
DEAD=127.0.0.1:$(free_port) # nobody listens here
setup_cluster "$ALPHABET" 2 "$OUT"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --output /dev/null --timeout 120 --quiet
run_worker 0 w0
run_worker 1 w1
cluster_ready w0 w1
EXT0=127.0.0.1:${CL_EXT[0]}
EXT1=127.0.0.1:${CL_EXT[1]}

"$ROO_CTL" --external "$DEAD,$EXT1" status --wait-ready 20 >"$T/status.json" ||
    fail "status through a list with a dead first address failed"
grep -q '"worker_count": 2' "$T/status.json" || fail "status: $(head -c 300 "$T/status.json")"
rc=0
"$ROO_CTL" --external "$DEAD" status 2>"$T/dead.err" || rc=$?
[ "$rc" = 1 ] && grep -q "$DEAD" "$T/dead.err" || fail "a dead address alone: exit $rc, $(cat "$T/dead.err")"

join_worker() { # join_worker I
    CL_IN[$1]=$(free_port)
    CL_EXT[$1]=$(free_port)
    start "w$1-$2" "$ALPHABET" --join "127.0.0.1:$CL_CTL" --name "worker$1" \
        --in "127.0.0.1:${CL_IN[$1]}" --out "127.0.0.1:$OUT" --resilience-dir "$T/w$1-$2" \
        --external "127.0.0.1:${CL_EXT[$1]}"
}
join_worker 2 a
wait_log w0 'worker2\): done' 60

# Two roo-ctl ask for the same shrink while it moves: both get "done".
start shrinkA "$ROO_CTL" --external "$DEAD,$EXT1" shrink --workers worker2
sleep 0.5
start shrinkB "$ROO_CTL" --external "$DEAD,$EXT0" shrink --workers worker2
# Meanwhile the status shows the move and whom it waits for.
"$ROO_CTL" --external "$EXT0" status >"$T/moving.json" || fail "status during the move"
grep -q '"move": {"what": "shrinking by 1 worker(s) (worker2)", "table_version": [0-9]*, "phase": "[a-z-]*", "for_ms": [0-9]*, "phase_for_ms": [0-9]*, "waiting_for": \[' \
    "$T/moving.json" || fail "no move in the status during the shrink: $(head -c 600 "$T/moving.json")"
wait_exit shrinkA 60 || fail "first shrink: $(cat "$T/shrinkA.log")"
wait_exit shrinkB 60 || fail "second shrink of the same workers: $(cat "$T/shrinkB.log")"
grep -q '"done": true' "$T/shrinkA.log" && grep -q '"done": true' "$T/shrinkB.log" ||
    fail "shrink answers: $(cat "$T/shrinkA.log" "$T/shrinkB.log")"
grep -q 'asks again for the shrink under way' "$T/w0.log" ||
    fail "the initializer did not attach the second shrink to the move under way"
wait_exit w2-a 30 || fail "worker2 did not leave cleanly"
[ "$(grep -c 'shrinking by .*: moving' "$T/w0.log")" = 1 ] || fail "one shrink asked twice moved twice"

# Asked once more, after the move: the worker already left.
"$ROO_CTL" --external "$EXT1" shrink --workers worker2 >"$T/again.json" ||
    fail "shrink of a worker that already left: $(cat "$T/again.json")"
grep -q '"already_left": true' "$T/again.json" || fail "again: $(cat "$T/again.json")"

# The connection breaks in the middle: the initializer, which roo-ctl waits on, is killed
# during the move and restarted; roo-ctl asks again through its list until it is answered.
join_worker 3 a
wait_log w0 'worker3\): done' 60
start shrinkC "$ROO_CTL" --external "$EXT1,$EXT0" --timeout 60 shrink --workers worker3
wait_log w0 'shrinking by 1 worker\(s\) \(worker3\)' 20
wait_log w0 'every worker holds; transferring' 20
kill9 w0
sleep 0.5
run_worker 0 w0b
wait_exit shrinkC 60 || fail "shrink across a killed initializer: $(cat "$T/shrinkC.log")"
grep -q '"done": true\|"already_left": true' "$T/shrinkC.log" || fail "shrink C: $(cat "$T/shrinkC.log")"
wait_exit w3-a 30 || fail "worker3 did not leave cleanly"

"$ROO_CTL" --external "$DEAD,$EXT0" shutdown >/dev/null || fail "shutdown through a list failed"
wait_exit w0b 30 || fail "the initializer did not stop cleanly"
wait_exit w1 30 || fail "worker1 did not stop cleanly"
pass "status, shrink and shutdown through address lists; one shrink asked twice is one move"
