// SentencePiece-style BPE with scores (GGUF tokenizer.ggml.model = "llama", and llama2.c):
// the text gets a leading space, spaces become U+2581, characters are merged pairwise by the
// score of the merged piece, and characters with no piece fall back to <0xNN> byte tokens.
// User text is always text: it never turns into control tokens such as <s>.
// Immutable after construction; safe to share between threads.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "model/vocab.h"

namespace flotilla {

class Tokenizer {
 public:
  explicit Tokenizer(Vocab vocab);

  std::vector<int32_t> Encode(std::string_view text, bool add_bos) const;

  // The raw bytes a token stands for (may be part of a UTF-8 character); empty for control tokens.
  std::string TokenBytes(int32_t id) const;
  // Decodes ids to valid UTF-8 (invalid bytes become U+FFFD).
  std::string Decode(std::span<const int32_t> ids) const;

  int32_t bos_id() const { return vocab_.bos_id; }
  int32_t eos_id() const { return vocab_.eos_id; }
  // True for EOS and the vocabulary's other end-of-generation tokens.
  bool IsEnd(int32_t id) const {
    if (id == vocab_.eos_id) return true;
    for (int32_t e : vocab_.extra_end_ids) {
      if (id == e) return true;
    }
    return false;
  }
  bool add_bos() const { return vocab_.add_bos; }
  int32_t vocab_size() const { return vocab_.size(); }
  const Vocab& vocab() const { return vocab_; }
  // The piece string of a token (SentencePiece form), for debugging and logprob output.
  const std::string& Piece(int32_t id) const { return vocab_.pieces[id]; }

 private:
  int32_t Lookup(std::string_view piece) const;

  Vocab vocab_;
  absl::flat_hash_map<std::string, int32_t> piece_to_id_;  // mergeable pieces only
  int32_t byte_to_id_[256];
};

}  // namespace flotilla
