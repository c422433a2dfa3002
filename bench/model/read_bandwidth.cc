#include "bench/model/read_bandwidth.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace flotilla::bench {
namespace {

__attribute__((target("avx2"))) int64_t SumRange(const uint8_t* p, int64_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i + 128 <= n; i += 128) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  int64_t out[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), s);
  return out[0] + out[1] + out[2] + out[3];
}

}  // namespace

ReadBandwidthProbe::ReadBandwidthProbe(int64_t bytes, int threads)
    : bytes_(bytes & ~int64_t{4095}), threads_(threads < 1 ? 1 : threads) {
  if (bytes_ <= 0 || !mem_.Allocate(static_cast<size_t>(bytes_))) return;
  // Distinct content per page (no shared zero page).
  for (int64_t i = 0; i < bytes_; i += 4096) std::memset(mem_.data() + i, static_cast<int>(i >> 12), 4096);
}

double ReadBandwidthProbe::Measure(int reps) {
  if (!ok() || reps < 1) return 0;
  const auto* buf = reinterpret_cast<const uint8_t*>(mem_.data());
  const int threads = threads_;
  std::atomic<int64_t> sink{0};
  std::barrier sync(threads);
  std::vector<std::chrono::steady_clock::time_point> start(reps), stop(reps);
  const int64_t chunk = bytes_ / threads / 128 * 128;
  auto work = [&](int tid) {
    const uint8_t* p = buf + tid * chunk;
    SumRange(p, chunk);  // warm
    for (int r = 0; r < reps; ++r) {
      sync.arrive_and_wait();
      if (tid == 0) start[r] = std::chrono::steady_clock::now();
      sink.fetch_add(SumRange(p, chunk), std::memory_order_relaxed);
      sync.arrive_and_wait();
      if (tid == 0) stop[r] = std::chrono::steady_clock::now();
    }
  };
  std::vector<std::thread> ts;
  for (int t = 1; t < threads; ++t) ts.emplace_back(work, t);
  work(0);
  for (auto& t : ts) t.join();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) best = std::min(best, std::chrono::duration<double>(stop[r] - start[r]).count());
  return static_cast<double>(chunk * threads) / best;
}

double MeasureReadBandwidth(int64_t bytes, int threads, int reps) {
  ReadBandwidthProbe probe(bytes, threads);
  return probe.Measure(reps);
}

}  // namespace flotilla::bench
