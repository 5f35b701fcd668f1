#!/usr/bin/env bash
# roo-ctl query prints keys as JSON strings that any JSON parser reads back to the exact
# key: UTF-8 as it is ("café"), other bytes as \xHH and a backslash doubled (README,
# Operating; the backslash case is a unit test, word_count splits words there). Keys asked
# for by name and a whole scan agree.
source "$(dirname "$0")/lib.sh"
watchdog 60

OUT=$(free_port)
IN=$(free_port)
EXT=$(free_port)
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --newlines --output "$T/out.txt" --expect 4 \
    --timeout 30 --quiet
wait_log recv 'listening on' 10
start w "$WORD_COUNT" --in "127.0.0.1:$IN" --out "127.0.0.1:$OUT" --resilience-dir "$T/w" \
    --external "127.0.0.1:$EXT"
wait_log w 'ready:' 20
printf 'caf\xc3\xa9 na\xc3\xafve caf\xc3\xa9 caf\xff\n' >"/dev/tcp/127.0.0.1/$IN"
wait_exit recv 20 || fail "receiver: $(tail -1 "$T/recv.log")"

"$ROO_CTL" --external "127.0.0.1:$EXT" query "$(printf 'caf\xc3\xa9')" "$(printf 'na\xc3\xafve')" \
    "$(printf 'caf\xff')" >"$T/named.json" || fail "query by key failed"
"$ROO_CTL" --external "127.0.0.1:$EXT" query >"$T/all.json" || fail "whole query failed"
for f in named all; do
    python3 - "$T/$f.json" <<'PY' || fail "$f query: $(cat "$T/$f.json")"
import json, re, sys
values = json.load(open(sys.argv[1], encoding="utf-8"))["values"]
def key_bytes(text):  # the documented mapping back: \xHH is a byte, \\ a backslash
    out, i = bytearray(), 0
    while i < len(text):
        if text.startswith("\\\\", i):
            out += b"\\"; i += 2
        elif re.match(r"\\x[0-9a-f]{2}", text[i:]):
            out.append(int(text[i + 2:i + 4], 16)); i += 4
        else:
            out += text[i].encode("utf-8"); i += 1
    return bytes(out)
got = {key_bytes(k): v for k, v in values.items()}
want = {b"caf\xc3\xa9": 2, b"na\xc3\xafve": 1, b"caf\xff": 1}
if got != want:
    sys.exit("got %r, want %r" % (got, want))
PY
done
stop w || fail "worker did not stop cleanly"
pass "UTF-8, backslash and non-UTF-8 keys read back exactly from roo-ctl query"
