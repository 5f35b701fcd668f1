#!/usr/bin/env bash
# A worker that leaves in a shrink whose switch the initializer stored but never sent (it
# was killed in between) learns it left when the restarted initializer hears from it: it
# delivers its output, exits 0 and removes its directory, instead of being refused as "not
# one of them" and failing. (Found by cluster_move_chaos, seed 3.)
source "$(dirname "$0")/lib.sh"
watchdog 120

OUT=$(free_port)
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --output /dev/null --timeout 100 --quiet
setup_cluster "$ALPHABET" 2 "$OUT"
# The initializer holds back every table it stores for 3 s (a test-only hook).
ROO_TEST_SEND_DELAY_MS=3000 run_worker 0 w0
run_worker 1 w1
cluster_ready w0 w1
join_worker 2 w2
wait_log w2 'partition move to table version 2 done here' 30
start shrink "$ROO_CTL" --external "127.0.0.1:${CL_EXT[1]},127.0.0.1:${CL_EXT[0]}" --timeout 60 \
    shrink --workers worker2
wait_log w0 'shrinking by 1 worker\(s\) \(worker2\): done' 30
wait_log w0 'table version 3 stored; sending it in' 10
kill9 w0 # the switch is stored, not yet sent
run_worker 0 w0b
wait_exit w2 30 || fail "worker2 did not leave cleanly after the initializer came back"
grep -q 'left the cluster; removed' "$T/w2.log" || fail "worker2 kept its directory: $(tail -3 "$T/w2.log")"
wait_log w0b "worker 'worker2' is back but not in the table" 10
wait_exit shrink 60 || fail "roo-ctl shrink failed: $(cat "$T/shrink.log")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status --wait-ready 20 >"$T/status.json" ||
    fail "the cluster is not ready afterwards"
grep -q '"worker_count": 2' "$T/status.json" || fail "status: $(head -c 400 "$T/status.json")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
wait_exit w0b 30 || fail "initializer did not stop cleanly"
wait_exit w1 30 || fail "worker1 did not stop cleanly"
pass "a worker that left while the initializer was down learns it and exits 0"
