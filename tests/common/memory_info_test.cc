// The memory figures the executor checks its KV cache against, parsed from the kernel's text.
#include "common/memory_info.h"

#include "gtest/gtest.h"

namespace flotilla {
namespace {

TEST(MemoryInfo, ParsesMemAvailableInKilobytes) {
  const char* text =
      "MemTotal:       24558348 kB\n"
      "MemFree:        22233612 kB\n"
      "MemAvailable:   23001234 kB\n"
      "Buffers:          123456 kB\n";
  EXPECT_EQ(ParseMemAvailable(text), int64_t{23001234} * 1024);
  EXPECT_EQ(ParseMemAvailable("MemAvailable: 5 kB"), 5 * 1024);
}

TEST(MemoryInfo, RejectsMeminfoWithoutAReadableMemAvailable) {
  EXPECT_EQ(ParseMemAvailable("MemTotal: 100 kB\n"), std::nullopt);
  EXPECT_EQ(ParseMemAvailable("MemAvailable: lots kB\n"), std::nullopt);
  EXPECT_EQ(ParseMemAvailable("MemAvailable: 100 MB\n"), std::nullopt);
  EXPECT_EQ(ParseMemAvailable("MemAvailable: -100 kB\n"), std::nullopt);
  EXPECT_EQ(ParseMemAvailable("MemAvailable: 99999999999999999999999 kB\n"), std::nullopt);
  EXPECT_EQ(ParseMemAvailable(""), std::nullopt);
}

TEST(MemoryInfo, ParsesCgroupLimitsAndTreatsMaxAsNone) {
  EXPECT_EQ(ParseCgroupBytes("1073741824\n"), int64_t{1} << 30);
  EXPECT_EQ(ParseCgroupBytes("max\n"), std::nullopt);
  EXPECT_EQ(ParseCgroupBytes("12abc"), std::nullopt);
  EXPECT_EQ(ParseCgroupBytes(""), std::nullopt);
}

TEST(MemoryInfo, ThisHostReportsSomeMemory) {
  const auto bytes = AvailableMemoryBytes();
  ASSERT_TRUE(bytes.has_value()) << "Linux has /proc/meminfo";
  EXPECT_GT(*bytes, 0);
}

}  // namespace
}  // namespace flotilla
