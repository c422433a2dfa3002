#include "gateway/openai_front.h"

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gateway/errors.h"
#include "gateway/openai_api.h"

namespace flotilla::gateway {
namespace {

constexpr const char* kJson = "application/json";

int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string ApiKey(const HttpRequest& req) {
  std::string auth = req.Header("authorization");
  if (absl::StartsWithIgnoreCase(auth, "bearer ")) return auth.substr(7);
  if (!auth.empty()) return auth;
  std::string k = req.Header("x-api-key");
  return k.empty() ? req.Header("api-key") : k;
}

void SendError(HttpResponder& r, const absl::Status& st) {
  HttpError e = ErrorResponse(st);
  r.Send(e.status, kJson, std::move(e.body), std::move(e.headers));
}

// Bridges one request's chunks onto its HTTP response.
class HttpSink final : public ResponseSink {
 public:
  HttpSink(std::shared_ptr<HttpResponder> responder, ResponseMeta meta, bool stream, bool include_usage)
      : responder_(std::move(responder)), meta_(std::move(meta)), stream_(stream), include_usage_(include_usage) {}

  void OnChunk(const worker::v1::GenerateResponse& chunk, const FinishInfo& info) override {
    SetId(info);
    std::shared_ptr<RequestHandle> h = handle();
    if (!stream_) {
      {
        absl::MutexLock lock(&mu_);
        acc_.Add(chunk);
      }
      if (h) h->Next();
      return;
    }
    bool first;
    {
      absl::MutexLock lock(&mu_);
      first = !started_;
      started_ = true;
    }
    if (first) responder_->StartStream(200, "text/event-stream", Headers(info));
    std::weak_ptr<RequestHandle> weak = h;
    responder_->Write(StreamChunkEvent(meta_, chunk, first), [weak](bool ok) {
      auto h = weak.lock();
      if (!h) return;
      if (ok) {
        h->Next();
      } else {
        h->Cancel();
      }
    });
  }

  void OnFinish(const absl::Status& status, const FinishInfo& info) override {
    SetId(info);
    bool started;
    Accumulated acc;
    {
      absl::MutexLock lock(&mu_);
      started = started_;
      acc = acc_;
    }
    if (!stream_) {
      if (status.ok()) {
        // Usage from the final chunk; a finish without one (should not happen) still reports it.
        if (acc.usage.prompt_tokens() == 0) acc.usage = info.usage;
        responder_->Send(200, kJson, meta_.chat ? ChatResponseJson(meta_, acc) : CompletionResponseJson(meta_, acc),
                         Headers(info));
      } else {
        HttpError e = ErrorResponse(status);
        auto headers = Headers(info);
        headers.insert(headers.end(), e.headers.begin(), e.headers.end());
        responder_->Send(e.status, kJson, std::move(e.body), std::move(headers));
      }
    } else if (!started) {
      if (status.ok()) {
        // Nothing was generated (possible with max_tokens and stop sequences): still a valid stream.
        responder_->StartStream(200, "text/event-stream", Headers(info));
        worker::v1::GenerateResponse last;
        last.set_finish_reason(info.finish_reason);
        responder_->Write(StreamChunkEvent(meta_, last, true), nullptr);
        if (include_usage_) responder_->Write(StreamUsageEvent(meta_, info.usage), nullptr);
        responder_->Write(kStreamDone, nullptr);
        responder_->End();
      } else {
        HttpError e = ErrorResponse(status);
        auto headers = Headers(info);
        headers.insert(headers.end(), e.headers.begin(), e.headers.end());
        responder_->Send(e.status, kJson, std::move(e.body), std::move(headers));
      }
    } else {
      if (include_usage_) responder_->Write(StreamUsageEvent(meta_, info.usage), nullptr);
      if (status.ok()) {
        responder_->Write(kStreamDone, nullptr);
      } else {
        // The stream broke after tokens went out; the SDKs raise an error on an event with "error".
        responder_->Write(StreamErrorEvent(status), nullptr);
      }
      responder_->End();
    }
    ReleaseHandle();
  }

 private:
  void SetId(const FinishInfo& info) {
    if (meta_.id.empty()) meta_.id = absl::StrCat(meta_.chat ? "chatcmpl-" : "cmpl-", info.request_id);
  }
  HttpHeaders Headers(const FinishInfo& info) const {
    HttpHeaders h = {{"x-request-id", info.request_id.empty() ? meta_.id : info.request_id}};
    if (!info.worker.empty()) h.emplace_back("x-flotilla-worker", info.worker);
    if (info.cached) h.emplace_back("x-flotilla-cache", "hit");
    return h;
  }

