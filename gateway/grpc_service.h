// The public gRPC API, flotilla.v1.Inference, on gRPC's callback API: no thread per stream.
// Generate streams one message per worker chunk with one write in flight at a time; the next
// worker read starts only when the write completed (flow control end to end). A client cancel
// (or deadline) cancels the worker call. Errors carry gRPC status codes; refusals that may be
// retried carry google.rpc.RetryInfo in grpc-status-details-bin and a "retry-after-ms" trailer.
// API keys come from "authorization: Bearer <key>" or "x-api-key" metadata.
#pragma once

#include "flotilla/v1/inference.grpc.pb.h"
#include "gateway/dispatcher.h"
#include "gateway/fleet.h"

namespace flotilla::gateway {

class InferenceService final : public flotilla::v1::Inference::CallbackService {
 public:
  InferenceService(Dispatcher* dispatcher, Fleet* fleet, Authenticator* auth, const Clock* clock)
      : dispatcher_(dispatcher), fleet_(fleet), auth_(auth), clock_(clock) {}

  grpc::ServerWriteReactor<flotilla::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const flotilla::v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const flotilla::v1::ListModelsRequest* request,
                                       flotilla::v1::ListModelsResponse* response) override;

 private:
  Dispatcher* const dispatcher_;
  Fleet* const fleet_;
  Authenticator* const auth_;
  const Clock* const clock_;
};

// absl::Status -> grpc::Status, with retry info in the details when the status carries it.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace flotilla::gateway
