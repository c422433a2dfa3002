#include "autoscaler/drain_client.h"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "flotilla/worker/v1/worker.grpc.pb.h"

namespace flotilla::autoscaler {

absl::StatusOr<int> DrainWorkerRpc(const std::string& address, bool wait, double timeout_s) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = flotilla::worker::v1::Worker::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  flotilla::worker::v1::DrainRequest req;
  req.set_wait(wait);
  flotilla::worker::v1::DrainResponse resp;
  grpc::Status st = stub->Drain(&ctx, req, &resp);
  if (!st.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                        absl::StrCat("Drain(", address, "): ", st.error_message()));
  }
  return static_cast<int>(resp.in_flight());
}

}  // namespace flotilla::autoscaler
