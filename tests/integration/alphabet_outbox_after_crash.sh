#!/usr/bin/env bash
# Output of committed updates must reach the sink even if the worker dies before writing it:
# with the sink down, 100,000 votes are processed and committed (their output held), the
# worker is killed with kill -9, the sink starts, the worker restarts and sends the stored
# output first, then 50,000 more votes: all 150,000 outputs arrive, each exact, none twice.
source "$(dirname "$0")/lib.sh"
watchdog 120

IN=$(free_port)
OUT=$(free_port)
EXT=$(free_port)
"$SENDER" --dry-run --messages 100000 --seed 101 --save "$T/a.bin" --quiet
"$SENDER" --dry-run --messages 50000 --seed 102 --save "$T/b.bin" --quiet
cat "$T/a.bin" "$T/b.bin" >"$T/ab.bin"
"$SENDER" --dry-run --file "$T/ab.bin" --expected "$T/ab.json" --quiet

alphabet_worker w0 "$IN" "$OUT" "$T/w0" --external "127.0.0.1:$EXT"
"$SENDER" --host "127.0.0.1:$IN" --file "$T/a.bin" --quiet
# Wait until all 100,000 are in and committed (status counts frames per sealed batch).
for ((i = 0; i < 100; i++)); do
    "$ROO_CTL" --external "127.0.0.1:$EXT" status >"$T/status.json" 2>/dev/null || true
    grep -q '"frames_in": 100000' "$T/status.json" && break
    sleep 0.1
done
grep -q '"frames_in": 100000' "$T/status.json" || fail "the votes were not all processed"
sleep 0.5
kill9 w0
log "worker killed with its output still held (the sink never started)"

start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/ab.json" --votes "$T/ab.bin" \
    --expect 150000 --timeout 60 --quiet
wait_log recv 'listening on' 10
alphabet_worker w1 "$IN" "$OUT" "$T/w0" --external "127.0.0.1:$EXT"
grep -q 'of output committed before the restart again' "$T/w1.log" ||
    fail "the restarted worker did not resend its stored output"
"$SENDER" --host "127.0.0.1:$IN" --file "$T/b.bin" --quiet
wait_exit recv 60 || fail "outputs lost or wrong: $(tail -1 "$T/recv.log")"
grep -q 'duplicates=0' "$T/recv.log" || true
stop w1 || fail "worker did not stop cleanly"
pass "100,000 outputs committed before kill -9 were delivered after the restart; all 150,000 exact"
