// AVX-512 kernels (F, BW, VL, VNNI; plus AVX2/FMA/F16C): the quantized products, packing and the
// variant's table (float-weight products, attention and element-wise ops are in
// avx512_float_kernels.cc). Compiled with those flags (kernels/CMakeLists.txt) and used only
// when the CPU reports all of them. Everything is in an anonymous namespace so no inline
// function compiled here can stand in for a baseline copy elsewhere.
//
// Quantized weights (Q8_0, Q4_0) meet Q8_0 activations in OctActFormat: eight blocks per step
// in four 64-byte vectors, two 32-bit lanes per block. The weights are read in place from the
// ggml layout (no repacking, so no second copy) and put into the same form as unsigned bytes: Q4_0 nibbles (0..15) as they are, Q8_0 values
// offset by 128. vpdpbusd multiplies unsigned weight bytes by signed activation bytes and
// sums four products per 32-bit lane without saturation; the offset is removed exactly by
// starting the sum at -offset * (sum of the activations feeding that lane), which the
// activation row stores (OctActFormat) and every row shares. Each lane then holds an exact
// integer partial dot product of one block, converted to float and scaled by (weight scale *
// activation scale) of that block.
//
// Tiles of R rows x T tokens reuse each weight load for T tokens and each activation load for
// R rows. Every (row, token) pair goes through the same instruction sequence whatever the tile,
// so results do not depend on batch composition or on how rows were split between threads.
#include <algorithm>
#include <cstring>

#include "kernels/cpu/act_format.h"
#include "kernels/cpu/amx.h"
#include "kernels/cpu/avx512_common.h"
#include "kernels/cpu/elementwise_impl.h"
#include "kernels/quant.h"

namespace flotilla::kernels::cpu {
namespace {


// ---- activation quantization ------------------------------------------------------------------

// Rounds half away from zero, like roundf, so results equal the scalar quantizer bit for bit.
FLOTILLA_INLINE __m512 RoundHalfAway(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
  const __mmask16 away = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512i sign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(static_cast<int>(0x80000000u)));
  const __m512 sign_one = _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_castps_si512(_mm512_set1_ps(1.0f))));
  return _mm512_mask_add_ps(t, away, t, sign_one);
}

struct QuantizedBlock {
  __m128i lo, hi;  // elements 0..15 and 16..31
  uint16_t d16;
};

FLOTILLA_INLINE QuantizedBlock QuantizeBlock(const float* x) {
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  const __m512 iv = _mm512_set1_ps(id);
  QuantizedBlock q;
  q.lo = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(RoundHalfAway(_mm512_mul_ps(v0, iv))));
  q.hi = _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(RoundHalfAway(_mm512_mul_ps(v1, iv))));
  q.d16 = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
  return q;
}

void QuantizeQ8Ggml(const float* x, void* out, int64_t n) {
  auto* y = static_cast<BlockQ8_0*>(out);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const QuantizedBlock q = QuantizeBlock(x + b * kQK);
    y[b].d = q.d16;
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs), q.lo);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[b].qs + 16), q.hi);
  }
}

// Rows for AMX tiles carry a second part (amx.h).
int64_t ActRowBytes(DType w, int64_t K) {
  return IsBlockQuantized(w) ? OctActFormat::RowBytes(K) + avx512::AmxActBytes(w, K) : K * static_cast<int64_t>(sizeof(float));
}

void QuantizeAct(DType w, const float* x, void* out, int64_t K) {
  const int64_t nb = K / kQK;
  auto* row = static_cast<uint8_t*>(out);
  for (int64_t o = 0; o < OctActFormat::Octs(K); ++o) {
    uint8_t* oct = row + o * OctActFormat::kOctBytes;
    uint16_t d16[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // by qword position
    for (int i = 0; i < 8; ++i) {
      const int64_t b = o * 8 + i;
      QuantizedBlock qb{_mm_setzero_si128(), _mm_setzero_si128(), 0};
      if (b < nb) qb = QuantizeBlock(x + b * kQK);
      alignas(16) uint8_t q[32];
      _mm_store_si128(reinterpret_cast<__m128i*>(q), qb.lo);
      _mm_store_si128(reinterpret_cast<__m128i*>(q + 16), qb.hi);
      const int p = OctActFormat::kOctPos[i];
      for (int j = 0; j < 4; ++j) std::memcpy(oct + 64 * j + 8 * p, q + 8 * OctActFormat::kElemGroup[j], 8);
      d16[p] = qb.d16;
    }
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i sum = _mm512_setzero_si512();
    for (int j = 0; j < 4; ++j) sum = _mm512_dpbusd_epi32(sum, ones, _mm512_loadu_si512(oct + 64 * j));
    _mm512_storeu_si512(oct + 256, _mm512_sub_epi32(_mm512_setzero_si512(), sum));
    const __m512i idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d16)));
    _mm512_storeu_ps(oct + 320, _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(d)));
  }
  avx512::WriteAmxAct(w, K, out);
}

