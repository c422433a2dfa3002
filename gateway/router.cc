#include "gateway/router.h"

#include <xxhash.h>

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace flotilla::gateway {

std::optional<RoutingPolicy> ParseRoutingPolicy(const std::string& name) {
  if (name == "round_robin") return RoundRobin{};
  if (name == "least_load") return LeastLoad{};
  if (name == "prefix_affinity") return PrefixAffinity{};
  return std::nullopt;
}

std::string RoutingPolicyName(const RoutingPolicy& policy) {
  struct Name {
    std::string operator()(const RoundRobin&) const { return "round_robin"; }
    std::string operator()(const LeastLoad&) const { return "least_load"; }
    std::string operator()(const PrefixAffinity&) const { return "prefix_affinity"; }
  };
  return std::visit(Name{}, policy);
}

uint64_t PrefixHash(std::span<const int32_t> tokens, size_t n) {
  n = std::min(n, tokens.size());
  return XXH3_64bits(tokens.data(), n * sizeof(int32_t));
}

std::optional<size_t> Router::Pick(std::span<const WorkerView> workers, const RouteKey& key,
                                   const std::vector<bool>& excluded, Rng& rng) {
  std::vector<size_t> eligible;
  eligible.reserve(workers.size());
  for (size_t i = 0; i < workers.size(); ++i) {
    if (!workers[i].available) continue;
    if (!excluded.empty() && excluded[i]) continue;
    eligible.push_back(i);
  }
  if (eligible.empty()) return std::nullopt;

  // Tiers: the caller's zone, its region, everyone. Each tier is tried with its unsaturated
  // members only; a full tier spills into the next.
  std::vector<std::vector<size_t>> tiers;
  if (config_.locality && (!key.zone.empty() || !key.region.empty())) {
    std::string region = key.region;
    if (region.empty()) {
      for (const auto& w : workers) {
        if (w.zone == key.zone && !w.region.empty()) {
          region = w.region;
          break;
        }
      }
    }
    std::vector<size_t> zone_tier, region_tier;
    for (size_t i : eligible) {
      if (!key.zone.empty() && workers[i].zone == key.zone) zone_tier.push_back(i);
      if (!region.empty() && workers[i].region == region) region_tier.push_back(i);
    }
    if (!zone_tier.empty()) tiers.push_back(std::move(zone_tier));
    if (!region_tier.empty()) tiers.push_back(std::move(region_tier));
  }
  tiers.push_back(eligible);

  std::vector<size_t> open;
  for (const auto& tier : tiers) {
    open.clear();
    for (size_t i : tier) {
      if (!workers[i].Saturated(config_.queue_depth)) open.push_back(i);
    }
    if (!open.empty()) return ChooseAmong(workers, open, key, rng);
  }
  // Everything is saturated; admission decided to send anyway (e.g. a queued request whose turn
  // came): the least loaded of all is the best place to wait.
  return LeastLoadAmong(workers, eligible, rng);
}

size_t Router::ChooseAmong(std::span<const WorkerView> workers, const std::vector<size_t>& candidates,
                           const RouteKey& key, Rng& rng) {
  if (candidates.size() == 1) return candidates[0];
  if (std::holds_alternative<RoundRobin>(config_.policy)) {
    uint64_t n;
    {
      absl::MutexLock lock(&mu_);
      n = rr_next_++;
    }
    return candidates[n % candidates.size()];
  }
  if (const auto* p = std::get_if<PrefixAffinity>(&config_.policy); p && key.prefix_hash) {
    return AffinityAmong(workers, candidates, *key.prefix_hash, *p, rng);
  }
  return LeastLoadAmong(workers, candidates, rng);
}

size_t Router::LeastLoadAmong(std::span<const WorkerView> workers, const std::vector<size_t>& candidates,
                              Rng& rng) {
  if (candidates.size() == 1) return candidates[0];
  std::uniform_int_distribution<size_t> dist(0, candidates.size() - 1);
  size_t a = dist(rng);
  size_t b = dist(rng);
  while (b == a) b = dist(rng);
  const WorkerView& wa = workers[candidates[a]];
  const WorkerView& wb = workers[candidates[b]];
  auto load = [](const WorkerView& w) {
    return static_cast<double>(w.Outstanding()) / std::max<uint32_t>(1, w.max_num_seqs);
  };
  const double la = load(wa), lb = load(wb);
  if (la != lb) return la < lb ? candidates[a] : candidates[b];
  if (wa.kv_usage != wb.kv_usage) return wa.kv_usage < wb.kv_usage ? candidates[a] : candidates[b];
  return candidates[a];  // a and b are already a random pair
}

size_t Router::AffinityAmong(std::span<const WorkerView> workers, const std::vector<size_t>& candidates,
                             uint64_t hash, const PrefixAffinity& p, Rng& rng) {
  uint64_t total = 0;
  absl::flat_hash_map<absl::string_view, size_t> by_id;
  for (size_t i : candidates) {
    total += workers[i].Outstanding();
    by_id[workers[i].id] = i;
  }
  // Bounded load: nobody takes more than ceil(c * (load + this request) / n).
  const double bound = std::ceil(p.load_factor * static_cast<double>(total + 1) / static_cast<double>(candidates.size()));
  // The ring covers every worker of the pool (not just the candidates), so a worker leaving the
  // candidate set for a moment does not move other prefixes.
  uint64_t ids_hash = 0;
  for (const auto& w : workers) ids_hash = XXH3_64bits_withSeed(w.id.data(), w.id.size(), ids_hash + 0x9e3779b97f4a7c15ULL);
  {
    absl::MutexLock lock(&mu_);
    if (ids_hash != ring_ids_hash_ || ring_.empty()) {
      ring_.clear();
      for (const auto& w : workers) {
        for (uint32_t v = 0; v < p.virtual_nodes; ++v) {
          ring_.emplace_back(XXH3_64bits_withSeed(w.id.data(), w.id.size(), v), w.id);
        }
      }
      std::sort(ring_.begin(), ring_.end());
      ring_ids_hash_ = ids_hash;
    }
    auto start = std::lower_bound(ring_.begin(), ring_.end(), hash,
                                  [](const auto& point, uint64_t h) { return point.first < h; });
    const size_t first = static_cast<size_t>(start - ring_.begin());
    for (size_t step = 0; step < ring_.size(); ++step) {
      const auto& point = ring_[(first + step) % ring_.size()];
      auto it = by_id.find(point.second);
      if (it == by_id.end()) continue;
      if (static_cast<double>(workers[it->second].Outstanding()) + 1 <= bound) return it->second;
    }
  }
  return LeastLoadAmong(workers, candidates, rng);
}

}  // namespace flotilla::gateway
