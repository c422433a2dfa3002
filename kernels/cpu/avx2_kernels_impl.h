// AVX2 + FMA + F16C kernels, included by two files compiled with their own flags:
// avx2_kernels.cc (FLOTILLA_AVX_VNNI 0) and avxvnni_kernels.cc (1: also AVX-VNNI, the VEX
// vpdpbusd on 256-bit vectors of Intel's 12th-generation and later client CPUs, which have no
// AVX-512; the quantized dot products then take one instruction per half where vpmaddubsw +
// vpmaddwd took two, with the same integer sums). Each is used only when the CPU reports its
// features. Everything is in an anonymous namespace so no inline function compiled here can
// stand in for a copy compiled with other flags.
//
// Quantized weights meet Q8_0 activations in SplitActFormat<4>: four blocks per step, taken as
// two pairs; per pair, the low halves (elements 0..15) of both blocks in one 32-byte vector, the
// high halves in another, so that 32-bit lanes 0..3 of a pair's dot product belong to its first
// block and lanes 4..7 to its second. One horizontal add of the two pairs' products leaves two
// lanes per block ([b0 b0 b2 b2 | b1 b1 b3 b3]), so one convert, one scale product and one FMA
// serve four blocks (they served two). Measured against two-block steps, everything in cache:
// one-token products +8 %, 8-token tiles +1 % (those are bound by vpmaddubsw / vpmaddwd).
// Weights are read in place from the ggml layout (no second copy):
//  - Q8_0: the two blocks' halves are regrouped with one permute each; products use the sign
//    trick (|w| unsigned times sign(w)*x signed, vpmaddubsw), widened per half with vpmaddwd.
//  - Q4_0: the nibbles are unsigned bytes 0..15 already in split order; vpmaddubsw(nibbles, x)
//    cannot saturate, and the offset 8 is removed with 8 * (pair sums of x), computed once per
//    token and step and shared by every row.
// Tiles of R rows x T tokens reuse each weight load for T tokens and each activation load for R
// rows; every (row, token) pair goes through the same instruction sequence whatever the tile,
// so results do not depend on batch composition or on how rows were split between threads.
#pragma once  // included once per variant file

#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels/cpu/act_format.h"
#include "kernels/cpu/attention_impl.h"
#include "kernels/cpu/elementwise_impl.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/quant.h"

#define FLOTILLA_INLINE inline __attribute__((always_inline))

namespace flotilla::kernels::cpu {
namespace {

using Fmt = SplitActFormat<4>;

FLOTILLA_INLINE float Hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

FLOTILLA_INLINE float Hmax(__m256 v) {
  __m128 lo = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_max_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_max_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

FLOTILLA_INLINE float HalfToFloat(uint16_t h) { return _cvtsh_ss(h); }

// exp(x) to about 2 ulp over the range that matters for softmax and SiLU (Cephes polynomial).
FLOTILLA_INLINE __m256 Exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.3f));
  const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500E-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// ---- activation quantization ------------------------------------------------------------------

// Rounds half away from zero, like roundf, so results equal the scalar quantizer bit for bit.
FLOTILLA_INLINE __m256 RoundHalfAway(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_sub_ps(v, t);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 sign_one = _mm256_or_ps(_mm256_andnot_ps(abs_mask, v), _mm256_set1_ps(1.0f));
  const __m256 away = _mm256_cmp_ps(_mm256_and_ps(frac, abs_mask), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  return _mm256_add_ps(t, _mm256_and_ps(away, sign_one));
}

// One block of 32 floats to 32 int8 (in order) and its f16 scale.
FLOTILLA_INLINE __m256i QuantizeBlock(const float* xb, uint16_t* d16) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  for (int j = 0; j < 4; ++j) {
    v[j] = _mm256_loadu_ps(xb + 8 * j);
    amax = _mm256_max_ps(amax, _mm256_and_ps(v[j], abs_mask));
  }
  const float d = Hmax(amax) / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  *d16 = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
  __m256i q[4];
  for (int j = 0; j < 4; ++j) q[j] = _mm256_cvtps_epi32(RoundHalfAway(_mm256_mul_ps(v[j], _mm256_set1_ps(id))));
  // Pack 32 int32 to 32 int8; the packs interleave 128-bit lanes, the permute restores order.
  const __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
  const __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void QuantizeQ8Ggml(const float* x, void* out, int64_t n) {
  auto* y = static_cast<BlockQ8_0*>(out);
  for (int64_t b = 0; b < n / kQK; ++b) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), QuantizeBlock(x + b * kQK, &y[b].d));
  }
}

