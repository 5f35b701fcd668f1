#!/usr/bin/env bash
# Grow and shrink a running Alphabet cluster under two steady resumable streams: 2 -> 3 (a
# joiner asks the initializer), 3 -> 4 (a joiner asks another worker and is sent on), then
# 4 -> 2 (roo-ctl shrink, asked of a worker that is not the initializer). At the end every
# vote is counted exactly once: the state (roo-ctl query) and the sink's last totals equal
# the truth, and no letter's total at the sink ever went down (except by repeating one).
# Also: the initializer cannot be shrunk away, a joiner of another protocol version and a
# joiner with a taken name are refused, shrink --query lists who could leave.
source "$(dirname "$0")/lib.sh"
watchdog 240

RATE=${GROW_RATE:-4000}
san=$(meson introspect --buildoptions "$BUILD" 2>/dev/null |
    grep -Eo '"name": "b_sanitize", "value": "[a-z,]+"' | sed 's/.*"value": "//; s/"$//' || true)
SECS=22
if [ -n "$san" ] && [ "$san" != none ]; then
    RATE=${GROW_RATE:-1500}
    SECS=14 # sanitized workers are slower: a shorter stream covers the same moves
fi
MSGS=$((RATE * SECS))

OUT=$(free_port)
setup_cluster "$ALPHABET" 2 "$OUT"
make_votes a "$MSGS" 71
make_votes b "$MSGS" 72
make_votes c $((MSGS / 3)) 73
make_truth "$T/a.bin" "$T/b.bin" "$T/c.bin"

start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/expected.json" \
    --allow-repeats --timeout 200 --quiet
wait_log recv 'listening on' 10
run_worker 0 w0
run_worker 1 w1
cluster_ready w0 w1

# Joiners: their own addresses, joining through --join.
for i in 2 3; do CL_IN[i]=$(free_port); CL_EXT[i]=$(free_port); done
join_worker() { # join_worker I VIA_CONTROL_PORT
    start "w$1" "$ALPHABET" --join "127.0.0.1:$2" --name "worker$1" \
        --in "127.0.0.1:${CL_IN[$1]}" --out "127.0.0.1:$OUT" --resilience-dir "$T/w$1" \
        --external "127.0.0.1:${CL_EXT[$1]}"
}
H0=127.0.0.1:${CL_IN[0]}
H1=127.0.0.1:${CL_IN[1]}
H2=127.0.0.1:${CL_IN[2]}
H3=127.0.0.1:${CL_IN[3]}
start senderA "$SENDER" --resumable --stream grow-a --host "$H0,$H2" --file "$T/a.bin" \
    --rate "$RATE" --batch-size 200 --connect-timeout 60 --ack-timeout 5
start senderB "$SENDER" --resumable --stream grow-b --host "$H3,$H1" --file "$T/b.bin" \
    --rate "$RATE" --batch-size 200 --connect-timeout 60 --ack-timeout 5
sleep 3

# Refusals first: a joiner of another protocol version; a joiner with a taken name.
rc=0
ROO_TEST_PROTOCOL_VERSION=999 timeout 20 "$ALPHABET" --join "127.0.0.1:$CL_CTL" --name oddball \
    --in "127.0.0.1:$(free_port)" --out "127.0.0.1:$OUT" --resilience-dir "$T/odd" \
    >"$T/odd.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "a joiner of another protocol version exited $rc, want 1"
grep -q 'refused this worker: .*protocol version 999' "$T/odd.log" ||
    fail "wrong-version joiner: $(tail -2 "$T/odd.log")"
rc=0
timeout 20 "$ALPHABET" --join "127.0.0.1:$CL_CTL" --name worker1 --in "127.0.0.1:$(free_port)" \
    --out "127.0.0.1:$OUT" --resilience-dir "$T/dup" >"$T/dup.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "a joiner with a taken name exited $rc, want 1"
