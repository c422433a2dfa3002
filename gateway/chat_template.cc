#include "gateway/chat_template.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace flotilla::gateway {
namespace {

class Builder {
 public:
  void Special(absl::string_view s) { Add(s, true); }
  void Text(absl::string_view s) { Add(s, false); }
  RenderedPrompt Done(bool add_bos) {
    RenderedPrompt p;
    p.segments = std::move(segments_);
    p.add_bos = add_bos;
    return p;
  }

 private:
  void Add(absl::string_view s, bool special) {
    if (s.empty()) return;
    // Adjacent text pieces merge, so the tokenizer sees whole words.
    if (!special && !segments_.empty() && !segments_.back().special) {
      segments_.back().text.append(s.data(), s.size());
      return;
    }
    segments_.push_back({std::string(s), special});
  }
  std::vector<PromptSegment> segments_;
};

absl::Status CheckRoles(std::span<const ChatTurn> turns) {
  if (turns.empty()) return absl::InvalidArgumentError("messages must not be empty");
  for (size_t i = 0; i < turns.size(); ++i) {
    const auto& r = turns[i].role;
    if (r != "system" && r != "user" && r != "assistant") {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "].role '", r, "' is not system, user or assistant"));
    }
    if (r == "system" && i != 0) {
      return absl::InvalidArgumentError("a system message may only come first");
    }
  }
  return absl::OkStatus();
}

// llama-2 and Mistral strictly alternate user/assistant, starting with user, ending with user.
absl::Status CheckAlternating(std::span<const ChatTurn> turns, size_t first) {
  for (size_t i = first; i < turns.size(); ++i) {
    const char* want = (i - first) % 2 == 0 ? "user" : "assistant";
    if (turns[i].role != want) {
      return absl::InvalidArgumentError(absl::StrCat("this model's chat template needs user and assistant messages to alternate, starting with user; messages[", i, "] is ", turns[i].role));
    }
  }
  if (turns.size() == first || turns.back().role != "user") {
    return absl::InvalidArgumentError("the last message must be from the user");
  }
  return absl::OkStatus();
}

RenderedPrompt Llama2(std::span<const ChatTurn> turns) {
  Builder b;
  size_t first = 0;
  std::string system;
  if (turns[0].role == "system") {
    system = turns[0].content;
    first = 1;
  }
  for (size_t i = first; i < turns.size(); ++i) {
    if (turns[i].role == "user") {
      b.Special("<s>");
      b.Text("[INST] ");
      if (i == first && first == 1) b.Text(absl::StrCat("<<SYS>>\n", system, "\n<</SYS>>\n\n"));
      b.Text(absl::StrCat(turns[i].content, " [/INST]"));
    } else {
      b.Text(absl::StrCat(" ", turns[i].content, " "));
      b.Special("</s>");
    }
  }
  return b.Done(false);
}

RenderedPrompt Mistral(std::span<const ChatTurn> turns) {
  Builder b;
  size_t first = 0;
  std::string system;
  if (turns[0].role == "system") {
    system = turns[0].content;
    first = 1;
  }
  b.Special("<s>");
  for (size_t i = first; i < turns.size(); ++i) {
    if (turns[i].role == "user") {
      // Mistral v0.1 has no system role: it is prepended to the first user message.
      std::string content = (i == first && first == 1) ? absl::StrCat(system, "\n\n", turns[i].content) : turns[i].content;
      b.Text(absl::StrCat("[INST] ", content, " [/INST]"));
    } else {
      b.Text(turns[i].content);
      b.Special("</s>");
    }
  }
  return b.Done(false);
}

RenderedPrompt Llama3(std::span<const ChatTurn> turns) {
  Builder b;
  b.Special("<|begin_of_text|>");
  for (const auto& t : turns) {
    b.Special("<|start_header_id|>");
    b.Text(t.role);
    b.Special("<|end_header_id|>");
    b.Text(absl::StrCat("\n\n", t.content));
    b.Special("<|eot_id|>");
  }
  b.Special("<|start_header_id|>");
  b.Text("assistant");
  b.Special("<|end_header_id|>");
  b.Text("\n\n");
  return b.Done(false);
}

