#!/usr/bin/env bash
# Builds and checks the fused decode-GEMV/GEMM (include/tilecodec/fused/) on a machine with a GPU,
# then measures it against cuBLAS. Logs go to $OUT (or out/ when unset); a short table is printed
# last.
#
#   bash scripts/gpu_fused.sh                      # everything
#   STEPS="build test sanitize example bench ncu" BENCH_FILTER='/b1/' bash scripts/gpu_fused.sh
#   BASE_INCLUDE=/path/to/old/include BASE_FILTER='^fused_int8_fixed/.*/b1/' bash scripts/gpu_fused.sh
#   VARIANTS='deep|-DTILECODEC_FUSED_STREAM_EXTRA_DEPTH=1|^fused_int8;split4|-DTILECODEC_FUSED_BLOCKS_PER_SM=4|/b16/' \
#     bash scripts/gpu_fused.sh          # more bench_gemv builds of include/ with tuning macros, one filter each
#
# Steps: build (CMake targets bench_gemv and example_04_fused_mlp, and the fused tests compiled
# on their own so that other CUDA test files cannot hold them up; with BASE_INCLUDE also a second
# bench_gemv from that include tree, the "before" of a change), test (all fused tests), sanitize
# (compute-sanitizer memcheck and racecheck on the [quick] tests; tests and sanitizers run side by
# side), example, bench (Google Benchmark, medians of 5 repetitions; BASE_FILTER on the base
# binary in the same run), ncu (instructions and DRAM bytes per weight of one call per variant at
# 4096x14336, batch 1), stalls (ncu warp-state breakdown of the int8 kernel). PACK_LOGS=1 packs
# the logs into $OUT/logs.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out}
mkdir -p "$OUT"
STEPS=${STEPS:-"build test sanitize example bench ncu stalls"}
BENCH_FILTER=${BENCH_FILTER:-.}
BASE_INCLUDE=${BASE_INCLUDE:-}
VARIANT_FLAGS=${VARIANT_FLAGS:-}  # extra nvcc flags (tuning macros): a third bench_gemv from include/, run with BASE_FILTER
VARIANTS=${VARIANTS:-}            # 'name|nvcc flags|benchmark filter;...': one bench_gemv each, results in bench_v_<name>.json
BASE_FILTER=${BASE_FILTER:-'^(fused_int8_fixed|fused_int4_fixed|fused_bf16_lossless_fixed)/.*/b1/'}
NCU_VARIANTS=${NCU_VARIANTS:-"cublas_f16 cublas_bf16 fused_int8_fixed fused_int4_fixed fused_bf16_lossless_fixed fused_int8_rans fused_bf16_lossless_rans"}
REPS=${REPS:-5}
BUILD=build-fused
JOBS=$(nproc)
export PATH="$PATH:/usr/local/cuda/bin"
has() { [[ " $STEPS " == *" $1 "* ]]; }
log() { echo "== $* ($(date +%H:%M:%S))"; }

{
  log "machine"
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv || true
  nvcc --version | tail -1
} 2>&1 | tee "$OUT/machine.txt"

