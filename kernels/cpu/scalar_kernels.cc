// The scalar reference kernels: straightforward loops that define what every op computes.
// Quantized matmuls follow ggml's arithmetic: activations are quantized to Q8_0 per 32-element
// block, integer products are summed per block and scaled by both block scales.
#include <cmath>
#include <cstring>

#include "kernels/cpu/attention_impl.h"
#include "kernels/cpu/elementwise_impl.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/fp16.h"
#include "kernels/quant.h"

namespace flotilla::kernels::cpu {
namespace {

template <float (*Load)(const void*, int64_t)>
void MatMulPlain(const MatMulArgs& a, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    const char* w = static_cast<const char*>(a.w) + n * a.w_row_bytes;
    for (int64_t m = 0; m < a.M; ++m) {
      const float* x = reinterpret_cast<const float*>(static_cast<const char*>(a.x) + m * a.x_row_bytes);
      float sum = 0.0f;
      for (int64_t k = 0; k < a.K; ++k) sum += Load(w, k) * x[k];
      a.y[m * a.ldy + n] = sum;
    }
  }
}

float LoadF32(const void* p, int64_t k) { return static_cast<const float*>(p)[k]; }
float LoadF16(const void* p, int64_t k) { return F16ToF32(static_cast<const uint16_t*>(p)[k]); }
float LoadBF16(const void* p, int64_t k) { return BF16ToF32(static_cast<const uint16_t*>(p)[k]); }

int DotBlockQ8(const BlockQ8_0& w, const BlockQ8_0& x) {
  int s = 0;
  for (int j = 0; j < kQK; ++j) s += w.qs[j] * x.qs[j];
  return s;
}

int DotBlockQ4(const BlockQ4_0& w, const BlockQ8_0& x) {
  int s = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    s += ((w.qs[j] & 0x0f) - 8) * x.qs[j];
    s += ((w.qs[j] >> 4) - 8) * x.qs[j + kQK / 2];
  }
  return s;
}

template <class WBlock, int (*DotBlock)(const WBlock&, const BlockQ8_0&)>
void MatMulQuant(const MatMulArgs& a, int64_t n0, int64_t n1) {
  const int64_t nb = a.K / kQK;
  for (int64_t n = n0; n < n1; ++n) {
    const auto* w = reinterpret_cast<const WBlock*>(static_cast<const char*>(a.w) + n * a.w_row_bytes);
    for (int64_t m = 0; m < a.M; ++m) {
      const auto* x = reinterpret_cast<const BlockQ8_0*>(static_cast<const char*>(a.x) + m * a.x_row_bytes);
      float sum = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        sum += static_cast<float>(DotBlock(w[b], x[b])) * (F16ToF32(w[b].d) * F16ToF32(x[b].d));
      }
      a.y[m * a.ldy + n] = sum;
    }
  }
}

void QuantizeQ8(const float* x, void* y, int64_t n) { QuantizeRowQ8_0(x, static_cast<BlockQ8_0*>(y), n); }

// The reference activation form is ggml's: Q8_0 blocks back to back.
int64_t ActRowBytes(DType w, int64_t K) {
  return IsBlockQuantized(w) ? RowBytes(DType::kQ8_0, K) : K * static_cast<int64_t>(sizeof(float));
}
void QuantizeAct(DType, const float* x, void* out, int64_t K) { QuantizeRowQ8_0(x, static_cast<BlockQ8_0*>(out), K); }
void ActToQ8(DType, const void* act, void* out, int64_t K) { std::memcpy(out, act, RowBytes(DType::kQ8_0, K)); }

void SoftmaxScalar(float* x, int64_t n) {
  float max = x[0];
  for (int64_t i = 1; i < n; ++i) max = std::fmax(max, x[i]);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void SiluMulScalar(const float* g, const float* u, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

float DotScalar(const float* a, const float* b, int n) {
  float s = 0.0f;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void AxpyScalar(float alpha, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// The reference: one serial sum (the vector variants sum in lanes, see RmsNorm512).
void RmsNormPlain(const float* x, const float* w, float* out, int64_t n, float eps) {
  float ss = 0.0f;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = w[i] * (scale * x[i]);
}

KernelTable MakeTable() {
  KernelTable t{};
  t.isa = "scalar";
  t.matmul[static_cast<int>(DType::kF32)] = MatMulPlain<LoadF32>;
  t.matmul[static_cast<int>(DType::kF16)] = MatMulPlain<LoadF16>;
  t.matmul[static_cast<int>(DType::kBF16)] = MatMulPlain<LoadBF16>;
  t.matmul[static_cast<int>(DType::kQ8_0)] = MatMulQuant<BlockQ8_0, DotBlockQ8>;
  t.matmul[static_cast<int>(DType::kQ4_0)] = MatMulQuant<BlockQ4_0, DotBlockQ4>;
  t.act_row_bytes = ActRowBytes;
  t.quantize_act = QuantizeAct;
  t.act_to_q8_0 = ActToQ8;
  t.quantize_q8_0 = QuantizeQ8;
  t.rms_norm = RmsNormPlain;
  t.rope = RopePlain;
  t.softmax = SoftmaxScalar;
  t.silu_mul = SiluMulScalar;
  t.add = AddPlain;
  t.attention = PagedAttentionImpl<DotScalar, AxpyScalar, SoftmaxScalar>;
  t.f32_to_f16 = [](const float* x, uint16_t* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = F32ToF16(x[i]);
  };
  t.attention_group = PagedAttentionGroupImpl<DotScalar, AxpyScalar, SoftmaxScalar>;
  return t;
}

}  // namespace

const KernelTable& ScalarKernels() {
  static const KernelTable table = MakeTable();
  return table;
}

}  // namespace flotilla::kernels::cpu
