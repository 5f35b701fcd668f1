#!/usr/bin/env bash
# One worker, 2,000,000 random votes with every output checked against the running sums;
# then kill -9, restart with the same command line, 50,000 more votes: every output still
# continues the totals exactly, so the state survived the crash. The sink had taken every
# output before the kill, so the restarted worker sends none of it again, although the
# outbox still holds the last --sink-replay bytes of it (kept to resend after a reconnect).
source "$(dirname "$0")/lib.sh"
watchdog 120

IN=$(free_port)
OUT=$(free_port)
"$SENDER" --dry-run --messages 2000000 --seed 11 --save "$T/v1.bin" --quiet
"$SENDER" --dry-run --messages 50000 --seed 12 --save "$T/v2.bin" --quiet
cat "$T/v1.bin" "$T/v2.bin" >"$T/all.bin"
"$SENDER" --dry-run --file "$T/all.bin" --expected "$T/all.json" --quiet

# One receiver spans the crash: it checks all 2,050,000 outputs in order (no repeats).
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/all.json" \
    --votes "$T/all.bin" --expect 2050000 --output "$T/out.bin" --timeout 100 --quiet
wait_log recv 'listening on' 10

MP=$(free_port)
alphabet_worker w0 "$IN" "$OUT" "$T/w0" --metrics "127.0.0.1:$MP"
"$SENDER" --host "127.0.0.1:$IN" --file "$T/v1.bin" --quiet
wait_file_size "$T/out.bin" $((2000000 * 13)) 60
wait_outbox_empty "$MP" 30 || fail "the worker kept output in its outbox after the sink took it"
log "2,000,000 outputs received; kill -9 the worker"
kill9 w0

alphabet_worker w0b "$IN" "$OUT" "$T/w0"
grep -q 'recovered 26 key' "$T/w0b.log" || fail "restart did not report recovering 26 keys"
! grep -q 'committed before the restart again' "$T/w0b.log" ||
    fail "the restarted worker sent output again that the sink had taken"
"$SENDER" --host "127.0.0.1:$IN" --file "$T/v2.bin" --quiet
wait_exit recv 60 || fail "receiver check failed: $(tail -1 "$T/recv.log")"
stop w0b || fail "restarted worker did not stop cleanly"
pass "2,050,000 outputs exact across kill -9 and restart, none sent twice"
