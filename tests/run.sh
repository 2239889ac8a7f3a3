#!/usr/bin/env bash
# Installs what is missing, builds, and runs wsx: the one entry point for people and CI.
#
#   tests/run.sh demo    install, build (Release), start a local echo server and talk to it
#   tests/run.sh demo-run  the demo alone, with the binary already built (or the one in $WSX)
#   tests/run.sh test    install, build (Release), run every test (unit + end to end) with CTest
#   tests/run.sh asan    the same test run on an AddressSanitizer + UBSan build (build-asan/)
#   tests/run.sh fuzz [SECONDS]  every libFuzzer target (tests/fuzz) for SECONDS each (default 30; clang, build-fuzz/)
#   tests/run.sh package build the Debian package (build-pkg/wsx_VERSION_ARCH.deb) and check it, without installing it
#   tests/run.sh ci      test, package, fuzz (20 s a target), then asan: all must pass
#   tests/run.sh deps    only install dependencies
#
# Idempotent: packages already present are not reinstalled, and builds are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# Compiler cache keys independent of where the tree is checked out: a fresh clone (CI) reuses
# what an earlier build of the same sources compiled.
export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=1
JOBS=${JOBS:-$(nproc)}

APT_PACKAGES=(
  g++ cmake ninja-build pkg-config ccache
  libboost1.81-dev libssl-dev openssl libcli11-dev libfmt-dev nlohmann-json3-dev libreadline-dev
  catch2 libhiredis-dev libcpp-jwt-dev
  python3 python3-websockets redis-server procps
  zsh fish groff-base man-db chromium dpkg-dev file
  clang libclang-rt-14-dev zlib1g-dev
)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

deps() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == *"install ok installed"* ]] || missing+=("$p")
  done
  command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  # Independent peers for interop tests and benchmarks (npm `ws`), pinned by the lock file.
  if [ ! -d tests/node_modules/ws ] || [ tests/package-lock.json -nt tests/node_modules/.package-lock.json ]; then
    (cd tests && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}

build() {  # build DIR TYPE [extra cmake args]
  local dir=$1 type=$2; shift 2
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  ninja -C "$dir" -j"$JOBS"
}

run_tests() {  # run_tests DIR
  local log
  log=$(mktemp)
  local status
  set +e
  (cd "$1" && ctest --output-on-failure -j"$JOBS" --timeout 600) 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  set -e
  # A skipped test (a missing peer, shell or browser) shows in CTest's summary; where every
  # dependency is installed (CI, REQUIRE_ALL_TESTS=1) it fails the run like a failed test.
  if grep -q "tests did not run" "$log" && [ "${REQUIRE_ALL_TESTS:-0}" = 1 ]; then
    echo "error: tests were skipped; every test must run here (see 'skipped:' lines above)" >&2
    status=1
  fi
  rm -f "$log"
  return "$status"
}

demo() {
  local wsx=${WSX:-build/wsx} log port
  log=$(mktemp)
  "$wsx" serve 127.0.0.1:0 2>"$log" &
  local server=$!
  # Expanded now: the trap runs after this function's locals are gone (and set -u is on).
  trap "kill $server 2>/dev/null; rm -f '$log'" EXIT
  for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.05; done
  port=$(grep -o 'listening on ws://127.0.0.1:[0-9]*' "$log" | grep -o '[0-9]*$')
  [ -n "$port" ] || { cat "$log"; echo "server did not start" >&2; exit 1; }
  echo "== wsx serve: echo server on ws://127.0.0.1:$port/"
  echo "== pipe: three lines in, three echoes out"
  printf 'hello\n{"op":"ping","n":1}\nbye\n' | "$wsx" connect "ws://127.0.0.1:$port/"
  echo "== scripted check: --send, --expect-json, --stats"
  "$wsx" connect "ws://127.0.0.1:$port/" --send '{"op":"hello","n":7}' --expect-json op=hello -n 1 --stats
  if "$wsx" bench --help >/dev/null 2>&1; then
    echo "== wsx bench: 4 connections, 2 seconds"
    "$wsx" bench "ws://127.0.0.1:$port/" -c 4 -d 2s
  fi
  echo "== try it yourself: $wsx connect ws://127.0.0.1:$port/  (the server stops when this script ends)"
}

