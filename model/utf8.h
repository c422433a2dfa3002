// UTF-8 helpers for streaming text out of a tokenizer whose tokens may split characters.
#pragma once

#include <string>
#include <string_view>

namespace flotilla {

// Length of the UTF-8 sequence a lead byte announces (1 for invalid lead bytes).
int Utf8SeqLen(unsigned char lead);

// Replaces every invalid or truncated sequence of `s` with U+FFFD.
std::string SanitizeUtf8(std::string_view s);

// Feeds token bytes in and hands out only whole, valid UTF-8 characters: an incomplete
// character at the end is held back until the next bytes complete it (or Finish()).
class Utf8Stream {
 public:
  // Returns the text that became complete with these bytes.
  std::string Push(std::string_view bytes);
  // Returns whatever is held back, with an incomplete tail replaced by U+FFFD.
  std::string Finish();
  // Bytes held back waiting for the rest of a character.
  size_t pending() const { return pending_.size(); }

 private:
  std::string pending_;
};

}  // namespace flotilla
