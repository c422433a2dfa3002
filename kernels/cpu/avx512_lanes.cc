// AVX-512 Q8_0 and Q4_0 products over rows packed sixteen to a group, one output row per 32-bit
// lane. Compiled with the AVX-512 variant's flags (kernels/CMakeLists.txt).
//
// The oct kernels (avx512_kernels.cc) put one block in each pair of lanes and one row in each
// accumulator, so every (row, token) pair costs 4 VNNI products, a convert, a scale product and
// an FMA per 256 weights, plus a horizontal sum at the end. Here a lane is a row: sixteen rows
// share each vector, the activations are broadcast, and per block and token the sixteen rows
// take 8 VNNI products, one add, one convert, one scale product and one FMA, with no horizontal
// sums. The activations keep OctActFormat: a block's two lanes there become the two dot-product
// chains here (the first started from both lanes' offset terms), so the same activation rows
// feed both layouts (and the file layout's kernels for unpacked matrices).
//
// Layout of a whole group of 16 rows (16 x the packed row bytes: the file's, and 2 more where the
// row holds an odd number of blocks, so that groups stay 64-byte aligned): per oct, four pairs
// of block positions p (OctActFormat order); a last, partial oct (K not a multiple of 256: r < 8
// blocks) holds its blocks in order, two to a pair (blocks 2k and 2k + 1, at positions
// kOctPos[2k] and kOctPos[2k + 1]: see PairPos), and an odd last block alone in half a pair
// (its vectors, its scales, 32 zero bytes). Q8_0, each pair 1,088 bytes (17 lines):
//   [512 bytes: position p's 8 vectors][512: position p+1's][32: p's 16 f16 scales][32: p+1's]
// Vector (e, j) of a position (e = 0, 1; j = 0..3; index 4e + j) holds in lane r the four
// weights that meet lane 2p + e of OctActFormat vector j, for row r of the group, offset by 128
// to unsigned. Q4_0, each pair 576 bytes (9 lines): the same with each position's 8 vectors
// as 4 of nibbles (256 bytes), vector j's low nibbles being vector (0, j) and its high nibbles
// vector (1, j), values 0..15 as ggml stores them (offset 8). Rows after the last whole group
// are stored as in the file.
//
// Per output the arithmetic is fixed (octs in order, pairs in order, the two chains added,
// converted, scaled, accumulated), so a token's results do not depend on the batch, the tile or
// the row split; they differ from the file layout's kernels by rounding (another summation
// order).
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <type_traits>

#include "kernels/cpu/act_format.h"
#include "kernels/cpu/amx.h"
#include "kernels/cpu/avx512_common.h"
#include "kernels/cpu/avx512_lanes.h"
#include "kernels/quant.h"

namespace flotilla::kernels::cpu {
namespace {

// How far ahead the tiles of batches of at most kSmallBatch tokens ask (see GroupTile).
constexpr int64_t kSmallBatch = 8, kSmallBatchL1Bytes = 8192, kSmallBatchL2Bytes = 12288;

// acc + the products of w's unsigned bytes with the signed bytes of the 32 bits at p, repeated
// over the lanes. The broadcast rides in the product's memory operand ({1to16}); the compiler
// (GCC 12) only ever emits a separate broadcast for it, which doubled the vector instructions
// of the inner loop. 1.05-1.07x on 110M Q8_0 batch 16 at 2 threads, 1.04x on 1B prompts, 1.02x
// on 110M Q4_0 batch 16; one token unchanged (it waits on memory).
FLOTILLA_INLINE __m512i DotBcast(__m512i acc, __m512i w, const uint8_t* p) {
  using Word = int32_t __attribute__((may_alias));
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const Word*>(p)));
  return acc;
}

// The offset terms of a block's two activation lanes, summed, times the weights' offset.
template <class W>
FLOTILLA_INLINE __m512i BcastStart(const uint8_t* p) {
  int32_t v[2];
  std::memcpy(v, p, 8);
  return _mm512_set1_epi32((v[0] + v[1]) * W::kOffset);
}

// One block position of a group against one token: the integer sums of the 16 rows' products
// with the activations at x (the position's place in an OctActFormat oct), in two chains, the
// first started from the offset terms. The same arithmetic for every tile and stream. kHigh16:
// the second chain's weights are 16 times their value (Q4_0's high nibbles masked in place, not
// shifted down, for one token, which has no other tokens to share the unpacking with); its sum
// is then exactly 16 times as large, and an arithmetic shift brings it back.
template <class W, bool kHigh16 = false>
FLOTILLA_INLINE __m512i PositionDot(const __m512i (&w)[8], const uint8_t* x) {
  __m512i c0 = BcastStart<W>(x + 256), c1 = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    c0 = DotBcast(c0, w[j], x + 64 * j);
    c1 = DotBcast(c1, w[4 + j], x + 64 * j + 4);
  }
  return _mm512_add_epi32(c0, kHigh16 ? _mm512_srai_epi32(c1, 4) : c1);
}

