#!/usr/bin/env bash
# gpu_check.sh: on a machine with an NVIDIA GPU, build the device decoder's tests, benchmark and
# examples, run the tests, compute-sanitizer (memcheck on the "sanitize" test suite, racecheck on
# its smallest cases), the examples and the benchmark, and print a short table last.
#
#   scripts/gpu_check.sh [out_dir]        (default out dir: $OUT, else build-gpu/out)
#
# Environment:
#   GPU_CHECK_STEPS  default "build test examples bench memcheck racecheck"; also "variants"
#                    (bench builds with other tuning macros, see VARIANTS) and "ncu" (profiles)
#   BENCH_ARGS       extra bench_decode arguments (e.g. --only=4096x14336 or --only=tile256/streams,tile128/lanes64:
#                    workloads whose name holds any of the comma-separated parts)
#   VARIANTS         "name:-DMACRO=value ..." pairs for the variants step
#   NCU_WORKLOADS    bench workloads to profile with Nsight Compute (one kernel each)
# Output (at most a few files, so a remote runner can return them all): checks.log (GPU, build,
# resources, tests, examples, sanitizers), bench.log, variants.log, ncu.txt, ncu_source.csv.gz.
# Real weights: data/minilm/model.bf16.safetensors when present (scripts/make_bf16_copy.py).
set -uo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-${OUT:-${repo}/build-gpu/out}}"
mkdir -p "${out}"
steps="${GPU_CHECK_STEPS:-build test examples bench memcheck racecheck}"
build="${repo}/build-gpu"
log="${out}/checks.log"
tmp="$(mktemp -d)"
: > "${log}"
note() { echo "$*" | tee -a "${log}"; }
has() { [[ " ${steps} " == *" $1 "* ]]; }
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }
clocks() { nvidia-smi --query-gpu=clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv,noheader 2>&1; }
t0=$(date +%s)

note "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1), $(date -u +%Y-%m-%dT%H:%MZ)"
note "clocks (sm, max sm, mem, power, temp): $(clocks)"

# Build only the device decoder's targets, straight with nvcc and the project's CUDA flags, so
# unrelated translation units (other components' tests) cannot hold this check up.
flags=(-std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -lineinfo -Xcompiler=-Wall
       -I"${repo}/include" -I"${repo}/tests" -DTILECODEC_DATA_DIR="\"${repo}/data\"")
tests="${build}/tilecodec_device_tests"
bench="${build}/bench_decode"
if has build; then
  mkdir -p "${build}"
  (
    nvcc "${flags[@]}" "${repo}/tests/cuda_test_main.cu" "${repo}/tests/device/test_device_decode.cu" -o "${tests}" > "${tmp}/b1" 2>&1 &
    nvcc "${flags[@]}" "${repo}/bench/device/decode.cu" -o "${bench}" -lbenchmark -lpthread > "${tmp}/b2" 2>&1 &
    nvcc "${flags[@]}" "${repo}/examples/02_gpu_decode_model/main.cu" -o "${build}/example_02" > "${tmp}/b3" 2>&1 &
    nvcc "${flags[@]}" "${repo}/examples/03_warp_decoder_in_kernel/main.cu" -o "${build}/example_03" > "${tmp}/b4" 2>&1 &
    if has variants; then
      for v in ${VARIANTS:-}; do
        nvcc "${flags[@]}" "${v#*:}" "${repo}/bench/device/decode.cu" -o "${build}/bench_decode_${v%%:*}" -lbenchmark \
          -lpthread > "${tmp}/bv_${v%%:*}" 2>&1 &
      done
    fi
    wait
  )
  missing=""
  for f in "${tests}" "${bench}" "${build}/example_02" "${build}/example_03"; do [[ -x "${f}" ]] || missing+=" $(basename "${f}")"; done
  note "build: ${missing:+FAILED:${missing}}${missing:-ok} ($(elapsed))"
  cat "${tmp}"/b* | grep -E "error|warning" | grep -v "host/decoder.hpp" | head -20 | tee -a "${log}"
  [[ -z "${missing}" ]] || exit 1
  cuobjdump --dump-resource-usage "${bench}" 2>&1 | grep -A1 -E "decode_kernel|decode_setup_kernel" | grep -v "^--" >> "${log}"
fi

if has test; then
  timeout 150 "${tests}" -tc="device*" > "${tmp}/tests" 2>&1
  rc=$?
  note "tests: rc=${rc} $(grep -E "test cases:" "${tmp}/tests" | tail -1) ($(elapsed))"
  grep -E "seed|ERROR|FAILED|tensors|corruptions|SKIP" "${tmp}/tests" | head -20 | tee -a "${log}"
  echo "---- tests (first 150 lines) ----" >> "${log}"
  head -150 "${tmp}/tests" >> "${log}"
fi

