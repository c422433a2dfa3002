// The sixteen-row lane layout of Q8_0 and Q4_0 weights (described in avx512_lanes.cc), shared
// by the files that read it: avx512_lanes.cc (VNNI products) and avx512_amx.cc (AMX tiles).
// Include it only from files compiled with the AVX-512 flags; like avx512_common.h its helpers
// sit in an anonymous namespace.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/act_format.h"
#include "kernels/cpu/avx512_common.h"
#include "kernels/quant.h"

namespace flotilla::kernels::cpu {
namespace {

constexpr int64_t kRows = avx512::kLaneRows;
// How far ahead the first tile over a group asks for its rows in L2 (see GroupTile).
constexpr int64_t kL2PrefetchBytes = 8192;

// A weight type's group layout: its blocks, the bytes of a position's vectors, the offset that
// makes its values unsigned. A pair of positions: both positions' vectors, then 2 x 32 bytes of
// scales.
template <class B, int64_t kVec, int32_t kOff>
struct LaneFormat {
  using Block = B;
  static constexpr int64_t kVecBytes = kVec;
  static constexpr int64_t kPairBytes = 2 * kVecBytes + 64;
  static constexpr int32_t kOffset = kOff;
};

// Q8_0: a position's 8 vectors as stored (values offset by 128). Pair: 1,088 bytes.
struct Q8Lanes : LaneFormat<BlockQ8_0, 512, 128> {
  static constexpr bool kHigh16 = false;
  static FLOTILLA_INLINE void Load(const uint8_t* v, __m512i (&w)[8]) {
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) w[k] = _mm512_load_si512(v + 64 * k);
  }
  // Row r's part of a position's vectors, from its block.
  static void Fill(const Block& blk, uint8_t* vecs, int64_t r) {
    for (int e = 0; e < 2; ++e) {
      for (int j = 0; j < 4; ++j) {
        const int8_t* q = blk.qs + 8 * OctActFormat::kElemGroup[j] + 4 * e;
        uint8_t* lane = vecs + 64 * (4 * e + j) + 4 * r;
        for (int k = 0; k < 4; ++k) lane[k] = static_cast<uint8_t>(q[k]) ^ 0x80;
      }
    }
  }
};

// Q4_0: a position's 8 vectors as nibbles in 4 (vector j's low nibbles are vector j, its high
// nibbles vector 4 + j; values 0..15 as ggml stores them, offset by 8). Pair: 576 bytes.
struct Q4Lanes : LaneFormat<BlockQ4_0, 256, 8> {
  static FLOTILLA_INLINE void Load(const uint8_t* v, __m512i (&w)[8]) {
    const __m512i m = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const __m512i p = _mm512_load_si512(v + 64 * j);
      w[j] = _mm512_and_si512(p, m);
      w[4 + j] = _mm512_and_si512(_mm512_srli_epi16(p, 4), m);
    }
  }
  // For one token: the high nibbles left in place (16 times their value; see PositionDot).
  static constexpr bool kHigh16 = true;
  static FLOTILLA_INLINE void LoadHigh16(const uint8_t* v, __m512i (&w)[8]) {
    const __m512i lo = _mm512_set1_epi8(0x0F), hi = _mm512_set1_epi8(static_cast<char>(0xF0));
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const __m512i p = _mm512_load_si512(v + 64 * j);
      w[j] = _mm512_and_si512(p, lo);
      w[4 + j] = _mm512_and_si512(p, hi);
    }
  }
  static void Fill(const Block& blk, uint8_t* vecs, int64_t r) {
    auto elem = [&](int i) { return i < 16 ? blk.qs[i] & 0x0F : blk.qs[i - 16] >> 4; };
    for (int j = 0; j < 4; ++j) {
      const int first = 8 * OctActFormat::kElemGroup[j];
      uint8_t* lane = vecs + 64 * j + 4 * r;
      for (int k = 0; k < 4; ++k) lane[k] = static_cast<uint8_t>(elem(first + k) | elem(first + 4 + k) << 4);
    }
  }
};

// The OctActFormat position of half h (0, 1) of pair k (0..3) of an oct: 2k + h in a whole oct;
// in a partial last oct, the position of its block 2k + h (kOctPos is its own inverse).
FLOTILLA_INLINE int PairPos(bool partial, int k, int h) { return partial ? OctActFormat::kOctPos[2 * k + h] : 2 * k + h; }

// Pairs in a row group (two blocks each), whole octs, and whether a last block is left alone.
FLOTILLA_INLINE int64_t Pairs(int64_t K) { return K / (2 * kQK); }
FLOTILLA_INLINE int64_t WholeOcts(int64_t K) { return K / 256; }
FLOTILLA_INLINE bool OddBlock(int64_t K) { return K / kQK % 2 != 0; }
// The OctActFormat position of that last block (the last of a partial oct).
FLOTILLA_INLINE int OddPos(int64_t K) { return OctActFormat::kOctPos[K / kQK % 8 - 1]; }
// Where the odd block's half pair starts in a group, and its byte offset in an activation row.
template <class W>
FLOTILLA_INLINE int64_t OddBlockOffset(int64_t K) { return Pairs(K) * W::kPairBytes; }
FLOTILLA_INLINE int64_t OddActOffset(int64_t K) { return WholeOcts(K) * OctActFormat::kOctBytes + 8 * OddPos(K); }

// Positions of a group in the order the products accumulate them: its pairs' halves, then an
// odd last block.
FLOTILLA_INLINE int64_t Positions(int64_t K) { return 2 * Pairs(K) + (OddBlock(K) ? 1 : 0); }
// Where position i of a group starts (its vectors; its 16 f16 scales follow at Scales).
template <class W>
FLOTILLA_INLINE const uint8_t* Vecs(const uint8_t* group, int64_t K, int64_t i) {
  if (i < 2 * Pairs(K)) return group + i / 2 * W::kPairBytes + i % 2 * W::kVecBytes;
  return group + OddBlockOffset<W>(K);
}
template <class W>
FLOTILLA_INLINE const uint8_t* Scales(const uint8_t* group, int64_t K, int64_t i) {
  if (i < 2 * Pairs(K)) return group + i / 2 * W::kPairBytes + 2 * W::kVecBytes + 32 * (i % 2);
  return group + OddBlockOffset<W>(K) + W::kVecBytes;
}

FLOTILLA_INLINE float LoadF(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace
}  // namespace flotilla::kernels::cpu