// A packed row's bytes: the file's, 2 more with an odd block (32 more a group, keeping groups
// 64-byte aligned).
template <class W>
int64_t LaneRowBytesOf(int64_t K) {
  return K / kQK * static_cast<int64_t>(sizeof(typename W::Block)) + (OddBlock(K) ? 2 : 0);
}

// Packs rows (whole groups as above; rows after the last group as stored).
template <class W>
void PackLanesOf(const uint8_t* src, int64_t src_row_bytes, int64_t rows, int64_t K, uint8_t* dst) {
  using Block = typename W::Block;
  const int64_t file_row_bytes = K / kQK * static_cast<int64_t>(sizeof(Block));
  const int64_t row_bytes = LaneRowBytesOf<W>(K);
  const int64_t groups = rows / kRows;
  // Block b of every row of group g: its vectors at vecs, its 16 scales at scale_bytes.
  auto fill = [&](int64_t g, int64_t b, uint8_t* vecs, uint8_t* scale_bytes) {
    auto* scales = reinterpret_cast<uint16_t*>(scale_bytes);
    for (int64_t r = 0; r < kRows; ++r) {
      const Block& blk = reinterpret_cast<const Block*>(src + (g * kRows + r) * src_row_bytes)[b];
      scales[r] = blk.d;
      W::Fill(blk, vecs, r);
    }
  };
  for (int64_t g = 0; g < groups; ++g) {
    uint8_t* out = dst + g * kRows * row_bytes;
    for (int64_t q = 0; q < Pairs(K); ++q) {
      const int64_t o = q / 4;
      const int k = static_cast<int>(q % 4);
      for (int h = 0; h < 2; ++h) {
        // The block at this pair's half: the one whose activations sit at its position.
        const int64_t b = o * 8 + OctActFormat::kOctPos[PairPos(o == WholeOcts(K), k, h)];
        uint8_t* pair = out + q * W::kPairBytes;
        fill(g, b, pair + W::kVecBytes * h, pair + 2 * W::kVecBytes + 32 * h);
      }
    }
    if (OddBlock(K)) {
      uint8_t* half = out + OddBlockOffset<W>(K);
      fill(g, K / kQK - 1, half, half + W::kVecBytes);
      std::memset(half + W::kVecBytes + 32, 0, 32);
    }
  }
  // Rows after the last group as stored, row_bytes apart (their 2 extra bytes zero).
  for (int64_t r = groups * kRows; r < rows; ++r) {
    std::memcpy(dst + r * row_bytes, src + r * src_row_bytes, file_row_bytes);
    std::memset(dst + r * row_bytes + file_row_bytes, 0, row_bytes - file_row_bytes);
  }
}

// One position (its vectors at vecs, its 16 scales at scales) for tokens xr[0..T-1], whose
// activations for it sit at byte offset xo of their rows, added into f.
template <class W, int T>
FLOTILLA_INLINE void PositionTile(const uint8_t* vecs, const uint8_t* scales, const uint8_t* const (&xr)[T], int64_t xo,
                                  __m512 (&f)[T]) {
  __m512i w[8];
  W::Load(vecs, w);
  const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(scales)));
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
    const uint8_t* x = xr[t] + xo;
    const __m512 scale = _mm512_mul_ps(dw, _mm512_set1_ps(LoadF(x + 320)));
    f[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(PositionDot<W>(w, x)), scale, f[t]);
  }
}

// One pair of positions (its vectors and scales at blk), the halves' activations at byte offsets
// x0 and x1.
template <class W, int T>
FLOTILLA_INLINE void PairTile(const uint8_t* blk, const uint8_t* const (&xr)[T], int64_t x0, int64_t x1, __m512 (&f)[T]) {
  PositionTile<W, T>(blk, blk + 2 * W::kVecBytes, xr, x0, f);
  PositionTile<W, T>(blk + W::kVecBytes, blk + 2 * W::kVecBytes + 32, xr, x1, f);
}

