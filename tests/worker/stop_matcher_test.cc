#include "worker/stop_matcher.h"

#include "gtest/gtest.h"

namespace flotilla::worker {
namespace {

std::string Feed(StopMatcher& m, const std::vector<std::string>& parts, bool* stopped) {
  std::string out;
  for (const auto& p : parts) {
    out += m.Push(p, stopped);
    if (*stopped) return out;
  }
  return out + m.Flush();
}

TEST(StopMatcher, NoStopsPassesEverythingAtOnce) {
  StopMatcher m({});
  bool s = false;
  EXPECT_EQ(m.Push("abc", &s), "abc");
  EXPECT_FALSE(s);
}

TEST(StopMatcher, StopSplitAcrossPiecesIsWithheldAndCut) {
  StopMatcher m({"\nUser:"});
  bool s = false;
  EXPECT_EQ(m.Push("Hello\nUs", &s), "Hello");  // "\nUs" might start the stop
  EXPECT_FALSE(s);
  EXPECT_EQ(m.Push("er: more", &s), "");
  EXPECT_TRUE(s);
  EXPECT_EQ(m.Push("ignored", &s), "");
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopMatcher, FalseStartIsReleased) {
  StopMatcher m({"END"});
  bool s = false;
  EXPECT_EQ(Feed(m, {"a E", "N", "x and EN"}, &s), "a ENx and EN");
  EXPECT_FALSE(s);
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"cd", "b"});
  bool s = false;
  EXPECT_EQ(Feed(m, {"abcd"}, &s), "a");
  EXPECT_TRUE(s);
}

TEST(StopMatcher, MultibyteCharactersStayWhole) {
  StopMatcher m({"\xc3\xa9t\xc3\xa9"});  // "été"
  bool s = false;
  EXPECT_EQ(m.Push("caf\xc3\xa9", &s), "caf");  // é may start the stop
  EXPECT_EQ(m.Push("!", &s), "\xc3\xa9!");
  EXPECT_EQ(Feed(m, {"un \xc3\xa9t\xc3\xa9"}, &s), "un ");
  EXPECT_TRUE(s);
}

}  // namespace
}  // namespace flotilla::worker
