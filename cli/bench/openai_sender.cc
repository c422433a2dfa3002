// The OpenAI-compatible HTTP sender: POST /v1/completions with "stream": true, read as
// Server-Sent Events. Each event with text counts as the tokens the gateway put in it (one per
// event as it streams them; the final usage corrects the total).
#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cli/bench/sender.h"

namespace flotilla::cli::bench {

std::vector<SseParser::Event> SseParser::Feed(const char* data, size_t n) {
  std::vector<Event> out;
  buffer_.append(data, n);
  size_t pos = 0;
  while (true) {
    const size_t nl = buffer_.find('\n', pos);
    if (nl == std::string::npos) break;
    absl::string_view line(buffer_.data() + pos, nl - pos);
    pos = nl + 1;
    if (absl::EndsWith(line, "\r")) line.remove_suffix(1);
    if (line.empty()) {  // a blank line ends the event
      if (has_data_) out.push_back({std::move(data_)});
      data_.clear();
      has_data_ = false;
    } else if (absl::ConsumePrefix(&line, "data:")) {
      absl::ConsumePrefix(&line, " ");
      if (has_data_) data_ += '\n';
      data_.append(line.data(), line.size());
      has_data_ = true;
    }  // comments (':') and other fields are ignored
  }
  buffer_.erase(0, pos);
  return out;
}

namespace {

using Json = nlohmann::json;

class OpenAiSender final : public RequestSender {
 public:
  OpenAiSender(std::string host, int port, SenderOptions options)
      : host_(std::move(host)), port_(port), options_(std::move(options)) {}

  // Waits for the request threads (they are detached so that finished ones free their stacks).
  ~OpenAiSender() override {
    std::unique_lock<std::mutex> lock(mu_);
    idle_.wait(lock, [this] { return running_ == 0; });
  }

  void Send(const RequestSpec& spec, std::function<void(RequestRecord)> done) override {
    Json body = {{"model", options_.model},       {"prompt", spec.prompt},
                 {"max_tokens", spec.max_tokens}, {"temperature", options_.temperature},
                 {"stream", true},                {"stream_options", {{"include_usage", true}}},
                 {"ignore_eos", options_.ignore_eos}};
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++running_;
    }
    std::thread([this, text = body.dump(), max_tokens = spec.max_tokens, done = std::move(done)] {
      done(Run(text, max_tokens));
      std::lock_guard<std::mutex> lock(mu_);
      if (--running_ == 0) idle_.notify_all();
    }).detach();
  }

  void CancelAll() override { cancelled_.store(true); }

 private:
  RequestRecord Run(const std::string& body, int max_tokens) {
    RequestRecord r;
    r.requested_tokens = max_tokens;
    const SteadyTime start = std::chrono::steady_clock::now();
    SteadyTime last = start;
    r.start_s = std::chrono::duration<double>(start - options_.epoch).count();

    httplib::Client cli(host_, port_);
    cli.set_connection_timeout(5, 0);
    // The OpenAI API has no deadline; the timeout bounds the wait for each read (0: an hour).
    cli.set_read_timeout(static_cast<time_t>(options_.timeout_s > 0 ? options_.timeout_s : 3600), 0);
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = body;
    req.set_header("Content-Type", "application/json");
    req.set_header("Accept", "text/event-stream");
    if (!options_.api_key.empty()) req.set_header("Authorization", absl::StrCat("Bearer ", options_.api_key));
    int status = 0;
    std::string error_body;
    SseParser sse;
    bool saw_done = false;
    int usage_completion = -1;
    req.response_handler = [&](const httplib::Response& res) {
      status = res.status;
      return true;
    };
    req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
      if (cancelled_.load()) return false;
      if (status != 200) {
        error_body.append(data, n);
        return true;
      }
      for (const SseParser::Event& e : sse.Feed(data, n)) {
        if (e.data == "[DONE]") {
          saw_done = true;
          continue;
        }
        Json j = Json::parse(e.data, nullptr, /*allow_exceptions=*/false);
        if (!j.is_object()) continue;
        if (j.contains("choices") && j["choices"].is_array() && !j["choices"].empty()) {
          const Json& c = j["choices"][0];
          if (c.contains("text") && c["text"].is_string() && !c["text"].get<std::string>().empty()) {
            RecordTokens(&r, start, &last, std::chrono::steady_clock::now(), 1);
          }
        }
        if (j.contains("usage") && j["usage"].is_object()) {
          const Json& u = j["usage"];
          if (u.contains("prompt_tokens") && u["prompt_tokens"].is_number_integer()) {
            r.prompt_tokens = u["prompt_tokens"].get<int>();
          }
          if (u.contains("completion_tokens") && u["completion_tokens"].is_number_integer()) {
            usage_completion = u["completion_tokens"].get<int>();
          }
        }
      }
      return true;
    };
    httplib::Result res = cli.send(req);
    r.e2e_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (cancelled_.load()) {
      r.error = "CANCELLED";
    } else if (!res) {
      r.error = "HTTP_TRANSPORT";
      r.message = httplib::to_string(res.error());
    } else if (status != 200) {
      r.error = absl::StrCat("HTTP_", status);
      r.message = error_body.substr(0, 200);
    } else if (!saw_done) {
      r.error = "HTTP_STREAM_CUT";
      r.message = "stream ended without [DONE]";
    } else {
      r.ok = true;
      // Text events can carry several tokens (or a token can end mid-character and ride
      // with the next); the usage is the server's count.
      if (usage_completion >= 0) r.output_tokens = usage_completion;
    }
    return r;
  }

  std::string host_;
  int port_;
  SenderOptions options_;
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::condition_variable idle_;
  int running_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RequestSender>> MakeOpenAiSender(const std::string& base_url, SenderOptions options) {
  absl::string_view rest = base_url;
  if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat("--http-url '", base_url, "': want http://host:port"));
  }
  while (absl::EndsWith(rest, "/")) rest.remove_suffix(1);
  const size_t colon = rest.rfind(':');
  int port = 0;
  if (colon == absl::string_view::npos || !absl::SimpleAtoi(rest.substr(colon + 1), &port) || port <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("--http-url '", base_url, "': want http://host:port"));
  }
  return std::unique_ptr<RequestSender>(
      new OpenAiSender(std::string(rest.substr(0, colon)), port, std::move(options)));
}

}  // namespace flotilla::cli::bench
