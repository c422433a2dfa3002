#include "gateway/openai_api.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "gateway/errors.h"
#include "nlohmann/json.hpp"

namespace flotilla::gateway {
namespace {

using json = nlohmann::json;

// Never throws: invalid UTF-8 from a model is replaced, not fatal.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

absl::Status Bad(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("'", field, "' ", what));
}

absl::StatusOr<json> ParseBody(absl::string_view body) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError("the request body is not valid JSON");
  if (!j.is_object()) return absl::InvalidArgumentError("the request body must be a JSON object");
  return j;
}

bool Present(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

absl::Status Number(const json& j, const char* key, std::optional<double>* out) {
  if (!Present(j, key)) return absl::OkStatus();
  if (!j[key].is_number()) return Bad(key, "must be a number");
  *out = j[key].get<double>();
  return absl::OkStatus();
}

absl::Status Integer(const json& j, const char* key, std::optional<int64_t>* out) {
  if (!Present(j, key)) return absl::OkStatus();
  if (!j[key].is_number_integer()) return Bad(key, "must be an integer");
  *out = j[key].get<int64_t>();
  return absl::OkStatus();
}

absl::Status Bool(const json& j, const char* key, bool* out) {
  if (!Present(j, key)) return absl::OkStatus();
  if (!j[key].is_boolean()) return Bad(key, "must be true or false");
  *out = j[key].get<bool>();
  return absl::OkStatus();
}

#define OAI_RETURN_IF_ERROR(expr)       \
  do {                                  \
    absl::Status _st = (expr);          \
    if (!_st.ok()) return _st;          \
  } while (0)

// Fields common to both endpoints.
absl::Status ParseCommon(const json& j, OpenAiRequest* r) {
  GenerateInput& in = r->input;
  if (!j.contains("model") || !j["model"].is_string() || j["model"].get<std::string>().empty()) {
    return absl::InvalidArgumentError("'model' is required");
  }
  in.model = j["model"].get<std::string>();
  OAI_RETURN_IF_ERROR(Bool(j, "stream", &r->stream));
  if (Present(j, "stream_options")) {
    const json& so = j["stream_options"];
    if (!so.is_object()) return Bad("stream_options", "must be an object");
    OAI_RETURN_IF_ERROR(Bool(so, "include_usage", &r->include_usage));
  }
  std::optional<double> d;
  std::optional<int64_t> i;
  auto& s = in.sampling;
  OAI_RETURN_IF_ERROR(Number(j, "temperature", &d));
  if (d) s.set_temperature(static_cast<float>(*d)), d.reset();
  OAI_RETURN_IF_ERROR(Number(j, "top_p", &d));
  if (d) s.set_top_p(static_cast<float>(*d)), d.reset();
  OAI_RETURN_IF_ERROR(Number(j, "min_p", &d));
  if (d) s.set_min_p(static_cast<float>(*d)), d.reset();
  OAI_RETURN_IF_ERROR(Number(j, "repetition_penalty", &d));
  if (d) s.set_repetition_penalty(static_cast<float>(*d)), d.reset();
  OAI_RETURN_IF_ERROR(Number(j, "presence_penalty", &d));
  if (d) s.set_presence_penalty(static_cast<float>(*d)), d.reset();
  OAI_RETURN_IF_ERROR(Number(j, "frequency_penalty", &d));
  if (d) s.set_frequency_penalty(static_cast<float>(*d)), d.reset();
  OAI_RETURN_IF_ERROR(Integer(j, "top_k", &i));
  if (i) {
    // -1 is vLLM's "off".
    if (*i < -1) return Bad("top_k", "must be >= -1");
    s.set_top_k(*i < 0 ? 0 : static_cast<int32_t>(*i));
    i.reset();
  }
  OAI_RETURN_IF_ERROR(Integer(j, "seed", &i));
  if (i) s.set_seed(static_cast<uint64_t>(*i)), i.reset();
  OAI_RETURN_IF_ERROR(Integer(j, "n", &i));
  if (i && *i != 1) return Bad("n", "must be 1 (one choice per request)");
  i.reset();
  OAI_RETURN_IF_ERROR(Integer(j, "best_of", &i));
  if (i && *i != 1) return Bad("best_of", "must be 1");
  i.reset();
  if (Present(j, "logit_bias") && !(j["logit_bias"].is_object() && j["logit_bias"].empty())) {
    return Bad("logit_bias", "is not supported");
  }
  if (Present(j, "stop")) {
    const json& st = j["stop"];
    if (st.is_string()) {
      in.stop.push_back(st.get<std::string>());
    } else if (st.is_array()) {
      for (const auto& x : st) {
        if (!x.is_string()) return Bad("stop", "must be a string or a list of strings");
        in.stop.push_back(x.get<std::string>());
      }
    } else {
      return Bad("stop", "must be a string or a list of strings");
    }
  }
  OAI_RETURN_IF_ERROR(Bool(j, "ignore_eos", &in.ignore_eos));
  OAI_RETURN_IF_ERROR(Integer(j, "priority", &i));
  if (i) in.priority = static_cast<int32_t>(*i), i.reset();
  if (Present(j, "zone")) {
    if (!j["zone"].is_string()) return Bad("zone", "must be a string");
    in.zone = j["zone"].get<std::string>();
  }
  return absl::OkStatus();
}

absl::Status MaxTokens(const json& j, const char* key, GenerateInput* in) {
  std::optional<int64_t> i;
  OAI_RETURN_IF_ERROR(Integer(j, key, &i));
  if (i) {
    if (*i < 1 || *i > 1'000'000) return Bad(key, "must be between 1 and 1000000");
    in->max_tokens = static_cast<uint32_t>(*i);
  }
  return absl::OkStatus();
}

json UsageJson(const flotilla::v1::Usage& u) {
  return json{{"prompt_tokens", u.prompt_tokens()},
              {"completion_tokens", u.completion_tokens()},
              {"total_tokens", u.prompt_tokens() + u.completion_tokens()},
              {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens()}}}};
}

