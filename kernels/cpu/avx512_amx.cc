// Q8_0 and Q4_0 batch products on AMX tiles, over the sixteen-row lane layout (avx512_lanes.h).
// Compiled with the AVX-512 variant's flags and AMX's (kernels/CMakeLists.txt); run only where
// AmxUsable() (cpu_features.h), and for now only with FLOTILLA_AMX=1 (see kAmxMinTokens in
// avx512_lanes.cc for why).
//
// A lane group's position (one block of 16 rows) is 8 vectors of 16 rows x 4 weight bytes: a
// B tile of 8 rows x 64 bytes exactly as packed. Sixteen tokens' activations for that block,
// regrouped once per call to 32 bytes a token in the order the vectors meet them, make an A
// tile, and one TDPBSUD gives the 16 x 16 integer sums that the VNNI kernel builds with 128
// `vpdpbusd`. The tile unit multiplies 32 bytes deep as fast as 64, and every block needs its
// own scales, so the sums leave through memory once per block: each token's row of 16 sums
// then takes the VNNI kernel's very arithmetic (the offset term added, converted, times the
// weight scales times the token's scale, one FMA), in the same order, so every output is bit
// for bit what MatMulQ8Lanes / MatMulQ4Lanes give, and a token's results still do not depend
// on its batch.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/amx.h"
#include "kernels/cpu/avx512_lanes.h"

namespace flotilla::kernels::cpu {
namespace {

constexpr int64_t kTileTokens = 16;  // tokens per A tile (its rows)

// Tiles: sums C0/C1, activations A0/A1, weights B0/B1; positions alternate between the two
// sets so that one position's product runs while the last one's sums are being read.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

TileConfig MakeConfig() {
  TileConfig c;
  for (int t = 0; t < 2; ++t) {
    c.colsb[t] = 64;  // C: 16 tokens x 16 int32 sums
    c.rows[t] = 16;
    c.colsb[2 + t] = 32;  // A: 16 tokens x 32 activation bytes
    c.rows[2 + t] = 16;
    c.colsb[4 + t] = 64;  // B: 8 x (16 rows x 4 weight bytes)
    c.rows[4 + t] = 8;
  }
  return c;
}

// One call's activations, regrouped: for token tile u and position i (in the order the VNNI
// kernel accumulates them), 16 tokens x 32 bytes, then each token's offset term and scale.
// Rows past the batch in a last, partial tile hold whatever the scratch held: their sums land
// only in accumulators that are never stored.
struct Regrouped {
  int64_t positions = 0;
  uint8_t* bytes = nullptr;  // [tile][position][token][32]
  int32_t* start = nullptr;  // [tile][position][token]
  float* scale = nullptr;    // [tile][position][token]
  uint8_t* extra = nullptr;  // the caller's extra bytes (64-byte aligned)
  const uint8_t* A(int64_t u, int64_t i) const { return bytes + (u * positions + i) * kTileTokens * 32; }
  int64_t At(int64_t u, int64_t i) const { return (u * positions + i) * kTileTokens; }
};

// Per-thread scratch, grown to the largest call seen on that thread (the one allocation on
// this path; steady-state steps find it large enough).
uint8_t* Scratch(size_t n) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < n + 64) buf.resize(n + 64);
  return reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~uintptr_t{63});
}

// Writes token m's activations (row x) into r. OctActFormat keeps a block's 32 bytes as 8-byte
// pieces of four vectors (lanes 2p and 2p + 1 of vector j); vector (e, j) of a weight position
// meets lane 2p + e of vector j, so the A row reads those 4-byte lanes in the order e, j: a 4 x 4
// transpose of 32-bit lanes within each 128-bit lane of the four vectors.
template <class W>
void RegroupToken(const uint8_t* x, int64_t K, int64_t m, const Regrouped& r) {
  const int64_t u = m / kTileTokens, t = m % kTileTokens;
  const int64_t whole = WholeOcts(K);
  for (int64_t o = 0; o < OctActFormat::Octs(K); ++o) {
    const uint8_t* oct = x + o * OctActFormat::kOctBytes;
    const __m512i v0 = _mm512_loadu_si512(oct), v1 = _mm512_loadu_si512(oct + 64);
    const __m512i v2 = _mm512_loadu_si512(oct + 128), v3 = _mm512_loadu_si512(oct + 192);
    const __m512i a = _mm512_unpacklo_epi32(v0, v1), b = _mm512_unpackhi_epi32(v0, v1);
    const __m512i c = _mm512_unpacklo_epi32(v2, v3), d = _mm512_unpackhi_epi32(v2, v3);
    // tt[i], 128-bit lane L: lane 4L + i of v0, v1, v2, v3.
    alignas(64) uint8_t tt[4][64];
    _mm512_store_si512(tt[0], _mm512_unpacklo_epi64(a, c));
    _mm512_store_si512(tt[1], _mm512_unpackhi_epi64(a, c));
    _mm512_store_si512(tt[2], _mm512_unpacklo_epi64(b, d));
    _mm512_store_si512(tt[3], _mm512_unpackhi_epi64(b, d));
    int32_t off[16];
    std::memcpy(off, oct + 256, sizeof(off));
    for (int p = 0; p < 8; ++p) {
      // Accumulation order: a whole oct's positions in order; a partial oct's blocks in order
      // (block b at position kOctPos[b], its own inverse; see PairPos).
      const int64_t i = 8 * o + (o < whole ? p : OctActFormat::kOctPos[p]);
      if (i >= r.positions) continue;
      uint8_t* dst = r.bytes + (u * r.positions + i) * kTileTokens * 32 + t * 32;
      const int lane = p / 2, s = p % 2;
      std::memcpy(dst, tt[2 * s] + 16 * lane, 16);
      std::memcpy(dst + 16, tt[2 * s + 1] + 16 * lane, 16);
      r.start[r.At(u, i) + t] = (off[2 * p] + off[2 * p + 1]) * W::kOffset;
      r.scale[r.At(u, i) + t] = LoadF(oct + 320 + 8 * p);
    }
  }
}

