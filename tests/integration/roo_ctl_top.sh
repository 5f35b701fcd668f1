#!/usr/bin/env bash
# roo-ctl status's health figures, roo-ctl top and roo-ctl targets on a real 3-worker
# Alphabet cluster with --metrics, under a steady load: the status names each worker's
# version, uptime, metrics address, connected sinks, rates and end-to-end latency; top prints
# a row per worker per refresh and stops after --count; targets is Prometheus file_sd JSON
# with one entry per worker; with the sink stopped, every worker shows it disconnected and
# output held. Misplaced options are usage errors (exit 2).
source "$(dirname "$0")/lib.sh"
watchdog 150

OUT=$(free_port)
setup_cluster "$ALPHABET" 3 "$OUT"
M=()
for i in 0 1 2; do M[i]=$(free_port); done
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --output "$T/out.bin" --quiet
wait_log recv 'listening on' 10
for i in 2 1 0; do run_worker "$i" "w$i" --metrics "127.0.0.1:${M[i]}"; done
cluster_ready w0 w1 w2

ctl() { "$ROO_CTL" --external "127.0.0.1:${CL_EXT[1]}" "$@"; }
ctl status --wait-ready 20 >/dev/null || fail "the cluster is not ready"
VERSION=$("$ROO_CTL" --version | awk '{print $2}')

# A steady load over every worker's source for the rest of the test (killed by cleanup).
start load "$SENDER" --host "$(cl_all_in)" --rate 20000 --messages 1G --batch-size 1000 \
    --linger 0 --quiet
wait_file_size "$T/out.bin" $((20000 * 13)) 30

# check_status PYTHON_CONDITION SECS: ask for the status until the condition (on d, the
# status, and ws, its workers) holds; fail with the last status otherwise.
check_status() {
    local i
    for ((i = 0; i < $2 * 5; i++)); do
        ctl status >"$T/status.json" 2>"$T/status.err" || fail "status: $(cat "$T/status.err")"
        python3 - "$T/status.json" "$1" <<'PY' && return 0
import json, sys
d = json.load(open(sys.argv[1]))
ws = d["workers"]
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
        sleep 0.2
    done
    fail "status never had $1: $(cat "$T/status.json")"
}

# Latency comes from the engine's end-to-end histograms: every worker writes output, so
# every worker has samples once the load has gone through (allow 10 s for them to show).
check_status 'all(w["latency_count"] > 0 and w["latency_p50_seconds"] > 0 for w in ws)' 10
check_status 'sum(w["frames_in_per_second"] for w in ws) > 0' 10
python3 - "$T/status.json" "$VERSION" "${M[@]}" <<'PY' || fail "status: $(cat "$T/status.json")"
import json, sys
d = json.load(open(sys.argv[1]))
version, ports = sys.argv[2], sys.argv[3:]
ws = d["workers"]
assert len(ws) == 3, "%d workers" % len(ws)
for w in ws:
    i = 0 if w["name"] == "initializer" else int(w["name"][len("worker"):])
    bad = []
    def want(cond, what):
        if not cond:
            bad.append(what)
    # The older members come first, in their order: scripts that index them keep working.
    keys = list(w)
    want(keys[:9] == ["name", "index", "control", "data", "external", "threads", "partitions",
                      "reachable", "ready"], "order %r" % keys[:9])
    want(keys.index("source_connections") < keys.index("version"), "new members appended")
    want(w["version"] == version, "version %r" % w["version"])
    want(w["uptime_seconds"] > 0, "uptime")
    want(w["metrics"] == "127.0.0.1:%s" % ports[i], "metrics %r" % w["metrics"])
    want(w["sinks"] == 1 and w["sinks_connected"] == 1, "sinks")
    want(w["frames_in_per_second"] >= 0 and w["records_out_per_second"] >= 0, "rates")
    want(0 < w["latency_p50_seconds"] <= w["latency_p99_seconds"] < 60, "latency quantiles")
    want(sum(w["latency_bins"]) > 0 and len(w["latency_bins"]) <= 54, "latency bins")
    want(w["callback_errors"] == 0 and w["decoder_rejections"] == 0, "errors")
    want(w["undelivered_bytes"] >= w["held_bytes"] >= 0, "held <= undelivered")
    want(w["link_backlog_bytes"] >= 0, "link backlog")
    if bad:
        sys.exit("%s: %s" % (w["name"], ", ".join(bad)))
PY

# The table: the raw counters first, then the health figures in units people read.
ctl --format table status >"$T/status.txt" || fail "status --format table failed"
grep -Eq '^NAME +VERSION +UPTIME +IN/S +OUT/S +P50 +P99 +SINKS +HELD +UNDELIVERED +METRICS$' \
    "$T/status.txt" || fail "health table header: $(cat "$T/status.txt")"
for i in 0 1 2; do
    grep -Eq "^$(cl_name "$i") +$VERSION +[0-9]+[smhd].* +1/1 +.* 127\.0\.0\.1:${M[i]}\$" \
        "$T/status.txt" || fail "health row of $(cl_name "$i"): $(cat "$T/status.txt")"
