#!/usr/bin/env bash
# The cluster's figures at /metrics on a real 3-worker Alphabet cluster: promtool accepts
# every worker's text without a warning; once the load is processed (the receiver checked
# every total), the messages the workers sent to peers add up to those they received from
# peers and to roo_routed_messages_sent_total, and so do the bytes; every data link is up
# and its backlog drains to 0; every worker lists its control listener; a connection that
# does not prove the secret counts as refused; after roo-ctl shrink, the move counts as done
# on the workers that stay, with its pause in the histogram.
source "$(dirname "$0")/lib.sh"
watchdog 140

command -v curl >/dev/null || skip "no curl (scripts/install-deps installs it)"
command -v promtool >/dev/null || skip "no promtool (scripts/install-deps installs prometheus)"

fetch() { curl -s --max-time 5 "http://127.0.0.1:$1$2" || true; }

# metric PORT SERIES: the value of one series (exact text up to the value) at /metrics.
metric() { fetch "$1" /metrics | awk -v s="$2" 'index($0, s " ") == 1 { print $NF }'; }

# wait_metric PORT SERIES VALUE SECS: until the series has that value.
wait_metric() {
    local i v
    for ((i = 0; i < $4 * 10; i++)); do
        v=$(metric "$1" "$2")
        [ "$v" = "$3" ] && return 0
        sleep 0.1
    done
    fail "$2 at port $1 is '$v' after ${4}s, want $3"
}

# sum_of FAMILY FILE...: the sum of the family's samples in the saved texts.
sum_of() { cat "${@:2}" | awk -v f="$1{" 'index($0, f) == 1 { s += $NF } END { printf "%d\n", s }'; }

# scrape I: worker I's /metrics into $T/mI.txt, which promtool must accept without a word.
scrape() {
    fetch "${M[$1]}" /metrics >"$T/m$1.txt"
    promtool check metrics <"$T/m$1.txt" >"$T/promtool$1.txt" 2>&1 ||
        fail "promtool check metrics, worker $1: $(head -5 "$T/promtool$1.txt")"
    [ ! -s "$T/promtool$1.txt" ] || fail "promtool warns, worker $1: $(head -5 "$T/promtool$1.txt")"
}

OUT=$(free_port)
V=200000
make_votes votes "$V" 91
make_truth "$T/votes.bin"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$T/expected.json" \
    --expect "$V" --timeout 60 --quiet
wait_log recv 'listening on' 10

setup_cluster "$ALPHABET" 3 "$OUT"
M=()
for i in 0 1 2; do M[i]=$(free_port); done
for i in 0 1 2; do run_worker "$i" "w$i" --metrics "127.0.0.1:${M[i]}"; done
cluster_ready w0 w1 w2
"$SENDER" --host "$(cl_all_in)" --connections 3 --file "$T/votes.bin" --batch-size 2000 --quiet
wait_exit recv 60 || fail "the receiver's check failed: $(tail -2 "$T/recv.log")"

# --- the data links add up --------------------------------------------------------------------
for i in 0 1 2; do
    w=$(cl_name "$i")
    for j in 0 1 2; do
        [ "$i" = "$j" ] && continue
        # Acknowledged once committed at the peer: the backlog drains after the load.
        wait_metric "${M[i]}" "roo_peer_link_backlog_bytes{worker=\"$w\",peer=\"$(cl_name "$j")\"}" 0 10
    done
done
for i in 0 1 2; do scrape "$i"; done
files=("$T/m0.txt" "$T/m1.txt" "$T/m2.txt")
sent=$(sum_of roo_peer_messages_sent_total "${files[@]}")
received=$(sum_of roo_peer_messages_received_total "${files[@]}")
routed=$(sum_of roo_routed_messages_sent_total "${files[@]}")
bsent=$(sum_of roo_peer_bytes_sent_total "${files[@]}")
breceived=$(sum_of roo_peer_bytes_received_total "${files[@]}")
[ "$sent" -gt 0 ] || fail "no message crossed workers"
[ "$sent" = "$received" ] || fail "peers were sent $sent messages but received $received"
[ "$sent" = "$routed" ] || fail "peers were sent $sent messages; roo_routed_messages_sent_total says $routed"
[ "$bsent" -gt "$sent" ] && [ "$bsent" = "$breceived" ] ||
    fail "peers were sent $bsent bytes but received $breceived"
