// Every kernel variant against the scalar reference, on random shapes including odd ones.
// Error bounds (NMSE against the scalar result): 1e-10 for matmuls and attention (the variants
// differ only in summation order; quantized dot products are exact integers per block),
// 1e-12 for element-wise ops computed the same way, 1e-11 for ops using the vector exp
// (softmax, SiLU), whose polynomial is accurate to ~2 ulp. Q8_0 activation quantization must
// be bit-exact, in ggml's layout and in each variant's own activation layout. Within a variant,
// results must be bitwise independent of batch composition, row split and thread count, and
// the GQA group attention kernel bitwise equal to the single-head one.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/matmul.h"
#include "kernels/quant.h"
#include "tests/kernels/kernel_test_util.h"

namespace flotilla::kernels::cpu {
namespace {

using testing::Nmse;
using testing::RandomVector;

class VariantTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    fast_ = KernelsByName(GetParam().c_str());
    if (!fast_) GTEST_SKIP() << GetParam() << " is not supported on this CPU";
  }
  const KernelTable& ref_ = ScalarKernels();
  const KernelTable* fast_ = nullptr;
};

struct Shape {
  int64_t rows, K, M;
};

void RunMatMul(const KernelTable& kt, DType type, const Shape& s, const std::vector<uint8_t>& w,
               const std::vector<float>& x, std::vector<float>& y, int threads) {
  ThreadPool pool(threads);
  WeightMatrix wm{type, w.data(), s.rows, s.K, RowBytes(type, s.K)};
  std::vector<char> scratch(MatMulScratchBytes(kt, type, s.M, s.K) + 1);
  y.assign(s.rows * s.M, -1.0f);
  MatMul(kt, pool, wm, x.data(), s.M, y.data(), s.rows, scratch.data());
}

TEST_P(VariantTest, MatMulEveryTypeAndShape) {
  const std::vector<Shape> float_shapes = {{1, 8, 1}, {7, 172, 1}, {33, 172, 5}, {64, 64, 4}, {13, 3, 2}, {130, 2048, 3}, {5, 17, 9}};
  const std::vector<Shape> quant_shapes = {{1, 32, 1},    {7, 64, 1},    {33, 96, 5}, {64, 64, 4},
                                           {130, 2048, 3}, {17, 5632, 2}, {5, 32, 17}, {70, 256, 1}};
  uint64_t seed = 1;
  for (DType type : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    for (const Shape& s : IsBlockQuantized(type) ? quant_shapes : float_shapes) {
      auto wf = RandomVector(s.rows * s.K, seed++);
      auto x = RandomVector(s.M * s.K, seed++);
      std::vector<uint8_t> w(RowBytes(type, s.K) * s.rows);
      for (int64_t r = 0; r < s.rows; ++r) QuantizeRow(type, wf.data() + r * s.K, w.data() + r * RowBytes(type, s.K), s.K);
      std::vector<float> want, got, got2;
      RunMatMul(ref_, type, s, w, x, want, 1);
      RunMatMul(*fast_, type, s, w, x, got, 1);
      RunMatMul(*fast_, type, s, w, x, got2, 2);
      const std::string what = std::string(Info(type).name) + " rows=" + std::to_string(s.rows) + " K=" +
                               std::to_string(s.K) + " M=" + std::to_string(s.M);
      EXPECT_LT(Nmse(got, want), 1e-10) << what;
      EXPECT_EQ(got, got2) << what << ": thread count changed the result";
      // The reference itself is the f32 product of the dequantized weights, up to quantization error.
      std::vector<float> deq(s.rows * s.K), exact(s.rows * s.M);
      for (int64_t r = 0; r < s.rows; ++r) DequantizeRow(type, w.data() + r * RowBytes(type, s.K), deq.data() + r * s.K, s.K);
      for (int64_t m = 0; m < s.M; ++m)
        for (int64_t r = 0; r < s.rows; ++r)
          exact[m * s.rows + r] = std::inner_product(deq.begin() + r * s.K, deq.begin() + (r + 1) * s.K, x.begin() + m * s.K, 0.0f);
      EXPECT_LT(Nmse(want, exact), IsBlockQuantized(type) ? 1e-3 : 1e-10) << what;
    }
  }
}

std::vector<uint8_t> RandomWeights(DType type, int64_t rows, int64_t K, uint64_t seed) {
  auto wf = RandomVector(rows * K, seed);
  std::vector<uint8_t> w(RowBytes(type, K) * rows);
  for (int64_t r = 0; r < rows; ++r) QuantizeRow(type, wf.data() + r * K, w.data() + r * RowBytes(type, K), K);
  return w;
}

