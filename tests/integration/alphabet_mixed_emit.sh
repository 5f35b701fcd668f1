#!/usr/bin/env bash
# Outputs that one compute_many sends partly with roo_emit and partly with roo_emit_many
# (tests/integration/apps/alphabet_mixed_emit.c) leave in message order: the engine encodes
# an array at once only when nothing waits in the sink's queue, else queues it behind.
source "$(dirname "$0")/lib.sh"
watchdog 100

MIXED=$BUILD/tests/integration/alphabet-mixed-emit
[ -x "$MIXED" ] || fail "missing $MIXED"
"$SENDER" --dry-run --messages 400000 --seed 53 --save "$T/votes.bin" \
    --expected "$T/votes.json" --quiet

IN=$(free_port)
OUT=$(free_port)
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/votes.json" \
    --votes "$T/votes.bin" --expect 400000 --timeout 60 --quiet
wait_log recv 'listening on' 10
start worker "$MIXED" --in "127.0.0.1:$IN" --out "127.0.0.1:$OUT" --resilience-dir "$T/w"
wait_log worker 'ready:' 20
"$SENDER" --host "127.0.0.1:$IN" --file "$T/votes.bin" --quiet || fail "sender failed"
wait_exit recv 60 || fail "outputs out of order or wrong: $(tail -2 "$T/recv.log")"
stop worker || fail "worker did not stop cleanly"
pass "400,000 votes, outputs sent both ways from one callback, each in order"
