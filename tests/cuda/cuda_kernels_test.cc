// Every CUDA kernel against the CPU scalar reference (kernels/cpu ScalarKernels), on random and
// odd shapes. Skipped where no GPU is usable. Error bounds (NMSE = sum (a-b)^2 / sum b^2):
//   matrix-vector, float weights, f32 activations:           <= 1e-10 (summation order only)
//   matrix-vector, f16/bf16 activations (vs the reference fed the same rounded values): <= 1e-10
//   matrix-vector, Q8_0/Q4_0 (same Q8_0 activations, integer block sums): <= 1e-10
//   cuBLAS GEMM, F32 weights (strict f32):                    <= 1e-10
//   cuBLAS GEMM, F16/BF16 weights (activations rounded to the weight type): <= 1e-8
//   cuBLAS GEMM, Q8_0/Q4_0 via F16 tiles, vs f64 products of the dequantized weights: <= 2e-5
//   RMSNorm, SiLU*mul, RoPE:                                   <= 1e-10
//   attention (decode and prefill, f32 or f16 cache):           <= 1e-10
//   exact: activation quantization (bit-exact with QuantizeRowQ8_0), conversions, embedding
//   lookup, F16 dequantization, KV-cache stores, argmax and top-k ids.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_kernels.h"
#include "tests/cuda/cuda_test_util.h"

