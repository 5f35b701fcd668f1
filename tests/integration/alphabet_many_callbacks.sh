#!/usr/bin/env bash
# Alphabet's `_many` callbacks (roo.h) and its one-message callbacks give the same exact
# outputs for the same votes; a malformed frame in the middle of a read keeps the outputs
# of the frames before it, none after, and closes the connection with one line.
source "$(dirname "$0")/lib.sh"
watchdog 120

"$SENDER" --dry-run --messages 400000 --seed 47 --save "$T/votes.bin" \
    --expected "$T/votes.json" --quiet

# The same votes through both ways of calling the application, each into its own checker.
for mode in many one; do
    in=$(free_port)
    out=$(free_port)
    start "recv-$mode" "$RECEIVER" --listen "127.0.0.1:$out" --alphabet-check "$T/votes.json" \
        --votes "$T/votes.bin" --expect 400000 --timeout 60 --quiet
    wait_log "recv-$mode" 'listening on' 10
    if [ "$mode" = one ]; then
        alphabet_worker "w-$mode" "$in" "$out" "$T/w-$mode" -- --one-at-a-time
    else
        alphabet_worker "w-$mode" "$in" "$out" "$T/w-$mode"
    fi
    "$SENDER" --host "127.0.0.1:$in" --file "$T/votes.bin" --quiet ||
        fail "sender into the $mode worker failed"
    wait_exit "recv-$mode" 60 || fail "$mode: outputs not exact: $(tail -2 "$T/recv-$mode.log")"
    stop "w-$mode" || fail "$mode: worker did not stop cleanly"
done

# 1,000 good votes, a 7-byte frame, then 500 more good votes, in one write: the worker reads
# them in one go, so the bad frame sits inside what decode_many is given.
"$SENDER" --dry-run --messages 1000 --seed 48 --save "$T/prefix.bin" \
    --expected "$T/prefix.json" --quiet
"$SENDER" --dry-run --messages 500 --seed 49 --save "$T/suffix.bin" --quiet
{
    cat "$T/prefix.bin"
    printf '\x00\x00\x00\x07abcdefg'
    cat "$T/suffix.bin"
} >"$T/bad.bin"
IN=$(free_port)
OUT=$(free_port)
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/prefix.json" \
    --votes "$T/prefix.bin" --idle-exit 3 --timeout 60 --output "$T/out.bin"
wait_log recv 'listening on' 10
alphabet_worker w0 "$IN" "$OUT" "$T/w0"
python3 - "$IN" "$T/bad.bin" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(open(sys.argv[2], "rb").read())
try:
    s.recv(1)  # the worker closes (resets) the connection
except ConnectionError:
    pass
PY
wait_log w0 'decoder rejected frame 1001 \(7-byte payload\): decoder rejected the payload; closing' 10
wait_exit recv 30 || fail "the prefix's outputs are not exact: $(tail -2 "$T/recv.log")"
n=$(framed_count "$T/out.bin")
[ "$n" = 1000 ] || fail "expected the 1000 outputs of the frames before the bad one, got $n"
alive w0 || fail "worker died"
stop w0 || fail "worker did not stop cleanly"
pass "400,000 votes exact both ways; a bad frame mid-read kept the 1,000 before it, none after"
