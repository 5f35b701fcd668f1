#!/usr/bin/env bash
# Chaos: 3 workers, two resumable senders at a steady rate, and kill -9 of a random worker
# (the initializer included) every few seconds for CHAOS_SECONDS (default 30), each restarted
# after a random delay; twice, two workers are down at once. At the end every vote must be
# counted exactly once: the sink's last total per letter and the state's totals (roo-ctl
# query) both equal the truth, and at the sink no letter's total ever goes down except by
# repeating a total it already had (a restarted worker resends output it may have written).
#
# CHAOS_SEED (default 42) drives every random choice; it is printed so a failure can be
# replayed: CHAOS_SEED=<seed> meson test cluster_chaos
#
# CHAOS_APP=python (test python_chaos) runs the same storm on roo-python workers running
# examples/python/alphabet_partitioned.py with binary output (tests/python/
# alphabet_partitioned_bin.py: each letter's state a live Python object, pickled at each
# commit and between workers), for CHAOS_SECONDS 15 by default. Their state holds
# Python objects, which roo-ctl query shows only as pickled bytes: there the sink's check is
# the exact one.
PYAPP=${CHAOS_APP:-}
if [ "$PYAPP" = python ]; then
    source "$(dirname "$0")/python_lib.sh"
else
    source "$(dirname "$0")/lib.sh"
fi

SEED=${CHAOS_SEED:-42}
SECONDS_RUN=${CHAOS_SECONDS:-30}
RATE=${CHAOS_RATE:-15000}
[ "$PYAPP" = python ] && SECONDS_RUN=${CHAOS_SECONDS:-15} && RATE=${CHAOS_RATE:-10000}
san=$(meson introspect --buildoptions "$BUILD" 2>/dev/null |
    grep -Eo '"name": "b_sanitize", "value": "[a-z,]+"' | sed 's/.*"value": "//; s/"$//' || true)
if [ -n "$san" ] && [ "$san" != none ]; then
    # Sanitized workers run several times slower: a shorter, slower storm tests the same paths.
    SECONDS_RUN=${CHAOS_SECONDS:-15}
    RATE=${CHAOS_RATE:-4000}
    log "sanitized build ($san): $SECONDS_RUN s of chaos at $RATE votes/s per sender"
fi
echo "chaos seed: $SEED (replay with CHAOS_SEED=$SEED)"
log "chaos seed $SEED, $SECONDS_RUN s, $RATE votes/s per sender"
RANDOM=$SEED
watchdog $((SECONDS_RUN + 240))

OUT=$(free_port)
APP=$ALPHABET
[ "$PYAPP" = python ] && APP=$(py_cluster_app alphabet_partitioned_bin)
setup_cluster "$APP" 3 "$OUT"
MSGS=$((RATE * (SECONDS_RUN + 5)))
make_votes a "$MSGS" $((SEED * 2 + 1))
make_votes b "$MSGS" $((SEED * 2 + 2))
make_truth "$T/a.bin" "$T/b.bin"

start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/expected.json" \
    --allow-repeats --timeout $((SECONDS_RUN + 300)) --quiet
wait_log recv 'listening on' 10
for i in 0 1 2; do run_worker "$i" "w$i-0"; done
cluster_ready w0-0 w1-0 w2-0
declare -A LIFE=([0]=0 [1]=0 [2]=0)

H0=127.0.0.1:${CL_IN[0]}
H1=127.0.0.1:${CL_IN[1]}
H2=127.0.0.1:${CL_IN[2]}
start senderA "$SENDER" --resumable --stream chaos-a --host "$H0,$H1,$H2" --file "$T/a.bin" \
    --rate "$RATE" --batch-size 500 --connect-timeout 60 --ack-timeout 5
start senderB "$SENDER" --resumable --stream chaos-b --host "$H1,$H2,$H0" --file "$T/b.bin" \
    --rate "$RATE" --batch-size 500 --connect-timeout 60 --ack-timeout 5

restart() { # restart I: start worker I again with the same command line
    local i=$1
    LIFE[$i]=$((LIFE[$i] + 1))
    run_worker "$i" "w$i-${LIFE[$i]}"
}
kill_worker() {
    log "kill -9 $(cl_name "$1")"
    kill9 "w$1-${LIFE[$1]}"
}

end=$((SECONDS + SECONDS_RUN))
doubles=0
kills=0
round=0
while [ "$SECONDS" -lt "$end" ]; do
    sleep "$((2 + RANDOM % 3)).$((RANDOM % 10))"
    round=$((round + 1))
    a=$((RANDOM % 3))
    if [ "$doubles" -lt 2 ] && { [ "$round" = 3 ] || [ "$round" = 7 ]; }; then
        b=$(((a + 1 + RANDOM % 2) % 3))
        kill_worker "$a"
        kill_worker "$b"
        kills=$((kills + 2))
        doubles=$((doubles + 1))
        sleep "0.$((2 + RANDOM % 8))"
        restart "$a"
        sleep "0.$((RANDOM % 10))"
        restart "$b"
    else
        kill_worker "$a"
        kills=$((kills + 1))
        sleep "$((RANDOM % 2)).$((RANDOM % 10))"
        restart "$a"
    fi
done
log "chaos over: $kills kills ($doubles times two at once); waiting for the senders"
for i in 0 1 2; do wait_log "w$i-${LIFE[$i]}" 'ready: application' 30; done

wait_exit senderA $((120 + SECONDS_RUN)) || fail "sender A did not finish: $(tail -2 "$T/senderA.log")"
wait_exit senderB 120 || fail "sender B did not finish: $(tail -2 "$T/senderB.log")"
log "both senders done (every vote acknowledged): $(grep -ho 'reconnects=[0-9]*' "$T"/sender?.log | tr '\n' ' ')"

# The state: every letter's committed total equals the truth.
[ "$PYAPP" = python ] || check_state_totals "${CL_EXT[0]}" "$T/expected.json"

# The sink: once the last outputs are delivered (output follows its commit within
# milliseconds; allow a few seconds), its last totals must equal the truth, and totals may
# only have gone down by repeating one they already had.
sleep 3
stop recv TERM || fail "sink check failed: $(tail -1 "$T/recv.log")"
log "$(grep -o 'records=.*' "$T/recv.log" | tail -1)"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
for i in 0 1 2; do wait_exit "w$i-${LIFE[$i]}" 40 || fail "worker $i exited $? at shutdown"; done
where="at the state and the sink"
[ "$PYAPP" = python ] && where="at the sink (Python workers)"
pass "seed $SEED: $kills kills in ${SECONDS_RUN}s, every vote counted once $where"
