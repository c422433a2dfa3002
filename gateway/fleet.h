// The set of workers this gateway knows, grouped into per-model pools. Discovery sources report
// full address lists; the fleet starts a WorkerClient for each new address and shuts down the
// ones no source lists any more (their open requests finish). A worker joins its model's pool
// once it has told us its model (Info) and vocabulary.
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "gateway/chat_template.h"
#include "gateway/worker_client.h"

namespace flotilla::gateway {

// What the gateway knows about a model, from its first ready worker (and configuration).
struct ModelFacts {
  std::string name;
  uint32_t context_length = 0;
  std::string quantization;
  uint32_t block_size = 0;
  ChatTemplateFamily chat_family = ChatTemplateFamily::kPlain;
  std::shared_ptr<const PromptEncoder> encoder;
};

// A consistent picture of one model's pool at one moment.
struct PoolSnapshot {
  std::shared_ptr<const ModelFacts> facts;
  std::vector<std::shared_ptr<WorkerClient>> workers;
  std::vector<WorkerView> views;  // same order as workers
  double prefill_tokens_per_s = 0;  // best reported
};

struct ModelSummary {
  std::string name;
  uint32_t context_length = 0;
  std::string quantization;
  uint32_t workers = 0;
  uint32_t healthy_workers = 0;
};

class Fleet {
 public:
  struct Options {
    WorkerClientOptions worker;
    std::shared_ptr<grpc::ChannelCredentials> credentials;  // insecure or mTLS
    std::map<std::string, std::string> chat_templates;      // model -> family (configuration)
    std::string default_chat_template;                      // for models not listed ("" = detect)
    std::vector<std::string> models;                        // served even with no ready worker
  };

  Fleet(Options options, TimerThread* timer, const Clock* clock);
  ~Fleet();

  // Called when a worker of `model` changed (load, health); `model` is "" when not yet known.
  void SetOnChange(std::function<void(const std::string& model)> cb);
  void SetOnEjected(std::function<void(const std::string& worker)> cb);

  // Replaces the list of addresses that `source` reports.
  void SetEndpoints(const std::string& source, const std::vector<std::string>& addresses);

  // Nullopt when no ready worker serves `model`.
  std::optional<PoolSnapshot> Snapshot(const std::string& model) const;
  // True for a model configured in Options::models or ever seen on a ready worker: one that
  // exists although no worker of it may be ready now.
  bool IsKnownModel(const std::string& model) const;
  // What was learnt of `model` from its workers, kept after they left (null if never seen).
  std::shared_ptr<const ModelFacts> KnownFacts(const std::string& model) const;
  // Every known model; those without ready workers have workers == 0.
  std::vector<ModelSummary> Models() const;
  bool AnyHealthy() const;
  size_t num_workers() const;
  // Every client (for tests and status pages).
  std::vector<std::shared_ptr<WorkerClient>> Workers() const;

  void Shutdown();

 private:
  // Adds and removes clients to match by_source_; returns the removed ones, which the caller
  // shuts down after releasing mu_ (their hooks, which Shutdown waits for, take mu_).
  std::vector<std::shared_ptr<WorkerClient>> Reconcile() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<const PromptEncoder> FindEncoder(const worker::v1::InfoResponse& info);
  std::shared_ptr<const ModelFacts> FactsFor(const WorkerStatic& s) const;

  const Options options_;
  TimerThread* const timer_;
  const Clock* const clock_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::vector<std::string>> by_source_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<WorkerClient>> clients_ ABSL_GUARDED_BY(mu_);
  std::function<void(const std::string&)> on_change_ ABSL_GUARDED_BY(mu_);
  std::function<void(const std::string&)> on_ejected_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;

  // Encoders and facts are shared by every worker of a model (keyed by model name and vocab size).
  mutable absl::Mutex facts_mu_;
  mutable std::map<std::string, std::shared_ptr<const PromptEncoder>> encoders_ ABSL_GUARDED_BY(facts_mu_);
  mutable std::map<std::string, std::shared_ptr<const ModelFacts>> facts_ ABSL_GUARDED_BY(facts_mu_);
};

}  // namespace flotilla::gateway
