#!/usr/bin/env bash
# A resumable hello is trusted only as far as the worker read the stream: an impostor's hello
# with a huge next_offset (which made the worker drop a real client's frames as repeats and
# acknowledge them) is refused, also after kill -9 and restart; a second connection of a
# live stream is refused; the real client's votes are all counted, exactly once.
source "$(dirname "$0")/lib.sh"
watchdog 120
ATTACK=$BUILD/tests/roo-attack

IN=$(free_port)
OUT=$(free_port)
make_votes v1 20000 21
make_votes v2 20000 22
cat "$T/v1.bin" "$T/v2.bin" >"$T/all.bin"
"$SENDER" --dry-run --file "$T/all.bin" --expected "$T/all.json" --quiet
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/all.json" \
    --votes "$T/all.bin" --expect 40000 --timeout 100 --quiet
wait_log recv 'listening on' 10
alphabet_worker w0 "$IN" "$OUT" "$T/w0"

"$SENDER" --host "127.0.0.1:$IN" --resumable --stream real --file "$T/v1.bin" --quiet ||
    fail "the real client's first 20,000 votes were not all acknowledged"

# The impostor: the real stream's name, a next_offset far past what was read.
got=$("$ATTACK" hello "127.0.0.1:$IN" real 1000000000 0)
case $got in
refused:*"read up to frame 20000, not 1000000000"*) ;;
*) fail "a hello past the stream's read position was not refused: $got" ;;
esac
wait_log w0 "hello refused: stream 'real' was read up to frame 20000" 5
# A stream never read here cannot start past frame 0.
got=$("$ATTACK" hello "127.0.0.1:$IN" never-seen 5 0)
[[ $got == refused:* ]] || fail "a new stream's hello at frame 5 was not refused: $got"

# One connection per stream: while one holds 'real', a second hello is refused.
start holder "$ATTACK" hello "127.0.0.1:$IN" real 20000 4
wait_log holder 'welcome 20000' 5
got=$("$ATTACK" hello "127.0.0.1:$IN" real 20000 0)
[[ $got == "refused: stream 'real' is already connected"* ]] ||
    fail "a second connection of a live stream was not refused: $got"
wait_exit holder 10 || fail "the holder failed"

# The read position is stored: after kill -9 the impostor is still refused...
kill9 w0
alphabet_worker w0b "$IN" "$OUT" "$T/w0"
got=$("$ATTACK" hello "127.0.0.1:$IN" real 1000000000 0)
[[ $got == refused:*"up to frame 20000"* ]] ||
    fail "after a restart a hello past the read position was not refused: $got"
# ...and a hello at the real client's acknowledged position is welcomed. More votes, on
# another stream, are all counted.
got=$("$ATTACK" hello "127.0.0.1:$IN" real 20000 0)
[ "$got" = "welcome 20000" ] || fail "the real stream's position was not welcomed: $got"
"$SENDER" --host "127.0.0.1:$IN" --resumable --stream other --file "$T/v2.bin" --quiet ||
    fail "the second 20,000 votes were not all acknowledged"
wait_exit recv 60 || fail "receiver check failed: $(tail -1 "$T/recv.log")"
stop w0b || fail "the worker did not stop cleanly"
log "hellos past the read position refused (also after kill -9), one connection per stream, 40,000 votes exact"

# --stream-max-idle: a stream not read for that long is forgotten, on disk too: a hello at
# its old position is refused after a restart (neither its read position nor its marks
# came back), and the same name starts again from frame 0 with every vote counted.
make_votes v3 3000 23
make_votes v4 3000 24
cat "$T/v3.bin" "$T/v4.bin" >"$T/idle.bin"
"$SENDER" --dry-run --file "$T/idle.bin" --expected "$T/idle.json" --quiet
OUT2=$(free_port)
start recv2 "$RECEIVER" --listen "127.0.0.1:$OUT2" --alphabet-check "$T/idle.json" \
    --votes "$T/idle.bin" --expect 6000 --timeout 60 --quiet
wait_log recv2 'listening on' 10
alphabet_worker w1 "$IN" "$OUT2" "$T/w1" --stream-max-idle 2
"$SENDER" --host "127.0.0.1:$IN" --resumable --stream idle --file "$T/v3.bin" --quiet ||
    fail "the idle stream's votes were not all acknowledged"
got=$("$ATTACK" hello "127.0.0.1:$IN" idle 3000 0)
[ "$got" = "welcome 3000" ] || fail "the stream was forgotten too early: $got"
# The read position (thread 0's registry) and the marks (each thread's; a restart reads a
# read position from them too) age on their own clocks and can go in different passes.
wait_log w1 'idle for more than 2 s \(1 read position' 15
wait_log w1 'idle for more than 2 s \(.*the marks of 1\)' 15
kill9 w1
alphabet_worker w1b "$IN" "$OUT2" "$T/w1" --stream-max-idle 2
got=$("$ATTACK" hello "127.0.0.1:$IN" idle 3000 0)
[[ $got == refused:*"up to frame 0, not 3000"* ]] ||
    fail "a forgotten stream came back after a restart: $got"
"$SENDER" --host "127.0.0.1:$IN" --resumable --stream idle --file "$T/v4.bin" --quiet ||
    fail "the stream started again was not acknowledged"
wait_exit recv2 30 || fail "receiver check failed after the stream was forgotten: $(tail -1 "$T/recv2.log")"
stop w1b || fail "the worker did not stop cleanly"
pass "hellos past the read position refused (also after kill -9), one connection per stream, idle streams forgotten on disk, every vote exact"
