// Q8_0 and Q4_0 batch products on AMX tiles, over the sixteen-row lane layout (avx512_lanes.h).
// Compiled with the AVX-512 variant's flags and AMX's (kernels/CMakeLists.txt); run only where
// AmxBatchesOn() (amx.h).
//
// A lane group's position (one block of 16 rows) is 8 vectors of 16 rows x 4 weight bytes: the
// first 8 rows of a B tile as packed. The activation rows carry, after their OctActFormat part,
// each block's 32 bytes in the order those vectors meet them (WriteAmxAct), so sixteen tokens'
// rows are an A tile as they lie, and one TDPBSUD gives the 16 x 16 integer sums that the VNNI
// kernel builds with 128 `vpdpbusd`. A tile 64 bytes deep costs what one 32 deep does, so the
// second half of each A row holds 32 bytes summing to the block's offset term and B's last 8
// rows hold the weights' offset: the sums come out with the term in. Every block needs its own
// scales, so the sums leave through memory once per block, and each token's row of 16 sums
// then takes the VNNI kernel's arithmetic (converted, times the weight scales times the token's
// scale, one FMA) in the same order: every output is bit for bit what MatMulQ8Lanes /
// MatMulQ4Lanes give, and a token's results still do not depend on its batch.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "kernels/cpu/amx.h"
#include "kernels/cpu/avx512_lanes.h"
#include "kernels/cpu/cpu_features.h"

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
    c.colsb[2 + t] = 64;  // A: 16 tokens x (32 activation bytes, 32 bytes of offset term)
    c.rows[2 + t] = 16;
    c.colsb[4 + t] = 64;  // B: 8 x (16 rows x 4 weight bytes), then 8 x 64 bytes of offset
    c.rows[4 + t] = 16;
  }
  return c;
}

// The AMX part of an activation row: per position, 64 bytes (the A row), then per position
// the block's scale (f32).
FLOTILLA_INLINE int64_t AmxRowsOffset(int64_t K) { return OctActFormat::RowBytes(K); }
FLOTILLA_INLINE int64_t AmxScalesOffset(int64_t K) { return AmxRowsOffset(K) + Positions(K) * 64; }

// The block's offset term is kOffset x v, v = minus the sum of its 32 activations (|v| <= 32 x
// 127): 32 signed bytes summing to v, which meet 32 bytes of kOffset in B's last 8 rows.
FLOTILLA_INLINE void OffsetBytes(int32_t v, uint8_t* out) {
  const int32_t q = v / 32, rest = v - 32 * q, step = rest < 0 ? -1 : 1;
  // Bytes k < |rest| take one step more.
  const __m256i iota = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
                                        25, 26, 27, 28, 29, 30, 31);
  const __m256i more = _mm256_cmpgt_epi8(_mm256_set1_epi8(static_cast<char>(rest * step)), iota);
  const __m256i bytes = _mm256_add_epi8(_mm256_set1_epi8(static_cast<char>(q)),
                                        _mm256_and_si256(more, _mm256_set1_epi8(static_cast<char>(step))));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), bytes);
}

// B tiles pass through a ring of stage buffers, kStageAhead positions before a product reads
// them: each 1,024 bytes, a position's 8 weight vectors (Q8_0's copied, Q4_0's nibbles unpacked)
// and then 8 rows of kOffset, written once per call. Copying Q8_0's vectors with vector loads
// keeps many misses in flight where a tile load straight from memory stalls the tile unit, and
// a tile load right after the stores would wait for them to drain.
constexpr int64_t kStageAhead = 2, kStageRing = 4, kBBytes = 1024;
using StageRing = uint8_t[kStageRing][kBBytes];

template <class W>
FLOTILLA_INLINE void Stage(const uint8_t* group, int64_t K, int64_t i, StageRing& ring) {
  if (i >= Positions(K)) return;
  const uint8_t* v = Vecs<W>(group, K, i);
  for (int64_t k = 0; k < W::kVecBytes; k += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(v + kPrefetchBytes + k), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(v + kL2PrefetchBytes + k), _MM_HINT_T1);
  }
  __m512i w[8];
  W::Load(v, w);
  uint8_t* dst = ring[i % kStageRing];
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) _mm512_store_si512(dst + 64 * k, w[k]);
}

// Position i's sums for the token tile whose A rows start at act (stride apart), into C tile
// kSet (0 or 1), stored to c. (GCC's tile intrinsics paste their tile numbers into the assembly
// text: they must be literals.)
template <int kSet>
FLOTILLA_INLINE void Product(const uint8_t* act, int64_t stride, const uint8_t* w, int32_t* c) {
  if constexpr (kSet == 0) {
    _tile_loadd(2, act, stride);
    _tile_loadd(4, w, 64);
    _tile_zero(0);
    _tile_dpbsud(0, 2, 4);
    _tile_stored(0, c, 64);
  } else {
    _tile_loadd(3, act, stride);
    _tile_loadd(5, w, 64);
    _tile_zero(1);
    _tile_dpbsud(1, 3, 5);
    _tile_stored(1, c, 64);
  }
}

// Adds one position's sums (c: token t's 16 rows at c + 16 t) into f: PositionTile's arithmetic;
// token t's scale at scale + t * stride.
FLOTILLA_INLINE void Accumulate(const int32_t* c, const uint8_t* scale, int64_t stride, const uint8_t* wscales,
                                __m512 (&f)[kTileTokens]) {
  const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(wscales)));
