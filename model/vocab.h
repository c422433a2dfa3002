// The token vocabulary as stored in a model file (GGUF tokenizer.ggml.* or a llama2.c tokenizer).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace flotilla {

// Values as in GGUF's tokenizer.ggml.token_type.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct Vocab {
  std::vector<std::string> pieces;  // SentencePiece form: spaces are U+2581
  std::vector<float> scores;
  std::vector<TokenType> types;
  int32_t bos_id = 1;
  int32_t eos_id = 2;
  // Further tokens that end a generation as EOS does (llama2.c models end a story with BOS).
  std::vector<int32_t> extra_end_ids;
  int32_t unk_id = 0;
  bool add_bos = true;
  bool add_space_prefix = true;

  int32_t size() const { return static_cast<int32_t>(pieces.size()); }
};

}  // namespace flotilla