void ActToQ8(DType, const void* act, void* out, int64_t K) {
  auto* y = static_cast<BlockQ8_0*>(out);
  const auto* row = static_cast<const uint8_t*>(act);
  for (int64_t b = 0; b < K / kQK; ++b) {
    const uint8_t* oct = row + b / 8 * OctActFormat::kOctBytes;
    const int p = OctActFormat::kOctPos[b % 8];
    float d;
    std::memcpy(&d, oct + 320 + 8 * p, 4);
    y[b].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
    // E is its own inverse: elements 8g..8g+7 sit in vector E[g].
    for (int g = 0; g < 4; ++g) std::memcpy(y[b].qs + 8 * g, oct + 64 * OctActFormat::kElemGroup[g] + 8 * p, 8);
  }
}

// ---- quantized weights -------------------------------------------------------------------------
//
// One step is an oct: eight ggml blocks read in place with loads that touch every byte once
// (32-byte loads of each Q8_0 block's quants, 16-byte loads of each Q4_0 block's: 64-byte loads
// that straddle blocks and cache lines measured up to 30 % slower on the memory-bound decode),
// regrouped by in-lane qword unpacks (and for Q8_0 a 128-bit lane shuffle) into OctActFormat's
// four vectors, and their eight f16 scales spread over the lanes of their blocks. Every lane of
// the four dot products then belongs to one block, so one convert, one scale product and one
// FMA per (row, token) serve eight blocks (the quad layout before needed them for four).

// The f16 scales of the first `blocks` of eight blocks `stride` bytes apart (zero for the rest),
// spread over their lanes in oct order (lanes 2p, 2p+1: block b with kOctPos[b] = p).
FLOTILLA_INLINE __m512 OctScales(const uint8_t* p, int stride, int blocks = 8) {
  auto h = [&](int i) -> uint64_t {
    if (i >= blocks) return 0;
    uint16_t v;
    std::memcpy(&v, p + i * stride, 2);
    return v;
  };
  const uint64_t lo = h(0) | h(1) << 16 | h(2) << 32 | h(3) << 48;
  const uint64_t hi = h(4) | h(5) << 16 | h(6) << 32 | h(7) << 48;
  const __m256 d = _mm256_cvtph_ps(_mm_set_epi64x(static_cast<int64_t>(hi), static_cast<int64_t>(lo)));
  // Lane l holds block kOctPos[l / 2] (kOctPos is its own inverse).
  const __m512i spread = _mm512_setr_epi32(0, 0, 2, 2, 1, 1, 3, 3, 4, 4, 6, 6, 5, 5, 7, 7);
  return _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(d));
}

// The same for a full oct without scalar work: the scales are 16-bit words kStride / 2 apart,
// picked out of the oct's first 128 (Q4_0) or 256 (Q8_0) bytes by word permutes straight into
// their lanes (the scalar gather above took about half the instructions of a Q4_0 decode step).
// Lane l of an oct's scale vector holds block kOctPos[l / 2]: blocks 0, 2, 1, 3, 4, 6, 5, 7 in
// lane pairs.
constexpr int kOctLaneBlock[16] = {0, 0, 2, 2, 1, 1, 3, 3, 4, 4, 6, 6, 5, 5, 7, 7};

// Word indices for a two-register word permute: lane l takes the scale of block
// kOctLaneBlock[l], kStride bytes apart; lanes from `split` on count from word 64 (the second
// pair of registers).
template <int kStride, int kSplit>
struct OctScaleIndex {
  alignas(64) uint16_t w[32] = {};
  constexpr OctScaleIndex() {
    for (int l = 0; l < 16; ++l) w[l] = static_cast<uint16_t>(kOctLaneBlock[l] * kStride / 2 - (l >= kSplit ? 64 : 0));
  }
};

// The same for a full oct without scalar work: the scales are 16-bit words kStride / 2 apart,
// picked out of the oct's first 128 (Q4_0) or 256 (Q8_0) bytes by word permutes straight into
// their lanes (the scalar gather above took about half the instructions of a Q4_0 decode step).
template <int kStride>
FLOTILLA_INLINE __m512 OctScalesFull(const uint8_t* p) {
  static_assert(kStride % 2 == 0, "scales must be 16-bit aligned within the oct");
  constexpr int kW = kStride / 2;
  const __m512i v0 = _mm512_loadu_si512(p), v1 = _mm512_loadu_si512(p + 64);
  __m512i h;
  if constexpr (7 * kW < 64) {
    static constexpr OctScaleIndex<kStride, 16> kIdx;
    h = _mm512_permutex2var_epi16(v0, _mm512_load_si512(kIdx.w), v1);
  } else {
    // Q8_0: blocks 0..3 (lanes 0..7) lie in words 0..63, blocks 4..7 (lanes 8..15) in 64..127.
    static_assert(3 * kW < 64 && 4 * kW >= 64 && 7 * kW < 128, "two register pairs cover the scales");
    static constexpr OctScaleIndex<kStride, 8> kIdx;
    const __m512i idx = _mm512_load_si512(kIdx.w);
    const __m512i v2 = _mm512_loadu_si512(p + 128), v3 = _mm512_loadu_si512(p + 192);
    h = _mm512_mask_mov_epi16(_mm512_permutex2var_epi16(v0, idx, v1), 0xff00, _mm512_permutex2var_epi16(v2, idx, v3));
  }
  return _mm512_cvtph_ps(_mm512_castsi512_si256(h));
}

