#!/usr/bin/env bash
# The test command: installs dependencies, fetches the real weights, builds everything (CUDA
# tests, benchmarks and examples are compiled when nvcc is present), runs CTest, then the host
# tests again under AddressSanitizer + UBSan, then each libFuzzer harness for a bounded time.
# GPU tests report themselves as skipped when there is no GPU.
#
#   bash scripts/test.sh            (FUZZ_SECONDS=60 bash scripts/test.sh for longer fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin"
jobs=$(nproc)
fuzz_seconds=${FUZZ_SECONDS:-20}

bash scripts/install_deps.sh
bash scripts/fetch_weights.sh || echo "test: real weights unavailable; real-data tests will say skipped"

echo "== build (Release) =="
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
echo "== ctest =="
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== host tests under ASan + UBSan =="
# Examples on: the `tilecodec` CLI is built with the sanitizers too, so tests/format/test_cli.cpp
# runs it on bad files under ASan/UBSan (only tilecodec_tests and what it depends on are built).
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTILECODEC_SANITIZE=ON -DTILECODEC_ENABLE_CUDA=OFF \
  -DTILECODEC_BUILD_BENCH=OFF -DTILECODEC_BUILD_EXAMPLES=ON >/dev/null
cmake --build build-asan -j "$jobs" --target tilecodec_tests
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-asan/tests/tilecodec_tests

if [ -d tests/fuzz ] && ls tests/fuzz/fuzz_*.cpp >/dev/null 2>&1; then
  echo "== fuzzing (${fuzz_seconds}s per harness) =="
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DTILECODEC_FUZZ=ON -DTILECODEC_BUILD_TESTS=OFF -DTILECODEC_BUILD_BENCH=OFF -DTILECODEC_BUILD_EXAMPLES=OFF \
    -DTILECODEC_ENABLE_CUDA=OFF >/dev/null
  cmake --build build-fuzz -j "$jobs"
  for f in build-fuzz/tests/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    name=$(basename "$f")
    mkdir -p "build-fuzz/corpus/$name"
    [ -d "tests/fuzz/corpus/$name" ] && cp -n tests/fuzz/corpus/"$name"/* "build-fuzz/corpus/$name/" 2>/dev/null || true
    "$f" -max_total_time="$fuzz_seconds" -print_final_stats=0 "build-fuzz/corpus/$name" 2>&1 | tail -n 2
  done
fi
echo "test: all done"
