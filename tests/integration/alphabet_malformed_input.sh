#!/usr/bin/env bash
# Bad input on one connection closes that connection only, with one precise log line,
# while a good connection keeps being served: every one of its outputs is still exact.
source "$(dirname "$0")/lib.sh"
watchdog 90

IN=$(free_port)
OUT=$(free_port)
"$SENDER" --dry-run --messages 300000 --seed 31 --save "$T/good.bin" --expected "$T/good.json" --quiet
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/good.json" \
    --votes "$T/good.bin" --expect 300000 --timeout 60 --quiet
wait_log recv 'listening on' 10
alphabet_worker w0 "$IN" "$OUT" "$T/w0"
start sender "$SENDER" --host "127.0.0.1:$IN" --file "$T/good.bin" --rate 100000 --quiet
wait_log w0 'source .votes.: connection from' 10

send_raw() { # send_raw FILE: one connection, the file's bytes, then close
    exec 3<>"/dev/tcp/127.0.0.1/$IN"
    cat "$1" >&3
    exec 3>&-
}

printf '\xff\xff\xff\xff' >"$T/huge.bin"
send_raw "$T/huge.bin"
wait_log w0 'declares a 4294967295-byte payload, over --max-frame 65536; closing the connection' 10

printf '\x00\x00\x00\x05ab' >"$T/trunc.bin"
send_raw "$T/trunc.bin"
wait_log w0 'closed in the middle of frame 1 \(2 of 5 bytes\); discarding the partial frame' 10

# Random bytes; the first byte is forced high so the first length is surely over the limit
# (a random small length could otherwise decode as a real vote and change the totals).
{ printf '\xa5'; head -c 8191 /dev/urandom; } >"$T/random.bin"
send_raw "$T/random.bin"
wait_log w0 'frame 1 declares a [0-9]+-byte payload, over --max-frame' 10

printf '\x00\x00\x00\x07abcdefg' >"$T/len7.bin"
send_raw "$T/len7.bin"
wait_log w0 'decoder rejected frame 1 \(7-byte payload\): decoder rejected the payload; closing' 10

printf '\x00\x00\x00\x00' >"$T/zero.bin"
send_raw "$T/zero.bin"
wait_log w0 'decoder rejected frame 1 \(0-byte payload\)' 10

# A plain roo-sender whose bytes the worker refused is told (the worker resets the
# connection) and exits 1, even when everything fit into the socket buffers.
python3 - "$T/bad.bin" <<'PY'
import struct, sys
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack(">I", 70000) + b"x" * 70000)  # over --max-frame
    for _ in range(100):
        f.write(struct.pack(">IcI", 5, b"b", 0))
PY
if "$SENDER" --host "127.0.0.1:$IN" --file "$T/bad.bin" --quiet 2>"$T/bad-sender.log"; then
    fail "roo-sender exited 0 although the worker refused its data"
fi
grep -q 'the worker closed the connection before reading everything sent' "$T/bad-sender.log" ||
    fail "roo-sender did not say why: $(cat "$T/bad-sender.log")"

alive w0 || fail "worker died"
alive sender || log "note: good sender already finished"
wait_exit sender 30 || fail "good sender failed"
wait_exit recv 60 || fail "good stream damaged: $(tail -1 "$T/recv.log")"
stop w0 || fail "worker did not stop cleanly"
pass "6 bad connections closed with precise lines (roo-sender told); 300,000 good outputs exact"
