#include "gateway/grpc_service.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gateway/errors.h"

namespace flotilla::gateway {
namespace {

using flotilla::v1::GenerateResponse;

// google.rpc.Status{code, message, details: [Any{RetryInfo{retry_delay}}]}, encoded by hand so
// the gateway needs no googleapis protos. Field numbers are from google/rpc/status.proto and
// google/rpc/error_details.proto.
std::string EncodeStatusWithRetryInfo(int code, const std::string& message, int64_t retry_ms) {
  using google::protobuf::io::CodedOutputStream;
  using google::protobuf::io::StringOutputStream;
  auto encode = [](auto&& fn) {
    std::string out;
    {
      StringOutputStream s(&out);
      CodedOutputStream c(&s);
      fn(c);
    }
    return out;
  };
  std::string duration = encode([&](CodedOutputStream& c) {
    c.WriteTag(8);  // seconds = 1, varint
    c.WriteVarint64(static_cast<uint64_t>(retry_ms / 1000));
    c.WriteTag(16);  // nanos = 2, varint
    c.WriteVarint32(static_cast<uint32_t>((retry_ms % 1000) * 1000000));
  });
  std::string retry_info = encode([&](CodedOutputStream& c) {
    c.WriteTag(10);  // retry_delay = 1, length-delimited
    c.WriteVarint32(static_cast<uint32_t>(duration.size()));
    c.WriteString(duration);
  });
  const std::string type_url = "type.googleapis.com/google.rpc.RetryInfo";
  std::string any = encode([&](CodedOutputStream& c) {
    c.WriteTag(10);
    c.WriteVarint32(static_cast<uint32_t>(type_url.size()));
    c.WriteString(type_url);
    c.WriteTag(18);
    c.WriteVarint32(static_cast<uint32_t>(retry_info.size()));
    c.WriteString(retry_info);
  });
  return encode([&](CodedOutputStream& c) {
    c.WriteTag(8);
    c.WriteVarint32(static_cast<uint32_t>(code));
    c.WriteTag(18);
    c.WriteVarint32(static_cast<uint32_t>(message.size()));
    c.WriteString(message);
    c.WriteTag(26);
    c.WriteVarint32(static_cast<uint32_t>(any.size()));
    c.WriteString(any);
  });
}

std::string ApiKeyFrom(const grpc::CallbackServerContext* ctx) {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it != md.end()) {
    std::string v(it->second.data(), it->second.size());
    if (absl::StartsWithIgnoreCase(v, "bearer ")) return v.substr(7);
    return v;
  }
  it = md.find("x-api-key");
  if (it != md.end()) return std::string(it->second.data(), it->second.size());
  return "";
}

std::string MetadataValue(const grpc::CallbackServerContext* ctx, const char* key) {
  const auto& md = ctx->client_metadata();
  auto it = md.find(key);
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

void FillResponse(const worker::v1::GenerateResponse& chunk, const FinishInfo& info, GenerateResponse* out) {
  out->Clear();
  out->set_request_id(info.request_id);
  out->set_model(info.model);
  out->set_text(chunk.text());
  out->mutable_token_ids()->CopyFrom(chunk.token_ids());
  out->mutable_logprobs()->CopyFrom(chunk.logprobs());
  if (chunk.finish_reason() != flotilla::v1::FINISH_REASON_UNSPECIFIED) {
    out->set_finish_reason(chunk.finish_reason());
    *out->mutable_usage() = chunk.usage();
  }
  if (chunk.time_to_first_token_s() > 0) out->set_time_to_first_token_s(chunk.time_to_first_token_s());
}

class GenerateReactor final : public grpc::ServerWriteReactor<GenerateResponse>, public ResponseSink {
 public:
  explicit GenerateReactor(grpc::CallbackServerContext* ctx) : ctx_(ctx) {}

  void Begin(std::shared_ptr<GenerateReactor> self) { self_ = std::move(self); }

  void OnChunk(const worker::v1::GenerateResponse& chunk, const FinishInfo& info) override {
    absl::MutexLock lock(&mu_);
    if (done_) return;
    FillResponse(chunk, info, &out_);
    writing_ = true;
    StartWrite(&out_);
  }

  void OnFinish(const absl::Status& status, const FinishInfo& info) override {
    absl::MutexLock lock(&mu_);
    if (done_) return;
    finish_ = status;
    finish_info_ = info;
    if (!writing_) FinishLocked();
  }

  void OnWriteDone(bool ok) override {
    bool next = false;
    std::shared_ptr<RequestHandle> h;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (finish_.has_value()) {
        FinishLocked();
        return;
      }
      h = handle();
      next = ok;
    }
    // Outside the lock: Next may deliver the next chunk on this thread.
    if (h) {
      if (next) {
        h->Next();
      } else {
        h->Cancel();  // the client is gone
      }
    }
  }

  void OnCancel() override {
    std::shared_ptr<RequestHandle> h = handle();
    if (h) h->Cancel();
  }

  void OnDone() override {
    ReleaseHandle();
    self_.reset();  // may delete this
  }

 private:
  void FinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (done_) return;
    const absl::Status& st = *finish_;
    if (!finish_info_.worker.empty()) ctx_->AddTrailingMetadata("x-flotilla-worker", finish_info_.worker);
    if (finish_info_.cached) ctx_->AddTrailingMetadata("x-flotilla-cache", "hit");
    if (!st.ok() && finish_info_.finish_reason == flotilla::v1::FINISH_REASON_ERROR && !final_written_) {
      // The stream broke after tokens went out: say so in a last message with the partial usage,
      // then end with the error.
      final_written_ = true;
      out_.Clear();
      out_.set_request_id(finish_info_.request_id);
      out_.set_model(finish_info_.model);
      out_.set_finish_reason(flotilla::v1::FINISH_REASON_ERROR);
      *out_.mutable_usage() = finish_info_.usage;
      writing_ = true;
      StartWrite(&out_);
      return;
    }
    done_ = true;
    if (auto ms = RetryAfterMs(st)) ctx_->AddTrailingMetadata("retry-after-ms", absl::StrCat(*ms));
    Finish(ToGrpcStatus(st));
  }

