#!/usr/bin/env bash
# A plain seed-format client (no hello, no resends) feeds the initializer; another worker is
# killed with kill -9 mid-stream and restarted a second later. The initializer holds the
# batches that worker had not committed and sends them again; the restarted worker drops
# what it had already applied. Nothing is lost and nothing counted twice: the sink's last
# total per letter equals the truth, and the state holds the same totals.
source "$(dirname "$0")/lib.sh"
watchdog 180

OUT=$(free_port)
setup_cluster "$ALPHABET" 3 "$OUT"
"$SENDER" --dry-run --messages 800000 --seed 91 --save "$T/v.bin" --expected "$T/v.json" --quiet
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/v.json" --allow-repeats --idle-exit 4 \
    --timeout 120 --quiet
wait_log recv 'listening on' 10
for i in 0 1 2; do run_worker "$i" "w$i"; done
cluster_ready w0 w1 w2

start sender "$SENDER" --host "127.0.0.1:${CL_IN[0]}" --file "$T/v.bin" --rate 150000 \
    --batch-size 2000 --quiet
sleep 1.5
kill9 w2
log "worker2 killed mid-stream"
sleep 1
run_worker 2 w2b
wait_log w2b 'ready: application' 20
wait_exit sender 60 || fail "the plain client failed"
wait_exit recv 120 || fail "sink totals wrong: $(tail -1 "$T/recv.log")"
grep -q "restarted: accepting its new sequence numbers\|data link to worker2" "$T/w0.log" ||
    log "note: the initializer did not log the restart"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
for l in w0 w1 w2b; do wait_exit "$l" 30 || fail "$l exited $? at shutdown"; done
pass "kill -9 of a worker mid-stream with a plain client: the sink's last totals equal the truth"
