# lib.sh: shared helpers for roo's integration tests: real processes on 127.0.0.1, real
# sockets, kill -9 where a test needs it, and cleanup of every process started, by PID.
#
# A test script sources this file, then uses:
#   start NAME CMD...        run CMD in the background, output to $T/NAME.log; sets PID_<NAME>
#   stop NAME [SIG]          signal (default TERM) and wait; returns the exit status
#   kill9 NAME               kill -9 and reap
#   wait_exit NAME SECS      wait for exit; returns its status (fails the test on timeout)
#   wait_log NAME REGEX SECS wait until NAME's log matches REGEX
#   wait_file_size F BYTES SECS
#   free_port                print a TCP port nobody listens on
#   free_ports N             the first of N consecutive free ports
#   fail MSG / pass MSG / skip MSG
# Environment: ROO_BUILD (build dir, set by meson), ROO_SOURCE (source dir), KEEP=1 keeps $T.
set -euo pipefail

BUILD=${ROO_BUILD:?ROO_BUILD must point at the meson build directory}
SRC=${ROO_SOURCE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
ALPHABET=$BUILD/examples/alphabet/alphabet
SENDER=$BUILD/tools/roo-sender
RECEIVER=$BUILD/tools/roo-receiver
TESTDATA=$SRC/tests/data/wallaroo-alphabet
TEST_NAME=$(basename "$0" .sh)
T=$(mktemp -d "/tmp/roo-$TEST_NAME.XXXXXX")
declare -A PIDS=()

log() { printf '%s [%s] %s\n' "$(date +%T.%3N)" "$TEST_NAME" "$*" >&2; }

cleanup() {
    local rc=$?
    local name
    for name in "${!PIDS[@]}"; do
        if [ "$name" = watchdog ]; then
            kill -TERM "${PIDS[$name]}" 2>/dev/null || true
        else
            kill -9 "${PIDS[$name]}" 2>/dev/null || true
        fi
    done
    for name in "${!PIDS[@]}"; do
        wait "${PIDS[$name]}" 2>/dev/null || true
    done
    # A test's own undo (an unmount), once its processes are gone.
    [ -z "${CLEANUP_EXTRA:-}" ] || eval "$CLEANUP_EXTRA" || true
    if [ -f "$T/.ports" ]; then
        while read -r name; do rmdir "$PORTS_DIR/$name" 2>/dev/null || true; done <"$T/.ports"
    fi
    if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
        log "FAILED (exit $rc); logs in $T:"
        for f in "$T"/*.log; do
            [ -f "$f" ] || continue
            echo "----- $(basename "$f") (last 25 lines)" >&2
            tail -25 "$f" >&2
        done
        # Keep the logs (not the data) of a failure for a look afterwards.
        mkdir -p "${TMPDIR:-/tmp}/roo-failed-tests"
        (cd "$T" && tar -czf "${TMPDIR:-/tmp}/roo-failed-tests/$TEST_NAME-$(date +%s).tgz" \
            ./*.log) 2>/dev/null || true
        [ "${KEEP:-0}" = 1 ] || rm -rf "$T"
    else
        [ "${KEEP:-0}" = 1 ] || rm -rf "$T"
    fi
}
trap cleanup EXIT

fail() { log "FAIL: $*"; exit 1; }
pass() { log "PASS: $*"; }
skip() { echo "SKIP: $*"; log "SKIP: $*"; exit 77; }

start() {
    local name=$1
    shift
    "$@" >"$T/$name.log" 2>&1 &
    PIDS[$name]=$!
    printf -v "PID_${name//[^A-Za-z0-9_]/_}" '%s' "$!"
}

alive() { kill -0 "${PIDS[$1]}" 2>/dev/null; }

wait_exit() {
    local name=$1 secs=$2 pid=${PIDS[$1]} i rc
    for ((i = 0; i < secs * 20; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rc=0
            wait "$pid" || rc=$?
            unset "PIDS[$name]"
            return "$rc"
        fi
        sleep 0.05
    done
    fail "$name (pid $pid) did not exit within ${secs}s"
}

stop() {
    local name=$1 sig=${2:-TERM}
    kill -"$sig" "${PIDS[$name]}" 2>/dev/null || true
    wait_exit "$name" 30
}

kill9() {
    local name=$1
    kill -9 "${PIDS[$name]}" 2>/dev/null || true
    wait "${PIDS[$name]}" 2>/dev/null || true
    unset "PIDS[$name]"
}

wait_log() {
    local name=$1 re=$2 secs=$3 i
    for ((i = 0; i < secs * 20; i++)); do
        grep -Eq -- "$re" "$T/$name.log" 2>/dev/null && return 0
        if [ -n "${PIDS[$name]:-}" ] && ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
            grep -Eq -- "$re" "$T/$name.log" 2>/dev/null && return 0
            fail "$name exited before logging /$re/"
        fi
        sleep 0.05
    done
    fail "$name did not log /$re/ within ${secs}s"
}

wait_file_size() {
    local f=$1 want=$2 secs=$3 i size
    for ((i = 0; i < secs * 20; i++)); do
        size=$(stat -c %s "$f" 2>/dev/null || echo 0)
        [ "$size" -ge "$want" ] && return 0
        sleep 0.05
    done
    fail "$f did not reach $want bytes within ${secs}s (has $(stat -c %s "$f" 2>/dev/null || echo 0))"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Ports handed out are reserved (a directory each under PORTS_DIR, made atomically) until
# the test ends: a test never gets the same port twice before its processes bind them, nor
# one that a test running beside it just got.
PORTS_DIR=${TMPDIR:-/tmp}/roo-test-ports
free_port() {
    local p i
    mkdir -p "$PORTS_DIR"
    for ((i = 0; i < 200; i++)); do
        # Below the kernel's ephemeral range (32768+ by default), so outgoing connections
        # never take a port between our check and the worker's bind.
        p=$((10000 + (RANDOM * 32768 + RANDOM) % 22000))
        if ! port_busy "$p" && mkdir "$PORTS_DIR/$p" 2>/dev/null; then
            echo "$p" >>"$T/.ports"
            echo "$p"
            return 0
        fi
    done
    fail "no free port found"
}

# A free port whose next $1 - 1 ports are free too, all reserved like free_port's.
free_ports() {
    local n=$1 p i ok
    for ((try = 0; try < 50; try++)); do
        p=$(free_port)
        ok=1
        for ((i = 1; i < n; i++)); do
            if port_busy $((p + i)) || ! mkdir "$PORTS_DIR/$((p + i))" 2>/dev/null; then
                ok=0
                break
            fi
            echo $((p + i)) >>"$T/.ports"
        done
        [ "$ok" = 1 ] && echo "$p" && return 0
    done
    fail "no run of $n free ports found"
}

# served_port LOGNAME: the port a worker's --metrics took (its "metrics: serving" line).
served_port() { grep -oE 'metrics: serving http://127\.0\.0\.1:[0-9]+' "$T/$1.log" | grep -oE '[0-9]+$'; }

# Run a worker of the Alphabet app: alphabet_worker NAME IN OUT DIR [extra flags]
alphabet_worker() {
    local name=$1 in=$2 out=$3 dir=$4
    shift 4
    start "$name" "$ALPHABET" --in "127.0.0.1:$in" --out "127.0.0.1:$out" \
        --resilience-dir "$dir" "$@"
    wait_log "$name" 'ready:' 20
}

# wait_outbox_empty PORT SECS: wait until the worker serving --metrics on PORT keeps no
# committed output in its outbox (the sinks took it all and the written mark is committed), so
# that a kill -9 now resends nothing and a sink sees every output exactly once. (Killed
# earlier, a worker may send its last commit's output again: an allowed repeat.)
wait_outbox_empty() {
    local port=$1 deadline=$((SECONDS + $2)) v
    if ! command -v curl >/dev/null; then
        sleep 1 # no way to look: give the deletion's commit time
        return 0
    fi
    while ((SECONDS < deadline)); do
        v=$(curl -s --max-time 2 "http://127.0.0.1:$port/metrics" |
            awk '/^roo_outbox_bytes[{ ]/ { print $NF }')
        [[ $v == 0 ]] && return 0
        sleep 0.05
    done
    return 1
}

# Count records in a framed file.
framed_count() { echo $(($(stat -c %s "$1") / ${2:-13})); }

# Watchdog: a test that hangs fails (and cleans up) instead of blocking the suite.
watchdog() {
    local secs=$1 me=$$
    (
        trap 'kill "$sp" 2>/dev/null; exit 0' TERM
        sleep "$secs" &
        sp=$!
        wait "$sp"
        log "watchdog: test exceeded ${secs}s"
        kill -TERM "$me" 2>/dev/null
    ) &
    PIDS[watchdog]=$!
}
trap 'exit 124' TERM INT

# ---- clusters ----------------------------------------------------------------------------
# setup_cluster APP N OUT: choose ports and directories for an N-worker cluster of APP whose
# workers all send to the sink on port OUT. Worker 0 is the initializer ("initializer"),
# worker i > 0 is "worker<i>". Then run_worker I LOGNAME [extra flags] starts worker I (the
# same command line every time, so it also restarts it), and cluster_ready waits for all.
setup_cluster() {
    CL_APP=$1
    CL_N=$2
    CL_OUT=$3
    CL_CTL=$(free_port)
    CL_DATA=$(free_port)
    CL_IN=()
    CL_EXT=()
    for ((i = 0; i < CL_N; i++)); do
        CL_IN[i]=$(free_port)
        CL_EXT[i]=$(free_port)
    done
}

cl_name() { if [ "$1" = 0 ]; then echo initializer; else echo "worker$1"; fi; }

run_worker() {
    local i=$1 logname=$2
    shift 2
    local role=(--name "worker$i" --control "127.0.0.1:$CL_CTL")
    if [ "$i" = 0 ]; then
        role=(--cluster-initializer --worker-count "$CL_N" --control "127.0.0.1:$CL_CTL"
            --data "127.0.0.1:$CL_DATA")
    fi
    start "$logname" "$CL_APP" "${role[@]}" --in "127.0.0.1:${CL_IN[i]}" \
        --out "127.0.0.1:$CL_OUT" --resilience-dir "$T/w$i" --external "127.0.0.1:${CL_EXT[i]}" \
        "$@"
}

# join_worker I LOGNAME: start worker I as a --join worker of the running cluster (its --in
# and --external ports drawn on the first call, the same afterwards, so it also restarts it).
join_worker() {
    local i=$1 logname=$2
    [ -n "${CL_IN[i]:-}" ] || CL_IN[i]=$(free_port)
    [ -n "${CL_EXT[i]:-}" ] || CL_EXT[i]=$(free_port)
    start "$logname" "$CL_APP" --join "127.0.0.1:$CL_CTL" --name "worker$i" \
        --in "127.0.0.1:${CL_IN[i]}" --out "127.0.0.1:$CL_OUT" --resilience-dir "$T/w$i" \
        --external "127.0.0.1:${CL_EXT[i]}"
}

# cluster_ready LOGNAME...: wait until each named worker log says it is ready.
cluster_ready() {
    local l
    for l in "$@"; do
        wait_log "$l" 'ready: application' 30
    done
}

# A comma-separated list of every worker's --in address.
cl_all_in() {
    local i s=""
    for ((i = 0; i < CL_N; i++)); do s="$s${s:+,}127.0.0.1:${CL_IN[i]}"; done
    echo "$s"
}

ROO_CTL=$BUILD/tools/roo-ctl
WORD_COUNT=$BUILD/examples/word_count/word_count

# make_votes NAME COUNT SEED: $T/NAME.bin, COUNT random Alphabet votes (fixed by the seed).
make_votes() { "$SENDER" --dry-run --messages "$2" --seed "$3" --save "$T/$1.bin" --quiet; }

# make_truth FILE...: $T/expected.json, the per-letter totals of the files' votes together.
make_truth() {
    cat "$@" >"$T/all-votes.bin"
    "$SENDER" --dry-run --file "$T/all-votes.bin" --expected "$T/expected.json" --quiet
}

# check_word_counts FILE KEYS: word_count output where every one of KEYS distinct words was
# sent twice: each word's counts go 1 then 2, and there are KEYS words.
check_word_counts() {
    awk -F' => ' '
        { if (($1 in last) && $2 != last[$1] + 1) { print "word " $1 " went from " last[$1] " to " $2; bad++ }
          if (!($1 in last) && $2 != 1) { print "word " $1 " started at " $2; bad++ }
          last[$1] = $2 }
        END { n = 0; for (w in last) { n++; if (last[w] != 2) { print "word " w " ended at " last[w]; bad++ } }
              if (n != keys) { print n " distinct words, want " keys; bad++ }
              exit bad > 0 }' keys="$2" "$1" >"$T/check.txt" ||
        fail "counts wrong: $(head -5 "$T/check.txt")"
}

# check_state_totals EXT_PORT EXPECTED_JSON: the committed state (roo-ctl query through the
# worker at 127.0.0.1:EXT_PORT) holds exactly the per-letter totals of EXPECTED_JSON.
check_state_totals() {
    local flat='s/"//g; s/ //g'
    "$ROO_CTL" --external "127.0.0.1:$1" query >"$T/query.json" 2>"$T/query.err" ||
        fail "roo-ctl query failed: $(cat "$T/query.err")"
    grep -oE '"[a-z]": [0-9]+' "$T/query.json" | sed "$flat" | sort >"$T/state.txt"
    grep -oE '"[a-z]": [0-9]+' "$2" | sed "$flat" | sort >"$T/truth.txt"
    diff "$T/truth.txt" "$T/state.txt" >"$T/state.diff" ||
        fail "state totals differ from the truth (truth < > state): $(head -5 "$T/state.diff")"
}

# check_vectors IN_PORT OUT_PORT WHAT: send Wallaroo's Alphabet vectors into the worker at
# 127.0.0.1:IN_PORT and check all 1,000 outputs at a receiver on OUT_PORT (fails with WHAT).
check_vectors() {
    start recv "$RECEIVER" --listen "127.0.0.1:$2" --alphabet-check "$TESTDATA/_expected.json" \
        --votes "$TESTDATA/_test.txt" --expect 1000 --timeout 30 --quiet
    wait_log recv 'listening on' 10
    "$SENDER" --host "127.0.0.1:$1" --file "$TESTDATA/_test.txt" --quiet
    wait_exit recv 30 || fail "Wallaroo's vectors $3: $(tail -1 "$T/recv.log")"
}
