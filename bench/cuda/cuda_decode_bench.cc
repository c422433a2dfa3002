// Decode speed of the CUDA executor on the Llama-3-8B shape with random weights made on the
// device (no file): tokens/s at batch 1, 8 and 64 against the roofline, which is the weight bytes
// one step reads divided by the copy bandwidth measured in the same run (plus the KV bytes the
// step reads). Each sequence is prefilled with a 128-token prompt first. A step's time includes
// the logits copy to the host when --logits is given (the Executor interface returns logits).
//
//   cuda_decode_bench [--types q8_0,q4_0,f16] [--batches 1,8,64] [--steps N] [--json FILE] [--logits]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "model/cuda/cuda_executor.h"

namespace {

using flotilla::CudaExecutorOptions;
using flotilla::ForwardBatch;
using flotilla::kernels::DType;

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

double CopyBandwidth() {
  const size_t bytes = size_t{2} << 30;
  void *src = nullptr, *dst = nullptr;
  if (cudaMalloc(&src, bytes) != cudaSuccess || cudaMalloc(&dst, bytes) != cudaSuccess) return 0;
  cudaMemset(src, 1, bytes);
  for (int i = 0; i < 3; ++i) cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice);
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a);
  for (int i = 0; i < 10; ++i) cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(b);
  cudaEventSynchronize(b);
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * bytes * 10 / (ms * 1e-3) / 1e9;
}

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> types = {"q8_0", "q4_0", "f16"};
  std::vector<int> batches = {1, 8, 64};
  int steps = 32;
  bool logits_out = false;
  FILE* json = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--types" && i + 1 < argc) {
      types = Split(argv[++i]);
    } else if (a == "--batches" && i + 1 < argc) {
      batches.clear();
      for (const auto& b : Split(argv[++i])) batches.push_back(std::stoi(b));
    } else if (a == "--steps" && i + 1 < argc) {
      steps = std::stoi(argv[++i]);
    } else if (a == "--json" && i + 1 < argc) {
      json = std::fopen(argv[++i], "w");
    } else if (a == "--logits") {
      logits_out = true;
    } else {
      std::fprintf(stderr, "usage: %s [--types q8_0,q4_0,f16] [--batches 1,8,64] [--steps N] [--json FILE] [--logits]\n",
                   argv[0]);
      return 2;
    }
  }
  auto count = flotilla::CudaDeviceCount();
  if (!count.ok()) {
    std::fprintf(stderr, "%s\n", count.status().ToString().c_str());
    return 1;
  }
  const double bw = CopyBandwidth();
  std::printf("copy bandwidth (device to device, read + write): %.0f GB/s\n", bw);
  if (json) std::fprintf(json, "{\"bench\":\"copy\",\"gbs\":%.1f}\n", bw);

  const int prompt = 128;
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  const flotilla::LlamaConfig c = flotilla::Llama3_8BConfig(4096);
  std::printf("\nLlama-3-8B shape (dim 4096, 32 layers, 32/8 heads, FFN 14336, vocab 128256), random weights\n");
  std::printf("%-5s %5s %10s %10s %12s %12s %7s %12s\n", "type", "batch", "weights", "step ms", "tokens/s",
              "roofline", "of roof", "prefill t/s");
  for (const std::string& tname : types) {
    DType t;
    if (tname == "q8_0") {
      t = DType::kQ8_0;
    } else if (tname == "q4_0") {
      t = DType::kQ4_0;
    } else if (tname == "f16") {
      t = DType::kF16;
    } else if (tname == "bf16") {
      t = DType::kBF16;
    } else {
      std::fprintf(stderr, "unknown type %s\n", tname.c_str());
      return 2;
    }
    CudaExecutorOptions o;
    o.max_batch_tokens = std::max(512, max_batch);
    o.graph_batch_sizes = batches;
    const int blocks_per_seq = (prompt + steps + 16 + o.block_size - 1) / o.block_size;
    o.num_kv_blocks = max_batch * blocks_per_seq + 8;
    const auto t0 = std::chrono::steady_clock::now();
    auto ex = flotilla::MakeCudaExecutorRandom(c, t, 7, o);
    if (!ex.ok()) {
      std::fprintf(stderr, "%s: %s\n", tname.c_str(), ex.status().ToString().c_str());
      return 1;
    }
    const double startup = Seconds(t0, std::chrono::steady_clock::now());
    auto info = flotilla::GetCudaExecutorInfo(**ex);
    std::fprintf(stderr, "%s: %s (start-up %.1f s)\n", tname.c_str(), (*ex)->Describe().c_str(), startup);
    const int V = c.vocab_size;
    std::vector<float> logits(static_cast<size_t>(o.max_batch_tokens) * V);
    for (int B : batches) {
      std::vector<std::vector<int32_t>> tables(B);
      for (int s = 0; s < B; ++s) {
        tables[s].resize(blocks_per_seq);
        std::iota(tables[s].begin(), tables[s].end(), s * blocks_per_seq);
      }
      // Prefill every sequence with a 128-token prompt, in batches of up to max_batch_tokens.
      const auto p0 = std::chrono::steady_clock::now();
      ForwardBatch fb;
      for (int s = 0; s < B;) {
        fb.Clear();
        while (s < B && static_cast<int>(fb.size()) + prompt <= o.max_batch_tokens) {
          const int si = fb.AddSequence(tables[s]);
          for (int p = 0; p < prompt; ++p) fb.Add((s * 131 + p * 17) % V, p, si, p + 1 == prompt);
          ++s;
        }
        auto st = (*ex)->Forward(fb, logits);
        if (!st.ok()) {
          std::fprintf(stderr, "prefill: %s\n", st.ToString().c_str());
          return 1;
        }
      }
      const double prefill_tps = B * prompt / Seconds(p0, std::chrono::steady_clock::now());
      // Decode: warm-up, then timed steps. Every step is a captured graph of size B.
      auto step = [&](int k) {
        fb.Clear();
        for (int s = 0; s < B; ++s) fb.Add((s + k * 7) % V, prompt + k, fb.AddSequence(tables[s]), logits_out);
        return (*ex)->Forward(fb, logits);
      };
      for (int k = 0; k < 4; ++k) {
        if (auto st = step(k); !st.ok()) {
          std::fprintf(stderr, "decode: %s\n", st.ToString().c_str());
          return 1;
        }
      }
      const auto d0 = std::chrono::steady_clock::now();
      for (int k = 4; k < 4 + steps; ++k) {
        if (auto st = step(k); !st.ok()) {
          std::fprintf(stderr, "decode: %s\n", st.ToString().c_str());
          return 1;
        }
      }
      const double step_s = Seconds(d0, std::chrono::steady_clock::now()) / steps;
      const double tps = B / step_s;
      // Roofline: weights once per step, plus each sequence's K and V so far.
      const double kv_bytes = static_cast<double>(B) * (prompt + 4 + steps / 2) * c.n_layers * 2 * c.n_kv_heads *
                              c.head_dim * 2;
      const double roof_step = (info->weight_bytes_per_token + kv_bytes) / (bw * 1e9);
      const double roof_tps = B / roof_step;
      std::printf("%-5s %5d %9.2fG %10.3f %12.1f %12.1f %6.0f%% %12.0f\n", tname.c_str(), B,
                  info->weight_bytes_per_token / 1e9, step_s * 1e3, tps, roof_tps, 100.0 * tps / roof_tps, prefill_tps);
      std::fflush(stdout);
      if (json) {
        std::fprintf(json,
                     "{\"bench\":\"decode\",\"type\":\"%s\",\"batch\":%d,\"weight_bytes\":%lld,\"step_ms\":%.4f,"
                     "\"tokens_per_s\":%.2f,\"roofline_tokens_per_s\":%.2f,\"of_roofline\":%.4f,"
                     "\"prefill_tokens_per_s\":%.1f,\"logits_to_host\":%s,\"startup_s\":%.2f}\n",
                     tname.c_str(), B, static_cast<long long>(info->weight_bytes_per_token), step_s * 1e3, tps,
                     roof_tps, tps / roof_tps, prefill_tps, logits_out ? "true" : "false", startup);
        std::fflush(json);
      }
    }
  }
  if (json) std::fclose(json);
  return 0;
}
