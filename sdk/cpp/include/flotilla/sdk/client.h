// The Flotilla C++ client: generation and model listing over the public gRPC API
// (flotilla.v1.Inference, served by the gateway).
//
// Three ways to generate, all with the same retry and deadline rules (options.h):
//   Generate        blocks and returns the whole Completion;
//   GenerateStream  blocks and calls a function per chunk (return false to cancel);
//   StartGenerate   returns a GenerationStream to pull chunks from (Next), cancellable from
//                   any thread;
//   GenerateAsync   returns at once; callbacks run on gRPC's threads (for many concurrent
//                   streams without a thread each, e.g. a load generator).
// Requests and chunks are the API's protobuf messages (flotilla/v1/inference.proto).
//
// Thread-safety: a Client may be shared by any number of threads; it holds one channel (HTTP/2
// connection) and is cheap to call concurrently. A GenerationStream belongs to one reading
// thread, except Cancel(), which any thread may call. Errors are absl::Status with the gRPC
// code (the two enumerations are equal).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "flotilla/sdk/completion.h"
#include "flotilla/sdk/options.h"
#include "flotilla/v1/inference.pb.h"

namespace grpc {
class Channel;
}

namespace flotilla::sdk {

class GenerationStream {
 public:
  virtual ~GenerationStream() = default;
  // Blocks until the next chunk. False at the end of the stream; Finish() then tells how it ended.
  virtual bool Next(flotilla::v1::GenerateResponse* chunk) = 0;
  // Ends the call (the gateway cancels the worker, which frees the request's KV cache). Safe
  // from any thread, at any time, more than once. The stream then ends with CANCELLED.
  virtual void Cancel() = 0;
  // OK once the server finished the generation; the error otherwise. Call after Next is false.
  virtual absl::Status Finish() = 0;
  // Calls made so far, retries included.
  virtual int attempts() const = 0;
};

// A generation running in the background (GenerateAsync).
class AsyncGeneration {
 public:
  virtual ~AsyncGeneration() = default;
  // As GenerationStream::Cancel; on_done still runs (with CANCELLED unless it already ran).
  virtual void Cancel() = 0;
};

struct AsyncCallbacks {
  // Each chunk, in order. Runs on a gRPC thread: keep it short, never block.
  std::function<void(const flotilla::v1::GenerateResponse& chunk)> on_chunk;
  // Exactly once, last: the final status and the number of calls made.
  std::function<void(const absl::Status& status, int attempts)> on_done;
};

class Client {
 public:
  // Creates the channel (connecting lazily, on the first call). Fails only on bad options.
  static absl::StatusOr<std::unique_ptr<Client>> Create(ClientOptions options);
  // Waits for every GenerateAsync call to finish (cancel them first for a quick exit). Streams
  // from StartGenerate must be destroyed before the client.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  absl::StatusOr<Completion> Generate(const flotilla::v1::GenerateRequest& request,
                                      const CallOptions& call = {});

  // Returns OK when the generation finished, CANCELLED when on_chunk returned false.
  absl::Status GenerateStream(const flotilla::v1::GenerateRequest& request,
                              const std::function<bool(const flotilla::v1::GenerateResponse&)>& on_chunk,
                              const CallOptions& call = {});

  std::unique_ptr<GenerationStream> StartGenerate(const flotilla::v1::GenerateRequest& request,
                                                  const CallOptions& call = {});

  // The returned handle may be dropped: the call runs to its end regardless (and ~Client waits
  // for it).
  std::shared_ptr<AsyncGeneration> GenerateAsync(const flotilla::v1::GenerateRequest& request,
                                                 AsyncCallbacks callbacks, const CallOptions& call = {});

  absl::StatusOr<std::vector<flotilla::v1::ModelInfo>> ListModels(const CallOptions& call = {});

  // Waits until the channel is connected (false on timeout). For tools that want to fail fast
  // with a clear message when nothing listens at the target.
  bool WaitForConnected(absl::Duration timeout);

  const ClientOptions& options() const { return options_; }

 private:
  struct Impl;
  Client(ClientOptions options, std::unique_ptr<Impl> impl);
  ClientOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace flotilla::sdk
