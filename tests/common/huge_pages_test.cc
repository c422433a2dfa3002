// HugePageBuffer: 2 MiB-aligned zeroed memory that carries the huge-page advice (the kernel's
// "hg" flag on the mapping), unmapped on Reset, destruction and move-assignment.
#include "common/huge_pages.h"

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>

#include "gtest/gtest.h"

namespace flotilla {
namespace {

constexpr uintptr_t kHugePage = uintptr_t{2} << 20;

// The VmFlags line of the /proc/self/smaps entry whose range holds p; "" when none does (unmapped).
std::string VmFlagsAt(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-' && line.find(':') > line.find(' ')) {
      inside = lo <= a && a < hi;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

bool HasFlag(const std::string& vm_flags, const std::string& flag) {
  std::istringstream in(vm_flags);
  std::string f;
  while (in >> f) {
    if (f == flag) return true;
  }
  return false;
}

TEST(HugePageBuffer, AlignedZeroedWritableAndAdvised) {
  HugePageBuffer b;
  const size_t n = 5 * (size_t{1} << 20) + 123;
  ASSERT_TRUE(b.Allocate(n));
  ASSERT_NE(b.data(), nullptr);
  EXPECT_EQ(b.size(), n);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % kHugePage, 0u);
  for (size_t i = 0; i < n; i += 4093) ASSERT_EQ(b.data()[i], 0) << i;
  b.data()[0] = 1;
  b.data()[n - 1] = 2;
  EXPECT_EQ(b.data()[0] + b.data()[n - 1], 3);
  const std::string flags = VmFlagsAt(b.data());
  ASSERT_FALSE(flags.empty());
  EXPECT_TRUE(HasFlag(flags, "hg")) << flags;  // MADV_HUGEPAGE was given for the range
  EXPECT_TRUE(HasFlag(VmFlagsAt(b.data() + n - 1), "hg"));
}

TEST(HugePageBuffer, WithoutHugeAdviceOnRequest) {
  HugePageBuffer b;
  ASSERT_TRUE(b.Allocate(size_t{3} << 20, /*huge=*/false));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % kHugePage, 0u);
  b.data()[17] = 5;
  const std::string flags = VmFlagsAt(b.data());
  ASSERT_FALSE(flags.empty());
  EXPECT_FALSE(HasFlag(flags, "hg")) << flags;
}

TEST(HugePageBuffer, ResetMoveAndEmpty) {
  HugePageBuffer a;
  EXPECT_TRUE(a.Allocate(0));
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(a.size(), 0u);
  ASSERT_TRUE(a.Allocate(size_t{1} << 20));
  char* p = a.data();
  p[10] = 7;
  HugePageBuffer b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.data()[10], 7);
  HugePageBuffer c;
  ASSERT_TRUE(c.Allocate(size_t{1} << 20));
  char* q = c.data();
  c = std::move(b);  // c's own mapping goes
  EXPECT_EQ(c.data(), p);
  EXPECT_EQ(VmFlagsAt(q), "");
  c.Reset();
  EXPECT_EQ(c.data(), nullptr);
  EXPECT_EQ(VmFlagsAt(p), "");
  // A size that cannot be mapped is refused, leaving the buffer empty.
  EXPECT_FALSE(c.Allocate(SIZE_MAX - 100));
  EXPECT_EQ(c.data(), nullptr);
}

}  // namespace
}  // namespace flotilla