# The Debian package: built in its own directory with the system's OpenSSL, readline, hiredis and
# libstdc++ (dynamic, so that their security updates reach wsx; dpkg-shlibdeps names them in
# Depends), then checked from the outside: its file list and control fields, and the unpacked
# binary, man page and bash completion used where they landed. Nothing is installed on the system.
package() {
  local dir=build-pkg version arch deb root problems=0
  build "$dir" Release -DWSX_STATIC_DEPS=OFF -DWSX_TESTS=OFF -DWSX_DEBIAN_CHANGELOG=ON
  rm -f "$dir"/wsx_*.deb
  (cd "$dir" && cpack -G DEB >/dev/null)
  version=$(sed -n 's/^project(wsx VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
  arch=$(dpkg --print-architecture)
  deb=$dir/wsx_${version}_${arch}.deb
  [ -f "$deb" ] || { echo "package: $deb was not built (found: $(ls "$dir"/*.deb 2>/dev/null))" >&2; return 1; }
  fail() { echo "package: FAILED: $*" >&2; problems=$((problems + 1)); }

  local files
  files=$(dpkg-deb -c "$deb" | awk '{print $NF}')
  for f in usr/bin/wsx usr/share/man/man1/wsx.1.gz usr/share/bash-completion/completions/wsx \
           usr/share/zsh/vendor-completions/_wsx usr/share/fish/vendor_completions.d/wsx.fish \
           usr/share/doc/wsx/README.md usr/share/doc/wsx/changelog.Debian.gz; do
    grep -qx "\./$f" <<<"$files" || fail "$deb does not hold /$f"
  done

  local field depends
  for field in "Package: wsx" "Version: $version" "Architecture: $arch" "Section: net"; do
    grep -qx "${field#*: }" <<<"$(dpkg-deb -f "$deb" "${field%%: *}")" || fail "control field ${field%%: *} is not '${field#*: }'"
  done
  grep -q . <<<"$(dpkg-deb -f "$deb" Maintainer)" || fail "no Maintainer field"
  depends=$(dpkg-deb -f "$deb" Depends)
  for lib in libc6 libssl3 libreadline8 libhiredis libstdc++6; do
    grep -q "\b$lib" <<<"$depends" || fail "Depends does not name $lib: $depends"
  done

  root=$(mktemp -d "${TMPDIR:-/tmp}/wsx-pkg.XXXXXX")
  dpkg -x "$deb" "$root"
  local out
  out=$("$root/usr/bin/wsx" --version) || fail "the unpacked wsx --version failed"
  [[ $out =~ ^wsx\ $version\ \(.*Release\)$ ]] || fail "--version said '$out'"
  grep -q 'libssl\.so\.3' <<<"$(ldd "$root/usr/bin/wsx")" || fail "the packaged wsx does not use the system's libssl.so.3"
  out=$(MANWIDTH=80 man --warnings -l "$root/usr/share/man/man1/wsx.1.gz" 2>&1 >/dev/null) || fail "man -l failed"
  [ -z "$out" ] || fail "man -l warned: $out"
  grep -q "wsx $version (" <<<"$(MANWIDTH=80 man -l "$root/usr/share/man/man1/wsx.1.gz" 2>/dev/null)" ||
    fail "the man page does not name wsx $version and its build"
  out=$(bash --norc --noprofile -c 'source "$1" && complete -p wsx' bash "$root/usr/share/bash-completion/completions/wsx" 2>&1) ||
    fail "the bash completion did not load: $out"
  [ "$out" = "complete -F _wsx wsx" ] || fail "complete -p wsx said '$out'"
  grep -q "^wsx ($version) " <<<"$(zcat "$root/usr/share/doc/wsx/changelog.Debian.gz" | sed -n 1p)" ||
    fail "changelog.Debian.gz has no entry for $version"
  rm -rf "$root"
  if [ "$problems" != 0 ]; then return 1; fi
  echo "package: $deb ok ($(du -k "$deb" | cut -f1) KiB; Depends: $depends)"
}

# Runs every libFuzzer target of tests/fuzz for SECONDS from a scratch copy of its seed corpus
# (the tree is never written to), with the options its source asks for ("// fuzz-options:").
# Any crash, leak, timeout, out-of-memory or sanitizer report fails the run: the target and the
# input that did it are named, and the scratch directory is kept.
fuzz() {  # fuzz [SECONDS]
  local seconds=${1:-30} work passed=0 failed=0
  build build-fuzz RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ -DWSX_FUZZ=ON -DWSX_TESTS=OFF
  work=$(mktemp -d "${TMPDIR:-/tmp}/wsx-fuzz.XXXXXX")
  for exe in build-fuzz/tests/fuzz/*_fuzz; do
    local name=${exe##*/}; name=${name%_fuzz}
    local dir=$work/$name opts dict=() rc=0
    opts=$(sed -n 's|^// fuzz-options:||;T;p;q' "tests/fuzz/${name}_fuzz.cpp")
    [[ $opts == *-max_len=* ]] || opts+=" -max_len=4096"
    [[ $opts == *-timeout=* ]] || opts+=" -timeout=10"
    [[ $opts == *-rss_limit_mb=* ]] || opts+=" -rss_limit_mb=2048"
    [ -f "tests/fuzz/$name.dict" ] && dict=(-dict="tests/fuzz/$name.dict")
    mkdir -p "$dir/corpus" "$dir/artifacts"
    [ -d "tests/fuzz/corpus/$name" ] && cp -R "tests/fuzz/corpus/$name/." "$dir/corpus/"
    # shellcheck disable=SC2086  # $opts is a list of options
    timeout -k 10 $((seconds + 300)) "$exe" $opts "${dict[@]}" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="$dir/artifacts/" "$dir/corpus" >"$dir/log" 2>&1 || rc=$?
    local runs cov
    # A target that fails at once may print no coverage line: that must not end the script here.
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -n 1)
    cov=$({ grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' "$dir/log" || true; } | tail -n 1 | sed 's/corp:/corpus/')
    if [ "$rc" = 0 ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|runtime error:' "$dir/log"; then
      passed=$((passed + 1))
      echo "fuzz: $name: ok, ${runs:-?} runs in ${seconds}s, ${cov:-no coverage reported}"
    else
      failed=$((failed + 1))
      local repro
      repro=$(find "$dir/artifacts" -type f -print -quit)
      echo "fuzz: $name: FAILED (exit $rc), ${runs:-?} runs, ${cov:-no coverage reported}"
      # What went wrong (the target's own words, the sanitizer's), then where: our frames only.
      { grep -aE "^${name}_fuzz: |runtime error:|ERROR: |SUMMARY: " "$dir/log" | head -n 5
        grep -aE '#[0-9]+ 0x.* in .*/(src|tests/fuzz)/' "$dir/log" | grep -v fuzz_support | head -n 6; } | sed 's/^/  /' >&2 || true
      echo "  reproducer: ${repro:-none written (see $dir/log)}; replay: $exe ${repro:-}" >&2
    fi
  done
  echo "fuzz: $passed passed, $failed failed"
  if [ "$failed" != 0 ]; then echo "fuzz: logs and inputs kept in $work" >&2; return 1; fi
  rm -rf "$work"
}

case "${1:-test}" in
  deps) deps ;;
  demo) deps; build build Release; demo ;;
  demo-run) demo ;;
  test) deps; build build Release; run_tests build ;;
  # -O1 -g1: line numbers in sanitizer reports, at a fraction of -O2 -g's compile time and memory.
  asan) deps; build build-asan RelWithDebInfo -DWSX_SANITIZE=ON -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1"; ASAN_OPTIONS=detect_leaks=1 run_tests build-asan ;;
  fuzz) deps; fuzz "${2:-30}" ;;
  package) deps; package ;;
  ci) export REQUIRE_ALL_TESTS=1
      deps; build build Release; run_tests build
      # The Debian package, checked unpacked (cheap: it compiles what the build above compiled).
      echo "== package"
      package
      # Every fuzz target for a short while (about 3 minutes in all): hostile bytes must not crash a parser.
      echo "== fuzz"
      fuzz "${FUZZ_SECONDS:-20}"
      # The whole suite again on an ASan+UBSan build: a memory error anywhere fails CI.
      echo "== ASan+UBSan suite"
      ASAN_OPTIONS=detect_leaks=1 timeout "${ASAN_BUDGET:-3600}" "$0" asan ;;
  *) echo "usage: tests/run.sh demo|demo-run|test|asan|fuzz [SECONDS]|package|ci|deps" >&2; exit 2 ;;
esac
