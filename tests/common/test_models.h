// Test access to the shared models and reference outputs (../shared/models, ../shared/golden).
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/model_path.h"
#include "gtest/gtest.h"
#include "model/loader.h"
#include "nlohmann/json.hpp"

namespace flotilla::testing {

struct Golden {
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> generated_ids;
  std::string prompt;
  std::string text;
};

inline std::string SharedDir() {
  const char* src = std::getenv("FLOTILLA_SOURCE_DIR");
  return std::string(src ? src : ".") + "/../shared";
}

inline Golden LoadGolden(const std::string& name) {
  std::ifstream in(SharedDir() + "/golden/" + name);
  EXPECT_TRUE(in.good()) << "missing golden " << name;
  Golden g;
  if (!in.good()) return g;
  auto j = nlohmann::json::parse(in);
  g.prompt_ids = j["prompt_ids"].get<std::vector<int32_t>>();
  g.generated_ids = j["generated_ids"].get<std::vector<int32_t>>();
  g.prompt = j["prompt"].get<std::string>();
  g.text = j["text"].get<std::string>();
  return g;
}

inline std::string ModelPath(const std::string& name) {
  auto p = ResolveModelPath(name);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : name;
}

// Loads a shared model with the context its trained length allows (the GGUFs state 128).
inline std::shared_ptr<const LoadedModel> LoadShared(const std::string& name, int context = 512) {
  LoadOptions o;
  o.context_length = context;
  auto m = LoadModel(ModelPath(name), o);
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return nullptr;
  return std::shared_ptr<const LoadedModel>(std::move(*m));
}

}  // namespace flotilla::testing
