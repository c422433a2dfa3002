// An LRU cache of finished responses to deterministic requests (greedy, or a fixed seed), keyed by
// the exact request (tenant, model, prompt tokens, every parameter that changes the output).
// Bounded in bytes (keys and values both count), entries expire after a TTL. Opt-in: the
// gateway creates one only when configured. Values are opaque bytes (the serialized response).
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"

namespace flotilla::gateway {

struct ResponseCacheConfig {
  size_t max_bytes = 64 << 20;
  size_t max_entry_bytes = 1 << 20;  // larger responses are not cached
  TimeNs ttl = 300 * kNsPerSec;
};

class ResponseCache {
 public:
  explicit ResponseCache(ResponseCacheConfig config) : config_(config) {}

  std::optional<std::string> Get(absl::string_view key, TimeNs now);
  // Inserts or replaces; evicts least-recently-used entries to stay within max_bytes.
  void Put(std::string key, std::string value, TimeNs now);

  size_t bytes() const;
  size_t entries() const;
  int64_t evictions() const;

 private:
  struct Entry {
    std::string key;
    std::string value;
    TimeNs expires_at;
    size_t Cost() const { return key.size() + value.size() + 64; }  // 64: node and index overhead
  };
  void EraseLocked(std::list<Entry>::iterator it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ResponseCacheConfig config_;
  mutable absl::Mutex mu_;
  std::list<Entry> lru_ ABSL_GUARDED_BY(mu_);  // front: most recently used
  absl::flat_hash_map<absl::string_view, std::list<Entry>::iterator> index_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t evictions_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace flotilla::gateway
