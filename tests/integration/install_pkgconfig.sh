#!/usr/bin/env bash
# roo installs like a C library people know: `meson install` into a DESTDIR gives libroo.so
# (SONAME libroo.so.0, only the roo_* API exported), libroo.a, roo.h and roo.pc. The README's
# tutorial, copied into an empty directory, builds there with pkg-config alone, shared and
# static, and both binaries count as the README says; its unit test builds and passes too.
source "$(dirname "$0")/lib.sh"
watchdog 120
command -v pkg-config >/dev/null || skip "no pkg-config"

DEST=$T/root
meson install -C "$BUILD" --destdir "$DEST" --no-rebuild --quiet >"$T/install.log" 2>&1 ||
    fail "meson install failed: $(tail -3 "$T/install.log")"
pc=$(find "$DEST" -name roo.pc | head -1)
[ -n "$pc" ] || fail "no roo.pc installed"
libdir=$(dirname "$(dirname "$pc")")
so=$(find "$libdir" -name 'libroo.so.0.*' | head -1)
[ -n "$so" ] && [ -f "$libdir/libroo.a" ] || fail "libroo.so.0 or libroo.a missing in $libdir"
readelf -d "$so" | grep -q 'SONAME.*\[libroo.so.0\]' || fail "libroo.so has no SONAME libroo.so.0"
others=$(nm -D --defined-only "$so" | awk '$2 == "T" && $3 !~ /^roo_/ {print $3}')
[ -z "$others" ] || fail "libroo.so exports more than roo_*: $(echo $others | head -c 200)"
for bin in roo-alphabet roo-reverse roo-word-count roo-ctl; do
    [ -n "$(find "$DEST" -path "*/bin/$bin")" ] || fail "$bin not installed"
done
[ -n "$(find "$DEST" -path '*/doc/roo/examples/alphabet.c')" ] || fail "example sources not installed"

mkdir "$T/app"
cd "$T/app" # an empty directory, far from the repository
sed -n '/<!-- tutorial:sums.c begin -->/,/<!-- tutorial:sums.c end -->/p' "$SRC/README.md" |
    sed '1,/^```c$/d; /^```$/,$d' >sums.c
grep -q 'roo_main(argc, argv, setup)' sums.c || fail "could not extract the tutorial from README.md"
export PKG_CONFIG_SYSROOT_DIR=$DEST PKG_CONFIG_PATH=$libdir/pkgconfig
san=$(meson introspect --buildoptions "$BUILD" 2>/dev/null |
    grep -Eo '"name": "b_sanitize", "value": "[a-z,]+"' | sed 's/.*"value": "//; s/"$//' || true)
extra=()
[ -n "$san" ] && [ "$san" != none ] && extra=(-fsanitize="$san")
# shellcheck disable=SC2046
cc sums.c "${extra[@]}" $(pkg-config --cflags --libs roo) -o sums 2>"$T/cc.log" ||
    fail "the tutorial does not build with pkg-config: $(head -3 "$T/cc.log")"
# shellcheck disable=SC2046
cc sums.c "${extra[@]}" $(pkg-config --static --cflags --libs roo) -o sums-static 2>"$T/cc2.log" ||
    fail "the tutorial does not build statically with pkg-config: $(head -3 "$T/cc2.log")"
# Its unit test too, from the installed roo/roo_test.h.
sed -n '/<!-- tutorial:sums_test.c begin -->/,/<!-- tutorial:sums_test.c end -->/p' \
    "$SRC/README.md" | sed '1,/^```c$/d; /^```$/,$d' >sums_test.c
# shellcheck disable=SC2046
cc sums_test.c "${extra[@]}" $(pkg-config --cflags --libs roo) -o sums_test 2>"$T/cc3.log" ||
    fail "the tutorial's unit test does not build with pkg-config: $(head -3 "$T/cc3.log")"
LD_LIBRARY_PATH=$libdir ./sums_test >"$T/unit.out" 2>&1 ||
    fail "the tutorial's unit test failed against the installed library: $(cat "$T/unit.out")"
cd - >/dev/null

for variant in sums sums-static; do
    IN=$(free_port)
    OUT=$(free_port)
    start recv "$RECEIVER" --listen "127.0.0.1:$OUT" --newlines --output "$T/$variant.out" \
        --expect 3 --timeout 30 --quiet
    wait_log recv 'listening on' 10
    LD_LIBRARY_PATH=$libdir start "$variant" "$T/app/$variant" --in "127.0.0.1:$IN" \
        --out "127.0.0.1:$OUT" --resilience-dir "$T/$variant-state"
    wait_log "$variant" 'ready:' 20
    printf 'alice 5\nbob 7\nalice 10\n' >"/dev/tcp/127.0.0.1/$IN"
    wait_exit recv 30 || fail "$variant: $(tail -1 "$T/recv.log")"
    printf 'alice 5\nbob 7\nalice 15\n' | diff - "$T/$variant.out" ||
        fail "$variant counted wrong: $(cat "$T/$variant.out")"
    stop "$variant" || fail "$variant did not stop cleanly"
done
pass "installed with roo.pc; the tutorial and its unit test build from an empty directory with pkg-config, shared and static"
