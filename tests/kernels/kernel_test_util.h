// Helpers shared by the kernel tests: seeded random data and the normalised mean squared error
// (NMSE = sum (a-b)^2 / sum b^2) used as the error measure against the scalar reference.
#pragma once

#include <cmath>
#include <random>
#include <vector>

namespace flotilla::kernels::testing {

inline std::vector<float> RandomVector(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline double Nmse(const float* a, const float* ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den == 0 ? num : num / den;
}

inline double Nmse(const std::vector<float>& a, const std::vector<float>& ref) { return Nmse(a.data(), ref.data(), ref.size()); }

}  // namespace flotilla::kernels::testing
