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

# Damage in the middle: the page at the root of the database of databases (named by the
# newer of LMDB's two meta pages) is overwritten. LMDB keeps no checksums, so damage in
# other pages may go unnoticed; this one is met at every start, and the worker must say so
# and exit 1, never die of a signal.
u64() { od -An -t u8 -j "$2" -N 8 "$1" | tr -d ' '; }
u32() { od -An -t u4 -j "$2" -N 4 "$1" | tr -d ' '; }
copy root
db=$T/root/data.mdb
psize=$(u32 "$db" 40)
t0=$(u64 "$db" 144)
t1=$(u64 "$db" $((psize + 144)))
meta=0
[ "$t1" -gt "$t0" ] && meta=$psize
root=$(u64 "$db" $((meta + 16 + 112))) # mm_dbs[MAIN_DBI].md_root
[ "$root" -ge 2 ] || fail "cannot find the main database's root page (got '$root')"
"$SENDER" --dry-run --messages 1000 --seed 9 --save "$T/noise" --quiet
dd if="$T/noise" of="$db" bs="$psize" seek="$root" count=1 conv=notrunc status=none
rc=0
timeout 20 "$ALPHABET" --in "127.0.0.1:$(free_port)" --out "127.0.0.1:$OUT" \
    --resilience-dir "$T/root" >"$T/root.log" 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q 'cannot start' "$T/root.log" ||
    fail "a damaged root page: exit $rc: $(tail -2 "$T/root.log")"
log "a damaged root page (page $root of $((size / psize))): $(grep -o 'cannot start: .\{0,70\}' "$T/root.log")"

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
