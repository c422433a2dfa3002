#include "gateway/redis_rate_limiter.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"

namespace flotilla::gateway {
namespace {

// KEYS: request bucket, token bucket.
// ARGV: request rate/s, request capacity, token rate/s, token capacity, tokens, mode (1 acquire,
//       2 debit). A rate <= 0 disables that bucket.
// Returns {allowed 0|1, limited_by 0 none|1 requests|2 tokens, retry_after_ms (-1: never)}.
constexpr const char* kScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function load(key, rate, cap)
  local v = redis.call('HMGET', key, 'b', 't')
  local b = tonumber(v[1])
  local ts = tonumber(v[2])
  if b == nil or ts == nil then return cap end
  if now > ts then b = math.min(cap, b + (now - ts) * rate / 1000.0) end
  return b
end
local function save(key, b, rate, cap)
  redis.call('HSET', key, 'b', tostring(b), 't', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(cap / rate * 1000) + 1000)
end
local rr, rc = tonumber(ARGV[1]), tonumber(ARGV[2])
local tr, tc = tonumber(ARGV[3]), tonumber(ARGV[4])
local cost, mode = tonumber(ARGV[5]), tonumber(ARGV[6])
if mode == 2 then
  if tr > 0 then save(KEYS[2], load(KEYS[2], tr, tc) - cost, tr, tc) end
  return {1, 0, 0}
end
local rb, tb = 0, 0
local wr, wt = 0, 0
if rr > 0 then
  rb = load(KEYS[1], rr, rc)
  if rb < 1 then wr = math.ceil((1 - rb) / rr * 1000) end
end
if tr > 0 then
  if cost > tc then return {0, 2, -1} end
  tb = load(KEYS[2], tr, tc)
  if tb < cost then wt = math.ceil((cost - tb) / tr * 1000) end
end
if wr > 0 or wt > 0 then
  if wr >= wt then return {0, 1, math.max(wr, 1)} end
  return {0, 2, math.max(wt, 1)}
end
if rr > 0 then save(KEYS[1], rb - 1, rr, rc) end
if tr > 0 then save(KEYS[2], tb - cost, tr, tc) end
return {1, 0, 0}
)lua";

struct ReplyDeleter {
  void operator()(redisReply* r) const { if (r) freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

}  // namespace

// The hiredis connection, used only by the I/O thread.
class RedisRateLimiter::Connection {
 public:
  explicit Connection(const RedisOptions& options) : options_(options) {}
  ~Connection() { Close(); }

  bool ok() const { return ctx_ != nullptr; }

  absl::Status Connect() {
    Close();
    timeval tv{options_.connect_timeout_ms / 1000, static_cast<long>((options_.connect_timeout_ms % 1000) * 1000)};
    ctx_ = redisConnectWithTimeout(options_.host.c_str(), options_.port, tv);
    if (ctx_ == nullptr || ctx_->err) {
      std::string err = ctx_ ? ctx_->errstr : "out of memory";
      Close();
      return absl::UnavailableError(absl::StrCat("redis connect ", options_.host, ":", options_.port, ": ", err));
    }
    timeval ctv{options_.command_timeout_ms / 1000, static_cast<long>((options_.command_timeout_ms % 1000) * 1000)};
    redisSetTimeout(ctx_, ctv);
    if (!options_.password.empty()) {
      Reply r(static_cast<redisReply*>(redisCommand(ctx_, "AUTH %s", options_.password.c_str())));
      if (!r || r->type == REDIS_REPLY_ERROR) {
        Close();
        return absl::UnauthenticatedError("redis AUTH failed");
      }
    }
    Reply r(static_cast<redisReply*>(redisCommand(ctx_, "SCRIPT LOAD %s", kScript)));
    if (!r || r->type != REDIS_REPLY_STRING) {
      std::string err = r ? std::string(r->str ? r->str : "") : (ctx_ ? ctx_->errstr : "");
      Close();
      return absl::UnavailableError(absl::StrCat("redis SCRIPT LOAD: ", err));
    }
    sha_.assign(r->str, r->len);
    return absl::OkStatus();
  }

  void Close() {
    if (ctx_) redisFree(ctx_);
    ctx_ = nullptr;
  }

