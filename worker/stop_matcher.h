// Stop sequences over streamed text. Text is released only when it can no longer be the start
// of a stop sequence, so a client never sees a stop string (or part of one) that later matched.
// Not thread-safe; one per request.
#pragma once

#include <string>
#include <vector>

namespace flotilla::worker {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Adds new text. Returns the text that is now safe to emit; sets *stopped when a stop
  // sequence matched (the returned text then ends just before it; later input is ignored).
  std::string Push(const std::string& text, bool* stopped);
  // Releases whatever is held back (the stream ended for another reason).
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  size_t longest_ = 0;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace flotilla::worker
