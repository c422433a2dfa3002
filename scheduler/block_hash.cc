#include "scheduler/block_hash.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack: no allocation per block
#include <xxhash.h>

namespace flotilla::scheduler {
namespace {

BlockHash FromXxh(XXH128_hash_t h) { return BlockHash{h.low64, h.high64}; }

// Salt inputs start with a tag byte so that no tenant name can produce the shared salt's input.
constexpr char kTenantTag = 't';
constexpr char kSharedTag = 's';

}  // namespace

BlockHash TenantSalt(std::string_view tenant) {
  XXH3_state_t state;
  XXH3_128bits_reset(&state);
  XXH3_128bits_update(&state, &kTenantTag, 1);
  XXH3_128bits_update(&state, tenant.data(), tenant.size());
  return FromXxh(XXH3_128bits_digest(&state));
}

BlockHash SharedSalt() { return FromXxh(XXH3_128bits(&kSharedTag, 1)); }

BlockHash HashBlock(const BlockHash& parent, const BlockHash& salt, std::span<const int32_t> tokens) {
  XXH3_state_t state;
  XXH3_128bits_reset(&state);
  const uint64_t head[4] = {parent.lo, parent.hi, salt.lo, salt.hi};
  XXH3_128bits_update(&state, head, sizeof(head));
  XXH3_128bits_update(&state, tokens.data(), tokens.size_bytes());
  return FromXxh(XXH3_128bits_digest(&state));
}

void ExtendBlockHashes(std::span<const int32_t> tokens, int block_size, const BlockHash& tenant_salt,
                       int shared_prefix_tokens, std::vector<BlockHash>* hashes) {
  const size_t full = tokens.size() / static_cast<size_t>(block_size);
  if (hashes->size() >= full) return;
  const BlockHash shared = SharedSalt();
  for (size_t i = hashes->size(); i < full; ++i) {
    const BlockHash& parent = i == 0 ? kRootBlockHash : (*hashes)[i - 1];
    const bool in_shared = static_cast<int64_t>(i + 1) * block_size <= shared_prefix_tokens;
    hashes->push_back(HashBlock(parent, in_shared ? shared : tenant_salt, tokens.subspan(i * block_size, block_size)));
  }
}

}  // namespace flotilla::scheduler
