#include "model/tokenizer.h"

#include "gtest/gtest.h"
#include "model/utf8.h"
#include "tests/common/test_models.h"

namespace flotilla {
namespace {

class TokenizerTest : public ::testing::Test {
 protected:
  static Tokenizer Load(const std::string& file) {
    auto m = testing::LoadShared(file, 0);
    return Tokenizer(m ? m->vocab : Vocab{});
  }
};

TEST_F(TokenizerTest, StoriesPromptIdsEqualTheReference) {
  for (const char* f : {"stories260K-f32.gguf", "stories260K-q8_0.gguf", "stories260K.bin"}) {
    Tokenizer tok = Load(f);
    EXPECT_EQ(tok.Encode("Once upon a time", true), (std::vector<int32_t>{1, 403, 407, 261, 378})) << f;
  }
}

TEST_F(TokenizerTest, Llama2VocabularyMatchesLlamaCpp) {
  Tokenizer tok = Load("llama2-vocab-tiny-f16.gguf");
  ASSERT_EQ(tok.vocab_size(), 32000);
  EXPECT_EQ(tok.Encode("Hello world", true), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(tok.Encode(" Hello world", true), (std::vector<int32_t>{1, 29871, 15043, 3186}));
  EXPECT_EQ(tok.Encode("", true), (std::vector<int32_t>{1}));
  EXPECT_TRUE(tok.Encode("", false).empty());
  // User text is text: "<s>" must not become the BOS control token.
  const auto ids = tok.Encode("<s>", false);
  for (int32_t id : ids) EXPECT_NE(id, 1);
  EXPECT_EQ(tok.Decode(ids), " <s>");
  // Newline is the byte token <0x0A> (id 13).
  const auto nl = tok.Encode("a\nb", false);
  EXPECT_NE(std::find(nl.begin(), nl.end(), 13), nl.end());
}

TEST_F(TokenizerTest, RoundTripsTextIncludingByteFallback) {
  for (const char* f : {"llama2-vocab-tiny-f16.gguf", "stories260K-f32.gguf", "stories260K.bin"}) {
    Tokenizer tok = Load(f);
    for (const std::string s : {"Once upon a time", "  two  spaces", "tab\tand\nnewline", "caf\xc3\xa9 na\xc3\xafve",
                                "emoji \xf0\x9f\x98\x80 and CJK \xe4\xb8\xad\xe6\x96\x87", "ends with space ",
                                "x", "1234567890!@#$%^&*()"}) {
      const auto ids = tok.Encode(s, true);
      // Decoding drops the BOS and returns the text with the leading space the model adds.
      EXPECT_EQ(tok.Decode(ids), " " + s) << f << ": " << s;
    }
  }
}

TEST_F(TokenizerTest, GoldenIdsDecodeToGoldenText) {
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  Tokenizer tok = Load("stories260K-f32.gguf");
  EXPECT_EQ(tok.Decode(golden.generated_ids), golden.text);
}

TEST_F(TokenizerTest, StreamingNeverSplitsACharacter) {
  Tokenizer tok = Load("stories260K-f32.gguf");  // small vocabulary: emoji fall back to bytes
  const std::string text = "a\xf0\x9f\x98\x80" "b\xc3\xa9";
  const auto ids = tok.Encode(text, false);
  ASSERT_GT(ids.size(), 4u);
  Utf8Stream stream;
  std::string out;
  for (int32_t id : ids) {
    const std::string piece = stream.Push(tok.TokenBytes(id));
    EXPECT_EQ(SanitizeUtf8(piece), piece) << "emitted a partial character";
    out += piece;
  }
  out += stream.Finish();
  EXPECT_EQ(out, " " + text);
}

TEST(Utf8, StreamHoldsBackAndReplacesInvalid) {
  Utf8Stream s;
  EXPECT_EQ(s.Push("\xe2\x82"), "");
  EXPECT_EQ(s.pending(), 2u);
  EXPECT_EQ(s.Push("\xac!"), "\xe2\x82\xac!");
  EXPECT_EQ(s.Push("\xff"), "\xef\xbf\xbd");  // never valid
  EXPECT_EQ(s.Push("\xf0\x9f"), "");
  EXPECT_EQ(s.Finish(), "\xef\xbf\xbd\xef\xbf\xbd");  // an unfinished character at the end
  EXPECT_EQ(SanitizeUtf8("ok\xed\xa0\x80"), "ok\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // surrogates are invalid
  EXPECT_EQ(SanitizeUtf8("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd");                         // overlong
}

}  // namespace
}  // namespace flotilla
