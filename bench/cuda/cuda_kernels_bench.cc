// Kernel benchmarks on the GPU, as a plain program: the device-to-device copy bandwidth measured
// in the same run (bytes read + written per second, the ceiling the GEMV figures are held
// against), then matrix-vector GB/s for every weight type on Llama-3-8B matrix shapes, and
// cuBLAS prefill GEMM TFLOP/s. Matrices are replicated to 2 GiB per measurement so that L2 (50-60
// MB) cannot serve them. Prints a table; --json FILE also writes one JSON object per line.
//
//   cuda_kernels_bench [--json FILE] [--quick]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_kernels.h"

namespace {

namespace kc = flotilla::kernels::cuda;
using flotilla::kernels::DType;

#define CHECK_CUDA(expr)                                                                            \
  do {                                                                                              \
    const int _e = static_cast<int>(expr);                                                          \
    if (_e != 0) {                                                                                  \
      std::fprintf(stderr, "%s:%d: %s failed: %s (%d)\n", __FILE__, __LINE__, #expr, kc::ErrorName(_e), _e); \
      std::exit(1);                                                                                 \
    }                                                                                               \
  } while (0)

FILE* g_json = nullptr;

void Json(const std::string& line) {
  if (g_json) std::fprintf(g_json, "%s\n", line.c_str());
}

// Milliseconds per call of fn, averaged over `iters` calls after `warmup`, timed with events.
template <class F>
double TimeMs(F&& fn, int warmup, int iters) {
  for (int i = 0; i < warmup; ++i) fn(i);
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  CHECK_CUDA(cudaEventRecord(a));
  for (int i = 0; i < iters; ++i) fn(i);
  CHECK_CUDA(cudaEventRecord(b));
  CHECK_CUDA(cudaEventSynchronize(b));
  float ms = 0;
  CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  CHECK_CUDA(cudaGetLastError());
  return ms / iters;
}

double CopyBandwidth() {
  const size_t bytes = size_t{2} << 30;
  void *src = nullptr, *dst = nullptr;
  CHECK_CUDA(cudaMalloc(&src, bytes));
  CHECK_CUDA(cudaMalloc(&dst, bytes));
  CHECK_CUDA(cudaMemset(src, 1, bytes));
  const double ms = TimeMs([&](int) { CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice)); }, 3, 10);
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;  // read + write
}

struct Shape {
  const char* name;
  int64_t rows, cols;
};

void BenchMatVec(double copy_gbs, bool quick) {
  const std::vector<Shape> shapes = {{"qkv 6144x4096", 6144, 4096},
                                     {"o 4096x4096", 4096, 4096},
                                     {"gate_up 28672x4096", 28672, 4096},
                                     {"down 4096x14336", 4096, 14336},
                                     {"lm_head 128256x4096", 128256, 4096}};
  std::printf("\nGEMV (weight-only, f32 activations; quantized types take Q8_0 activations)\n");
  std::printf("%-6s %-22s %3s %10s %9s %8s\n", "type", "shape", "M", "us", "GB/s", "of copy");
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kF16, DType::kBF16, DType::kF32}) {
    for (const Shape& s : shapes) {
      if (quick && s.rows != 28672) continue;
      const int64_t mat = kc::RepackedBytes(t, s.rows, s.cols);
      const int copies = static_cast<int>(std::max<int64_t>(2, (int64_t{2} << 30) / mat));
      void* mem = nullptr;
      CHECK_CUDA(cudaMalloc(&mem, mat * copies));
      std::vector<kc::DeviceWeight> ws;
      for (int i = 0; i < copies; ++i) {
        ws.push_back(kc::MakeDeviceWeight(t, s.rows, s.cols, static_cast<char*>(mem) + mat * i));
        CHECK_CUDA(kc::FillRandom(ws.back(), i + 1, 0.05f, nullptr));
      }
      for (int M : {1, 8}) {
        float *x = nullptr, *y = nullptr;
        void* q8 = nullptr;
        CHECK_CUDA(cudaMalloc(&x, M * s.cols * 4));
        CHECK_CUDA(cudaMalloc(&y, M * s.rows * 4));
        CHECK_CUDA(cudaMalloc(&q8, kc::Q8ActivationBytes(M, s.cols)));
        CHECK_CUDA(cudaMemset(x, 0, M * s.cols * 4));
        const kc::Q8Activations xq = kc::MakeQ8Activations(q8, M, s.cols);
        CHECK_CUDA(kc::QuantizeActivations(x, s.cols, M, s.cols, xq, nullptr));
        kc::MatVecArgs a;
        a.x = x;
        a.ldx = s.cols;
        a.xq = xq;
        a.M = M;
        a.y = y;
        a.ldy = s.rows;
        const double ms = TimeMs(
            [&](int i) {
              a.w = ws[i % copies];
              CHECK_CUDA(kc::MatVec(a, nullptr));
            },
            copies, std::max(copies, 20));
        const double gbs = mat / (ms * 1e-3) / 1e9;
        std::printf("%-6s %-22s %3d %10.1f %9.0f %7.0f%%\n", flotilla::kernels::Info(t).name, s.name, M, ms * 1e3, gbs,
                    100.0 * gbs / copy_gbs);
        char line[256];
        std::snprintf(line, sizeof(line),
                      "{\"bench\":\"gemv\",\"type\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"M\":%d,\"us\":%.2f,"
                      "\"gbs\":%.1f,\"of_copy\":%.3f}",
                      flotilla::kernels::Info(t).name, static_cast<long long>(s.rows),
                      static_cast<long long>(s.cols), M, ms * 1e3, gbs, gbs / copy_gbs);
        Json(line);
        cudaFree(x);
        cudaFree(y);
        cudaFree(q8);
      }
      cudaFree(mem);
    }
  }
}

