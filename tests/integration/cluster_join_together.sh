#!/usr/bin/env bash
# Several joiners at once: two workers started with --join and --worker-count 2 are added in
# one move (the first waits for the second); Wallaroo's vectors then come out exact on the
# four workers, and roo-ctl status shows four workers owning 64 partitions each.
source "$(dirname "$0")/lib.sh"
watchdog 120

OUT=$(free_port)
setup_cluster "$ALPHABET" 2 "$OUT"
run_worker 0 w0
run_worker 1 w1
cluster_ready w0 w1
for i in 2 3; do CL_IN[i]=$(free_port); CL_EXT[i]=$(free_port); done
join() {
    start "w$1" "$ALPHABET" --join "127.0.0.1:$CL_CTL" --name "worker$1" --worker-count 2 \
        --in "127.0.0.1:${CL_IN[$1]}" --out "127.0.0.1:$OUT" --resilience-dir "$T/w$1" \
        --external "127.0.0.1:${CL_EXT[$1]}"
}
join 2
wait_log w0 "worker 'worker2' asks to join.*1 of 2 joiner" 20
sleep 0.5
if grep -q 'growing by' "$T/w0.log"; then fail "the cluster grew before the second joiner came"; fi
join 3
wait_log w0 'growing by 2 worker\(s\) \(worker2, worker3\): done' 30
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[3]}" status --wait-ready 20 >"$T/status.json" ||
    fail "status: $(cat "$T/status.json")"
grep -q '"worker_count": 4' "$T/status.json" || fail "status lacks worker_count 4"
[ "$(grep '"index"' "$T/status.json" | grep -c '"partitions": 64')" = 4 ] ||
    fail "partitions are not 64 per worker: $(grep -o '"partitions": [0-9]*' "$T/status.json" | tr '\n' ' ')"

start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$TESTDATA/_expected.json" \
    --expect 1000 --timeout 30 --quiet
wait_log recv 'listening on' 10
"$SENDER" --host "127.0.0.1:${CL_IN[3]}" --file "$TESTDATA/_test.txt" --quiet
wait_exit recv 30 || fail "vectors on 4 workers: $(tail -1 "$T/recv.log")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[2]}" shutdown >/dev/null || fail "shutdown failed"
for w in w0 w1 w2 w3; do wait_exit "$w" 40 || fail "$w did not exit cleanly"; done
pass "two joiners with --worker-count 2 were added in one move; vectors exact on 4 workers"