if has examples; then
  for ex in "example_02" "example_02 --int8" "example_03"; do
    timeout 120 "${build}/${ex%% *}" ${ex#example_0?} > "${tmp}/ex" 2>&1
    note "${ex}: rc=$? $(tail -1 "${tmp}/ex")"
  done
fi

if has bench; then
  nvidia-smi --query-gpu=clocks.sm,power.draw --format=csv,noheader,nounits -lms 250 > "${tmp}/clk" 2>&1 &
  sampler=$!
  timeout 420 "${bench}" --benchmark_min_time=0.05s ${BENCH_ARGS:-} > "${out}/bench.log" 2>&1
  rc=$?
  kill "${sampler}" 2> /dev/null
  note "bench: rc=${rc} ($(elapsed)); SM clock while busy (MHz, samples above 1 GHz: min/median/max): $(cut -d, -f1 "${tmp}/clk" | awk '$1 > 1000' | sort -n | awk '{a[NR]=$1} END {print a[1] "/" a[int((NR+1)/2)] "/" a[NR]}'), peak power (W): $(cut -d, -f2 "${tmp}/clk" | sort -n | tail -1)"
fi

if has variants; then
  : > "${out}/variants.log"
  for v in base ${VARIANTS:-}; do
    name="${v%%:*}"
    bin="${bench}"
    [[ "${name}" == base ]] || bin="${build}/bench_decode_${name}"
    echo "==== variant ${name} (${v#*:})" >> "${out}/variants.log"
    timeout 120 "${bin}" --benchmark_min_time=0.05s ${VARIANT_BENCH_ARGS:-} 2>&1 | sed -n '/^workload/,$p' >> "${out}/variants.log"
  done
  note "variants: done ($(elapsed))"
fi

if has memcheck; then
  timeout 150 compute-sanitizer --tool memcheck --leak-check full --error-exitcode 99 "${tests}" -ts=sanitize \
    > "${tmp}/memcheck" 2>&1
  note "memcheck: rc=$? $(grep -E "ERROR SUMMARY" "${tmp}/memcheck" | tail -1) $(grep -E "test cases:" "${tmp}/memcheck" | tail -1) ($(elapsed))"
  grep -B2 -A12 -m3 "=========" "${tmp}/memcheck" | head -60 >> "${log}"
fi
if has memcheck; then
  timeout 150 compute-sanitizer --tool memcheck --error-exitcode 99 "${tests}" -tc="*every policy combination*" \
    > "${tmp}/memcheck2" 2>&1
  note "memcheck (all policy combinations): rc=$? $(grep -E "ERROR SUMMARY" "${tmp}/memcheck2" | tail -1) $(grep -E "test cases:" "${tmp}/memcheck2" | tail -1) ($(elapsed))"
  grep -B2 -A12 -m3 "=========" "${tmp}/memcheck2" | head -40 >> "${log}"
fi
if has racecheck; then
  timeout 150 compute-sanitizer --tool racecheck --racecheck-report all --error-exitcode 99 "${tests}" \
    -ts=sanitize > "${tmp}/racecheck" 2>&1
  note "racecheck: rc=$? $(grep -E "RACECHECK SUMMARY|ERROR SUMMARY" "${tmp}/racecheck" | tail -1) $(grep -E "test cases:" "${tmp}/racecheck" | tail -1) ($(elapsed))"
  grep -B2 -A12 -m3 "=========" "${tmp}/racecheck" | head -60 >> "${log}"
fi

if has ncu; then
  : > "${out}/ncu.txt"
  : > "${tmp}/source.csv"
  for w in ${NCU_WORKLOADS:-int8/4096x14336/tile256/lanes32}; do
    rep="${tmp}/prof_$(echo "${w}" | tr '/' '_')"
    timeout 180 ncu -k regex:decode_kernel -c 1 --section SpeedOfLight --section Occupancy --section LaunchStats \
      --section SchedulerStats --section WarpStateStats --section InstructionStats --section SourceCounters \
      --section MemoryWorkloadAnalysis -o "${rep}" "${bench}" --only="${w}" --benchmark_min_time=1x > "${tmp}/ncu_run" 2>&1
    echo "==== ${w}" >> "${out}/ncu.txt"
    tail -3 "${tmp}/ncu_run" >> "${out}/ncu.txt"
    ncu --import "${rep}.ncu-rep" --print-details all >> "${out}/ncu.txt" 2>&1
    echo "==== ${w}" >> "${tmp}/source.csv"
    ncu --import "${rep}.ncu-rep" --page source --csv --print-source sass >> "${tmp}/source.csv" 2>&1
  done
  gzip -c "${tmp}/source.csv" > "${out}/ncu_source.csv.gz"
  note "ncu: done ($(elapsed))"
fi

echo
grep -E "^(gpu|build|tests|example|bench|variants|ncu|memcheck|racecheck|clocks)" "${log}"
if [[ -f "${out}/bench.log" ]]; then
  echo
  sed -n '/^workload/,$p' "${out}/bench.log"
fi
rm -rf "${tmp}"
echo "done in $(elapsed); logs in ${out}"
