#!/usr/bin/env bash
# A full disk: commits fail with "the disk is full" and wait, holding their batches; nothing
# is dropped. Once the sink is back, the output it took is let go of in a transaction of its
# own, which makes room, and commits resume: every output exact. Needs root (a small tmpfs
# is the full disk); skipped otherwise.
source "$(dirname "$0")/lib.sh"
watchdog 150

mkdir -p "$T/disk"
mount -t tmpfs -o size=12m tmpfs "$T/disk" 2>/dev/null || skip "cannot mount a tmpfs (needs root)"
CLEANUP_EXTRA='umount "$T/disk"'

IN=$(free_port)
OUT=$(free_port)
N=1000000
"$SENDER" --dry-run --messages "$N" --seed 77 --save "$T/votes.bin" --expected "$T/expected.json" \
    --quiet
# The sink is down: committed output waits in the outbox until every batch is taken and
# the worker stops reading. Then the disk fills up (another file takes what is left), and
# the sink comes back: the next commit, which stores new output and would delete what the
# sink just took, finds no room.
# The room the sink's output frees must hold the batch that waits: fill the disk only once
# the outbox holds more than a whole batch (--batch-bytes, 4 MiB) of output.
M=$(free_port)
alphabet_worker w0 "$IN" "$OUT" "$T/disk/w0" --map-size 64M --log-level debug \
    --metrics "127.0.0.1:$M"
start sender "$SENDER" --host "127.0.0.1:$IN" --file "$T/votes.bin" --linger 100 --quiet
for ((i = 0; i < 600; i++)); do
    outbox=$(curl -s --max-time 5 "http://127.0.0.1:$M/metrics" |
        awk '/^roo_outbox_bytes[{ ]/ { print $NF }')
    [ "${outbox:-0}" -gt 5000000 ] && break
    sleep 0.1
done
[ "${outbox:-0}" -gt 5000000 ] || fail "the outbox never held 5 MB of output: ${outbox:-none}"
dd if=/dev/zero of="$T/disk/filler" bs=64k 2>/dev/null || true
[ "$(df --output=avail "$T/disk" | tail -1)" -le 64 ] || fail "the tmpfs did not fill up"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/expected.json" \
    --votes "$T/votes.bin" --expect "$N" --timeout 100 --quiet
wait_log w0 'cannot commit state to .*: the disk is full' 30
alive w0 || fail "the worker died on a full disk"
wait_log w0 'let go of the outbox.s output up to entry [0-9]+, written to the sinks, to make room' 30
wait_log w0 'state commits work again' 30
wait_exit recv 100 || fail "outputs not exact after the disk was full: $(tail -1 "$T/recv.log")"
wait_exit sender 60 || fail "sender: $(tail -1 "$T/sender.log")"
stop w0 || fail "the worker did not stop cleanly"
pass "a full disk held $N votes' commits; the outbox made room once the sink was back; all exact"
