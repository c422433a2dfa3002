// Shared by the AVX-512 variant's two files (avx512_kernels.cc: quantized products and the
// table; avx512_float_kernels.cc: float-weight products, attention and element-wise ops).
// Include it only from files compiled with the AVX-512 flags (kernels/CMakeLists.txt): its
// helpers sit in an anonymous namespace, so each such file has its own copies and none can
// stand in for baseline code elsewhere.
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/cpu/kernel_table.h"
#include "kernels/dtype.h"

#define FLOTILLA_INLINE inline __attribute__((always_inline))

namespace flotilla::kernels::cpu {
namespace {

// exp(x) to about 2 ulp over the range that matters for softmax and SiLU (Cephes polynomial).
FLOTILLA_INLINE __m512 Exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.3f));
  const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 y = _mm512_set1_ps(1.9875691500E-4f);
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507E-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073E-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894E-2f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459E-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201E-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(fx), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

FLOTILLA_INLINE __mmask16 TailMask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1); }

// ---- horizontal sums ---------------------------------------------------------------------------
//
// Every horizontal sum here adds the 16 lanes in one fixed order: within each 128-bit lane
// (x0 + x2) + (x1 + x3), then across them (L0 + L2) + (L1 + L3). Reduce16 sums sixteen vectors
// at once by a transpose-and-add tree (about 45 instructions where sixteen separate sums take
// about 130, which was a tenth of a batched tile over K = 768); ReduceOne sums one vector in the
// same order. A (row, token) result is therefore bitwise the same whichever tile computed it.

// Lane i of the result is the sum of the lanes of v[i].
FLOTILLA_INLINE __m512 Reduce16(const __m512* v) {
  __m512 p[8], q[4];
  for (int i = 0; i < 8; ++i) {
    p[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  }
  // p[i] per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] for a = v[2i], b = v[2i+1].
  for (int i = 0; i < 4; ++i) {
    q[i] = _mm512_add_ps(_mm512_shuffle_ps(p[2 * i], p[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(p[2 * i], p[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // q[i] per 128-bit lane k: the lane-k sums of v[4i .. 4i+3].
  const __m512 u = _mm512_add_ps(_mm512_shuffle_f32x4(q[0], q[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_f32x4(q[0], q[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 w = _mm512_add_ps(_mm512_shuffle_f32x4(q[2], q[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_f32x4(q[2], q[3], _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(u, w, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(u, w, _MM_SHUFFLE(3, 1, 3, 1)));
}

FLOTILLA_INLINE float ReduceOne(__m512 v) {
  v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));  // x0 + x2, x1 + x3
  v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));  // (x0 + x2) + (x1 + x3)
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));  // L0 + L2, L1 + L3
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(v);
}

// Writes the sums of a tile's accumulators: acc[r][t] is y[(m + t) * ldy + n + r].
template <int R, int T>
FLOTILLA_INLINE void StoreTileSums(const __m512 (&acc)[R][T], float* y, int64_t ldy, int64_t n, int64_t m) {
  static_assert(R * T <= 16, "one Reduce16 per tile");
  if constexpr (R * T <= 4) {  // a few sums: one at a time is cheaper than a padded tree
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < R; ++r) y[(m + t) * ldy + n + r] = ReduceOne(acc[r][t]);
  } else {
    __m512 v[16];
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < R; ++r) v[t * R + r] = acc[r][t];
    for (int i = R * T; i < 16; ++i) v[i] = _mm512_setzero_ps();
    alignas(64) float s[16];
    _mm512_store_ps(s, Reduce16(v));
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < R; ++r) y[(m + t) * ldy + n + r] = s[t * R + r];
  }
}

// Software prefetch distance ahead of each weight row pointer. Decode reads one row at a time,
// so the rows of a thread's range form one contiguous stream; 4 KiB ahead measured best on the
// 2-core Zen 5 host (2-8 KiB within noise; none was 20 % slower), together with the hardware
// prefetcher. Prefetching past the matrix is harmless.
constexpr int64_t kPrefetchBytes = 4096;

}  // namespace

namespace avx512 {
// avx512_float_kernels.cc: sets the table's float-weight products (as stored and packed),
// f32_to_f16, softmax, silu_mul and attention.
void AddFloatKernels(KernelTable& t);
// avx512_float_kernels.cc: KernelTable::pack_rows for F32/F16/BF16 (rows interleaved in groups
// of kFloatGroup; K a multiple of 16).
void PackFloatRows(DType w, const uint8_t* src, int64_t src_row_bytes, int64_t rows, int64_t K, uint8_t* dst);
// avx512_lanes.cc: Q8_0 and Q4_0 rows packed sixteen to a group, one row per lane (K at least
// 64: LaneLayout), LaneRowBytes apart: the file's row size, 2 bytes more where a row holds an
// odd number of blocks; rows after the last whole group stay as stored. MatMulQ8Lanes and
// MatMulQ4Lanes cover whole groups only (the caller runs the file layout's kernel on the rows
// after them).
constexpr int64_t kLaneRows = 16;  // rows per group
// Packed pieces start on multiples of kPackRowAlign rows, so no group straddles two pieces.
static_assert(kPackRowAlign % kLaneRows == 0);
bool LaneLayout(DType w, int64_t K);  // false for types other than Q8_0 and Q4_0
int64_t LaneRowBytes(DType w, int64_t K);
void PackLanes(DType w, const uint8_t* src, int64_t src_row_bytes, int64_t rows, int64_t K, uint8_t* dst);
void MatMulQ8Lanes(const MatMulArgs& a, int64_t n0, int64_t n1);
void MatMulQ4Lanes(const MatMulArgs& a, int64_t n0, int64_t n1);
}  // namespace avx512

}  // namespace flotilla::kernels::cpu
