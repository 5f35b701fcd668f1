#!/usr/bin/env bash
# A worker started with a tiny state map (--map-size 1M) grows it many times while roo-ctl
# reads the committed state over and over (key lookups and whole scans on the io thread):
# growing must wait for those reads (LMDB remaps the file), nothing may crash, and every
# count must be exact.
source "$(dirname "$0")/lib.sh"
watchdog 240

KEYS=${GROW_KEYS:-200000}
OUT=$(free_port)
IN=$(free_port)
EXT=$(free_port)
seq -f 'g%07g' 0 $((KEYS - 1)) | paste -d' ' - - - - >"$T/words.txt"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --newlines --output "$T/out.txt" \
    --expect $((KEYS * 2)) --timeout 200 --quiet
wait_log recv 'listening on' 10
start w "$WORD_COUNT" --in "127.0.0.1:$IN" --out "127.0.0.1:$OUT" --resilience-dir "$T/w" \
    --external "127.0.0.1:$EXT" --map-size 1M --threads 2
wait_log w 'ready:' 20

# Readers: one asks for keys, one scans everything, until the writer is done.
reader() {
    local mode=$1 i=0
    while [ ! -e "$T/done" ]; do
        if [ "$mode" = keys ]; then
            "$ROO_CTL" --external "127.0.0.1:$EXT" query g0000001 "g$(printf %07d $((i * 7919 % KEYS)))" \
                >/dev/null 2>>"$T/reader-$mode.err" || echo "query failed" >>"$T/reader-$mode.err"
        else
            "$ROO_CTL" --external "127.0.0.1:$EXT" --timeout 3 query >/dev/null \
                2>>"$T/reader-$mode.err" || echo "scan failed" >>"$T/reader-$mode.err"
        fi
        i=$((i + 1))
    done
}
start rkeys reader keys
start rscan reader scan
for pass in 1 2; do
    cat "$T/words.txt" >"/dev/tcp/127.0.0.1/$IN"
done
wait_exit recv 200 || fail "receiver: $(tail -1 "$T/recv.log")"
touch "$T/done"
wait_exit rkeys 60 || true
wait_exit rscan 60 || true
alive w || fail "the worker died: $(tail -5 "$T/w.log")"
grows=$(grep -c 'state map full: grew it' "$T/w.log" || true)
[ "$grows" -ge 3 ] || fail "the map grew $grows times; the test wants at least 3 (raise GROW_KEYS)"
check_word_counts "$T/out.txt" "$KEYS"
"$ROO_CTL" --external "127.0.0.1:$EXT" query g0000000 "g$(printf %07d $((KEYS - 1)))" >"$T/q.json" ||
    fail "query after the load failed"
grep -q '"g0000000": 2' "$T/q.json" && grep -q "\"g$(printf %07d $((KEYS - 1)))\": 2" "$T/q.json" ||
    fail "committed counts are not 2: $(cat "$T/q.json")"
stop w || fail "the worker did not stop cleanly"
pass "$KEYS keys counted twice while the map grew $grows times under concurrent reads"
