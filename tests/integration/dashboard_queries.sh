#!/usr/bin/env bash
# config/grafana/roo-dashboard.json asks only for what workers serve: a 3-worker Alphabet
# cluster with --metrics takes load and shrinks by one (a partition move), every worker's
# /metrics is scraped, and every metric name in the dashboard's queries (panels and template
# variables) must be one that some worker served. The dashboard is well formed (every panel
# has a title and queries), config/prometheus-cluster.yml passes promtool check config (both
# its file_sd job and its commented static job) with a targets file from roo-ctl targets
# through scripts/prometheus-targets (the example file where roo-ctl has no targets yet), and
# a real Prometheus run with that config evaluates every dashboard query without an error.
# The PromQL the README shows in "Observing a cluster" passes the same two checks.
source "$(dirname "$0")/lib.sh"
watchdog 115

command -v curl >/dev/null || skip "no curl (scripts/install-deps installs it)"
command -v python3 >/dev/null || skip "no python3 (scripts/install-deps installs it)"
command -v promtool >/dev/null || skip "no promtool (scripts/install-deps installs prometheus)"

DASH=$SRC/config/grafana/roo-dashboard.json
PROM_CFG=$SRC/config/prometheus-cluster.yml
problems=() # every finding, reported together at the end

# --- the dashboard's shape ------------------------------------------------------------------
python3 - "$DASH" >"$T/shape.txt" 2>&1 <<'EOF' || problems+=("dashboard: $(cat "$T/shape.txt")")
import json, sys

try:
    d = json.load(open(sys.argv[1]))
except ValueError as e:
    sys.exit(f"{sys.argv[1]} is not JSON: {e}")
bad = []
if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
    bad.append(f"schemaVersion {d.get('schemaVersion')!r}, want 36 or more")
variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
ds_var = any(v.get("type") == "datasource" for v in variables.values())
ds_input = any(i.get("type") == "datasource" for i in d.get("__inputs", []))
if not ds_var and not ds_input:
    bad.append("no datasource variable and no datasource input")
for name in ("worker", "pipeline"):
    v = variables.get(name)
    q = v and v.get("query")
    q = q.get("query", "") if isinstance(q, dict) else (q or "")
    if not v or v.get("type") != "query" or "label_values(" not in q:
        bad.append(f"no template variable '{name}' from label_values")

def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))

ids, rows = set(), []
for p in panels(d.get("panels", [])):
    if p.get("id") in ids:
        bad.append(f"panel id {p.get('id')} twice")
    ids.add(p.get("id"))
    if p.get("type") == "row":
        rows.append(p.get("title", ""))
        continue
    title = p.get("title", "").strip()
    if not title:
        bad.append(f"panel {p.get('id')} has no title")
    if not p.get("gridPos"):
        bad.append(f"panel '{title}' has no gridPos")
    ts = p.get("targets") or []
    if not ts:
        bad.append(f"panel '{title}' has no targets")
    for t in ts:
        if not str(t.get("expr", "")).strip():
            bad.append(f"panel '{title}' has a target without expr")
        ds = t.get("datasource") or p.get("datasource") or {}
        if "$" not in str(ds.get("uid", ds)):
            bad.append(f"panel '{title}' names a fixed datasource {ds!r}, not the variable")
for want in ("Overview", "Latency", "Sinks", "Cluster", "State / LMDB", "Process"):
    if want not in rows:
        bad.append(f"no row '{want}' (rows: {rows})")
if bad:
    sys.exit("; ".join(bad))
print(f"{len(ids) - len(rows)} panels in {len(rows)} rows")
EOF
log "dashboard: $(cat "$T/shape.txt")"

# --- a 3-worker cluster with --metrics, under load -------------------------------------------
scrape() { curl -s --max-time 5 "http://127.0.0.1:$1/metrics" >"$2" || fail "cannot fetch /metrics of port $1"; }

