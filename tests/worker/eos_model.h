// A stories260K file whose requests can end at EOS.
//
// stories260K ends each story with BOS (id 1), where llama2.c's run.c stops; it never emits its
// stated EOS id 2 (no greedy run of up to 500 tokens from 86 prompts did, on f32, q8_0 or q4_0).
// A copy of the f32 file that states id 1 as its EOS follows the llama2.c convention; greedy
// "Once upon a time" then ends after 342 generated tokens, the EOS included.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_models.h"

namespace flotilla::testing {

inline constexpr char kEosPrompt[] = "Once upon a time";
inline constexpr int kEosAfterTokens = 342;  // generated tokens, the EOS included
inline constexpr int32_t kStoryEndId = 1;

// Writes the copy into dir and returns its path ("" after a test failure).
inline std::string WriteStoryEndIsEosModel(const TempDir& dir) {
  std::string bytes = ReadBytes(SharedDir() + "/models/stories260K-f32.gguf");
  // GGUF metadata: key as (uint64 length, bytes), then uint32 value type, then the value.
  const std::string key = "tokenizer.ggml.eos_token_id";
  std::string needle(sizeof(uint64_t), '\0');
  const uint64_t len = key.size();
  std::memcpy(needle.data(), &len, sizeof(len));
  needle += key;
  const size_t at = bytes.find(needle);
  if (at == std::string::npos || at + needle.size() + 8 > bytes.size()) {
    ADD_FAILURE() << "no " << key << " in stories260K-f32.gguf";
    return "";
  }
  uint32_t type = 0, value = 0;
  std::memcpy(&type, bytes.data() + at + needle.size(), 4);
  std::memcpy(&value, bytes.data() + at + needle.size() + 4, 4);
  if (type != 4 /* UINT32 */ || value != 2) {
    ADD_FAILURE() << key << " has type " << type << " value " << value << ", want UINT32 2";
    return "";
  }
  const uint32_t story_end = kStoryEndId;
  std::memcpy(bytes.data() + at + needle.size() + 4, &story_end, 4);
  const std::string path = dir.File("stories260K-eos1.gguf");
  WriteBytes(path, bytes);
  return path;
}

}  // namespace flotilla::testing
