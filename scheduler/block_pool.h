// The KV block pool: fixed-size blocks named by id, reference counts, and the prefix cache's index.
//
// Every block is in exactly one of three states:
//   free       no references, no cached content; on the free list
//   evictable  no references, content registered under a BlockHash; on the LRU list
//   in use     one or more references (a sequence's block table holds it); may also be registered
// Allocate() takes a free block first and only then evicts the least recently used evictable
// block (dropping its hash), so cached prefixes live as long as memory allows. Blocks become
// evictable in the order they are released; callers release a sequence's blocks last block first
// so that a prefix's tail is evicted before its head (the head is what other prompts share).
// Not thread-safe; owned by the Scheduler.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "scheduler/block_hash.h"

namespace flotilla::scheduler {

class BlockPool {
 public:
  explicit BlockPool(int num_blocks);

  int num_blocks() const { return static_cast<int>(ref_.size()); }
  // Blocks with no reference: free plus evictable. This is what Allocate() can hand out.
  int num_free() const { return static_cast<int>(free_.size()) + lru_size_; }
  int num_evictable() const { return lru_size_; }
  int num_cached() const { return static_cast<int>(index_.size()); }
  int ref_count(int32_t block) const { return ref_[block]; }
  bool is_cached(int32_t block) const { return cached_[block] != 0; }
  // The content hash of a cached block.
  const BlockHash& hash(int32_t block) const { return hash_[block]; }

  // A block with one reference, or -1 when every block is in use.
  int32_t Allocate();
  // Adds a reference to a block that is in use or evictable (a prefix-cache hit).
  void Ref(int32_t block);
  // Drops a reference; at zero the block becomes evictable (most recently used) or free.
  void Unref(int32_t block);

  // The block registered under `hash`, or -1.
  int32_t Find(const BlockHash& hash) const;
  // Registers an in-use block's content. False (and no change) when the block is registered
  // already or another block holds the same content; the caller then just keeps its private copy.
  bool Register(int32_t block, const BlockHash& hash);

  // `expected_refs[b]` is how many block tables hold b; checks that counts, lists and the index agree.
  absl::Status CheckInvariants(std::span<const int> expected_refs) const;

 private:
  void LruPushBack(int32_t block);
  void LruRemove(int32_t block);

  std::vector<int> ref_;
  std::vector<uint8_t> cached_;
  std::vector<BlockHash> hash_;  // valid where cached_
  std::vector<int32_t> free_;    // stack; the lowest ids come out first on a fresh pool
  // Intrusive doubly linked LRU list of evictable blocks: head is the next to evict.
  std::vector<int32_t> prev_;
  std::vector<int32_t> next_;
  int32_t lru_head_ = -1;
  int32_t lru_tail_ = -1;
  int lru_size_ = 0;
  absl::flat_hash_map<BlockHash, int32_t> index_;
};

}  // namespace flotilla::scheduler
