#include "gateway/response_cache.h"

namespace flotilla::gateway {

std::optional<std::string> ResponseCache::Get(absl::string_view key, TimeNs now) {
  absl::MutexLock lock(&mu_);
  auto it = index_.find(key);
  if (it == index_.end()) return std::nullopt;
  auto node = it->second;
  if (node->expires_at <= now) {
    EraseLocked(node);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, node);
  return node->value;
}

void ResponseCache::Put(std::string key, std::string value, TimeNs now) {
  Entry entry{std::move(key), std::move(value), now + config_.ttl};
  if (entry.value.size() > config_.max_entry_bytes || entry.Cost() > config_.max_bytes) return;
  absl::MutexLock lock(&mu_);
  if (auto it = index_.find(entry.key); it != index_.end()) EraseLocked(it->second);
  bytes_ += entry.Cost();
  lru_.push_front(std::move(entry));
  index_[lru_.front().key] = lru_.begin();
  while (bytes_ > config_.max_bytes && !lru_.empty()) {
    // Expired entries would go first in a perfect world; LRU order is close enough since
    // every entry has the same TTL.
    EraseLocked(std::prev(lru_.end()));
    ++evictions_;
  }
}

void ResponseCache::EraseLocked(std::list<Entry>::iterator it) {
  bytes_ -= it->Cost();
  index_.erase(absl::string_view(it->key));
  lru_.erase(it);
}

size_t ResponseCache::bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

size_t ResponseCache::entries() const {
  absl::MutexLock lock(&mu_);
  return lru_.size();
}

int64_t ResponseCache::evictions() const {
  absl::MutexLock lock(&mu_);
  return evictions_;
}

}  // namespace flotilla::gateway
