#include "common/logging.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace flotilla {

absl::Status SetupLogging(const LogOptions& options) {
  auto level = spdlog::level::from_str(options.level);
  if (level == spdlog::level::off && options.level != "off") {
    return absl::InvalidArgumentError("unknown log level '" + options.level +
                                      "' (want trace, debug, info, warn, error or off)");
  }
  auto logger = spdlog::stderr_color_mt(options.component.empty() ? "flotilla" : options.component);
  if (options.format == "json") {
    // Messages are written by our code as plain text; spdlog's %v is escaped by the
    // caller where it can contain user data (we never log prompts by default).
    logger->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","component":"%n","msg":"%v"})",
                        spdlog::pattern_time_type::utc);
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

}  // namespace flotilla
