// The OpenAI wire format: parsing /v1/completions and /v1/chat/completions bodies into the
// gateway's GenerateInput, and writing responses, stream chunks, model lists and errors in the
// shapes the official SDKs expect. Pure functions (JSON in, JSON out); nlohmann::json is used
// without exceptions. Extensions beyond OpenAI's fields (vLLM-style): top_k, min_p,
// repetition_penalty, ignore_eos, priority, zone.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "flotilla/worker/v1/worker.pb.h"
#include "gateway/dispatcher.h"
#include "gateway/fleet.h"

namespace flotilla::gateway {

struct OpenAiRequest {
  GenerateInput input;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool want_logprobs = false;
  uint32_t top_logprobs = 0;   // alternatives to report per token
};

absl::StatusOr<OpenAiRequest> ParseCompletionRequest(absl::string_view body);
absl::StatusOr<OpenAiRequest> ParseChatRequest(absl::string_view body);

// "stop", "length", or null for unfinished.
std::string FinishReasonString(flotilla::v1::FinishReason r);

// Shared fields of one response: id ("cmpl-..." / "chatcmpl-..."), created (unix s), model.
struct ResponseMeta {
  std::string id;
  int64_t created = 0;
  std::string model;
  bool chat = false;
  bool want_logprobs = false;
  uint32_t top_logprobs = 0;
};

// Everything a non-streaming response needs, accumulated from the chunks.
struct Accumulated {
  std::string text;
  std::vector<flotilla::v1::TokenLogprob> logprobs;
  flotilla::v1::FinishReason finish_reason = flotilla::v1::FINISH_REASON_UNSPECIFIED;
  flotilla::v1::Usage usage;
  void Add(const worker::v1::GenerateResponse& chunk);
};

std::string CompletionResponseJson(const ResponseMeta& meta, const Accumulated& acc);
std::string ChatResponseJson(const ResponseMeta& meta, const Accumulated& acc);

// One SSE event ("data: {...}\n\n") for a chunk; `first` adds the chat role delta.
std::string StreamChunkEvent(const ResponseMeta& meta, const worker::v1::GenerateResponse& chunk, bool first);
// The usage-only chunk of stream_options.include_usage.
std::string StreamUsageEvent(const ResponseMeta& meta, const flotilla::v1::Usage& usage);
// An error inside a stream.
std::string StreamErrorEvent(const absl::Status& status);
inline constexpr const char* kStreamDone = "data: [DONE]\n\n";

// {"error": {...}} with the HTTP status and headers (Retry-After) for a gateway error.
struct HttpError {
  int status = 500;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};
HttpError ErrorResponse(const absl::Status& status);

std::string ModelsJson(const std::vector<ModelSummary>& models, int64_t created);

}  // namespace flotilla::gateway
