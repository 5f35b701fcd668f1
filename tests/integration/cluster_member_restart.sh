#!/usr/bin/env bash
# A cluster member (and then the initializer) killed with kill -9 between streams and
# restarted with the same command line rejoins from its saved topology and state, and the
# totals continue exactly; the others reconnect their data links to it on their own.
source "$(dirname "$0")/lib.sh"
watchdog 180

OUT=$(free_port)
setup_cluster "$ALPHABET" 3 "$OUT"
for i in 0 1 2; do
    "$SENDER" --dry-run --messages 200000 --seed $((80 + i)) --save "$T/p$i.bin" --quiet
done
cat "$T/p0.bin" "$T/p1.bin" "$T/p2.bin" >"$T/all.bin"
"$SENDER" --dry-run --file "$T/all.bin" --expected "$T/all.json" --quiet
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/all.json" \
    --votes "$T/all.bin" --expect 600000 --output "$T/out.bin" --timeout 150 --quiet
wait_log recv 'listening on' 10
MP=()
for i in 0 1 2; do
    MP[i]=$(free_port)
    run_worker "$i" "w$i" --metrics "127.0.0.1:${MP[i]}"
done
cluster_ready w0 w1 w2

"$SENDER" --host "127.0.0.1:${CL_IN[0]}" --file "$T/p0.bin" --quiet
wait_file_size "$T/out.bin" $((200000 * 13)) 60
wait_outbox_empty "${MP[2]}" 30 || fail "worker2 kept output in its outbox after the sink took it"
kill9 w2
log "worker2 killed; restarting it"
run_worker 2 w2b
wait_log w2b 'ready: application' 20
grep -q "rejoining cluster" "$T/w2b.log" || fail "worker2 did not rejoin from its saved topology"
"$SENDER" --host "127.0.0.1:${CL_IN[0]}" --file "$T/p1.bin" --quiet
wait_file_size "$T/out.bin" $((400000 * 13)) 60
pass "worker2 restarted after kill -9: 400,000 outputs exact so far"

wait_outbox_empty "${MP[0]}" 30 || fail "the initializer kept output in its outbox"
kill9 w0
log "initializer killed; restarting it"
run_worker 0 w0b
wait_log w0b 'ready: application' 20
"$SENDER" --host "127.0.0.1:${CL_IN[1]}" --file "$T/p2.bin" --quiet
wait_exit recv 90 || fail "after the restarts: $(tail -1 "$T/recv.log")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[1]}" status --wait-ready 20 >/dev/null ||
    fail "cluster not ready after the restarts"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
for l in w0b w1 w2b; do wait_exit "$l" 30 || fail "$l exited $? at shutdown"; done
pass "initializer restarted after kill -9 too: all 600,000 outputs exact, clean shutdown"