OUT=$(free_port)
MB=$(free_ports 3)
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --quiet
wait_log recv 'listening on' 10
setup_cluster "$ALPHABET" 3 "$OUT"
for i in 0 1 2; do run_worker "$i" "c$i" --metrics "127.0.0.1:$MB"; done
cluster_ready c0 c1 c2
declare -A PORT
for i in 0 1 2; do PORT[c$i]=$(served_port "c$i"); done
EXT="127.0.0.1:${CL_EXT[0]},127.0.0.1:${CL_EXT[1]}"
# roo-ctl status names each worker's metrics address (the README says so).
"$ROO_CTL" --external "$EXT" status >"$T/status.json" 2>&1 || fail "roo-ctl status: $(cat "$T/status.json")"
for c in c0 c1 c2; do
    grep -q "\"127.0.0.1:${PORT[$c]}\"" "$T/status.json" ||
        problems+=("roo-ctl status does not show $c's metrics address 127.0.0.1:${PORT[$c]}")
done

# --- the targets file: roo-ctl targets through scripts/prometheus-targets ----------------------
cp "$SRC/config/roo-targets.example.json" "$T/example.json"
if "$ROO_CTL" --help 2>&1 | grep -qw targets; then
    "$SRC/scripts/prometheus-targets" --roo-ctl "$ROO_CTL" --external "$EXT" \
        --output "$T/roo-targets.json" --once 2>"$T/ptargets.err" ||
        fail "scripts/prometheus-targets --once: $(cat "$T/ptargets.err")"
    python3 - "$T/roo-targets.json" "${PORT[c0]}" "${PORT[c1]}" "${PORT[c2]}" >"$T/tcheck.txt" 2>&1 <<'EOF' ||
import json, sys
got = json.load(open(sys.argv[1]))
want = {"127.0.0.1:" + p for p in sys.argv[2:]}
seen = {t for g in got for t in g["targets"]}
assert seen == want, f"targets {sorted(seen)}, want {sorted(want)}"
for g in got:
    for k in ("worker", "cluster", "application"):
        assert g.get("labels", {}).get(k), f"group {g} has no {k} label"
EOF
        problems+=("roo-ctl targets: $(tail -1 "$T/tcheck.txt")")
    TARGETS_FROM="roo-ctl targets"
else
    # No roo-ctl targets yet: the example file's format, with this cluster's addresses.
    python3 - "$T/example.json" "$T/roo-targets.json" "${PORT[c0]}" "${PORT[c1]}" "${PORT[c2]}" <<'EOF'
import json, sys
groups = json.load(open(sys.argv[1]))
names = ["initializer", "worker1", "worker2"]
for g, port, name in zip(groups, sys.argv[3:], names):
    g["targets"] = ["127.0.0.1:" + port]
    g["labels"]["worker"] = name
json.dump(groups, open(sys.argv[2], "w"), indent=2)
EOF
    # A failed ask leaves the last good file as it was.
    cp "$T/roo-targets.json" "$T/before.json"
    "$SRC/scripts/prometheus-targets" --roo-ctl "$ROO_CTL" --external "$EXT" \
        --output "$T/roo-targets.json" --once 2>"$T/ptargets.err" &&
        problems+=("scripts/prometheus-targets --once succeeded without roo-ctl targets")
    cmp -s "$T/before.json" "$T/roo-targets.json" ||
        problems+=("scripts/prometheus-targets changed the targets file after a failed ask")
    TARGETS_FROM="the example file (this roo-ctl has no targets command)"
fi
log "targets file from $TARGETS_FROM"

# --- promtool check config: the file_sd job, and the static job uncommented -------------------
PP=$(free_port)
sed "s|/etc/prometheus/roo-targets.json|$T/roo-targets.json|; s|scrape_interval: 15s|scrape_interval: 1s|;
     s|scrape_timeout: 5s|scrape_timeout: 1s|; s|refresh_interval: 1m|refresh_interval: 2s|" \
    "$PROM_CFG" >"$T/prometheus.yml"
grep -q "$T/roo-targets.json" "$T/prometheus.yml" ||
    problems+=("config/prometheus-cluster.yml does not read /etc/prometheus/roo-targets.json")
