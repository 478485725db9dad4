#!/usr/bin/env bash
# GPU check of mode 2 (weight streaming) and the mode-1 loader: builds the streaming tests and
# example 05 with nvcc directly (no CMake, so it does not depend on other CUDA targets), runs
# the tests, compute-sanitizer memcheck and racecheck on them, then the Llama-shaped example.
# Logs under $OUT (device tool) or ./out. STREAM_STEPS (default "build run"): "build" alone builds,
# "run" alone runs what an earlier build left in /tmp. The tests' leak checks read the card's free
# memory, so the run wants the card to itself (scripts/gpu_verify.sh builds beside its other
# checks and runs after them).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out"
flags="-std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -lineinfo -Iinclude -Itests"
steps=${STREAM_STEPS:-build run}
has() { [[ " $steps " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
if has build; then
  nvcc $flags tests/cuda_test_main.cu tests/stream/test_streamer.cu -o /tmp/stream_tests -lcublas > "$out/build_tests.log" 2>&1 &
  nvcc $flags -DTILECODEC_DATA_DIR=\"data\" examples/05_streaming_llama/main.cu -o /tmp/example_05 -lcublas > "$out/build_ex05.log" 2>&1 &
  wait
fi
tail -n 3 "$out/build_tests.log" "$out/build_ex05.log" 2>/dev/null
has run || exit 0
echo "== streaming tests =="
/tmp/stream_tests 2>&1 | tee "$out/stream_tests.log" | tail -4
echo "== memcheck =="
compute-sanitizer --tool memcheck --leak-check full /tmp/stream_tests -tce="*leak*" 2>&1 | tee "$out/memcheck.log" | tail -3
echo "== racecheck =="
compute-sanitizer --tool racecheck /tmp/stream_tests -tc="*equal the host*,*mode 1*" 2>&1 | tee "$out/racecheck.log" | tail -3
echo "== example 05 ${EX05_ARGS:-} =="
/tmp/example_05 ${EX05_ARGS:-} 2>&1 | tee "$out/example_05.log" | tail -16
