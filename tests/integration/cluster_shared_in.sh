#!/usr/bin/env bash
# Wallaroo's recipes give every worker on one host the same --in address: both workers of a
# cluster start on it (the listeners are SO_REUSEPORT), the kernel spreads the senders'
# connections over them, and every vote is counted exactly once.
source "$(dirname "$0")/lib.sh"
watchdog 120

OUT=$(free_port)
N=200000
"$SENDER" --dry-run --messages "$N" --seed 41 --save "$T/votes.bin" --expected "$T/expected.json" \
    --quiet
# (many connections: the order of one letter's votes is not the file's, so the receiver
# checks the final totals, not each running total against the file)
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/expected.json" \
    --expect "$N" --timeout 60 --quiet
wait_log recv 'listening on' 10
setup_cluster "$ALPHABET" 2 "$OUT"
CL_IN[1]=${CL_IN[0]}
run_worker 0 w0
run_worker 1 w1
cluster_ready w0 w1
"$SENDER" --host "127.0.0.1:${CL_IN[0]}" --file "$T/votes.bin" --connections 16 --quiet ||
    fail "sender failed"
wait_exit recv 60 || fail "receiver check failed: $(tail -1 "$T/recv.log")"
c0=$(grep -c "source 'votes': connection from .* (thread" "$T/w0.log" || true)
c1=$(grep -c "source 'votes': connection from .* (thread" "$T/w1.log" || true)
[ "$c0" -gt 0 ] && [ "$c1" -gt 0 ] && [ $((c0 + c1)) = 16 ] ||
    fail "16 connections spread as $c0 + $c1 over the two workers"
check_state_totals "${CL_EXT[0]}" "$T/expected.json"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
wait_exit w0 40 || fail "initializer exited $? at shutdown"
wait_exit w1 40 || fail "worker1 exited $? at shutdown"
pass "two workers on one --in: 16 connections spread $c0 + $c1, $N votes exact"