// Calls the kernel directly on row ranges (no pool): ranges[i]..ranges[i+1].
std::vector<float> DirectMatMul(const KernelTable& kt, DType type, int64_t rows, int64_t K, const std::vector<uint8_t>& w,
                                const float* x, int64_t M, const std::vector<int64_t>& ranges) {
  WeightMatrix wm{type, w.data(), rows, K, RowBytes(type, K)};
  std::vector<char> act(MatMulScratchBytes(kt, type, M, K) + 64);
  QuantizeActivations(kt, type, x, K, K, 0, M, act.data());
  std::vector<float> y(rows * M, -1.0f);
  const MatMulArgs a = MakeMatMulArgs(kt, wm, IsBlockQuantized(type) ? static_cast<const void*>(act.data()) : x, K, M, y.data(), rows);
  for (size_t i = 0; i + 1 < ranges.size(); ++i) kt.matmul[static_cast<int>(type)](a, ranges[i], ranges[i + 1]);
  return y;
}

const DType kAllTypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0};

// Every remainder of the tiles: rows not a multiple of the row tile, tokens not a multiple of the
// token tile (tiles of 8, then 4, then 1..3 tokens in the AVX-512 variant), inner sizes leaving
// 1..7 blocks (or 1..15 floats) after the last whole step.
TEST_P(VariantTest, MatMulTileRemaindersAndOddBlockCounts) {
  uint64_t seed = 1000;
  for (DType type : kAllTypes) {
    const std::vector<int64_t> ks = IsBlockQuantized(type) ? std::vector<int64_t>{32, 64, 96, 128, 160, 224, 256, 288, 416, 480}
                                                           : std::vector<int64_t>{1, 5, 15, 16, 17, 31, 33, 100};
    for (int64_t K : ks) {
      for (int64_t rows : {1, 2, 3, 5, 6, 9}) {
        const auto w = RandomWeights(type, rows, K, seed++);
        for (int64_t M : {1, 2, 3, 5, 6, 8, 9, 15, 16}) {
          const auto x = RandomVector(M * K, seed++);
          const auto want = DirectMatMul(ref_, type, rows, K, w, x.data(), M, {0, rows});
          const auto got = DirectMatMul(*fast_, type, rows, K, w, x.data(), M, {0, rows});
          EXPECT_LT(Nmse(got, want), 1e-10) << Info(type).name << " rows=" << rows << " K=" << K << " M=" << M;
        }
      }
    }
  }
}

// A token's results must not depend on the other tokens of the call nor on how the caller split
// the rows: every (row, token) pair goes through the same instructions whatever the tile.
TEST_P(VariantTest, MatMulResultsIndependentOfBatchAndRowSplit) {
  uint64_t seed = 2000;
  for (DType type : kAllTypes) {
    const int64_t rows = 37, M = 23;  // token tiles 8, 8, 4, 3
    const int64_t K = IsBlockQuantized(type) ? 32 * 14 : 203;  // 14 blocks: a whole step of 8 (AVX-512) or 3 of 4, and some left
    const auto w = RandomWeights(type, rows, K, seed++);
    const auto x = RandomVector(M * K, seed++);
    const auto all = DirectMatMul(*fast_, type, rows, K, w, x.data(), M, {0, rows});
    const auto split = DirectMatMul(*fast_, type, rows, K, w, x.data(), M, {0, 5, 6, 17, 18, 19, 37});
    EXPECT_EQ(split, all) << Info(type).name << ": row split changed the result";
    for (int64_t m = 0; m < M; ++m) {
      // One token sums rows in groups of 16 (AVX-512): split so that groups start at other rows.
      const auto alone = DirectMatMul(*fast_, type, rows, K, w, x.data() + m * K, 1, {0, rows});
      const auto alone_split = DirectMatMul(*fast_, type, rows, K, w, x.data() + m * K, 1, {0, 3, 20, 37});
      for (int64_t r = 0; r < rows; ++r) {
        ASSERT_EQ(alone[r], all[m * rows + r]) << Info(type).name << " token " << m << " row " << r << ": batch changed the result";
        ASSERT_EQ(alone_split[r], alone[r]) << Info(type).name << " token " << m << " row " << r << ": row split changed the result";
      }
    }
  }
}

