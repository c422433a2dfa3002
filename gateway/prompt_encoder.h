// Tokenizes prompts at the gateway with the model's own vocabulary (from Worker.GetTokenizer):
// the token count drives admission and token rate limits, the leading tokens drive prefix
// affinity, and the ids are what the worker receives, so both sides agree on the prompt.
// Immutable after construction; thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "gateway/chat_template.h"
#include "model/tokenizer.h"

namespace flotilla::gateway {

class PromptEncoder {
 public:
  explicit PromptEncoder(Vocab vocab);

  // A completion prompt. add_bos: nullopt means the model's default.
  std::vector<int32_t> EncodeText(absl::string_view text, std::optional<bool> add_bos) const;
  // A rendered chat prompt: markers become their control tokens when the vocabulary has them
  // ("<s>" is BOS, "</s>" EOS); otherwise they are tokenized as text.
  std::vector<int32_t> EncodeChat(const RenderedPrompt& prompt) const;

  const Tokenizer& tokenizer() const { return tokenizer_; }

 private:
  Tokenizer tokenizer_;
  absl::flat_hash_map<std::string, int32_t> control_;  // control / user-defined pieces
};

}  // namespace flotilla::gateway
