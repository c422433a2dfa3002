// Options of the Flotilla C++ client: where to connect, how to authenticate, how long calls may
// take and how failures before the first token are retried. Plain values, copyable.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace flotilla::sdk {

// Retry of a call that failed before the server sent anything. Once a chunk has arrived the
// caller holds partial output, so a retry would duplicate text: the error is returned instead.
// The gateway already retries a failed worker on another one; this covers the hop in front of
// it (a gateway restarting, a load balancer without a ready backend, no worker ready yet).
struct RetryPolicy {
  int max_attempts = 4;  // tries in all, the first included; 1 turns retrying off
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(2);
  double multiplier = 2.0;
  double jitter = 0.2;  // each backoff is scaled by a random factor in [1 - jitter, 1 + jitter]
  // Also retry RESOURCE_EXHAUSTED (the gateway shedding load). Every retry waits at least the
  // delay the server asked for (google.rpc.RetryInfo in the status details). Off by default:
  // shedding is a signal a caller may want to see (a benchmark does).
  bool retry_resource_exhausted = false;
};

// Whether `code` is retried under `policy` (before the first chunk only).
bool IsRetryable(const RetryPolicy& policy, absl::StatusCode code);

// The wait before retry number `retry` (1 for the first retry): initial * multiplier^(retry-1),
// capped at max_backoff, then scaled by 1 + jitter * (2 * unit_random - 1) with unit_random
// in [0, 1). Pure, so tests check it without sleeping.
absl::Duration BackoffFor(const RetryPolicy& policy, int retry, double unit_random);

struct TlsOptions {
  bool enabled = false;
  std::string root_certs_pem;        // CAs the server's certificate must chain to; empty: system roots
  std::string client_cert_pem;       // mutual TLS (optional): certificate chain ...
  std::string client_key_pem;        // ... and its private key
  std::string server_name_override;  // verify the certificate for this name instead of the target's host
};

struct ClientOptions {
  // A gRPC target: "host:port", "dns:///name:port", "unix:/path".
  std::string target;
  // Sent on every call as `authorization: Bearer <api_key>` when not empty (the header the
  // gateway's HTTP front reads too).
  std::string api_key;
  TlsOptions tls;
  // Default time limit of a call, all attempts and backoffs included. Infinite: none.
  absl::Duration timeout = absl::InfiniteDuration();
  RetryPolicy retry;
  std::string user_agent = "flotilla-cpp-sdk";
};

// Per-call overrides.
struct CallOptions {
  // Time limit of this call (attempts and backoffs included); infinite: the client's timeout.
  absl::Duration timeout = absl::InfiniteDuration();
  // Absolute deadline; wins over both timeouts when earlier.
  absl::Time deadline = absl::InfiniteFuture();
  // Extra metadata (lower-case keys), e.g. a tracing header.
  std::vector<std::pair<std::string, std::string>> metadata;
};

}  // namespace flotilla::sdk