int64_t ActRowBytes(DType w, int64_t K) {
  return IsBlockQuantized(w) ? Fmt::RowBytes(K) : K * static_cast<int64_t>(sizeof(float));
}

void QuantizeAct(DType, const float* x, void* out, int64_t K) {
  const int64_t nb = K / kQK, nbp = Fmt::PaddedBlocks(K);
  int8_t* qs = Fmt::Qs(out);
  float* d = Fmt::D(out, K);
  for (int64_t b = 0; b < nb; ++b) {
    uint16_t d16;
    const __m256i q = QuantizeBlock(x + b * kQK, &d16);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + Fmt::LoOffset(b)), _mm256_castsi256_si128(q));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + Fmt::HiOffset(b)), _mm256_extracti128_si256(q, 1));
    d[b] = HalfToFloat(d16);
  }
  for (int64_t b = nb; b < nbp; ++b) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + Fmt::LoOffset(b)), _mm_setzero_si128());
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + Fmt::HiOffset(b)), _mm_setzero_si128());
    d[b] = 0.0f;
  }
}

void ActToQ8(DType, const void* act, void* out, int64_t K) {
  auto* y = static_cast<BlockQ8_0*>(out);
  const int8_t* qs = Fmt::Qs(act);
  const float* d = Fmt::D(act, K);
  for (int64_t b = 0; b < K / kQK; ++b) {
    y[b].d = _cvtss_sh(d[b], _MM_FROUND_TO_NEAREST_INT);
    std::memcpy(y[b].qs, qs + Fmt::LoOffset(b), 16);
    std::memcpy(y[b].qs + 16, qs + Fmt::HiOffset(b), 16);
  }
}

// ---- quantized weights -------------------------------------------------------------------------

// Lane order of a step's combined dot product: blocks 0, 0, 2, 2, 1, 1, 3, 3.
FLOTILLA_INLINE __m256 SpreadStep(__m128 d) {
  return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d), _mm256_setr_epi32(0, 0, 2, 2, 1, 1, 3, 3));
}

// The f16 scales of four blocks `stride` bytes apart, spread in step lane order.
FLOTILLA_INLINE __m256 Scales4(const uint8_t* p, int stride) {
  uint16_t h[4];
  for (int i = 0; i < 4; ++i) std::memcpy(&h[i], p + i * stride, 2);
  uint64_t packed;
  std::memcpy(&packed, h, 8);
  return SpreadStep(_mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<int64_t>(packed))));
}

FLOTILLA_INLINE __m256 Spread4(const float* d) { return SpreadStep(_mm_loadu_ps(d)); }

// Two pairs' dot products ([b0 x4, b1 x4] and [b2 x4, b3 x4]) to step lane order.
FLOTILLA_INLINE __m256i CombinePairs(__m256i a, __m256i b) { return _mm256_hadd_epi32(a, b); }

struct Q8W {
  static constexpr int kBlockBytes = sizeof(BlockQ8_0);
  static constexpr int kBatchRows = 1;
  struct Row {
    __m256i lo, hi;  // signed values, split
  };
  static FLOTILLA_INLINE Row Load(const uint8_t* p) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 36));
    return {_mm256_permute2x128_si256(b0, b1, 0x20), _mm256_permute2x128_si256(b0, b1, 0x31)};
  }
  struct Tok {
    __m256i lo, hi;
  };
  static FLOTILLA_INLINE Tok Prepare(__m256i xlo, __m256i xhi) { return {xlo, xhi}; }
  static FLOTILLA_INLINE __m256i Dot(const Row& w, const Tok& x) {
    // |w| (unsigned) times sign(w) * x: Q8_0 values are -127..127, so nothing saturates.
#if FLOTILLA_AVX_VNNI
    const __m256i d = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w.lo, w.lo), _mm256_sign_epi8(x.lo, w.lo));
    return _mm256_dpbusd_avx_epi32(d, _mm256_sign_epi8(w.hi, w.hi), _mm256_sign_epi8(x.hi, w.hi));
#else
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i plo = _mm256_maddubs_epi16(_mm256_sign_epi8(w.lo, w.lo), _mm256_sign_epi8(x.lo, w.lo));
    const __m256i phi = _mm256_maddubs_epi16(_mm256_sign_epi8(w.hi, w.hi), _mm256_sign_epi8(x.hi, w.hi));
    return _mm256_add_epi32(_mm256_madd_epi16(plo, ones), _mm256_madd_epi16(phi, ones));