  grpc::CallbackServerContext* const ctx_;
  std::shared_ptr<GenerateReactor> self_;  // alive until OnDone
  absl::Mutex mu_;
  GenerateResponse out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool final_written_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Status> finish_ ABSL_GUARDED_BY(mu_);
  FinishInfo finish_info_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  std::string message(status.message());
  if (auto ms = RetryAfterMs(status)) {
    return grpc::Status(code, message, EncodeStatusWithRetryInfo(static_cast<int>(code), message, *ms));
  }
  return grpc::Status(code, message);
}

grpc::ServerWriteReactor<GenerateResponse>* InferenceService::Generate(grpc::CallbackServerContext* context,
                                                                        const flotilla::v1::GenerateRequest* request) {
  auto reactor = std::make_shared<GenerateReactor>(context);
  reactor->Begin(reactor);
  GenerateInput in;
  in.api = "grpc";
  in.api_key = ApiKeyFrom(context);
  in.model = request->model();
  if (request->messages_size() > 0) {
    in.chat = true;
    for (const auto& m : request->messages()) in.messages.push_back({m.role(), m.content()});
  }
  in.prompt = request->prompt();
  in.sampling = request->sampling();
  if (request->max_tokens() > 0) in.max_tokens = request->max_tokens();
  in.stop.assign(request->stop().begin(), request->stop().end());
  in.priority = request->priority();
  in.request_id = request->request_id();
  in.ignore_eos = request->ignore_eos();
  in.zone = request->zone().empty() ? MetadataValue(context, "x-flotilla-zone") : request->zone();
  if (request->add_bos()) in.add_bos = true;
  const auto deadline = context->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - std::chrono::system_clock::now());
    in.deadline = clock_->Now() + std::max<int64_t>(1, left.count());
  }
  if (in.chat && !in.prompt.empty()) {
    reactor->OnFinish(absl::InvalidArgumentError("set either prompt or messages, not both"), FinishInfo{});
    return reactor.get();
  }
  dispatcher_->Submit(std::move(in), reactor);
  return reactor.get();
}

grpc::ServerUnaryReactor* InferenceService::ListModels(grpc::CallbackServerContext* context,
                                                       const flotilla::v1::ListModelsRequest* request,
                                                       flotilla::v1::ListModelsResponse* response) {
  auto* reactor = context->DefaultReactor();
  auto tenant = auth_->Authenticate(ApiKeyFrom(context));
  if (!tenant.ok()) {
    reactor->Finish(ToGrpcStatus(tenant.status()));
    return reactor;
  }
  for (const auto& m : fleet_->Models()) {
    if (!(*tenant)->AllowsModel(m.name)) continue;
    auto* info = response->add_models();
    info->set_id(m.name);
    info->set_context_length(m.context_length);
    info->set_quantization(m.quantization);
    info->set_healthy_workers(m.healthy_workers);
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace flotilla::gateway
