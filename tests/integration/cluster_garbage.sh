#!/usr/bin/env bash
# Garbage on a control, data or external port closes only that connection, with one log
# line (before the handshake: nothing is parsed until a peer proves the cluster secret); the
# cluster keeps serving: a stream running meanwhile comes out exact.
source "$(dirname "$0")/lib.sh"
watchdog 150

OUT=$(free_port)
setup_cluster "$ALPHABET" 3 "$OUT"
for i in 0 1 2; do run_worker "$i" "w$i"; done
cluster_ready w0 w1 w2
"$SENDER" --dry-run --messages 400000 --seed 61 --save "$T/v.bin" --expected "$T/v.json" --quiet
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/v.json" --votes "$T/v.bin" \
    --expect 400000 --timeout 90 --quiet
wait_log recv 'listening on' 10
start sender "$SENDER" --host "127.0.0.1:${CL_IN[1]}" --file "$T/v.bin" --rate 100000 --quiet

# The data addresses of the joiners are OS-chosen: read them from the status.
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status >"$T/status.json"
DATA1=$(grep -o '"name": "worker1", "index": [0-9]*, "control": "[^"]*", "data": "[^"]*"' \
    "$T/status.json" | sed 's/.*"data": "//; s/"$//')
[ -n "$DATA1" ] || fail "no data address for worker1 in status"

send_to() { # send_to HOST:PORT FILE
    exec 3<>"/dev/tcp/${1%:*}/${1##*:}"
    cat "$2" >&3
    sleep 0.2
    exec 3>&-
}
printf '\xff\xff\xff\xff' >"$T/huge.bin"
printf '\x00\x00\x00\x05hello' >"$T/junk.bin"
{ printf '\x00\x00\x10\x00'; head -c 4096 /dev/urandom; } >"$T/random.bin"

# Before the handshake (src/net/auth.h) nothing is parsed: each is refused as not proving the
# cluster secret, with one line.
send_to "127.0.0.1:$CL_CTL" "$T/huge.bin"
wait_log w0 'control connection from .* did not prove the cluster secret \(a frame too big for a handshake\); closed it' 10
send_to "127.0.0.1:$CL_CTL" "$T/junk.bin"
wait_log w0 'control connection from .* did not prove the cluster secret \(a wrong secret, or not a roo peer\); closed it' 10
send_to "$DATA1" "$T/huge.bin"
wait_log w1 'data connection from .* did not prove the cluster secret \(a frame too big for a handshake\); closed it' 10
send_to "$DATA1" "$T/junk.bin"
wait_log w1 'data connection from .* did not prove the cluster secret \(a wrong secret, or not a roo peer\); closed it' 10
send_to "127.0.0.1:$CL_DATA" "$T/random.bin"
send_to "127.0.0.1:${CL_EXT[2]}" "$T/huge.bin"
wait_log w2 'external connection from .* did not prove the cluster secret \(a frame too big for a handshake\); closed it' 10
pass "garbage on control, data and external ports closed with one line each"

wait_exit sender 60 || fail "sender failed"
wait_exit recv 90 || fail "stream damaged: $(tail -1 "$T/recv.log")"
for i in 0 1 2; do alive "w$i" || fail "worker $i died"; done
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status --wait-ready 10 >/dev/null ||
    fail "cluster not ready after the garbage"
for i in 2 1 0; do stop "w$i" || fail "worker $i did not stop cleanly"; done
pass "the stream through the cluster stayed exact; every worker stopped cleanly"