namespace flotilla::cuda_testing {
namespace {

using kernels::testing::Nmse;
using kernels::testing::RandomVector;

// A weight matrix uploaded to the device through RepackRows (the path the executor uses).
struct DeviceMatrix {
  DeviceBuffer<uint8_t> mem;
  kc::DeviceWeight w;
};

std::unique_ptr<DeviceMatrix> Upload(DType type, const std::vector<uint8_t>& ggml, int64_t rows, int64_t cols) {
  auto m = std::make_unique<DeviceMatrix>();
  m->mem.Resize(kc::RepackedBytes(type, rows, cols));
  m->w = kc::MakeDeviceWeight(type, rows, cols, m->mem.get());
  DeviceBuffer<uint8_t> staging(ggml);
  EXPECT_EQ(kc::RepackRows(staging.get(), rows, m->w, 0, nullptr), 0);
  cudaDeviceSynchronize();
  return m;
}

TEST(CudaKernels, RepackOnDeviceMatchesHostLayout) {
  FLOTILLA_REQUIRE_GPU();
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    const int64_t rows = 37, cols = kc::IsQuantized(type) ? 96 : 172;
    const auto ggml = QuantizeMatrix(type, RandomVector(rows * cols, 3), rows, cols);
    const auto dm = Upload(type, ggml, rows, cols);
    const HostRepacked h = RepackHost(type, ggml, rows, cols);
    std::vector<uint8_t> data(rows * h.row_bytes);
    CUDA_OK(cudaMemcpy(data.data(), dm->w.data, data.size(), cudaMemcpyDeviceToHost));
    EXPECT_EQ(data, h.data) << kernels::Info(type).name;
    if (!h.scales.empty()) {
      std::vector<uint16_t> scales(h.scales.size());
      CUDA_OK(cudaMemcpy(scales.data(), dm->w.scales, scales.size() * 2, cudaMemcpyDeviceToHost));
      EXPECT_EQ(scales, h.scales) << kernels::Info(type).name;
    }
  }
}

struct Shape {
  int64_t rows, cols;
};

TEST(CudaKernels, MatVecEveryTypeActivationAndShape) {
  FLOTILLA_REQUIRE_GPU();
  const std::vector<Shape> float_shapes = {{1, 8}, {7, 172}, {33, 172}, {130, 2048}, {5, 3}, {257, 1100}};
  const std::vector<Shape> quant_shapes = {{1, 32}, {7, 64}, {33, 96}, {130, 2048}, {17, 5632}, {261, 4096}};
  uint64_t seed = 100;
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    for (const Shape& s : kc::IsQuantized(type) ? quant_shapes : float_shapes) {
      const auto ggml = QuantizeMatrix(type, RandomVector(s.rows * s.cols, seed++), s.rows, s.cols);
      const auto dm = Upload(type, ggml, s.rows, s.cols);
      for (int M : {1, 2, 3, 5, 8}) {
        const int64_t ldx = kc::AlignUp(s.cols, 8) + 8;  // padded rows, as the executor lays them out
        const auto x = RandomVector(M * s.cols, seed++);
        std::vector<kc::ActType> acts = {kc::ActType::kF32};
        if (!kc::IsQuantized(type)) acts = {kc::ActType::kF32, kc::ActType::kF16, kc::ActType::kBF16};
        for (kc::ActType at : acts) {
          const std::vector<float> xr = at == kc::ActType::kF32 ? x : RoundThrough(x, at == kc::ActType::kBF16);
          const auto ref = ReferenceMatMul(type, ggml, s.rows, s.cols, xr, M);
          // Activations on the device in the kernel's input form.
          DeviceBuffer<uint8_t> xd(M * ldx * 4);
          for (int m = 0; m < M; ++m) {
            if (at == kc::ActType::kF32) {
              CUDA_OK(cudaMemcpy(xd.get() + m * ldx * 4, x.data() + m * s.cols, s.cols * 4, cudaMemcpyHostToDevice));
            } else {
              std::vector<uint16_t> h(s.cols);
              for (int64_t k = 0; k < s.cols; ++k) {
                h[k] = at == kc::ActType::kBF16 ? kernels::F32ToBF16(x[m * s.cols + k]) : kernels::F32ToF16(x[m * s.cols + k]);
              }
              CUDA_OK(cudaMemcpy(xd.get() + m * ldx * 2, h.data(), s.cols * 2, cudaMemcpyHostToDevice));
            }
          }
          DeviceBuffer<uint8_t> q8(kc::Q8ActivationBytes(M, kc::AlignUp(s.cols, 32)));
          const kc::Q8Activations xq = kc::MakeQ8Activations(q8.get(), M, s.cols);
          if (kc::IsQuantized(type)) {
            DeviceBuffer<float> xf(x);
            CUDA_OK(kc::QuantizeActivations(xf.get(), s.cols, M, s.cols, xq, nullptr));
            cudaDeviceSynchronize();
          }
          for (bool accumulate : {false, true}) {
            const int64_t ldy = s.rows + 3;
            std::vector<float> y0(M * ldy, accumulate ? 0.5f : -1.0f);
            DeviceBuffer<float> y(y0);
            kc::MatVecArgs a;
            a.w = dm->w;
            a.x = xd.get();
            a.x_type = at;
            a.ldx = ldx;
            a.xq = xq;
            a.M = M;
            a.y = y.get();
            a.ldy = ldy;
            a.accumulate = accumulate;
            CUDA_OK(kc::MatVec(a, nullptr));
            const auto got = y.Download();
            std::vector<float> g(M * s.rows);
            for (int m = 0; m < M; ++m) {
              for (int64_t n = 0; n < s.rows; ++n) g[m * s.rows + n] = got[m * ldy + n] - (accumulate ? 0.5f : 0.0f);
              for (int64_t n = s.rows; n < ldy; ++n) EXPECT_EQ(got[m * ldy + n], y0[m * ldy + n]) << "wrote past the rows";
            }
            EXPECT_LE(Nmse(g, ref), 1e-10) << kernels::Info(type).name << " " << s.rows << "x" << s.cols << " M=" << M
                                           << " act=" << static_cast<int>(at) << " acc=" << accumulate;
          }
        }
      }
    }
  }
}

TEST(CudaKernels, MatVecResultDoesNotDependOnBatch) {
  FLOTILLA_REQUIRE_GPU();
  const int64_t rows = 300, cols = 1024;
  for (DType type : {DType::kF16, DType::kQ4_0}) {
    const auto ggml = QuantizeMatrix(type, RandomVector(rows * cols, 5), rows, cols);
    const auto dm = Upload(type, ggml, rows, cols);
    const auto x = RandomVector(8 * cols, 6);
    DeviceBuffer<float> xf(x);
    DeviceBuffer<uint8_t> q8(kc::Q8ActivationBytes(8, cols));
    const kc::Q8Activations xq = kc::MakeQ8Activations(q8.get(), 8, cols);
    CUDA_OK(kc::QuantizeActivations(xf.get(), cols, 8, cols, xq, nullptr));
    std::vector<std::vector<float>> out;
    for (int M : {1, 8}) {
      DeviceBuffer<float> y(M * rows);
      kc::MatVecArgs a;
      a.w = dm->w;
      a.x = xf.get();
      a.ldx = cols;
      a.xq = xq;
      a.M = M;
      a.y = y.get();
      a.ldy = rows;
      CUDA_OK(kc::MatVec(a, nullptr));
      auto v = y.Download();
      out.emplace_back(v.begin(), v.begin() + rows);  // row m = 0
    }
    EXPECT_EQ(out[0], out[1]) << kernels::Info(type).name << ": token 0 differs alone and in a batch of 8";
  }
}

