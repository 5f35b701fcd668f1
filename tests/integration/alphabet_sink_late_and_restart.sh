#!/usr/bin/env bash
# The sink is a separate process that may not be there: output must wait for a sink that
# starts late, and survive a sink that is killed and restarted mid-stream (resent, so at
# least once: every output reaches some sink instance).
source "$(dirname "$0")/lib.sh"
watchdog 120

IN=$(free_port)
OUT=$(free_port)

# --- a sink that starts late -------------------------------------------------------------
"$SENDER" --dry-run --messages 100000 --seed 21 --save "$T/late.bin" --expected "$T/late.json" --quiet
alphabet_worker w0 "$IN" "$OUT" "$T/w0"
"$SENDER" --host "127.0.0.1:$IN" --file "$T/late.bin" --quiet
wait_log w0 "sink 127.0.0.1:$OUT: cannot connect" 10
sleep 1
log "votes sent while no sink listens; starting the sink now"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/late.json" \
    --votes "$T/late.bin" --expect 100000 --timeout 30 --quiet
wait_exit recv 30 || fail "late sink: $(tail -1 "$T/recv.log")"
stop w0 || fail "worker did not stop cleanly"
pass "late sink got all 100,000 outputs, each exact"

# --- a sink killed with kill -9 mid-stream and restarted ------------------------------------
# Twice: at 200,000 votes/s the worker's batches are small, and the output it keeps to
# resend is copied; at 10 M votes/s they are big, and it keeps the batches' own buffers.
kill_mid_stream() { # kill_mid_stream NAME MESSAGES RATE SEED
    local n=$1 msgs=$2 rate=$3 seed=$4
    "$SENDER" --dry-run --messages "$msgs" --seed "$seed" --save "$T/$n.bin" \
        --expected "$T/$n.json" --quiet
    start "recvA$n" "$RECEIVER" --listen "127.0.0.1:$OUT" --output "$T/a$n.bin" --quiet
    wait_log "recvA$n" 'listening on' 10
    alphabet_worker "w$n" "$IN" "$OUT" "$T/w$n"
    start "sender$n" "$SENDER" --host "127.0.0.1:$IN" --file "$T/$n.bin" --rate "$rate" --quiet
    wait_file_size "$T/a$n.bin" $((msgs / 4 * 13)) 30
    # A sink dies with output it read but had not written out yet, and unread output in its
    # socket: the worker must resend from before both. Stopped first, it stops reading while
    # the output goes on, so its kernel resets the connection at the kill. (Killed while its
    # socket was empty, the close is orderly, and bytes it had read, which no worker can know
    # were lost, are not sent again: see "Sinks" in docs/architecture.md.)
    kill -STOP "${PIDS[recvA$n]}"
    sleep 0.3
    kill9 "recvA$n"
    log "sink A killed after $(framed_count "$T/a$n.bin") outputs; restarting it"
    sleep 0.3
    start "recvB$n" "$RECEIVER" --listen "127.0.0.1:$OUT" --output "$T/b$n.bin" \
        --alphabet-check "$T/$n.json" --idle-exit 3 --timeout 60 --quiet
    wait_exit "sender$n" 30 || fail "sender failed"
    wait_exit "recvB$n" 60 || fail "restarted sink: $(tail -1 "$T/recvB$n.log")"
    # A sink killed with -9 may have written part of its last record: that record is not
    # delivered (the worker resends it to the next sink), so cut it off.
    truncate -s $(($(stat -c %s "$T/a$n.bin") / 13 * 13)) "$T/a$n.bin"
    cat "$T/a$n.bin" "$T/b$n.bin" >"$T/ab$n.bin"
    "$RECEIVER" --input "$T/ab$n.bin" --alphabet-check "$T/$n.json" --votes "$T/$n.bin" \
        --at-least-once --quiet 2>"$T/offline$n.log" ||
        fail "outputs lost across the sink restart: $(tail -1 "$T/offline$n.log")"
    log "$(tail -1 "$T/offline$n.log")"
    grep -q 'will resend' "$T/w$n.log" || fail "worker did not report the resend"
    stop "w$n" || fail "worker did not stop cleanly"
}
kill_mid_stream slow 400000 200000 22
pass "every one of 400,000 outputs reached a sink across its kill -9 and restart"
kill_mid_stream fast 6000000 10000000 23
pass "every one of 6,000,000 outputs (big batches) reached a sink across its kill -9 and restart"

# --- a sink that stops reading for a while, twice, and goes on ------------------------------
# The committer writes to an idle sink itself; a full socket (megabytes of output behind a
# stopped sink) hands the rest to the io thread, and the committer writes again once the
# sink has caught up. Nothing may be lost, repeated or reordered on the way (the connection
# never breaks).
"$SENDER" --dry-run --messages 3000000 --seed 23 --save "$T/pause.bin" --expected "$T/pause.json" \
    --quiet
start recvC "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/pause.json" \
    --votes "$T/pause.bin" --expect 3000000 --timeout 60 --quiet
wait_log recvC 'listening on' 10
alphabet_worker w2 "$IN" "$OUT" "$T/w2"
start sender "$SENDER" --host "127.0.0.1:$IN" --file "$T/pause.bin" --rate 1000000 --quiet
for i in 1 2; do
    sleep 0.3
    kill -STOP "${PIDS[recvC]}" 2>/dev/null || break
    sleep 1.2
    kill -CONT "${PIDS[recvC]}"
done
wait_exit sender 30 || fail "sender failed"
wait_exit recvC 60 || fail "paused sink: $(tail -1 "$T/recvC.log")"
grep -qE 'connection lost|write failed' "$T/w2.log" && fail "the connection to the paused sink broke"
stop w2 || fail "worker did not stop cleanly"
pass "a sink that stopped reading twice got all 3,000,000 outputs, each exact, once, in order"
