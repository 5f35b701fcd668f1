#!/usr/bin/env bash
# The stateless path: the reverse example turns words around, newline- and length-framed.
source "$(dirname "$0")/lib.sh"
watchdog 60
REVERSE=$BUILD/examples/reverse/reverse

IN=$(free_port)
OUT=$(free_port)
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --newlines --output "$T/lines.out" --expect 3 \
    --timeout 20 --quiet
wait_log recv 'listening on' 10
start rev "$REVERSE" --in "127.0.0.1:$IN" --out "127.0.0.1:$OUT" --resilience-dir "$T/r1"
wait_log rev 'ready:' 10
exec 3<>"/dev/tcp/127.0.0.1/$IN"
printf 'hello\r\nworld\n\nroo' >&3
exec 3>&-
wait_exit recv 20 || fail "line receiver: $(tail -1 "$T/recv.log")"
[ "$(cat "$T/lines.out")" = "$(printf 'olleh\ndlrow\noor')" ] ||
    fail "line output was: $(od -c "$T/lines.out" | head)"
stop rev || fail "reverse did not stop cleanly"
pass "line framing: hello/world/roo reversed (CRLF, empty line and unterminated last line)"

start recv2 "$RECEIVER" --listen "127.0.0.1:$OUT" --framed --output "$T/framed.out" --expect 2 \
    --timeout 20 --quiet
wait_log recv2 'listening on' 10
start rev2 "$REVERSE" --in "127.0.0.1:$IN" --out "127.0.0.1:$OUT" --resilience-dir "$T/r2" \
    -- --framing length
wait_log rev2 'ready:' 10
exec 3<>"/dev/tcp/127.0.0.1/$IN"
printf '\x00\x00\x00\x03abc\x00\x00\x00\x06stream' >&3
exec 3>&-
wait_exit recv2 20 || fail "framed receiver: $(tail -1 "$T/recv2.log")"
printf '\x00\x00\x00\x03cba\x00\x00\x00\x06maerts' | cmp - "$T/framed.out" ||
    fail "framed output was: $(od -c "$T/framed.out" | head)"
stop rev2 || fail "reverse did not stop cleanly"
pass "length framing: abc/stream reversed"