TEST(CudaKernels, QuantizeActivationsIsBitExact) {
  FLOTILLA_REQUIRE_GPU();
  const int M = 5;
  const int64_t K = 4096 + 96;
  auto x = RandomVector(M * K, 7, 3.0f);
  x[17] = 0.0f;
  std::fill(x.begin() + 64, x.begin() + 96, 0.0f);  // an all-zero block
  DeviceBuffer<float> xf(x);
  DeviceBuffer<uint8_t> q8(kc::Q8ActivationBytes(M, K));
  const kc::Q8Activations xq = kc::MakeQ8Activations(q8.get(), M, K);
  CUDA_OK(kc::QuantizeActivations(xf.get(), K, M, K, xq, nullptr));
  cudaDeviceSynchronize();
  const HostQ8 ref = QuantizeActivationsHost(x, M, K);
  std::vector<int8_t> qs(M * K);
  std::vector<kc::Q8Scale> sc(M * K / 32);
  CUDA_OK(cudaMemcpy(qs.data(), xq.qs, qs.size(), cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(sc.data(), xq.scales, sc.size() * sizeof(kc::Q8Scale), cudaMemcpyDeviceToHost));
  EXPECT_EQ(qs, ref.qs);
  for (size_t i = 0; i < sc.size(); ++i) {
    ASSERT_EQ(sc[i].d, ref.scales[i].d) << i;
    ASSERT_EQ(sc[i].sum, ref.scales[i].sum) << i;
  }
}

// f64 products of the dequantized weights with f32 activations.
std::vector<float> DoubleReference(DType type, const std::vector<uint8_t>& ggml, int64_t rows, int64_t cols,
                                   const std::vector<float>& x, int M) {
  std::vector<float> w(rows * cols), y(M * rows);
  for (int64_t r = 0; r < rows; ++r) {
    kernels::DequantizeRow(type, ggml.data() + r * kernels::RowBytes(type, cols), w.data() + r * cols, cols);
  }
  for (int m = 0; m < M; ++m) {
    for (int64_t n = 0; n < rows; ++n) {
      double s = 0;
      for (int64_t k = 0; k < cols; ++k) s += static_cast<double>(w[n * cols + k]) * x[m * cols + k];
      y[m * rows + n] = static_cast<float>(s);
    }
  }
  return y;
}

TEST(CudaKernels, GemmThroughCublasEveryType) {
  FLOTILLA_REQUIRE_GPU();
  DeviceBuffer<uint8_t> ws(32 << 20);
  kc::Blas* blas = nullptr;
  CUDA_OK(kc::CreateBlas(&blas, ws.get(), ws.size()));
  uint64_t seed = 500;
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    const std::vector<Shape> shapes = kc::IsQuantized(type) ? std::vector<Shape>{{37, 64}, {300, 1024}, {1000, 96}}
                                                            : std::vector<Shape>{{37, 172}, {300, 1024}, {5, 8}};
    for (const Shape& s : shapes) {
      const auto ggml = QuantizeMatrix(type, RandomVector(s.rows * s.cols, seed++), s.rows, s.cols);
      const auto dm = Upload(type, ggml, s.rows, s.cols);
      for (int M : {9, 33, 100}) {
        const auto x = RandomVector(M * s.cols, seed++);
        const kc::ActType at = kc::GemmActivationType(type);
        const int64_t ldx = kc::AlignUp(s.cols, 8);
        DeviceBuffer<float> xf(x);
        DeviceBuffer<uint8_t> xa(M * ldx * 4);
        CUDA_OK(kc::ConvertActivations(xf.get(), s.cols, M, s.cols, xa.get(), at, ldx, nullptr));
        // A small tile forces several dequantize-and-multiply rounds.
        DeviceBuffer<uint8_t> tile(kc::GemmTileBytes(7, s.cols));
        for (bool accumulate : {false, true}) {
          std::vector<float> y0(M * s.rows, accumulate ? 0.25f : 0.0f);
          DeviceBuffer<float> y(y0);
          kc::GemmArgs g;
          g.w = dm->w;
          g.x = xa.get();
          g.ldx = ldx;
          g.M = M;
          g.y = y.get();
          g.ldy = s.rows;
          g.accumulate = accumulate;
          g.tile = tile.get();
          g.tile_bytes = tile.size();
          CUDA_OK(kc::Gemm(blas, g, nullptr));
          auto got = y.Download();
          for (float& v : got) v -= accumulate ? 0.25f : 0.0f;
          double bound;
          std::vector<float> ref;
          if (type == DType::kF32) {
            ref = ReferenceMatMul(type, ggml, s.rows, s.cols, x, M);
            bound = 1e-10;
          } else if (!kc::IsQuantized(type)) {
            ref = ReferenceMatMul(type, ggml, s.rows, s.cols, RoundThrough(x, type == DType::kBF16), M);
            bound = 1e-8;
          } else {
            ref = DoubleReference(type, ggml, s.rows, s.cols, x, M);
            bound = 2e-5;
          }
          EXPECT_LE(Nmse(got, ref), bound) << kernels::Info(type).name << " " << s.rows << "x" << s.cols << " M=" << M;
        }
      }
    }
  }
  kc::DestroyBlas(blas);
}

