#!/usr/bin/env bash
# gpu_verify.sh: the correctness pass to run on a GPU machine after any CUDA edit: the device
# decoder (tests, examples, memcheck, racecheck), the fused kernels (tests, memcheck, racecheck,
# example 04) and weight streaming (tests, memcheck, racecheck, example 05 --small), the first two
# side by side with the streaming build, the streaming run after them (alone on the card); then,
# alone on the GPU, an optional short decode benchmark (VERIFY_BENCH, bench_decode --only= list).
# Prints one summary block per check; logs under $OUT/{decode,fused,stream}.
#
#   bash scripts/gpu_verify.sh
#   VERIFY_BENCH="4096x14336/tile256/lanes32,4096x14336/tile256/streams64" bash scripts/gpu_verify.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out}
mkdir -p "$out/decode" "$out/fused" "$out/stream"

GPU_CHECK_STEPS="build test examples memcheck racecheck" bash scripts/gpu_check.sh "$out/decode" > "$out/decode/summary.txt" 2>&1 &
decode=$!
OUT="$out/fused" STEPS="build test sanitize example" bash scripts/gpu_fused.sh > "$out/fused/summary.txt" 2>&1 &
fused=$!
OUT="$out/stream" STREAM_STEPS=build bash scripts/gpu_stream.sh > "$out/stream/build.txt" 2>&1 &
stream=$!
wait "$decode" "$fused" "$stream"
# The streaming tests' leak checks read the card's free memory: alone on the card.
OUT="$out/stream" STREAM_STEPS=run EX05_ARGS=--small bash scripts/gpu_stream.sh > "$out/stream/summary.txt" 2>&1

if [ -n "${VERIFY_BENCH:-}" ]; then
  GPU_CHECK_STEPS="bench" BENCH_ARGS="--quick --only=${VERIFY_BENCH}" bash scripts/gpu_check.sh "$out/decode" \
    > "$out/decode/bench_summary.txt" 2>&1
fi

for part in decode fused stream; do
  echo "==== $part"
  tail -n 25 "$out/$part/summary.txt"
done
if [ -f "$out/decode/bench_summary.txt" ]; then
  echo "==== decode bench"
  tail -n 20 "$out/decode/bench_summary.txt"
fi
