// Chat templates: turning a list of messages into the prompt a chat-tuned model expects. Five
// families cover the common models: llama-2, llama-3, ChatML (Qwen, many fine-tunes), Mistral
// (v0.1-style [INST]), and a plain "User:/Assistant:" fallback for base models. The family comes
// from configuration, else from the worker's Info (chat_template_family), else is detected from
// the model's template text, else plain.
//
// The rendered prompt is a list of segments: text, and special markers (<|im_start|>, </s>, ...)
// that a tokenizer should map to their control token when the vocabulary has it, rather than
// tokenize the marker's characters. Message content is always text: a user who types
// "<|im_end|>" gets those characters, not the control token.
// Pure functions; thread-safe.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace flotilla::gateway {

enum class ChatTemplateFamily { kPlain, kLlama2, kLlama3, kChatML, kMistral };

std::optional<ChatTemplateFamily> ParseChatTemplateFamily(absl::string_view name);
std::string ChatTemplateFamilyName(ChatTemplateFamily family);
// Best guess from a Jinja chat template's text (as stored in GGUF tokenizer.chat_template).
ChatTemplateFamily DetectChatTemplateFamily(absl::string_view template_text);
// Configuration beats the worker's stated family, which beats detection, which beats plain.
ChatTemplateFamily ChooseChatTemplateFamily(absl::string_view configured, absl::string_view worker_family,
                                            absl::string_view template_text);

struct ChatTurn {
  std::string role;  // system, user, assistant
  std::string content;
};

struct PromptSegment {
  std::string text;
  bool special = false;  // a control marker, e.g. "<|im_start|>"; "<s>" means BOS
};

struct RenderedPrompt {
  std::vector<PromptSegment> segments;
  // Whether the tokenizer should add BOS itself. False when the template wrote it ("<s>",
  // "<|begin_of_text|>" as the first segment).
  bool add_bos = true;

  // The prompt as one string (markers written out), for logs and tests.
  std::string Text() const;
};

// Renders `turns` and the opening of the assistant's reply. INVALID_ARGUMENT for an empty list,
// an unknown role, or an order the family cannot express (e.g. two user turns in a row for
// llama-2/Mistral, which strictly alternate).
absl::StatusOr<RenderedPrompt> RenderChat(ChatTemplateFamily family, std::span<const ChatTurn> turns);

}  // namespace flotilla::gateway