// Packed weights keep an oct's eight f16 scales in qword-position order (position p holds block
// kOctPos[p]), so spreading them over their lane pairs is one convert and one permute.
FLOTILLA_INLINE __m512 PackedScales(const uint8_t* s) {
  const __m512i pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
  return _mm512_permutexvar_ps(pairs, _mm512_castps256_ps512(d));
}
FLOTILLA_INLINE void StorePackedScales(__m512 d, uint8_t* s) {
  const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m256 e = _mm512_castps512_ps256(_mm512_permutexvar_ps(evens, d));
  // The scales came from f16, so the conversion back is exact.
  _mm_storeu_si128(reinterpret_cast<__m128i*>(s), _mm256_cvtps_ph(e, _MM_FROUND_TO_NEAREST_INT));
}

// Q8_0: values offset by 128 to unsigned bytes.
struct Q8W {
  static constexpr int kBlockBytes = sizeof(BlockQ8_0);
  static constexpr int kStepBytes = 8 * kBlockBytes;
  static constexpr int kShift = 7;  // the offset 128 = 1 << 7
  // blocks < 8 (the last step of a row): the missing blocks read as zeros, nothing past them is
  // read (masked loads), and their zero scales make them add exact zeros.
  template <bool kTail>
  static FLOTILLA_INLINE void Load(const uint8_t* p, int blocks, __m512i (&w)[4], __m512& d) {
    auto q = [&](int i) {
      const auto* src = reinterpret_cast<const __m256i*>(p + i * kBlockBytes + 2);
      if constexpr (kTail) return _mm256_maskz_loadu_epi8(i < blocks ? ~__mmask32{0} : 0, src);
      return _mm256_loadu_si256(src);
    };
    // z_k = [block 2k | block 2k+1] (qwords 0..3: the block's elements 0..7, 8..15, 16..23, 24..31).
    auto z = [&](int k) { return _mm512_inserti64x4(_mm512_castsi256_si512(q(2 * k)), q(2 * k + 1), 1); };
    const __m512i z0 = z(0), z1 = z(1), z2 = z(2), z3 = z(3);
    // 128-bit lanes of l01: [b0 q0, b2 q0], [b0 q2, b2 q2], [b1 q0, b3 q0], [b1 q2, b3 q2].
    const __m512i l01 = _mm512_unpacklo_epi64(z0, z1), h01 = _mm512_unpackhi_epi64(z0, z1);
    const __m512i l45 = _mm512_unpacklo_epi64(z2, z3), h45 = _mm512_unpackhi_epi64(z2, z3);
    const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
    w[0] = _mm512_xor_si512(_mm512_shuffle_i64x2(l01, l45, _MM_SHUFFLE(2, 0, 2, 0)), bias);  // qwords 0
    w[1] = _mm512_xor_si512(_mm512_shuffle_i64x2(l01, l45, _MM_SHUFFLE(3, 1, 3, 1)), bias);  // qwords 2
    w[2] = _mm512_xor_si512(_mm512_shuffle_i64x2(h01, h45, _MM_SHUFFLE(2, 0, 2, 0)), bias);  // qwords 1
    w[3] = _mm512_xor_si512(_mm512_shuffle_i64x2(h01, h45, _MM_SHUFFLE(3, 1, 3, 1)), bias);  // qwords 3
    if constexpr (kTail) {
      d = OctScales(p, kBlockBytes, blocks);
    } else {
      d = OctScalesFull<kBlockBytes>(p);
    }
  }
  // Packed form (PackRows): the four vectors as Load makes them, stored as they are.
  static constexpr int kPackedBytes = 256;
  static FLOTILLA_INLINE void LoadPacked(const uint8_t* q, const uint8_t* s, __m512i (&w)[4], __m512& d) {
    for (int j = 0; j < 4; ++j) w[j] = _mm512_load_si512(q + 64 * j);
    d = PackedScales(s);
  }
  static FLOTILLA_INLINE void StorePacked(const __m512i (&w)[4], uint8_t* q) {
    for (int j = 0; j < 4; ++j) _mm512_store_si512(q + 64 * j, w[j]);
  }
};

