#!/usr/bin/env bash
# Moves under chaos: a 3-worker Alphabet cluster under two resumable streams grows to 4 and
# shrinks back to 3, CYCLES times (default 2), and each time a random worker (the
# initializer included) is killed with kill -9 right after the join and again during the
# shrink, then restarted. The leaver rejoins under the same name in the next cycle (a new
# index: the old one stays "left"). At the end every vote counts once, at the state and at
# the sink, and no letter's total at the sink ever went down (except by repeating one).
#
# MOVE_SEED (default 5) drives the random choices; it is printed so a failure can be
# replayed: MOVE_SEED=<seed> meson test cluster_move_chaos
source "$(dirname "$0")/lib.sh"

SEED=${MOVE_SEED:-5}
CYCLES=${MOVE_CYCLES:-2}
RATE=4000
SECS=40
san=$(meson introspect --buildoptions "$BUILD" 2>/dev/null |
    grep -Eo '"name": "b_sanitize", "value": "[a-z,]+"' | sed 's/.*"value": "//; s/"$//' || true)
if [ -n "$san" ] && [ "$san" != none ]; then
    CYCLES=${MOVE_CYCLES:-2}
    RATE=1500
    SECS=30
fi
echo "move chaos seed: $SEED (replay with MOVE_SEED=$SEED)"
RANDOM=$SEED
watchdog $((SECS + 300))

MSGS=$((RATE * SECS))
OUT=$(free_port)
setup_cluster "$ALPHABET" 3 "$OUT"
make_votes a "$MSGS" 91
make_votes b "$MSGS" 92
make_truth "$T/a.bin" "$T/b.bin"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/expected.json" \
    --allow-repeats --timeout $((SECS + 250)) --quiet
wait_log recv 'listening on' 10
declare -A LIFE=([0]=0 [1]=0 [2]=0 [3]=0)
for i in 0 1 2; do run_worker "$i" "w$i-0"; done
cluster_ready w0-0 w1-0 w2-0
CL_IN[3]=$(free_port)
CL_EXT[3]=$(free_port)
join3() {
    start "w3-${LIFE[3]}" "$ALPHABET" --join "127.0.0.1:$CL_CTL" --name worker3 \
        --in "127.0.0.1:${CL_IN[3]}" --out "127.0.0.1:$OUT" --resilience-dir "$T/w3" \
        --external "127.0.0.1:${CL_EXT[3]}"
}
kill_restart() { # kill_restart WHEN: kill -9 a random worker of the first three, restart it
    local v=$((RANDOM % 3))
    log "cycle $cycle: kill -9 $(cl_name "$v") $1"
    kill9 "w$v-${LIFE[$v]}"
    sleep "0.$((RANDOM % 8))"
    LIFE[$v]=$((LIFE[$v] + 1))
    run_worker "$v" "w$v-${LIFE[$v]}"
}
# Grows of worker3 done, also those a restarted initializer resumed ("resumed: growing ...").
grows_done() { cat "$T"/w0-*.log | grep -cE 'growing by 1 worker\(s\) \(worker3\): done' || true; }

H="127.0.0.1:${CL_IN[0]},127.0.0.1:${CL_IN[1]},127.0.0.1:${CL_IN[2]}"
EXTS="127.0.0.1:${CL_EXT[1]},127.0.0.1:${CL_EXT[2]},127.0.0.1:${CL_EXT[0]}"
start senderA "$SENDER" --resumable --stream mc-a --host "$H" --file "$T/a.bin" \
    --rate "$RATE" --batch-size 200 --connect-timeout 90 --ack-timeout 5
start senderB "$SENDER" --resumable --stream mc-b --host "$H" --file "$T/b.bin" \
    --rate "$RATE" --batch-size 200 --connect-timeout 90 --ack-timeout 5
sleep 2
for ((cycle = 1; cycle <= CYCLES; cycle++)); do
    join3
    sleep "0.$((RANDOM % 4))"
    kill_restart "right after worker3 asked to join"
    for ((k = 0; k < 300; k++)); do
        [ "$(grows_done)" -ge "$cycle" ] && break
        sleep 0.1
    done
    [ "$k" -lt 300 ] || fail "cycle $cycle: the grow did not complete"
    sleep 1
    # Every worker's external address: the one roo-ctl asks may be the one killed next.
    start "shrink$cycle" "$ROO_CTL" --external "$EXTS" --timeout 90 shrink --workers worker3
    sleep "0.0$((RANDOM % 5))"
    kill_restart "during the shrink"
    wait_exit "w3-${LIFE[3]}" 90 || fail "cycle $cycle: worker3 did not leave cleanly"
    LIFE[3]=$((LIFE[3] + 1))
    wait_exit "shrink$cycle" 90 ||
        fail "cycle $cycle: roo-ctl shrink failed: $(tail -3 "$T/shrink$cycle.log")"
    log "cycle $cycle: grown and shrunk"
    sleep 1
done
wait_exit senderA $((SECS + 150)) || fail "sender A did not finish: $(tail -2 "$T/senderA.log")"
wait_exit senderB 150 || fail "sender B did not finish: $(tail -2 "$T/senderB.log")"
check_state_totals "${CL_EXT[0]}" "$T/expected.json"
sleep 2
stop recv TERM || fail "sink check failed: $(tail -1 "$T/recv.log")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
for i in 0 1 2; do wait_exit "w$i-${LIFE[$i]}" 40 || fail "worker $i exited $? at shutdown"; done
pass "seed $SEED: $CYCLES grow/shrink cycles with kills during them, every vote counted once"