TEST(CudaKernels, DequantizeToF16IsExact) {
  FLOTILLA_REQUIRE_GPU();
  for (DType type : {DType::kQ8_0, DType::kQ4_0, DType::kF16}) {
    const int64_t rows = 19, cols = 160;
    const auto ggml = QuantizeMatrix(type, RandomVector(rows * cols, 9), rows, cols);
    const auto dm = Upload(type, ggml, rows, cols);
    DeviceBuffer<uint16_t> out(10 * cols);
    CUDA_OK(kc::DequantizeRowsF16(dm->w, 4, 10, out.get(), nullptr));
    const auto got = out.Download();
    std::vector<float> row(cols);
    for (int r = 0; r < 10; ++r) {
      kernels::DequantizeRow(type, ggml.data() + (4 + r) * kernels::RowBytes(type, cols), row.data(), cols);
      for (int64_t k = 0; k < cols; ++k) ASSERT_EQ(got[r * cols + k], kernels::F32ToF16(row[k])) << r << "," << k;
    }
  }
}

TEST(CudaKernels, ConvertActivationsIsExact) {
  FLOTILLA_REQUIRE_GPU();
  const int M = 3;
  const int64_t K = 173;
  const auto x = RandomVector(M * K, 10, 100.0f);
  DeviceBuffer<float> xf(x);
  for (bool bf16 : {false, true}) {
    DeviceBuffer<uint16_t> out(M * 176);
    CUDA_OK(kc::ConvertActivations(xf.get(), K, M, K, out.get(), bf16 ? kc::ActType::kBF16 : kc::ActType::kF16, 176,
                                   nullptr));
    const auto got = out.Download();
    for (int m = 0; m < M; ++m) {
      for (int64_t k = 0; k < K; ++k) {
        const float v = x[m * K + k];
        ASSERT_EQ(got[m * 176 + k], bf16 ? kernels::F32ToBF16(v) : kernels::F32ToF16(v));
      }
    }
  }
}