// Tokens m..m+T-1 of row group g, added into f (lane r: row 16g + r).
template <class W, int T>
FLOTILLA_INLINE void GroupTile(const MatMulArgs& a, int64_t g, int64_t m, __m512 (&f)[T]) {
  constexpr int64_t kPairBytes = W::kPairBytes;
  const auto* base = static_cast<const uint8_t*>(a.w) + g * kRows * a.w_row_bytes;
  // In a batch of more than 8 tokens every tile asks 4 KiB ahead, whatever its size. A full tile
  // asking for the same pair of the next group instead (and the second tile of a batch of 16 for
  // nothing) kept fewer lines in flight: 110M Q8_0 batch 16 at 2 threads ran 1.10x with 4 KiB
  // (2 KiB 0.92x, 3 KiB 0.98x, 6 KiB 1.0x, 8 KiB 0.98x of 4 KiB); prompts 1.02x.
  // A batch of at most 8 tokens passes over each group once (or twice, in two small tiles) and
  // does too little work per line for 4 KiB / 8 KiB ahead to keep the stream's misses in flight:
  // it asks 8 KiB ahead into L1 and 12 KiB into L2. 110M Q8_0 at 2 threads, ten alternating
  // rounds against 4 / 8 KiB: batch 4 1.080x (every round better; 6 / 12 KiB 1.057x, 8 / 16 KiB
  // 1.058x, 4 / 16 KiB 1.007x, 16 / 32 KiB 0.99x), eight rounds: batch 2 1.056x, batch 8 1.037x;
  // 110M Q4_0 batch 4 1.034x, 1B Q8_0 / Q4_0 batch 4 1.007x / 1.016x (six rounds; 12 / 24 KiB
  // there 0.84x / 1.05x).
  const bool small = a.M <= kSmallBatch;
  const int64_t ahead = small ? kSmallBatchL1Bytes : kPrefetchBytes;
  const int64_t ahead_l2 = small ? kSmallBatchL2Bytes : kL2PrefetchBytes;
  // The first tile over a group (the one that brings its rows from memory) also asks for the
  // lines 8 KiB ahead into L2: one core keeps only a few dozen misses in flight to L1, more to
  // L2, and the first tile needs its rows faster than that L1 window alone delivers them.
  // Later tiles find those lines already asked for, so they skip it (asking on every tile cost
  // a 128-token prompt 7 %). 110M Q8_0 batch 16 at 2 threads, alternating rounds against 4 KiB
  // alone: 1.044-1.062x in four sets, 6 KiB 1.043x, 12 KiB 1.064x with a wider spread, 16 KiB
  // 0.86x; 110M Q4_0 batch 16 1.00x; 1B Q8_0 batch 16 0.97-1.04x as the host varied; prompts
  // 0.99-1.01x.
  const bool first_tile = m == 0;
  const uint8_t* xr[T];
  for (int t = 0; t < T; ++t) xr[t] = static_cast<const uint8_t*>(a.x) + (m + t) * a.x_row_bytes;
  for (int t = 0; t < T; ++t) f[t] = _mm512_setzero_ps();
  const int64_t octs = WholeOcts(a.K);
  for (int64_t q = 0; q < Pairs(a.K); ++q) {
    const uint8_t* blk = base + q * kPairBytes;
    for (int64_t b = 0; b < kPairBytes; b += 64) _mm_prefetch(reinterpret_cast<const char*>(blk + ahead + b), _MM_HINT_T0);
    if (first_tile) {
      for (int64_t b = 0; b < kPairBytes; b += 64) _mm_prefetch(reinterpret_cast<const char*>(blk + ahead_l2 + b), _MM_HINT_T1);
    }
    const int64_t o = q / 4;
    const int k = static_cast<int>(q % 4);
    const int64_t xo = o * OctActFormat::kOctBytes;
    PairTile<W, T>(blk, xr, xo + 8 * PairPos(o == octs, k, 0), xo + 8 * PairPos(o == octs, k, 1), f);
  }
  if (OddBlock(a.K)) {
    const uint8_t* half = base + OddBlockOffset<W>(a.K);
    PositionTile<W, T>(half, half + W::kVecBytes, xr, OddActOffset(a.K), f);
  }
}

// Stores rows [r0, r1) of the group (lanes r0 - 16g ..) for each token.
template <int T>
FLOTILLA_INLINE void StoreGroup(const MatMulArgs& a, int64_t g, int64_t m, int64_t r0, int64_t r1, const __m512 (&f)[T]) {
  const __mmask16 mask = static_cast<__mmask16>(((1u << (r1 - r0)) - 1) << (r0 - g * kRows));
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(a.y + (m + t) * a.ldy + g * kRows, mask, f[t]);
}

template <class W, int T>
FLOTILLA_INLINE void Tile(const MatMulArgs& a, int64_t g, int64_t m, int64_t r0, int64_t r1) {
  __m512 f[T];
  GroupTile<W, T>(a, g, m, f);
  StoreGroup<T>(a, g, m, r0, r1, f);
}

