// The device weight layout and the per-chunk arithmetic of the CUDA matrix-vector kernel, run on
// the CPU through formats.h (the same functions the kernel calls), against the scalar reference.
// This runs without a GPU and catches layout, nibble-order and scale-indexing mistakes.
// Bound: NMSE <= 1e-10 (same products, different summation order; quantized block sums are
// exact integers).
#include <cstring>

#include "gtest/gtest.h"
#include "kernels/cuda/formats.h"
#include "tests/cuda/cuda_test_util.h"

namespace flotilla::cuda_testing {
namespace {

using kernels::testing::Nmse;
using kernels::testing::RandomVector;

struct Shape {
  int64_t rows, cols, M;
};

TEST(CudaFormats, RowBytesAreChunkMultiples) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (int64_t cols : {1, 3, 8, 172, 4096}) {
      EXPECT_EQ(kc::RowDataBytes(t, cols) % kc::kChunkBytes, 0) << kernels::Info(t).name << " " << cols;
      EXPECT_GE(kc::RowDataBytes(t, cols) / kc::kChunkBytes * kc::ChunkElems(t), cols);
    }
  }
  EXPECT_EQ(kc::RowDataBytes(DType::kQ8_0, 64), 64);
  EXPECT_EQ(kc::RowDataBytes(DType::kQ4_0, 64), 32);
  // Quantized: data, then f16 scales, each 256-aligned.
  EXPECT_EQ(kc::RepackedBytes(DType::kQ8_0, 3, 64), 256 + 256);
  EXPECT_EQ(kc::ScaleOffset(DType::kQ4_0, 100, 64), kc::AlignUp(100 * 32, 256));
}

TEST(CudaFormats, Dp4aMatchesPlainProducts) {
  const int32_t a = static_cast<int32_t>(0x80ff7f01u), b = static_cast<int32_t>(0x7f81ff02u);
  // bytes of a: 1, 127, -1, -128; of b: 2, -1, -127, 127
  EXPECT_EQ(kc::Dp4a(a, b, 5), 5 + 1 * 2 + 127 * -1 + -1 * -127 + -128 * 127);
}

TEST(CudaFormats, RepackKeepsQ4NibbleOrder) {
  std::vector<float> w(32);
  for (int j = 0; j < 32; ++j) w[j] = static_cast<float>(j - 16);
  const auto ggml = QuantizeMatrix(DType::kQ4_0, w, 1, 32);
  const HostRepacked h = RepackHost(DType::kQ4_0, ggml, 1, 32);
  std::vector<float> back(32);
  kernels::DequantizeRow(DType::kQ4_0, ggml.data(), back.data(), 32);
  const float d = kc::HostHalfToFloat(h.scales[0]);
  for (int j = 0; j < 16; ++j) {
    EXPECT_FLOAT_EQ(((h.data[j] & 0x0f) - 8) * d, back[j]);
    EXPECT_FLOAT_EQ(((h.data[j] >> 4) - 8) * d, back[j + 16]);
  }
}

TEST(CudaFormats, EmulatedMatVecMatchesScalarReference) {
  const std::vector<Shape> float_shapes = {{1, 8, 1}, {7, 172, 1}, {33, 172, 3}, {13, 3, 2}, {130, 2048, 2}, {5, 1100, 4}};
  const std::vector<Shape> quant_shapes = {{1, 32, 1}, {7, 64, 1}, {33, 96, 5}, {130, 2048, 3}, {17, 5632, 2}, {3, 4096, 8}};
  uint64_t seed = 11;
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    for (const Shape& s : kc::IsQuantized(type) ? quant_shapes : float_shapes) {
      const auto wf = RandomVector(s.rows * s.cols, seed++);
      const auto x = RandomVector(s.M * s.cols, seed++);
      const auto ggml = QuantizeMatrix(type, wf, s.rows, s.cols);
      const HostRepacked h = RepackHost(type, ggml, s.rows, s.cols);
      const auto ref = ReferenceMatMul(type, ggml, s.rows, s.cols, x, s.M);
      HostQ8 q;
      if (kc::IsQuantized(type)) q = QuantizeActivationsHost(x, s.M, s.cols);
      std::vector<float> got(s.rows * s.M);
      for (int64_t m = 0; m < s.M; ++m) {
        for (int64_t n = 0; n < s.rows; ++n) {
          got[m * s.rows + n] = kc::EmulateMatVecRow(
              type, h.data.data(), h.scales.data(), h.row_bytes, s.cols, n, x.data() + m * s.cols,
              q.qs.empty() ? nullptr : q.qs.data() + m * s.cols,
              q.scales.empty() ? nullptr : q.scales.data() + m * (s.cols / kc::kQBlock));
        }
      }
      EXPECT_LE(Nmse(got, ref), 1e-10) << kernels::Info(type).name << " " << s.rows << "x" << s.cols << " M=" << s.M;
    }
  }
}

}  // namespace
}  // namespace flotilla::cuda_testing
