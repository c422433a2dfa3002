#include "flotilla/sdk/client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "async_generation.h"
#include "call_setup.h"
#include "generation_stream.h"

namespace flotilla::sdk {

struct Client::Impl {
  std::shared_ptr<internal::Shared> shared;
};

namespace {

std::shared_ptr<grpc::ChannelCredentials> Credentials(const TlsOptions& tls) {
  if (!tls.enabled) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = tls.root_certs_pem;
  ssl.pem_cert_chain = tls.client_cert_pem;
  ssl.pem_private_key = tls.client_key_pem;
  return grpc::SslCredentials(ssl);
}

// Gives the request an id when it has none, so that every attempt carries the same one.
flotilla::v1::GenerateRequest WithRequestId(const flotilla::v1::GenerateRequest& request) {
  flotilla::v1::GenerateRequest r = request;
  if (r.request_id().empty()) r.set_request_id(internal::NewRequestId());
  return r;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  if (options.target.empty()) return absl::InvalidArgumentError("ClientOptions.target is empty");
  if (options.retry.max_attempts < 1) return absl::InvalidArgumentError("retry.max_attempts must be >= 1");
  if (options.retry.multiplier < 1) return absl::InvalidArgumentError("retry.multiplier must be >= 1");
  if (options.tls.client_cert_pem.empty() != options.tls.client_key_pem.empty()) {
    return absl::InvalidArgumentError("TLS client certificate and key go together");
  }
  if (!options.tls.enabled && (!options.tls.root_certs_pem.empty() || !options.tls.client_cert_pem.empty())) {
    return absl::InvalidArgumentError("TLS certificates given but TLS is not enabled");
  }
  grpc::ChannelArguments args;
  if (!options.user_agent.empty()) args.SetUserAgentPrefix(options.user_agent);
  if (options.tls.enabled && !options.tls.server_name_override.empty()) {
    args.SetSslTargetNameOverride(options.tls.server_name_override);
  }
  // Generations are long-lived streams; keepalive pings notice a dead peer behind a NAT or a
  // proxy that would otherwise leave the stream hanging until its deadline.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  // gRPC's own reconnect backoff (1 s growing to 120 s by default) would make every retry
  // fail fast until it expires; align it with the retry policy so a retry finds a fresh attempt
  // to connect. (GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is left alone: gRPC also uses it as the
  // connect timeout, and a short one cuts handshakes off.)
  const int initial_ms = static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(options.retry.initial_backoff)));
  const int max_ms = static_cast<int>(std::max<int64_t>(initial_ms, absl::ToInt64Milliseconds(options.retry.max_backoff)));
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, initial_ms);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_ms);
  // round_robin rather than pick_first: a name that resolves to several gateways spreads calls
  // over them, and round_robin reconnects a subchannel as soon as its backoff ends, where
  // pick_first (gRPC 1.51) stays in failure for seconds after the server is back.
  args.SetServiceConfigJSON(R"({"loadBalancingConfig": [{"round_robin": {}}]})");
  // Very long prompts and many logprobs make large messages; the API bounds them, not gRPC's 4 MB.
  args.SetMaxReceiveMessageSize(64 << 20);

  auto shared = std::make_shared<internal::Shared>();
  shared->channel = grpc::CreateCustomChannel(options.target, Credentials(options.tls), args);
  shared->stub = flotilla::v1::Inference::NewStub(shared->channel);
  shared->options = options;
  auto impl = std::make_unique<Impl>();
  impl->shared = std::move(shared);
  return std::unique_ptr<Client>(new Client(std::move(options), std::move(impl)));
}

Client::Client(ClientOptions options, std::unique_ptr<Impl> impl)
    : options_(std::move(options)), impl_(std::move(impl)) {}

Client::~Client() {
  // Asynchronous calls end on gRPC's threads; wait for them so none outlives the client.
  std::unique_lock<std::mutex> lock(impl_->shared->live_mu);
  impl_->shared->live_cv.wait(lock, [this] { return impl_->shared->live_async == 0; });
}

std::unique_ptr<GenerationStream> Client::StartGenerate(const flotilla::v1::GenerateRequest& request,
                                                        const CallOptions& call) {
  return std::make_unique<internal::SyncStream>(impl_->shared, WithRequestId(request), call);
}

absl::Status Client::GenerateStream(const flotilla::v1::GenerateRequest& request,
                                    const std::function<bool(const flotilla::v1::GenerateResponse&)>& on_chunk,
                                    const CallOptions& call) {
  std::unique_ptr<GenerationStream> stream = StartGenerate(request, call);
  flotilla::v1::GenerateResponse chunk;
  while (stream->Next(&chunk)) {
    if (!on_chunk(chunk)) {
      stream->Cancel();
      while (stream->Next(&chunk)) {
      }
      (void)stream->Finish();
      return absl::CancelledError("cancelled by the caller");
    }
  }
  return stream->Finish();
}

absl::StatusOr<Completion> Client::Generate(const flotilla::v1::GenerateRequest& request, const CallOptions& call) {
  std::unique_ptr<GenerationStream> stream = StartGenerate(request, call);
  Completion completion;
  flotilla::v1::GenerateResponse chunk;
  while (stream->Next(&chunk)) Accumulate(chunk, &completion);
  completion.attempts = stream->attempts();
  if (absl::Status st = stream->Finish(); !st.ok()) return st;
  return completion;
}

std::shared_ptr<AsyncGeneration> Client::GenerateAsync(const flotilla::v1::GenerateRequest& request,
                                                       AsyncCallbacks callbacks, const CallOptions& call) {
  auto c = std::make_shared<internal::AsyncCall>(impl_->shared, WithRequestId(request), std::move(callbacks), call);
  c->Start();
  return c;
}

absl::StatusOr<std::vector<flotilla::v1::ModelInfo>> Client::ListModels(const CallOptions& call) {
  const internal::Shared& s = *impl_->shared;
  const absl::Time deadline = internal::CallDeadline(s.options, call, absl::Now());
  for (int attempt = 1;; ++attempt) {
    grpc::ClientContext ctx;
    internal::PrepareContext(s.options, call, deadline, &ctx);
    flotilla::v1::ListModelsResponse response;
    const grpc::Status grpc_status = s.stub->ListModels(&ctx, {}, &response);
    const absl::Status status = internal::FromGrpc(grpc_status);
    if (status.ok()) return std::vector<flotilla::v1::ModelInfo>(response.models().begin(), response.models().end());
    // Listing is idempotent: the same retry rule applies, there is no "first token" to wait for.
    const std::optional<absl::Duration> wait = internal::RetryWait(
        s.options.retry, status, attempt, internal::ServerRetryDelay(grpc_status), deadline, absl::Now(), internal::UnitRandom());
    if (!wait.has_value()) return status;
    internal::BackoffWithReconnect(*s.channel, *wait, [] { return false; });
  }
}

bool Client::WaitForConnected(absl::Duration timeout) {
  return impl_->shared->channel->WaitForConnected(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace flotilla::sdk
