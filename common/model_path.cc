#include "common/model_path.h"

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_join.h"

namespace flotilla {

std::vector<std::string> ModelSearchPath() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("FLOTILLA_MODEL_DIR"); env && *env) dirs.emplace_back(env);
  dirs.emplace_back("models");
  dirs.emplace_back("../shared/models");
  // Tests run from the source tree; binaries may run from build/bin.
  if (const char* src = std::getenv("FLOTILLA_SOURCE_DIR"); src && *src) {
    dirs.emplace_back(std::string(src) + "/models");
    dirs.emplace_back(std::string(src) + "/../shared/models");
  }
  return dirs;
}

absl::StatusOr<std::string> ResolveModelPath(const std::string& name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (name.empty()) return absl::InvalidArgumentError("empty model name");
  if (fs::is_regular_file(name, ec)) return name;
  std::vector<std::string> tried = {name};
  if (name.find('/') == std::string::npos) {
    for (const auto& dir : ModelSearchPath()) {
      std::string candidate = dir + "/" + name;
      if (fs::is_regular_file(candidate, ec)) return candidate;
      tried.push_back(candidate);
    }
  }
  return absl::NotFoundError("model '" + name + "' not found; tried: " + absl::StrJoin(tried, ", "));
}

}  // namespace flotilla