sed "s|/etc/prometheus/roo-targets.json|$T/example.json|" "$PROM_CFG" >"$T/prom-example.yml"
sed "/^  # - job_name: roo-static/,/^\$/ s/^  # /  /; s|/etc/prometheus/roo-targets.json|$T/example.json|" \
    "$PROM_CFG" >"$T/prom-static.yml"
grep -q '^  - job_name: roo-static' "$T/prom-static.yml" ||
    problems+=("config/prometheus-cluster.yml has no commented '# - job_name: roo-static' job")
for f in prometheus.yml prom-example.yml prom-static.yml; do
    if ! promtool check config "$T/$f" >"$T/$f.check" 2>&1 || grep -qiE 'warning|failed' "$T/$f.check"; then
        problems+=("promtool check config ($f): $(grep -iE 'warning|failed|error' "$T/$f.check" | head -3)")
    fi
done

start prom prometheus --config.file "$T/prometheus.yml" --storage.tsdb.path "$T/prom-data" \
    --web.listen-address "127.0.0.1:$PP" --log.level warn

"$SENDER" --host "$(cl_all_in)" --connections 3 --messages 300000 --seed 11 --quiet
for ((i = 0; i < 200; i++)); do
    n=0
    for c in c0 c1 c2; do
        v=$(curl -s --max-time 5 "http://127.0.0.1:${PORT[$c]}/metrics" |
            awk '/^roo_sink_records_total\{/ { s += $NF } END { print s + 0 }' || true)
        n=$((n + v))
    done
    [ "$n" = 300000 ] && break
    sleep 0.1
done
[ "$n" = 300000 ] || fail "the sinks got $n of 300000 records"
for c in c0 c1 c2; do scrape "${PORT[$c]}" "$T/metrics-$c.txt"; done

# promq EXPR: Prometheus's JSON answer to an instant query.
promq() { curl -s --max-time 5 -G "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$1" || true; }
# Every worker scraped twice at least (rates need two samples), under its own name.
for ((i = 0; i < 150; i++)); do
    up=$(promq 'count(count_over_time(roo_ready[1m]) >= 2)' | sed -nE 's/.*"value":\[[^,]*,"([^"]*)"\].*/\1/p')
    [ "$up" = 3 ] && break
    alive prom || fail "prometheus exited: $(tail -3 "$T/prom.log")"
    sleep 0.2
done
[ "$up" = 3 ] || problems+=("Prometheus did not scrape the 3 workers from the file_sd targets (up: '$up')")
promq 'count by (worker) (process_open_fds)' >"$T/fds.json"
[ "$(grep -o '"worker":"[^"]*"' "$T/fds.json" | sort -u | wc -l)" = 3 ] ||
    problems+=("process_open_fds does not carry the target's worker label for 3 workers: $(cat "$T/fds.json")")
promq 'count(roo_ready{exported_worker!=""})' | grep -q '"result":\[\]' ||
    problems+=("roo_ series carry exported_worker: the scrape job should honor the workers' own labels")

# --- shrink by one: a partition move -------------------------------------------------------
"$ROO_CTL" --external "127.0.0.1:${CL_EXT[0]}" shrink --workers worker2 >"$T/shrink.out" 2>&1 ||
    fail "shrink failed: $(tail -3 "$T/shrink.out")"
wait_exit c2 30 || fail "worker2 did not leave cleanly"
for c in c0 c1; do scrape "${PORT[$c]}" "$T/metrics-$c-after.txt"; done
sleep 2 # a scrape of the move's counters

# The README's queries (its promql blocks in "Observing a cluster") are held to the same rules.
awk '/^## Observing a cluster/ { on = 1; next } on && /^## / { exit }
     on && /^```promql$/ { q = 1; next } q && /^```$/ { q = 0 } q && !/^#/ && NF' \
    "$SRC/README.md" >"$T/readme-queries.txt"
[ -s "$T/readme-queries.txt" ] || problems+=("README.md: no promql block in 'Observing a cluster'")

# --- every metric the dashboard and the README name is served ----------------------------------
python3 - "$DASH" "$T/readme-queries.txt" "$T"/metrics-*.txt >"$T/names.txt" 2>&1 <<'EOF' || problems+=("$(cat "$T/names.txt")")
import json, re, sys

served, histograms = set(), set()
for path in sys.argv[3:]:
    for line in open(path):
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            if kind == "histogram":
                histograms.add(name)
            else:
                served.add(name)
        elif line.strip() and not line.startswith("#"):
            served.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
for h in histograms:
    served |= {h + "_bucket", h + "_sum", h + "_count"}

d = json.load(open(sys.argv[1]))
exprs = []
def walk(x):
    if isinstance(x, dict):
        for k, v in x.items():
            if k == "expr" and isinstance(v, str):
                exprs.append(v)
            else:
                walk(v)
    elif isinstance(x, list):
        for v in x:
            walk(v)
walk(d.get("panels", []))
for v in d.get("templating", {}).get("list", []):
    q = v.get("query")
    exprs.append(q.get("query", "") if isinstance(q, dict) else str(q or ""))
    exprs.append(str(v.get("definition", "")))
readme = [l.strip() for l in open(sys.argv[2]) if l.strip()]
exprs += readme

used = {}
for e in exprs:
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)  # label values are not names
    for name in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare):
        if name.startswith(("roo_", "process_")):
            used.setdefault(name, e)