// Q4_0: the nibbles are the values offset by 8; low nibbles are elements 0..15.
struct Q4W {
  static constexpr int kBlockBytes = sizeof(BlockQ4_0);
  static constexpr int kStepBytes = 8 * kBlockBytes;
  static constexpr int kShift = 3;  // the offset 8 = 1 << 3
  template <bool kTail>
  static FLOTILLA_INLINE void Load(const uint8_t* p, int blocks, __m512i (&w)[4], __m512& d) {
    auto q = [&](int i) {
      const auto* src = reinterpret_cast<const __m128i*>(p + i * kBlockBytes + 2);
      if constexpr (kTail) return _mm_maskz_loadu_epi8(i < blocks ? __mmask16{0xffff} : 0, src);
      return _mm_loadu_si128(src);
    };
    auto y = [&](int a, int b, int c, int e) {
      __m512i v = _mm512_castsi128_si512(q(a));
      v = _mm512_inserti32x4(v, q(b), 1);
      v = _mm512_inserti32x4(v, q(c), 2);
      return _mm512_inserti32x4(v, q(e), 3);
    };
    const __m512i ya = y(0, 1, 4, 5), yb = y(2, 3, 6, 7);
    // Qword p of v0 (v1): bytes 0..7 (8..15) of block kOctPos[p]; low nibbles are elements
    // 0..7 (8..15), high nibbles 16..23 (24..31).
    const __m512i v0 = _mm512_unpacklo_epi64(ya, yb), v1 = _mm512_unpackhi_epi64(ya, yb);
    Split(v0, v1, w);
    if constexpr (kTail) {
      d = OctScales(p, kBlockBytes, blocks);
    } else {
      d = OctScalesFull<kBlockBytes>(p);
    }
  }
  static FLOTILLA_INLINE void Split(__m512i v0, __m512i v1, __m512i (&w)[4]) {
    const __m512i m = _mm512_set1_epi8(0x0f);
    w[0] = _mm512_and_si512(v0, m);
    w[1] = _mm512_and_si512(_mm512_srli_epi16(v0, 4), m);
    w[2] = _mm512_and_si512(v1, m);
    w[3] = _mm512_and_si512(_mm512_srli_epi16(v1, 4), m);
  }
  // Packed form (PackRows): v0 and v1 above, nibbles still paired (half the bytes of four
  // vectors, and splitting them is two ANDs and two shifts).
  static constexpr int kPackedBytes = 128;
  static FLOTILLA_INLINE void LoadPacked(const uint8_t* q, const uint8_t* s, __m512i (&w)[4], __m512& d) {
    Split(_mm512_load_si512(q), _mm512_load_si512(q + 64), w);
    d = PackedScales(s);
  }
  static FLOTILLA_INLINE void StorePacked(const __m512i (&w)[4], uint8_t* q) {
    // Values are 0..15, so the 16-bit shift moves no bit across a byte.
    _mm512_store_si512(q, _mm512_or_si512(w[0], _mm512_slli_epi16(w[1], 4)));
    _mm512_store_si512(q + 64, _mm512_or_si512(w[2], _mm512_slli_epi16(w[3], 4)));
  }
};

// Where a tile reads one weight row, oct by oct. InPlace: ggml's blocks as stored (the last
// step may hold 1..7 blocks). Packed: PackRows' form, whole octs only.
template <class W>
struct InPlace {
  static int64_t Steps(int64_t K) { return K / kQK / 8; }
  static int Rem(int64_t K) { return static_cast<int>(K / kQK % 8); }
  struct Row {
    const uint8_t* p;
    Row() = default;
    Row(const MatMulArgs& a, int64_t n) : p(static_cast<const uint8_t*>(a.w) + n * a.w_row_bytes) {}
    FLOTILLA_INLINE void Prefetch(int64_t) const {}  // Load prefetches step by step
    FLOTILLA_INLINE void PrefetchStep(int64_t) const {}  // likewise
    template <bool kTail>
    FLOTILLA_INLINE void Load(int blocks, __m512i (&w)[4], __m512& d) {
      if constexpr (!kTail) {
        for (int o = 0; o < W::kStepBytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes + o, _MM_HINT_T0);
      }
      W::template Load<kTail>(p, blocks, w, d);
    }
    FLOTILLA_INLINE void Next() { p += W::kStepBytes; }
    FLOTILLA_INLINE void Skip(int64_t steps) { p += steps * W::kStepBytes; }
  };
};

