// Sampling cost per token over a 32,000-entry vocabulary (Google Benchmark): greedy, the whole
// distribution, top-p, top-k, min-p and log-probabilities, on peaked logits (a few leading
// tokens over a wide tail, as a trained model gives) and on nearly flat ones (an untrained
// model, or a high temperature). The engine samples every sequence of a step on its thread
// while the compute pool waits, so this cost times the batch size adds to every step.
//
//   sampler_bench [--benchmark_filter=Sample/peaked]
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "model/sampler.h"

namespace flotilla {
namespace {

constexpr int kVocab = 32000;

std::vector<float> Logits(bool flat) {
  std::mt19937 g(3);
  std::normal_distribution<float> d(0.0f, flat ? 0.15f : 3.0f);
  std::vector<float> l(kVocab);
  for (auto& v : l) v = d(g);
  if (!flat) {
    l[17] = 20.0f;
    l[99] = 18.5f;
    l[5] = 18.0f;
  }
  return l;
}

SamplingParams Params(int setting) {
  SamplingParams p;
  p.has_seed = true;
  p.seed = 1;
  switch (setting) {
    case 0: p.temperature = 0.0f; break;
    case 1: break;  // temperature 1, nothing else: the API default
    case 2: p.temperature = 0.8f; p.top_p = 0.95f; break;
    case 3: p.temperature = 0.7f; p.top_k = 40; break;
    case 4: p.min_p = 0.05f; break;
    case 5: p.top_p = 0.95f; p.logprobs = 5; break;
    default: break;
  }
  return p;
}

const char* kNames[] = {"greedy", "T=1", "T=0.8 top_p=0.95", "T=0.7 top_k=40", "min_p=0.05", "top_p=0.95 logprobs=5"};

// Args: setting (kNames), flat (0: peaked logits, 1: nearly flat).
void BM_Sample(benchmark::State& state) {
  const int setting = static_cast<int>(state.range(0));
  const std::vector<float> base = Logits(state.range(1) != 0);
  Sampler s(Params(setting), kVocab);
  std::vector<float> l(base.size());
  const std::vector<int32_t> tokens = {1, 2, 3};
  for (auto _ : state) {
    l = base;
    benchmark::DoNotOptimize(s.Sample(l, tokens, tokens.size()).token);
  }
  state.SetLabel(std::string(kNames[setting]) + (state.range(1) ? ", flat" : ", peaked"));
}
BENCHMARK(BM_Sample)->ArgsProduct({{0, 1, 2, 3, 4, 5}, {0, 1}})->ArgNames({"setting", "flat"})->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace flotilla

BENCHMARK_MAIN();
