#!/usr/bin/env bash
# roo-ctl move --abort: a --join worker vanishes (kill -9) during its grow's pre-copy, so the
# move waits for it for ever; the abort gives the move up, the table stays as it was, the
# cluster keeps counting every vote exactly once, and the vanished worker, restarted, is
# refused rather than taking partitions. With no move, or through a worker that is not the
# initializer, the command says so.
source "$(dirname "$0")/lib.sh"
watchdog 150

OUT=$(free_port)
setup_cluster "$ALPHABET" 2 "$OUT"
make_votes a 16000 71
make_truth "$T/a.bin"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/expected.json" \
    --allow-repeats --timeout 120 --quiet
wait_log recv 'listening on' 10
# The initializer waits 30 s between a move's pre-copy and its hold (a test-only hook): the
# move stays in its pre-copy, where it can be aborted.
ROO_TEST_HOLD_DELAY_MS=30000 run_worker 0 w0
run_worker 1 w1
cluster_ready w0 w1
EXT="127.0.0.1:${CL_EXT[1]},127.0.0.1:${CL_EXT[0]}" # a worker first: it names the initializer

"$ROO_CTL" --external "$EXT" move --abort >"$T/none.out" 2>&1 && fail "aborting no move succeeded"
grep -q 'no partition move is under way' "$T/none.out" || fail "no move: $(cat "$T/none.out")"

start sender "$SENDER" --resumable --stream ab --host "127.0.0.1:${CL_IN[1]}" \
    --file "$T/a.bin" --rate 2000 --batch-size 100 --connect-timeout 60 --ack-timeout 5
sleep 1
join_worker 2 w2
wait_log w0 'partition move 2: holding in 30000 ms \(test delay\)' 30
kill9 w2 # the joiner vanishes; the move would wait for it
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status >"$T/moving.json" ||
    fail "status during the move failed"
grep -q '"move": {"what": "growing by 1 worker(s) (worker2)".*"phase": "pre-copy"' \
    "$T/moving.json" || fail "status shows no move in its pre-copy: $(head -c 600 "$T/moving.json")"

"$ROO_CTL" --external "$EXT" move --abort >"$T/abort.json" 2>&1 ||
    fail "the abort failed: $(cat "$T/abort.json")"
grep -q '"aborted": "growing by 1 worker(s) (worker2)"' "$T/abort.json" ||
    fail "abort answer: $(cat "$T/abort.json")"
grep -q '"table_version": 1' "$T/abort.json" || fail "abort answer: $(cat "$T/abort.json")"
wait_log w1 'partition move to table version 2 abandoned' 30
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status --wait-ready 20 >"$T/after.json" ||
    fail "the cluster is not ready after the abort"
grep -q '"worker_count": 2' "$T/after.json" || fail "status: $(head -c 300 "$T/after.json")"
grep -q '"move"' "$T/after.json" && fail "a move is still shown: $(head -c 400 "$T/after.json")"

# The vanished joiner comes back: its join was given up, it is refused and exits 1.
join_worker 2 w2b
for ((i = 0; i < 600; i++)); do # the second pre-copy is done
    [ "$(grep -c 'partition move 2: holding in 30000 ms' "$T/w0.log")" -ge 2 ] && break
    sleep 0.05
done
[ "$i" -lt 600 ] || fail "the joiner's second grow did not reach its hold delay"
"$ROO_CTL" --external "$EXT" move --abort >"$T/abort2.json" 2>&1 ||
    fail "the second abort failed: $(cat "$T/abort2.json")"
rc=0
wait_exit w2b 30 || rc=$?
[ "$rc" = 1 ] || fail "the refused joiner exited $rc, not 1"
grep -q 'the partition move that was adding this worker was aborted' "$T/w2b.log" ||
    fail "the joiner does not say why: $(tail -2 "$T/w2b.log")"

wait_exit sender 60 || fail "the sender did not finish: $(tail -2 "$T/sender.log")"
check_state_totals "${CL_EXT[0]}" "$T/expected.json"
sleep 1
stop recv TERM || fail "sink check failed: $(tail -1 "$T/recv.log")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
for w in w0 w1; do wait_exit "$w" 30 || fail "$w did not stop cleanly"; done
pass "a grow waiting on a vanished joiner aborted in its pre-copy; its joiner refused; every vote counted once"