// One token streams weights from memory at a pace set by how many lines are in flight. Reading
// the thread's groups as one sequential stream left the product short of the bandwidth the host
// gives a plain read loop; reading two streams at once (the groups of the two halves of the
// thread's rows side by side) keeps more misses in flight. They are left to the hardware's
// prefetchers, which keep more lines in flight than requests into L1 from the kernel did.
// 1B decode at 2 threads, alternating runs (2026-12-07, every stream asking 2 KiB ahead into
// L1): one stream 0.975x (Q8_0 roofline 0.81), two 1.04x, four 1.10x (0.84-0.89), six and eight
// 0.88x and 0.78x of four; 4 KiB ahead 0.97x of 2 KiB. 2026-12-08, without those requests,
// against four streams with them (the read probe at 51-85 GB/s): Q8_0 two streams 1.09x (roofline
// 0.95 against 0.85 by the median; 110M 1.02x), three 1.06x, four 1.06x; Q4_0 (high nibbles
// masked in place, see PositionDot) two streams 1.11x and 1.01x in sets of 6 and 8 rounds (110M
// 1.02x); before that change 1.01x, 1.09x, 1.05x, 0.99x; three streams 0.90x; four asking 1 KiB
// ahead 1.04-1.07x, 4 KiB 0.97x. L2 requests on top: 0.84-1.0x.
constexpr int kOneTokenStreams = 2;

// One position of S groups for token 0 (group i's vectors at vecs[i] and 16 scales at
// scales[i], the activations at x), added into f.
template <class W, int S>
FLOTILLA_INLINE void PositionOneToken(const uint8_t* const (&vecs)[S], const uint8_t* const (&scales)[S], const uint8_t* x,
                                      __m512 (&f)[S]) {
  const __m512 xs = _mm512_set1_ps(LoadF(x + 320));
#pragma GCC unroll 4
  for (int i = 0; i < S; ++i) {
    __m512i w[8];
    if constexpr (W::kHigh16) {
      W::LoadHigh16(vecs[i], w);
    } else {
      W::Load(vecs[i], w);
    }
    const __m512i dot = PositionDot<W, W::kHigh16>(w, x);
    const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(scales[i])));
    f[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, xs), f[i]);
  }
}

// Token 0 of the groups g[0..S-1] at once (lane r of f[i]: row 16 g[i] + r). Each group's
// arithmetic is GroupTile<1>'s, in the same order, so the results do not depend on S.
template <class W, int S>
FLOTILLA_INLINE void GroupsOneToken(const MatMulArgs& a, const int64_t (&g)[S], __m512 (&f)[S]) {
  constexpr int64_t kPairBytes = W::kPairBytes;
  const int64_t gbytes = kRows * a.w_row_bytes;
  const uint8_t* base[S];
  for (int i = 0; i < S; ++i) base[i] = static_cast<const uint8_t*>(a.w) + g[i] * gbytes;
  const auto* xr = static_cast<const uint8_t*>(a.x);
  const int64_t octs = WholeOcts(a.K);
  for (int i = 0; i < S; ++i) f[i] = _mm512_setzero_ps();
  for (int64_t q = 0; q < Pairs(a.K); ++q) {
    const int64_t o = q / 4;
    const int k = static_cast<int>(q % 4);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const uint8_t *vecs[S], *scales[S];
      for (int i = 0; i < S; ++i) {
        const uint8_t* pair = base[i] + q * kPairBytes;
        vecs[i] = pair + W::kVecBytes * h;
        scales[i] = pair + 2 * W::kVecBytes + 32 * h;
      }
      PositionOneToken<W, S>(vecs, scales, xr + o * OctActFormat::kOctBytes + 8 * PairPos(o == octs, k, h), f);
    }
  }
  if (OddBlock(a.K)) {
    const uint8_t *vecs[S], *scales[S];
    for (int i = 0; i < S; ++i) {
      vecs[i] = base[i] + OddBlockOffset<W>(a.K);
      scales[i] = vecs[i] + W::kVecBytes;
    }
    PositionOneToken<W, S>(vecs, scales, xr + OddActOffset(a.K), f);
  }
}

