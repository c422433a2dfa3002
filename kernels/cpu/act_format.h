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

// The AVX-512 variant's rows: octs of 8 blocks laid out so that every 32-bit lane of a dot
// product belongs to one block across four vectors (2 lanes per block): an oct's integer dot
// products accumulate in one vector, which is then converted and scaled once for 8 blocks.
// Vector j (j = 0..3) holds elements 8*E[j] .. 8*E[j]+7 of each block, E = {0, 2, 1, 3}; in
// every vector the 8 bytes of block b sit in qword kOctPos[b] (= {0, 2, 1, 3, 4, 6, 5, 7}, its
// own inverse), the order in which the weight loads of an oct come out of two in-lane qword
// unpacks and a 128-bit lane shuffle. Each oct takes 384 contiguous bytes:
//   [0, 256)   the four vectors of values (64 bytes each)
//   [256, 320) 16 int32: minus the sum of the 16 values feeding each 32-bit lane of the four
//              dot products, to remove a weight offset exactly
//   [320, 384) 16 floats: the block scales spread over their lanes (lanes 2p, 2p+1: the block
//              in qword p)
// Padding blocks are zero.
struct OctActFormat {
  static constexpr int64_t kOctBytes = 384;
  static constexpr int kOctPos[8] = {0, 2, 1, 3, 4, 6, 5, 7};
  static constexpr int kElemGroup[4] = {0, 2, 1, 3};  // E above
  static int64_t Octs(int64_t K) { return (K / 32 + 7) / 8; }
  static int64_t RowBytes(int64_t K) { return Octs(K) * kOctBytes; }
};

}  // namespace flotilla::kernels::cpu