// A packed row: every oct's quantized values (W::kPackedBytes each, 64-byte aligned), then every
// oct's eight f16 scales (16 bytes each), padded to a multiple of 64 bytes. A last oct of fewer
// than 8 blocks is padded with zero-valued blocks of scale 0, which add exact zeros as the
// in-place tail does, so the sums are bitwise those of the in-place kernel.
template <class W>
struct Packed {
  static int64_t Steps(int64_t K) { return OctActFormat::Octs(K); }
  static int Rem(int64_t) { return 0; }
  static int64_t RowBytes(int64_t K) { return (Steps(K) * (W::kPackedBytes + 16) + 63) / 64 * 64; }
  struct Row {
    const uint8_t* q;
    const uint8_t* s;
    Row() = default;
    Row(const MatMulArgs& a, int64_t n)
        : q(static_cast<const uint8_t*>(a.w) + n * a.w_row_bytes), s(q + Steps(a.K) * W::kPackedBytes) {}
    // Prefetches `bytes` from the current step on, kPrefetchBytes ahead: a whole row's bytes
    // once (its scales sit apart from its values, where prefetches riding along the value loads
    // would skip them), or a chunk's values. Measured on 1B decode at 2 threads: no software
    // prefetch 6-12 % slower, 8 KiB ahead 0-5 % slower.
    FLOTILLA_INLINE void Prefetch(int64_t bytes) const {
      const char* ahead = reinterpret_cast<const char*>(q) + kPrefetchBytes;
      for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch(ahead + o, _MM_HINT_T0);
    }
    // This step's values and scales `dist` bytes on (the next tile's rows: QuantTileSteps).
    FLOTILLA_INLINE void PrefetchStep(int64_t dist) const {
      const char* ahead = reinterpret_cast<const char*>(q) + dist;
      for (int o = 0; o < W::kPackedBytes; o += 64) _mm_prefetch(ahead + o, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(s) + dist, _MM_HINT_T0);
    }
    template <bool kTail>
    FLOTILLA_INLINE void Load(int, __m512i (&w)[4], __m512& d) {
      W::LoadPacked(q, s, w, d);
    }
    FLOTILLA_INLINE void Next() {
      q += W::kPackedBytes;
      s += 16;
    }
    FLOTILLA_INLINE void Skip(int64_t steps) {
      q += steps * W::kPackedBytes;
      s += steps * 16;
    }
  };
};

// One oct for R rows x T tokens. kTail: the in-place last step, holding `blocks` < 8 blocks.
template <class W, class Row, int R, int T, bool kTail = false>
FLOTILLA_INLINE void QuantStep(Row (&rows)[R], const uint8_t* const* xp, __m512 (&acc)[R][T], int blocks = 8) {
  __m512i w[R][4];
  __m512 dw[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) rows[r].template Load<kTail>(blocks, w[r], dw[r]);
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
    const uint8_t* x = xp[t];
    const __m512i start = _mm512_slli_epi32(_mm512_loadu_si512(x + 256), W::kShift);
    __m512 dx = _mm512_loadu_ps(x + 320);
    __m512i x0 = _mm512_loadu_si512(x), x1 = _mm512_loadu_si512(x + 64);
    __m512i x2 = _mm512_loadu_si512(x + 128), x3 = _mm512_loadu_si512(x + 192);
    // With several rows, load the activations once into registers: left alone the compiler folds
    // them into every row's dot products as memory operands, and the duplicate loads cost ~8 %
    // of a 2 x 8 tile (measured).
    if constexpr (R > 1) asm("" : "+v"(x0), "+v"(x1), "+v"(x2), "+v"(x3), "+v"(dx));
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      __m512i dot = _mm512_dpbusd_epi32(start, w[r][0], x0);
      dot = _mm512_dpbusd_epi32(dot, w[r][1], x1);
      dot = _mm512_dpbusd_epi32(dot, w[r][2], x2);
      dot = _mm512_dpbusd_epi32(dot, w[r][3], x3);
      acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw[r], dx), acc[r][t]);
    }
  }
}