// Steps whose activations outgrow L1 (AVX-512 then runs each token tile over blocks of rows,
// and with 187 blocks over K in chunks too): against the reference, and bitwise the same as
// each token alone and under any row split.
TEST_P(VariantTest, LargeBatchesMatchTheReferenceAndEachTokenAlone) {
  uint64_t seed = 4000;
  for (DType type : {DType::kQ8_0, DType::kQ4_0}) {
    for (int64_t K : {32 * 67, 32 * 187}) {  // 8 whole octs and 3 blocks; 23 and 3
      const int64_t rows = 75;
      const auto w = RandomWeights(type, rows, K, seed++);
      for (int64_t M : {9, 16, 23}) {
        const auto x = RandomVector(M * K, seed++);
        const auto want = DirectMatMul(ref_, type, rows, K, w, x.data(), M, {0, rows});
        const auto all = DirectMatMul(*fast_, type, rows, K, w, x.data(), M, {0, rows});
        EXPECT_LT(Nmse(all, want), 1e-10) << Info(type).name << " M=" << M;
        const auto split = DirectMatMul(*fast_, type, rows, K, w, x.data(), M, {0, 3, 40, 41, 75});
        EXPECT_EQ(split, all) << Info(type).name << " M=" << M << ": row split changed the result";
        for (int64_t m = 0; m < M; ++m) {
          const auto alone = DirectMatMul(*fast_, type, rows, K, w, x.data() + m * K, 1, {0, rows});
          for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(alone[r], all[m * rows + r]) << Info(type).name << " M=" << M;
        }
      }
    }
  }
}

