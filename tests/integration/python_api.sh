#!/usr/bin/env bash
# The `wallaroo` module of roo-python: its unit tests (tests/python/test_wallaroo.py, run
# on src/python/wallaroo.py, the file roo-python embeds), then the stateless Reverse Word
# (a computation, an app name with a space, UTF-8 text, machida3) and Word Count (a
# computation_multi, to_parallel, a state partitioned by word on 2 threads) end to end, and
# to_sinks (the same outputs to two sinks).
source "$(dirname "$0")/python_lib.sh"
watchdog 150

PYTHONPATH="$SRC/src/python" "$PY" "$PYTEST/test_wallaroo.py" >"$T/unit.log" 2>&1 ||
    fail "test_wallaroo.py: $(tail -20 "$T/unit.log")"
pass "test_wallaroo.py: $(grep -E '^Ran ' "$T/unit.log")"

IN=$(free_port)
OUT=$(free_port)

# Reverse Word: every word back reversed, in order.
"$PY" - "$T/words.bin" "$T/reversed.txt" <<'PYEOF'
import random, struct, sys
random.seed(5)
words = ["roo", "wallaroo", "café", "日本語", "a", "stream", "state"]
with open(sys.argv[1], "wb") as f, open(sys.argv[2], "w", encoding="utf-8") as g:
    for i in range(5000):
        w = random.choice(words) + str(i)
        b = w.encode("utf-8")
        f.write(struct.pack(">I", len(b)) + b)
        g.write(w[::-1] + "\n")
PYEOF
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --newlines --expect 5000 \
    --output "$T/rev-out.txt" --timeout 60 --quiet
wait_log recv 'listening on' 10
start rev env PYTHONPATH="$PYEX" "$BUILD/src/python/machida3" --application-module reverse \
    --in "127.0.0.1:$IN" --out "127.0.0.1:$OUT" --resilience-dir "$T/rev" --ponythreads 1
wait_log rev "ready: application 'Reverse_Word'" 30
"$SENDER" --host "127.0.0.1:$IN" --file "$T/words.bin" --quiet
wait_exit recv 60 || fail "reverse: $(tail -1 "$T/recv.log")"
cmp -s "$T/reversed.txt" "$T/rev-out.txt" || fail "reverse: outputs differ: $(diff "$T/reversed.txt" "$T/rev-out.txt" | head -5)"
stop rev || fail "reverse did not stop cleanly"
pass "machida3 reverse: 5000 UTF-8 words reversed, in order"

# to_sinks: the same outputs to two sinks, each through its own encoder.
OUT2=$(free_port)
start recv1 "$RECEIVER" --listen "127.0.0.1:$OUT" --newlines --expect 5000 \
    --output "$T/sink1.txt" --timeout 60 --quiet
start recv2 "$RECEIVER" --listen "127.0.0.1:$OUT2" --newlines --expect 5000 \
    --output "$T/sink2.txt" --timeout 60 --quiet
wait_log recv1 'listening on' 10
wait_log recv2 'listening on' 10
py_worker two "$PYTEST" two_sinks "$IN" "$OUT,127.0.0.1:$OUT2" "$T/two"
"$SENDER" --host "127.0.0.1:$IN" --file "$T/words.bin" --quiet
wait_exit recv1 60 || fail "to_sinks, sink 1: $(tail -1 "$T/recv1.log")"
wait_exit recv2 60 || fail "to_sinks, sink 2: $(tail -1 "$T/recv2.log")"
cmp -s "$T/reversed.txt" "$T/sink1.txt" || fail "to_sinks: sink 1 differs"
"$PY" -c 'import sys; sys.stdout.write(open(sys.argv[1], encoding="utf-8").read().upper())' \
    "$T/reversed.txt" >"$T/reversed-upper.txt"
cmp -s "$T/reversed-upper.txt" "$T/sink2.txt" || fail "to_sinks: sink 2 differs"
stop two || fail "to_sinks: the worker did not stop cleanly"
grep -q "stopped: 5000 frames in, 10000 records out" "$T/two.log" ||
    fail "to_sinks: $(grep stopped: "$T/two.log")"
pass "to_sinks: 5000 words to both sinks, each through its own encoder"

# Word Count on 2 threads: each word's counts go 1, 2, 3... and end at the truth.
"$PY" - "$T/lines.bin" "$T/truth.txt" <<'PYEOF'
import collections, random, struct, sys
random.seed(7)
vocab = ["w%d" % i for i in range(400)] + ["Don't", "stop!", "été"]
counts = collections.Counter()
with open(sys.argv[1], "wb") as f:
    for i in range(3000):
        line = " ".join(random.choice(vocab) for _ in range(random.randint(1, 12)))
        if i % 7 == 0:
            line += "\n" + random.choice(vocab).upper() + ", the."
        for w in line.lower().split():
            w = w.strip(" !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
            if w:
                counts[w] += 1
        b = line.encode("utf-8")
        f.write(struct.pack(">I", len(b)) + b)
with open(sys.argv[2], "w", encoding="utf-8") as g:
    g.write("%d\n" % sum(counts.values()))
    for w, n in sorted(counts.items()):
        g.write("%s %d\n" % (w, n))
PYEOF
nout=$(head -1 "$T/truth.txt")
start recv2 "$RECEIVER" --listen "127.0.0.1:$OUT" --newlines --expect "$nout" \
    --output "$T/wc-out.txt" --timeout 60 --quiet
wait_log recv2 'listening on' 10
py_worker wc "$PYEX" word_count "$IN" "$OUT" "$T/wc" --threads 2
"$SENDER" --host "127.0.0.1:$IN" --file "$T/lines.bin" --quiet
wait_exit recv2 60 || fail "word count: $(tail -1 "$T/recv2.log")"
"$PY" - "$T/wc-out.txt" "$T/truth.txt" <<'PYEOF' || fail "word count: $(cat "$T/wc-out.txt.check")"
import sys
last, bad = {}, []
for line in open(sys.argv[1], encoding="utf-8"):
    w, _, n = line.rstrip("\n").rpartition(" => ")
    if int(n) != last.get(w, 0) + 1:
        bad.append("%s went from %d to %s" % (w, last.get(w, 0), n))
    last[w] = int(n)
truth = dict(l.split() for l in list(open(sys.argv[2], encoding="utf-8"))[1:])
for w, n in truth.items():
    if last.get(w) != int(n):
        bad.append("%s ended at %s, want %s" % (w, last.get(w), n))
if len(last) != len(truth):
    bad.append("%d words, want %d" % (len(last), len(truth)))
open(sys.argv[1] + ".check", "w").write("\n".join(bad[:5]))
sys.exit(1 if bad else 0)
PYEOF
stop wc || fail "word count did not stop cleanly"
pass "word_count on 2 threads: $nout counts, each word's counts in order and exact"
