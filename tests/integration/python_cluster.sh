#!/usr/bin/env bash
# roo-python clusters with Wallaroo's multi-worker recipe (machida, an initializer with
# --worker-count N and workers that join its --control, --ponythreads=1 --ponynoblock, one
# --metrics address for all). The recipe gives every worker the same --in, which works
# (SO_REUSEPORT, test cluster_shared_in), but this test sends to chosen workers (the one it
# killed, the other), so each worker here has its own --in.
#  - alphabet.py (to_stateful: one state object, on whichever worker owns its key; votes
#    read elsewhere cross as pickled bytes) on 2 workers: Wallaroo's vectors and 200,000
#    votes through each worker's source, every output exact; the worker that does not
#    hold the state killed with kill -9 and restarted; then the one that does; all exact.
#  - alphabet_partitioned.py on 2 and 3 workers: the vectors into each worker in turn,
#    every output exact; roo-ctl shutdown stops all cleanly.
#  - alphabet_partitioned.py grown from 2 workers to 3 (--join) and shrunk back while its
#    Python state objects move (unpickled where they arrive), every output exact.
source "$(dirname "$0")/python_lib.sh"
watchdog 360

OUT=$(free_port)
METRICS=$(free_port)

# wallaroo_worker I LOGNAME MODULE: worker I of the cluster set up by setup_ports, with the
# command line of Wallaroo's recipe (plus roo's --resilience-dir), from examples/python.
CL_RUN=0
setup_ports() {
    CL_N=$1
    CL_RUN=$((CL_RUN + 1)) # each cluster its own directories
    CL_CTL=$(free_port)
    CL_DATA=$(free_port)
    for ((i = 0; i < CL_N; i++)); do
        CL_IN[i]=$(free_port)
        CL_EXT[i]=$(free_port)
        CL_MYCTL[i]=$(free_port)
        CL_MYDATA[i]=$(free_port)
    done
}
wallaroo_worker() {
    local i=$1 logname=$2 module=$3 role
    if [ "$i" = 0 ]; then
        role=(--control "127.0.0.1:$CL_CTL" --data "127.0.0.1:$CL_DATA" --worker-count "$CL_N"
            --cluster-initializer)
    else
        role=(--control "127.0.0.1:$CL_CTL" --name "worker-$((i + 1))"
            --my-control "127.0.0.1:${CL_MYCTL[i]}" --my-data "127.0.0.1:${CL_MYDATA[i]}")
    fi
    (cd "$PYEX" && exec "$MACHIDA" --application-module "$module" --in "127.0.0.1:${CL_IN[i]}" \
        --out "127.0.0.1:$OUT" --metrics "127.0.0.1:$METRICS" \
        --external "127.0.0.1:${CL_EXT[i]}" "${role[@]}" --resilience-dir "$T/$module-r$CL_RUN-w$i" \
        --ponythreads=1 --ponynoblock) >"$T/$logname.log" 2>&1 &
    PIDS[$logname]=$!
}

# ---- alphabet.py on 2 workers, kill -9 of each ----
setup_ports 2
"$SENDER" --dry-run --messages 200000 --seed 31 --save "$T/r1.bin" --quiet
"$SENDER" --dry-run --messages 200000 --seed 32 --save "$T/r2.bin" --quiet
cat "$TESTDATA/_test.txt" "$T/r1.bin" "$T/r2.bin" "$TESTDATA/_test.txt" >"$T/all.bin"
"$SENDER" --dry-run --file "$T/all.bin" --expected "$T/all.json" --quiet
total=$((1000 + 400000 + 1000))
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/all.json" \
    --votes "$T/all.bin" --expect "$total" --output "$T/out.bin" --timeout 200 --quiet
wait_log recv 'listening on' 10
wallaroo_worker 1 a1 alphabet   # the joiner first: it retries until the initializer is up
wallaroo_worker 0 a0 alphabet
cluster_ready a0 a1
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status --wait-ready 20 >"$T/status.json" ||
    fail "alphabet cluster not ready: $(cat "$T/status.json")"

"$SENDER" --host "127.0.0.1:${CL_IN[0]}" --file "$TESTDATA/_test.txt" --quiet
wait_file_size "$T/out.bin" $((1000 * 13)) 30
"$SENDER" --host "127.0.0.1:${CL_IN[1]}" --file "$T/r1.bin" --quiet
wait_file_size "$T/out.bin" $((201000 * 13)) 90
# Which worker holds the one state object ("key")? Kill the other first, then that one.
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" query key >"$T/q.json" 2>&1 ||
    fail "roo-ctl query key failed: $(cat "$T/q.json")"