// Rows [n0, n1) for one token: S streams, one over each S-th of the groups, side by side; the
// groups left over one at a time.
template <class W, int S>
void OneToken(const MatMulArgs& a, int64_t n0, int64_t n1) {
  const int64_t g0 = n0 / kRows, g1 = (n1 + kRows - 1) / kRows, per = (g1 - g0) / S;
  auto store = [&](int64_t g, __m512 v) {
    const __m512 f[1] = {v};
    StoreGroup<1>(a, g, 0, std::max(n0, g * kRows), std::min(n1, (g + 1) * kRows), f);
  };
  for (int64_t k = 0; k < per; ++k) {
    int64_t g[S];
    __m512 f[S];
    for (int i = 0; i < S; ++i) g[i] = g0 + i * per + k;
    GroupsOneToken<W, S>(a, g, f);
    for (int i = 0; i < S; ++i) store(g[i], f[i]);
  }
  for (int64_t g = g0 + S * per; g < g1; ++g) {
    const int64_t one[1] = {g};
    __m512 f[1];
    GroupsOneToken<W, 1>(a, one, f);
    store(g, f[0]);
  }
}

}  // namespace

namespace avx512 {

// FLOTILLA_Q8_LANES=0 keeps Q8_0 in octs, for comparison: batches and prompts run 15-18 % slower
// there, and one token no faster (1B decode at 2 threads, alternating runs: 0.853 of the
// roofline against the row groups' 0.859 with four streams; with one stream the row groups had
// been 3 % slower). FLOTILLA_Q4_LANES=0 likewise for Q4_0: against its octs (alternating runs, 2
// threads) 110M batch 16 1.24-1.27x, 1B batch 16 1.13x, 1B prompt 1.22x, 1B decode 1.01-1.07x
// (four streams where the octs take two); kernels_bench at 16 tokens +40-50 %. Each is read
// once: a matrix's layout must not change while it is in use.
bool LaneLayout(DType w, int64_t K) {
  auto on = [](const char* name) {
    const char* e = std::getenv(name);
    return !(e && std::string_view(e) == "0");
  };
  static const bool q8 = on("FLOTILLA_Q8_LANES"), q4 = on("FLOTILLA_Q4_LANES");
  const bool type_on = (w == DType::kQ8_0 && q8) || (w == DType::kQ4_0 && q4);
  // Two blocks at least: an odd block's 2 bytes stay within 1/16 of a row (Q4_0: 3 x 18 bytes).
  return type_on && K >= 2 * kQK && K % kQK == 0;
}

int64_t LaneRowBytes(DType w, int64_t K) {
  return w == DType::kQ8_0 ? LaneRowBytesOf<Q8Lanes>(K) : LaneRowBytesOf<Q4Lanes>(K);
}

void PackLanes(DType w, const uint8_t* src, int64_t src_row_bytes, int64_t rows, int64_t K, uint8_t* dst) {
  if (w == DType::kQ8_0) return PackLanesOf<Q8Lanes>(src, src_row_bytes, rows, K, dst);
  PackLanesOf<Q4Lanes>(src, src_row_bytes, rows, K, dst);
}

template <class W>
void MatMulLanes(const MatMulArgs& a, int64_t n0, int64_t n1) {
  if (a.M == 1) return OneToken<W, kOneTokenStreams>(a, n0, n1);
  // Whole 16-token tiles on AMX where that is on (amx.h), the rest here.
  const bool amx = a.M >= 16 && AmxBatchesOn();
  if (amx) AmxBegin();
  // Groups outermost: a group's rows (34 KiB at K = 2048) stay in cache for all its token tiles.
  for (int64_t g = n0 / kRows; g * kRows < n1; ++g) {
    const int64_t r0 = std::max(n0, g * kRows), r1 = std::min(n1, (g + 1) * kRows);
    int64_t m = 0;
    if (amx) {
      if constexpr (std::is_same_v<W, Q8Lanes>) {
        AmxQ8GroupTiles(a, g, r0, r1);
      } else {
        AmxQ4GroupTiles(a, g, r0, r1);
      }
      m = a.M / 16 * 16;
    }
    for (; m + 8 <= a.M; m += 8) Tile<W, 8>(a, g, m, r0, r1);
    if (m + 4 <= a.M) {
      Tile<W, 4>(a, g, m, r0, r1);
      m += 4;
    }
    switch (a.M - m) {
      case 3: Tile<W, 3>(a, g, m, r0, r1); break;
      case 2: Tile<W, 2>(a, g, m, r0, r1); break;
      case 1: Tile<W, 1>(a, g, m, r0, r1); break;
      default: break;
    }
  }
  if (amx) AmxEnd();
}

void MatMulQ8Lanes(const MatMulArgs& a, int64_t n0, int64_t n1) { MatMulLanes<Q8Lanes>(a, n0, n1); }
void MatMulQ4Lanes(const MatMulArgs& a, int64_t n0, int64_t n1) { MatMulLanes<Q4Lanes>(a, n0, n1); }

}  // namespace avx512
}  // namespace flotilla::kernels::cpu
