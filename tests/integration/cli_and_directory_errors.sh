#!/usr/bin/env bash
# Command-line mistakes give one clear line and exit 2; a resilience directory that is not
# this worker's, or is in use, or a port that is taken, gives a clear refusal and exit 1.
source "$(dirname "$0")/lib.sh"
watchdog 60

expect_exit() { # expect_exit CODE REGEX CMD...
    local want=$1 re=$2 rc=0
    shift 2
    "$@" >"$T/out.txt" 2>&1 || rc=$?
    [ "$rc" = "$want" ] || fail "'$*' exited $rc, want $want: $(cat "$T/out.txt")"
    grep -Eq -- "$re" "$T/out.txt" || fail "'$*' output lacks /$re/: $(cat "$T/out.txt")"
}

expect_exit 2 "unknown option '--bogus' \(see --help\)" "$ALPHABET" --bogus
expect_exit 2 "--threads: '0' is not a whole number in 1\.\.64" "$ALPHABET" --threads 0
expect_exit 2 "--in: 'nonsense' is not a comma-separated list of HOST:PORT" "$ALPHABET" --in nonsense
expect_exit 2 "option '--out' needs a value" "$ALPHABET" --out
expect_exit 2 "unexpected argument 'extra'" "$ALPHABET" extra
expect_exit 2 "--max-frame" "$ALPHABET" --max-frame 99G
expect_exit 0 "--resilience-dir" "$ALPHABET" --help
expect_exit 0 "roo 0\.1\.0" "$ALPHABET" --version
[ "$(wc -l <"$T/out.txt")" = 1 ] || fail "--version prints more than one line"
"$ALPHABET" --bogus 2>"$T/err.txt" || true
[ "$(wc -l <"$T/err.txt")" = 1 ] || fail "a bad flag printed more than one line"
pass "flag errors: one line, exit 2; --help and --version exit 0"

IN=$(free_port)
OUT=$(free_port)
IN2=$(free_port)
alphabet_worker w0 "$IN" "$OUT" "$T/dir" --name alpha
expect_exit 1 "is locked by process|in use" "$ALPHABET" --in "127.0.0.1:$IN2" \
    --out "127.0.0.1:$OUT" --resilience-dir "$T/dir" --name alpha
# A port another program holds is taken (workers share theirs: SO_REUSEPORT, as Wallaroo's
# recipes give every worker on a host the same --in; test cluster_shared_in).
IN3=$(free_port)
start taker "$RECEIVER" --listen "127.0.0.1:$IN3" --quiet
wait_log taker 'listening on' 10
expect_exit 1 "cannot listen on --in 127.0.0.1:$IN3 for source 'votes': Address already in use" \
    "$ALPHABET" --in "127.0.0.1:$IN3" --out "127.0.0.1:$OUT" --resilience-dir "$T/other"
stop taker || true
stop w0 || fail "worker did not stop cleanly"
expect_exit 1 "belongs to worker 'alpha', not 'beta' \(check --name\)" "$ALPHABET" \
    --in "127.0.0.1:$IN" --out "127.0.0.1:$OUT" --resilience-dir "$T/dir" --name beta
expect_exit 1 "created with --partitions 256, not 64" "$ALPHABET" --in "127.0.0.1:$IN" \
    --out "127.0.0.1:$OUT" --resilience-dir "$T/dir" --name alpha --partitions 64
expect_exit 2 "has 1 source\(s\) but --in lists 2 address\(es\)" "$ALPHABET" \
    --in "127.0.0.1:$IN,127.0.0.1:$IN2" --out "127.0.0.1:$OUT" --resilience-dir "$T/x"
pass "foreign, locked and mismatched directories and a taken port are refused clearly"

expect_exit 2 "--framing must be 'line' or 'length'" "$BUILD/examples/reverse/reverse" \
    --resilience-dir "$T/r" -- --framing sideways
pass "application options after -- are checked by the application"