template <class W>
Regrouped Regroup(const MatMulArgs& a, int64_t extra_bytes) {
  Regrouped r;
  r.positions = Positions(a.K);
  const int64_t tiles = (a.M + kTileTokens - 1) / kTileTokens;
  const int64_t cells = tiles * r.positions * kTileTokens;  // a multiple of 16
  uint8_t* s = Scratch(static_cast<size_t>(cells * 40 + extra_bytes));
  r.bytes = s;
  r.start = reinterpret_cast<int32_t*>(s + cells * 32);
  r.scale = reinterpret_cast<float*>(s + cells * 36);
  r.extra = s + cells * 40;
  for (int64_t m = 0; m < a.M; ++m) RegroupToken<W>(static_cast<const uint8_t*>(a.x) + m * a.x_row_bytes, a.K, m, r);
  return r;
}

// Q4_0's B operands: a group's nibbles unpacked into bytes (512 a position, at b) once, for all
// its token tiles.
FLOTILLA_INLINE void UnpackQ4Group(const uint8_t* group, int64_t K, uint8_t* b) {
  for (int64_t i = 0; i < Positions(K); ++i) {
    __m512i w[8];
    Q4Lanes::Load(Vecs<Q4Lanes>(group, K, i), w);
    for (int k = 0; k < 8; ++k) _mm512_store_si512(b + i * 512 + 64 * k, w[k]);
  }
}

// Position i's sums for one token tile, into C tile kSet (0 or 1), stored to c. (GCC's tile
// intrinsics paste their tile numbers into the assembly text: they must be literals.)
template <int kSet>
FLOTILLA_INLINE void Product(const uint8_t* act, const uint8_t* w, int32_t* c) {
  if constexpr (kSet == 0) {
    _tile_loadd(2, act, 32);
    _tile_loadd(4, w, 64);
    _tile_zero(0);
    _tile_dpbsud(0, 2, 4);
    _tile_stored(0, c, 64);
  } else {
    _tile_loadd(3, act, 32);
    _tile_loadd(5, w, 64);
    _tile_zero(1);
    _tile_dpbsud(1, 3, 5);
    _tile_stored(1, c, 64);
  }
}

// Adds one position's sums (c: token t's 16 rows at c + 16 t) into f: PositionTile's arithmetic.
FLOTILLA_INLINE void Accumulate(const int32_t* c, const int32_t* start, const float* scale, const uint8_t* wscales,
                                __m512 (&f)[kTileTokens]) {
  const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(wscales)));
#pragma GCC unroll 16
  for (int t = 0; t < kTileTokens; ++t) {
    const __m512i dot = _mm512_add_epi32(_mm512_load_si512(c + 16 * t), _mm512_set1_epi32(start[t]));
    const __m512 s = _mm512_mul_ps(dw, _mm512_set1_ps(scale[t]));
    f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, f[t]);
  }
}

// What one group's token tiles read: the regrouped activations, the group's rows, and where
// B comes from (Q4_0: the unpacked positions).
template <class W>
struct GroupCtx {
  const Regrouped& r;
  const uint8_t* group;
  int64_t K;
  const uint8_t* b;
};

// Stages ahead of its product (the first token tile of Q8_0 groups): those weights come from
// memory, and a tile load waits for its lines in order, so they are read with vector loads
// (which keep many misses in flight) into a ring of stage buffers, kStageAhead positions before
// the tile load reads them (a tile load right after the stores waits for them to drain).
constexpr int64_t kStageAhead = 2, kStageRing = 4;

