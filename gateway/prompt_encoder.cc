#include "gateway/prompt_encoder.h"

#include <string_view>

namespace flotilla::gateway {

PromptEncoder::PromptEncoder(Vocab vocab) : tokenizer_(vocab) {
  for (int32_t id = 0; id < vocab.size(); ++id) {
    const TokenType t = id < static_cast<int32_t>(vocab.types.size()) ? vocab.types[id] : TokenType::kNormal;
    if (t == TokenType::kControl || t == TokenType::kUserDefined) control_.emplace(vocab.pieces[id], id);
  }
}

std::vector<int32_t> PromptEncoder::EncodeText(absl::string_view text, std::optional<bool> add_bos) const {
  return tokenizer_.Encode(std::string_view(text.data(), text.size()), add_bos.value_or(tokenizer_.add_bos()));
}

std::vector<int32_t> PromptEncoder::EncodeChat(const RenderedPrompt& prompt) const {
  std::vector<int32_t> ids;
  if (prompt.add_bos && tokenizer_.add_bos()) ids.push_back(tokenizer_.bos_id());
  for (const auto& seg : prompt.segments) {
    if (seg.special) {
      if (seg.text == "<s>" || seg.text == "<|begin_of_text|>") {
        auto it = control_.find(seg.text);
        ids.push_back(it != control_.end() ? it->second : tokenizer_.bos_id());
        continue;
      }
      if (seg.text == "</s>") {
        ids.push_back(tokenizer_.eos_id());
        continue;
      }
      if (auto it = control_.find(seg.text); it != control_.end()) {
        ids.push_back(it->second);
        continue;
      }
      // The vocabulary has no such token (e.g. a base model with a ChatML template): the marker
      // is plain text then.
    }
    auto part = tokenizer_.Encode(std::string_view(seg.text), false);
    ids.insert(ids.end(), part.begin(), part.end());
  }
  return ids;
}

}  // namespace flotilla::gateway
