#!/usr/bin/env bash
# --metrics: a worker serves Prometheus text at /metrics whose counters match what was sent
# and delivered, that promtool accepts without a warning, /healthz, 404 and 405; a second
# worker given the same --metrics address serves on the next port; a stopped sink shows as
# disconnected with its held bytes; and a real Prometheus scraping a 3-worker cluster that
# shares one --metrics address adds up every vote.
source "$(dirname "$0")/lib.sh"
watchdog 100

command -v curl >/dev/null || skip "no curl (scripts/install-deps installs it)"
command -v promtool >/dev/null || skip "no promtool (scripts/install-deps installs prometheus)"


fetch() { curl -s --max-time 5 "http://127.0.0.1:$1$2" || true; }
status_of() { curl -s --max-time 5 -o /dev/null -w '%{http_code}' "${@:2}" "http://127.0.0.1:$1"; }

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

# The port a worker's log says it serves metrics on.

IN=$(free_port)
IN2=$(free_port)
OUT=$(free_port)
M=$(free_ports 2)
N=200000

# --- one worker: counts, format, /healthz, 404, 405 ----------------------------------------
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --output "$T/out.bin" --quiet
wait_log recv 'listening on' 10
alphabet_worker w0 "$IN" "$OUT" "$T/solo0" --metrics "127.0.0.1:$M"
grep -q "metrics: serving http://127.0.0.1:$M/metrics\$" "$T/w0.log" ||
    fail "w0 does not say where it serves: $(grep metrics "$T/w0.log")"
[ "$(fetch "$M" /healthz)" = ready ] || fail "/healthz of a ready worker: '$(fetch "$M" /healthz)'"
[ "$(status_of "$M/healthz")" = 200 ] || fail "/healthz is not 200"

# A client that holds more connections than the server takes must not slow processing: the
# votes go through while it holds them (the server's own thread is the only one it stalls).
held=()
for ((i = 0; i < 2 * 32; i++)); do
    exec {fd}<>"/dev/tcp/127.0.0.1/$M" || break
    held+=("$fd")