// Packed weights (variants with a packed layout): the packed kernel's results equal the in-place
// kernel's bit for bit (to rounding where the layout sums in another order: packed_same_bits;
// there each token's results in a batch still equal its results alone), over tile remainders, inner sizes with a partial last oct, one-token
// row groups, row splits (ranges starting and ending inside a float row group) and row counts
// that leave rows after the last group; packing writes exactly its rows, and packing a matrix
// in pieces that start on multiples of kPackRowAlign rows writes the same bytes as packing it
// at once; short quantized rows and float rows not made of whole 16-element chunks are not
// packed.
TEST_P(VariantTest, PackedWeightsGiveTheInPlaceResults) {
  if (fast_->pack_rows == nullptr) GTEST_SKIP() << GetParam() << " has no packed layout";
  uint64_t seed = 3000;
  for (DType type : kAllTypes) {
    const bool quant = IsBlockQuantized(type);
    if (quant) {
      // The row layout pads to whole octs (a 2-block row would more than quadruple): short rows
      // are packed only where the layout needs no padding (AVX-512's sixteen-row groups).
      const int64_t p64 = fast_->packed_row_bytes(type, 64);
      EXPECT_TRUE(p64 == 0 || p64 == RowBytes(type, 64)) << p64;
    } else {
      EXPECT_EQ(fast_->packed_row_bytes(type, 172), 0) << Info(type).name << ": 172 is not whole chunks of 16";
    }
    int packed_shapes = 0;
    // 31, 43, 70 and 9 blocks leave a partial last oct (in sixteen-row groups, where that layout
    // applies, odd counts leave a last block alone: 288 and 1,376 are stories15M's and
    // stories42M's widths); 576 and 896 (2 and 4 blocks over whole octs) are small models'
    // widths; 768 and 2048 are the 110M and 1B widths; 32, 64 and 96 are less than an oct
    // (64: stories260K's width).
    const std::vector<int64_t> ks = quant ? std::vector<int64_t>{32, 64, 96, 256, 288, 512, 576, 768, 896, 32 * 31, 32 * 43, 2048, 32 * 70}
                                          : std::vector<int64_t>{16, 48, 256, 768, 2048};
    for (int64_t K : ks) {
      const int64_t prb = fast_->packed_row_bytes(type, K);
      if (prb == 0) continue;  // padding would cost more than 1/16 of the row
      ++packed_shapes;
      const bool same_bits = fast_->packed_same_bits == nullptr || fast_->packed_same_bits(type, K);
      if (quant) {
        EXPECT_EQ(prb * kPackRowAlign % 64, 0) << "packed pieces start 64-byte aligned";
      }
      EXPECT_LE(prb * 16, RowBytes(type, K) * 17) << "padding stays within 1/16 of the row";
      // 117 rows: seven row groups and five rows more, so one-token products run their several
      // streams side by side (avx512_lanes.cc) with groups and rows left over.
      for (int64_t rows : {1, 3, 18, 37, 117}) {
        const auto w = RandomWeights(type, rows, K, seed++);
        // Guard bytes after the packed rows must stay untouched.
        std::vector<uint8_t> buf(rows * prb + 64 + 128, 0xA5);
        auto* packed = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) / 64 * 64);
        fast_->pack_rows(type, w.data(), RowBytes(type, K), rows, K, packed);
        for (int i = 0; i < 64; ++i) ASSERT_EQ(packed[rows * prb + i], 0xA5) << "pack_rows wrote past its rows";
        std::vector<uint8_t> pieces_buf(rows * prb + 128);
        auto* pieces = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(pieces_buf.data()) + 63) / 64 * 64);
        for (int64_t r0 = 0; r0 < rows; r0 += kPackRowAlign) {
          fast_->pack_rows(type, w.data() + r0 * RowBytes(type, K), RowBytes(type, K), std::min(kPackRowAlign, rows - r0), K,
                           pieces + r0 * prb);
        }
        ASSERT_EQ(std::memcmp(pieces, packed, rows * prb), 0) << Info(type).name << " rows=" << rows << " K=" << K;
        const WeightMatrix in_place{type, w.data(), rows, K, RowBytes(type, K)};
        const WeightMatrix pw{type, packed, rows, K, prb, true};
        for (int64_t M : {1, 2, 3, 4, 5, 8, 9, 16, 23}) {
          const auto x = RandomVector(M * K, seed++);
          std::vector<char> act(MatMulScratchBytes(*fast_, type, M, K) + 64);
          QuantizeActivations(*fast_, type, x.data(), K, K, 0, M, act.data());
          const void* in = quant ? static_cast<const void*>(act.data()) : x.data();
          std::vector<float> want(rows * M, -1.0f), got(rows * M, -2.0f), split(rows * M, -3.0f);
          MatMulFor(*fast_, in_place)(MakeMatMulArgs(*fast_, in_place, in, K, M, want.data(), rows), 0, rows);
          MatMulFor(*fast_, pw)(MakeMatMulArgs(*fast_, pw, in, K, M, got.data(), rows), 0, rows);
          const MatMulArgs sa = MakeMatMulArgs(*fast_, pw, in, K, M, split.data(), rows);
          for (int64_t r0 = 0; r0 < rows; r0 += 7) MatMulFor(*fast_, pw)(sa, r0, std::min(rows, r0 + 7));
          // And in three ranges, the middle one starting and ending inside row groups.
          std::vector<float> split3(rows * M, -5.0f);
          const MatMulArgs sa3 = MakeMatMulArgs(*fast_, pw, in, K, M, split3.data(), rows);
          const int64_t c0 = std::min<int64_t>(rows, 5), c1 = std::min<int64_t>(rows, 90);
          for (auto [r0, r1] : {std::pair{int64_t{0}, c0}, std::pair{c0, c1}, std::pair{c1, rows}}) {
            if (r0 < r1) MatMulFor(*fast_, pw)(sa3, r0, r1);
          }
          if (same_bits) {
            ASSERT_EQ(got, want) << Info(type).name << " rows=" << rows << " K=" << K << " M=" << M;
          } else {
            float scale = 0;
            for (float v : want) scale = std::max(scale, std::abs(v));
            for (size_t i = 0; i < want.size(); ++i) {
              ASSERT_NEAR(got[i], want[i], 1e-5f * scale) << Info(type).name << " rows=" << rows << " K=" << K << " M=" << M;
            }
            // The last token alone gives its batch results bit for bit.
            std::vector<float> alone(rows, -4.0f);
            const char* last = quant ? act.data() + (M - 1) * fast_->act_row_bytes(type, K) : nullptr;
            const void* last_in = quant ? static_cast<const void*>(last) : x.data() + (M - 1) * K;
            MatMulFor(*fast_, pw)(MakeMatMulArgs(*fast_, pw, last_in, K, 1, alone.data(), rows), 0, rows);
            for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(alone[r], got[(M - 1) * rows + r]) << "K=" << K << " M=" << M;
          }
          ASSERT_EQ(split, got) << Info(type).name << " rows=" << rows << " K=" << K << " M=" << M << ": split";
          ASSERT_EQ(split3, got) << Info(type).name << " rows=" << rows << " K=" << K << " M=" << M << ": three ranges";
        }
      }
    }
    EXPECT_GE(packed_shapes, 3) << Info(type).name;
  }
}