json BytesJson(const std::string& b) {
  json a = json::array();
  for (unsigned char c : b) a.push_back(static_cast<int>(c));
  return a;
}

json ChatLogprobsJson(const std::vector<flotilla::v1::TokenLogprob>& lps, uint32_t top) {
  json content = json::array();
  for (const auto& lp : lps) {
    json tops = json::array();
    for (int k = 0; k < lp.top_size() && static_cast<uint32_t>(k) < top; ++k) {
      const auto& t = lp.top(k);
      tops.push_back({{"token", t.token()}, {"logprob", t.logprob()}, {"bytes", BytesJson(t.token_bytes())}});
    }
    content.push_back({{"token", lp.token()},
                       {"logprob", lp.logprob()},
                       {"bytes", BytesJson(lp.token_bytes())},
                       {"top_logprobs", tops}});
  }
  return json{{"content", content}};
}

json CompletionLogprobsJson(const std::vector<flotilla::v1::TokenLogprob>& lps, uint32_t top, size_t text_offset) {
  json tokens = json::array(), token_lps = json::array(), tops = json::array(), offsets = json::array();
  size_t off = text_offset;
  for (const auto& lp : lps) {
    tokens.push_back(lp.token());
    token_lps.push_back(lp.logprob());
    json t = json::object();
    for (int k = 0; k < lp.top_size() && static_cast<uint32_t>(k) < top; ++k) t[lp.top(k).token()] = lp.top(k).logprob();
    tops.push_back(t);
    offsets.push_back(off);
    off += lp.token_bytes().size();
  }
  return json{{"tokens", tokens}, {"token_logprobs", token_lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

std::vector<flotilla::v1::TokenLogprob> ToVector(const google::protobuf::RepeatedPtrField<flotilla::v1::TokenLogprob>& r) {
  return std::vector<flotilla::v1::TokenLogprob>(r.begin(), r.end());
}

json FinishJson(flotilla::v1::FinishReason r) {
  std::string s = FinishReasonString(r);
  return s.empty() ? json(nullptr) : json(s);
}

}  // namespace

std::string FinishReasonString(flotilla::v1::FinishReason r) {
  switch (r) {
    case flotilla::v1::FINISH_REASON_LENGTH: return "length";
    case flotilla::v1::FINISH_REASON_STOP:
    case flotilla::v1::FINISH_REASON_EOS: return "stop";
    case flotilla::v1::FINISH_REASON_CANCELLED: return "cancelled";
    case flotilla::v1::FINISH_REASON_ERROR: return "error";
    default: return "";
  }
}

absl::StatusOr<OpenAiRequest> ParseCompletionRequest(absl::string_view body) {
  auto parsed = ParseBody(body);
  if (!parsed.ok()) return parsed.status();
  const json& j = *parsed;
  OpenAiRequest r;
  r.input.api = "http";
  OAI_RETURN_IF_ERROR(ParseCommon(j, &r));
  if (!Present(j, "prompt")) return absl::InvalidArgumentError("'prompt' is required");
  const json& p = j["prompt"];
  auto ids_from = [&](const json& arr) -> absl::Status {
    for (const auto& x : arr) {
      if (!x.is_number_integer()) return Bad("prompt", "token lists must hold integers");
      r.input.prompt_ids.push_back(x.get<int32_t>());
    }
    if (r.input.prompt_ids.empty()) return Bad("prompt", "must not be empty");
    return absl::OkStatus();
  };
  if (p.is_string()) {
    r.input.prompt = p.get<std::string>();
  } else if (p.is_array() && p.size() == 1 && p[0].is_string()) {
    r.input.prompt = p[0].get<std::string>();
  } else if (p.is_array() && !p.empty() && p[0].is_number_integer()) {
    OAI_RETURN_IF_ERROR(ids_from(p));
  } else if (p.is_array() && p.size() == 1 && p[0].is_array()) {
    OAI_RETURN_IF_ERROR(ids_from(p[0]));
  } else if (p.is_array() && p.size() > 1) {
    return Bad("prompt", "may hold one prompt per request (send several requests instead)");
  } else {
    return Bad("prompt", "must be a string or a list of token ids");
  }
  OAI_RETURN_IF_ERROR(MaxTokens(j, "max_tokens", &r.input));
  bool echo = false;
  OAI_RETURN_IF_ERROR(Bool(j, "echo", &echo));
  if (echo) return Bad("echo", "is not supported");
  if (Present(j, "suffix")) return Bad("suffix", "is not supported");
  std::optional<int64_t> lp;
  OAI_RETURN_IF_ERROR(Integer(j, "logprobs", &lp));
  if (lp) {
    if (*lp < 0 || *lp > 20) return Bad("logprobs", "must be between 0 and 20");
    r.want_logprobs = true;
    r.top_logprobs = static_cast<uint32_t>(*lp);
    // The worker reports the chosen token's logprob along with N alternatives; ask for at least 1.
    r.input.sampling.set_logprobs(std::max<uint32_t>(1, r.top_logprobs));
  }
  return r;
}

absl::StatusOr<OpenAiRequest> ParseChatRequest(absl::string_view body) {
  auto parsed = ParseBody(body);
  if (!parsed.ok()) return parsed.status();
  const json& j = *parsed;
  OpenAiRequest r;
  r.input.api = "http";
  r.input.chat = true;
  OAI_RETURN_IF_ERROR(ParseCommon(j, &r));
  if (!Present(j, "messages") || !j["messages"].is_array() || j["messages"].empty()) {
    return absl::InvalidArgumentError("'messages' must be a non-empty list");
  }
  size_t idx = 0;
  for (const auto& m : j["messages"]) {
    std::string where = absl::StrCat("messages[", idx++, "]");
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) return Bad(where, "needs a 'role'");
    ChatTurn t;
    t.role = m["role"].get<std::string>();
    if (t.role == "developer") t.role = "system";  // OpenAI's newer name for the system role
    if (t.role == "tool" || t.role == "function") return Bad(where, "tool messages are not supported");
    if (Present(m, "content")) {
      const json& c = m["content"];
      if (c.is_string()) {
        t.content = c.get<std::string>();
      } else if (c.is_array()) {
        for (const auto& part : c) {
          if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") ||
              !part["text"].is_string()) {
            return Bad(where, "content parts must be {\"type\": \"text\", \"text\": ...}");
          }
          t.content += part["text"].get<std::string>();
        }
      } else {
        return Bad(where, "'content' must be a string or a list of text parts");
      }
    } else if (t.role != "assistant") {
      return Bad(where, "needs 'content'");
    }
    r.input.messages.push_back(std::move(t));
  }
  if (Present(j, "tools") || Present(j, "functions") || Present(j, "tool_choice")) {
    return absl::InvalidArgumentError("tools and function calling are not supported");
  }
  if (Present(j, "response_format")) {
    const json& rf = j["response_format"];
    if (!rf.is_object() || !rf.contains("type") || rf["type"] != "text") {
      return Bad("response_format", "only {\"type\": \"text\"} is supported");
    }
  }
  OAI_RETURN_IF_ERROR(MaxTokens(j, "max_tokens", &r.input));
  OAI_RETURN_IF_ERROR(MaxTokens(j, "max_completion_tokens", &r.input));
  OAI_RETURN_IF_ERROR(Bool(j, "logprobs", &r.want_logprobs));
  std::optional<int64_t> top;
  OAI_RETURN_IF_ERROR(Integer(j, "top_logprobs", &top));
  if (top) {
    if (*top < 0 || *top > 20) return Bad("top_logprobs", "must be between 0 and 20");
    if (!r.want_logprobs) return Bad("top_logprobs", "needs 'logprobs': true");
    r.top_logprobs = static_cast<uint32_t>(*top);
  }
  if (r.want_logprobs) r.input.sampling.set_logprobs(std::max<uint32_t>(1, r.top_logprobs));
  return r;
}