grep -q "already in the cluster" "$T/dup.log" || fail "taken name: $(tail -2 "$T/dup.log")"
pass "joiners of another version or with a taken name are refused with the reason"

t0=$SECONDS
join_worker 2 "$CL_CTL"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status >/dev/null
for ((k = 0; k < 200; k++)); do
    "$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status 2>/dev/null | grep -q '"worker_count": 3' && break
    sleep 0.1
done
[ "$k" -lt 200 ] || fail "the cluster did not grow to 3 workers: $(tail -3 "$T/w0.log")"
wait_log w0 'growing by 1 worker\(s\) \(worker2\): done' 30
pass "grew 2 -> 3 in $((SECONDS - t0)) s: $(grep -o 'done in [0-9]* ms' "$T/w0.log" | tail -1)"
sleep 2

# worker3 asks worker1, which sends it on to the initializer.
w1ctl=$("$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status |
    grep -o '"name": "worker1", "index": 1, "control": "[^"]*"' | sed 's/.*:\([0-9]*\)"$/\1/')
[ -n "$w1ctl" ] || fail "cannot find worker1's control port in the status"
join_worker 3 "$w1ctl"
wait_log w0 'growing by 1 worker\(s\) \(worker3\): done' 30
pass "grew 3 -> 4: $(grep -o 'done in [0-9]* ms' "$T/w0.log" | tail -1)"
# A third stream straight into worker3, which will leave: it must continue elsewhere.
start senderC "$SENDER" --resumable --stream grow-c --host "$H3,$H0" --file "$T/c.bin" \
    --rate "$RATE" --batch-size 200 --connect-timeout 60 --ack-timeout 5
wait_log w3 "continues stream 'grow-c" 20
sleep 2

rc=0
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[1]}" shrink --workers initializer >"$T/no.json" \
    2>"$T/no.err" || rc=$?
if [ "$rc" != 1 ] || ! grep -q 'cannot leave: it coordinates' "$T/no.err"; then
    fail "shrinking away the initializer: rc $rc, $(cat "$T/no.err")"
fi
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[2]}" shrink --query >"$T/q.json" 2>"$T/q.err" ||
    fail "shrink --query failed: $(cat "$T/q.err")"
grep -q '"can_leave": \["worker1", "worker2", "worker3"\]' "$T/q.json" ||
    fail "shrink --query: $(cat "$T/q.json")"
pass "the initializer cannot be shrunk away; shrink --query lists who can leave"

"$ROO_CTL" --external "127.0.0.1:${CL_EXT[1]}" shrink --workers worker2,worker3 >"$T/shrink.json" ||
    fail "shrink failed: $(cat "$T/shrink.json")"
grep -q '"done": true' "$T/shrink.json" || fail "shrink: $(cat "$T/shrink.json")"
wait_exit w2 30 || fail "worker2 did not exit 0 after leaving"
grep -q "closing the connection from .*: this worker left the cluster" "$T/w3.log" ||
    fail "worker3 did not say why it closed its source connection"
wait_exit w3 30 || fail "worker3 did not exit 0 after leaving"
if [ -e "$T/w2" ] || [ -e "$T/w3" ]; then
    fail "leaving workers did not remove their directories"
fi
pass "shrank 4 -> 2: $(tr -d '\n' <"$T/shrink.json")"

wait_exit senderA 120 || fail "sender A did not finish: $(tail -2 "$T/senderA.log")"
wait_exit senderB 120 || fail "sender B did not finish: $(tail -2 "$T/senderB.log")"
wait_exit senderC 120 || fail "sender C did not finish: $(tail -2 "$T/senderC.log")"
check_state_totals "${CL_EXT[0]}" "$T/expected.json"
sleep 2
stop recv TERM || fail "sink check failed: $(tail -1 "$T/recv.log")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
wait_exit w0 40 || fail "initializer exited $? at shutdown"
wait_exit w1 40 || fail "worker1 exited $? at shutdown"
pass "2 -> 3 -> 4 -> 2 under load: every vote counted once at the state and the sink"