  // Sends every op, then reads every reply (one round trip for the whole batch).
  // Returns false when the connection failed; ops without a result are then left with
  // results[i].first == false.
  bool Run(const std::vector<Op*>& ops, std::vector<std::pair<bool, RateLimitDecision>>& results) {
    results.assign(ops.size(), {false, {}});
    for (Op* op : ops) {
      std::string kr = absl::StrCat(options_.key_prefix, "{", op->tenant, "}:req");
      std::string kt = absl::StrCat(options_.key_prefix, "{", op->tenant, "}:tok");
      const TenantLimits& l = op->limits;
      std::string a1 = absl::StrFormat("%.6f", l.requests_per_second);
      std::string a2 = absl::StrFormat("%.6f", l.RequestBurst());
      std::string a3 = absl::StrFormat("%.6f", l.tokens_per_minute / 60.0);
      std::string a4 = absl::StrFormat("%.6f", l.TokenBurst());
      std::string a5 = absl::StrCat(op->tokens);
      const char* mode = op->debit ? "2" : "1";
      const char* argv[] = {"EVALSHA", sha_.c_str(), "2", kr.c_str(), kt.c_str(), a1.c_str(),
                            a2.c_str(), a3.c_str(), a4.c_str(), a5.c_str(), mode};
      if (redisAppendCommandArgv(ctx_, 11, argv, nullptr) != REDIS_OK) return false;
    }
    for (size_t i = 0; i < ops.size(); ++i) {
      void* raw = nullptr;
      if (redisGetReply(ctx_, &raw) != REDIS_OK) return false;
      Reply r(static_cast<redisReply*>(raw));
      if (!r) return false;
      if (r->type == REDIS_REPLY_ERROR) {
        // NOSCRIPT after a Redis restart (script cache lost): the caller reconnects, which
        // loads the script again.
        SPDLOG_WARN("redis rate limit script error: {}", std::string(r->str, r->len));
        return false;
      }
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) return false;
      RateLimitDecision d;
      d.allowed = r->element[0]->integer == 1;
      d.limited_by = r->element[1]->integer == 1   ? RateLimitDecision::Limit::kRequests
                     : r->element[1]->integer == 2 ? RateLimitDecision::Limit::kTokens
                                                   : RateLimitDecision::Limit::kNone;
      d.retry_after_ms = r->element[2]->integer;
      results[i] = {true, d};
    }
    return true;
  }

 private:
  const RedisOptions& options_;
  redisContext* ctx_ = nullptr;
  std::string sha_;
};

RedisRateLimiter::RedisRateLimiter(RedisOptions options, std::unique_ptr<LocalRateLimiter> fallback)
    : options_(std::move(options)), fallback_(std::move(fallback)) {
  thread_ = std::thread([this] { Loop(); });
}

RedisRateLimiter::~RedisRateLimiter() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void RedisRateLimiter::Acquire(const std::string& tenant, const TenantLimits& limits, int64_t tokens,
                               Callback done) {
  if (limits.requests_per_second <= 0 && limits.tokens_per_minute <= 0) {
    done(absl::OkStatus(), RateLimitDecision{});
    return;
  }
  Op op{false, tenant, limits, tokens, std::move(done)};
  {
    absl::MutexLock lock(&mu_);
    if (queue_.size() < options_.max_pending && connected_.load(std::memory_order_relaxed)) {
      queue_.push_back(std::move(op));
      return;
    }
  }
  // Redis is down or far behind: decide here rather than queue without bound.
  Fallback(op);
}

void RedisRateLimiter::Debit(const std::string& tenant, const TenantLimits& limits, int64_t tokens) {
  if (limits.tokens_per_minute <= 0 || tokens <= 0) return;
  Op op{true, tenant, limits, tokens, nullptr};
  {
    absl::MutexLock lock(&mu_);
    if (queue_.size() < options_.max_pending && connected_.load(std::memory_order_relaxed)) {
      queue_.push_back(std::move(op));
      return;
    }
  }
  Fallback(op);
}

void RedisRateLimiter::Fallback(Op& op) {
  fallbacks_.fetch_add(1, std::memory_order_relaxed);
  if (op.debit) {
    fallback_->Debit(op.tenant, op.limits, op.tokens);
  } else {
    op.done(absl::OkStatus(), fallback_->TryAcquire(op.tenant, op.limits, op.tokens));
  }
}

void RedisRateLimiter::Loop() {
  Connection conn(options_);
  int64_t backoff_ms = 50;
  std::vector<Op> batch;
  std::vector<Op*> ptrs;
  std::vector<std::pair<bool, RateLimitDecision>> results;
  bool logged_down = false;
  while (true) {
    if (!conn.ok()) {
      absl::Status st = conn.Connect();
      connected_.store(st.ok(), std::memory_order_relaxed);
      if (!st.ok()) {
        if (!logged_down) SPDLOG_WARN("redis rate limiter unavailable, using per-gateway limits: {}", st.ToString());
        logged_down = true;
        absl::MutexLock lock(&mu_);
        // Whatever was queued is decided locally; new ops go to the fallback directly.
        while (!queue_.empty()) {
          Op op = std::move(queue_.front());
          queue_.pop_front();
          mu_.Unlock();
          Fallback(op);
          mu_.Lock();
        }
        auto wake = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_; };
        mu_.AwaitWithTimeout(absl::Condition(&wake), absl::Milliseconds(backoff_ms));
        if (stop_) return;
        backoff_ms = std::min<int64_t>(backoff_ms * 2, 2000);
        continue;
      }
      if (logged_down) SPDLOG_INFO("redis rate limiter connected to {}:{}", options_.host, options_.port);
      logged_down = false;
      backoff_ms = 50;
    }
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
      mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(500));
      if (stop_ && queue_.empty()) return;
      batch.clear();
      while (!queue_.empty() && batch.size() < 512) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (batch.empty()) continue;
    ptrs.clear();
    for (Op& op : batch) ptrs.push_back(&op);
    const bool ok = conn.Run(ptrs, results);
    for (size_t i = 0; i < batch.size(); ++i) {
      Op& op = batch[i];
      if (!results[i].first) {
        Fallback(op);
      } else if (!op.debit) {
        op.done(absl::OkStatus(), results[i].second);
      }
    }
    if (!ok) {
      conn.Close();
      connected_.store(false, std::memory_order_relaxed);
    }
  }
}

}  // namespace flotilla::gateway