void Accumulated::Add(const worker::v1::GenerateResponse& chunk) {
  text += chunk.text();
  for (const auto& lp : chunk.logprobs()) logprobs.push_back(lp);
  if (chunk.finish_reason() != flotilla::v1::FINISH_REASON_UNSPECIFIED) {
    finish_reason = chunk.finish_reason();
    usage = chunk.usage();
  }
}

std::string CompletionResponseJson(const ResponseMeta& meta, const Accumulated& acc) {
  json choice = {{"index", 0},
                 {"text", acc.text},
                 {"logprobs", meta.want_logprobs ? CompletionLogprobsJson(acc.logprobs, meta.top_logprobs, 0) : json(nullptr)},
                 {"finish_reason", FinishJson(acc.finish_reason)}};
  json j = {{"id", meta.id},
            {"object", "text_completion"},
            {"created", meta.created},
            {"model", meta.model},
            {"choices", json::array({choice})},
            {"usage", UsageJson(acc.usage)},
            {"system_fingerprint", nullptr}};
  return Dump(j);
}

std::string ChatResponseJson(const ResponseMeta& meta, const Accumulated& acc) {
  json choice = {{"index", 0},
                 {"message", {{"role", "assistant"}, {"content", acc.text}, {"refusal", nullptr}}},
                 {"logprobs", meta.want_logprobs ? ChatLogprobsJson(acc.logprobs, meta.top_logprobs) : json(nullptr)},
                 {"finish_reason", FinishJson(acc.finish_reason)}};
  json j = {{"id", meta.id},
            {"object", "chat.completion"},
            {"created", meta.created},
            {"model", meta.model},
            {"choices", json::array({choice})},
            {"usage", UsageJson(acc.usage)},
            {"system_fingerprint", nullptr}};
  return Dump(j);
}