#pragma GCC unroll 16
  for (int t = 0; t < kTileTokens; ++t) {
    const __m512 s = _mm512_mul_ps(dw, _mm512_set1_ps(LoadF(scale + t * stride)));
    f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(c + 16 * t)), s, f[t]);
  }
}

// Tokens m..m+15 of row group g into f: each position's product on one tile set while the
// previous position's sums (the other set) are added in.
template <class W>
void GroupTile(const MatMulArgs& a, const uint8_t* group, int64_t m, StageRing& ring, __m512 (&f)[kTileTokens]) {
  alignas(64) int32_t c[2][kTileTokens * 16];
  const int64_t P = Positions(a.K), stride = a.x_row_bytes;
  const uint8_t* x = static_cast<const uint8_t*>(a.x) + m * stride;
  const uint8_t* rows = x + AmxRowsOffset(a.K);
  const uint8_t* scales = x + AmxScalesOffset(a.K);
  auto add = [&](int64_t i, const int32_t* sums) { Accumulate(sums, scales + 4 * i, stride, Scales<W>(group, a.K, i), f); };
  auto b = [&](int64_t i) {
    Stage<W>(group, a.K, i + kStageAhead, ring);
    return ring[i % kStageRing];
  };
  for (auto& v : f) v = _mm512_setzero_ps();
  for (int64_t k = 0; k < kStageAhead; ++k) Stage<W>(group, a.K, k, ring);
  Product<0>(rows, stride, b(0), c[0]);
  int64_t i = 1;
  for (; i + 1 < P; i += 2) {
    Product<1>(rows + 64 * i, stride, b(i), c[1]);
    add(i - 1, c[0]);
    Product<0>(rows + 64 * (i + 1), stride, b(i + 1), c[0]);
    add(i, c[1]);
  }
  if (i < P) {
    Product<1>(rows + 64 * i, stride, b(i), c[1]);
    add(i - 1, c[0]);
    add(i, c[1]);
  } else {
    add(i - 1, c[0]);
  }
}

template <class W>
void GroupTilesOf(const MatMulArgs& a, int64_t g, int64_t r0, int64_t r1) {
  // One ring per thread and weight type, its offset rows written once.
  alignas(64) thread_local StageRing ring;
  thread_local bool filled = false;
  if (!filled) {
    for (auto& slot : ring) std::memset(slot + 512, W::kOffset, 512);
    filled = true;
  }
  const uint8_t* group = static_cast<const uint8_t*>(a.w) + g * kRows * a.w_row_bytes;
  const __mmask16 mask = static_cast<__mmask16>(((1u << (r1 - r0)) - 1) << (r0 - g * kRows));
  for (int64_t m = 0; m + kTileTokens <= a.M; m += kTileTokens) {
    __m512 f[kTileTokens];
    GroupTile<W>(a, group, m, ring, f);
    for (int64_t t = 0; t < kTileTokens; ++t) _mm512_mask_storeu_ps(a.y + (m + t) * a.ldy + g * kRows, mask, f[t]);
  }
}

}  // namespace

namespace avx512 {

bool AmxBatchesOn() {
  static const bool on = [] {
    const char* e = std::getenv("FLOTILLA_AMX");
    return !(e && std::string_view(e) == "0") && AmxUsable();
  }();
  return on;
}

int64_t AmxActBytes(DType w, int64_t K) {
  if (!AmxBatchesOn() || !LaneLayout(w, K)) return 0;
  return (Positions(K) * 68 + 63) / 64 * 64;
}

// Reads the row's OctActFormat part. OctActFormat keeps a block's 32 bytes as 8-byte pieces of
// four vectors (lanes 2p and 2p + 1 of vector j); vector (e, j) of a weight position meets lane
// 2p + e of vector j, so the A row takes those 4-byte lanes in the order e, j: a 4 x 4 transpose
// of 32-bit lanes within each 128-bit lane of the four vectors.
void WriteAmxAct(DType w, int64_t K, void* act) {
  if (AmxActBytes(w, K) == 0) return;
  auto* row = static_cast<uint8_t*>(act);
  uint8_t* rows = row + AmxRowsOffset(K);
  uint8_t* scales = row + AmxScalesOffset(K);
  const int64_t whole = WholeOcts(K), positions = Positions(K);
  for (int64_t o = 0; o < OctActFormat::Octs(K); ++o) {
    const uint8_t* oct = row + o * OctActFormat::kOctBytes;
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
      if (i >= positions) continue;
      uint8_t* dst = rows + 64 * i;
      const int lane = p / 2, s = p % 2;
      std::memcpy(dst, tt[2 * s] + 16 * lane, 16);
      std::memcpy(dst + 16, tt[2 * s + 1] + 16 * lane, 16);
      OffsetBytes(off[2 * p] + off[2 * p + 1], dst + 32);
      std::memcpy(scales + 4 * i, oct + 320 + 8 * p, 4);
    }
  }
}

void AmxBegin() {
  static const TileConfig config = MakeConfig();
  _tile_loadconfig(&config);
}
void AmxEnd() { _tile_release(); }

void AmxQ8GroupTiles(const MatMulArgs& a, int64_t g, int64_t r0, int64_t r1) { GroupTilesOf<Q8Lanes>(a, g, r0, r1); }
void AmxQ4GroupTiles(const MatMulArgs& a, int64_t g, int64_t r0, int64_t r1) { GroupTilesOf<Q4Lanes>(a, g, r0, r1); }

}  // namespace avx512
}  // namespace flotilla::kernels::cpu