TEST(CudaKernels, RmsNormWithAndWithoutQuantizedOutput) {
  FLOTILLA_REQUIRE_GPU();
  const auto& kt = kernels::cpu::ScalarKernels();
  for (int64_t n : {64, 172, 4096}) {
    const int M = 6;
    const int64_t ld = n + 8;
    const auto x = RandomVector(M * ld, 20 + n, 2.0f);
    const auto w = RandomVector(n, 21 + n);
    DeviceBuffer<float> xd(x), wd(w), out(M * ld);
    const std::vector<int32_t> rows = {5, 0, 3};
    DeviceBuffer<int32_t> rowsd(rows);
    const bool quant = n % 32 == 0;
    DeviceBuffer<uint8_t> q8(kc::Q8ActivationBytes(M, kc::AlignUp(n, 32)));
    const kc::Q8Activations q = kc::MakeQ8Activations(q8.get(), M, n);
    for (bool gather : {false, true}) {
      kc::RmsNormArgs a;
      a.x = xd.get();
      a.ldx = ld;
      a.weight = wd.get();
      a.n = n;
      a.eps = 1e-5f;
      a.M = gather ? 3 : M;
      a.rows = gather ? rowsd.get() : nullptr;
      a.out = out.get();
      a.ldo = ld;
      a.q8 = quant ? &q : nullptr;
      CUDA_OK(kc::RmsNorm(a, nullptr));
      const auto got = out.Download();
      for (int m = 0; m < a.M; ++m) {
        const int src = gather ? rows[m] : m;
        std::vector<float> ref(n);
        kt.rms_norm(x.data() + src * ld, w.data(), ref.data(), n, 1e-5f);
        std::vector<float> g(got.begin() + m * ld, got.begin() + m * ld + n);
        EXPECT_LE(Nmse(g, ref), 1e-10) << "n=" << n << " m=" << m;
        if (quant) {  // the quantized copy is bit-exact with the reference quantizer of the f32 output
          const HostQ8 want = QuantizeActivationsHost(g, 1, n);
          std::vector<int8_t> qs(n);
          CUDA_OK(cudaMemcpy(qs.data(), q.qs + m * n, n, cudaMemcpyDeviceToHost));
          EXPECT_EQ(qs, want.qs) << "n=" << n << " m=" << m;
        }
      }
    }
  }
}

TEST(CudaKernels, SiluMulWithAndWithoutQuantizedOutput) {
  FLOTILLA_REQUIRE_GPU();
  const auto& kt = kernels::cpu::ScalarKernels();
  for (int64_t n : {172, 14336}) {
    const int M = 3;
    const int64_t ld = 2 * n + 8;
    const auto gu = RandomVector(M * ld, 30 + n, 3.0f);
    DeviceBuffer<float> gud(gu);
    const bool quant = n % 32 == 0;
    DeviceBuffer<uint8_t> q8(kc::Q8ActivationBytes(M, kc::AlignUp(n, 32)));
    const kc::Q8Activations q = kc::MakeQ8Activations(q8.get(), M, n);
    // In place over the gate half, as the executor runs it.
    CUDA_OK(kc::SiluMul(gud.get(), gud.get() + n, ld, M, n, gud.get(), ld, quant ? &q : nullptr, nullptr));
    const auto got = gud.Download();
    for (int m = 0; m < M; ++m) {
      std::vector<float> ref(n);
      kt.silu_mul(gu.data() + m * ld, gu.data() + m * ld + n, ref.data(), n);
      std::vector<float> g(got.begin() + m * ld, got.begin() + m * ld + n);
      EXPECT_LE(Nmse(g, ref), 1e-10) << "n=" << n;
      if (quant) {
        std::vector<int8_t> qs(n);
        CUDA_OK(cudaMemcpy(qs.data(), q.qs + m * n, n, cudaMemcpyDeviceToHost));
        EXPECT_EQ(qs, QuantizeActivationsHost(g, 1, n).qs);
      }
    }
  }
}

TEST(CudaKernels, EmbeddingLookupIsExact) {
  FLOTILLA_REQUIRE_GPU();
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    const int64_t rows = 50, cols = kc::IsQuantized(type) ? 64 : 60;
    const auto ggml = QuantizeMatrix(type, RandomVector(rows * cols, 40), rows, cols);
    const auto dm = Upload(type, ggml, rows, cols);
    const std::vector<int32_t> tokens = {3, 49, 0, 3};
    DeviceBuffer<int32_t> td(tokens);
    const int64_t ldx = 72;
    DeviceBuffer<float> x(tokens.size() * ldx);
    CUDA_OK(kc::EmbedTokens(dm->w, td.get(), static_cast<int>(tokens.size()), x.get(), ldx, nullptr));
    const auto got = x.Download();
    std::vector<float> row(cols);
    for (size_t t = 0; t < tokens.size(); ++t) {
      kernels::DequantizeRow(type, ggml.data() + tokens[t] * kernels::RowBytes(type, cols), row.data(), cols);
      for (int64_t k = 0; k < cols; ++k) ASSERT_EQ(got[t * ldx + k], row[k]) << kernels::Info(type).name;
    }
  }
}

// A paged cache with random block tables for a few sequences, filled through RopeAndStoreKv.
struct AttentionCase {
  int n_heads, n_kv, hd, bs;
  kc::KvType kv_type;
};