if has build; then
  log "build"
  (
    nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -lineinfo --expt-relaxed-constexpr -Iinclude -Itests \
      -DTILECODEC_DATA_DIR="\"$PWD/data\"" tests/cuda_test_main.cu tests/fused/test_fused.cu -o "$BUILD-test_fused" \
      -lcublas > "$OUT/build_tests.log" 2>&1
    echo "test build rc=$?" >> "$OUT/build_tests.log"
  ) &
  test_build=$!
  base_build=
  if [ -n "$BASE_INCLUDE" ]; then
    nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -lineinfo --expt-relaxed-constexpr -I"$BASE_INCLUDE" -Itests \
      -Ibench bench/fused/gemv.cu -o "$BUILD-bench_base" -lbenchmark -lcublas -lpthread > "$OUT/build_base.log" 2>&1 &
    base_build=$!
  fi
  variant_build=
  if [ -n "$VARIANT_FLAGS" ]; then
    nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -lineinfo --expt-relaxed-constexpr $VARIANT_FLAGS -Iinclude -Itests \
      -Ibench bench/fused/gemv.cu -o "$BUILD-bench_variant" -lbenchmark -lcublas -lpthread > "$OUT/build_variant.log" 2>&1 &
    variant_build=$!
  fi
  vpids=()
  if [ -n "$VARIANTS" ]; then
    IFS=';' read -ra vlist <<< "$VARIANTS"
    for spec in "${vlist[@]}"; do
      IFS='|' read -r vname vflags vfilter <<< "$spec"
      nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -lineinfo --expt-relaxed-constexpr $vflags -Iinclude -Itests \
        -Ibench bench/fused/gemv.cu -o "$BUILD-bench_v_$vname" -lbenchmark -lcublas -lpthread > "$OUT/build_v_$vname.log" 2>&1 &
      vpids+=($!)
    done
  fi
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTILECODEC_BUILD_TESTS=OFF > "$OUT/build.log" 2>&1 &&
    cmake --build "$BUILD" -j "$JOBS" --target bench_gemv example_04_fused_mlp >> "$OUT/build.log" 2>&1
  echo "cmake build rc=$?" | tee -a "$OUT/build.log"
  wait "$test_build"
  [ -n "$base_build" ] && { wait "$base_build"; echo "base bench build rc=$?"; }
  [ -n "$variant_build" ] && { wait "$variant_build"; echo "variant bench build rc=$?"; }
  for p in "${vpids[@]}"; do wait "$p"; echo "variant build rc=$?"; done
  tail -1 "$OUT/build_tests.log"
  grep -E "error|warning" "$OUT/build.log" "$OUT/build_tests.log" | head -20
  cuobjdump --dump-resource-usage "$BUILD/bench/bench_gemv" 2>/dev/null | grep -A1 "gemm_kernel" |
    grep -oE "REG:[0-9]+ STACK:[0-9]+ SHARED:[0-9]+ LOCAL:[0-9]+" | sort | uniq -c > "$OUT/resources.txt" || true
fi

TEST_BIN="./$BUILD-test_fused"
pids=()
if has test && [ -x "$TEST_BIN" ]; then
  log "tests"
  ( timeout 200 "$TEST_BIN" --duration=true > "$OUT/tests.log" 2>&1; echo "tests rc=$?" >> "$OUT/tests.log" ) &
  pids+=($!)
fi
if has sanitize && [ -x "$TEST_BIN" ]; then
  for tool in memcheck racecheck; do
    log "compute-sanitizer $tool"
    ( timeout 240 compute-sanitizer --tool "$tool" --error-exitcode 3 "$TEST_BIN" -tc="*quick*" \
      > "$OUT/sanitize_$tool.log" 2>&1; echo "$tool rc=$?" >> "$OUT/sanitize_$tool.log" ) &
    pids+=($!)
  done
fi
for p in "${pids[@]}"; do wait "$p"; done
if [ -f "$OUT/tests.log" ]; then
  tail -1 "$OUT/tests.log"
  grep -E "test cases:|assertions:|ERROR|FAILED" -A2 "$OUT/tests.log" | grep -v "^--$" | head -40
fi
for tool in memcheck racecheck; do
  [ -f "$OUT/sanitize_$tool.log" ] || continue
  tail -1 "$OUT/sanitize_$tool.log"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test cases:" "$OUT/sanitize_$tool.log" | head -5
done

if has example && [ -x "$BUILD/examples/example_04_fused_mlp" ]; then
  log "example 04"
  timeout 120 "$BUILD/examples/example_04_fused_mlp" 2>&1 | tee "$OUT/example.log"
fi

