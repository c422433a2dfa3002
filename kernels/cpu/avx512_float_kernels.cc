// AVX-512 kernels for float weights (F32, F16, BF16 against f32 activations), attention over
// the paged KV cache and the element-wise ops; the quantized products and the table are in
// avx512_kernels.cc. Compiled with the AVX-512 flags (kernels/CMakeLists.txt).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/attention_impl.h"
#include "kernels/cpu/avx512_common.h"

namespace flotilla::kernels::cpu {
namespace {

// ---- float weights (F32, F16, BF16) against f32 activations ------------------------------------

struct F32W {
  static FLOTILLA_INLINE __m512 Load(const void* w, int64_t k) { return _mm512_loadu_ps(static_cast<const float*>(w) + k); }
  static FLOTILLA_INLINE __m512 LoadMasked(const void* w, int64_t k, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(w) + k);
  }
  static constexpr int kBytes = 4;
};
struct F16W {
  static FLOTILLA_INLINE __m512 Load(const void* w, int64_t k) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + k)));
  }
  static FLOTILLA_INLINE __m512 LoadMasked(const void* w, int64_t k, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + k));
  }
  static constexpr int kBytes = 2;
};
struct BF16W {
  static FLOTILLA_INLINE __m512 Widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static FLOTILLA_INLINE __m512 Load(const void* w, int64_t k) {
    return Widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + k)));
  }
  static FLOTILLA_INLINE __m512 LoadMasked(const void* w, int64_t k, __mmask16 m) {
    return Widen(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(w) + k));
  }
  static constexpr int kBytes = 2;
};

// Packed float matrices interleave their rows in groups of four, in chunks of 16 elements:
// chunk c of row 4g + j sits at the group's start + (4c + j) chunks, so a tile of the group's
// four rows reads one sequential stream instead of four side by side (one-token F16 products
// over 1 GiB: 19-27 -> 29-30 GB/s on one core). Rows after the last whole group stay as stored.
constexpr int64_t kFloatGroup = 4;