std::string StreamChunkEvent(const ResponseMeta& meta, const worker::v1::GenerateResponse& chunk, bool first) {
  json choice;
  json lps = nullptr;
  if (meta.want_logprobs && chunk.logprobs_size() > 0) {
    lps = meta.chat ? ChatLogprobsJson(ToVector(chunk.logprobs()), meta.top_logprobs)
                    : CompletionLogprobsJson(ToVector(chunk.logprobs()), meta.top_logprobs, 0);
  }
  if (meta.chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!chunk.text().empty() || first) delta["content"] = chunk.text();
    choice = {{"index", 0}, {"delta", delta}, {"logprobs", lps}, {"finish_reason", FinishJson(chunk.finish_reason())}};
  } else {
    choice = {{"index", 0}, {"text", chunk.text()}, {"logprobs", lps}, {"finish_reason", FinishJson(chunk.finish_reason())}};
  }
  json j = {{"id", meta.id},
            {"object", meta.chat ? "chat.completion.chunk" : "text_completion"},
            {"created", meta.created},
            {"model", meta.model},
            {"choices", json::array({choice})}};
  return absl::StrCat("data: ", Dump(j), "\n\n");
}

std::string StreamUsageEvent(const ResponseMeta& meta, const flotilla::v1::Usage& usage) {
  json j = {{"id", meta.id},
            {"object", meta.chat ? "chat.completion.chunk" : "text_completion"},
            {"created", meta.created},
            {"model", meta.model},
            {"choices", json::array()},
            {"usage", UsageJson(usage)}};
  return absl::StrCat("data: ", Dump(j), "\n\n");
}

