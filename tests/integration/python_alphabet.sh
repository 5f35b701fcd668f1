#!/usr/bin/env bash
# roo-python runs the seed's Alphabet (examples/python/alphabet.py) on one durable worker:
# Wallaroo's vectors through `machida` with Wallaroo's single-worker command line (Pony
# flags included), every output exact; then 200,000 random votes, kill -9, a restart with
# the same command line and 50,000 more: every one of the 250,000 outputs continues the
# totals exactly. Then the partitioned Alphabet on 2 threads (messages cross threads as
# pickled bytes), every output exact.
source "$(dirname "$0")/python_lib.sh"
watchdog 200

IN=$(free_port)
OUT=$(free_port)

# 1. Wallaroo's vectors, Wallaroo's command line.
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$TESTDATA/_expected.json" \
    --votes "$TESTDATA/_test.txt" --expect 1000 --timeout 60 --quiet
wait_log recv 'listening on' 10
(cd "$PYEX" && exec "$MACHIDA" --application-module alphabet --in "127.0.0.1:$IN" \
    --out "127.0.0.1:$OUT" --metrics "127.0.0.1:$(free_port)" --control "127.0.0.1:$(free_port)" \
    --external "127.0.0.1:$(free_port)" --cluster-initializer --data "127.0.0.1:$(free_port)" \
    --name worker-name --resilience-dir "$T/w0" --ponythreads=1 --ponynoblock) >"$T/m0.log" 2>&1 &
PIDS[m0]=$!
wait_log m0 'ready:' 30
grep -q 'ignoring Pony runtime flags: --ponythreads=1 --ponynoblock' "$T/m0.log" ||
    fail "the Pony flags were not reported as ignored"
"$SENDER" --host "127.0.0.1:$IN" --file "$TESTDATA/_test.txt" --quiet
wait_exit recv 60 || fail "Wallaroo's vectors: $(tail -1 "$T/recv.log")"
grep -q 'records=1000 ' "$T/recv.log" || fail "expected exactly 1000 outputs"
stop m0 || fail "machida did not stop cleanly"
grep -q 'stopped: 1000 frames in, 1000 records out, .* 0 callback errors' "$T/m0.log" ||
    fail "the stop line does not count 1000 in, 1000 out, no errors"
pass "machida --application-module alphabet: Wallaroo's 1000 vectors, every output exact"

# 2. kill -9 and restart with the state intact.
"$SENDER" --dry-run --messages 200000 --seed 11 --save "$T/v1.bin" --quiet
"$SENDER" --dry-run --messages 50000 --seed 12 --save "$T/v2.bin" --quiet
cat "$T/v1.bin" "$T/v2.bin" >"$T/all.bin"
"$SENDER" --dry-run --file "$T/all.bin" --expected "$T/all.json" --quiet
start recv2 "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/all.json" \
    --votes "$T/all.bin" --expect 250000 --output "$T/out.bin" --timeout 150 --quiet
wait_log recv2 'listening on' 10
MP=$(free_port)
py_worker w1 "$PYEX" alphabet "$IN" "$OUT" "$T/w1" --metrics "127.0.0.1:$MP"
"$SENDER" --host "127.0.0.1:$IN" --file "$T/v1.bin" --quiet
wait_file_size "$T/out.bin" $((200000 * 13)) 120
wait_outbox_empty "$MP" 30 || fail "the worker kept output in its outbox after the sink took it"
log "200,000 outputs received; kill -9 the worker"
kill9 w1
py_worker w1b "$PYEX" alphabet "$IN" "$OUT" "$T/w1"
grep -q 'recovered 1 key' "$T/w1b.log" || fail "the restart did not recover the one state object"
"$SENDER" --host "127.0.0.1:$IN" --file "$T/v2.bin" --quiet
wait_exit recv2 120 || fail "across kill -9: $(tail -1 "$T/recv2.log")"
stop w1b || fail "the restarted worker did not stop cleanly"
pass "250,000 outputs exact across kill -9 and restart (AllVotes unpickled at recovery)"

# 3. The partitioned Alphabet on 2 threads: one state object per letter.
start recv3 "$RECEIVER" --listen "127.0.0.1:$OUT" --newlines --expect 1000 \
    --output "$T/lines.txt" --timeout 60 --quiet
wait_log recv3 'listening on' 10
py_worker p0 "$PYEX" alphabet_partitioned "$IN" "$OUT" "$T/p0" --threads 2 \
    --external "127.0.0.1:$(free_port)"
"$SENDER" --host "127.0.0.1:$IN" --file "$TESTDATA/_test.txt" --quiet
wait_exit recv3 60 || fail "partitioned: $(tail -1 "$T/recv3.log")"
"$PY" "$PYTEST/check_lines.py" "$TESTDATA/_test.txt" "$T/lines.txt" >"$T/check.txt" ||
    fail "partitioned outputs: $(tail -3 "$T/check.txt")"
stop p0 || fail "the partitioned worker did not stop cleanly"
pass "alphabet_partitioned on 2 threads: every output exact ($(tail -1 "$T/check.txt"))"