#endif
  }
};

struct Q4W {
  static constexpr int kBlockBytes = sizeof(BlockQ4_0);
  static constexpr int kBatchRows = 2;
  struct Row {
    __m256i lo, hi;  // nibbles 0..15, split
  };
  static FLOTILLA_INLINE Row Load(const uint8_t* p) {
    const __m256i v = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(p + 20), reinterpret_cast<const __m128i*>(p + 2));
    const __m256i m = _mm256_set1_epi8(0x0f);
    return {_mm256_and_si256(v, m), _mm256_and_si256(_mm256_srli_epi16(v, 4), m)};
  }
#if FLOTILLA_AVX_VNNI
  struct Tok {
    __m256i lo, hi, start;  // start: -8 * (sums of x feeding each 32-bit lane)
  };
  static FLOTILLA_INLINE Tok Prepare(__m256i xlo, __m256i xhi) {
    const __m256i eight = _mm256_set1_epi8(8);
    const __m256i s = _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), eight, xlo), eight, xhi);
    return {xlo, xhi, _mm256_sub_epi32(_mm256_setzero_si256(), s)};
  }
  static FLOTILLA_INLINE __m256i Dot(const Row& w, const Tok& x) {
    return _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(x.start, w.lo, x.lo), w.hi, x.hi);
  }
#else
  struct Tok {
    __m256i lo, hi, offset;  // offset: 8 * (pair sums of x), int16
  };
  static FLOTILLA_INLINE Tok Prepare(__m256i xlo, __m256i xhi) {
    const __m256i eight = _mm256_set1_epi8(8);
    return {xlo, xhi, _mm256_add_epi16(_mm256_maddubs_epi16(eight, xlo), _mm256_maddubs_epi16(eight, xhi))};
  }
  static FLOTILLA_INLINE __m256i Dot(const Row& w, const Tok& x) {
    // |sums| <= 2 * 2 * 15 * 127 and 8 * 4 * 127: no int16 overflow.
    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(w.lo, x.lo), _mm256_maddubs_epi16(w.hi, x.hi));
    p = _mm256_sub_epi16(p, x.offset);
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
  }
#endif
};

// Software prefetch distance ahead of each weight row pointer (decode reads two contiguous
// streams per thread: MatMulQuant).
constexpr int64_t kPrefetchBytes = 4096;

// One step of four blocks (two pairs) for R rows x T tokens. pf: bytes ahead of each row's
// step to prefetch (0: none).
template <class W, int R, int T>
FLOTILLA_INLINE void QuantStep(const uint8_t* const* wp, const int8_t* const* xq, const float* const* xd, int64_t s,
                               int64_t pf, __m256 (&acc)[R][T]) {
  typename W::Row wa[R], wb[R];
  __m256 dw[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if (pf) {
      for (int o = 0; o < 4 * W::kBlockBytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(wp[r]) + pf + o, _MM_HINT_T0);
    }
    wa[r] = W::Load(wp[r]);
    wb[r] = W::Load(wp[r] + 2 * W::kBlockBytes);
    dw[r] = Scales4(wp[r], W::kBlockBytes);
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    // Low halves of blocks 0..3, then their high halves (SplitActFormat<4>).
    const int8_t* q = xq[t] + s * 128;
    auto ld = [&](int o) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + o)); };
    const auto xa = W::Prepare(ld(0), ld(64));
    const auto xb = W::Prepare(ld(32), ld(96));
    const __m256 dx = Spread4(xd[t] + s * 4);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256i dot = CombinePairs(W::Dot(wa[r], xa), W::Dot(wb[r], xb));
      acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dw[r], dx), acc[r][t]);
    }
  }
}