RenderedPrompt ChatML(std::span<const ChatTurn> turns) {
  Builder b;
  for (const auto& t : turns) {
    b.Special("<|im_start|>");
    b.Text(absl::StrCat(t.role, "\n", t.content));
    b.Special("<|im_end|>");
    b.Text("\n");
  }
  b.Special("<|im_start|>");
  b.Text("assistant\n");
  // ChatML models mostly add no BOS; "true" here means "the model's default".
  return b.Done(true);
}

RenderedPrompt Plain(std::span<const ChatTurn> turns) {
  Builder b;
  for (const auto& t : turns) {
    if (t.role == "system") {
      b.Text(absl::StrCat(t.content, "\n\n"));
    } else if (t.role == "user") {
      b.Text(absl::StrCat("User: ", t.content, "\n"));
    } else {
      b.Text(absl::StrCat("Assistant: ", t.content, "\n"));
    }
  }
  b.Text("Assistant:");
  return b.Done(true);
}

}  // namespace

std::optional<ChatTemplateFamily> ParseChatTemplateFamily(absl::string_view name) {
  if (name == "plain") return ChatTemplateFamily::kPlain;
  if (name == "llama-2" || name == "llama2") return ChatTemplateFamily::kLlama2;
  if (name == "llama-3" || name == "llama3") return ChatTemplateFamily::kLlama3;
  if (name == "chatml") return ChatTemplateFamily::kChatML;
  if (name == "mistral") return ChatTemplateFamily::kMistral;
  return std::nullopt;
}

std::string ChatTemplateFamilyName(ChatTemplateFamily family) {
  switch (family) {
    case ChatTemplateFamily::kPlain: return "plain";
    case ChatTemplateFamily::kLlama2: return "llama-2";
    case ChatTemplateFamily::kLlama3: return "llama-3";
    case ChatTemplateFamily::kChatML: return "chatml";
    case ChatTemplateFamily::kMistral: return "mistral";
  }
  return "plain";
}

ChatTemplateFamily DetectChatTemplateFamily(absl::string_view t) {
  if (absl::StrContains(t, "<|start_header_id|>")) return ChatTemplateFamily::kLlama3;
  if (absl::StrContains(t, "<|im_start|>")) return ChatTemplateFamily::kChatML;
  if (absl::StrContains(t, "[INST]")) {
    return absl::StrContains(t, "<<SYS>>") ? ChatTemplateFamily::kLlama2 : ChatTemplateFamily::kMistral;
  }
  return ChatTemplateFamily::kPlain;
}

ChatTemplateFamily ChooseChatTemplateFamily(absl::string_view configured, absl::string_view worker_family,
                                            absl::string_view template_text) {
  if (auto f = ParseChatTemplateFamily(configured)) return *f;
  if (auto f = ParseChatTemplateFamily(worker_family)) return *f;
  return DetectChatTemplateFamily(template_text);
}

std::string RenderedPrompt::Text() const {
  std::string out;
  for (const auto& s : segments) out += s.text;
  return out;
}

absl::StatusOr<RenderedPrompt> RenderChat(ChatTemplateFamily family, std::span<const ChatTurn> turns) {
  if (absl::Status st = CheckRoles(turns); !st.ok()) return st;
  const size_t first = turns[0].role == "system" ? 1 : 0;
  switch (family) {
    case ChatTemplateFamily::kLlama2:
      if (absl::Status st = CheckAlternating(turns, first); !st.ok()) return st;
      return Llama2(turns);
    case ChatTemplateFamily::kMistral:
      if (absl::Status st = CheckAlternating(turns, first); !st.ok()) return st;
      return Mistral(turns);
    case ChatTemplateFamily::kLlama3: return Llama3(turns);
    case ChatTemplateFamily::kChatML: return ChatML(turns);
    case ChatTemplateFamily::kPlain: return Plain(turns);
  }
  return Plain(turns);
}

}  // namespace flotilla::gateway