done
"$SENDER" --host "127.0.0.1:$IN" --messages "$N" --seed 7 --quiet
wait_file_size "$T/out.bin" $((N * 13)) 20
for fd in "${held[@]}"; do exec {fd}>&-; done
W='worker="initializer"'
wait_metric "$M" "roo_sink_records_total{$W,sink=\"127.0.0.1:$OUT\"}" "$N" 20
[ "$(metric "$M" "roo_source_frames_total{$W,pipeline=\"votes\"}")" = "$N" ] ||
    fail "frames in: $(metric "$M" "roo_source_frames_total{$W,pipeline=\"votes\"}"), want $N"
[ "$(metric "$M" "roo_source_bytes_total{$W,pipeline=\"votes\"}")" = $((N * 9)) ] ||
    fail "bytes in is not $((N * 9))"
[ "$(metric "$M" "roo_sink_bytes_total{$W,sink=\"127.0.0.1:$OUT\"}")" = $((N * 13)) ] ||
    fail "bytes out is not $((N * 13))"
[ "$(metric "$M" "roo_sink_connected{$W,sink=\"127.0.0.1:$OUT\"}")" = 1 ] || fail "sink not connected"
[ "$(metric "$M" "roo_sink_held_bytes{$W,sink=\"127.0.0.1:$OUT\"}")" = 0 ] || fail "sink holds bytes"
[ "$(metric "$M" "roo_state_keys{$W}")" = 26 ] || fail "keys: $(metric "$M" "roo_state_keys{$W}")"
[ "$(metric "$M" "roo_partitions_owned{$W}")" = 256 ] || fail "partitions owned is not 256"
[ "$(metric "$M" "roo_ready{$W}")" = 1 ] || fail "roo_ready is not 1"
[ "$(metric "$M" "roo_build_info{$W,version=\"0.1.0\",application=\"alphabet\"}")" = 1 ] ||
    fail "no roo_build_info"
commits=$(metric "$M" "roo_commits_total{$W}")
[ "${commits:-0}" -gt 0 ] || fail "no commits counted"

fetch "$M" /metrics >"$T/metrics.txt"
curl -s --max-time 5 -D "$T/headers.txt" -o /dev/null "http://127.0.0.1:$M/metrics"
grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8' "$T/headers.txt" ||
    fail "content type: $(grep -i content-type "$T/headers.txt")"
promtool check metrics <"$T/metrics.txt" >"$T/promtool.txt" 2>&1 ||
    fail "promtool check metrics failed: $(head -5 "$T/promtool.txt")"
[ ! -s "$T/promtool.txt" ] || fail "promtool check metrics warns: $(head -5 "$T/promtool.txt")"
for f in process_resident_memory_bytes process_cpu_seconds_total process_open_fds \
    process_max_fds process_start_time_seconds; do
    grep -q "^$f [0-9]" "$T/metrics.txt" || fail "no $f"
done
[ "$(status_of "$M/nope")" = 404 ] || fail "an unknown path is not 404"
[ "$(status_of "$M/metrics" -X POST -d x)" = 405 ] || fail "POST is not 405"
pass "one worker: $N frames in and out (while ${#held[@]} idle connections hogged /metrics), promtool finds nothing to say, /healthz, 404, 405"

# --- a second worker with the same --metrics address -----------------------------------------
alphabet_worker w1 "$IN2" "$OUT" "$T/solo1" --name second --metrics "127.0.0.1:$M"
grep -q "metrics: serving http://127.0.0.1:$((M + 1))/metrics ($M was taken)" "$T/w1.log" ||
    fail "w1 did not move to the next port: $(grep metrics "$T/w1.log")"
[ "$(metric $((M + 1)) 'roo_ready{worker="second"}')" = 1 ] || fail "w1 does not serve its own figures"
[ "$(metric "$M" "roo_ready{$W}")" = 1 ] || fail "w0 no longer serves"
stop w1 || fail "w1 did not stop cleanly"
pass "a second worker on the same --metrics address serves on the next port and says so"

# --- the sink stops: disconnected, output held --------------------------------------------
stop recv || true
SINK="sink=\"127.0.0.1:$OUT\""
wait_metric "$M" "roo_sink_connected{$W,$SINK}" 0 10
"$SENDER" --host "127.0.0.1:$IN" --messages 10000 --seed 8 --quiet
wait_metric "$M" "roo_source_frames_total{$W,pipeline=\"votes\"}" $((N + 10000)) 10
wait_metric "$M" "roo_sink_held_bytes{$W,$SINK}" $((10000 * 13)) 10
wait_metric "$M" "roo_sink_undelivered_bytes{$W,$SINK}" $((10000 * 13)) 10
[ "$(metric "$M" "roo_sink_records_total{$W,$SINK}")" = "$N" ] || fail "records counted as written"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --quiet
wait_metric "$M" "roo_sink_held_bytes{$W,$SINK}" 0 10
wait_metric "$M" "roo_sink_records_total{$W,$SINK}" $((N + 10000)) 10
[ "$(metric "$M" "roo_sink_connected{$W,$SINK}")" = 1 ] || fail "sink not connected again"
stop w0 || fail "w0 did not stop cleanly"
stop recv || true
pass "a stopped sink shows disconnected with its 130,000 held bytes; they go once it is back"

# --- a real Prometheus scraping a 3-worker cluster that shares one --metrics address ---------
command -v prometheus >/dev/null || skip "no prometheus server (scripts/install-deps installs it)"
MB=$(free_ports 3)
PP=$(free_port)
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --quiet
wait_log recv 'listening on' 10
setup_cluster "$ALPHABET" 3 "$OUT"
run_worker 0 c0 --metrics "127.0.0.1:$MB"
wait_log c0 "metrics: serving" 10
# Alone, the initializer waits for the others: serving metrics, but not ready.
[ "$(status_of "$(served_port c0)/healthz")" = 503 ] || fail "/healthz of a forming cluster is not 503"
[ "$(fetch "$(served_port c0)" /healthz)" = "not ready" ] || fail "/healthz does not say not ready"
run_worker 1 c1 --metrics "127.0.0.1:$MB"
run_worker 2 c2 --metrics "127.0.0.1:$MB"
cluster_ready c0 c1 c2
targets=""
for c in c0 c1 c2; do targets="$targets${targets:+, }'127.0.0.1:$(served_port $c)'"; done
[ "$(for c in c0 c1 c2; do served_port $c; done | sort -n | tr '\n' ' ')" = "$MB $((MB + 1)) $((MB + 2)) " ] ||
    fail "the workers do not serve on $MB..$((MB + 2)): $targets"
cat >"$T/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: roo
    static_configs:
      - targets: [$targets]
EOF
promtool check config "$T/prometheus.yml" >"$T/promtool-config.txt" 2>&1 ||
    fail "promtool check config: $(cat "$T/promtool-config.txt")"
start prom prometheus --config.file "$T/prometheus.yml" --storage.tsdb.path "$T/prom-data" \
    --web.listen-address "127.0.0.1:$PP" --log.level warn
V=300000
"$SENDER" --host "$(cl_all_in)" --connections 3 --messages "$V" --seed 9 --quiet

# query EXPR: the value of a one-element instant vector from Prometheus's HTTP API.
query() {
    curl -s --max-time 5 -G "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$1" |
        sed -nE 's/.*"value":\[[^,]*,"([^"]*)"\].*/\1/p' || true # not up yet: nothing
}
for ((i = 0; i < 200; i++)); do
    up=$(query 'sum(up{job="roo"})')
    frames=$(query 'sum(roo_source_frames_total{job="roo"})')
    out=$(query 'sum(roo_sink_records_total{job="roo"})')
    [ "$up" = 3 ] && [ "$frames" = "$V" ] && [ "$out" = "$V" ] && break
    alive prom || fail "prometheus exited: $(tail -3 "$T/prom.log")"
    sleep 0.1
done
[ "$up" = 3 ] && [ "$frames" = "$V" ] && [ "$out" = "$V" ] ||
    fail "Prometheus says up=$up, frames in=$frames, records out=$out; want 3, $V, $V"
routed=$(query 'sum(roo_routed_messages_received_total{job="roo"})')
[ "${routed:-0}" -gt 0 ] || fail "no messages crossed workers: '$routed'"
owned=$(query 'sum(roo_partitions_owned{job="roo"})')
[ "$owned" = 256 ] || fail "the workers own $owned partitions together, want 256"
ready=$(query 'sum(roo_ready{job="roo"})')
[ "$ready" = 3 ] || fail "$ready workers ready, want 3"

# Latency: one end-to-end sample per record written, wherever its frame was read; the
# stages count frames read, messages committed (read here or routed here), records written.
for ((i = 0; i < 100; i++)); do
    e2e=$(query 'sum(roo_end_to_end_latency_seconds_count{job="roo"})')
    [ "$e2e" = "$V" ] && break
    sleep 0.1
done
[ "$e2e" = "$V" ] || fail "end-to-end latency samples: $e2e, want one per record ($V)"
read_sealed=$(query 'sum(roo_stage_latency_seconds_count{job="roo",stage="read_to_sealed"})')
sealed=$(query 'sum(roo_stage_latency_seconds_count{job="roo",stage="sealed_to_committed"})')
written=$(query 'sum(roo_stage_latency_seconds_count{job="roo",stage="committed_to_written"})')
[ "$read_sealed" = "$V" ] && [ "$written" = "$V" ] && [ "$sealed" = $((V + routed)) ] ||
    fail "stage samples: read_to_sealed $read_sealed, sealed_to_committed $sealed, committed_to_written $written; want $V, $((V + routed)), $V"
p50=$(query 'histogram_quantile(0.5, sum by (le) (roo_end_to_end_latency_seconds_bucket{job="roo"}))')
p99=$(query 'histogram_quantile(0.99, sum by (le) (roo_end_to_end_latency_seconds_bucket{job="roo"}))')
commit99=$(query 'histogram_quantile(0.99, sum by (le) (roo_commit_duration_seconds_bucket{job="roo"}))')
python3 - "$p50" "$p99" "$commit99" <<'PY' || fail "latency quantiles out of range: p50 $p50 s, p99 $p99 s, commit p99 $commit99 s"
import sys
p50, p99, c99 = (float(x) for x in sys.argv[1:])
assert 0 < p50 <= p99 < 60 and 0 < c99 < 60
PY
computed=$(query 'sum(roo_step_compute_seconds_count{job="roo"})')
[ "${computed%.*}" -gt 0 ] || fail "no step compute time sampled: '$computed'"
commits=$(query 'sum(roo_commits_total{job="roo"})')
commit_n=$(query 'sum(roo_commit_duration_seconds_count{job="roo"})')
[ "$commits" = "$commit_n" ] || fail "$commit_n commit durations for $commits commits"
log "latency from Prometheus: end to end p50 $p50 s, p99 $p99 s; commit p99 $commit99 s"
for c in c0 c1 c2; do
    fetch "$(served_port $c)" /metrics >"$T/$c-metrics.txt"
    promtool check metrics <"$T/$c-metrics.txt" >"$T/$c-promtool.txt" 2>&1 ||
        fail "promtool check metrics failed on $c: $(head -5 "$T/$c-promtool.txt")"
    [ ! -s "$T/$c-promtool.txt" ] || fail "promtool check metrics warns on $c: $(head -5 "$T/$c-promtool.txt")"
done

# The sink stops: Prometheus sees every worker's sink disconnected and the output held.
stop recv || true
for ((i = 0; i < 100; i++)); do
    connected=$(query 'sum(roo_sink_connected{job="roo"})')
    [ "$connected" = 0 ] && break
    sleep 0.1
done
[ "$connected" = 0 ] || fail "Prometheus says $connected sink connection(s) up after the sink stopped"
"$SENDER" --host "$(cl_all_in)" --connections 3 --messages 30000 --seed 10 --quiet
for ((i = 0; i < 100; i++)); do
    held=$(query 'sum(roo_sink_held_bytes{job="roo"})')
    undelivered=$(query 'sum(roo_sink_undelivered_bytes{job="roo"})')
    [ "$held" = $((30000 * 13)) ] && [ "$undelivered" = "$held" ] && break
    sleep 0.1
done
[ "$held" = $((30000 * 13)) ] && [ "$undelivered" = "$held" ] ||
    fail "with the sink down Prometheus says $held bytes held, $undelivered undelivered; want $((30000 * 13)) each"
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --quiet
stop prom || true
for c in c0 c1 c2; do stop "$c" || fail "$c did not stop cleanly"; done
pass "Prometheus scraped 3 workers on $MB..$((MB + 2)): sum(roo_source_frames_total) = $V, as many records out and end-to-end latency samples, quantiles present, promtool content with every worker, a stopped sink disconnected with its bytes held"