void BenchGemm(bool quick) {
  std::printf("\ncuBLAS prefill GEMM (quantized: dequantized to F16 tiles of 32 MiB)\n");
  std::printf("%-6s %-22s %4s %10s %9s\n", "type", "shape", "M", "us", "TFLOP/s");
  void* ws = nullptr;
  CHECK_CUDA(cudaMalloc(&ws, 32 << 20));
  kc::Blas* blas = nullptr;
  CHECK_CUDA(kc::CreateBlas(&blas, ws, 32 << 20));
  const Shape s{"gate_up 28672x4096", 28672, 4096};
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kF16, DType::kBF16}) {
    for (int M : {64, 512}) {
      if (quick && M != 512) continue;
      void *mem = nullptr, *x = nullptr, *tile = nullptr;
      float* y = nullptr;
      const int64_t tile_bytes = 32 << 20;
      CHECK_CUDA(cudaMalloc(&mem, kc::RepackedBytes(t, s.rows, s.cols)));
      CHECK_CUDA(cudaMalloc(&x, M * s.cols * 2));
      CHECK_CUDA(cudaMemset(x, 0, M * s.cols * 2));
      CHECK_CUDA(cudaMalloc(&y, M * s.rows * 4));
      CHECK_CUDA(cudaMalloc(&tile, tile_bytes));
      const kc::DeviceWeight w = kc::MakeDeviceWeight(t, s.rows, s.cols, mem);
      CHECK_CUDA(kc::FillRandom(w, 3, 0.05f, nullptr));
      kc::GemmArgs g;
      g.w = w;
      g.x = x;
      g.ldx = s.cols;
      g.M = M;
      g.y = y;
      g.ldy = s.rows;
      g.tile = tile;
      g.tile_bytes = tile_bytes;
      const double ms = TimeMs([&](int) { CHECK_CUDA(kc::Gemm(blas, g, nullptr)); }, 3, 10);
      const double tflops = 2.0 * s.rows * s.cols * M / (ms * 1e-3) / 1e12;
      std::printf("%-6s %-22s %4d %10.1f %9.1f\n", flotilla::kernels::Info(t).name, s.name, M, ms * 1e3, tflops);
      char line[256];
      std::snprintf(line, sizeof(line), "{\"bench\":\"gemm\",\"type\":\"%s\",\"M\":%d,\"us\":%.2f,\"tflops\":%.2f}",
                    flotilla::kernels::Info(t).name, M, ms * 1e3, tflops);
      Json(line);
      cudaFree(mem);
      cudaFree(x);
      cudaFree(y);
      cudaFree(tile);
    }
  }
  kc::DestroyBlas(blas);
  cudaFree(ws);
}