// R rows x T tokens. Row r's chunk c (16 elements) is at w[r] + c x stride: stride is one chunk
// for rows as stored, kFloatGroup chunks for grouped rows.
// kStreams = 2 (grouped rows, one token): rows w[0..R/2) are rows n.., rows w[R/2..R) rows n2..,
// two groups read side by side.
template <class W, int R, int T, bool kGrouped, int kStreams = 1>
void FloatTile(const MatMulArgs& a, const char* const (&w)[R], int64_t n, int64_t m, int64_t n2 = 0) {
  constexpr int64_t kChunk = 16 * W::kBytes;
  constexpr int64_t kStride = kGrouped ? kFloatGroup * kChunk : kChunk;
  const float* x[T];
  for (int t = 0; t < T; ++t) x[t] = reinterpret_cast<const float*>(static_cast<const char*>(a.x) + (m + t) * a.x_row_bytes);
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  // Rows as stored are R streams side by side: with rows shorter than twice the distance, a
  // prefetch kPrefetchBytes ahead lands in a row this tile is already reading, so it asks for
  // the same place of the next tile's rows instead. Grouped rows are one stream, read once per
  // tile of tokens: with up to 4 tokens it is prefetched a fixed distance ahead (below); with
  // several, each pass asks for the same place of the next group, a whole group's passes ahead
  // (4 KiB ahead was too close: 110M F16 batch 16 18 % slower than rows as stored; two groups
  // ahead, or prefetching in the first pass only, slower again; with each thread's rows one run
  // since ThreadPool::ForEach gives out contiguous shares, 4 KiB ahead is still 0.95x). 110M F16
  // batch 16 now runs 1.10x of rows as stored (it was 0.975x with units handed out round-robin);
  // decode is 3-27 % faster. Batches of 2-4 tokens ask 8 KiB ahead, one token 4 KiB: 110M F16 at
  // 2 threads, rounds in shuffled order against 4 KiB, batch 4 1.09x and 1.10x (sets of 6 and
  // 8; 6 KiB 1.01x, 12 KiB 0.98x), batch 2 1.07x and 0.99x; 1B batch 4 1.046x (five rounds,
  // every one better); the same in a minute when one vCPU ran slow. One token's distance stays
  // a compile-time constant in its two-stream tile: chosen at run time it cost 110M F16 decode
  // 10-17 %.
  constexpr int64_t kSmallBatchAhead = 8192;
  const int64_t pf = kGrouped ? (kStreams == 2 || a.M == 1 ? kPrefetchBytes
                                 : a.M > 4                 ? kFloatGroup * a.w_row_bytes
                                                           : kSmallBatchAhead)
                              : (a.w_row_bytes >= 2 * kPrefetchBytes ? kPrefetchBytes : R * a.w_row_bytes);
  int64_t k = 0, off = 0;
  for (; k + 16 <= a.K; k += 16, off += kStride) {
    if constexpr (kGrouped) {
      for (int st = 0; st < kStreams; ++st) {
        for (int64_t l = 0; l < kStride; l += 64) _mm_prefetch(w[st * (R / kStreams)] + off + pf + l, _MM_HINT_T0);
      }
    }
    __m512 wv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      if constexpr (!kGrouped) _mm_prefetch(w[r] + off + pf, _MM_HINT_T0);
      wv[r] = W::Load(w[r] + off, 0);
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_loadu_ps(x[t] + k);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  if (k < a.K) {  // rows as stored only: grouped matrices have K % 16 == 0
    const __mmask16 mask = TailMask(a.K - k);
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = W::LoadMasked(w[r] + off, 0, mask);
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_maskz_loadu_ps(mask, x[t] + k);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  if constexpr (kStreams == 1) {
    StoreTileSums<R, T>(acc, a.y, a.ldy, n, m);
  } else {
    __m512 first[R / 2][T], second[R / 2][T];
    for (int r = 0; r < R / 2; ++r) {
      for (int t = 0; t < T; ++t) {
        first[r][t] = acc[r][t];
        second[r][t] = acc[R / 2 + r][t];
      }
    }
    StoreTileSums<R / 2, T>(first, a.y, a.ldy, n, m);
    StoreTileSums<R / 2, T>(second, a.y, a.ldy, n2, m);
  }
}

// Rows n..n+R-1 for every token, in tiles of 4 tokens. A row's arithmetic does not depend on R
// or T (one accumulator per row and token, the same order over K, the same final sum), so any
// grouping of rows and tokens gives the same bits.
template <class W, int R, bool kGrouped>
FLOTILLA_INLINE void FloatRows(const MatMulArgs& a, const char* const (&w)[R], int64_t n) {
  int64_t m = 0;
  for (; m + 4 <= a.M; m += 4) FloatTile<W, R, 4, kGrouped>(a, w, n, m);
  for (; m < a.M; ++m) FloatTile<W, R, 1, kGrouped>(a, w, n, m);
}

// Rows in tiles of 4 (four independent sums hide the FMA latency), tokens in tiles of 4.
template <class W>
void MatMulFloat(const MatMulArgs& a, int64_t n0, int64_t n1) {
  auto row = [&](int64_t n) { return static_cast<const char*>(a.w) + n * a.w_row_bytes; };
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    const char* const w[4] = {row(n), row(n + 1), row(n + 2), row(n + 3)};
    FloatRows<W, 4, false>(a, w, n);
  }
  for (; n < n1; ++n) {
    const char* const w[1] = {row(n)};
    FloatRows<W, 1, false>(a, w, n);
  }
}

// The same over a packed matrix: whole groups four rows at a time (one token: two groups at a
// time, from the two halves of the range); a range that starts or ends inside a group takes those
// rows one by one (strided); rows after the last group as stored.
template <class W>
void MatMulFloatPacked(const MatMulArgs& a, int64_t n0, int64_t n1) {
  constexpr int64_t kChunk = 16 * W::kBytes;
  const int64_t grouped = a.N / kFloatGroup * kFloatGroup;
  auto start = [&](int64_t n) {  // row n's first chunk
    const char* base = static_cast<const char*>(a.w);
    return n < grouped ? base + n / kFloatGroup * kFloatGroup * a.w_row_bytes + n % kFloatGroup * kChunk
                       : base + n * a.w_row_bytes;
  };
  auto one = [&](int64_t n) {
    const char* const w[1] = {start(n)};
    if (n < grouped) {
      FloatRows<W, 1, true>(a, w, n);
    } else {
      FloatRows<W, 1, false>(a, w, n);
    }
  };
  int64_t n = n0;
  for (; n < n1 && n < grouped && n % kFloatGroup != 0; ++n) one(n);
  if (a.M == 1) {
    // One token: two streams, a group from each half of the whole groups side by side (one
    // stream kept too few misses in flight: 1B F16 decode at 2 threads 1.18x, every one of 6
    // alternating rounds 1.12x or more; roofline 0.69 -> 0.78).
    const int64_t half = (std::min(n1, grouped) - n) / kFloatGroup / 2;
    for (int64_t i = 0; i < half; ++i) {
      const int64_t na = n + i * kFloatGroup, nb = n + (half + i) * kFloatGroup;
      const char* ga = start(na);
      const char* gb = start(nb);
      const char* const w[8] = {ga, ga + kChunk, ga + 2 * kChunk, ga + 3 * kChunk, gb, gb + kChunk, gb + 2 * kChunk, gb + 3 * kChunk};
      FloatTile<W, 8, 1, true, 2>(a, w, na, 0, nb);
    }
    n += 2 * half * kFloatGroup;
  }
  for (; n + kFloatGroup <= std::min(n1, grouped); n += kFloatGroup) {
    const char* g = start(n);
    const char* const w[4] = {g, g + kChunk, g + 2 * kChunk, g + 3 * kChunk};
    FloatRows<W, 4, true>(a, w, n);
  }
  for (; n < n1; ++n) one(n);
}

template <class W>
void PackFloatRowsOf(const uint8_t* src, int64_t src_row_bytes, int64_t rows, int64_t K, uint8_t* dst) {
  constexpr int64_t kChunk = 16 * W::kBytes;
  const int64_t row_bytes = K * W::kBytes, chunks = K / 16;
  const int64_t grouped = rows / kFloatGroup * kFloatGroup;
  for (int64_t g = 0; g < grouped; g += kFloatGroup) {
    uint8_t* out = dst + g * row_bytes;
    for (int64_t c = 0; c < chunks; ++c) {
      for (int64_t j = 0; j < kFloatGroup; ++j, out += kChunk) {
        std::memcpy(out, src + (g + j) * src_row_bytes + c * kChunk, kChunk);
      }
    }
  }
  for (int64_t r = grouped; r < rows; ++r) std::memcpy(dst + r * row_bytes, src + r * src_row_bytes, row_bytes);
}

// ---- vector primitives for attention and element-wise ops --------------------------------------

float Dot512(const float* a, const float* b, int n) {
  if (n <= 8) {  // small heads: one 256-bit product and a short horizontal sum
    const __mmask8 m = static_cast<__mmask8>((1u << n) - 1);
    const __m256 p = _mm256_mul_ps(_mm256_maskz_loadu_ps(m, a), _mm256_maskz_loadu_ps(m, b));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(p), _mm256_extractf128_ps(p, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  __m512 acc = _mm512_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  if (i < n) {
    const __mmask16 m = TailMask(n - i);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

void Axpy512(float alpha, const float* x, float* y, int n) {
  const __m512 av = _mm512_set1_ps(alpha);
  int i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = TailMask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

void Softmax512(float* x, int64_t n) {
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
  if (i < n) vmax = _mm512_mask_max_ps(vmax, TailMask(n - i), vmax, _mm512_maskz_loadu_ps(TailMask(n - i), x + i));
  const __m512 mv = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
  __m512 vsum = _mm512_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
    const __m512 e = Exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv));
    _mm512_storeu_ps(x + i, e);
    vsum = _mm512_add_ps(vsum, e);
  }
  if (i < n) {
    const __mmask16 m = TailMask(n - i);
    const __m512 e = Exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), mv));
    _mm512_mask_storeu_ps(x + i, m, e);
    vsum = _mm512_mask_add_ps(vsum, m, vsum, e);
  }
  const __m512 iv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
  for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), iv));
  if (i < n) {
    const __mmask16 m = TailMask(n - i);
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), iv));
  }
}

