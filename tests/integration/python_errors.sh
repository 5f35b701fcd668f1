#!/usr/bin/env bash
# User errors never crash roo-python: an exception or a wrong result shape in a stateless
# step, a partition function, a state computation or an encoder is logged with its
# traceback, the pipeline, the step and the message, and the message is dropped; the
# worker stays up and every other letter stays exact. A decoder exception closes only its
# connection. A message that cannot be pickled or unpickled to cross to another thread is
# logged and dropped the same way. --python-errors=exit stops at the first error. A module that does not import,
# an application_setup that raises, and a Kafka source exit 1 before any port is opened;
# a saved state whose class was renamed stops the restart with a clear message.
source "$(dirname "$0")/python_lib.sh"
watchdog 150

IN=$(free_port)
OUT=$(free_port)

# One vote for each planted error (see tests/python/errors_app.py).
"$PY" - "$T/errors.bin" <<'PYEOF'
import struct, sys
with open(sys.argv[1], "wb") as f:
    for i, c in enumerate("tuvwxyz"):
        f.write(struct.pack(">IsI", 5, c.encode(), i + 1))
PYEOF
filter_votes "$TESTDATA/_test.txt" "$T/good.bin" tuvwxyz
"$SENDER" --dry-run --file "$T/good.bin" --expected "$T/good.json" --quiet
ngood=$(($(stat -c %s "$T/good.bin") / 9))
nerr=$("$PY" -c 'import sys; d = open(sys.argv[1], "rb").read(); print(sum(d[i + 4] in b"uvwxyz" for i in range(0, len(d), 9)))' "$TESTDATA/_test.txt")
nerr=$((nerr + 6))

start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/good.json" \
    --votes "$T/good.bin" --expect "$ngood" --timeout 60 --quiet
wait_log recv 'listening on' 10
py_worker w0 "$PYTEST" errors_app "$IN" "$OUT" "$T/w0"

# Each planted error once: each is logged, with its traceback where there is one.
"$SENDER" --host "127.0.0.1:$IN" --file "$T/errors.bin" --quiet
wait_log w0 "step 'check': the computation raised; message dropped \(message: Vote\(b'u', 2\)\)" 10
wait_log w0 'ValueError: no votes for u' 10
wait_log w0 "step 'add votes': the state computation returned Vote, not \(output, save\)" 10
wait_log w0 "step 'encoder': the encoder returned int, not bytes or str" 10
wait_log w0 'ZeroDivisionError: integer division or modulo by zero' 10
wait_log w0 "the partition function raised; message dropped \(message: Vote\(b'y', 6\)\)" 10
wait_log w0 "KeyError: 'y has no partition'" 10
wait_log w0 'the partition function returned float, not str or bytes' 10
grep -q 'Traceback (most recent call last)' "$T/w0.log" || fail "no traceback logged"
grep -q "Vote(b't'" "$T/w0.log" && fail "a None from a computation was logged as an error"
pass "every planted error logged once, with the step, the message and the traceback"

# A decoder exception closes its connection only.
"$PY" - "$IN" <<'PYEOF'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(struct.pack(">I", 3) + b"abc")
s.settimeout(10)
try:
    assert s.recv(1) == b"", "the worker did not close the connection"
except ConnectionResetError:
    pass  # closed with the frame unread: a reset, also a close
PYEOF
wait_log w0 "pipeline 'votes', step 'decoder': the decoder raised; its connection is closed" 10
wait_log w0 'struct.error: unpack requires a buffer of 5 bytes' 10
pass "a decoder exception closed its connection, with the traceback logged"

# Wallaroo's vectors: the errors are dropped, the other letters exact, the worker up.
"$SENDER" --host "127.0.0.1:$IN" --file "$TESTDATA/_test.txt" --quiet
wait_exit recv 60 || fail "the other letters: $(tail -1 "$T/recv.log")"
alive w0 || fail "the worker died"
stop w0 || fail "the worker did not stop cleanly"
grep -q "stopped: 1007 frames in, $ngood records out, .* $nerr callback errors" "$T/w0.log" ||
    fail "the stop line does not count $nerr callback errors and $ngood outputs: $(grep stopped: "$T/w0.log")"
pass "$ngood outputs exact; the $nerr failing messages dropped and counted; clean stop"

# Messages cross threads pickled, and only then: on 2 threads, the same 12 votes over two
# connections (one per thread, round-robin), so each letter's votes cross from exactly one.
"$PY" - "$T/wire.bin" <<'PYEOF'
import struct, sys
with open(sys.argv[1], "wb") as f:
    for i, c in enumerate("arsarsarsasa"):
        f.write(struct.pack(">IsI", 5, c.encode(), i + 1))
