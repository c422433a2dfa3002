#include "gateway/chat_template.h"

#include <gtest/gtest.h>

#include "gateway/prompt_encoder.h"

namespace flotilla::gateway {
namespace {

std::vector<ChatTurn> Conversation() {
  return {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Name a color."}};
}

TEST(ChatTemplateTest, Llama2) {
  auto p = RenderChat(ChatTemplateFamily::kLlama2, Conversation());
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->Text(),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Name a color. [/INST]");
  EXPECT_FALSE(p->add_bos);
  EXPECT_TRUE(p->segments[0].special);
}

TEST(ChatTemplateTest, Llama3) {
  auto p = RenderChat(ChatTemplateFamily::kLlama3, Conversation());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->Text(),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nName a color.<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplateTest, ChatML) {
  auto p = RenderChat(ChatTemplateFamily::kChatML, Conversation());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->Text(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplateTest, MistralFoldsSystemIntoFirstUserTurn) {
  auto p = RenderChat(ChatTemplateFamily::kMistral, Conversation());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->Text(), "<s>[INST] Be brief.\n\nHi [/INST]Hello!</s>[INST] Name a color. [/INST]");
}

TEST(ChatTemplateTest, PlainFallback) {
  auto p = RenderChat(ChatTemplateFamily::kPlain, Conversation());
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->Text(), "Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: Name a color.\nAssistant:");
  EXPECT_TRUE(p->add_bos);
  ASSERT_EQ(p->segments.size(), 1u);  // one text run: the tokenizer sees whole words
}

TEST(ChatTemplateTest, Validation) {
  std::vector<ChatTurn> none;
  EXPECT_EQ(RenderChat(ChatTemplateFamily::kPlain, none).status().code(), absl::StatusCode::kInvalidArgument);
  std::vector<ChatTurn> bad_role = {{"robot", "x"}};
  EXPECT_FALSE(RenderChat(ChatTemplateFamily::kChatML, bad_role).ok());
  std::vector<ChatTurn> late_system = {{"user", "x"}, {"system", "y"}};
  EXPECT_FALSE(RenderChat(ChatTemplateFamily::kChatML, late_system).ok());
  std::vector<ChatTurn> two_users = {{"user", "a"}, {"user", "b"}};
  EXPECT_FALSE(RenderChat(ChatTemplateFamily::kLlama2, two_users).ok());
  EXPECT_FALSE(RenderChat(ChatTemplateFamily::kMistral, two_users).ok());
  EXPECT_TRUE(RenderChat(ChatTemplateFamily::kChatML, two_users).ok());
  std::vector<ChatTurn> ends_assistant = {{"user", "a"}, {"assistant", "b"}};
  EXPECT_FALSE(RenderChat(ChatTemplateFamily::kLlama2, ends_assistant).ok());
}

TEST(ChatTemplateTest, DetectionAndChoice) {
  EXPECT_EQ(DetectChatTemplateFamily("{% for m in messages %}<|start_header_id|>{{ m.role }}"), ChatTemplateFamily::kLlama3);
  EXPECT_EQ(DetectChatTemplateFamily("{{'<|im_start|>' + message['role']}}"), ChatTemplateFamily::kChatML);
  EXPECT_EQ(DetectChatTemplateFamily("[INST] <<SYS>>\\n"), ChatTemplateFamily::kLlama2);
  EXPECT_EQ(DetectChatTemplateFamily("{{ '[INST] ' + message['content'] + ' [/INST]' }}"), ChatTemplateFamily::kMistral);
  EXPECT_EQ(DetectChatTemplateFamily(""), ChatTemplateFamily::kPlain);
  EXPECT_EQ(ChooseChatTemplateFamily("chatml", "llama-2", "<|start_header_id|>"), ChatTemplateFamily::kChatML);
  EXPECT_EQ(ChooseChatTemplateFamily("", "llama-2", "<|start_header_id|>"), ChatTemplateFamily::kLlama2);
  EXPECT_EQ(ChooseChatTemplateFamily("", "", "<|start_header_id|>"), ChatTemplateFamily::kLlama3);
  EXPECT_EQ(ChooseChatTemplateFamily("", "", ""), ChatTemplateFamily::kPlain);
  for (auto f : {ChatTemplateFamily::kPlain, ChatTemplateFamily::kLlama2, ChatTemplateFamily::kLlama3,
                 ChatTemplateFamily::kChatML, ChatTemplateFamily::kMistral}) {
    EXPECT_EQ(*ParseChatTemplateFamily(ChatTemplateFamilyName(f)), f);
  }
}

// A toy vocabulary with byte fallback and two control tokens.
Vocab ToyVocab() {
  Vocab v;
  v.pieces = {"<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"};
  v.types = {TokenType::kUnknown, TokenType::kControl, TokenType::kControl, TokenType::kControl, TokenType::kControl};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    snprintf(buf, sizeof(buf), "<0x%02X>", b);
    v.pieces.push_back(buf);
    v.types.push_back(TokenType::kByte);
  }
  v.pieces.push_back("\xe2\x96\x81");  // U+2581, the SentencePiece space
  v.types.push_back(TokenType::kNormal);
  for (char c = 'a'; c <= 'z'; ++c) {
    v.pieces.push_back(std::string(1, c));
    v.types.push_back(TokenType::kNormal);
  }
  v.scores.assign(v.pieces.size(), 0.0f);
  return v;
}

TEST(PromptEncoderTest, MarkersBecomeControlTokensOnlyWhenTheVocabHasThem) {
  PromptEncoder enc(ToyVocab());
  auto p = RenderChat(ChatTemplateFamily::kChatML, std::vector<ChatTurn>{{"user", "hi"}});
  ASSERT_TRUE(p.ok());
  auto ids = enc.EncodeChat(*p);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], 1);  // BOS (toy vocab adds it)
  EXPECT_EQ(ids[1], 3);  // <|im_start|>
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 4), 1);  // one <|im_end|>
  // User text that spells a marker stays text.
  auto q = RenderChat(ChatTemplateFamily::kChatML, std::vector<ChatTurn>{{"user", "<|im_end|>"}});
  auto qids = enc.EncodeChat(*q);
  EXPECT_EQ(std::count(qids.begin(), qids.end(), 4), 1);
  // Llama-3 markers are unknown to this vocabulary: they are tokenized as text, and BOS comes
  // from <|begin_of_text|>.
  auto l3 = RenderChat(ChatTemplateFamily::kLlama3, std::vector<ChatTurn>{{"user", "hi"}});
  auto l3ids = enc.EncodeChat(*l3);
  EXPECT_EQ(l3ids[0], 1);
  EXPECT_EQ(std::count(l3ids.begin(), l3ids.end(), 1), 1);
  EXPECT_GT(l3ids.size(), 20u);
}

TEST(PromptEncoderTest, TextPromptHonoursAddBos) {
  PromptEncoder enc(ToyVocab());
  EXPECT_EQ(enc.EncodeText("ab", std::nullopt)[0], 1);
  EXPECT_NE(enc.EncodeText("ab", false)[0], 1);
}

}  // namespace
}  // namespace flotilla::gateway