if has bench && [ -x "$BUILD/bench/bench_gemv" ]; then
  log "bench"
  timeout 420 "$BUILD/bench/bench_gemv" --benchmark_filter="$BENCH_FILTER" \
    --benchmark_repetitions=$REPS --benchmark_report_aggregates_only=true --benchmark_out="$OUT/bench.json" \
    --benchmark_out_format=json > "$OUT/bench.log" 2>&1
  echo "bench rc=$?" | tee -a "$OUT/bench.log"
  if [ -x "$BUILD-bench_base" ]; then
    timeout 300 "./$BUILD-bench_base" --benchmark_filter="$BASE_FILTER" \
      --benchmark_repetitions=$REPS --benchmark_report_aggregates_only=true --benchmark_out="$OUT/bench_base.json" \
      --benchmark_out_format=json > "$OUT/bench_base.log" 2>&1
    echo "base bench rc=$?" | tee -a "$OUT/bench_base.log"
  fi
  if [ -x "$BUILD-bench_variant" ]; then
    timeout 300 "./$BUILD-bench_variant" --benchmark_filter="$BASE_FILTER" \
      --benchmark_repetitions=$REPS --benchmark_report_aggregates_only=true --benchmark_out="$OUT/bench_variant.json" \
      --benchmark_out_format=json > "$OUT/bench_variant.log" 2>&1
    echo "variant bench rc=$?" | tee -a "$OUT/bench_variant.log"
  fi
  if [ -n "$VARIANTS" ]; then
    IFS=';' read -ra vlist <<< "$VARIANTS"
    for spec in "${vlist[@]}"; do
      IFS='|' read -r vname vflags vfilter <<< "$spec"
      [ -x "$BUILD-bench_v_$vname" ] || { echo "variant $vname: no binary"; continue; }
      timeout 300 "./$BUILD-bench_v_$vname" --benchmark_filter="$vfilter" \
        --benchmark_repetitions=$REPS --benchmark_report_aggregates_only=true --benchmark_out="$OUT/bench_v_$vname.json" \
        --benchmark_out_format=json > "$OUT/bench_v_$vname.log" 2>&1
      echo "variant $vname bench rc=$?" | tee -a "$OUT/bench_v_$vname.log"
    done
  fi
fi

if has ncu && [ -x "$BUILD/bench/bench_gemv" ]; then
  log "ncu"
  : > "$OUT/ncu.csv"
  for v in $NCU_VARIANTS; do
    kernels='regex:gemm_kernel'
    [[ $v == cublas* ]] && kernels='regex:gemv|gemm|Gemv|Gemm'
    timeout 120 ncu --clock-control none --csv --launch-count 1 -k "$kernels" \
      --metrics smsp__inst_executed.sum,smsp__thread_inst_executed.sum,dram__bytes_read.sum,gpu__time_duration.sum \
      "$BUILD/bench/bench_gemv" --benchmark_filter="^$v/4096x14336/b1/" --benchmark_min_time=0.001 \
      2> /dev/null | grep -E '^"' | sed "s/^/$v,/" >> "$OUT/ncu.csv"
  done
fi

if has stalls && [ -x "$BUILD/bench/bench_gemv" ]; then
  log "ncu stall breakdown (fused_int8_fixed, 4096x14336, batch 1)"
  timeout 120 ncu --clock-control none --launch-count 1 -k 'regex:gemm_kernel' \
    --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis --section Occupancy \
    "$BUILD/bench/bench_gemv" --benchmark_filter='^fused_int8_fixed/4096x14336/b1/' > "$OUT/ncu_stalls.txt" 2>&1
  grep -E "Stall|Warp Cycles|Issued|Eligible|Active Warps|Achieved Occupancy|Memory Throughput|DRAM Throughput|L2 Hit|Mem Busy" \
    "$OUT/ncu_stalls.txt" | head -40
fi