std::vector<float> RopeTable(int context, int hd) {
  std::vector<float> t(static_cast<size_t>(context) * hd);
  for (int p = 0; p < context; ++p) {
    for (int i = 0; i < hd / 2; ++i) {
      const double a = p * std::pow(10000.0, -2.0 * i / hd);
      t[(static_cast<size_t>(p) * hd / 2 + i) * 2] = static_cast<float>(std::cos(a));
      t[(static_cast<size_t>(p) * hd / 2 + i) * 2 + 1] = static_cast<float>(std::sin(a));
    }
  }
  return t;
}

TEST(CudaKernels, RopeStoreAndAttentionMatchTheReference) {
  FLOTILLA_REQUIRE_GPU();
  const auto& kt = kernels::cpu::ScalarKernels();
  const std::vector<AttentionCase> cases = {
      {8, 4, 8, 16, kc::KvType::kF32},   {8, 4, 8, 16, kc::KvType::kF16},   {4, 4, 16, 7, kc::KvType::kF32},
      {8, 2, 64, 16, kc::KvType::kF16},  {32, 8, 128, 16, kc::KvType::kF32}, {32, 8, 128, 16, kc::KvType::kF16},
      {4, 1, 256, 32, kc::KvType::kF32}, {6, 3, 32, 5, kc::KvType::kF16}};
  const int context = 800;
  std::mt19937 rng(1);
  for (const AttentionCase& ac : cases) {
    SCOPED_TRACE(testing::Message() << "heads " << ac.n_heads << "/" << ac.n_kv << " hd " << ac.hd << " bs " << ac.bs
                                    << " kv " << (ac.kv_type == kc::KvType::kF16 ? "f16" : "f32"));
    const int qd = ac.n_heads * ac.hd, kvd = ac.n_kv * ac.hd;
    // Three sequences of lengths 700, 37 and 1, each filled by one batch of all its tokens.
    const std::vector<int> lens = {700, 37, 1};
    const int blocks_per_seq = (context + ac.bs - 1) / ac.bs;
    const int num_blocks = 3 * blocks_per_seq;
    std::vector<int32_t> perm(num_blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<int32_t> table_start = {0, blocks_per_seq, 2 * blocks_per_seq};
    std::vector<int32_t> positions, seq;
    for (int s = 0; s < 3; ++s) {
      for (int p = 0; p < lens[s]; ++p) {
        positions.push_back(p);
        seq.push_back(s);
      }
    }
    const int T = static_cast<int>(positions.size());
    const int64_t ldq = qd + 2 * kvd + 8;
    const auto qkv = RandomVector(T * ldq, 60 + ac.hd);
    const auto rope = RopeTable(context, ac.hd);
    DeviceBuffer<float> qkvd(qkv), roped(rope);
    DeviceBuffer<int32_t> posd(positions), seqd(seq), startd(table_start), blocksd(perm);
    const int64_t elem = ac.kv_type == kc::KvType::kF16 ? 2 : 4;
    const int64_t cache_elems = static_cast<int64_t>(num_blocks) * ac.n_kv * ac.bs * ac.hd;
    DeviceBuffer<uint8_t> kcache(cache_elems * elem), vcache(cache_elems * elem);
    kc::TokenTable tt{posd.get(), seqd.get(), startd.get(), blocksd.get()};
    kc::KvLayer kv{kcache.get(), vcache.get(), ac.kv_type, ac.n_kv, ac.hd, ac.bs};

    kc::RopeKvArgs rk;
    rk.q = qkvd.get();
    rk.ldq = ldq;
    rk.k = qkvd.get() + qd;
    rk.v = qkvd.get() + qd + kvd;
    rk.ldkv = ldq;
    rk.n_heads = ac.n_heads;
    rk.T = T;
    rk.rope = roped.get();
    rk.tokens = tt;
    rk.kv = kv;
    CUDA_OK(kc::RopeAndStoreKv(rk, nullptr));
    const auto qkv_after = qkvd.Download();

    // Reference: rotate on the CPU, store in an f32 cache of the same layout.
    std::vector<float> qref(T * qd), kcref(cache_elems, 0.0f), vcref(cache_elems, 0.0f);
    for (int t = 0; t < T; ++t) {
      const int half = ac.hd / 2;
      std::vector<float> cs(half), sn(half);
      for (int i = 0; i < half; ++i) {
        cs[i] = rope[(static_cast<size_t>(positions[t]) * half + i) * 2];
        sn[i] = rope[(static_cast<size_t>(positions[t]) * half + i) * 2 + 1];
      }
      std::copy(qkv.begin() + t * ldq, qkv.begin() + t * ldq + qd, qref.begin() + t * qd);
      kt.rope(qref.data() + t * qd, ac.n_heads, ac.hd, cs.data(), sn.data());
      std::vector<float> k(qkv.begin() + t * ldq + qd, qkv.begin() + t * ldq + qd + kvd);
      kt.rope(k.data(), ac.n_kv, ac.hd, cs.data(), sn.data());
      const int32_t block = perm[table_start[seq[t]] + positions[t] / ac.bs];
      for (int h = 0; h < ac.n_kv; ++h) {
        for (int d = 0; d < ac.hd; ++d) {
          const int64_t at = ((static_cast<int64_t>(block) * ac.n_kv + h) * ac.bs + positions[t] % ac.bs) * ac.hd + d;
          float kv_k = k[h * ac.hd + d], kv_v = qkv[t * ldq + qd + kvd + h * ac.hd + d];
          if (ac.kv_type == kc::KvType::kF16) {
            kv_k = kernels::F16ToF32(kernels::F32ToF16(kv_k));
            kv_v = kernels::F16ToF32(kernels::F32ToF16(kv_v));
          }
          kcref[at] = kv_k;
          vcref[at] = kv_v;
        }
      }
    }
    std::vector<float> qgot(T * qd);
    for (int t = 0; t < T; ++t) std::copy(qkv_after.begin() + t * ldq, qkv_after.begin() + t * ldq + qd, qgot.begin() + t * qd);
    EXPECT_LE(Nmse(qgot, qref), 1e-10) << "rotated q";
    // The stored cache, widened to f32, equals the reference cache exactly.
    auto widen = [&](const DeviceBuffer<uint8_t>& c) {
      std::vector<uint8_t> raw = c.Download();
      std::vector<float> f(cache_elems);
      for (int64_t i = 0; i < cache_elems; ++i) {
        if (elem == 4) {
          std::memcpy(&f[i], raw.data() + 4 * i, 4);
        } else {
          uint16_t h;
          std::memcpy(&h, raw.data() + 2 * i, 2);
          f[i] = kernels::F16ToF32(h);
        }
      }
      return f;
    };
    const auto kcache_got = widen(kcache), vcache_got = widen(vcache);
    EXPECT_LE(Nmse(kcache_got, kcref), 1e-12) << "K cache";
    EXPECT_EQ(vcache_got, vcref) << "V cache";

    // Reference attention over the reference cache for every token and head.
    std::vector<const int32_t*> tables(T);
    for (int t = 0; t < T; ++t) tables[t] = perm.data() + table_start[seq[t]];
    kernels::cpu::PagedAttentionArgs ra{};
    ra.q = qref.data();
    ra.q_stride = qd;
    std::vector<float> oref(T * qd);
    ra.out = oref.data();
    ra.out_stride = qd;
    ra.k_cache = kcref.data();
    ra.v_cache = vcref.data();
    ra.n_heads = ac.n_heads;
    ra.n_kv_heads = ac.n_kv;
    ra.head_dim = ac.hd;
    ra.block_size = ac.bs;
    ra.positions = positions.data();
    ra.block_tables = tables.data();
    ra.scale = 1.0f / std::sqrt(static_cast<float>(ac.hd));
    std::vector<float> scratch(context + 64);
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < ac.n_heads; ++h) kt.attention(ra, t, h, scratch.data());
    }

    kc::AttentionArgs at;
    at.q = qkvd.get();
    at.ldq = ldq;
    const int64_t ldo = qd + 8;
    DeviceBuffer<float> out(T * ldo);
    at.out = out.get();
    at.ldo = ldo;
    at.n_heads = ac.n_heads;
    at.scale = ra.scale;
    at.tokens = tt;
    at.kv = kv;
    auto check = [&](const char* what) {
      const auto got = out.Download();
      std::vector<float> g(T * qd);
      for (int t = 0; t < T; ++t) std::copy(got.begin() + t * ldo, got.begin() + t * ldo + qd, g.begin() + t * qd);
      EXPECT_LE(Nmse(g, oref), 1e-10) << what;
    };
    // Decode kernel over every token, with one partition and with several.
    std::vector<int32_t> all(T);
    std::iota(all.begin(), all.end(), 0);
    DeviceBuffer<int32_t> listd(all);
    for (int partitions : {1, 3, kc::DecodePartitions(T, ac.n_heads, context, 132)}) {
      CUDA_OK(cudaMemset(out.get(), 0, T * ldo * 4));
      DeviceBuffer<float> partial(kc::DecodeScratchFloats(T, ac.n_heads, ac.hd, partitions));
      CUDA_OK(kc::AttentionDecode(at, listd.get(), T, partitions, partial.get(), nullptr));
      check("decode");
    }
    // Prefill kernel over tiles of each sequence's run of tokens.
    const int tile = kc::PrefillTileTokens(ac.hd);
    std::vector<int32_t> tiles;
    for (int t0 = 0, s = 0; s < 3; t0 += lens[s], ++s) {
      for (int k = 0; k < lens[s]; k += tile) {
        tiles.push_back(t0 + k);
        tiles.push_back(std::min(tile, lens[s] - k));
      }
    }
    DeviceBuffer<int32_t> tilesd(tiles);
    CUDA_OK(cudaMemset(out.get(), 0, T * ldo * 4));
    CUDA_OK(kc::AttentionPrefill(at, tilesd.get(), static_cast<int>(tiles.size() / 2), nullptr));
    check("prefill");
  }
}

