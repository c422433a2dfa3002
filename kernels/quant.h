// ggml block layouts and the reference quantizers/dequantizers. The quantizers are bit-exact
// with ggml's `quantize_row_*_ref`, so files we write load in llama.cpp and vice versa.
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace flotilla::kernels {

inline constexpr int kQK = 32;  // elements per Q8_0 / Q4_0 block

struct BlockQ8_0 {
  uint16_t d;  // scale, IEEE half
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0) == 34);

// Element j < 16 is the low nibble of qs[j]; element j + 16 the high nibble. Value = (q - 8) * d.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ4_0) == 18);

// n must be a multiple of 32.
void QuantizeRowQ8_0(const float* x, BlockQ8_0* y, int64_t n);
void QuantizeRowQ4_0(const float* x, BlockQ4_0* y, int64_t n);

// Converts one row of n elements of any supported type to f32.
void DequantizeRow(DType type, const void* src, float* dst, int64_t n);

// Converts f32 to a row of `type` (F32, F16, BF16, Q8_0, Q4_0). n must suit the block size.
void QuantizeRow(DType type, const float* src, void* dst, int64_t n);

}  // namespace flotilla::kernels