// Steps [q0, q1) of rows n..n+R-1 x tokens m..m+T-1 added onto acc, and the in-place layout's
// last 1..7 blocks when `tail` (the activation's padding blocks are zero).
//
// Prefetching: tiles of few tokens are memory-bound and ask for their whole rows up front.
// Full tiles of 8 tokens are compute-bound (about 49 cycles an oct), and asking for two whole
// rows at once (68 lines for Q8_0 at K = 2048) stalled them on full miss queues: a tenth of a
// batch-16 product's samples sat on that loop. They ask instead, step by step, for the same
// step of the next tile's rows (R rows on), so the next rows arrive while this tile computes:
// Q8_0 5632 x 2048 at 16 tokens +25-30 %, at 128 tokens +10 %; 4-token tiles lost 15 % that way.
// Rows n + r * row_stride: adjacent in a tile, far apart as one token's streams.
template <class W, class L, int R, int T>
FLOTILLA_INLINE void QuantTileSteps(const MatMulArgs& a, int64_t n, int64_t m, int64_t q0, int64_t q1, bool tail,
                                    __m512 (&acc)[R][T], int64_t row_stride = 1) {
  using Row = typename L::Row;
  Row rows[R];
  for (int r = 0; r < R; ++r) {
    rows[r] = Row(a, n + r * row_stride);
    rows[r].Skip(q0);
    if constexpr (T < 8) rows[r].Prefetch(q0 == 0 && q1 == L::Steps(a.K) ? a.w_row_bytes : (q1 - q0) * W::kPackedBytes);
  }
  const int64_t dist = R * a.w_row_bytes;
  const uint8_t* xp[T];
  for (int t = 0; t < T; ++t) xp[t] = static_cast<const uint8_t*>(a.x) + (m + t) * a.x_row_bytes + q0 * OctActFormat::kOctBytes;
  for (int64_t q = q0; q < q1; ++q) {
    if constexpr (T >= 8) {
      for (int r = 0; r < R; ++r) rows[r].PrefetchStep(dist);
    }
    QuantStep<W, Row, R, T>(rows, xp, acc);
    for (int r = 0; r < R; ++r) rows[r].Next();
    for (int t = 0; t < T; ++t) xp[t] += OctActFormat::kOctBytes;
  }
  if (tail) QuantStep<W, Row, R, T, true>(rows, xp, acc, L::Rem(a.K));
}

// The accumulators of rows n..n+R-1 x tokens m..m+T-1 over all of K.
template <class W, class L, int R, int T>
FLOTILLA_INLINE void QuantTileAcc(const MatMulArgs& a, int64_t n, int64_t m, __m512 (&acc)[R][T], int64_t row_stride = 1) {
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  QuantTileSteps<W, L, R, T>(a, n, m, 0, L::Steps(a.K), L::Rem(a.K) > 0, acc, row_stride);
}

template <class W, class L, int R, int T>
void QuantTile(const MatMulArgs& a, int64_t n, int64_t m) {
  __m512 acc[R][T];
  QuantTileAcc<W, L, R, T>(a, n, m, acc);
  StoreTileSums<R, T>(acc, a.y, a.ldy, n, m);
}

// One token: two streams side by side, one over each half of the rows' whole 16-row chunks, then
// the rows left over one after another; each row's sum is taken sixteen rows at a time by one
// Reduce16 (a horizontal sum per row was ~12 % of a Q4_0 row of K = 2048). One sequential stream
// kept too few misses in flight to reach the bandwidth a plain read loop gets: 1B Q4_0 decode at
// 2 threads, alternating runs, two streams 1.08x one (every pair faster; roofline 0.77 -> 0.84),
// three 0.92x two, four 0.87x two (each row asks for all its bytes at once: more streams
// burst more misses than the queues hold).
template <class W, class L>
void QuantRowsOneToken(const MatMulArgs& a, int64_t n0, int64_t n1) {
  constexpr int S = 2;
  const int64_t per = (n1 - n0) / 16 / S;
  for (int64_t k = 0; k < per; ++k) {
    __m512 v[S][16];
    for (int i = 0; i < 16; ++i) {
      __m512 acc[S][1];  // each row's arithmetic is QuantTileAcc<1, 1>'s: S does not change a bit
      QuantTileAcc<W, L, S, 1>(a, n0 + k * 16 + i, 0, acc, per * 16);
      for (int s = 0; s < S; ++s) v[s][i] = acc[s][0];
    }
    for (int s = 0; s < S; ++s) _mm512_storeu_ps(a.y + n0 + (s * per + k) * 16, Reduce16(v[s]));
  }
  int64_t n = n0 + S * per * 16;
  for (; n + 16 <= n1; n += 16) {
    __m512 v[16];
    for (int i = 0; i < 16; ++i) {
      __m512 acc[1][1];
      QuantTileAcc<W, L, 1, 1>(a, n + i, 0, acc);
      v[i] = acc[0][0];
    }
    _mm512_storeu_ps(a.y + n, Reduce16(v));
  }
  for (; n < n1; ++n) QuantTile<W, L, 1, 1>(a, n, 0);
}

