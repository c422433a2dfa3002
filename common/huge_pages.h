// Anonymous memory on 2 MiB-aligned addresses, with transparent huge pages asked for
// (madvise MADV_HUGEPAGE, which takes effect where THP is "always" or "madvise").
//
// For large buffers read from end to end many times — packed weights above all. With 4 KiB
// pages a 1 GB weight stream crosses a page every 4 KiB: a TLB miss each time, and the
// hardware prefetchers stop at every page boundary; with 2 MiB pages neither happens
// (1.1B-shape Q4_0 decode +11 % on the reference machine). Not for buffers that are touched
// sparsely (a paged KV cache): each touched 2 MiB would become resident whole.
#pragma once

#include <cstddef>

namespace flotilla {

class HugePageBuffer {
 public:
  HugePageBuffer() = default;
  ~HugePageBuffer();
  HugePageBuffer(HugePageBuffer&& o) noexcept;
  HugePageBuffer& operator=(HugePageBuffer&& o) noexcept;
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;

  // Replaces the buffer by n zeroed bytes (pages are committed on first touch); false, with
  // the buffer empty, when the memory cannot be mapped. huge = false maps ordinary pages (the
  // same alignment), for comparisons.
  bool Allocate(size_t n, bool huge = true);
  void Reset();

  char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  char* map_ = nullptr;  // what mmap returned (data_ is map_ rounded up to 2 MiB)
  size_t map_len_ = 0;
  char* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace flotilla
