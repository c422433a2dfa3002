#include "gateway/fleet.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "spdlog/spdlog.h"

namespace flotilla::gateway {
namespace {

std::string EncoderKey(const worker::v1::InfoResponse& info) {
  return absl::StrCat(info.model(), "|", info.vocab_size(), "|", info.bos_token_id(), "|", info.eos_token_id());
}

}  // namespace

Fleet::Fleet(Options options, TimerThread* timer, const Clock* clock)
    : options_(std::move(options)), timer_(timer), clock_(clock) {}

Fleet::~Fleet() { Shutdown(); }

void Fleet::SetOnChange(std::function<void(const std::string& model)> cb) {
  absl::MutexLock lock(&mu_);
  on_change_ = std::move(cb);
}

void Fleet::SetOnEjected(std::function<void(const std::string& worker)> cb) {
  absl::MutexLock lock(&mu_);
  on_ejected_ = std::move(cb);
}

void Fleet::SetEndpoints(const std::string& source, const std::vector<std::string>& addresses) {
  std::vector<std::shared_ptr<WorkerClient>> removed;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return;
    by_source_[source] = addresses;
    removed = Reconcile();
  }
  for (auto& c : removed) c->Shutdown();
}

std::vector<std::shared_ptr<WorkerClient>> Fleet::Reconcile() {
  std::vector<std::shared_ptr<WorkerClient>> removed;
  std::set<std::string> want;
  for (const auto& [source, list] : by_source_) want.insert(list.begin(), list.end());
  for (auto it = clients_.begin(); it != clients_.end();) {
    if (!want.count(it->first)) {
      SPDLOG_INFO("worker {} removed by discovery", it->first);
      removed.push_back(std::move(it->second));
      it = clients_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& address : want) {
    if (clients_.count(address)) continue;
    SPDLOG_INFO("worker {} added by discovery", address);
    WorkerClient::Hooks hooks;
    hooks.on_change = [this](WorkerClient* c) {
      std::function<void(const std::string&)> cb;
      {
        absl::MutexLock lock(&mu_);
        cb = on_change_;
      }
      auto s = c->statics();
      // Remember the model once its facts are known, so that it stays known (a wait or a 503,
      // not a 404) after its last worker leaves. Once per model: this hook also runs on every
      // load report.
      if (s && !KnownFacts(s->info.model())) FactsFor(*s);
      if (!cb) return;
      cb(s ? s->info.model() : std::string());
    };
    hooks.find_encoder = [this](const worker::v1::InfoResponse& info) { return FindEncoder(info); };
    hooks.on_ejected = [this](const std::string& worker) {
      std::function<void(const std::string&)> cb;
      {
        absl::MutexLock lock(&mu_);
        cb = on_ejected_;
      }
      if (cb) cb(worker);
    };
    auto client = std::make_shared<WorkerClient>(address, options_.credentials, options_.worker, timer_, clock_,
                                                 std::move(hooks));
    clients_[address] = client;
    client->Start();
  }
  return removed;
}

std::shared_ptr<const PromptEncoder> Fleet::FindEncoder(const worker::v1::InfoResponse& info) {
  absl::MutexLock lock(&facts_mu_);
  auto it = encoders_.find(EncoderKey(info));
  return it == encoders_.end() ? nullptr : it->second;
}

std::shared_ptr<const ModelFacts> Fleet::FactsFor(const WorkerStatic& s) const {
  const std::string key = EncoderKey(s.info);
  absl::MutexLock lock(&facts_mu_);
  encoders_.emplace(key, s.encoder);
  auto it = facts_.find(s.info.model());
  if (it != facts_.end() && it->second->encoder == s.encoder) return it->second;
  auto f = std::make_shared<ModelFacts>();
  f->name = s.info.model();
  f->context_length = s.info.context_length();
  f->quantization = s.info.quantization();
  f->block_size = s.info.block_size();
  auto cfg = options_.chat_templates.find(f->name);
  std::string configured = cfg != options_.chat_templates.end() ? cfg->second : options_.default_chat_template;
  f->chat_family = ChooseChatTemplateFamily(configured, s.info.chat_template_family(), s.info.chat_template());
  f->encoder = s.encoder;
  if (it == facts_.end()) {
    SPDLOG_INFO("model {}: context {}, chat template {}", f->name, f->context_length,
                ChatTemplateFamilyName(f->chat_family));
  }
  facts_[f->name] = f;
  return f;
}

std::optional<PoolSnapshot> Fleet::Snapshot(const std::string& model) const {
  std::vector<std::shared_ptr<WorkerClient>> clients;
  {
    absl::MutexLock lock(&mu_);
    clients.reserve(clients_.size());
    for (const auto& [addr, c] : clients_) clients.push_back(c);
  }
  PoolSnapshot snap;
  const TimeNs now = clock_->Now();
  for (auto& c : clients) {
    auto s = c->statics();
    if (!s || s->info.model() != model) continue;
    if (!snap.facts) snap.facts = FactsFor(*s);
    snap.views.push_back(c->View(now));
    bool fresh = false;
    auto load = c->Load(&fresh);
    if (fresh) snap.prefill_tokens_per_s = std::max(snap.prefill_tokens_per_s, load.prefill_tokens_per_second());
    snap.workers.push_back(std::move(c));
  }
  if (snap.workers.empty()) return std::nullopt;
  return snap;
}

bool Fleet::IsKnownModel(const std::string& model) const {
  if (std::find(options_.models.begin(), options_.models.end(), model) != options_.models.end()) return true;
  absl::MutexLock lock(&facts_mu_);
  return facts_.count(model) > 0;
}

std::shared_ptr<const ModelFacts> Fleet::KnownFacts(const std::string& model) const {
  absl::MutexLock lock(&facts_mu_);
  auto it = facts_.find(model);
  return it == facts_.end() ? nullptr : it->second;
}

std::vector<ModelSummary> Fleet::Models() const {
  std::vector<std::shared_ptr<WorkerClient>> clients = Workers();
  std::map<std::string, ModelSummary> by_model;
  const TimeNs now = clock_->Now();
  for (auto& c : clients) {
    auto s = c->statics();
    if (!s) continue;
    ModelSummary& m = by_model[s->info.model()];
    m.name = s->info.model();
    m.context_length = s->info.context_length();
    m.quantization = s->info.quantization();
    ++m.workers;
    if (c->View(now).available) ++m.healthy_workers;
  }
  // Known models without a ready worker (scaled to zero, or being replaced) are still listed.
  auto add_known = [&](const std::string& name, const ModelFacts* f) {
    if (by_model.count(name)) return;
    ModelSummary& m = by_model[name];
    m.name = name;
    if (f) {
      m.context_length = f->context_length;
      m.quantization = f->quantization;
    }
  };
  {
    absl::MutexLock lock(&facts_mu_);
    for (const auto& [name, f] : facts_) add_known(name, f.get());
  }
  for (const auto& name : options_.models) add_known(name, nullptr);  // configured, never seen
  std::vector<ModelSummary> out;
  for (auto& [name, m] : by_model) out.push_back(std::move(m));
  return out;
}

bool Fleet::AnyHealthy() const {
  for (const auto& m : Models()) {
    if (m.healthy_workers > 0) return true;
  }
  return false;
}

size_t Fleet::num_workers() const {
  absl::MutexLock lock(&mu_);
  return clients_.size();
}

std::vector<std::shared_ptr<WorkerClient>> Fleet::Workers() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<WorkerClient>> out;
  for (const auto& [addr, c] : clients_) out.push_back(c);
  return out;
}

void Fleet::Shutdown() {
  std::vector<std::shared_ptr<WorkerClient>> clients;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return;
    shutdown_ = true;
    for (auto& [addr, c] : clients_) clients.push_back(c);
  }
  // Outside mu_: each Shutdown waits for its client's running hooks, which take mu_. Once all
  // have returned no hook runs again, so the fleet and what its hooks reach can go.
  for (auto& c : clients) c->Shutdown();
}

}  // namespace flotilla::gateway
