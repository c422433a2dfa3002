// Helpers for the CUDA tests: host-side weight repacking and Q8 activations in the device layout,
// the scalar reference matmul, and (when compiled with CUDA) device buffers and the GPU check.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cuda/formats.h"
#include "kernels/fp16.h"
#include "kernels/quant.h"
#include "tests/kernels/kernel_test_util.h"

#if defined(FLOTILLA_TEST_WITH_CUDA)
#include <cuda_runtime.h>

#include "gtest/gtest.h"
#endif

namespace flotilla::cuda_testing {

using kernels::DType;
namespace kc = kernels::cuda;

// ggml rows of `type` made from f32 values [rows][cols].
inline std::vector<uint8_t> QuantizeMatrix(DType type, const std::vector<float>& w, int64_t rows, int64_t cols) {
  const int64_t rb = kernels::RowBytes(type, cols);
  std::vector<uint8_t> out(rows * rb);
  for (int64_t r = 0; r < rows; ++r) kernels::QuantizeRow(type, w.data() + r * cols, out.data() + r * rb, cols);
  return out;
}

// A matrix in the device layout, on the host: data rows then (quantized types) scales.
struct HostRepacked {
  std::vector<uint8_t> data;
  std::vector<uint16_t> scales;
  int64_t row_bytes = 0;
};

inline HostRepacked RepackHost(DType type, const std::vector<uint8_t>& ggml, int64_t rows, int64_t cols) {
  HostRepacked h;
  h.row_bytes = kc::RowDataBytes(type, cols);
  h.data.assign(rows * h.row_bytes, 0xee);
  if (kc::IsQuantized(type)) h.scales.assign(rows * (cols / kc::kQBlock), 0);
  const int64_t rb = kernels::RowBytes(type, cols);
  for (int64_t r = 0; r < rows; ++r) {
    kc::RepackRowHost(type, ggml.data() + r * rb, cols, h.data.data() + r * h.row_bytes,
                      h.scales.empty() ? nullptr : h.scales.data() + r * (cols / kc::kQBlock));
  }
  return h;
}

// Q8 activations in the device layout, quantized by the CPU reference quantizer.
struct HostQ8 {
  std::vector<int8_t> qs;
  std::vector<kc::Q8Scale> scales;
};

inline HostQ8 QuantizeActivationsHost(const std::vector<float>& x, int64_t M, int64_t K) {
  HostQ8 q;
  q.qs.resize(M * K);
  q.scales.resize(M * (K / kc::kQBlock));
  std::vector<kernels::BlockQ8_0> blocks(K / kc::kQBlock);
  for (int64_t m = 0; m < M; ++m) {
    kernels::QuantizeRowQ8_0(x.data() + m * K, blocks.data(), K);
    for (int64_t b = 0; b < K / kc::kQBlock; ++b) {
      int32_t sum = 0;
      for (int j = 0; j < kc::kQBlock; ++j) {
        q.qs[m * K + b * kc::kQBlock + j] = blocks[b].qs[j];
        sum += blocks[b].qs[j];
      }
      q.scales[m * (K / kc::kQBlock) + b] = {kernels::F16ToF32(blocks[b].d), sum};
    }
  }
  return q;
}

// y[m][n] by the scalar reference (kernels/cpu ScalarKernels) for f32 activations x [M][K].
inline std::vector<float> ReferenceMatMul(DType type, const std::vector<uint8_t>& ggml, int64_t rows, int64_t cols,
                                          const std::vector<float>& x, int64_t M) {
  const auto& kt = kernels::cpu::ScalarKernels();
  kernels::cpu::ThreadPool pool(1);
  kernels::cpu::WeightMatrix wm{type, ggml.data(), rows, cols, kernels::RowBytes(type, cols)};
  // Generous scratch: any activation form is smaller than two bytes per element plus a block.
  std::vector<char> scratch(static_cast<size_t>(M) * (cols * 2 + 256) + 4096);
  std::vector<float> y(rows * M, 0.0f);
  kernels::cpu::MatMul(kt, pool, wm, x.data(), M, y.data(), rows, scratch.data());
  return y;
}

// x rounded through a 16-bit activation type (what the kernel sees) and widened back.
inline std::vector<float> RoundThrough(const std::vector<float>& x, bool bf16) {
  std::vector<float> r(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    r[i] = bf16 ? kernels::BF16ToF32(kernels::F32ToBF16(x[i])) : kernels::F16ToF32(kernels::F32ToF16(x[i]));
  }
  return r;
}

#if defined(FLOTILLA_TEST_WITH_CUDA)

inline bool HaveGpu() {
  int n = 0;
  const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  cudaGetLastError();
  return ok;
}

#define FLOTILLA_REQUIRE_GPU()                                                     \
  do {                                                                             \
    if (!::flotilla::cuda_testing::HaveGpu()) GTEST_SKIP() << "no CUDA GPU here"; \
  } while (0)

#define CUDA_OK(expr) ASSERT_EQ(static_cast<int>(expr), 0) << #expr << ": " << cudaGetErrorString(static_cast<cudaError_t>(expr))

// A device allocation of n elements of T, freed on destruction.
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n = 0) { Resize(n); }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void Resize(size_t n) {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = n;
    if (n) {
      cudaMalloc(&p_, std::max<size_t>(n * sizeof(T), 16));
      cudaMemset(p_, 0, n * sizeof(T));
    }
  }
  explicit DeviceBuffer(const std::vector<T>& v) : DeviceBuffer(v.size()) { Upload(v); }
  void Upload(const std::vector<T>& v) { cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice); }
  std::vector<T> Download() const {
    std::vector<T> v(n_);
    cudaDeviceSynchronize();
    cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return v;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

#endif

}  // namespace flotilla::cuda_testing
