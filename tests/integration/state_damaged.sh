#!/usr/bin/env bash
# A resilience directory that cannot be trusted is refused with one clear line and exit 1,
# never a crash and never an empty start that loses every key: data.mdb cut short, emptied,
# removed, overwritten at the start or in the middle. A standalone worker's directory is
# refused as a cluster member's (its keys would count twice). SIGHUP stops a worker cleanly.
source "$(dirname "$0")/lib.sh"
watchdog 120

IN=$(free_port)
OUT=$(free_port)
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --output /dev/null --timeout 60 --quiet
alphabet_worker w "$IN" "$OUT" "$T/good"
"$SENDER" --host "127.0.0.1:$IN" --messages 200000 --seed 5 --quiet
sleep 1
kill -HUP "$PID_w"
wait_exit w 20 || fail "SIGHUP did not stop the worker cleanly (exit $?)"
grep -q 'received SIGHUP: stopping' "$T/w.log" || fail "no SIGHUP line: $(tail -2 "$T/w.log")"
size=$(stat -c %s "$T/good/data.mdb")

try() { # try NAME REGEX: start a worker on $T/NAME; it must exit 1 with a line matching REGEX
    local name=$1 re=$2 rc=0
    timeout 20 "$ALPHABET" --in "127.0.0.1:$(free_port)" --out "127.0.0.1:$OUT" \
        --resilience-dir "$T/$name" >"$T/$name.log" 2>&1 || rc=$?
    [ "$rc" = 1 ] || fail "$name: exit $rc, want 1: $(tail -2 "$T/$name.log")"
    grep -Eq -- "$re" "$T/$name.log" || fail "$name: no /$re/: $(tail -2 "$T/$name.log")"
}
copy() { rm -rf "${T:?}/$1"; cp -a "$T/good" "$T/$1"; }

copy cut
truncate -s $((size / 2)) "$T/cut/data.mdb"
try cut 'data.mdb is cut short: it has [0-9]+ bytes but its last page'
copy empty
truncate -s 0 "$T/empty/data.mdb"
try empty 'data.mdb is empty but this directory held a worker before'
copy gone
rm "$T/gone/data.mdb"
try gone 'data.mdb is gone but this directory held a worker before'
copy head
dd if=/dev/urandom of="$T/head/data.mdb" bs=4096 count=2 conv=notrunc status=none
try head 'data.mdb is not an LMDB file of a known format'

# Damage in the middle: LMDB keeps no checksums, so the worker may not notice; but if it
# does, it says so and exits 1 (never a signal), and if it starts it serves and stops.
for seed in 1 2 3; do
    copy mid$seed
    pages=$((size / 4096))
    dd if=/dev/urandom of="$T/mid$seed/data.mdb" bs=4096 seek=$((2 + (seed * 7) % (pages - 2))) \
        count=$((pages / 3 + 1)) conv=notrunc status=none
    rc=0
    timeout 20 "$ALPHABET" --in "127.0.0.1:$(free_port)" --out "127.0.0.1:$OUT" \
        --resilience-dir "$T/mid$seed" >"$T/mid$seed.log" 2>&1 &
    pid=$!
    PIDS[mid$seed]=$pid
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        grep -q 'ready:' "$T/mid$seed.log" && break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
    fi
    wait "$pid" || rc=$?
    unset "PIDS[mid$seed]"
    [ "$rc" -lt 128 ] || fail "damage in the middle (seed $seed): killed by signal $((rc - 128)): $(tail -2 "$T/mid$seed.log")"
    if [ "$rc" != 0 ]; then
        [ "$rc" = 1 ] && grep -q 'cannot start' "$T/mid$seed.log" ||
            fail "damage in the middle (seed $seed): exit $rc without a clear line: $(tail -2 "$T/mid$seed.log")"
    fi
    log "damage in the middle, seed $seed: exit $rc ($(grep -o 'cannot start: .\{0,60\}' "$T/mid$seed.log" | head -1))"
done

# A standalone worker's directory cannot become a cluster member's.
copy member
rc=0
timeout 20 "$ALPHABET" --cluster-initializer --worker-count 2 --control "127.0.0.1:$(free_port)" \
    --in "127.0.0.1:$(free_port)" --out "127.0.0.1:$OUT" --resilience-dir "$T/member" \
    >"$T/member.log" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q 'holds the state of a worker that ran alone' "$T/member.log" ||
    fail "standalone directory as a cluster member: exit $rc: $(tail -2 "$T/member.log")"

# The good directory still starts, with its keys.
alphabet_worker w2 "$IN" "$OUT" "$T/good"
grep -q 'recovered 26 key(s)' "$T/w2.log" || fail "the good copy: $(grep recovered "$T/w2.log")"
stop w2 || fail "worker did not stop cleanly"
pass "damaged, emptied and removed state refused with one line; SIGHUP stops cleanly"
