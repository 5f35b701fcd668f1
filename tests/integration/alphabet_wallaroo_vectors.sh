#!/usr/bin/env bash
# Wallaroo's own Alphabet vectors through one worker: _test.txt must end at _expected.json,
# and votes.msg at the totals the sender computes, with one output per input.
source "$(dirname "$0")/lib.sh"
watchdog 60

IN=$(free_port)
OUT=$(free_port)
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$TESTDATA/_expected.json" \
    --votes "$TESTDATA/_test.txt" --expect 1000 --timeout 40 --quiet
wait_log recv 'listening on' 10
alphabet_worker w0 "$IN" "$OUT" "$T/w0"
"$SENDER" --host "127.0.0.1:$IN" --file "$TESTDATA/_test.txt" --quiet
wait_exit recv 40 || fail "receiver check failed on _test.txt: $(tail -1 "$T/recv.log")"
grep -q 'records=1000 ' "$T/recv.log" || fail "expected exactly 1000 outputs"
pass "_test.txt: 1000 outputs, every running total exact, totals equal _expected.json"

# votes.msg: 10,000 records; the totals continue from the state _test.txt left behind,
# so check it on a fresh worker with its own directory.
stop w0
"$SENDER" --dry-run --file "$TESTDATA/votes.msg" --expected "$T/votes-expected.json" --quiet
start recv2 "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/votes-expected.json" \
    --votes "$TESTDATA/votes.msg" --expect 10000 --timeout 40 --quiet
wait_log recv2 'listening on' 10
alphabet_worker w1 "$IN" "$OUT" "$T/w1"
"$SENDER" --host "127.0.0.1:$IN" --file "$TESTDATA/votes.msg" --quiet
wait_exit recv2 40 || fail "receiver check failed on votes.msg: $(tail -1 "$T/recv2.log")"
stop w1 || fail "worker did not stop cleanly"
pass "votes.msg: 10,000 outputs, every running total exact"