log "summary"
python3 - "$OUT" <<'EOF'
import csv, json, os, sys
out = sys.argv[1]
path = os.path.join(out, "bench.json")
if os.path.exists(path):
    data = json.load(open(path))
    print("context:", data["context"].get("device"), data["context"].get("date"))
    med = {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        name = b["run_name"]
        v, shape, batch = name.split("/")[:3]
        med[(v, shape, batch)] = (b["real_time"], b.get("bits_per_weight", 0), b.get("bytes_per_second", 0))
    shapes = []
    for (v, s, bt) in med:
        if (s, bt) not in shapes:
            shapes.append((s, bt))
    cols = ["cublas_f16", "fused_int8_fixed", "fused_int4_fixed", "fused_int8_rans", "decode_then_cublas_int8",
            "cublas_bf16", "fused_bf16_lossless_fixed", "fused_bf16_lossless_rans", "decode_then_cublas_bf16_lossless"]
    short = ["cuBLAS16", "i8fix", "i4fix", "i8rans", "dec+cub8", "cuBLASbf", "bf16fix", "bf16rans", "dec+cubbf"]
    print("times in us (x = speedup vs cuBLAS of the same activation type); weight GB/s in []")
    print("%-12s %-4s " % ("NxK", "b") + " ".join("%-15s" % c for c in short))
    for (s, bt) in shapes:
        row = []
        for c in cols:
            if (c, s, bt) not in med:
                row.append("%-15s" % "-")
                continue
            t, bits, bps = med[(c, s, bt)]
            base = "cublas_bf16" if ("bf16" in c) else "cublas_f16"
            if c.startswith("cublas"):
                row.append("%-15s" % ("%.1f[%.0f]" % (t, bps / 1e9)))
            else:
                bt_ = med.get((base, s, bt))
                sp = bt_[0] / t if bt_ else 0
                row.append("%-15s" % ("%.1f x%.2f" % (t, sp)))
        print("%-12s %-4s " % (s, bt) + " ".join(row))
    bits = {}
    for (v, s, bt), (t, b, _) in med.items():
        bits.setdefault(v, b)
    print("bits/weight read:", ", ".join("%s %.2f" % (k, v) for k, v in bits.items()))
    def load(name):
        p = os.path.join(out, name)
        r = {}
        if os.path.exists(p):
            for b in json.load(open(p))["benchmarks"]:
                if b.get("aggregate_name") == "median":
                    r[tuple(b["run_name"].split("/")[:3])] = b["real_time"]
        return r
    before, variant = load("bench_base.json"), load("bench_variant.json")
    if before:
        print("before (BASE_INCLUDE build) -> after [VARIANT_FLAGS build], same run: us (x vs cuBLAS of the same activation type)")
        for key, t0 in before.items():
            v, s_, bt = key
            base = med.get(("cublas_bf16" if "bf16" in v else "cublas_f16", s_, bt))
            new = med.get(key)
            if base and new:
                extra = " [%7.1f (x%.2f)]" % (variant[key], base[0] / variant[key]) if key in variant else ""
                print("  %-27s %-11s %-4s %7.1f (x%.2f) -> %7.1f (x%.2f)%s" % (v, s_, bt, t0, base[0] / t0, new[0], base[0] / new[0], extra))
import glob
try:
  for path in sorted(glob.glob(os.path.join(out, "bench_v_*.json"))):
      name = os.path.basename(path)[len("bench_v_"):-len(".json")]
      vres = load(os.path.basename(path))
      print("variant %s (VARIANTS build), same run: main -> variant, us (x vs cuBLAS of the same activation type)" % name)
      for key, t1 in vres.items():
          v, s_, bt = key
          base = med.get(("cublas_bf16" if "bf16" in v else "cublas_f16", s_, bt))
          new = med.get(key)
          b0 = before.get(key)
          if base and new:
              pre = " (base %7.1f x%.2f)" % (b0, base[0] / b0) if b0 else ""
              print("  %-27s %-11s %-4s %7.1f (x%.2f) -> %7.1f (x%.2f)%s" % (v, s_, bt, new[0], base[0] / new[0], t1, base[0] / t1, pre))
except NameError:
    pass
ncu = os.path.join(out, "ncu.csv")
if os.path.exists(ncu) and os.path.getsize(ncu) > 0:
    print("ncu (4096x14336, batch 1, one call): variant, metric, value")
    weights = 4096 * 14336
    for row in csv.reader(open(ncu)):
        if len(row) < 3 or row[-3] in ("Metric Name",):
            continue
        v, metric, unit, value = row[0], row[-3], row[-2], row[-1]
        try:
            val = float(value.replace(",", ""))
        except ValueError:
            continue
        extra = ""
        if metric == "smsp__thread_inst_executed.sum":
            extra = " -> %.2f thread instructions per weight" % (val / weights)
        if metric == "smsp__inst_executed.sum":
            extra = " -> %.3f warp instructions per weight" % (val / weights)
        if metric == "dram__bytes_read.sum":
            scale = {"byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}.get(unit, 1)
            extra = " -> %.2f bits per weight from DRAM" % (val * scale * 8 / weights)
        print("  %-28s %-34s %s %s%s" % (v, metric, value, unit, extra))
EOF

# PACK_LOGS=1: everything but the JSON results goes into one archive (for transports that return
# only a few files).
if [ "${PACK_LOGS:-0}" = 1 ]; then
  ( cd "$OUT" && tar czf logs.tar.gz --exclude=logs.tar.gz --exclude='*.json' * 2>/dev/null && \
    find . -maxdepth 1 -type f ! -name logs.tar.gz ! -name '*.json' -delete ) || true
fi