missing = sorted(n for n in used if n not in served)
if missing:
    sys.exit(f"the dashboard and the README use {len(missing)} metrics no worker serves: " +
             ", ".join(missing))
print(f"{len(used)} metric names in {len(exprs) - len(readme)} dashboard and {len(readme)} README "
      "queries, all served")
EOF
log "names: $(cat "$T/names.txt")"

# --- Prometheus evaluates every dashboard and README query ------------------------------------
python3 - "$DASH" "$PP" "$T/readme-queries.txt" >"$T/eval.txt" 2>&1 <<'EOF' || problems+=("$(cat "$T/eval.txt")")
import json, re, sys, urllib.parse, urllib.request

d = json.load(open(sys.argv[1]))
subst = {"__rate_interval": "1m", "__range": "5m", "__interval": "15s"}
def fill(e):
    return re.sub(r"\$\{?(\w+)\}?", lambda m: subst.get(m.group(1), ".*"), e)
def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))
queries = [(f"'{p['title']}' {t['refId']}", t["expr"])
           for p in panels(d.get("panels", [])) for t in p.get("targets", [])]
queries += [(f"README '{l.strip()}'", l.strip()) for l in open(sys.argv[3]) if l.strip()]
bad, empty, n = [], [], 0
for what, expr in queries:
    n += 1
    url = f"http://127.0.0.1:{sys.argv[2]}/api/v1/query?" + \
          urllib.parse.urlencode({"query": fill(expr)})
    try:
        ans = json.load(urllib.request.urlopen(url, timeout=5))
    except urllib.error.HTTPError as err:
        ans = json.load(err)
    except Exception as err:
        ans = {"status": "error", "error": str(err)}
    if ans.get("status") != "success":
        bad.append(f"{what}: {ans.get('error')}")
    elif not ans["data"]["result"]:
        empty.append(what)
if bad:
    sys.exit(f"Prometheus refused {len(bad)} of {n} dashboard and README queries: " + "; ".join(bad))
print(f"Prometheus evaluated all {n} queries; empty now: {', '.join(empty) or 'none'}")
EOF
log "queries: $(cat "$T/eval.txt")"

stop prom || true
for c in c0 c1; do stop "$c" || fail "$c did not stop cleanly"; done
stop recv || true
if [ ${#problems[@]} -gt 0 ]; then
    for p in "${problems[@]}"; do log "PROBLEM: $p"; done
    fail "${#problems[@]} problem(s), the first: ${problems[0]}"
fi
pass "the dashboard's $(cat "$T/shape.txt"); $(cat "$T/names.txt"); promtool accepts config/prometheus-cluster.yml (targets from $TARGETS_FROM); $(cut -d';' -f1 "$T/eval.txt")"