template <class W>
FLOTILLA_INLINE void Stage(const GroupCtx<W>& g, int64_t i, uint8_t (&stage)[kStageRing][512]) {
  if (i >= g.r.positions) return;
  const uint8_t* v = Vecs<W>(g.group, g.K, i);
  for (int64_t k = 0; k < W::kVecBytes; k += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(v + kPrefetchBytes + k), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(v + kL2PrefetchBytes + k), _MM_HINT_T1);
  }
  uint8_t* dst = stage[i % kStageRing];
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) _mm512_store_si512(dst + 64 * k, _mm512_load_si512(v + 64 * k));
}

// Position i's B tile: staged, unpacked (Q4_0) or as packed.
template <class W, bool kStage>
FLOTILLA_INLINE const uint8_t* BTile(const GroupCtx<W>& g, int64_t i, uint8_t (&stage)[kStageRing][512]) {
  if constexpr (!std::is_same_v<W, Q8Lanes>) {
    return g.b + i * 512;
  } else if constexpr (kStage) {
    Stage(g, i + kStageAhead, stage);
    return stage[i % kStageRing];
  } else {
    return Vecs<W>(g.group, g.K, i);
  }
}

// Token tile u of a group into f: each position's product on one tile set while the previous
// position's sums (the other set) are added in.
template <class W, bool kStage>
FLOTILLA_INLINE void GroupTileAmx(const GroupCtx<W>& g, int64_t u, __m512 (&f)[kTileTokens]) {
  alignas(64) int32_t c[2][kTileTokens * 16];
  alignas(64) uint8_t stage[kStageRing][512];
  const Regrouped& r = g.r;
  const int64_t P = r.positions;
  auto add = [&](int64_t i, const int32_t* sums) {
    Accumulate(sums, r.start + r.At(u, i), r.scale + r.At(u, i), Scales<W>(g.group, g.K, i), f);
  };
  for (auto& v : f) v = _mm512_setzero_ps();
  if constexpr (kStage && std::is_same_v<W, Q8Lanes>) {
    for (int64_t k = 0; k < kStageAhead; ++k) Stage(g, k, stage);
  }
  Product<0>(r.A(u, 0), BTile<W, kStage>(g, 0, stage), c[0]);
  int64_t i = 1;
  for (; i + 1 < P; i += 2) {
    Product<1>(r.A(u, i), BTile<W, kStage>(g, i, stage), c[1]);
    add(i - 1, c[0]);
    Product<0>(r.A(u, i + 1), BTile<W, kStage>(g, i + 1, stage), c[0]);
    add(i, c[1]);
  }
  if (i < P) {
    Product<1>(r.A(u, i), BTile<W, kStage>(g, i, stage), c[1]);
    add(i - 1, c[0]);
    add(i, c[1]);
  } else {
    add(i - 1, c[0]);
  }
}

template <class W>
void MatMulLanesAmx(const MatMulArgs& a, int64_t n0, int64_t n1) {
  static const TileConfig config = MakeConfig();
  constexpr bool kUnpack = std::is_same_v<W, Q4Lanes>;
  const Regrouped r = Regroup<W>(a, kUnpack ? Positions(a.K) * 512 : 0);
  const int64_t tiles = (a.M + kTileTokens - 1) / kTileTokens;
  _tile_loadconfig(&config);
  for (int64_t g = n0 / kRows; g * kRows < n1; ++g) {
    const int64_t r0 = std::max(n0, g * kRows), r1 = std::min(n1, (g + 1) * kRows);
    const GroupCtx<W> ctx{r, static_cast<const uint8_t*>(a.w) + g * kRows * a.w_row_bytes, a.K, r.extra};
    if constexpr (kUnpack) UnpackQ4Group(ctx.group, a.K, r.extra);
    for (int64_t u = 0; u < tiles; ++u) {
      __m512 f[kTileTokens];
      if (u == 0) {
        GroupTileAmx<W, true>(ctx, u, f);
      } else {
        GroupTileAmx<W, false>(ctx, u, f);
      }
      const __mmask16 mask = static_cast<__mmask16>(((1u << (r1 - r0)) - 1) << (r0 - g * kRows));
      for (int64_t t = 0; t < std::min(kTileTokens, a.M - u * kTileTokens); ++t) {
        _mm512_mask_storeu_ps(a.y + (u * kTileTokens + t) * a.ldy + g * kRows, mask, f[t]);
      }
    }
  }
  _tile_release();
}

}  // namespace

namespace avx512 {
void MatMulQ8LanesAmx(const MatMulArgs& a, int64_t n0, int64_t n1) { MatMulLanesAmx<Q8Lanes>(a, n0, n1); }
void MatMulQ4LanesAmx(const MatMulArgs& a, int64_t n0, int64_t n1) { MatMulLanesAmx<Q4Lanes>(a, n0, n1); }
}  // namespace avx512
}  // namespace flotilla::kernels::cpu
