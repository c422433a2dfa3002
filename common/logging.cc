#include "common/logging.h"

#include <cstdio>
#include <cstdlib>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace flotilla {
namespace {

// %* in a pattern: the message, escaped for a JSON string. Every message passes through here,
// so no call site has to know the log format (model paths, worker addresses, request ids and
// error texts can carry quotes and control characters).
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string escaped = JsonEscape(std::string(msg.payload.data(), msg.payload.size()));
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonMessageFlag>(); }
};

}  // namespace

absl::Status SetupLogging(const LogOptions& options) {
  auto level = spdlog::level::from_str(options.level);
  if (level == spdlog::level::off && options.level != "off") {
    return absl::InvalidArgumentError("unknown log level '" + options.level +
                                      "' (want trace, debug, info, warn, error or off)");
  }
  auto logger = spdlog::stderr_color_mt(options.component.empty() ? "flotilla" : options.component);
  if (options.format == "json") {
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<JsonMessageFlag>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","component":"%n","msg":"%*"})");
    logger->set_formatter(std::move(formatter));
  } else if (options.format == "text") {
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%L%$ [%n] %v");
  } else {
    return absl::InvalidArgumentError("unknown log format '" + options.format + "' (want text or json)");
  }
  logger->set_level(level);
  spdlog::set_default_logger(logger);
  return absl::OkStatus();
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

void ExitAfterShutdown(int code) {
  spdlog::shutdown();  // flushes every logger
  std::fflush(nullptr);
  std::_Exit(code);
}

}  // namespace flotilla
