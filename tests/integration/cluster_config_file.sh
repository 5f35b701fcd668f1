#!/usr/bin/env bash
# A 3-worker Alphabet cluster started from config/alphabet-3-local.ini (ports and directories
# rewritten to free ones): Wallaroo's vectors come out exact, each worker took its own section
# (its name, addresses and directory), and a flag on the command line overrides the file.
# A bad file is refused with its file and line.
source "$(dirname "$0")/lib.sh"
watchdog 120

cfg=$T/cluster.ini
sed_args=()
for port in 6000 6001 6002 6010 6011 6012 6020 6021 6022 7010 7011 7012 7002; do
    p=$(free_port)
    eval "P$port=$p"
    sed_args+=(-e "s/127\.0\.0\.1:$port\b/127.0.0.1:$p/")
done
sed "${sed_args[@]}" -e "s|/var/tmp/roo/|$T/state/|" "$SRC/config/alphabet-3-local.ini" >"$cfg"
# shellcheck disable=SC2154 # set by eval above
{ OUT=$P7002; EXT0=$P6002; EXT2=$P6022; IN0=$P7010; IN1=$P7011; }
grep -q "127.0.0.1:$IN1" "$cfg" || fail "rewriting the example config failed"

# Two sources at once: the final totals are exact, each letter's totals only grow.
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --alphabet-check "$TESTDATA/_expected.json" \
    --expect 1000 --timeout 60 --quiet
wait_log recv 'listening on' 10
start w2 "$ALPHABET" --config "$cfg" --name worker2
start w1 "$ALPHABET" --config "$cfg" --name worker1 --threads 2
start w0 "$ALPHABET" --config "$cfg"
for w in w0 w1 w2; do wait_log "$w" 'ready:' 30; done
"$ROO_CTL" --external "127.0.0.1:$EXT2" status --wait-ready 20 >"$T/status.json" ||
    fail "status not ready: $(cat "$T/status.json")"
grep -q '"worker_count": 3' "$T/status.json" || fail "status lacks worker_count 3"
for d in initializer worker1 worker2; do
    [ -d "$T/state/$d" ] || fail "no resilience dir $T/state/$d: the worker's section was not applied"
done

# Half the vectors into the initializer's source, half into worker1's.
head -c 4500 "$TESTDATA/_test.txt" >"$T/a.bin"
tail -c +4501 "$TESTDATA/_test.txt" >"$T/b.bin"
"$SENDER" --host "127.0.0.1:$IN0" --file "$T/a.bin" --quiet
"$SENDER" --host "127.0.0.1:$IN1" --file "$T/b.bin" --quiet
wait_exit recv 60 || fail "vectors through a config-file cluster: $(tail -1 "$T/recv.log")"
"$ROO_CTL" --external "127.0.0.1:$EXT0" shutdown >/dev/null || fail "roo-ctl shutdown failed"
for w in w0 w1 w2; do wait_exit "$w" 30 || fail "$w did not exit cleanly"; done
pass "3 workers from one config file: vectors exact, each took its own section"

printf '[cluster]\ncontrol = 127.0.0.1:%s\nthreds = 2\n' "$P6000" >"$T/bad.ini"
rc=0
"$ALPHABET" --config "$T/bad.ini" --name worker1 >"$T/bad.log" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "a bad config file exited $rc, want 2"
grep -q "bad.ini:3: unknown key 'threds'" "$T/bad.log" || fail "bad config error: $(cat "$T/bad.log")"
pass "a bad config file is refused with its file and line"