for i in 0 1 2; do
    w=$(cl_name "$i")
    for j in 0 1 2; do
        [ "$i" = "$j" ] && continue
        grep -qx "roo_peer_connected{worker=\"$w\",peer=\"$(cl_name "$j")\"} 1" "$T/m$i.txt" ||
            fail "$w: the link to $(cl_name "$j") is not up: $(grep roo_peer_connected "$T/m$i.txt")"
    done
    [ "$(grep -c '^roo_peer_connected{' "$T/m$i.txt")" = 2 ] || fail "$w does not list 2 peers"
    grep -q "^roo_listener_connections{worker=\"$w\",listener=\"control\"} [0-9]" "$T/m$i.txt" ||
        fail "$w: no control listener: $(grep roo_listener_connections "$T/m$i.txt")"
    grep -qx "roo_cluster_workers{worker=\"$w\"} 3" "$T/m$i.txt" || fail "$w: not 3 workers"
    grep -o 'roo_cluster_info{[^}]*}' "$T/m$i.txt" | grep -o 'cluster_id="[0-9a-f]*"' >>"$T/ids.txt"
done
[ "$(sort -u "$T/ids.txt" | wc -l)" = 1 ] || fail "the workers name different clusters: $(cat "$T/ids.txt")"
W0='worker="initializer"'
[ "$(metric "${M[0]}" "roo_listener_connections{$W0,listener=\"control\"}")" = 2 ] ||
    fail "the initializer does not count the 2 control links: $(grep roo_listener "$T/m0.txt")"
pass "$V votes: $sent messages ($bsent bytes) sent to peers, as many received, all routed; every link up and drained"

# --- refused: a connection that does not prove the cluster secret ------------------------------
before=$(metric "${M[0]}" "roo_listener_connections_refused_total{$W0,listener=\"external\"}")
exec {fd}<>"/dev/tcp/127.0.0.1/${CL_EXT[0]}"
printf '\377\377\377\377 not a handshake' >&"$fd"
exec {fd}>&-
wait_metric "${M[0]}" "roo_listener_connections_refused_total{$W0,listener=\"external\"}" \
    $((before + 1)) 10
pass "a connection that does not prove the secret counts as refused on the external listener"

# --- a move: roo-ctl shrink --------------------------------------------------------------------
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shrink --workers worker2 >"$T/shrink.json" ||
    fail "shrink failed: $(cat "$T/shrink.json")"
grep -q '"done": true' "$T/shrink.json" || fail "shrink: $(cat "$T/shrink.json")"
wait_exit w2 30 || fail "worker2 did not exit 0 after leaving"
for i in 0 1; do
    w=$(cl_name "$i")
    wait_metric "${M[i]}" "roo_cluster_workers{worker=\"$w\"}" 2 10
    scrape "$i"
    done_moves=$(awk -v s="roo_partition_moves_total{worker=\"$w\",result=\"done\"} " \
        'index($0, s) == 1 { print $NF }' "$T/m$i.txt")
    [ "${done_moves:-0}" -ge 1 ] || fail "$w counts $done_moves moves done"
    pauses=$(awk -v s="roo_partition_move_pause_seconds_count{worker=\"$w\"} " \
        'index($0, s) == 1 { print $NF }' "$T/m$i.txt")
    [ "${pauses:-0}" -ge 1 ] || fail "$w: no pause in the histogram ($pauses)"
    grep -q "^roo_partition_move_pause_seconds_bucket{worker=\"$w\",le=\"+Inf\"} $pauses\$" "$T/m$i.txt" ||
        fail "$w: the +Inf bucket is not the count"
    grep -qx "roo_partitions_moving{worker=\"$w\"} 0" "$T/m$i.txt" || fail "$w: partitions still moving"
    grep -qx "roo_peer_connected{worker=\"$w\",peer=\"worker2\"} 0" "$T/m$i.txt" ||
        fail "$w: the link to worker2, which left, is not down"
done
for i in 0 1; do stop "w$i" || fail "worker $i did not stop cleanly"; done
pass "roo-ctl shrink: counted as a move done on both workers that stay, its pause in the histogram"
