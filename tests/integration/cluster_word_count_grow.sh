#!/usr/bin/env bash
# word_count with 1,000,000 keys (200,000 under sanitizers) grows and shrinks under a
# stream: 2 workers load 1,000,000
# distinct words; while every word is sent a second time (in slices, over several seconds)
# the cluster grows 2 -> 3 -> 4 and shrinks 4 -> 2. Every word must end at exactly 2 and
# go 1 then 2 at the sink (nothing lost, nothing counted twice, per-key order kept), and the
# state must hold the 1,000,000 keys on the two workers left. Each move's time is printed.
source "$(dirname "$0")/lib.sh"
watchdog 420

OUT=$(free_port)
setup_cluster "$WORD_COUNT" 2 "$OUT"
run_worker 0 w0
run_worker 1 w1
cluster_ready w0 w1
for i in 2 3; do CL_IN[i]=$(free_port); CL_EXT[i]=$(free_port); done
join_worker() {
    start "w$1" "$WORD_COUNT" --join "127.0.0.1:$CL_CTL" --name "worker$1" \
        --in "127.0.0.1:${CL_IN[$1]}" --out "127.0.0.1:$OUT" --resilience-dir "$T/w$1" \
        --external "127.0.0.1:${CL_EXT[$1]}"
}

KEYS=1000000
san=$(meson introspect --buildoptions "$BUILD" 2>/dev/null |
    grep -Eo '"name": "b_sanitize", "value": "[a-z,]+"' | sed 's/.*"value": "//; s/"$//' || true)
# Sanitized workers are several times slower: the same moves with a fifth of the keys.
[ -n "$san" ] && [ "$san" != none ] && KEYS=200000
seq -f 'w%07g' 0 $((KEYS - 1)) | paste -d' ' - - - - >"$T/words.txt"
split -n l/40 -d -a 2 "$T/words.txt" "$T/slice."
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --newlines --output "$T/out.txt" \
    --expect $((2 * KEYS)) --timeout 360 --quiet
wait_log recv 'listening on' 10
cat "$T/words.txt" >"/dev/tcp/127.0.0.1/${CL_IN[0]}"
for ((k = 0; k < 600; k++)); do
    keys=$("$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status 2>/dev/null |
        grep -o '"keys": [0-9]*' | awk '{s += $2} END {print s}')
    [ "$keys" = "$KEYS" ] && break
    sleep 0.2
done
[ "$keys" = "$KEYS" ] || fail "loading: the cluster holds $keys keys, want $KEYS"
log "$KEYS keys loaded on 2 workers; streaming every word again while growing and shrinking"

# The second pass: 40 slices, one every 0.2 s, alternately into both first workers.
(
    for f in "$T"/slice.*; do
        n=${f##*.}
        cat "$f" >"/dev/tcp/127.0.0.1/${CL_IN[$((10#$n % 2))]}"
        sleep 0.2
    done
) &
PIDS[stream]=$!

move_ms() { grep -o "$1: done in [0-9]* ms" "$T/w0.log" | grep -o '[0-9]* ms' | tail -1; }
sleep 1
join_worker 2
wait_log w0 'growing by 1 worker\(s\) \(worker2\): done' 60
log "grow 2 -> 3 with $KEYS keys: $(move_ms 'growing by 1 worker(s) (worker2)')"
join_worker 3
wait_log w0 'growing by 1 worker\(s\) \(worker3\): done' 60
log "grow 3 -> 4: $(move_ms 'growing by 1 worker(s) (worker3)')"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shrink --count 2 >"$T/shrink.json" 2>"$T/shrink.err" ||
    fail "shrink failed: $(cat "$T/shrink.err")"
log "shrink 4 -> 2: $(tr -d '\n' <"$T/shrink.json")"
wait_exit w2 60 || fail "worker2 did not exit 0 after leaving"
wait_exit w3 60 || fail "worker3 did not exit 0 after leaving"
wait_exit stream 60 || fail "the stream of words failed"
wait_exit recv 300 || fail "receiver: $(tail -1 "$T/recv.log")"

check_word_counts "$T/out.txt" "$KEYS"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[1]}" status >"$T/status.json"
keys=$(grep -o '"keys": [0-9]*' "$T/status.json" | awk '{s += $2} END {print s}')
[ "$keys" = "$KEYS" ] || fail "after the moves the cluster holds $keys keys, want $KEYS"
grep -q '"worker_count": 2' "$T/status.json" || fail "status does not show 2 workers"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
wait_exit w0 40 || fail "initializer exited $? at shutdown"
wait_exit w1 40 || fail "worker1 exited $? at shutdown"
pass "$KEYS words: 2 -> 3 -> 4 -> 2 while streaming; every word went 1 then 2; $KEYS keys"
