// The layout of quantized activation rows in the fast variants: Q8_0 values bit-exact with
// ggml's quantize_row_q8_0, laid out so that one vector load feeds the integer dot products.
//
// A row of K = 32 * nb elements is padded to nbp = nb rounded up to G blocks (zero blocks):
//   qs: nbp * 32 bytes in groups of G blocks: first the low halves (elements 0..15) of the G
//       blocks, 16 bytes each, then their high halves (elements 16..31). Low and high halves of
//       one block thus sit at the same place of two vectors, so both halves of a block land in
//       the same 32-bit lanes of a dot product (and, for Q4_0, match the nibble order).
//   d:  nbp floats, the block scales rounded through f16 as ggml stores them (0 for padding).
// The row is padded to a multiple of 64 bytes so that rows laid back to back stay aligned.
#pragma once

#include <cstdint>

namespace flotilla::kernels::cpu {

template <int G>
struct SplitActFormat {
  static constexpr int kGroup = G;
  static int64_t PaddedBlocks(int64_t K) { return (K / 32 + G - 1) / G * G; }
  static int64_t RowBytes(int64_t K) { return (PaddedBlocks(K) * 36 + 63) / 64 * 64; }
  static int64_t LoOffset(int64_t b) { return b / G * G * 32 + b % G * 16; }
  static int64_t HiOffset(int64_t b) { return LoOffset(b) + G * 16; }
  static int8_t* Qs(void* row) { return static_cast<int8_t*>(row); }
  static const int8_t* Qs(const void* row) { return static_cast<const int8_t*>(row); }
  static float* D(void* row, int64_t K) { return reinterpret_cast<float*>(static_cast<char*>(row) + PaddedBlocks(K) * 32); }
  static const float* D(const void* row, int64_t K) {
    return reinterpret_cast<const float*>(static_cast<const char*>(row) + PaddedBlocks(K) * 32);
  }
};

// The AVX-512 variant's rows: the split layout of G = 4 blocks per quad, with what every dot
// product of a quad needs from the token precomputed beside it, so a matmul step reads it with
// plain loads. Each quad takes 256 contiguous bytes:
//   [0, 64)    low halves of the 4 blocks (16 bytes each)
//   [64, 128)  high halves
//   [128, 192) 16 int32: minus the sum of the 8 values feeding each 32-bit lane of a dot product
//              (4 from the low and 4 from the high vector), to remove a weight offset exactly
//   [192, 256) 16 floats: the block scales spread over their lanes (lanes 4i..4i+3: block i)
// Padding blocks are zero.
struct QuadActFormat {
  static constexpr int64_t kQuadBytes = 256;
  static int64_t Quads(int64_t K) { return (K / 32 + 3) / 4; }
  static int64_t RowBytes(int64_t K) { return Quads(K) * kQuadBytes; }
};

}  // namespace flotilla::kernels::cpu
