#include "gateway/router.h"

#include <gtest/gtest.h>

#include <map>

namespace flotilla::gateway {
namespace {

std::vector<WorkerView> Pool(int n, uint32_t slots = 4) {
  std::vector<WorkerView> ws(n);
  for (int i = 0; i < n; ++i) {
    ws[i].id = "w" + std::to_string(i);
    ws[i].max_num_seqs = slots;
  }
  return ws;
}

TEST(RouterTest, RoundRobinCyclesAndSkipsUnavailable) {
  Router r({RoundRobin{}, false, 2});
  Rng rng(1);
  auto ws = Pool(3);
  ws[1].available = false;
  std::map<size_t, int> hits;
  for (int i = 0; i < 10; ++i) hits[*r.Pick(ws, {}, {}, rng)]++;
  EXPECT_EQ(hits.count(1), 0u);
  EXPECT_EQ(hits[0], 5);
  EXPECT_EQ(hits[2], 5);
}

TEST(RouterTest, NothingEligible) {
  Router r({LeastLoad{}, false, 2});
  Rng rng(1);
  auto ws = Pool(2);
  EXPECT_FALSE(r.Pick(ws, {}, {true, true}, rng).has_value());
  ws[0].available = ws[1].available = false;
  EXPECT_FALSE(r.Pick(ws, {}, {}, rng).has_value());
  EXPECT_FALSE(r.Pick({}, {}, {}, rng).has_value());
}

TEST(RouterTest, LeastLoadPrefersLighterOfTwo) {
  Router r({LeastLoad{}, false, 100});
  Rng rng(7);
  auto ws = Pool(2, 8);
  ws[0].running = 6;
  ws[1].running = 1;
  for (int i = 0; i < 50; ++i) EXPECT_EQ(*r.Pick(ws, {}, {}, rng), 1u);
  // Equal queue pressure: KV usage decides.
  ws[0].running = ws[1].running = 2;
  ws[0].kv_usage = 0.1;
  ws[1].kv_usage = 0.9;
  for (int i = 0; i < 50; ++i) EXPECT_EQ(*r.Pick(ws, {}, {}, rng), 0u);
}

TEST(RouterTest, LeastLoadUsesOwnInflightWhenReportsLag) {
  Router r({LeastLoad{}, false, 100});
  Rng rng(3);
  auto ws = Pool(2, 8);
  ws[0].inflight = 5;  // report still says 0, but we sent 5
  for (int i = 0; i < 20; ++i) EXPECT_EQ(*r.Pick(ws, {}, {}, rng), 1u);
}

TEST(RouterTest, OutstandingCorrectsTheReportByOwnChangesSinceIt) {
  WorkerView w;
  w.running = 8;  // all eight ours when reported...
  w.inflight_at_report = 8;
  w.inflight = 6;  // ...and two have finished since
  EXPECT_EQ(w.Outstanding(), 6u);
  w.running = 10;  // another gateway's load shows only in the report
  w.inflight_at_report = 4;
  w.inflight = 5;
  EXPECT_EQ(w.Outstanding(), 11u);
  w.running = 0;  // a stale report never hides our own open calls
  w.inflight_at_report = 9;
  w.inflight = 3;
  EXPECT_EQ(w.Outstanding(), 3u);
}

TEST(RouterTest, LeastLoadSpreadsOverManyWorkers) {
  Router r({LeastLoad{}, false, 100});
  Rng rng(11);
  auto ws = Pool(8, 4);
  for (int i = 0; i < 800; ++i) {
    size_t w = *r.Pick(ws, {}, {}, rng);
    ws[w].inflight++;
  }
  uint32_t lo = 1000, hi = 0;
  for (const auto& w : ws) {
    lo = std::min(lo, w.inflight);
    hi = std::max(hi, w.inflight);
  }
  // Power of two choices keeps the spread tight (max - min is O(log log n)).
  EXPECT_LE(hi - lo, 3u);
}

TEST(RouterTest, ExcludedWorkersAreSkipped) {
  Router r({LeastLoad{}, false, 2});
  Rng rng(5);
  auto ws = Pool(3);
  for (int i = 0; i < 30; ++i) EXPECT_EQ(*r.Pick(ws, {}, {true, false, true}, rng), 1u);
}

TEST(RouterTest, PrefixAffinityIsStickyAndSpreadsDistinctPrefixes) {
  Router r({PrefixAffinity{}, false, 8});
  Rng rng(1);
  auto ws = Pool(4, 8);
  std::map<size_t, int> owners;
  for (uint64_t p = 0; p < 200; ++p) {
    RouteKey key;
    std::vector<int32_t> toks = {1, static_cast<int32_t>(p), 7, 9};
    key.prefix_hash = PrefixHash(toks, 64);
    size_t first = *r.Pick(ws, key, {}, rng);
    for (int rep = 0; rep < 5; ++rep) EXPECT_EQ(*r.Pick(ws, key, {}, rng), first);
    owners[first]++;
  }
  EXPECT_EQ(owners.size(), 4u);
  for (const auto& [w, n] : owners) EXPECT_GT(n, 20) << "worker " << w;  // roughly even: 50 each
}

TEST(RouterTest, PrefixAffinityBoundedLoadSpillsHotPrefix) {
  Router r({PrefixAffinity{1.25, 64}, false, 100});
  Rng rng(1);
  auto ws = Pool(4, 100);
  RouteKey key;
  key.prefix_hash = 12345;
  std::map<size_t, int> got;
  // One hot prefix, requests stay open: the owner takes at most ceil(1.25 * mean).
  for (int i = 0; i < 40; ++i) {
    size_t w = *r.Pick(ws, key, {}, rng);
    ws[w].inflight++;
    got[w]++;
  }
  EXPECT_GT(got.size(), 1u);
  uint32_t total = 40;
  for (const auto& w : ws) {
    EXPECT_LE(w.inflight, static_cast<uint32_t>(std::ceil(1.25 * total / 4)) + 1) << w.id;
  }
}

TEST(RouterTest, PrefixAffinityOnlyMovesPrefixesOfARemovedWorker) {
  Router r({PrefixAffinity{}, false, 8});
  Rng rng(1);
  auto ws = Pool(5, 8);
  std::vector<size_t> before;
  for (uint64_t p = 0; p < 300; ++p) {
    RouteKey key;
    key.prefix_hash = p * 0x9e3779b97f4a7c15ULL;
    before.push_back(*r.Pick(ws, key, {}, rng));
  }
  ws[2].available = false;  // still in the pool, e.g. ejected
  int moved_others = 0;
  for (uint64_t p = 0; p < 300; ++p) {
    RouteKey key;
    key.prefix_hash = p * 0x9e3779b97f4a7c15ULL;
    size_t now = *r.Pick(ws, key, {}, rng);
    if (before[p] != 2 && now != before[p]) ++moved_others;
  }
  EXPECT_EQ(moved_others, 0);
}

TEST(RouterTest, LocalityPrefersZoneThenRegionThenSpills) {
  Router r({LeastLoad{}, true, 0});
  Rng rng(2);
  auto ws = Pool(4, 2);
  ws[0].zone = "eu-1a"; ws[0].region = "eu";
  ws[1].zone = "eu-1b"; ws[1].region = "eu";
  ws[2].zone = "us-1a"; ws[2].region = "us";
  ws[3].zone = "us-1b"; ws[3].region = "us";
  RouteKey key;
  key.zone = "eu-1a";
  for (int i = 0; i < 20; ++i) EXPECT_EQ(*r.Pick(ws, key, {}, rng), 0u);
  ws[0].running = 2;  // zone full (queue_depth 0): spill within the region
  for (int i = 0; i < 20; ++i) EXPECT_EQ(*r.Pick(ws, key, {}, rng), 1u);
  ws[1].running = 2;  // region full: anywhere
  for (int i = 0; i < 20; ++i) {
    size_t w = *r.Pick(ws, key, {}, rng);
    EXPECT_TRUE(w == 2 || w == 3);
  }
  ws[2].running = ws[3].running = 2;  // everything full: least loaded of all
  EXPECT_TRUE(r.Pick(ws, key, {}, rng).has_value());
  // Without a zone the caller gets the whole pool.
  ws[0].running = ws[1].running = 0;
  std::map<size_t, int> hits;
  for (int i = 0; i < 40; ++i) hits[*r.Pick(ws, {}, {}, rng)]++;
  EXPECT_EQ(hits.size(), 2u);
}

TEST(RouterTest, LocalityOffIgnoresZone) {
  Router r({RoundRobin{}, false, 4});
  Rng rng(2);
  auto ws = Pool(2);
  ws[0].zone = "a";
  ws[1].zone = "b";
  RouteKey key;
  key.zone = "a";
  std::map<size_t, int> hits;
  for (int i = 0; i < 10; ++i) hits[*r.Pick(ws, key, {}, rng)]++;
  EXPECT_EQ(hits[0], 5);
  EXPECT_EQ(hits[1], 5);
}

TEST(RouterTest, SaturatedWorkersAvoidedWhileOthersHaveRoom) {
  Router r({RoundRobin{}, false, 1});
  Rng rng(2);
  auto ws = Pool(3, 2);
  ws[0].running = 2;
  ws[0].waiting = 1;  // 3 >= 2 + 1: saturated
  for (int i = 0; i < 20; ++i) EXPECT_NE(*r.Pick(ws, {}, {}, rng), 0u);
}

TEST(RouterTest, PolicyNames) {
  EXPECT_EQ(RoutingPolicyName(*ParseRoutingPolicy("prefix_affinity")), "prefix_affinity");
  EXPECT_EQ(RoutingPolicyName(*ParseRoutingPolicy("least_load")), "least_load");
  EXPECT_EQ(RoutingPolicyName(*ParseRoutingPolicy("round_robin")), "round_robin");
  EXPECT_FALSE(ParseRoutingPolicy("random").has_value());
}

}  // namespace
}  // namespace flotilla::gateway