void BenchAttention(double copy_gbs) {
  std::printf("\nPaged decode attention (f16 cache, 32 heads / 8 KV heads, head 128, blocks of 16)\n");
  std::printf("%5s %7s %10s %9s %8s\n", "batch", "context", "us", "GB/s", "of copy");
  const int H = 32, KVH = 8, HD = 128, BS = 16;
  for (auto [B, ctx] : std::vector<std::pair<int, int>>{{1, 4096}, {8, 2048}, {64, 1024}}) {
    const int blocks_per_seq = ctx / BS;
    const int64_t nblocks = static_cast<int64_t>(B) * blocks_per_seq;
    const int64_t cache = nblocks * KVH * BS * HD * 2;
    void *k = nullptr, *v = nullptr;
    float *q = nullptr, *out = nullptr, *partial = nullptr;
    int32_t* meta = nullptr;
    CHECK_CUDA(cudaMalloc(&k, cache));
    CHECK_CUDA(cudaMalloc(&v, cache));
    CHECK_CUDA(cudaMemset(k, 0, cache));
    CHECK_CUDA(cudaMemset(v, 0, cache));
    CHECK_CUDA(cudaMalloc(&q, B * H * HD * 4));
    CHECK_CUDA(cudaMemset(q, 0, B * H * HD * 4));
    CHECK_CUDA(cudaMalloc(&out, B * H * HD * 4));
    std::vector<int32_t> host(4 * B + nblocks);
    for (int b = 0; b < B; ++b) {
      host[b] = ctx - 1;                      // position
      host[B + b] = b;                        // sequence
      host[2 * B + b] = b * blocks_per_seq;   // table start
      host[3 * B + b] = b;                    // decode list
    }
    for (int64_t i = 0; i < nblocks; ++i) host[4 * B + i] = static_cast<int32_t>(i);
    CHECK_CUDA(cudaMalloc(&meta, host.size() * 4));
    CHECK_CUDA(cudaMemcpy(meta, host.data(), host.size() * 4, cudaMemcpyHostToDevice));
    const int parts = kc::DecodePartitions(B, H, ctx, 132);
    CHECK_CUDA(cudaMalloc(&partial, kc::DecodeScratchFloats(B, H, HD, parts) * 4));
    kc::AttentionArgs a;
    a.q = q;
    a.ldq = H * HD;
    a.out = out;
    a.ldo = H * HD;
    a.n_heads = H;
    a.scale = 0.088f;
    a.tokens = {meta, meta + B, meta + 2 * B, meta + 4 * B};
    a.kv = {k, v, kc::KvType::kF16, KVH, HD, BS};
    const double ms = TimeMs([&](int) { CHECK_CUDA(kc::AttentionDecode(a, meta + 3 * B, B, parts, partial, nullptr)); }, 3, 20);
    const double gbs = 2.0 * cache / (ms * 1e-3) / 1e9;
    std::printf("%5d %7d %10.1f %9.0f %7.0f%%\n", B, ctx, ms * 1e3, gbs, 100.0 * gbs / copy_gbs);
    char line[256];
    std::snprintf(line, sizeof(line), "{\"bench\":\"attention_decode\",\"batch\":%d,\"context\":%d,\"us\":%.2f,\"gbs\":%.1f}",
                  B, ctx, ms * 1e3, gbs);
    Json(line);
    cudaFree(k);
    cudaFree(v);
    cudaFree(q);
    cudaFree(out);
    cudaFree(partial);
    cudaFree(meta);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc) {
      g_json = std::fopen(argv[++i], "w");
    } else if (!std::strcmp(argv[i], "--quick")) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: %s [--json FILE] [--quick]\n", argv[0]);
      return 2;
    }
  }
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::fprintf(stderr, "no CUDA GPU: %s\n", cudaGetErrorString(cudaGetLastError()));
    return 1;
  }
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, %.1f GiB\n", prop.name, prop.multiProcessorCount,
              prop.totalGlobalMem / double(1 << 30));
  const double copy_gbs = CopyBandwidth();
  std::printf("copy bandwidth (device to device, read + write): %.0f GB/s\n", copy_gbs);
  char line[256];
  std::snprintf(line, sizeof(line), "{\"bench\":\"copy\",\"device\":\"%.100s\",\"gbs\":%.1f}", prop.name, copy_gbs);
  Json(line);
  BenchMatVec(copy_gbs, quick);
  BenchAttention(copy_gbs);
  BenchGemm(quick);
  if (g_json) std::fclose(g_json);
  return 0;
}
