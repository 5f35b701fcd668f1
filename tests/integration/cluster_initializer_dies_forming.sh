#!/usr/bin/env bash
# The initializer is killed with kill -9 while the cluster forms (one worker has joined, one
# has not) and restarted with the same command line: the workers that were waiting retry,
# the cluster forms, and it counts exactly.
source "$(dirname "$0")/lib.sh"
watchdog 120

OUT=$(free_port)
setup_cluster "$ALPHABET" 3 "$OUT"
run_worker 0 w0
run_worker 1 w1
wait_log w0 "worker 'worker1' identified" 20
kill9 w0
log "initializer killed during formation"
run_worker 0 w0b
wait_log w0b "worker 'worker1' identified" 20
run_worker 2 w2
cluster_ready w0b w1 w2

"$SENDER" --dry-run --messages 200000 --seed 111 --save "$T/v.bin" --expected "$T/v.json" --quiet
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/v.json" --votes "$T/v.bin" \
    --expect 200000 --timeout 60 --quiet
wait_log recv 'listening on' 10
"$SENDER" --host "127.0.0.1:${CL_IN[2]}" --file "$T/v.bin" --quiet
wait_exit recv 60 || fail "$(tail -1 "$T/recv.log")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[1]}" shutdown >/dev/null || fail "shutdown failed"
for l in w0b w1 w2; do wait_exit "$l" 30 || fail "$l exited $? at shutdown"; done
pass "initializer killed during formation and restarted: cluster formed, 200,000 outputs exact"