// The variant's activation rows hold exactly ggml's Q8_0 blocks (values and f16 scales).
TEST_P(VariantTest, ActivationFormatHoldsGgmlBlocks) {
  for (DType w : {DType::kQ8_0, DType::kQ4_0}) {
    for (int64_t K : {32, 64, 96, 128, 160, 2048, 5632}) {
      auto x = RandomVector(K, K + 7, 2.0f);
      x[0] = 0.5f;
      std::vector<uint8_t> want(RowBytes(DType::kQ8_0, K)), got(want.size(), 0xcd);
      ref_.quantize_q8_0(x.data(), want.data(), K);
      std::vector<uint8_t> act(fast_->act_row_bytes(w, K), 0xab);
      fast_->quantize_act(w, x.data(), act.data(), K);
      fast_->act_to_q8_0(w, act.data(), got.data(), K);
      EXPECT_EQ(got, want) << Info(w).name << " K=" << K;
      EXPECT_EQ(fast_->act_row_bytes(w, K) % 64, 0) << "rows must stay 64-byte aligned back to back";
    }
  }
}

TEST_P(VariantTest, ActivationQuantizationIsBitExact) {
  for (int64_t n : {32, 64, 2048, 5632}) {
    auto x = RandomVector(n, n, 3.0f);
    x[5] = 0.5f;  // exact halves exercise the rounding mode
    x[6] = -2.5f;
    std::vector<uint8_t> a(RowBytes(DType::kQ8_0, n)), b(a.size());
    ref_.quantize_q8_0(x.data(), a.data(), n);
    fast_->quantize_q8_0(x.data(), b.data(), n);
    EXPECT_EQ(a, b) << n;
  }
  std::vector<float> zeros(64, 0.0f);
  std::vector<uint8_t> a(RowBytes(DType::kQ8_0, 64)), b(a.size());
  ref_.quantize_q8_0(zeros.data(), a.data(), 64);
  fast_->quantize_q8_0(zeros.data(), b.data(), 64);
  EXPECT_EQ(a, b);
}

TEST_P(VariantTest, ElementwiseOps) {
  for (int64_t n : {1, 7, 64, 172, 1000}) {
    auto x = RandomVector(n, 100 + n, 4.0f), w = RandomVector(n, 200 + n), u = RandomVector(n, 300 + n);
    std::vector<float> a(n), b(n);
    ref_.rms_norm(x.data(), w.data(), a.data(), n, 1e-5f);
    fast_->rms_norm(x.data(), w.data(), b.data(), n, 1e-5f);
    EXPECT_LT(Nmse(b, a), 1e-12) << "rms_norm " << n;
    ref_.silu_mul(x.data(), u.data(), a.data(), n);
    fast_->silu_mul(x.data(), u.data(), b.data(), n);
    EXPECT_LT(Nmse(b, a), 1e-11) << "silu_mul " << n;
    ref_.add(x.data(), u.data(), a.data(), n);
    fast_->add(x.data(), u.data(), b.data(), n);
    EXPECT_EQ(a, b) << "add " << n;
    b = x;  // in place, as the residual adds run
    fast_->add(b.data(), u.data(), b.data(), n);
    EXPECT_EQ(a, b) << "add in place " << n;
    a = x;
    b = x;
    ref_.softmax(a.data(), n);
    fast_->softmax(b.data(), n);
    EXPECT_LT(Nmse(b, a), 1e-11) << "softmax " << n;
    EXPECT_NEAR(std::accumulate(b.begin(), b.end(), 0.0), 1.0, 1e-5);
  }
  // Softmax stays finite with large and very negative inputs.
  std::vector<float> big = {1000.0f, -1000.0f, 999.0f, -1e30f, 0.0f, 3.0f, 1000.0f, 2.0f, 1.0f};
  fast_->softmax(big.data(), big.size());
  for (float v : big) EXPECT_TRUE(std::isfinite(v));
  EXPECT_NEAR(big[0], big[6], 1e-7);
}

TEST_P(VariantTest, Rope) {
  for (int hd : {2, 8, 64, 128}) {
    const int heads = 3;
    auto x = RandomVector(heads * hd, hd);
    auto c = RandomVector(hd / 2, hd + 1), s = RandomVector(hd / 2, hd + 2);
    auto a = x, b = x;
    ref_.rope(a.data(), heads, hd, c.data(), s.data());
    fast_->rope(b.data(), heads, hd, c.data(), s.data());
    EXPECT_LT(Nmse(b, a), 1e-12) << hd;
  }
}

