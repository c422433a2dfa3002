// The OpenAI-compatible HTTP front: routes /v1/completions, /v1/chat/completions (SSE streaming
// ending in "data: [DONE]", or one JSON response), /v1/models, /health, /ready and /metrics onto
// the dispatcher. Streaming writes one event per worker chunk and asks for the next chunk only
// when the write completed; a client that disconnects cancels its worker call.
// Headers understood: Authorization: Bearer <key> (or x-api-key), x-request-id,
// x-flotilla-zone (locality), x-flotilla-timeout-ms (deadline).
// Thread-safety: Handle may be called from any I/O thread concurrently.
#pragma once

#include <atomic>
#include <functional>
#include <memory>

#include "gateway/dispatcher.h"
#include "gateway/fleet.h"
#include "gateway/http_server.h"
#include "gateway/metrics.h"

namespace flotilla::gateway {

class OpenAiFront {
 public:
  OpenAiFront(Dispatcher* dispatcher, Fleet* fleet, Authenticator* auth, GatewayMetrics* metrics, const Clock* clock)
      : dispatcher_(dispatcher), fleet_(fleet), auth_(auth), metrics_(metrics), clock_(clock) {}

  void Handle(const HttpRequest& request, std::shared_ptr<HttpResponder> responder);
  // /ready answers 503 once draining starts.
  void SetDraining(bool draining) { draining_.store(draining); }

 private:
  void Generate(const HttpRequest& request, std::shared_ptr<HttpResponder> responder, bool chat);
  void Models(const HttpRequest& request, std::shared_ptr<HttpResponder> responder, const std::string& one);

  Dispatcher* const dispatcher_;
  Fleet* const fleet_;
  Authenticator* const auth_;
  GatewayMetrics* const metrics_;
  const Clock* const clock_;
  std::atomic<bool> draining_{false};
};

}  // namespace flotilla::gateway