// Rows n + r * row_stride (adjacent in a batch tile, far apart as one token's streams) x tokens
// m..m+T-1. Each row's arithmetic does not depend on R or the stride.
template <class W, int R, int T>
void QuantTile(const MatMulArgs& a, int64_t n, int64_t m, int64_t row_stride = 1) {
  constexpr int kStepBytes = 4 * W::kBlockBytes;
  const int64_t nb = a.K / kQK;
  const int64_t steps = nb / 4;
  const uint8_t* wq[R];
  for (int r = 0; r < R; ++r) wq[r] = static_cast<const uint8_t*>(a.w) + (n + r * row_stride) * a.w_row_bytes;
  const int8_t* xq[T];
  const float* xd[T];
  for (int t = 0; t < T; ++t) {
    const void* row = static_cast<const char*>(a.x) + (m + t) * a.x_row_bytes;
    xq[t] = Fmt::Qs(row);
    xd[t] = Fmt::D(row, a.K);
  }
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  const uint8_t* wp[R];
  const int64_t pf = kPrefetchBytes;
  for (int64_t s = 0; s < steps; ++s) {
    for (int r = 0; r < R; ++r) wp[r] = wq[r] + s * kStepBytes;
    QuantStep<W, R, T>(wp, xq, xd, s, pf, acc);
  }
  if (nb % 4) {
    // The last 1..3 blocks, copied into a zeroed whole step (zero scales: they add exact zeros).
    alignas(32) uint8_t tail[R][kStepBytes];
    for (int r = 0; r < R; ++r) {
      std::memset(tail[r], 0, sizeof(tail[r]));
      std::memcpy(tail[r], wq[r] + steps * kStepBytes, (nb % 4) * W::kBlockBytes);
      wp[r] = tail[r];
    }
    QuantStep<W, R, T>(wp, xq, xd, steps, 0, acc);
  }
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) a.y[(m + t) * a.ldy + n + r * row_stride] = Hsum(acc[r][t]);
}

// Rows n..n+R-1 for all tokens: tiles of 8 tokens, then 4, then single tokens.
template <class W, int R>
FLOTILLA_INLINE void QuantRows(const MatMulArgs& a, int64_t n) {
  int64_t m = 0;
  for (; m + 8 <= a.M; m += 8) QuantTile<W, R, 8>(a, n, m);
  for (; m + 4 <= a.M; m += 4) QuantTile<W, R, 4>(a, n, m);
  for (; m < a.M; ++m) QuantTile<W, R, 1>(a, n, m);
}

// One token reads two rows at a time, one from each half of the range: two sequential streams
// keep more misses in flight than one (1B decode at 2 threads on the AVX2 variant, alternating
// runs: Q8_0 1.11-1.19x, roofline 0.75 -> 0.85; Q4_0 1.07-1.21x; four streams 0.85-0.93x of
// two). Batches take W::kBatchRows rows x 8 tokens per tile: for Q8_0 one row (2 x 4 spilled
// with 16 ymm registers: 8 accumulators, and per row two value halves, their absolute values and
// scales; 1 x 8 measured 5-7 % faster, 1 x 4, 2 x 2 and 2 x 3 slower), for Q4_0 two (its rows
// need no absolute values, and two rows share each token's offset term: 2 x 8 measured 13 %
// faster than 1 x 8, 2 x 4 and 3 x 4 in between).
template <class W>
void MatMulQuant(const MatMulArgs& a, int64_t n0, int64_t n1) {
  if (a.M == 1) {
    const int64_t half = (n1 - n0) / 2;
    for (int64_t i = 0; i < half; ++i) QuantTile<W, 2, 1>(a, n0 + i, 0, half);
    if ((n1 - n0) % 2) QuantTile<W, 1, 1>(a, n1 - 1, 0);
    return;
  }
  int64_t n = n0;
  if constexpr (W::kBatchRows == 2) {
    if (a.M >= 4) {
      for (; n + 2 <= n1; n += 2) QuantRows<W, 2>(a, n);
    }
  }
  for (; n < n1; ++n) QuantRows<W, 1>(a, n);
}

// ---- float weights (F32, F16, BF16) against f32 activations ------------------------------------

