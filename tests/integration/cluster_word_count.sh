#!/usr/bin/env bash
# word_count on 3 workers with 1,000,000 distinct words (keys nobody declared): every word
# sent twice must end at exactly 2, each word's counts must go 1 then 2, and the state must
# hold all 1,000,000 keys across the cluster. (Sanitized builds, several times slower, use
# 200,000 words: the same paths, paging included; the plain run checks the full million.)
source "$(dirname "$0")/lib.sh"
watchdog 400
KEYS=1000000
san=$(meson introspect --buildoptions "$BUILD" 2>/dev/null |
    grep -Eo '"name": "b_sanitize", "value": "[a-z,]+"' | sed 's/.*"value": "//; s/"$//' || true)
[ -n "$san" ] && [ "$san" != none ] && KEYS=200000

OUT=$(free_port)
setup_cluster "$WORD_COUNT" 3 "$OUT"
for i in 0 1 2; do run_worker "$i" "w$i"; done
cluster_ready w0 w1 w2

# KEYS distinct words, four per line.
seq -f 'w%07g' 0 $((KEYS - 1)) | paste -d' ' - - - - >"$T/words.txt"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --newlines --output "$T/out.txt" \
    --expect $((2 * KEYS)) --timeout 300 --quiet
wait_log recv 'listening on' 10
cat "$T/words.txt" >"/dev/tcp/127.0.0.1/${CL_IN[0]}"
cat "$T/words.txt" >"/dev/tcp/127.0.0.1/${CL_IN[2]}"
wait_exit recv 300 || fail "receiver: $(tail -1 "$T/recv.log")"

check_word_counts "$T/out.txt" "$KEYS"

"$ROO_CTL" --external "127.0.0.1:${CL_EXT[1]}" status >"$T/status.json"
keys=$(grep -o '"keys": [0-9]*' "$T/status.json" | awk '{s += $2} END {print s}')
[ "$keys" = "$KEYS" ] || fail "the cluster holds $keys keys, want $KEYS"
# roo-ctl query reads every worker's keys in pages: all KEYS, each once, each at 2.
log "querying every key"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[2]}" --timeout 60 query >"$T/all.json" ||
    fail "roo-ctl query failed: $(tail -c 300 "$T/all.json")"
python3 - "$T/all.json" "$KEYS" <<'PY' || fail "roo-ctl query's answer is wrong"
import json, sys
pairs = []  # every object's member count: a key listed twice would count twice
d = json.load(open(sys.argv[1], encoding="utf-8"),
              object_pairs_hook=lambda p: (pairs.append(len(p)), dict(p))[1])
v = d["values"]
bad = [k for k, n in v.items() if n != 2]
want = int(sys.argv[2])
if max(pairs) != want or len(v) != want or bad or d["unreachable"] or d["workers"] != 3:
    sys.exit("%d listed, %d distinct, %d not at 2 (%r), unreachable %r"
             % (max(pairs), len(v), len(bad), bad[:3], d["unreachable"]))
PY
log "queried"
for i in 0 1 2; do stop "w$i" || fail "worker $i did not stop cleanly"; done
pass "$KEYS distinct words counted exactly (1 then 2) on 3 workers; status and roo-ctl query show $KEYS keys"
