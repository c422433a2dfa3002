// Buffers of the CPU executor that threads share: aligned so that each thread's part of one
// starts on its own pair of cache lines.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

namespace flotilla {

// Bytes aligned to a pair of cache lines (activation rows are read with 64-byte vector loads;
// per-thread rows start on their own pair, see CacheLineAllocator).
class AlignedBytes {
 public:
  void Resize(size_t n) { p_.reset(static_cast<char*>(std::aligned_alloc(128, (n + 127) / 128 * 128 + 128))); }
  char* data() const { return p_.get(); }

 private:
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> p_;
};

// Float buffers start on a pair of cache lines, and per-thread parts of them start on their own
// pair (LinePairFloats): where two threads write neighbouring parts of a buffer in the same phase (their
// heads of Q, K and V, their rows of the residual stream) a line holding both would cross
// between the cores on every write, and the hardware prefetches lines in aligned pairs.
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{128})); }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{128}); }
  bool operator==(const CacheLineAllocator&) const = default;
};
using Floats = std::vector<float, CacheLineAllocator<float>>;
// n floats rounded up to whole pairs of cache lines.
inline int64_t LinePairFloats(int64_t n) { return (n + 31) / 32 * 32; }

}  // namespace flotilla
