#!/usr/bin/env bash
# `make bench`: CPU kernel and sampling benchmarks (Google Benchmark), the whole-model benchmark
# (synthetic 110M and 1B models written on the fly into a temporary directory and deleted
# afterwards; decode/prompt/batched tokens/s, roofline, peak RSS), the worker serving benchmark
# (concurrency 1/4/16/64 on stories260K-q8_0 and a synthetic 110M Q8_0, greedy; the 110M also
# sampled at concurrency 1/16) and the gateway
# benchmark. Results go to stdout and to $BUILD_DIR/bench-results/. About 15-20 minutes on 2
# cores; --quick takes a few.
#
#   scripts/bench.sh [--quick] [--kernels-only | --model-only | --serving-only] [-- extra model_bench flags]
#   BUILD_DIR=build-perf scripts/bench.sh --quick
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
quick=0
run_kernels=1
run_model=1
run_serving=1
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --kernels-only) run_model=0; run_serving=0 ;;
    --model-only) run_kernels=0; run_serving=0 ;;
    --serving-only) run_kernels=0; run_model=0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown flag $1 (see the top of $0)" >&2; exit 2 ;;
  esac
  shift
done
for b in kernels_bench sampler_bench model_bench; do
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
  echo "== sampling benchmark (per token, 32,000-entry vocabulary)"
  "$BUILD_DIR/bin/sampler_bench" --benchmark_min_time=0.05 --benchmark_out="$out/sampler.json" --benchmark_out_format=json
fi

if [[ $run_model == 1 ]]; then
  echo "== whole-model benchmark"
  args=(--json "$out/model.jsonl")
  [[ $quick == 1 ]] && args+=(--quick)
  "$BUILD_DIR/bin/model_bench" "${args[@]}" "${extra[@]}" | tee "$out/model.md"
fi
if [[ $run_serving == 1 ]]; then
  secs=10; gw=(); [[ $quick == 1 ]] && { secs=3; gw=(--overload-s 10 --duration-s 3); }
  echo "== worker serving benchmark: stories260K-q8_0"
  "$BUILD_DIR/bin/worker_bench" --model stories260K-q8_0.gguf --concurrency 1,4,16,64 --seconds "$secs" \
    | tee "$out/worker-stories.txt"
  shm=/dev/shm; [[ -w $shm ]] || shm=${TMPDIR:-/tmp}
  synth="$shm/flotilla-bench-110m-q8_0.$$.gguf"
  trap 'rm -f "$synth"' EXIT
  "$BUILD_DIR/bin/flotilla" synth --shape 110m --type q8_0 -o "$synth" >/dev/null
  echo "== worker serving benchmark: synthetic 110M Q8_0"
  "$BUILD_DIR/bin/worker_bench" --model "$synth" --ctx-size 2048 --concurrency 1,4,16,64 --seconds "$secs" \
    --worker-args "--kv-memory-mb 768" | tee "$out/worker-110m.txt"
  echo "== worker serving benchmark: synthetic 110M Q8_0, sampled (temperature 0.8, top-p 0.95)"
  "$BUILD_DIR/bin/worker_bench" --model "$synth" --ctx-size 2048 --concurrency 1,16 --seconds "$secs" \
    --temperature 0.8 --top-p 0.95 --worker-args "--kv-memory-mb 768" | tee "$out/worker-110m-sampled.txt"
  rm -f "$synth"
  if [[ -x "$BUILD_DIR/bin/gateway_bench" ]]; then
    echo "== gateway benchmark"
    "$BUILD_DIR/bin/gateway_bench" "${gw[@]}" | tee "$out/gateway.txt"
  fi
fi
echo "== results in $out"