HttpError ErrorResponse(const absl::Status& status) {
  HttpError e;
  e.status = HttpStatusFor(status);
  std::string type = "invalid_request_error";
  json code = nullptr;
  const std::string reason = ErrorReason(status);
  switch (e.status) {
    case 401: code = "invalid_api_key"; break;
    case 403: type = "permission_error"; break;
    case 404: code = "model_not_found"; break;
    case 429:
      type = reason == "rate_limit_tokens" ? "tokens" : reason == "overloaded" || reason == "queue_timeout" ? "overloaded" : "requests";
      code = reason.empty() ? "rate_limit_exceeded" : reason == "overloaded" || reason == "queue_timeout" ? reason : "rate_limit_exceeded";
      break;
    case 499: type = "cancelled"; break;
    case 503: type = "server_error"; code = reason.empty() ? "unavailable" : reason; break;
    case 504: type = "timeout"; code = reason.empty() ? json(nullptr) : json(reason); break;
    case 500: type = "server_error"; break;
    default: break;
  }
  json j = {{"error", {{"message", std::string(status.message())}, {"type", type}, {"param", nullptr}, {"code", code}}}};
  e.body = Dump(j);
  if (auto ms = RetryAfterMs(status)) {
    e.headers.emplace_back("Retry-After", RetryAfterSeconds(*ms));
    e.headers.emplace_back("Retry-After-Ms", absl::StrCat(*ms));
  }
  return e;
}

std::string StreamErrorEvent(const absl::Status& status) {
  return absl::StrCat("data: ", ErrorResponse(status).body, "\n\n");
}

std::string ModelsJson(const std::vector<ModelSummary>& models, int64_t created) {
  json data = json::array();
  for (const auto& m : models) {
    data.push_back({{"id", m.name},
                    {"object", "model"},
                    {"created", created},
                    {"owned_by", "flotilla"},
                    {"context_length", m.context_length},
                    {"quantization", m.quantization},
                    {"healthy_workers", m.healthy_workers}});
  }
  return Dump(json{{"object", "list"}, {"data", data}});
}

}  // namespace flotilla::gateway
