// API keys and tenants. The key file (JSON) maps SHA-256 hashes of API keys to tenants; the
// plaintext keys are never stored, in the file or in memory. The file is re-read when it changes
// (ReloadIfChanged, called periodically and on SIGHUP); a file that fails to parse leaves the
// previous keys in force and is reported, so a typo cannot lock every client out.
//
// Format:
//   {"tenants": [{"name": "acme", "requests_per_second": 10, "request_burst": 20,
//                 "tokens_per_minute": 60000, "token_burst": 60000, "max_concurrent": 8,
//                 "max_tokens_per_request": 512, "allowed_models": ["*"], "max_priority": 1}],
//    "keys": [{"sha256": "<64 hex digits>", "tenant": "acme", "name": "ci"}]}
//
// With auth disabled every request runs as one configured default tenant (see NoAuth).
// Thread-safety: all methods may be called from any thread; lookups take a shared lock only to
// copy a shared_ptr to the current immutable key set.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "gateway/tenant.h"

namespace flotilla::gateway {

// Lower-case hex SHA-256 of `key`.
std::string Sha256Hex(absl::string_view key);

// One parsed key file: hash -> tenant.
struct KeySet {
  absl::flat_hash_map<std::string, std::shared_ptr<const Tenant>> by_hash;
  absl::flat_hash_map<std::string, std::shared_ptr<const Tenant>> tenants;
};

// Parses the key file's text. Errors name the offending entry.
absl::StatusOr<std::shared_ptr<const KeySet>> ParseKeyFile(absl::string_view json_text);

class Authenticator {
 public:
  // Keys from `path`, checked for changes by ReloadIfChanged.
  static absl::StatusOr<std::unique_ptr<Authenticator>> FromFile(std::string path);
  // Every request is `tenant`; keys are ignored.
  static std::unique_ptr<Authenticator> NoAuth(Tenant tenant);

  // The tenant of `api_key` ("" when the client sent none). UNAUTHENTICATED when unknown.
  absl::StatusOr<std::shared_ptr<const Tenant>> Authenticate(absl::string_view api_key) const;

  // Re-reads the file when its size, mtime or inode changed (or when forced). Returns true when a
  // new key set took effect; an error when the new file is invalid (the old keys stay).
  absl::StatusOr<bool> ReloadIfChanged(bool force = false);

  bool enabled() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  size_t num_keys() const;
  int64_t reloads() const;
  // Every tenant currently configured (for metrics and reporting).
  std::vector<std::shared_ptr<const Tenant>> Tenants() const;

 private:
  Authenticator() = default;

  std::string path_;
  std::shared_ptr<const Tenant> no_auth_tenant_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const KeySet> keys_ ABSL_GUARDED_BY(mu_);
  std::string file_stamp_ ABSL_GUARDED_BY(mu_);
  int64_t reloads_ ABSL_GUARDED_BY(mu_) = 0;
};

// Parses one tenant object (shared with the config file's no-auth tenant).
absl::StatusOr<Tenant> ParseTenantJson(absl::string_view json_text);

}  // namespace flotilla::gateway