struct F32W {
  static FLOTILLA_INLINE __m256 Load8(const void* w, int64_t k) { return _mm256_loadu_ps(static_cast<const float*>(w) + k); }
  static FLOTILLA_INLINE float Load1(const void* w, int64_t k) { return static_cast<const float*>(w)[k]; }
  static constexpr int kBytes = 4;
};
struct F16W {
  static FLOTILLA_INLINE __m256 Load8(const void* w, int64_t k) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + k)));
  }
  static FLOTILLA_INLINE float Load1(const void* w, int64_t k) { return HalfToFloat(static_cast<const uint16_t*>(w)[k]); }
  static constexpr int kBytes = 2;
};
struct BF16W {
  static FLOTILLA_INLINE __m256 Load8(const void* w, int64_t k) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static FLOTILLA_INLINE float Load1(const void* w, int64_t k) {
    uint32_t u = static_cast<uint32_t>(static_cast<const uint16_t*>(w)[k]) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static constexpr int kBytes = 2;
};

template <class W, int R, int T>
void FloatTile(const MatMulArgs& a, int64_t n, int64_t m) {
  const void* w[R];
  for (int r = 0; r < R; ++r) w[r] = static_cast<const char*>(a.w) + (n + r) * a.w_row_bytes;
  const float* x[T];
  for (int t = 0; t < T; ++t) x[t] = reinterpret_cast<const float*>(static_cast<const char*>(a.x) + (m + t) * a.x_row_bytes);
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  int64_t k = 0;
  // Rows shorter than twice the distance: ask for the next tile's rows (see avx512_kernels.cc).
  const int64_t pf = a.w_row_bytes < 2 * kPrefetchBytes ? R * a.w_row_bytes : kPrefetchBytes;
  for (; k + 8 <= a.K; k += 8) {
    __m256 wv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(static_cast<const char*>(w[r]) + k * W::kBytes + pf, _MM_HINT_T0);
      wv[r] = W::Load8(w[r], k);
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m256 xv = _mm256_loadu_ps(x[t] + k);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float s = Hsum(acc[r][t]);
      for (int64_t kk = k; kk < a.K; ++kk) s += W::Load1(w[r], kk) * x[t][kk];
      a.y[(m + t) * a.ldy + n + r] = s;
    }
  }
}

template <class W>
void MatMulFloat(const MatMulArgs& a, int64_t n0, int64_t n1) {
  int64_t n = n0;
  for (; n + 3 <= n1; n += 3) {
    int64_t m = 0;
    for (; m + 4 <= a.M; m += 4) FloatTile<W, 3, 4>(a, n, m);
    for (; m < a.M; ++m) FloatTile<W, 3, 1>(a, n, m);
  }
  for (; n < n1; ++n) {
    int64_t m = 0;
    for (; m + 4 <= a.M; m += 4) FloatTile<W, 1, 4>(a, n, m);
    for (; m < a.M; ++m) FloatTile<W, 1, 1>(a, n, m);
  }
}

// ---- vector primitives for attention and element-wise ops --------------------------------------

float DotAvx2(const float* a, const float* b, int n) {
  __m256 acc = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  float s = Hsum(acc);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void AxpyAvx2(float alpha, const float* x, float* y, int n) {
  const __m256 av = _mm256_set1_ps(alpha);
  int i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

void SoftmaxAvx2(float* x, int64_t n) {
  int64_t i = 0;
  __m256 vmax = _mm256_set1_ps(-INFINITY);
  for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
  float max = Hmax(vmax);
  for (; i < n; ++i) max = std::fmax(max, x[i]);
  const __m256 mv = _mm256_set1_ps(max);
  __m256 vsum = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = Exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
    _mm256_storeu_ps(x + i, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float sum = Hsum(vsum);
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  const __m256 iv = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
  for (; i < n; ++i) x[i] *= inv;
}

void SiluMulAvx2(const float* g, const float* u, float* out, int64_t n) {
  int64_t i = 0;
  const __m256 one = _mm256_set1_ps(1.0f);
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 e = Exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv));
    const __m256 s = _mm256_div_ps(gv, _mm256_add_ps(one, e));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
  }
  for (; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

// Sum of squares in four 8-lane accumulators, then the lanes (the plain loop's serial chain of
// adds is latency-bound); the order depends only on n. Tail elements are added one by one.
void RmsNormAvx2(const float* x, const float* w, float* out, int64_t n, float eps) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m256 v = _mm256_loadu_ps(x + i + 8 * k);
      acc[k] = _mm256_fmadd_ps(v, v, acc[k]);
    }
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    acc[0] = _mm256_fmadd_ps(v, v, acc[0]);
  }
  const __m256 s8 = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  float ss = _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
  for (; i < n; ++i) ss += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  const __m256 sv = _mm256_set1_ps(scale);
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(sv, _mm256_loadu_ps(x + i))));
  for (; i < n; ++i) out[i] = w[i] * (scale * x[i]);
}