// Rows of a block too long for one tile's activations to fit L1 (K = 5632: 66 KiB for 8
// tokens): each tile goes over K in chunks of kChunkSteps steps (24 KiB of its activations), the
// block's rows one after another within a chunk, their accumulators kept between chunks. Each
// lane adds its steps in the same order as in one pass, so the sums are bitwise the same.
template <class W, class L, int R, int kT>
void QuantBlockInChunks(const MatMulArgs& a, int64_t b0, int64_t b1, int64_t full) {
  constexpr int64_t kChunkSteps = 8;
  constexpr int kMaxTiles = 32 / R;  // kRowBlock rows
  alignas(64) __m512 kept[kMaxTiles][R][kT];
  const int64_t steps = L::Steps(a.K);
  const bool tail = L::Rem(a.K) > 0;
  for (int64_t m = 0; m < full; m += kT) {
    for (int64_t q0 = 0; q0 < steps || (q0 == 0 && tail); q0 += kChunkSteps) {
      const int64_t q1 = std::min(steps, q0 + kChunkSteps);
      const bool last = q1 == steps;
      for (int64_t n = b0, i = 0; n < b1; n += R, ++i) {
        __m512 acc[R][kT];
        for (int r = 0; r < R; ++r)
          for (int t = 0; t < kT; ++t) acc[r][t] = q0 == 0 ? _mm512_setzero_ps() : kept[i][r][t];
        QuantTileSteps<W, L, R, kT>(a, n, m, q0, q1, last && tail, acc);
        if (last) {
          StoreTileSums<R, kT>(acc, a.y, a.ldy, n, m);
        } else {
          for (int r = 0; r < R; ++r)
            for (int t = 0; t < kT; ++t) kept[i][r][t] = acc[r][t];
        }
      }
      if (last) break;
    }
  }
}

// Rows [n0, n1) (R at a time) for all tokens, in blocks of kRowBlock rows. In a block, the
// tokens that do not fill a tile of kT (tiles of 4, then 1..3) go first, row by row, reading
// the weights from memory; then each tile of kT tokens runs over the whole block, so its
// activations (8 tokens x K: 24 KiB at K = 2048) stay in L1 while the block's weights come
// from L2 (a quarter of the bytes per oct). Row by row with full tiles, every tile reloaded its
// activations from L2 once all of them outgrew L1: 2x8 tiles at K = 2048 ran at 2/3 of their
// K = 768 speed (a 1B prompt is 1.38x faster by blocks). While all the activations fit in L1
// (110M's K = 768 at 16 tokens: 18 KiB) rows go one at a time with every tile, which reads
// their weights from L1 instead of L2 (blocks there measured 11 % slower on a 110M batch).
template <class W, class L, int R, int kT>
FLOTILLA_INLINE void QuantRows(const MatMulArgs& a, int64_t n0, int64_t n1) {
  constexpr int64_t kL1ActBytes = 32 * 1024;
  const int64_t full = a.M / kT * kT;
  const int64_t kRowBlock = a.M * a.x_row_bytes > kL1ActBytes ? 32 : R;
  for (int64_t b0 = n0; b0 < n1; b0 += kRowBlock) {
    const int64_t b1 = std::min(n1, b0 + kRowBlock);
    for (int64_t n = b0; n < b1; n += R) {
      int64_t m = full;
      if constexpr (kT > 4) {
        if (m + 4 <= a.M) {
          QuantTile<W, L, R, 4>(a, n, m);
          m += 4;
        }
      }
      switch (a.M - m) {
        case 3: QuantTile<W, L, R, 3>(a, n, m); break;
        case 2: QuantTile<W, L, R, 2>(a, n, m); break;
        case 1: QuantTile<W, L, R, 1>(a, n, m); break;
        default: break;
      }
    }
    if (kT * a.x_row_bytes <= kL1ActBytes) {
      for (int64_t m = 0; m < full; m += kT) {
        for (int64_t n = b0; n < b1; n += R) QuantTile<W, L, R, kT>(a, n, m);
      }
    } else {
      QuantBlockInChunks<W, L, R, kT>(a, b0, b1, full);
    }
  }
}

// Decode (M < 4): one token as QuantRowsOneToken says; 2-3 tokens one row at a time (one
// sequential stream; several interleaved short row streams measured up to 25 % slower). Batches:
// tiles of 2 rows x 8 tokens (16 accumulators, 8 weight vectors and 2 scale vectors in
// registers; activations read from L1), by row blocks and K chunks as QuantRows says.
template <class W, class L>
void MatMulQuant(const MatMulArgs& a, int64_t n0, int64_t n1) {
  if (a.M == 1) return QuantRowsOneToken<W, L>(a, n0, n1);
  int64_t n = n0;
  if (a.M >= 4) {
    n = n0 + (n1 - n0) / 2 * 2;
    QuantRows<W, L, 2, 8>(a, n0, n);
  }
  if (n < n1) QuantRows<W, L, 1, 8>(a, n, n1);
}

// ---- packing -----------------------------------------------------------------------------------
//
// Weights packed once at load time (Packed above) turn a row oct's decode into aligned loads:
// for Q8_0 about 30 instructions (unaligned loads, inserts, qword unpacks, lane shuffles, the
// offset flip and the scale permutes) become five loads, a convert and a permute. Same size as
// ggml's rows but for the padding to whole octs and 64 bytes.