void SiluMul512(const float* g, const float* u, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  auto f = [&](__m512 gv, __m512 uv) {
    const __m512 e = Exp16(_mm512_sub_ps(_mm512_setzero_ps(), gv));
    return _mm512_mul_ps(_mm512_div_ps(gv, _mm512_add_ps(one, e)), uv);
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, f(_mm512_loadu_ps(g + i), _mm512_loadu_ps(u + i)));
  if (i < n) {
    const __mmask16 m = TailMask(n - i);
    _mm512_mask_storeu_ps(out + i, m, f(_mm512_maskz_loadu_ps(m, g + i), _mm512_maskz_loadu_ps(m, u + i)));
  }
}

struct V512 {
  using Reg = __m512;
  static constexpr int kWidth = 16;
  static FLOTILLA_INLINE Reg Zero() { return _mm512_setzero_ps(); }
  static FLOTILLA_INLINE Reg Load(const float* p, int n) { return n >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(TailMask(n), p); }
  static FLOTILLA_INLINE void Store(float* p, Reg v, int n) {
    if (n >= 16) {
      _mm512_storeu_ps(p, v);
    } else {
      _mm512_mask_storeu_ps(p, TailMask(n), v);
    }
  }
  static FLOTILLA_INLINE Reg Fmadd(float a, Reg x, Reg acc) { return _mm512_fmadd_ps(_mm512_set1_ps(a), x, acc); }
  static FLOTILLA_INLINE Reg FmaddV(Reg a, Reg x, Reg acc) { return _mm512_fmadd_ps(a, x, acc); }
  // Elements e .. e + n - 1 of a K/V row (n <= 16), as f32.
  static FLOTILLA_INLINE Reg LoadKv(const float* row, int64_t e, int n) { return Load(row + e, n); }
  static FLOTILLA_INLINE Reg LoadKv(const uint16_t* row, int64_t e, int n) {
    const uint16_t* p = row + e;
    return _mm512_cvtph_ps(n >= 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                                   : _mm256_maskz_loadu_epi16(TailMask(n), p));
  }
  // A Q8_0 row: 16 values never cross a block (rows are whole blocks of 32).
  static FLOTILLA_INLINE Reg LoadKv(const BlockQ8_0* row, int64_t e, int n) {
    const BlockQ8_0& b = row[e / kQK];
    const int8_t* q = b.qs + e % kQK;
    const __m128i v = n >= 16 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)) : _mm_maskz_loadu_epi8(TailMask(n), q);
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)), _mm512_set1_ps(_cvtsh_ss(b.d)));
  }
  static FLOTILLA_INLINE Reg Add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static FLOTILLA_INLINE Reg Scale(Reg a, float s) { return _mm512_mul_ps(a, _mm512_set1_ps(s)); }
  // Lane i of the result is the sum of the lanes of v[i] (16 inputs).
  static FLOTILLA_INLINE Reg Reduce(const Reg* v) { return Reduce16(v); }
};

