#!/usr/bin/env bash
# A worker dies in the middle of a partition move and is restarted with the same command
# line: the move completes, no partition is lost or owned twice, and under two resumable
# streams every vote is counted exactly once. Three times, each during the state transfer
# (widened with the test-only ROO_TEST_TRANSFER_DELAY_MS): the joiner of a grow (2 -> 3),
# an old owner during a grow (3 -> 4), and the initializer during a shrink (4 -> 3).
source "$(dirname "$0")/lib.sh"
watchdog 300

export ROO_TEST_TRANSFER_DELAY_MS=1500
RATE=${MOVE_RATE:-3000}
SECS=24
san=$(meson introspect --buildoptions "$BUILD" 2>/dev/null |
    grep -Eo '"name": "b_sanitize", "value": "[a-z,]+"' | sed 's/.*"value": "//; s/"$//' || true)
if [ -n "$san" ] && [ "$san" != none ]; then
    RATE=${MOVE_RATE:-1500}
    SECS=18
fi
MSGS=$((RATE * SECS))
OUT=$(free_port)
setup_cluster "$ALPHABET" 2 "$OUT"
make_votes a "$MSGS" 81
make_votes b "$MSGS" 82
make_truth "$T/a.bin" "$T/b.bin"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/expected.json" \
    --allow-repeats --timeout 250 --quiet
wait_log recv 'listening on' 10
declare -A LIFE=([0]=0 [1]=0 [2]=0 [3]=0)
run_worker 0 w0-0
run_worker 1 w1-0
cluster_ready w0-0 w1-0
for i in 2 3; do CL_IN[i]=$(free_port); CL_EXT[i]=$(free_port); done
join_worker() { # join_worker I: start (or restart) joiner I, the same command line each time
    start "w$1-${LIFE[$1]}" "$ALPHABET" --join "127.0.0.1:$CL_CTL" --name "worker$1" \
        --in "127.0.0.1:${CL_IN[$1]}" --out "127.0.0.1:$OUT" --resilience-dir "$T/w$1" \
        --external "127.0.0.1:${CL_EXT[$1]}"
}
restart() { # restart I: kill -9 worker I now, start it again after a moment
    local i=$1
    log "kill -9 $(cl_name "$i" | sed 's/^worker/worker/') in the middle of the transfer"
    kill9 "w$i-${LIFE[$i]}"
    sleep 0.5
    LIFE[$i]=$((LIFE[$i] + 1))
    if [ "$i" -ge 2 ]; then join_worker "$i"; else run_worker "$i" "w$i-${LIFE[$i]}"; fi
}
transfers() { cat "$T"/w0-*.log | grep -c 'every worker holds; transferring state' || true; }
wait_transfer() { # wait_transfer N: until the initializer started its Nth transfer
    local k
    for ((k = 0; k < 400; k++)); do [ "$(transfers)" -ge "$1" ] && return 0; sleep 0.05; done
    fail "no transfer number $1: $(tail -3 "$T/w0-${LIFE[0]}.log")"
}
moves_done() { cat "$T"/w0-*.log | grep -c ': done in [0-9]* ms' || true; }
wait_moves() { # wait_moves N
    local k
    for ((k = 0; k < 600; k++)); do [ "$(moves_done)" -ge "$1" ] && return 0; sleep 0.1; done
    fail "move $1 did not complete: $(tail -3 "$T/w0-${LIFE[0]}.log")"
}

H0=127.0.0.1:${CL_IN[0]}
H1=127.0.0.1:${CL_IN[1]}
start senderA "$SENDER" --resumable --stream crash-a --host "$H0" --file "$T/a.bin" \
    --rate "$RATE" --batch-size 200 --connect-timeout 60 --ack-timeout 5
start senderB "$SENDER" --resumable --stream crash-b --host "$H1,$H0" --file "$T/b.bin" \
    --rate "$RATE" --batch-size 200 --connect-timeout 60 --ack-timeout 5
sleep 2

join_worker 2
wait_transfer 1
restart 2
wait_moves 1
pass "grow 2 -> 3 completed although the joiner died during the transfer"
sleep 1

join_worker 3
wait_transfer 2
restart 1
wait_moves 2
pass "grow 3 -> 4 completed although an old owner (worker1) died during the transfer"
sleep 1

start shrink "$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shrink --workers worker3
wait_transfer 3
restart 0
wait_exit "w3-${LIFE[3]}" 60 || fail "worker3 did not leave cleanly after the restarted move"
[ ! -e "$T/w3" ] || fail "worker3 did not remove its directory"
wait_exit shrink 30 || log "roo-ctl shrink lost its initializer (expected): $(cat "$T/shrink.log")"
pass "shrink 4 -> 3 completed although the initializer died during the transfer"

wait_exit senderA 150 || fail "sender A did not finish: $(tail -2 "$T/senderA.log")"
wait_exit senderB 150 || fail "sender B did not finish: $(tail -2 "$T/senderB.log")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status >"$T/status.json"
grep -q '"worker_count": 3' "$T/status.json" || fail "status: $(cat "$T/status.json")"
owned=$(grep '"index"' "$T/status.json" | grep -o '"partitions": [0-9]*' |
    awk '{s += $2} END {print s}')
[ "$owned" = 256 ] || fail "the workers own $owned partitions in all, want 256 (each exactly once)"
check_state_totals "${CL_EXT[0]}" "$T/expected.json"
sleep 2
stop recv TERM || fail "sink check failed: $(tail -1 "$T/recv.log")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
for i in 0 1 2; do wait_exit "w$i-${LIFE[$i]}" 40 || fail "worker $i exited $? at shutdown"; done
pass "three crashes in the middle of moves: 256 partitions owned once, every vote counted once"
