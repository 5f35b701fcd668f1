#!/usr/bin/env bash
# roo-ctl shutdown stops the whole cluster cleanly (every worker exits 0, state committed);
# restarting every worker with the same command line brings the cluster back from its
# saved topology and state: totals continue exactly.
source "$(dirname "$0")/lib.sh"
watchdog 180

OUT=$(free_port)
setup_cluster "$ALPHABET" 3 "$OUT"
"$SENDER" --dry-run --messages 300000 --seed 71 --save "$T/a.bin" --quiet
"$SENDER" --dry-run --messages 300000 --seed 72 --save "$T/b.bin" --quiet
cat "$T/a.bin" "$T/b.bin" >"$T/ab.bin"
"$SENDER" --dry-run --file "$T/ab.bin" --expected "$T/ab.json" --quiet

# One sink across both lives of the cluster, checking every output against the running sums.
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/ab.json" \
    --votes "$T/ab.bin" --expect 600000 --output "$T/out.bin" --timeout 150 --quiet
wait_log recv 'listening on' 10
for i in 0 1 2; do run_worker "$i" "w$i"; done
cluster_ready w0 w1 w2
"$SENDER" --host "127.0.0.1:${CL_IN[0]}" --file "$T/a.bin" --quiet
wait_file_size "$T/out.bin" $((300000 * 13)) 60

"$ROO_CTL" --external "127.0.0.1:${CL_EXT[2]}" shutdown >"$T/shutdown.json" ||
    fail "roo-ctl shutdown failed: $(cat "$T/shutdown.json")"
for i in 0 1 2; do
    wait_exit "w$i" 30 || fail "worker $i exited $? after roo-ctl shutdown"
done
grep -q 'cluster drained' "$T/w0.log" || fail "the initializer did not report the drain"
pass "roo-ctl shutdown: all 3 workers drained and exited 0"

for i in 2 0 1; do run_worker "$i" "r$i"; done
cluster_ready r0 r1 r2
for i in 0 1 2; do grep -q 'recovered [0-9]* key' "$T/r$i.log" || fail "worker $i recovered nothing"; done
"$SENDER" --host "127.0.0.1:${CL_IN[0]}" --file "$T/b.bin" --quiet
wait_exit recv 120 || fail "after restart: $(tail -1 "$T/recv.log")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "second shutdown failed"
for i in 0 1 2; do wait_exit "r$i" 30 || fail "worker $i exited $? after the second shutdown"; done
pass "restarted cluster recovered its state: all 600,000 outputs exact across the restart"