void F32ToF16x16(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
  if (i < n) {
    const __mmask16 m = TailMask(static_cast<int>(n - i));
    _mm256_mask_storeu_epi16(y + i, m, _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT));
  }
}

// The sum of squares in four 16-lane accumulators (the plain loop's one serial chain of adds
// took about a microsecond per 768-wide row: 1.5-2 % of a 110M batch-16 step), then the lanes
// summed; the order depends only on n, so a row's result depends only on its values.
void RmsNorm512(const float* x, const float* w, float* out, int64_t n, float eps) {
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m512 v = _mm512_loadu_ps(x + i + 16 * k);
      acc[k] = _mm512_fmadd_ps(v, v, acc[k]);
    }
  }
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    acc[0] = _mm512_fmadd_ps(v, v, acc[0]);
  }
  if (i < n) {
    const __m512 v = _mm512_maskz_loadu_ps(TailMask(static_cast<int>(n - i)), x + i);
    acc[1] = _mm512_fmadd_ps(v, v, acc[1]);
  }
  const float ss = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
  const __m512 scale = _mm512_set1_ps(1.0f / std::sqrt(ss / static_cast<float>(n) + eps));
  for (i = 0; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_loadu_ps(w + i), _mm512_mul_ps(scale, _mm512_loadu_ps(x + i))));
  }
  if (i < n) {
    const __mmask16 m = TailMask(static_cast<int>(n - i));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + i), _mm512_mul_ps(scale, _mm512_maskz_loadu_ps(m, x + i))));
  }
}

}  // namespace

namespace avx512 {

void AddFloatKernels(KernelTable& t) {
  t.rms_norm = RmsNorm512;
  t.f32_to_f16 = F32ToF16x16;
  t.matmul[static_cast<int>(DType::kF32)] = MatMulFloat<F32W>;
  t.matmul[static_cast<int>(DType::kF16)] = MatMulFloat<F16W>;
  t.matmul[static_cast<int>(DType::kBF16)] = MatMulFloat<BF16W>;
  t.matmul_packed[static_cast<int>(DType::kF32)] = MatMulFloatPacked<F32W>;
  t.matmul_packed[static_cast<int>(DType::kF16)] = MatMulFloatPacked<F16W>;
  t.matmul_packed[static_cast<int>(DType::kBF16)] = MatMulFloatPacked<BF16W>;
  t.softmax = Softmax512;
  t.silu_mul = SiluMul512;
  t.attention = PagedAttentionHeadVec<V512, Dot512, Axpy512, Softmax512>;
  t.attention_group = PagedAttentionGroupVec<V512, Dot512, Axpy512, Softmax512>;
}

void PackFloatRows(DType w, const uint8_t* src, int64_t src_row_bytes, int64_t rows, int64_t K, uint8_t* dst) {
  switch (w) {
    case DType::kF32: PackFloatRowsOf<F32W>(src, src_row_bytes, rows, K, dst); break;
    case DType::kF16: PackFloatRowsOf<F16W>(src, src_row_bytes, rows, K, dst); break;
    case DType::kBF16: PackFloatRowsOf<BF16W>(src, src_row_bytes, rows, K, dst); break;
    default: break;
  }
}

}  // namespace avx512
}  // namespace flotilla::kernels::cpu