TEST(CudaKernels, ArgmaxAndTopK) {
  FLOTILLA_REQUIRE_GPU();
  const int M = 4, V = 128256 + 3;
  auto logits = RandomVector(M * V, 70, 4.0f);
  logits[0 * V + 77] = 50.0f;  // a clear maximum
  logits[1 * V + 900] = logits[1 * V + 12] = 60.0f;  // a tie: the lower id wins
  logits[2 * V + V - 1] = 70.0f;  // the last id
  std::fill(logits.begin() + 3 * V, logits.begin() + 4 * V, -1.0f);  // all equal
  DeviceBuffer<float> ld(logits);
  DeviceBuffer<int32_t> ids(M);
  DeviceBuffer<float> vals(M);
  CUDA_OK(kc::ArgmaxRows(ld.get(), V, M, V, ids.get(), vals.get(), nullptr));
  const auto got = ids.Download();
  EXPECT_EQ(got, (std::vector<int32_t>{77, 12, V - 1, 0}));
  for (int k : {1, 5, 40, 64}) {
    DeviceBuffer<int32_t> kid(M * k);
    DeviceBuffer<float> kval(M * k);
    CUDA_OK(kc::TopKRows(ld.get(), V, M, V, k, kval.get(), kid.get(), nullptr));
    const auto gi = kid.Download();
    const auto gv = kval.Download();
    for (int m = 0; m < M; ++m) {
      std::vector<int32_t> order(V);
      std::iota(order.begin(), order.end(), 0);
      const float* row = logits.data() + m * V;
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int a, int b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
      for (int i = 0; i < k; ++i) {
        ASSERT_EQ(gi[m * k + i], order[i]) << "row " << m << " k " << k << " rank " << i;
        ASSERT_EQ(gv[m * k + i], row[order[i]]);
      }
    }
  }
}

TEST(CudaKernels, BadArgumentsAreRefusedBeforeLaunch) {
  FLOTILLA_REQUIRE_GPU();
  kc::MatVecArgs a;
  EXPECT_EQ(kc::MatVec(a, nullptr), kc::kInvalidValue);  // no weights
  DeviceBuffer<uint8_t> mem(kc::RepackedBytes(DType::kQ8_0, 4, 64));
  a.w = kc::MakeDeviceWeight(DType::kQ8_0, 4, 64, mem.get());
  DeviceBuffer<float> y(64);
  a.y = y.get();
  a.ldy = 4;
  a.M = 9;  // more rows than the kernel takes
  EXPECT_EQ(kc::MatVec(a, nullptr), kc::kInvalidValue);
  a.M = 1;  // quantized weights without quantized activations
  EXPECT_EQ(kc::MatVec(a, nullptr), kc::kInvalidValue);
  EXPECT_EQ(kc::TopKRows(y.get(), 64, 1, 64, kc::kMaxTopK + 1, y.get(), nullptr, nullptr), kc::kInvalidValue);
}

}  // namespace
}  // namespace flotilla::cuda_testing
