// Content identity of full KV blocks for the prefix cache.
//
// A full block is named by a 128-bit hash chain: H(parent block's hash, salt, this block's tokens).
// Two blocks get the same hash only when every token before them and in them is equal and they
// carry the same salt, so a hit reuses KV that was computed from exactly the same prefix. The salt
// keeps tenants apart: it is the tenant's own salt, except for blocks that lie entirely inside
// the prefix the operator marked shared, which take one common salt. 128 bits make an accidental
// collision (which would serve one sequence another's KV) negligible, so hits compare no tokens.
// Pure functions; thread-compatible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace flotilla::scheduler {

struct BlockHash {
  uint64_t lo = 0;
  uint64_t hi = 0;

  friend bool operator==(const BlockHash& a, const BlockHash& b) { return a.lo == b.lo && a.hi == b.hi; }
  friend bool operator!=(const BlockHash& a, const BlockHash& b) { return !(a == b); }
  template <typename H>
  friend H AbslHashValue(H h, const BlockHash& b) {
    return H::combine(std::move(h), b.lo, b.hi);
  }
};

// The parent of a sequence's first block.
inline constexpr BlockHash kRootBlockHash{};

// Salt for blocks private to `tenant`. Never equal to SharedSalt() for any tenant name.
BlockHash TenantSalt(std::string_view tenant);
// Salt for blocks inside an operator-marked shared prefix; the same for every tenant.
BlockHash SharedSalt();

// One link of the chain.
BlockHash HashBlock(const BlockHash& parent, const BlockHash& salt, std::span<const int32_t> tokens);

// Appends to `hashes` the hashes of the full blocks of `tokens` it lacks (it must hold the hashes
// of a prefix of these same tokens). Block i takes SharedSalt() when (i + 1) * block_size <=
// shared_prefix_tokens, else `tenant_salt`.
void ExtendBlockHashes(std::span<const int32_t> tokens, int block_size, const BlockHash& tenant_salt,
                       int shared_prefix_tokens, std::vector<BlockHash>* hashes);

}  // namespace flotilla::scheduler
