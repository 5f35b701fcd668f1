#!/usr/bin/env bash
# roo-ctl on a real 3-worker word_count cluster: its JSON parses, with every key once at its
# count and UTF-8 keys as they are ("café", "naïve"); --format table prints the status as
# one row per worker and a query as KEY VALUE; --format bogus is a usage error (exit 2). A
# query for named keys asks only their owner (the status's partition table): it still
# answers with every other worker killed, and fails (exit 1), naming the key and the worker,
# when the owner is the one down.
source "$(dirname "$0")/lib.sh"
watchdog 150

OUT=$(free_port)
setup_cluster "$WORD_COUNT" 3 "$OUT"
for i in 0 1 2; do run_worker "$i" "w$i"; done
cluster_ready w0 w1 w2

# Words w000..w199, word i sent (i mod 3) + 1 times, "café" 3 times and "naïve" once, and
# 60,000 words once each (every worker's answer then takes more than one page), in two
# halves through two workers (so most words cross to their owner).
python3 - "$T" <<'PY'
import json, sys
words, want = [], {}
for i in range(200):
    w = "w%03d" % i
    want[w] = i % 3 + 1
    words += [w] * want[w]
want["café"], want["naïve"] = 3, 1
words += ["café", "naïve", "café", "café"]
for i in range(60000):
    want["page-%05d" % i] = 1
    words.append("page-%05d" % i)
def lines(ws):  # ten words a line
    return "".join(" ".join(ws[i : i + 10]) + "\n" for i in range(0, len(ws), 10))
