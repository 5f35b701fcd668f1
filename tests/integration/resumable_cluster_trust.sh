#!/usr/bin/env bash
# In a cluster a resumable client may continue its stream on any worker, so a hello's
# next_offset is checked with the stream's keeper (the owner of the stream's partition,
# which every worker that reads the stream tells how far it read): an impostor's hello past
# the read position is refused on every worker; an honest one is welcomed on a worker that
# never read the stream; with the keeper down the hello is refused with "try again", and
# after a kill -9 and restart, or once the keeper has left by shrink, the position is known
# again. Every vote of the stream, continued on another worker, is counted exactly once.
source "$(dirname "$0")/lib.sh"
watchdog 180
ATTACK=$BUILD/tests/roo-attack

OUT=$(free_port)
make_votes v1 20000 31
make_votes v2 20000 32
cat "$T/v1.bin" "$T/v2.bin" >"$T/all.bin"
"$SENDER" --dry-run --file "$T/all.bin" --expected "$T/all.json" --quiet
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/all.json" \
    --votes "$T/all.bin" --expect 40000 --timeout 150 --quiet
wait_log recv 'listening on' 10
setup_cluster "$ALPHABET" 3 "$OUT"
run_worker 0 w0
run_worker 1 w1
run_worker 2 w2
cluster_ready w0 w1 w2

# A stream whose keeper is worker2 (it can leave by shrink; the initializer cannot).
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status >"$T/status.json"
STREAM=""
for s in s0 s1 s2 s3 s4 s5 s6 s7 s8 s9 s10 s11 s12 s13 s14 s15; do
    p=$("$ATTACK" partition "$s" 256)
    owner=$(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
idx = d["owners"][int(sys.argv[2])]
print([w["name"] for w in d["workers"] if w["index"] == idx][0])' "$T/status.json" "$p")
    if [ "$owner" = worker2 ]; then STREAM=$s; break; fi
done
[ -n "$STREAM" ] || fail "no stream name among s0..s15 is kept by worker2"

# worker1 reads the first 20,000 votes; it alone has read the stream.
"$SENDER" --host "127.0.0.1:${CL_IN[1]}" --resumable --stream "$STREAM" --file "$T/v1.bin" --quiet ||
    fail "the first 20,000 votes were not all acknowledged"

for i in 0 1 2; do
    got=$("$ATTACK" hello "127.0.0.1:${CL_IN[i]}" "$STREAM" 1000000000 0)
    [[ $got == refused:*"read up to frame 20000, not 1000000000"* ]] ||
        fail "worker $i did not refuse a hello past the read position: $got"
done
got=$("$ATTACK" hello "127.0.0.1:${CL_IN[0]}" never-seen 5 0)
[[ $got == refused:* ]] || fail "a hello at frame 5 of a stream never read was welcomed: $got"
pass "hellos past the read position refused on all three workers (the keeper asked)"

# The keeper is down: a hello for more than the worker knows cannot be checked, and is
# refused with "try again".
kill9 w2
got=$("$ATTACK" hello "127.0.0.1:${CL_IN[1]}" "$STREAM" 1000000000 0)
[[ $got == refused:*"cannot be asked now: try again"* ]] ||
    fail "with the keeper down a hello past the position: $got"
got=$("$ATTACK" hello "127.0.0.1:${CL_IN[0]}" "$STREAM" 20000 0)
[[ $got == refused:*"cannot be asked now: try again"* ]] ||
    fail "with the keeper down, the real position on a worker that never read the stream: $got"
run_worker 2 w2b
wait_log w2b 'ready: application' 30
for ((i = 0; i < 100; i++)); do
    got=$("$ATTACK" hello "127.0.0.1:${CL_IN[0]}" "$STREAM" 20000 0)
    [ "$got" = "welcome 20000" ] && break
    sleep 0.1
done
[ "$got" = "welcome 20000" ] || fail "after the keeper's kill -9 and restart: $got"
wait_log w0 "worker 'worker2', which keeps the read position of stream '$STREAM', says it was read up to frame 20000" 5
pass "keeper down: refused with 'try again'; after its kill -9 and restart it knows the position from disk and the real one is welcomed on a worker that never read the stream"

# The keeper leaves: the position moves with its partition.
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shrink --workers worker2 >"$T/shrink.json" ||
    fail "shrink failed: $(cat "$T/shrink.json")"
wait_exit w2b 30 || fail "worker2 did not exit 0 after leaving"
for i in 0 1; do
    got=$("$ATTACK" hello "127.0.0.1:${CL_IN[i]}" "$STREAM" 1000000000 0)
    [[ $got == refused:*"read up to frame 20000, not 1000000000"* ]] ||
        fail "after the shrink worker $i did not refuse a hello past the position: $got"
done
got=$("$ATTACK" hello "127.0.0.1:${CL_IN[0]}" "$STREAM" 20001 0)
[[ $got == refused:*"read up to frame 20000, not 20001"* ]] || fail "after the shrink, one past: $got"
got=$("$ATTACK" hello "127.0.0.1:${CL_IN[1]}" "$STREAM" 20000 0)
[ "$got" = "welcome 20000" ] || fail "after the keeper left, the real position: $got"
pass "the keeper left by shrink: its successor knows the position"

# The client continues its stream on the initializer: every vote exactly once.
"$SENDER" --host "127.0.0.1:${CL_IN[0]}" --resumable --stream "$STREAM" --file "$T/all.bin" --quiet ||
    fail "the stream continued on another worker was not all acknowledged"
wait_exit recv 60 || fail "receiver check failed: $(tail -1 "$T/recv.log")"
check_state_totals "${CL_EXT[0]}" "$T/all.json"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
wait_exit w0 40 || fail "initializer exited $? at shutdown"
wait_exit w1 40 || fail "worker1 exited $? at shutdown"
pass "40,000 votes of one stream, read on two workers, every total exact"