template <class W>
void PackRowsOf(const uint8_t* src, int64_t src_row_bytes, int64_t rows, int64_t K, uint8_t* dst) {
  const int64_t octs = Packed<W>::Steps(K), row_bytes = Packed<W>::RowBytes(K);
  const int64_t nb = K / kQK;
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* p = src + r * src_row_bytes;
    uint8_t* q = dst + r * row_bytes;
    uint8_t* s = q + octs * W::kPackedBytes;
    std::memset(s, 0, static_cast<size_t>(row_bytes - octs * W::kPackedBytes));
    for (int64_t o = 0; o < octs; ++o) {
      __m512i w[4];
      __m512 d;
      const int blocks = static_cast<int>(std::min<int64_t>(8, nb - 8 * o));
      if (blocks == 8) {
        W::template Load<false>(p + o * W::kStepBytes, 8, w, d);
      } else {
        W::template Load<true>(p + o * W::kStepBytes, blocks, w, d);
      }
      W::StorePacked(w, q + o * W::kPackedBytes);
      StorePackedScales(d, s + 16 * o);
    }
  }
}


// Quantized rows: 0 (not packed) where padding to whole octs would grow the row by more than
// 1/16: short rows (K = 64: 68 bytes in place, 320 packed) are cheap in place and would cost
// memory.
int64_t PackedRowBytes(DType w, int64_t K) {
  int64_t packed = 0, in_place = 0;
  if (avx512::LaneLayout(w, K)) return avx512::LaneRowBytes(w, K);
  if (w == DType::kQ8_0) {
    packed = Packed<Q8W>::RowBytes(K);
    in_place = K / kQK * Q8W::kBlockBytes;
  } else if (w == DType::kQ4_0) {
    packed = Packed<Q4W>::RowBytes(K);
    in_place = K / kQK * Q4W::kBlockBytes;
  } else if (w == DType::kF32 || w == DType::kF16 || w == DType::kBF16) {
    // Grouped rows keep their size; the chunks must be whole.
    return K > 0 && K % 16 == 0 ? K * (w == DType::kF32 ? 4 : 2) : 0;
  }
  return K % kQK == 0 && packed * 16 <= in_place * 17 ? packed : 0;
}

void PackRows(DType w, const void* src, int64_t src_row_bytes, int64_t rows, int64_t K, void* dst) {
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  if (avx512::LaneLayout(w, K)) return avx512::PackLanes(w, in, src_row_bytes, rows, K, out);
  switch (w) {
    case DType::kQ8_0: PackRowsOf<Q8W>(in, src_row_bytes, rows, K, out); break;
    case DType::kQ4_0: PackRowsOf<Q4W>(in, src_row_bytes, rows, K, out); break;
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16: avx512::PackFloatRows(w, in, src_row_bytes, rows, K, out); break;
    default: break;
  }
}

// Packed Q8_0 / Q4_0: sixteen-row groups where K allows (avx512_lanes.cc), rows after the last
// group as stored; octs otherwise.
template <class W, DType kType, void (*kLanes)(const MatMulArgs&, int64_t, int64_t)>
void MatMulQuantPacked(const MatMulArgs& a, int64_t n0, int64_t n1) {
  if (!avx512::LaneLayout(kType, a.K)) return MatMulQuant<W, Packed<W>>(a, n0, n1);
  const int64_t grouped = a.N / avx512::kLaneRows * avx512::kLaneRows;
  kLanes(a, n0, std::min(n1, grouped));
  if (n1 > grouped) MatMulQuant<W, InPlace<W>>(a, std::max(n0, grouped), n1);
}

bool PackedSameBits(DType w, int64_t K) { return !avx512::LaneLayout(w, K); }

KernelTable MakeTable() {
  KernelTable t{};
  t.isa = "avx512";
  t.matmul[static_cast<int>(DType::kQ8_0)] = MatMulQuant<Q8W, InPlace<Q8W>>;
  t.matmul[static_cast<int>(DType::kQ4_0)] = MatMulQuant<Q4W, InPlace<Q4W>>;
  t.packed_row_bytes = PackedRowBytes;
  t.pack_rows = PackRows;
  t.matmul_packed[static_cast<int>(DType::kQ8_0)] = MatMulQuantPacked<Q8W, DType::kQ8_0, avx512::MatMulQ8Lanes>;
  t.matmul_packed[static_cast<int>(DType::kQ4_0)] = MatMulQuantPacked<Q4W, DType::kQ4_0, avx512::MatMulQ4Lanes>;
  t.packed_same_bits = PackedSameBits;
  t.act_row_bytes = ActRowBytes;
  t.quantize_act = QuantizeAct;
  t.act_to_q8_0 = ActToQ8;
  t.quantize_q8_0 = QuantizeQ8Ggml;
  t.rope = RopePlain;
  t.add = AddPlain;
  avx512::AddFloatKernels(t);  // also rms_norm
  return t;
}

}  // namespace

const KernelTable* Avx512Kernels() {
  static const KernelTable table = MakeTable();
  return &table;
}

}  // namespace flotilla::kernels::cpu