done
awk 'length > 120 && /VERSION|127\.0\.0\.1:[0-9]+$/ { exit 1 }' "$T/status.txt" ||
    fail "the health table is wider than 120 columns: $(cat "$T/status.txt")"

# top: two refreshes a second apart, one block each (stdout is not a terminal: no escapes).
s=$(date +%s%N)
ctl top --count 2 --interval 1 >"$T/top.txt" 2>"$T/top.err" || fail "top: $(cat "$T/top.err")"
ms=$((($(date +%s%N) - s) / 1000000))
[ "$ms" -ge 900 ] && [ "$ms" -lt 8000 ] || fail "top --count 2 --interval 1 took $ms ms"
grep -q $'\033' "$T/top.txt" && fail "top wrote terminal escapes into a file"
python3 - "$T/top.txt" <<'PY' || fail "top: $(cat "$T/top.txt")"
import re, sys
text = open(sys.argv[1]).read()
blocks = [b for b in text.split("\n\n") if b.strip()]
assert len(blocks) == 2, "%d blocks" % len(blocks)
def number(cell):  # a rate as top prints it: 12, 3.4, 12.3k, 1.2M
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([kM]?)", cell)
    assert m, "not a rate: %r" % cell
    return float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6}[m.group(2)]
for k, b in enumerate(blocks):
    lines = b.splitlines()
    assert lines[0].startswith("roo-ctl top ") and "3 worker(s)" in lines[0], lines[0]
    assert re.match(r"WORKER +STATE +IN/S +OUT/S +P50 +P99 +SINKS +HELD +UNDELIVERED +BACKLOG "
                    r"+ERRORS +REJECTED$", lines[1]), lines[1]
    rows = {}
    for line in lines[2:]:
        cells = re.split(r"  +", line)
        rows[cells[0]] = cells
    assert sorted(rows) == ["initializer", "worker1", "worker2"], sorted(rows)
    total_in = 0
    for name, c in rows.items():
        assert c[1] == "ready", (name, c)
        total_in += number(c[2])
        number(c[3])
        # The second block's latency is of the second between the refreshes: under load,
        # every worker wrote output then.
        assert k == 0 or re.fullmatch(r"[0-9.]+(us|ms|s)", c[4]), (name, c)
        assert k == 0 or re.fullmatch(r"[0-9.]+(us|ms|s)", c[5]), (name, c)
        assert c[6] == "1/1", (name, c)
        assert c[10] == "0" and c[11] == "0", (name, c)
    assert total_in > 0, "no input in block %d" % k
PY

# targets: file_sd JSON, one entry per worker, with its labels and the ones given.
ctl targets --label env=test --label team=stream >"$T/targets.json" 2>"$T/targets.err" ||
    fail "targets: $(cat "$T/targets.err")"
python3 - "$T/targets.json" "$T/status.json" "${M[@]}" <<'PY' || fail "targets: $(cat "$T/targets.json")"
import json, sys
t = json.load(open(sys.argv[1]))
st = json.load(open(sys.argv[2]))
ports = sys.argv[3:]
assert isinstance(t, list) and len(t) == 3, t
names = ["initializer", "worker1", "worker2"]
for e in t:
    assert sorted(e) == ["labels", "targets"], e
    lab = e["labels"]
    i = names.index(lab["worker"])
    assert e["targets"] == ["127.0.0.1:%s" % ports[i]], e
    assert lab == {"worker": names[i], "cluster": st["cluster_id"], "application": "alphabet",
                   "env": "test", "team": "stream"}, lab
assert sorted(e["labels"]["worker"] for e in t) == names
PY

# Misplaced options are usage errors.
for args in "top --label a=b" "targets --interval 2" "status --interval 1" "targets --label __x=1" \
    "targets --label 9x=1" "targets --label novalue" "top --format table" "status --count 2"; do
    rc=0
    # shellcheck disable=SC2086
    ctl $args >/dev/null 2>"$T/usage.err" || rc=$?
    [ "$rc" = 2 ] || fail "roo-ctl $args: exit $rc, want 2 ($(cat "$T/usage.err"))"
done

# The sink goes away while the load goes on: every worker shows it disconnected and holds
# output (committed, not written).
stop recv || true
check_status 'all(w["sinks_connected"] == 0 and w["held_bytes"] > 0 and w["undelivered_bytes"] >= w["held_bytes"] for w in ws)' 20
ctl top --count 1 >"$T/top2.txt" || fail "top with the sink down failed"
for i in 0 1 2; do
    grep -Eq "^$(cl_name "$i") +ready +.* 0/1 +[0-9.]+ [KMG]?i?B " "$T/top2.txt" ||
        fail "top with the sink down, $(cl_name "$i"): $(cat "$T/top2.txt")"
done
pass "status shows version, uptime, metrics, sinks, rates and latency; top refreshes per worker; targets is file_sd JSON; a stopped sink shows as held output"
