#!/usr/bin/env bash
# A --join worker whose move the initializer never stored (it was killed during the
# pre-copy) learns from the restarted initializer that its join was abandoned: it removes
# its directory and joins again in the same process, the other workers forget the move, and
# no vote is lost or counted twice. (Found by cluster_move_chaos, seed 6.)
source "$(dirname "$0")/lib.sh"
watchdog 150

OUT=$(free_port)
setup_cluster "$ALPHABET" 2 "$OUT"
make_votes a 16000 61
make_truth "$T/a.bin"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/expected.json" \
    --allow-repeats --timeout 120 --quiet
wait_log recv 'listening on' 10
# The initializer waits 3 s between a move's pre-copy and its hold (a test-only hook).
ROO_TEST_HOLD_DELAY_MS=3000 run_worker 0 w0
run_worker 1 w1
cluster_ready w0 w1
start sender "$SENDER" --resumable --stream ja --host "127.0.0.1:${CL_IN[1]}" \
    --file "$T/a.bin" --rate 2000 --batch-size 100 --connect-timeout 60 --ack-timeout 5
sleep 1
join_worker 2 w2
wait_log w0 'partition move 2: holding in 3000 ms \(test delay\)' 30
kill9 w0 # the pre-copy is done, the move is not stored
run_worker 0 w0b
wait_log w2 'the partition move that was adding this worker was abandoned' 30
wait_log w2 'joining the cluster again' 30
wait_log w1 'partition move to table version 2 abandoned' 30
wait_log w0b 'growing by 1 worker\(s\) \(worker2\): done' 30
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[2]}" status --wait-ready 20 >"$T/status.json" ||
    fail "the cluster is not ready afterwards"
grep -q '"worker_count": 3' "$T/status.json" || fail "status: $(head -c 400 "$T/status.json")"
wait_exit sender 60 || fail "the sender did not finish: $(tail -2 "$T/sender.log")"
check_state_totals "${CL_EXT[0]}" "$T/expected.json"
sleep 1
stop recv TERM || fail "sink check failed: $(tail -1 "$T/recv.log")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
for w in w0b w1 w2; do wait_exit "$w" 30 || fail "$w did not stop cleanly"; done
pass "a join abandoned by an initializer's restart starts again; every vote counted once"
