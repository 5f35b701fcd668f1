#!/usr/bin/env bash
# Alphabet on clusters of 1, 2 and 3 workers: Wallaroo's vectors through the initializer's
# source; 300,000 votes through one worker's source (every output exact: one letter's votes
# come from one connection, so its outputs must be the exact running sums); and 600,000
# votes spread over every worker's source (exact totals, totals only grow, one output per
# input). roo-ctl status must account for every message.
source "$(dirname "$0")/lib.sh"
watchdog 240

OUT=$(free_port)
"$SENDER" --dry-run --messages 300000 --seed 51 --save "$T/one.bin" --quiet
"$SENDER" --dry-run --messages 600000 --seed 52 --save "$T/all.bin" --quiet

for n in 1 2 3; do
    rm -rf "$T"/w*
    setup_cluster "$ALPHABET" "$n" "$OUT"
    # Start the other workers before the initializer: they retry until it is up.
    for ((i = n - 1; i >= 0; i--)); do run_worker "$i" "n${n}w$i"; sleep 0.1; done
    logs=()
    for ((i = 0; i < n; i++)); do logs+=("n${n}w$i"); done
    cluster_ready "${logs[@]}"
    "$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" status --wait-ready 20 >"$T/status.json" ||
        fail "$n workers: status not ready: $(cat "$T/status.json")"
    grep -q "\"worker_count\": $n" "$T/status.json" || fail "status lacks worker_count $n"

    # Wallaroo's vectors, into the initializer.
    start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$TESTDATA/_expected.json" \
        --votes "$TESTDATA/_test.txt" --expect 1000 --timeout 30 --quiet
    wait_log recv 'listening on' 10
    "$SENDER" --host "127.0.0.1:${CL_IN[0]}" --file "$TESTDATA/_test.txt" --quiet
    wait_exit recv 30 || fail "$n workers, _test.txt: $(tail -1 "$T/recv.log")"

    # Continue from _test.txt's totals: expected = _test.txt + one.bin.
    cat "$TESTDATA/_test.txt" "$T/one.bin" >"$T/acc1.bin"
    "$SENDER" --dry-run --file "$T/acc1.bin" --expected "$T/acc1.json" --quiet
    start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/acc1.json" \
        --expect 300000 --timeout 60 --quiet
    wait_log recv 'listening on' 10
    last=$((n - 1))
    "$SENDER" --host "127.0.0.1:${CL_IN[last]}" --file "$T/one.bin" --quiet
    wait_exit recv 60 || fail "$n workers, source on worker $last: $(tail -1 "$T/recv.log")"

    cat "$T/acc1.bin" "$T/all.bin" >"$T/acc2.bin"
    "$SENDER" --dry-run --file "$T/acc2.bin" --expected "$T/acc2.json" --quiet
    start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/acc2.json" \
        --expect 600000 --timeout 60 --quiet
    wait_log recv 'listening on' 10
    "$SENDER" --host "$(cl_all_in)" --connections 2 --file "$T/all.bin" --batch-size 5000 --quiet
    wait_exit recv 60 || fail "$n workers, sources on all: $(tail -1 "$T/recv.log")"

    "$ROO_CTL" --external "127.0.0.1:${CL_EXT[last]}" status >"$T/status.json"
    total_in=$(grep -o '"frames_in": [0-9]*' "$T/status.json" | awk '{s += $2} END {print s}')
    total_out=$(grep -o '"records_out": [0-9]*' "$T/status.json" | awk '{s += $2} END {print s}')
    [ "$total_in" = 901000 ] || fail "$n workers: status counts $total_in frames in, want 901000"
    [ "$total_out" = 901000 ] || fail "$n workers: status counts $total_out records out, want 901000"
    for ((i = 0; i < n; i++)); do stop "n${n}w$i" || fail "worker $i did not stop cleanly"; done
    pass "$n worker(s): vectors exact; one source exact per output; all sources exact totals; status adds up"
done
