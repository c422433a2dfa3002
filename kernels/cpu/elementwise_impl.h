// Element-wise kernels written once in plain C++. Each variant .cc includes this file and the
// compiler vectorises it for that variant's instruction set; internal linkage keeps the copies apart.
#pragma once

#include <cmath>
#include <cstdint>

namespace flotilla::kernels::cpu {
namespace {

void RopePlain(float* x, int n_heads, int head_dim, const float* cos, const float* sin) {
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<int64_t>(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      const float x0 = v[2 * i], x1 = v[2 * i + 1];
      v[2 * i] = x0 * cos[i] - x1 * sin[i];
      v[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
    }
  }
}

void AddPlain(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

}  // namespace
}  // namespace flotilla::kernels::cpu
