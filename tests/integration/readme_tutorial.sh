#!/usr/bin/env bash
# The README's tutorial application, extracted from README.md exactly as a reader would copy
# it, must compile against libroo and behave as the README says, including after kill -9.
source "$(dirname "$0")/lib.sh"
watchdog 90

sed -n '/<!-- tutorial:sums.c begin -->/,/<!-- tutorial:sums.c end -->/p' "$SRC/README.md" |
    sed '1,2d;$d' | sed '$d' >"$T/sums.c"
grep -q 'roo_main(argc, argv, setup)' "$T/sums.c" || fail "could not extract the tutorial from README.md"

CC=${CC:-cc}
extra=()
# A sanitized build's libroo needs the same sanitizer runtimes at link time.
san=$(meson introspect --buildoptions "$BUILD" 2>/dev/null |
    grep -Eo '"name": "b_sanitize", "value": "[a-z,]+"' | sed 's/.*"value": "//; s/"$//' || true)
if [ -n "$san" ] && [ "$san" != none ]; then
    extra=(-fsanitize="$san")
fi
# The libraries, exactly as the README's command lists them after libroo.a.
read -r -a libs < <(grep -m1 -o 'build/src/libroo\.a .* -o sums' "$SRC/README.md" |
    sed 's|^build/src/libroo\.a ||; s| -o sums$||')
[ ${#libs[@]} -gt 0 ] || fail "could not find the README's compile command"
"$CC" -std=c11 -Wall -Wextra -Werror -O2 "${extra[@]}" -I"$SRC/include" "$T/sums.c" \
    "$BUILD/src/libroo.a" "${libs[@]}" -o "$T/sums" ||
    fail "the README tutorial does not compile with the README's command"

IN=$(free_port)
OUT=$(free_port)
start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --newlines --output "$T/out.txt" --timeout 60 \
    --quiet
wait_log recv 'listening on' 10
start sums "$T/sums" --in "127.0.0.1:$IN" --out "127.0.0.1:$OUT" --resilience-dir "$T/state"
wait_log sums 'ready:' 10
printf 'alice 5\nbob 7\nalice 10\n' >"/dev/tcp/127.0.0.1/$IN"
wait_file_size "$T/out.txt" 23 10
kill9 sums
start sums2 "$T/sums" --in "127.0.0.1:$IN" --out "127.0.0.1:$OUT" --resilience-dir "$T/state"
wait_log sums2 'ready:' 10
printf 'alice 1\n' >"/dev/tcp/127.0.0.1/$IN"
for ((i = 0; i < 400; i++)); do grep -q 'alice 16' "$T/out.txt" && break; sleep 0.05; done
# The README's guarantee: after a kill -9 the sink may see the output of the worker's last
# commit(s) again (written, not yet known written), as exact repeats in the original order.
got=$(cat "$T/out.txt")
ok=
for again in '' 'alice 15' 'bob 7
alice 15' 'alice 5
bob 7
alice 15'; do
    want=$(printf 'alice 5\nbob 7\nalice 15\n%s\nalice 16' "$again" | sed '/^$/d')
    [ "$got" = "$want" ] && ok=1
done
[ -n "$ok" ] || fail "tutorial output was: $got"
stop recv || true
stop sums2 || fail "tutorial app did not stop cleanly"

# The tutorial's unit test, written with the in-process test driver, passes as the README
# gives it; and it is a test that can fail: with sums.c changed to forget a key's sum, it must.
sed -n '/<!-- tutorial:sums_test.c begin -->/,/<!-- tutorial:sums_test.c end -->/p' \
    "$SRC/README.md" | sed '1,2d;$d' | sed '$d' >"$T/sums_test.c"
grep -q 'roo_test_create' "$T/sums_test.c" || fail "could not extract the tutorial's unit test"
"$CC" -std=c11 -Wall -Wextra -Werror -O2 "${extra[@]}" -I"$SRC/include" "$T/sums_test.c" \
    "$BUILD/src/libroo.a" "${libs[@]}" -o "$T/sums_test" ||
    fail "the tutorial's unit test does not compile with the README's command"
(cd "$T" && ./sums_test) >"$T/unit.out" 2>"$T/unit.err" ||
    fail "the tutorial's unit test failed: $(cat "$T/unit.out")"
[ "$(grep -c '^ok - ' "$T/unit.out")" = 5 ] || fail "unit test printed: $(cat "$T/unit.out")"
mkdir "$T/broken"
sed 's/s->sum += e.amount;/s->sum = e.amount;/' "$T/sums.c" >"$T/broken/sums.c"
cp "$T/sums_test.c" "$T/broken/"
"$CC" -std=c11 -O2 "${extra[@]}" -I"$SRC/include" "$T/broken/sums_test.c" \
    "$BUILD/src/libroo.a" "${libs[@]}" -o "$T/broken/sums_test" || fail "broken copy did not build"
if (cd "$T/broken" && ./sums_test) >"$T/broken.out" 2>&1; then
    fail "the unit test passed a sums.c that forgets the running sum"
fi
grep -q '^not ok - running sums' "$T/broken.out" || fail "broken sums.c: $(cat "$T/broken.out")"
pass "README tutorial compiles and prints alice 5, bob 7, alice 15, then alice 16 after kill -9; its unit test passes, and fails on a broken sums.c"
