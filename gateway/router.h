// Choosing a worker for a request: pure policy over a snapshot of the pool (WorkerView), with the
// randomness injected. Policies:
//   RoundRobin      - in turn.
//   LeastLoad       - power of two choices: two random workers, the less loaded wins (outstanding
//                     requests per sequence slot, then KV usage).
//   PrefixAffinity  - consistent hashing of the prompt's leading tokens onto a ring of workers, so
//                     repeated prefixes meet the worker whose prefix cache holds them; with bounded
//                     load (Mirrokni et al.): a worker above load_factor x the mean is skipped along
//                     the ring, so one hot prefix cannot swamp a worker.
// Locality (orthogonal): prefer unsaturated workers in the caller's zone, then its region, then
// anywhere ("spill over when full").
// Thread-safety: Pick may be called from any thread (the round-robin counter and ring cache are
// locked inside).
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace flotilla::gateway {

using Rng = std::mt19937_64;

struct WorkerView {
  std::string id;  // stable identity, e.g. "host:port"
  std::string zone;
  std::string region;
  uint32_t running = 0;   // last reported
  uint32_t waiting = 0;   // last reported
  uint32_t max_num_seqs = 1;
  double kv_usage = 0;    // 0..1
  uint32_t inflight = 0;  // this gateway's open calls to the worker (always current)
  // This gateway's open calls when the report was taken: the report already counts those, so
  // only the change since then is added to it (other gateways' load stays as reported).
  uint32_t inflight_at_report = 0;
  bool available = true;  // healthy, serving, not draining, circuit not open

  // Requests on the worker as far as this gateway knows: the last report, corrected by what this
  // gateway sent or saw finish since; never less than our own open calls.
  uint32_t Outstanding() const {
    const int64_t est = static_cast<int64_t>(running + waiting) + static_cast<int64_t>(inflight) -
                        static_cast<int64_t>(inflight_at_report);
    return static_cast<uint32_t>(std::max<int64_t>(est, inflight));
  }
  // Full: every sequence slot busy and `queue_depth` more already waiting.
  bool Saturated(uint32_t queue_depth) const { return Outstanding() >= max_num_seqs + queue_depth; }
};

struct RoundRobin {};
struct LeastLoad {};
struct PrefixAffinity {
  double load_factor = 1.25;    // a worker may take up to this times the mean load
  uint32_t virtual_nodes = 64;  // ring points per worker
};
using RoutingPolicy = std::variant<RoundRobin, LeastLoad, PrefixAffinity>;

struct RouterConfig {
  RoutingPolicy policy = LeastLoad{};
  bool locality = true;          // prefer the caller's zone, then region, then anywhere
  uint32_t queue_depth = 2;      // requests a worker may hold waiting beyond its sequence slots
};

// What the router knows about a request.
struct RouteKey {
  std::optional<uint64_t> prefix_hash;  // hash of the leading prompt tokens
  std::string zone;                     // caller's zone ("" = unknown)
  std::string region;                   // caller's region ("" = derive from zone)
};

// Parses "round_robin", "least_load", "prefix_affinity".
std::optional<RoutingPolicy> ParseRoutingPolicy(const std::string& name);
std::string RoutingPolicyName(const RoutingPolicy& policy);

class Router {
 public:
  explicit Router(RouterConfig config) : config_(std::move(config)) {}

  // Index of the chosen worker in `workers`, skipping unavailable ones and those marked in
  // `excluded` (same length as workers, or empty). Prefers unsaturated workers; picks a
  // saturated one only when nothing else is left. nullopt when no worker is eligible.
  std::optional<size_t> Pick(std::span<const WorkerView> workers, const RouteKey& key,
                             const std::vector<bool>& excluded, Rng& rng);

  const RouterConfig& config() const { return config_; }

 private:
  size_t ChooseAmong(std::span<const WorkerView> workers, const std::vector<size_t>& candidates,
                     const RouteKey& key, Rng& rng);
  size_t LeastLoadAmong(std::span<const WorkerView> workers, const std::vector<size_t>& candidates, Rng& rng);
  size_t AffinityAmong(std::span<const WorkerView> workers, const std::vector<size_t>& candidates,
                       uint64_t hash, const PrefixAffinity& p, Rng& rng);

  const RouterConfig config_;
  absl::Mutex mu_;
  uint64_t rr_next_ ABSL_GUARDED_BY(mu_) = 0;
  // The hash ring over worker ids, rebuilt when the id set changes: (point, id).
  std::vector<std::pair<uint64_t, std::string>> ring_ ABSL_GUARDED_BY(mu_);
  uint64_t ring_ids_hash_ ABSL_GUARDED_BY(mu_) = 0;
};

// Hash of the first `n` token ids (all of them when fewer), for prefix affinity.
uint64_t PrefixHash(std::span<const int32_t> tokens, size_t n);

}  // namespace flotilla::gateway