PYEOF
start recvw "$RECEIVER" --listen "127.0.0.1:$OUT" --expect 17 --timeout 60 --quiet
wait_log recvw 'listening on' 10
py_worker ww "$PYTEST" wire_app "$IN" "$OUT" "$T/ww" --threads 2
"$SENDER" --host "127.0.0.1:$IN" --file "$T/wire.bin" --quiet
"$SENDER" --host "127.0.0.1:$IN" --file "$T/wire.bin" --quiet
wait_exit recvw 60 || fail "wire errors: $(tail -1 "$T/recvw.log")"
wait_log ww "cannot serialize a message to send it to another thread or worker; message dropped \(message: Vote\(b's', " 10
wait_log ww 'TypeError: a vote for s cannot be pickled' 10
wait_log ww 'cannot deserialize a message from another thread or worker; message dropped' 10
wait_log ww "ValueError: a b'r' vote cannot be rebuilt" 10
alive ww || fail "wire errors: the worker died"
stop ww || fail "wire errors: the worker did not stop cleanly"
grep -q "stopped: 24 frames in, 17 records out, .* 7 callback errors" "$T/ww.log" ||
    fail "wire errors: want 17 outputs and 7 errors: $(grep stopped: "$T/ww.log")"
pass "on 2 threads, messages that cannot be pickled or unpickled to cross are logged, dropped, counted"

# --python-errors=exit: the first error stops the worker with status 1.
py_worker w1 "$PYTEST" errors_app "$IN" "$OUT" "$T/w1" --python-errors=exit
"$SENDER" --host "127.0.0.1:$IN" --file "$T/errors.bin" --quiet --linger 0 || true
rc=0
wait_exit w1 20 || rc=$?
[ "$rc" = 1 ] || fail "--python-errors=exit: exit status $rc, want 1"
grep -q 'stopping at the first Python error' "$T/w1.log" || fail "--python-errors=exit: no log line"
pass "--python-errors=exit stops at the first error with status 1"

# Set-up failures: status 1, the reason logged, nothing opened or created.
setup_fails() {
    local name=$1 module=$2 want=$3
    start "$name" env PYTHONPATH="$PYTEST" "$ROO_PYTHON" --application-module "$module" \
        --in "127.0.0.1:$IN" --out "127.0.0.1:$OUT" --resilience-dir "$T/$name"
    rc=0
    wait_exit "$name" 20 || rc=$?
    [ "$rc" = 1 ] || fail "$module: exit status $rc, want 1"
    grep -q -- "$want" "$T/$name.log" || fail "$module: no '$want' in: $(cat "$T/$name.log")"
    grep -q 'ready:' "$T/$name.log" && fail "$module: the worker started"
    [ ! -e "$T/$name" ] || fail "$module: the resilience directory was created"
}
setup_fails s1 bad_import "ModuleNotFoundError: No module named 'no_such_module_for_roo_tests'"
grep -q "cannot import the application module 'bad_import'" "$T/s1.log" || fail "bad_import: no summary"
setup_fails s2 bad_setup 'RuntimeError: application_setup fails on purpose'
setup_fails s3 kafka_app 'Kafka sources are not supported by roo-python'
setup_fails s4 no_such_app "No module named 'no_such_app'"
rc=0
"$ROO_PYTHON" --in "127.0.0.1:$IN" >"$T/s5.log" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "no --application-module: exit status $rc, want 2"
pass "import error, raising application_setup, Kafka, missing module: exit 1 before any port"

# A saved state whose class is gone: the restart stops with a clear message.
mkdir -p "$T/mod"
cp "$PYEX/alphabet.py" "$T/mod/alphabet.py"
start recv2 "$RECEIVER" --listen "127.0.0.1:$OUT" --expect 1000 --timeout 60 --quiet
wait_log recv2 'listening on' 10
py_worker r0 "$T/mod" alphabet "$IN" "$OUT" "$T/r0"
"$SENDER" --host "127.0.0.1:$IN" --file "$TESTDATA/_test.txt" --quiet
wait_exit recv2 60 || fail "renamed state: the first run failed"
stop r0 || fail "renamed state: the first run did not stop cleanly"
# (a new name of another length, and no cached bytecode: a same-size edit within the second
# the first run compiled the module in would look unchanged to Python's .pyc check)
sed -i 's/AllVotes/RenamedVotes/g' "$T/mod/alphabet.py"
rm -rf "$T/mod/__pycache__"
start r1 env PYTHONPATH="$T/mod" "$ROO_PYTHON" --application-module alphabet \
    --in "127.0.0.1:$IN" --out "127.0.0.1:$OUT" --resilience-dir "$T/r0"
rc=0
wait_exit r1 20 || rc=$?
[ "$rc" = 1 ] || fail "renamed state class: exit status $rc, want 1"
grep -q "state 'letter state': cannot rebuild a saved state object (was its class renamed" \
    "$T/r1.log" || fail "renamed state class: no clear message: $(cat "$T/r1.log")"
grep -q "AttributeError: Can't get attribute 'AllVotes'" "$T/r1.log" ||
    fail "renamed state class: no traceback"
pass "a renamed state class stops the restart with a clear message (exit 1)"
