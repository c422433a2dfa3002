// The AMX tile products (kernels/cpu/avx512_amx.cc), kept on for this test binary, against
// the AVX-512 lane kernels: each token of a batch bit for bit as alone (one token never takes the
// tiles), over the shapes the lane layout takes (partial last octs, odd block counts, widths
// under 256), batches with and without a partial last tile and row ranges that start and end
// inside row groups. Skipped where the CPU or the OS offers no AMX.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/amx.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/matmul.h"
#include "kernels/quant.h"
#include "tests/kernels/kernel_test_util.h"

namespace flotilla::kernels::cpu {
namespace {

using testing::RandomVector;

TEST(AmxTiles, EqualTheLaneKernelsBitForBit) {
  // Read once, on first use (this binary's first): on whatever FLOTILLA_AMX the caller set.
  setenv("FLOTILLA_AMX", "1", 1);
  if (!AmxUsable()) GTEST_SKIP() << "no AMX on this CPU (or the OS refused its tile state)";
  ASSERT_TRUE(avx512::AmxBatchesOn());
  const KernelTable* kt = Avx512Kernels();
  ASSERT_NE(kt, nullptr) << "a CPU with AMX runs the AVX-512 variant";
  uint64_t seed = 7100;
  for (DType type : {DType::kQ8_0, DType::kQ4_0}) {
    // 64 and 96: under an oct; 288: 9 blocks (an odd last block); 768 / 2048: whole octs; 1,376:
    // 43 blocks (a partial last oct with an odd block).
    for (int64_t K : {64, 96, 288, 768, 1376, 2048}) {
      const int64_t prb = kt->packed_row_bytes(type, K);
      ASSERT_GT(prb, 0) << "K=" << K;
      ASSERT_GT(avx512::AmxActBytes(type, K), 0) << "activation rows carry the tiles' part";
      const int64_t rows = 48;  // three row groups: the tile kernels cover whole groups
      const auto wf = RandomVector(rows * K, seed++);
      std::vector<uint8_t> w(RowBytes(type, K) * rows);
      for (int64_t r = 0; r < rows; ++r) QuantizeRow(type, wf.data() + r * K, w.data() + r * RowBytes(type, K), K);
      std::vector<uint8_t> buf(rows * prb + 64);
      auto* packed = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) / 64 * 64);
      kt->pack_rows(type, w.data(), RowBytes(type, K), rows, K, packed);
      const WeightMatrix pw{type, packed, rows, K, prb, true};
      for (int64_t M : {16, 17, 40, 48}) {
        const auto x = RandomVector(M * K, seed++);
        const int64_t act_bytes = kt->act_row_bytes(type, K);
        std::vector<char> act(MatMulScratchBytes(*kt, type, M, K) + 64);
        QuantizeActivations(*kt, type, x.data(), K, K, 0, M, act.data());
        // Each token alone through the lane kernels (one token's results do not depend on its batch).
        std::vector<float> want(M * rows, -1.0f);
        for (int64_t m = 0; m < M; ++m) {
          MatMulFor(*kt, pw)(MakeMatMulArgs(*kt, pw, act.data() + m * act_bytes, K, 1, want.data() + m * rows, rows), 0, rows);
        }
        std::vector<float> got(M * rows, -2.0f), split(M * rows, -3.0f);
        const MatMulFn fn = MatMulFor(*kt, pw);
        fn(MakeMatMulArgs(*kt, pw, act.data(), K, M, got.data(), rows), 0, rows);
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
            << Info(type).name << " K=" << K << " M=" << M;
        // Ranges starting and ending inside groups write exactly their rows.
        const MatMulArgs sa = MakeMatMulArgs(*kt, pw, act.data(), K, M, split.data(), rows);
        for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, 5}, {5, 37}, {37, 48}}) fn(sa, r0, r1);
        ASSERT_EQ(0, std::memcmp(split.data(), want.data(), split.size() * sizeof(float)))
            << Info(type).name << " K=" << K << " M=" << M << " (split)";
      }
    }
  }
}

}  // namespace
}  // namespace flotilla::kernels::cpu
