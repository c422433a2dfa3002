// Quantizers and type conversions against ggml's definitions.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/fp16.h"
#include "kernels/quant.h"
#include "tests/kernels/kernel_test_util.h"

namespace flotilla::kernels {
namespace {

using testing::RandomVector;

TEST(Fp16, RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(F32ToF16(f), h) << std::hex << h;
  }
}

__attribute__((target("f16c"))) uint16_t HardwareF16(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }
__attribute__((target("f16c"))) float HardwareF32(uint16_t h) { return _cvtsh_ss(h); }

TEST(Fp16, MatchesHardwareConversion) {
  if (!cpu::GetCpuFeatures().f16c) GTEST_SKIP() << "no F16C";
  std::mt19937 rng(7);
  for (int i = 0; i < 2'000'000; ++i) {
    uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, 4);
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToF16(f), HardwareF16(f)) << f;
  }
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float a = F16ToF32(static_cast<uint16_t>(h)), b = HardwareF32(static_cast<uint16_t>(h));
    if (std::isnan(a)) {
      EXPECT_TRUE(std::isnan(b));
    } else {
      EXPECT_EQ(a, b);
    }
  }
}

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(F32ToBF16(1.0f), 0x3f80);
  EXPECT_EQ(BF16ToF32(0x3f80), 1.0f);
  // 1 + 2^-8 is exactly half way between two bf16 values: ties go to even (1.0).
  EXPECT_EQ(F32ToBF16(1.0f + 1.0f / 256), 0x3f80);
  EXPECT_EQ(F32ToBF16(1.0f + 3.0f / 256), 0x3f82);
  EXPECT_TRUE(std::isnan(BF16ToF32(F32ToBF16(NAN))));
}

TEST(Q8_0, MatchesGgmlReferenceOnAKnownBlock) {
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j) - 16.0f;  // amax 16
  BlockQ8_0 b;
  QuantizeRowQ8_0(x, &b, 32);
  EXPECT_EQ(b.d, F32ToF16(16.0f / 127.0f));
  const float d = 16.0f / 127.0f;
  for (int j = 0; j < 32; ++j) EXPECT_EQ(b.qs[j], static_cast<int8_t>(std::roundf(x[j] * (1.0f / d)))) << j;
  EXPECT_EQ(b.qs[0], -127);
}

TEST(Q4_0, MatchesGgmlReferenceOnAKnownBlock) {
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j) - 16.0f;  // max by magnitude: -16
  BlockQ4_0 b;
  QuantizeRowQ4_0(x, &b, 32);
  EXPECT_EQ(F16ToF32(b.d), 2.0f);  // d = max / -8
  // q = min(15, (int8)(x / d + 8.5)): x = -16 -> 0, x = -15 -> 1, x = 0 -> 8, x = 15 -> 16 clamped to 15.
  EXPECT_EQ(b.qs[0] & 0x0f, 0);
  EXPECT_EQ(b.qs[1] & 0x0f, 1);
  EXPECT_EQ(b.qs[15] >> 4, 15);  // element 31: x = 15 -> 7.5 + 8.5 = 16 -> clamped 15
  EXPECT_EQ(b.qs[0] >> 4, 8);    // element 16: x = 0 -> 8
}

TEST(Quant, DequantizeIsCloseToInput) {
  for (DType t : {DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    const int64_t n = 32 * 40;
    auto x = RandomVector(n, 11);
    std::vector<uint8_t> q(RowBytes(t, n));
    QuantizeRow(t, x.data(), q.data(), n);
    std::vector<float> y(n);
    DequantizeRow(t, q.data(), y.data(), n);
    const double bound = t == DType::kQ4_0 ? 1e-2 : t == DType::kQ8_0 ? 1e-4 : t == DType::kBF16 ? 1e-4 : 1e-6;
    EXPECT_LT(testing::Nmse(y, x), bound) << Info(t).name;
  }
}

TEST(Quant, ZeroBlockHasZeroScale) {
  std::vector<float> x(64, 0.0f);
  BlockQ8_0 b8[2];
  BlockQ4_0 b4[2];
  QuantizeRowQ8_0(x.data(), b8, 64);
  QuantizeRowQ4_0(x.data(), b4, 64);
  EXPECT_EQ(b8[0].d, 0);
  EXPECT_EQ(F16ToF32(b4[1].d), 0.0f);  // -0 as ggml computes 0 / -8
  for (int j = 0; j < 32; ++j) EXPECT_EQ(b8[1].qs[j], 0);
}

}  // namespace
}  // namespace flotilla::kernels
