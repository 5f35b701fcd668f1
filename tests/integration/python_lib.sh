# python_lib.sh: helpers for the roo-python integration tests, on top of lib.sh (source this
# instead of lib.sh).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROO_PYTHON=$BUILD/src/python/roo-python
MACHIDA=$BUILD/src/python/machida
PYEX=$SRC/examples/python       # the example applications
PYTEST=$SRC/tests/python        # the test applications and checkers
PY=${PYTHON:-python3}           # for the checkers (any Python 3)
[ -x "$ROO_PYTHON" ] || skip "roo-python is not built"
# Under ASan: CPython's own leaks at exit are not ours (see the file).
export LSAN_OPTIONS="suppressions=$PYTEST/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

# py_cluster_app MODULE: prints the path of an executable that runs MODULE (from tests/python
# or examples/python) on roo-python with the flags it is given: the "application" for lib.sh's
# setup_cluster and run_worker. It execs, so the PID that start recorded is the worker's.
py_cluster_app() {
    printf '#!/bin/sh\nPYTHONPATH="%s:%s" exec "%s" --application-module %s "$@"\n' \
        "$PYTEST" "$PYEX" "$ROO_PYTHON" "$1" >"$T/pyapp-$1"
    chmod +x "$T/pyapp-$1"
    echo "$T/pyapp-$1"
}

# py_worker NAME DIR MODULE IN OUT WDIR [flags]: run MODULE (found in DIR) on one worker and
# wait until it is ready.
py_worker() {
    local name=$1 dir=$2 module=$3 in=$4 out=$5 wdir=$6
    shift 6
    start "$name" env PYTHONPATH="$dir" "$ROO_PYTHON" --application-module "$module" \
        --in "127.0.0.1:$in" --out "127.0.0.1:$out" --resilience-dir "$wdir" "$@"
    wait_log "$name" 'ready:' 30
}

# filter_votes IN OUT LETTERS: the framed Alphabet votes of IN without those for LETTERS.
filter_votes() {
    "$PY" - "$1" "$2" "$3" <<'PYEOF'
import sys
data = open(sys.argv[1], "rb").read()
skip = sys.argv[3].encode()
out = bytearray()
i = 0
while i < len(data):
    n = int.from_bytes(data[i:i + 4], "big")
    rec = data[i:i + 4 + n]
    if rec[4:5] not in [bytes([c]) for c in skip]:
        out += rec
    i += 4 + n
open(sys.argv[2], "wb").write(out)
PYEOF
}