grep -q '"votes_by_letter"' "$T/q.json" || fail "query key does not show AllVotes: $(head -c 300 "$T/q.json")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[1]}" status >"$T/status.json"
holder=$("$PY" -c 'import json, sys
ws = json.load(open(sys.argv[1]))["workers"]
print([w["index"] for w in ws if w.get("keys") == 1][0])' "$T/status.json") ||
    fail "no worker holds the one key: $(cat "$T/status.json")"
other=$((1 - holder))
log "kill -9 worker $other, then worker $holder"
kill9 "a$other"
wallaroo_worker "$other" "a${other}b" alphabet
wait_log "a${other}b" 'ready: application' 30
"$SENDER" --host "127.0.0.1:${CL_IN[$other]}" --file "$T/r2.bin" --quiet
wait_file_size "$T/out.bin" $((401000 * 13)) 90
# The holder writes the outputs: once its outbox is empty, a kill -9 repeats none of them.
mport=$(grep -o 'metrics: serving http://[0-9.]*:[0-9]*' "$T/a$holder.log" | head -1 | sed 's/.*://')
[ -n "$mport" ] || fail "worker $holder did not say where it serves metrics"
wait_outbox_empty "$mport" 30 || fail "worker $holder kept output in its outbox after the sink took it"
kill9 "a$holder"
wallaroo_worker "$holder" "a${holder}b" alphabet
wait_log "a${holder}b" 'ready: application' 30
"$SENDER" --host "127.0.0.1:${CL_IN[$other]}" --file "$TESTDATA/_test.txt" --quiet
wait_exit recv 90 || fail "alphabet on 2 workers: $(tail -1 "$T/recv.log")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[$other]}" shutdown >/dev/null || fail "shutdown failed"
for l in a0b a1b; do wait_exit "$l" 30 || fail "$l exited $? at shutdown"; done
pass "alphabet.py on 2 workers: $total outputs exact across kill -9 of each worker"

# ---- alphabet_partitioned.py on 2 and 3 workers ----
for n in 2 3; do
    setup_ports "$n"
    : >"$T/lines$n.txt"
    start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --newlines --expect $((1000 * n)) \
        --output "$T/lines$n.txt" --timeout 90 --quiet
    wait_log recv 'listening on' 10
    logs=()
    for ((i = n - 1; i >= 0; i--)); do wallaroo_worker "$i" "p${n}w$i" alphabet_partitioned; done
    for ((i = 0; i < n; i++)); do logs+=("p${n}w$i"); done
    cluster_ready "${logs[@]}"
    : >"$T/sent$n.bin"
    for ((i = 0; i < n; i++)); do
        "$SENDER" --host "127.0.0.1:${CL_IN[i]}" --file "$TESTDATA/_test.txt" --quiet
        cat "$TESTDATA/_test.txt" >>"$T/sent$n.bin"
        # Wait for this round's outputs: the next round's order must follow it.
        for ((k = 0; k < 300; k++)); do
            [ "$(wc -l <"$T/lines$n.txt")" -ge $((1000 * (i + 1))) ] && break
            sleep 0.1
        done
    done
    wait_exit recv 60 || fail "$n workers: $(tail -1 "$T/recv.log")"
    "$PY" "$PYTEST/check_lines.py" "$T/sent$n.bin" "$T/lines$n.txt" >"$T/check.txt" ||
        fail "$n workers: $(tail -3 "$T/check.txt")"
    "$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
    for l in "${logs[@]}"; do wait_exit "$l" 30 || fail "$l exited $? at shutdown"; done
    pass "alphabet_partitioned.py on $n workers: the vectors into each worker, every output exact"
done

# ---- alphabet_partitioned.py: grow to 3 workers, shrink back to 2 ----
setup_ports 3
CL_N=2 # the cluster forms with 2; worker 2 joins later
: >"$T/grow.txt"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --newlines --expect 3000 \
    --output "$T/grow.txt" --timeout 90 --quiet
wait_log recv 'listening on' 10
wallaroo_worker 1 g1 alphabet_partitioned
wallaroo_worker 0 g0 alphabet_partitioned
cluster_ready g0 g1
wait_lines() { # wait_lines FILE N
    for ((k = 0; k < 300; k++)); do
        [ "$(wc -l <"$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    fail "$1 has $(wc -l <"$1") lines, want $2"
}
"$SENDER" --host "127.0.0.1:${CL_IN[0]}" --file "$TESTDATA/_test.txt" --quiet
wait_lines "$T/grow.txt" 1000
(cd "$PYEX" && exec "$ROO_PYTHON" --application-module alphabet_partitioned \
    --join "127.0.0.1:$CL_CTL" --name worker-3 --in "127.0.0.1:${CL_IN[2]}" \
    --out "127.0.0.1:$OUT" --external "127.0.0.1:${CL_EXT[2]}" \
    --resilience-dir "$T/grow-w2") >"$T/g2.log" 2>&1 &
PIDS[g2]=$!
for ((k = 0; k < 300; k++)); do
    "$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status 2>/dev/null |
        grep -q '"name": "worker-3".*"ready": true' && break
    sleep 0.1
done
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status >"$T/status.json"
grep -q '"name": "worker-3".*"ready": true' "$T/status.json" || fail "worker-3 did not join"
"$SENDER" --host "127.0.0.1:${CL_IN[2]}" --file "$TESTDATA/_test.txt" --quiet
wait_lines "$T/grow.txt" 2000
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[1]}" shrink --workers worker-3 >"$T/shrink.json" ||
    fail "shrink failed: $(cat "$T/shrink.json")"
wait_exit g2 30 || fail "worker-3 did not leave cleanly"
"$SENDER" --host "127.0.0.1:${CL_IN[1]}" --file "$TESTDATA/_test.txt" --quiet
wait_exit recv 60 || fail "grow and shrink: $(tail -1 "$T/recv.log")"
cat "$TESTDATA/_test.txt" "$TESTDATA/_test.txt" "$TESTDATA/_test.txt" >"$T/grow.bin"
"$PY" "$PYTEST/check_lines.py" "$T/grow.bin" "$T/grow.txt" >"$T/check.txt" ||
    fail "grow and shrink: $(tail -3 "$T/check.txt")"
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shutdown >/dev/null || fail "shutdown failed"
for l in g0 g1; do wait_exit "$l" 30 || fail "$l exited $? at shutdown"; done
pass "alphabet_partitioned.py grown to 3 workers and shrunk to 2: every output exact"