// Block ids 0..n-1 in a random order: tables that scatter a sequence over the cache.
std::vector<int32_t> ShuffledIds(int n, std::mt19937& rng) {
  std::vector<int32_t> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  return ids;
}

// The arguments every attention test shares: T tokens of n_heads query heads in q, their
// positions and block tables; the caches and the output are each test's own.
PagedAttentionArgs AttentionArgs(const std::vector<float>& q, int n_heads, int n_kv, int hd, int bs,
                                 const std::vector<int32_t>& positions, const std::vector<const int32_t*>& tables) {
  PagedAttentionArgs args{};
  args.q = q.data();
  args.q_stride = n_heads * hd;
  args.n_heads = n_heads;
  args.n_kv_heads = n_kv;
  args.head_dim = hd;
  args.block_size = bs;
  args.positions = positions.data();
  args.block_tables = tables.data();
  args.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  args.out_stride = n_heads * hd;
  return args;
}

TEST_P(VariantTest, PagedAttentionWithGqaAndScatteredBlocks) {
  std::mt19937 rng(5);
  for (int hd : {8, 64}) {
    for (int bs : {1, 16}) {
      const int n_heads = 8, n_kv = 2, n_blocks = 40, T = 5;
      const int64_t block_floats = static_cast<int64_t>(n_kv) * bs * hd;
      auto k = RandomVector(n_blocks * block_floats, hd * 7 + bs);
      auto v = RandomVector(n_blocks * block_floats, hd * 11 + bs);
      auto q = RandomVector(T * n_heads * hd, hd * 13 + bs);
      const std::vector<int32_t> ids = ShuffledIds(n_blocks, rng);
      std::vector<int32_t> positions(T);
      std::vector<const int32_t*> tables(T);
      const int max_pos = std::min(n_blocks * bs, 37);
      for (int t = 0; t < T; ++t) {
        positions[t] = static_cast<int32_t>(rng() % max_pos);
        tables[t] = ids.data() + (t % 2);  // two sequences with different tables
      }
      if (bs == 1) positions[0] = n_blocks - 2;
      PagedAttentionArgs args = AttentionArgs(q, n_heads, n_kv, hd, bs, positions, tables);
      args.k_cache = k.data();
      args.v_cache = v.data();
      std::vector<float> a(T * n_heads * hd), b(a.size()), scratch(2 * 1024);
      args.out = a.data();
      for (int t = 0; t < T; ++t)
        for (int h = 0; h < n_heads; ++h) ref_.attention(args, t, h, scratch.data());
      args.out = b.data();
      ThreadPool pool(2);
      PagedAttention(*fast_, pool, args, T, scratch.data(), 1024);
      EXPECT_LT(Nmse(b, a), 1e-10) << "hd=" << hd << " bs=" << bs;
    }
  }
}

