#!/usr/bin/env bash
# Attacks on a running cluster with a secret, from a client that does not have it and from a
# peer that does: each is refused or bounded, the workers stay up, and honest traffic comes
# out exact.
#   - a 16 MiB frame before the handshake: closed at once; the worker's memory does not grow
#   - 300 connections held open on the external port: at most --max-connections stay open,
#     the refusals are logged, and roo-ctl is served again once they go
#   - a peer with the secret sends a batch for a step that does not exist (it used to be
#     applied as it was: a heap overflow): the link is closed with one line naming it
source "$(dirname "$0")/lib.sh"
watchdog 140
ATTACK=$BUILD/tests/roo-attack

head -c 32 /dev/urandom | base64 >"$T/secret"
chmod 600 "$T/secret"
OUT=$(free_port)
setup_cluster "$ALPHABET" 2 "$OUT"
for i in 0 1; do
    run_worker "$i" "w$i" --cluster-secret "$T/secret" --max-connections 40
done
cluster_ready w0 w1
CTL=("$ROO_CTL" --secret "$T/secret" --external "127.0.0.1:${CL_EXT[0]}")
"${CTL[@]}" status --wait-ready 20 >"$T/status.json" || fail "status: $(cat "$T/status.json")"
CID=$(grep -o '"cluster_id": "[0-9a-f]*"' "$T/status.json" | grep -o '[0-9a-f]\{16\}')
DATA1=$(grep -o '"name": "worker1", "index": [0-9]*, "control": "[^"]*", "data": "[^"]*"' \
    "$T/status.json" | sed 's/.*"data": "//; s/"$//')
[ -n "$CID" ] && [ -n "$DATA1" ] || fail "no cluster id or data address in the status"
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# A huge frame before the handshake.
before=$(rss "$PID_w0")
for port in "$CL_CTL" "$CL_DATA" "${CL_EXT[0]}"; do
    "$ATTACK" big-frame "127.0.0.1:$port" || fail "a 16 MiB frame on port $port was not refused"
done
after=$(rss "$PID_w0")
[ $((after - before)) -lt 20480 ] ||
    fail "the initializer grew from $before KiB to $after KiB under 16 MiB frames"
wait_log w0 'did not prove the cluster secret \(a frame too big for a handshake\)' 10

# A connection flood: at most --max-connections stay open.
left=$("$ATTACK" hold "127.0.0.1:${CL_EXT[1]}" 300 2)
[ "$left" -le 40 ] || fail "$left of 300 connections stayed open (--max-connections 40)"
wait_log w1 'external listener: 40 connections open \(--max-connections\); closed the one from' 10
fds=$(ls "/proc/$PID_w1/fd" | wc -l)
log "flood: $left of 300 stayed open; worker1 holds $fds descriptors"
"$ROO_CTL" --secret "$T/secret" --external "127.0.0.1:${CL_EXT[1]}" status >/dev/null ||
    fail "roo-ctl not served after the flood"

# A peer with the secret sends a batch for a step that does not exist.
"$ATTACK" bad-batch "$DATA1" "$T/secret" "$CID" initializer 999 ||
    fail "worker1 did not close a link that sent a malformed batch"
wait_log w1 "batch 1 for thread 0 is malformed: message 0 is for step 999, which is not a state step" 10

# Honest traffic is exact, through both workers.
check_vectors "${CL_IN[1]}" "$OUT" "after the attacks"
for i in 0 1; do alive "w$i" || fail "worker $i died"; done
"${CTL[@]}" shutdown >/dev/null || fail "shutdown failed"
for i in 0 1; do wait_exit "w$i" 30 || fail "worker $i did not stop cleanly"; done
pass "huge frames, a connection flood and a malformed batch refused; traffic exact"
