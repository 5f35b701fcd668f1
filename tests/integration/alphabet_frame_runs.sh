#!/usr/bin/env bash
# A read's frames of one length are framed as a run (their headers checked without waiting
# for each other); a frame of another length in the middle of a read ends the run exactly
# where it stands: the frames before it are applied, it is the one rejected, by its number.
source "$(dirname "$0")/lib.sh"
watchdog 60

IN=$(free_port)
OUT=$(free_port)
"$SENDER" --dry-run --messages 5000 --seed 7 --save "$T/good.bin" --expected "$T/good.json" --quiet
# One connection, one write: 5000 good frames, a 6-byte payload, then good frames that must
# never be applied.
{ cat "$T/good.bin"; printf '\x00\x00\x00\x06abcdef'; head -c 900 "$T/good.bin"; } >"$T/mixed.bin"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/good.json" \
    --votes "$T/good.bin" --expect 5000 --timeout 30 --quiet
wait_log recv 'listening on' 10
alphabet_worker w0 "$IN" "$OUT" "$T/w0"
exec 3<>"/dev/tcp/127.0.0.1/$IN"
cat "$T/mixed.bin" >&3
wait_log w0 'decoder rejected frame 5001 \(6-byte payload\)' 10
exec 3>&-
wait_exit recv 30 || fail "outputs before the bad frame not exact: $(tail -1 "$T/recv.log")"
sleep 0.3
n=$(grep -c 'decoder rejected' "$T/w0.log")
[[ $n == 1 ]] || fail "expected one rejection, saw $n"
stop w0 || fail "worker did not stop cleanly"
pass "5000 frames applied, frame 5001 (another length) rejected by number, nothing after it"
