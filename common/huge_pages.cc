#include "common/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>
#include <utility>

namespace flotilla {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}  // namespace

HugePageBuffer::~HugePageBuffer() { Reset(); }

HugePageBuffer::HugePageBuffer(HugePageBuffer&& o) noexcept { *this = std::move(o); }

HugePageBuffer& HugePageBuffer::operator=(HugePageBuffer&& o) noexcept {
  if (this != &o) {
    Reset();
    std::swap(map_, o.map_);
    std::swap(map_len_, o.map_len_);
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
  }
  return *this;
}

void HugePageBuffer::Reset() {
  if (map_ != nullptr) munmap(map_, map_len_);
  map_ = data_ = nullptr;
  map_len_ = size_ = 0;
}

bool HugePageBuffer::Allocate(size_t n, bool huge) {
  Reset();
  if (n == 0) return true;
  if (n > SIZE_MAX - 2 * kHugePage) return false;
  // One extra huge page of address space to round the start up; it is never touched, so it
  // costs no memory.
  const size_t rounded = (n + kHugePage - 1) / kHugePage * kHugePage;
  const size_t len = rounded + kHugePage;
  void* m = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return false;
  map_ = static_cast<char*>(m);
  map_len_ = len;
  data_ = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(map_) + kHugePage - 1) & ~(kHugePage - 1));
  size_ = n;
  // Advice only: where THP is off the buffer simply stays on 4 KiB pages.
  if (huge) madvise(data_, rounded, MADV_HUGEPAGE);
  return true;
}

}  // namespace flotilla