// A half-precision KV cache: every variant against the scalar reference reading the same half
// values (bound 1e-10), group and single-head kernels bit for bit, and the result close to the
// f32 cache (half rounding of K and V only: bound 1e-5). f32 -> half conversion is bit-exact.
TEST_P(VariantTest, PagedAttentionWithHalfKvCache) {
  std::mt19937 rng(23);
  for (int n_kv : {8, 2}) {
    for (int hd : {8, 20, 64, 100, 128}) {
      const int n_heads = 8, bs = 16, n_blocks = 10, T = 3;
      const int64_t elems = static_cast<int64_t>(n_blocks) * n_kv * bs * hd;
      auto k = RandomVector(elems, hd * 31 + n_kv);
      auto v = RandomVector(elems, hd * 37 + n_kv);
      auto q = RandomVector(T * n_heads * hd, hd * 41 + n_kv);
      std::vector<uint16_t> kh(elems), vh(elems), kh2(elems);
      ref_.f32_to_f16(k.data(), kh.data(), elems);
      ref_.f32_to_f16(v.data(), vh.data(), elems);
      fast_->f32_to_f16(k.data(), kh2.data(), elems);
      EXPECT_EQ(kh, kh2) << "f32_to_f16 differs from the reference";
      const std::vector<int32_t> ids = ShuffledIds(n_blocks, rng);
      std::vector<int32_t> positions = {0, 21, n_blocks * bs - 1};
      std::vector<const int32_t*> tables(T, ids.data());
      PagedAttentionArgs args = AttentionArgs(q, n_heads, n_kv, hd, bs, positions, tables);
      std::vector<float> full(T * n_heads * hd), ref(full.size()), head(full.size()), group(full.size());
      std::vector<float> scratch(AttentionGroupScratch(n_heads, n_kv, hd, n_blocks * bs));
      for (int t = 0; t < T; ++t) {
        args.k_cache = k.data();
        args.v_cache = v.data();
        args.kv = KvElem::kF32;
        args.out = full.data();
        for (int h = 0; h < n_heads; ++h) ref_.attention(args, t, h, scratch.data());
        args.k_cache = kh.data();
        args.v_cache = vh.data();
        args.kv = KvElem::kF16;
        args.out = ref.data();
        for (int h = 0; h < n_heads; ++h) ref_.attention(args, t, h, scratch.data());
        args.out = head.data();
        for (int h = 0; h < n_heads; ++h) fast_->attention(args, t, h, scratch.data());
        args.out = group.data();
        for (int g = 0; g < n_kv; ++g) fast_->attention_group(args, t, g, scratch.data());
      }
      EXPECT_LT(Nmse(group, ref), 1e-10) << "n_kv=" << n_kv << " hd=" << hd;
      EXPECT_EQ(group, head) << "n_kv=" << n_kv << " hd=" << hd;
      EXPECT_LT(Nmse(ref, full), 1e-5) << "n_kv=" << n_kv << " hd=" << hd;
    }
  }
}

// A Q8_0 KV cache (rows of head_dim / 32 ggml blocks): every variant's single-head and group
// kernels give bit for bit what the same kernels give over an f32 cache holding the dequantized
// values (a Q8_0 value is read as the same product DequantizeRow forms), the scalar reference
// agrees (bound 1e-10), and the result stays near the unquantized cache (8-bit rounding of K and
// V only: bound 1e-3).
TEST_P(VariantTest, PagedAttentionWithQ8KvCache) {
  std::mt19937 rng(29);
  for (int n_kv : {8, 2}) {
    for (int hd : {32, 64, 128}) {
      const int n_heads = 8, bs = 16, n_blocks = 10, T = 3;
      const int64_t rows = static_cast<int64_t>(n_blocks) * n_kv * bs, elems = rows * hd;
      auto k = RandomVector(elems, hd * 43 + n_kv);
      auto v = RandomVector(elems, hd * 47 + n_kv);
      auto q = RandomVector(T * n_heads * hd, hd * 53 + n_kv);
      std::vector<BlockQ8_0> kq(elems / kQK), vq(elems / kQK);
      std::vector<float> kd(elems), vd(elems);
      for (int64_t r = 0; r < rows; ++r) {
        fast_->quantize_q8_0(k.data() + r * hd, kq.data() + r * hd / kQK, hd);
        fast_->quantize_q8_0(v.data() + r * hd, vq.data() + r * hd / kQK, hd);
        DequantizeRow(DType::kQ8_0, kq.data() + r * hd / kQK, kd.data() + r * hd, hd);
        DequantizeRow(DType::kQ8_0, vq.data() + r * hd / kQK, vd.data() + r * hd, hd);
      }
      const std::vector<int32_t> ids = ShuffledIds(n_blocks, rng);
      std::vector<int32_t> positions = {0, 21, n_blocks * bs - 1};
      std::vector<const int32_t*> tables(T, ids.data());
      PagedAttentionArgs args = AttentionArgs(q, n_heads, n_kv, hd, bs, positions, tables);
      const size_t out = static_cast<size_t>(T) * n_heads * hd;
      std::vector<float> full(out), deq_head(out), deq_group(out), ref(out), head(out), group(out);
      std::vector<float> scratch(AttentionGroupScratch(n_heads, n_kv, hd, n_blocks * bs));
      // Token t over the caches k_cache / v_cache: the reference per head into `reference`, this
      // variant per head and per KV group into `per_head` and `per_group`.
      auto run = [&](int t, const void* kc, const void* vc, bool q8, float* reference, float* per_head, float* per_group) {
        args.k_cache = kc;
        args.v_cache = vc;
        args.kv = q8 ? KvElem::kQ8_0 : KvElem::kF32;
        args.out = reference;
        for (int h = 0; h < n_heads; ++h) ref_.attention(args, t, h, scratch.data());
        args.out = per_head;
        for (int h = 0; h < n_heads; ++h) fast_->attention(args, t, h, scratch.data());
        args.out = per_group;
        for (int g = 0; g < n_kv; ++g) fast_->attention_group(args, t, g, scratch.data());
      };
      std::vector<float> unused_head(out), unused_group(out), unused_ref(out);
      for (int t = 0; t < T; ++t) {
        run(t, k.data(), v.data(), false, full.data(), unused_head.data(), unused_group.data());
        run(t, kd.data(), vd.data(), false, unused_ref.data(), deq_head.data(), deq_group.data());
        run(t, kq.data(), vq.data(), true, ref.data(), head.data(), group.data());
      }
      EXPECT_EQ(head, deq_head) << "n_kv=" << n_kv << " hd=" << hd;
      EXPECT_EQ(group, deq_group) << "n_kv=" << n_kv << " hd=" << hd;
      EXPECT_LT(Nmse(group, ref), 1e-10) << "n_kv=" << n_kv << " hd=" << hd;
      EXPECT_LT(Nmse(ref, full), 1e-3) << "n_kv=" << n_kv << " hd=" << hd;
      EXPECT_GT(Nmse(ref, full), 0) << "the cache was not quantized";
    }
  }
}

