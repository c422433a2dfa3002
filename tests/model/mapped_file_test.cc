// MappedFile: a read-only map whose released pages read back the file's bytes unchanged (the
// CPU executor releases the pages of the matrices it has packed), and refusals named clearly.
#include "model/mapped_file.h"

#include <unistd.h>

#include <fstream>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"

namespace flotilla {
namespace {

// The process's resident pages (/proc/self/statm; mapped file pages count while mapped in).
long ResidentPages() {
  std::ifstream in("/proc/self/statm");
  long size = 0, resident = 0;
  in >> size >> resident;
  return resident;
}

TEST(MappedFile, ReleasedPagesReadBackTheFileUnchanged) {
  testing::TempDir dir;
  std::string bytes(1 << 20, '\0');
  std::mt19937 rng(3);
  for (char& c : bytes) c = static_cast<char>(rng());
  const std::string path = dir.File("w.bin");
  testing::WriteBytes(path, bytes);
  auto f = MappedFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  const uint8_t* p = (*f)->data();
  ASSERT_EQ((*f)->size(), bytes.size());
  uint64_t sum = 0;
  for (size_t i = 0; i < bytes.size(); ++i) sum += p[i];  // touch every page
  // Release an unaligned middle range: only whole pages inside it go.
  const long before = ResidentPages();
  (*f)->Release(p + 1000, bytes.size() - 5000);
  const long page = sysconf(_SC_PAGESIZE);
  // 1 MiB less 5000 bytes, rounded inward to whole pages, leaves the process (3/4 of it at least:
  // the test's own allocations move the count by a few pages).
  EXPECT_GE(before - ResidentPages(), static_cast<long>(bytes.size() - 5000) / page * 3 / 4)
      << "the whole pages inside the range leave the process's resident memory";
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(p), bytes.size()), bytes) << "released pages must read back the file";
  uint64_t again = 0;
  for (size_t i = 0; i < bytes.size(); ++i) again += p[i];
  EXPECT_EQ(again, sum);
  // Outside the map: a no-op, not a crash.
  std::string other(4096, 'x');
  (*f)->Release(reinterpret_cast<const uint8_t*>(other.data()), other.size());
  (*f)->Release(p + bytes.size() - 10, 100);  // runs past the end
  EXPECT_EQ(other, std::string(4096, 'x'));
}

TEST(MappedFile, RefusesWhatCannotBeMapped) {
  testing::TempDir dir;
  auto missing = MappedFile::Open(dir.File("nope.gguf"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("nope.gguf"), std::string::npos) << missing.status();
  testing::WriteBytes(dir.File("empty.gguf"), "");
  auto empty = MappedFile::Open(dir.File("empty.gguf"));
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(std::string(empty.status().message()).find("empty"), std::string::npos) << empty.status();
  auto directory = MappedFile::Open(dir.path());
  EXPECT_FALSE(directory.ok());
}

}  // namespace
}  // namespace flotilla