struct V256 {
  using Reg = __m256;
  static constexpr int kWidth = 8;
  static FLOTILLA_INLINE __m256i Mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static FLOTILLA_INLINE Reg Zero() { return _mm256_setzero_ps(); }
  static FLOTILLA_INLINE Reg Load(const float* p, int n) { return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, Mask(n)); }
  static FLOTILLA_INLINE void Store(float* p, Reg v, int n) {
    if (n >= 8) {
      _mm256_storeu_ps(p, v);
    } else {
      _mm256_maskstore_ps(p, Mask(n), v);
    }
  }
  static FLOTILLA_INLINE Reg Fmadd(float a, Reg x, Reg acc) { return _mm256_fmadd_ps(_mm256_set1_ps(a), x, acc); }
  static FLOTILLA_INLINE Reg FmaddV(Reg a, Reg x, Reg acc) { return _mm256_fmadd_ps(a, x, acc); }
  // Elements e .. e + n - 1 of a K/V row (n <= 8), as f32.
  static FLOTILLA_INLINE Reg LoadKv(const float* row, int64_t e, int n) { return Load(row + e, n); }
  static FLOTILLA_INLINE Reg LoadKv(const uint16_t* row, int64_t e, int n) {
    const uint16_t* p = row + e;
    if (n >= 8) return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    alignas(16) uint16_t tail[8] = {};
    std::memcpy(tail, p, sizeof(uint16_t) * n);
    return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(tail)));
  }
  // A Q8_0 row: 8 values never cross a block (rows are whole blocks of 32).
  static FLOTILLA_INLINE Reg LoadKv(const BlockQ8_0* row, int64_t e, int n) {
    const BlockQ8_0& b = row[e / kQK];
    int64_t bits = 0;
    std::memcpy(&bits, b.qs + e % kQK, static_cast<size_t>(n));
    const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(bits)));
    return _mm256_mul_ps(v, _mm256_set1_ps(_cvtsh_ss(b.d)));
  }
  static FLOTILLA_INLINE Reg Add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static FLOTILLA_INLINE Reg Scale(Reg a, float s) { return _mm256_mul_ps(a, _mm256_set1_ps(s)); }
  // Lane i of the result is the sum of the lanes of v[i] (8 inputs), by a transpose-and-add tree.
  static FLOTILLA_INLINE Reg Reduce(const Reg* v) {
    Reg p[4], q[2];
    for (int i = 0; i < 4; ++i) {
      p[i] = _mm256_add_ps(_mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    }
    for (int i = 0; i < 2; ++i) {
      q[i] = _mm256_add_ps(_mm256_shuffle_ps(p[2 * i], p[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                           _mm256_shuffle_ps(p[2 * i], p[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    }
    return _mm256_add_ps(_mm256_permute2f128_ps(q[0], q[1], 0x20), _mm256_permute2f128_ps(q[0], q[1], 0x31));
  }
};

void F32ToF16x8(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

KernelTable MakeTable() {
  KernelTable t{};
  t.isa = FLOTILLA_AVX_VNNI ? "avxvnni" : "avx2";
  t.f32_to_f16 = F32ToF16x8;
  t.matmul[static_cast<int>(DType::kF32)] = MatMulFloat<F32W>;
  t.matmul[static_cast<int>(DType::kF16)] = MatMulFloat<F16W>;
  t.matmul[static_cast<int>(DType::kBF16)] = MatMulFloat<BF16W>;
  t.matmul[static_cast<int>(DType::kQ8_0)] = MatMulQuant<Q8W>;
  t.matmul[static_cast<int>(DType::kQ4_0)] = MatMulQuant<Q4W>;
  t.act_row_bytes = ActRowBytes;
  t.quantize_act = QuantizeAct;
  t.act_to_q8_0 = ActToQ8;
  t.quantize_q8_0 = QuantizeQ8Ggml;
  t.rms_norm = RmsNormAvx2;
  t.rope = RopePlain;
  t.softmax = SoftmaxAvx2;
  t.silu_mul = SiluMulAvx2;
  t.add = AddPlain;
  t.attention = PagedAttentionHeadVec<V256, DotAvx2, AxpyAvx2, SoftmaxAvx2>;
  t.attention_group = PagedAttentionGroupVec<V256, DotAvx2, AxpyAvx2, SoftmaxAvx2>;
  return t;
}

}  // namespace

#if FLOTILLA_AVX_VNNI
const KernelTable* AvxVnniKernels() {
#else
const KernelTable* Avx2Kernels() {
#endif
  static const KernelTable table = MakeTable();
  return &table;
}

}  // namespace flotilla::kernels::cpu
