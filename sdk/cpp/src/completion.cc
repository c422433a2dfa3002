#include "flotilla/sdk/completion.h"

namespace flotilla::sdk {

void Accumulate(const flotilla::v1::GenerateResponse& chunk, Completion* c) {
  ++c->chunks;
  if (!chunk.request_id().empty()) c->request_id = chunk.request_id();
  if (!chunk.model().empty()) c->model = chunk.model();
  c->text += chunk.text();
  c->token_ids.insert(c->token_ids.end(), chunk.token_ids().begin(), chunk.token_ids().end());
  c->logprobs.insert(c->logprobs.end(), chunk.logprobs().begin(), chunk.logprobs().end());
  if (chunk.time_to_first_token_s() > 0 && c->time_to_first_token_s == 0) {
    c->time_to_first_token_s = chunk.time_to_first_token_s();
  }
  if (chunk.finish_reason() != flotilla::v1::FINISH_REASON_UNSPECIFIED) c->finish_reason = chunk.finish_reason();
  if (chunk.has_usage()) c->usage = chunk.usage();
}

const char* FinishReasonName(flotilla::v1::FinishReason reason) {
  switch (reason) {
    case flotilla::v1::FINISH_REASON_LENGTH:
      return "length";
    case flotilla::v1::FINISH_REASON_STOP:
      return "stop";
    case flotilla::v1::FINISH_REASON_EOS:
      return "eos";
    case flotilla::v1::FINISH_REASON_CANCELLED:
      return "cancelled";
    case flotilla::v1::FINISH_REASON_ERROR:
      return "error";
    default:
      return "";
  }
}

}  // namespace flotilla::sdk
