#!/usr/bin/env bash
# `make bench`: CPU kernel benchmarks (Google Benchmark) and the whole-model benchmark
# (synthetic 110M and 1B models written on the fly into a temporary directory and deleted
# afterwards; decode/prompt/batched tokens/s, roofline, peak RSS). Results go to stdout and to
# $BUILD_DIR/bench-results/. About 10-15 minutes on 2 cores; --quick takes about 2.
#
#   scripts/bench.sh [--quick] [--kernels-only | --model-only] [-- extra model_bench flags]
#   BUILD_DIR=build-perf scripts/bench.sh --quick
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
quick=0
run_kernels=1
run_model=1
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --kernels-only) run_model=0 ;;
    --model-only) run_kernels=0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown flag $1 (see the top of $0)" >&2; exit 2 ;;
  esac
  shift
done
for b in kernels_bench model_bench; do
  if [[ ! -x "$BUILD_DIR/bin/$b" ]]; then
    echo "$BUILD_DIR/bin/$b is missing: build it first (make build, or ninja -C $BUILD_DIR $b)" >&2
    exit 1
  fi
done
out="$BUILD_DIR/bench-results"
mkdir -p "$out"
echo "== machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== free disk in ${TMPDIR:-/tmp}: $(df -h --output=avail "${TMPDIR:-/tmp}" | tail -1 | tr -d ' ')"

if [[ $run_kernels == 1 ]]; then
  filter='.'
  if [[ $quick == 1 ]]; then
    filter='MatMul/type:8/rows:5632/K:2048/M:(1|16)/|MatMul/type:2/rows:5632/K:2048/M:1/|Pool|Quantize'
  fi
  echo "== kernel benchmarks (isa: ${FLOTILLA_ISA:-best})"
  "$BUILD_DIR/bin/kernels_bench" --benchmark_min_time=0.05 --benchmark_filter="$filter" \
    --benchmark_out="$out/kernels.json" --benchmark_out_format=json
fi

if [[ $run_model == 1 ]]; then
  echo "== whole-model benchmark"
  args=(--json "$out/model.jsonl")
  [[ $quick == 1 ]] && args+=(--quick)
  "$BUILD_DIR/bin/model_bench" "${args[@]}" "${extra[@]}" | tee "$out/model.md"
fi
echo "== results in $out"