// The group kernel (all query heads of a KV head, K/V read once) against the scalar reference
// per head, for group sizes 1..8 and head sizes with and without a vector tail; and bit for bit
// against the same variant's single-head kernel.
TEST_P(VariantTest, AttentionGroupMatchesPerHead) {
  std::mt19937 rng(17);
  for (int n_kv : {8, 4, 2, 1}) {
    for (int hd : {8, 20, 48, 64, 100, 128}) {
      const int n_heads = 8, bs = 16, n_blocks = 12, T = 3;
      const int64_t block_floats = static_cast<int64_t>(n_kv) * bs * hd;
      auto k = RandomVector(n_blocks * block_floats, hd * 3 + n_kv);
      auto v = RandomVector(n_blocks * block_floats, hd * 5 + n_kv);
      auto q = RandomVector(T * n_heads * hd, hd * 7 + n_kv);
      const std::vector<int32_t> ids = ShuffledIds(n_blocks, rng);
      std::vector<int32_t> positions = {0, 17, n_blocks * bs - 1};
      std::vector<const int32_t*> tables(T, ids.data());
      PagedAttentionArgs args = AttentionArgs(q, n_heads, n_kv, hd, bs, positions, tables);
      args.k_cache = k.data();
      args.v_cache = v.data();
      std::vector<float> ref(T * n_heads * hd), head(ref.size()), group(ref.size());
      std::vector<float> scratch(AttentionGroupScratch(n_heads, n_kv, hd, n_blocks * bs));
      for (int t = 0; t < T; ++t) {
        args.out = ref.data();
        for (int h = 0; h < n_heads; ++h) ref_.attention(args, t, h, scratch.data());
        args.out = head.data();
        for (int h = 0; h < n_heads; ++h) fast_->attention(args, t, h, scratch.data());
        args.out = group.data();
        for (int g = 0; g < n_kv; ++g) fast_->attention_group(args, t, g, scratch.data());
      }
      EXPECT_LT(Nmse(group, ref), 1e-10) << "n_kv=" << n_kv << " hd=" << hd;
      EXPECT_EQ(group, head) << "n_kv=" << n_kv << " hd=" << hd;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cpu, VariantTest, ::testing::Values("avx2", "avxvnni", "avx512"));

// The best variant is the most capable one this CPU runs: avx512, then avxvnni, then avx2.
TEST(Dispatch, BestVariantIsTheMostCapableSupported) {
  if (const char* forced = std::getenv("FLOTILLA_ISA"); forced && *forced) GTEST_SKIP() << "FLOTILLA_ISA=" << forced;
  std::string want = "scalar";
  for (const char* isa : {"avx2", "avxvnni", "avx512"}) {
    if (KernelsByName(isa) != nullptr) want = isa;
  }
  EXPECT_EQ(std::string(BestKernels().isa), want);
  EXPECT_EQ(KernelsByName("nonsense"), nullptr);
  // Each variant a CPU runs implies the ones below it.
  if (KernelsByName("avx512") != nullptr || KernelsByName("avxvnni") != nullptr) {
    EXPECT_NE(KernelsByName("avx2"), nullptr);
  }
}

}  // namespace
}  // namespace flotilla::kernels::cpu
