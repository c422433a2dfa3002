// AVX2 + FMA + F16C kernels. Compiled with those flags for this file only and used only when
// the CPU reports all three. Everything is in an anonymous namespace so no inline function
// compiled here can stand in for a baseline copy elsewhere.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels/cpu/attention_impl.h"
#include "kernels/cpu/elementwise_impl.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/quant.h"

namespace flotilla::kernels::cpu {
namespace {

inline float Hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

inline float Hmax(__m256 v) {
  __m128 lo = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_max_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_max_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

inline float HalfToFloat(uint16_t h) { return _cvtsh_ss(h); }

// exp(x) to about 2 ulp over the range that matters for softmax and SiLU (Cephes polynomial).
inline __m256 Exp8(__m256 x) {
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

// ---- float-like weights (F32, F16, BF16) against f32 activations -------------------------

struct F32W {
  static __m256 Load8(const void* w, int64_t k) { return _mm256_loadu_ps(static_cast<const float*>(w) + k); }
  static float Load1(const void* w, int64_t k) { return static_cast<const float*>(w)[k]; }
};
struct F16W {
  static __m256 Load8(const void* w, int64_t k) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + k)));
  }
  static float Load1(const void* w, int64_t k) { return HalfToFloat(static_cast<const uint16_t*>(w)[k]); }
};
struct BF16W {
  static __m256 Load8(const void* w, int64_t k) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float Load1(const void* w, int64_t k) {
    uint32_t u = static_cast<uint32_t>(static_cast<const uint16_t*>(w)[k]) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

// Each weight row is loaded once per group of kTile activation rows.
template <class W, int kTile>
void FloatRowTile(const MatMulArgs& a, const void* w, int64_t n, int64_t m0) {
  const float* x[kTile];
  __m256 acc[kTile];
  for (int t = 0; t < kTile; ++t) {
    x[t] = reinterpret_cast<const float*>(static_cast<const char*>(a.x) + (m0 + t) * a.x_row_bytes);
    acc[t] = _mm256_setzero_ps();
  }
  int64_t k = 0;
  for (; k + 8 <= a.K; k += 8) {
    const __m256 wv = W::Load8(w, k);
    for (int t = 0; t < kTile; ++t) acc[t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[t] + k), acc[t]);
  }
  for (int t = 0; t < kTile; ++t) {
    float s = Hsum(acc[t]);
    for (int64_t kk = k; kk < a.K; ++kk) s += W::Load1(w, kk) * x[t][kk];
    a.y[(m0 + t) * a.ldy + n] = s;
  }
}

template <class W>
void MatMulFloat(const MatMulArgs& a, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    const void* w = static_cast<const char*>(a.w) + n * a.w_row_bytes;
    int64_t m = 0;
    for (; m + 4 <= a.M; m += 4) FloatRowTile<W, 4>(a, w, n, m);
    for (; m < a.M; ++m) FloatRowTile<W, 1>(a, w, n, m);
  }
}

// ---- Q8_0 / Q4_0 weights against Q8_0 activations ------------------------------------------

// Sum of products of 32 signed bytes, as 8 int32 lanes converted to float.
inline __m256 DotI8(__m256i w, __m256i x) {
  const __m256i aw = _mm256_sign_epi8(w, w);
  const __m256i sx = _mm256_sign_epi8(x, w);
  const __m256i p16 = _mm256_maddubs_epi16(aw, sx);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

struct Q8W {
  using Block = BlockQ8_0;
  static __m256i Load(const Block& b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)); }
};
struct Q4W {
  using Block = BlockQ4_0;
  static __m256i Load(const Block& b) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
    const __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0f));
    return _mm256_sub_epi8(nib, _mm256_set1_epi8(8));
  }
};

template <class W, int kTile>
void QuantRowTile(const MatMulArgs& a, const typename W::Block* w, int64_t n, int64_t m0) {
  const int64_t nb = a.K / kQK;
  const BlockQ8_0* x[kTile];
  __m256 acc[kTile];
  for (int t = 0; t < kTile; ++t) {
    x[t] = reinterpret_cast<const BlockQ8_0*>(static_cast<const char*>(a.x) + (m0 + t) * a.x_row_bytes);
    acc[t] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i wq = W::Load(w[b]);
    const float dw = HalfToFloat(w[b].d);
    for (int t = 0; t < kTile; ++t) {
      const __m256 d = _mm256_set1_ps(dw * HalfToFloat(x[t][b].d));
      const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[t][b].qs));
      acc[t] = _mm256_fmadd_ps(d, DotI8(wq, xq), acc[t]);
    }
  }
  for (int t = 0; t < kTile; ++t) a.y[(m0 + t) * a.ldy + n] = Hsum(acc[t]);
}

template <class W>
void MatMulQuant(const MatMulArgs& a, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    const auto* w = reinterpret_cast<const typename W::Block*>(static_cast<const char*>(a.w) + n * a.w_row_bytes);
    int64_t m = 0;
    for (; m + 4 <= a.M; m += 4) QuantRowTile<W, 4>(a, w, n, m);
    for (; m < a.M; ++m) QuantRowTile<W, 1>(a, w, n, m);
  }
}

// Rounds half away from zero, like roundf, so results equal the scalar quantizer bit for bit.
inline __m256 RoundHalfAway(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_sub_ps(v, t);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 sign_one = _mm256_or_ps(_mm256_andnot_ps(abs_mask, v), _mm256_set1_ps(1.0f));
  const __m256 away = _mm256_cmp_ps(_mm256_and_ps(frac, abs_mask), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  return _mm256_add_ps(t, _mm256_and_ps(away, sign_one));
}

void QuantizeQ8Avx2(const float* x, void* out, int64_t n) {
  auto* y = static_cast<BlockQ8_0*>(out);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_loadu_ps(xb + 8 * j);
      amax = _mm256_max_ps(amax, _mm256_and_ps(v[j], abs_mask));
    }
    const float d = Hmax(amax) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
    __m256i q[4];
    for (int j = 0; j < 4; ++j) q[j] = _mm256_cvtps_epi32(RoundHalfAway(_mm256_mul_ps(v[j], _mm256_set1_ps(id))));
    // Pack 32 int32 to 32 int8; the packs interleave 128-bit lanes, the permute restores order.
    const __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
    const __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
    __m256i p = _mm256_packs_epi16(p01, p23);
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), p);
  }
}

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

KernelTable MakeTable() {
  KernelTable t{};
  t.isa = "avx2";
  t.matmul[static_cast<int>(DType::kF32)] = MatMulFloat<F32W>;
  t.matmul[static_cast<int>(DType::kF16)] = MatMulFloat<F16W>;
  t.matmul[static_cast<int>(DType::kBF16)] = MatMulFloat<BF16W>;
  t.matmul[static_cast<int>(DType::kQ8_0)] = MatMulQuant<Q8W>;
  t.matmul[static_cast<int>(DType::kQ4_0)] = MatMulQuant<Q4W>;
  t.quantize_q8_0 = QuantizeQ8Avx2;
  t.rms_norm = RmsNormPlain;
  t.rope = RopePlain;
  t.softmax = SoftmaxAvx2;
  t.silu_mul = SiluMulAvx2;
  t.add = AddPlain;
  t.attention = PagedAttentionImpl<DotAvx2, AxpyAvx2, SoftmaxAvx2>;
  return t;
}

}  // namespace

const KernelTable* Avx2Kernels() {
  static const KernelTable table = MakeTable();
  return &table;
}

}  // namespace flotilla::kernels::cpu
