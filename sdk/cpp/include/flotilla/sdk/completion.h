// A whole generation gathered from its streamed chunks, for callers that want the result at once.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flotilla/v1/inference.pb.h"

namespace flotilla::sdk {

struct Completion {
  std::string request_id;
  std::string model;
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<flotilla::v1::TokenLogprob> logprobs;
  flotilla::v1::FinishReason finish_reason = flotilla::v1::FINISH_REASON_UNSPECIFIED;
  flotilla::v1::Usage usage;
  double time_to_first_token_s = 0;  // as the server measured it
  int attempts = 0;                  // calls made, retries included
  int chunks = 0;
};

// Folds one streamed chunk into `c`.
void Accumulate(const flotilla::v1::GenerateResponse& chunk, Completion* c);

// "length", "stop", "eos", "cancelled", "error", or "" while unfinished.
const char* FinishReasonName(flotilla::v1::FinishReason reason);

}  // namespace flotilla::sdk