with open(sys.argv[1] + "/a.txt", "w", encoding="utf-8") as f:
    f.write(lines(words[: len(words) // 2]))
with open(sys.argv[1] + "/b.txt", "w", encoding="utf-8") as f:
    f.write(lines(words[len(words) // 2 :]))
json.dump(want, open(sys.argv[1] + "/want.json", "w", encoding="utf-8"))
print(len(words), file=open(sys.argv[1] + "/count.txt", "w"))
PY
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --newlines --output "$T/out.txt" \
    --expect "$(cat "$T/count.txt")" --timeout 60 --quiet
wait_log recv 'listening on' 10
cat "$T/a.txt" >"/dev/tcp/127.0.0.1/${CL_IN[0]}"
cat "$T/b.txt" >"/dev/tcp/127.0.0.1/${CL_IN[2]}"
wait_exit recv 60 || fail "receiver: $(tail -1 "$T/recv.log")"

ctl() { "$ROO_CTL" --external "127.0.0.1:${CL_EXT[1]}" "$@"; }

# The whole state as JSON, read in pages: each key exactly once, at its count.
ctl query >"$T/all.json" 2>"$T/all.err" || fail "roo-ctl query: $(cat "$T/all.err")"
python3 - "$T/all.json" "$T/want.json" <<'PY' || fail "roo-ctl query's JSON is wrong"
import collections, json, sys
names = collections.Counter()
def count_names(pairs):
    if pairs and all(isinstance(v, int) for _, v in pairs):
        names.update(k for k, _ in pairs)  # the "values" object: a key listed twice shows
    return dict(pairs)
d = json.load(open(sys.argv[1], encoding="utf-8"), object_pairs_hook=count_names)
want = json.load(open(sys.argv[2], encoding="utf-8"))
twice = [k for k, n in names.items() if n > 1 and k in want]
diff = sorted(k for k in set(d["values"]) | set(want) if d["values"].get(k) != want.get(k))
if diff or twice or d["count"] != len(want) or d["workers"] != 3 or d["unreachable"] \
        or sorted(d["asked"]) != ["initializer", "worker1", "worker2"]:
    sys.exit("differ (key: got, want): %r; twice: %r; count %r workers %r unreachable %r asked %r"
             % ([(k, d["values"].get(k), want.get(k)) for k in diff[:5]], twice[:5], d["count"],
                d["workers"], d["unreachable"], d["asked"]))
PY

# The status carries the partition table: one owner per partition, each a worker's index.
ctl status >"$T/status.json" || fail "roo-ctl status failed"
python3 - "$T/status.json" <<'PY' || fail "status: $(head -c 600 "$T/status.json")"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
idx = {w["index"] for w in d["workers"]}
if len(d["owners"]) != d["partitions"] or set(d["owners"]) != idx or d["table_version"] < 1:
    sys.exit("owners %d for %d partitions, owners %r vs workers %r"
             % (len(d["owners"]), d["partitions"], set(d["owners"]), idx))
PY

# Tables: status, one row per worker under its header; query, KEY and VALUE.
ctl --format table status >"$T/status.txt" || fail "status --format table failed"
grep -Eq '^NAME +INDEX +REACHABLE +READY +PARTITIONS +THREADS +CONTROL +DATA +EXTERNAL +FRAMES_IN .*KEYS' \
    "$T/status.txt" || fail "status table header: $(cat "$T/status.txt")"
for i in 0 1 2; do
    grep -Eq "^$(cl_name "$i") +[0-9]+ +yes +yes +[0-9]+ +1 +127\.0\.0\.1:[0-9]+ +127\.0\.0\.1:[0-9]+ +127\.0\.0\.1:${CL_EXT[i]} +[0-9]+" \
        "$T/status.txt" || fail "status table lacks $(cl_name "$i")'s row: $(cat "$T/status.txt")"
done
grep -q '"owners"\|^owners' "$T/status.txt" && fail "the status table shows the partition table"
ctl --format table query >"$T/query.txt" || fail "query --format table failed"
head -1 "$T/query.txt" | grep -Eq '^KEY +VALUE$' || fail "query table header: $(head -1 "$T/query.txt")"
grep -Eq '^café +3$' "$T/query.txt" && grep -Eq '^naïve +1$' "$T/query.txt" &&
    grep -Eq '^w002 +3$' "$T/query.txt" || fail "query table rows: $(head -5 "$T/query.txt")"
[ "$(wc -l <"$T/query.txt")" = 60203 ] || fail "query table: $(wc -l <"$T/query.txt") lines, want 60203"

rc=0
ctl --format bogus status >"$T/bogus.out" 2>"$T/bogus.err" || rc=$?
[ "$rc" = 2 ] && grep -q -- '--format' "$T/bogus.err" && [ ! -s "$T/bogus.out" ] ||
    fail "--format bogus: exit $rc, $(cat "$T/bogus.err")"

# Named keys go to their owner only ("asked"); find café's owner and one key of another.
owner_of() {
    ctl query "$1" | python3 -c 'import json, sys; d = json.load(sys.stdin); print(*d["asked"])'
}
CAFE=$(owner_of café)
[ "$(ctl query café naïve | python3 -c 'import json, sys; print(json.load(sys.stdin)["values"])')" = \
    "{'café': 3, 'naïve': 1}" ] || fail "query café naïve: $(ctl query café naïve)"
OTHER_KEY=
for ((i = 0; i < 200; i++)); do
    k=$(printf 'w%03d' "$i")
    o=$(owner_of "$k")
    [ "$o" != "$CAFE" ] && OTHER_KEY=$k && OTHER=$o && break
done
[ -n "$OTHER_KEY" ] || fail "every key is owned by $CAFE"
log "café is owned by $CAFE, $OTHER_KEY by $OTHER"
case $CAFE in initializer) OWNER=0 ;; *) OWNER=${CAFE#worker} ;; esac

# Every other worker down: café is still read from its owner alone.
for i in 0 1 2; do [ "$i" = "$OWNER" ] || kill9 "w$i"; done
ctl_owner() { "$ROO_CTL" --external "127.0.0.1:${CL_EXT[OWNER]}" "$@"; }
ctl_owner query café >"$T/cafe.json" 2>"$T/cafe.err" ||
    fail "query café with only its owner up: $(cat "$T/cafe.err")"
python3 - "$T/cafe.json" "$CAFE" <<'PY' || fail "query café: $(cat "$T/cafe.json")"
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
if d["values"] != {"café": 3} or d["asked"] != [sys.argv[2]] or d["unreachable"]:
    sys.exit("wrong answer")
PY
# A key whose owner is down: exit 1, naming the key and the worker.
rc=0
ctl_owner query "$OTHER_KEY" >"$T/other.json" 2>"$T/other.err" || rc=$?
[ "$rc" = 1 ] && grep -q "$OTHER_KEY" "$T/other.err" && grep -q "worker $OTHER " "$T/other.err" ||
    fail "query $OTHER_KEY with its owner down: exit $rc, $(cat "$T/other.err")"
pass "roo-ctl JSON parses with every key once; tables; --format bogus exits 2; named keys read from their owner only"
