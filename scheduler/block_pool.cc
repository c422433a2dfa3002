#include "scheduler/block_pool.h"

#include <cassert>
#include <string>

#include "absl/strings/str_cat.h"

namespace flotilla::scheduler {

BlockPool::BlockPool(int num_blocks) {
  const int n = num_blocks > 0 ? num_blocks : 0;
  ref_.assign(n, 0);
  cached_.assign(n, 0);
  hash_.assign(n, BlockHash{});
  prev_.assign(n, -1);
  next_.assign(n, -1);
  free_.reserve(n);
  for (int b = n - 1; b >= 0; --b) free_.push_back(b);
  index_.reserve(n);
}

int32_t BlockPool::Allocate() {
  int32_t b = -1;
  if (!free_.empty()) {
    b = free_.back();
    free_.pop_back();
  } else if (lru_head_ >= 0) {
    b = lru_head_;
    LruRemove(b);
    index_.erase(hash_[b]);
    cached_[b] = 0;
  } else {
    return -1;
  }
  assert(ref_[b] == 0);
  ref_[b] = 1;
  return b;
}

void BlockPool::Ref(int32_t block) {
  if (ref_[block] == 0) {
    // Only evictable blocks can be revived: a free block has no content worth sharing.
    assert(cached_[block]);
    LruRemove(block);
  }
  ++ref_[block];
}

void BlockPool::Unref(int32_t block) {
  assert(ref_[block] > 0);
  if (--ref_[block] > 0) return;
  if (cached_[block]) {
    LruPushBack(block);
  } else {
    free_.push_back(block);
  }
}

int32_t BlockPool::Find(const BlockHash& hash) const {
  auto it = index_.find(hash);
  return it == index_.end() ? -1 : it->second;
}

bool BlockPool::Register(int32_t block, const BlockHash& hash) {
  assert(ref_[block] > 0);
  if (cached_[block]) return false;
  if (!index_.try_emplace(hash, block).second) return false;
  cached_[block] = 1;
  hash_[block] = hash;
  return true;
}

void BlockPool::LruPushBack(int32_t b) {
  prev_[b] = lru_tail_;
  next_[b] = -1;
  if (lru_tail_ >= 0) {
    next_[lru_tail_] = b;
  } else {
    lru_head_ = b;
  }
  lru_tail_ = b;
  ++lru_size_;
}

void BlockPool::LruRemove(int32_t b) {
  if (prev_[b] >= 0) {
    next_[prev_[b]] = next_[b];
  } else {
    lru_head_ = next_[b];
  }
  if (next_[b] >= 0) {
    prev_[next_[b]] = prev_[b];
  } else {
    lru_tail_ = prev_[b];
  }
  prev_[b] = next_[b] = -1;
  --lru_size_;
}

absl::Status BlockPool::CheckInvariants(std::span<const int> expected_refs) const {
  const int n = num_blocks();
  if (static_cast<int>(expected_refs.size()) != n) {
    return absl::InternalError("expected_refs has the wrong size");
  }
  // 0: unseen, 1: on the free list, 2: on the LRU list.
  std::vector<uint8_t> where(n, 0);
  for (int32_t b : free_) {
    if (b < 0 || b >= n) return absl::InternalError(absl::StrCat("free list holds block id ", b));
    if (where[b]) return absl::InternalError(absl::StrCat("block ", b, " is on the free list twice"));
    where[b] = 1;
  }
  int lru_seen = 0;
  for (int32_t b = lru_head_, prev = -1; b >= 0; prev = b, b = next_[b]) {
    if (where[b]) return absl::InternalError(absl::StrCat("block ", b, " is on two lists"));
    if (prev_[b] != prev) return absl::InternalError(absl::StrCat("LRU back link of block ", b, " is broken"));
    where[b] = 2;
    if (++lru_seen > n) return absl::InternalError("LRU list has a cycle");
  }
  if (lru_seen != lru_size_) {
    return absl::InternalError(absl::StrCat("LRU list has ", lru_seen, " blocks, its size says ", lru_size_));
  }
  int cached = 0;
  for (int b = 0; b < n; ++b) {
    if (ref_[b] != expected_refs[b]) {
      return absl::InternalError(absl::StrCat("block ", b, " has ", ref_[b], " references; block tables hold it ",
                                              expected_refs[b], " times"));
    }
    const bool unreferenced = ref_[b] == 0;
    if (unreferenced && where[b] == 0) return absl::InternalError(absl::StrCat("block ", b, " leaked"));
    if (!unreferenced && where[b] != 0) return absl::InternalError(absl::StrCat("block ", b, " is in use and listed free"));
    if (where[b] == 1 && cached_[b]) return absl::InternalError(absl::StrCat("free block ", b, " has cached content"));
    if (where[b] == 2 && !cached_[b]) return absl::InternalError(absl::StrCat("evictable block ", b, " has no content"));
    if (cached_[b]) {
      ++cached;
      if (Find(hash_[b]) != b) return absl::InternalError(absl::StrCat("cached block ", b, " is missing from the index"));
    }
  }
  if (cached != static_cast<int>(index_.size())) {
    return absl::InternalError(absl::StrCat("index has ", index_.size(), " entries for ", cached, " cached blocks"));
  }
  return absl::OkStatus();
}

}  // namespace flotilla::scheduler
