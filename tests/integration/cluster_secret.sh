#!/usr/bin/env bash
# The cluster secret: workers and roo-ctl prove it on every control, data and external
# connection before anything else is read. A cluster with a secret serves Wallaroo's vectors
# exactly and answers roo-ctl --secret; roo-ctl without it, or with another one, is refused,
# and so is a worker with another secret. Without a secret the cluster's addresses must be
# loopback: a worker asked to listen on 0.0.0.0 refuses to start and says how to set one.
# Secret files that are missing or too short stop the worker with a clear line.
source "$(dirname "$0")/lib.sh"
watchdog 120

head -c 32 /dev/urandom | base64 >"$T/secret"
head -c 32 /dev/urandom | base64 >"$T/other"
printf 'short\n' >"$T/short"
chmod 600 "$T/secret" "$T/other" "$T/short"
OUT=$(free_port)

expect_refusal() { # expect_refusal NAME WANT_STATUS REGEX CMD...
    local name=$1 want=$2 re=$3 rc=0
    shift 3
    timeout 20 "$@" >"$T/$name.log" 2>&1 || rc=$?
    [ "$rc" = "$want" ] || fail "$name: exit $rc, want $want: $(tail -2 "$T/$name.log")"
    grep -Eq -- "$re" "$T/$name.log" || fail "$name: no /$re/ in: $(tail -2 "$T/$name.log")"
}

# Without a secret: loopback only.
expect_refusal wild 2 'refusing to listen on --external 0.0.0.0:[0-9]+ without a cluster secret.*--cluster-secret FILE' \
    "$ALPHABET" --in "127.0.0.1:$(free_port)" --out "127.0.0.1:$OUT" --resilience-dir "$T/wild" \
    --external "0.0.0.0:$(free_port)"
expect_refusal wildctl 2 'refusing to listen on --control 0.0.0.0' \
    "$ALPHABET" --cluster-initializer --worker-count 2 --control "0.0.0.0:$(free_port)" \
    --in "127.0.0.1:$(free_port)" --out "127.0.0.1:$OUT" --resilience-dir "$T/wild2"
[ ! -e "$T/wild/data.mdb" ] || true
expect_refusal missing 1 "cannot read the cluster secret $T/nope" \
    "$ALPHABET" --in "127.0.0.1:$(free_port)" --out "127.0.0.1:$OUT" --resilience-dir "$T/m" \
    --cluster-secret "$T/nope"
expect_refusal short 2 'holds 5 byte\(s\); it needs at least 16' \
    "$ALPHABET" --in "127.0.0.1:$(free_port)" --out "127.0.0.1:$OUT" --resilience-dir "$T/s" \
    --cluster-secret "$T/short"

# A 2-worker cluster with a secret, its external addresses on every interface.
setup_cluster "$ALPHABET" 2 "$OUT"
for i in 0 1; do
    run_worker "$i" "w$i" --cluster-secret "$T/secret"
done
cluster_ready w0 w1
EXT0=127.0.0.1:${CL_EXT[0]}
EXT1=127.0.0.1:${CL_EXT[1]}
"$ROO_CTL" --secret "$T/secret" --external "$EXT1" status --wait-ready 20 >"$T/status.json" ||
    fail "roo-ctl with the secret: $(cat "$T/status.json")"
grep -q '"worker_count": 2' "$T/status.json" || fail "status: $(head -c 300 "$T/status.json")"
expect_refusal nosecret 1 'does not prove the cluster secret \(give roo-ctl the workers. secret' \
    "$ROO_CTL" --external "$EXT0" status
expect_refusal wrongsecret 1 'does not prove the cluster secret' \
    "$ROO_CTL" --secret "$T/other" --external "$EXT0" query a
wait_log w0 'external connection from .* did not prove the cluster secret' 10
# The control port speaks another channel: a proof for the external channel opens nothing.
expect_refusal channel 1 'does not prove the cluster secret' \
    "$ROO_CTL" --secret "$T/secret" --external "127.0.0.1:$CL_CTL" status
grep -q 'cluster_id\|worker1' "$T/nosecret.log" "$T/wrongsecret.log" "$T/channel.log" &&
    fail "an unauthenticated client was told something about the cluster"

# A worker with another secret cannot join.
expect_refusal joiner 1 'does not prove this worker.s cluster secret' \
    "$ALPHABET" --join "127.0.0.1:$CL_CTL" --name intruder --in "127.0.0.1:$(free_port)" \
    --out "127.0.0.1:$OUT" --resilience-dir "$T/intruder" --cluster-secret "$T/other"
wait_log w0 'control connection from .* did not prove the cluster secret' 10

# Traffic through the cluster is exact.
check_vectors "${CL_IN[1]}" "$OUT" "through a cluster with a secret"
"$ROO_CTL" --secret "$T/secret" --external "$EXT0,$EXT1" shutdown >/dev/null ||
    fail "shutdown with the secret failed"
for i in 0 1; do wait_exit "w$i" 30 || fail "worker $i did not stop cleanly"; done
pass "secrets proved on every channel; clients and workers without it refused; loopback only without one"
