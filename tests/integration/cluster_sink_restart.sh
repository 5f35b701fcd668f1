#!/usr/bin/env bash
# The sink of a 3-worker cluster is killed with kill -9 mid-stream and comes back: every
# worker reconnects and resends what the dead sink may not have read, so the new sink ends
# with every letter's exact total (repeats of totals allowed, nothing lower than seen).
source "$(dirname "$0")/lib.sh"
watchdog 150

OUT=$(free_port)
setup_cluster "$ALPHABET" 3 "$OUT"
"$SENDER" --dry-run --messages 600000 --seed 121 --save "$T/v.bin" --expected "$T/v.json" --quiet
start recvA "$RECEIVER" --listen "127.0.0.1:$OUT" --output "$T/a.out" --quiet
wait_log recvA 'listening on' 10
for i in 0 1 2; do run_worker "$i" "w$i"; done
cluster_ready w0 w1 w2
start sender "$SENDER" --resumable --stream sink-test --host "127.0.0.1:${CL_IN[0]},127.0.0.1:${CL_IN[1]}" \
    --file "$T/v.bin" --rate 120000 --quiet
wait_file_size "$T/a.out" $((150000 * 13)) 30
kill9 recvA
log "sink killed; restarting it"
sleep 0.5
start recvB "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/v.json" --allow-repeats \
    --timeout 90 --quiet
wait_exit sender 60 || fail "sender failed: $(tail -1 "$T/sender.log")"
sleep 2
stop recvB TERM || fail "restarted sink: $(tail -1 "$T/recvB.log")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
for i in 0 1 2; do wait_exit "w$i" 30 || fail "worker $i exited $? at shutdown"; done
pass "sink killed and restarted under a 3-worker cluster: final totals exact"
