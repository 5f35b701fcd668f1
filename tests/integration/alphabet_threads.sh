#!/usr/bin/env bash
# Several processing threads: partitions are spread over the threads and messages for
# another thread's partitions travel between threads. Per-key order from one connection
# must hold (every output exact), and with several connections the totals must still be
# exact and every letter's outputs must only grow; state recovers across a restart with a
# different thread count.
source "$(dirname "$0")/lib.sh"
watchdog 120

IN=$(free_port)
OUT=$(free_port)
"$SENDER" --dry-run --messages 300000 --seed 41 --save "$T/one.bin" --expected "$T/one.json" --quiet

start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/one.json" \
    --votes "$T/one.bin" --expect 300000 --timeout 60 --quiet
wait_log recv 'listening on' 10
alphabet_worker w3 "$IN" "$OUT" "$T/w" --threads 3
"$SENDER" --host "127.0.0.1:$IN" --file "$T/one.bin" --batch-size 1000 --quiet
wait_exit recv 60 || fail "3 threads, one connection: $(tail -1 "$T/recv.log")"
stop w3 || fail "worker did not stop cleanly"
pass "3 threads, one connection: 300,000 outputs, each exact (per-key order held)"

# Four connections into 2 threads, on top of the state left by the first part.
"$SENDER" --dry-run --messages 400000 --seed 42 --save "$T/four.bin" --quiet
cat "$T/one.bin" "$T/four.bin" >"$T/both.bin"
"$SENDER" --dry-run --file "$T/both.bin" --expected "$T/both.json" --quiet
start recv2 "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/both.json" \
    --expect 400000 --timeout 60 --quiet
wait_log recv2 'listening on' 10
alphabet_worker w2 "$IN" "$OUT" "$T/w" --threads 2
grep -q 'recovered 26 key' "$T/w2.log" || fail "restart with 2 threads did not recover 26 keys"
"$SENDER" --host "127.0.0.1:$IN" --connections 4 --file "$T/four.bin" --batch-size 2000 --quiet
wait_exit recv2 60 || fail "2 threads, 4 connections: $(tail -1 "$T/recv2.log")"
stop w2 || fail "worker did not stop cleanly"
pass "2 threads, 4 connections: totals exact, per-letter outputs never decrease"