  std::shared_ptr<HttpResponder> responder_;
  ResponseMeta meta_;  // id filled from the first callback (callbacks never overlap)
  const bool stream_;
  const bool include_usage_;
  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  Accumulated acc_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

void OpenAiFront::Handle(const HttpRequest& req, std::shared_ptr<HttpResponder> responder) {
  const std::string& path = req.path;
  const bool get = req.method == "GET" || req.method == "HEAD";
  const bool post = req.method == "POST";
  if (path == "/health" && get) {
    responder->Send(200, kJson, R"({"status":"ok"})");
  } else if (path == "/ready" && get) {
    const bool ready = !draining_.load() && fleet_->AnyHealthy();
    responder->Send(ready ? 200 : 503, kJson, ready ? R"({"status":"ready"})" : R"({"status":"not ready"})");
  } else if (path == "/metrics" && get) {
    responder->Send(200, "text/plain; version=0.0.4", metrics_->Serialize());
  } else if (path == "/v1/completions" && post) {
    Generate(req, std::move(responder), false);
  } else if (path == "/v1/chat/completions" && post) {
    Generate(req, std::move(responder), true);
  } else if (path == "/v1/models" && get) {
    Models(req, std::move(responder), "");
  } else if (absl::StartsWith(path, "/v1/models/") && get) {
    Models(req, std::move(responder), path.substr(strlen("/v1/models/")));
  } else if (path == "/v1/completions" || path == "/v1/chat/completions" || path == "/v1/models" ||
             path == "/health" || path == "/ready" || path == "/metrics") {
    responder->Send(405, kJson,
                    R"({"error":{"message":"method not allowed","type":"invalid_request_error","param":null,"code":null}})",
                    {{"Allow", post ? "GET" : "POST"}});
  } else {
    SendError(*responder, absl::NotFoundError(absl::StrCat("no route for ", req.method, " ", path)));
  }
}

void OpenAiFront::Models(const HttpRequest& req, std::shared_ptr<HttpResponder> responder, const std::string& one) {
  auto tenant = auth_->Authenticate(ApiKey(req));
  if (!tenant.ok()) return SendError(*responder, tenant.status());
  std::vector<ModelSummary> models;
  for (auto& m : fleet_->Models()) {
    if ((*tenant)->AllowsModel(m.name) && (one.empty() || m.name == one)) models.push_back(std::move(m));
  }
  if (!one.empty()) {
    if (models.empty()) {
      return SendError(*responder, absl::NotFoundError(absl::StrCat("the model '", one, "' does not exist")));
    }
    std::string list = ModelsJson(models, UnixNow());
    // The single-model form is the list's first element.
    size_t start = list.find("[{");
    size_t end = list.rfind("}]");
    responder->Send(200, kJson, list.substr(start + 1, end - start));
    return;
  }
  responder->Send(200, kJson, ModelsJson(models, UnixNow()));
}

void OpenAiFront::Generate(const HttpRequest& req, std::shared_ptr<HttpResponder> responder, bool chat) {
  auto parsed = chat ? ParseChatRequest(req.body) : ParseCompletionRequest(req.body);
  if (!parsed.ok()) {
    // Still count it: a flood of malformed requests should show on the dashboards.
    metrics_->RequestDone(absl::StatusCodeToString(parsed.status().code()), "unknown", "unknown", "http", 0);
    return SendError(*responder, parsed.status());
  }
  OpenAiRequest r = *std::move(parsed);
  r.input.api_key = ApiKey(req);
  r.input.request_id = req.Header("x-request-id");
  if (r.input.zone.empty()) r.input.zone = req.Header("x-flotilla-zone");
  int64_t timeout_ms = 0;
  if (std::string t = req.Header("x-flotilla-timeout-ms"); !t.empty()) {
    if (!absl::SimpleAtoi(t, &timeout_ms) || timeout_ms <= 0) {
      return SendError(*responder, absl::InvalidArgumentError("x-flotilla-timeout-ms must be a positive integer"));
    }
    r.input.deadline = clock_->Now() + timeout_ms * kNsPerMs;
  }
  ResponseMeta meta;
  meta.chat = chat;
  meta.created = UnixNow();
  meta.model = r.input.model;
  meta.want_logprobs = r.want_logprobs;
  meta.top_logprobs = r.top_logprobs;
  auto sink = std::make_shared<HttpSink>(responder, std::move(meta), r.stream, r.include_usage);
  auto handle = dispatcher_->Submit(std::move(r.input), sink);
  std::weak_ptr<RequestHandle> weak = handle;
  responder->OnDisconnect([weak] {
    if (auto h = weak.lock()) h->Cancel();
  });
}

}  // namespace flotilla::gateway
