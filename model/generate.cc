#include "model/generate.h"

#include <chrono>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/utf8.h"

namespace flotilla {
namespace {

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

absl::Status CheckFits(const Executor& ex, size_t n_tokens) {
  const LlamaConfig& c = ex.config();
  if (n_tokens > static_cast<size_t>(c.context_length)) {
    return absl::InvalidArgumentError(absl::StrCat(n_tokens, " tokens exceed the context length of ", c.context_length));
  }
  const size_t blocks = (n_tokens + ex.block_size() - 1) / ex.block_size();
  if (blocks > static_cast<size_t>(ex.num_kv_blocks())) {
    return absl::ResourceExhaustedError(absl::StrCat(n_tokens, " tokens need ", blocks, " KV blocks; the pool has ", ex.num_kv_blocks()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GenerateResult> GenerateSingle(Executor& ex, const Tokenizer& tok, std::span<const int32_t> prompt,
                                              const GenerateOptions& o, const std::function<void(std::string_view)>& on_text) {
  RETURN_IF_ERROR(ValidateSamplingParams(o.sampling));
  if (prompt.empty()) return absl::InvalidArgumentError("empty prompt");
  const LlamaConfig& c = ex.config();
  const size_t total = std::min<size_t>(prompt.size() + o.max_tokens, c.context_length);
  RETURN_IF_ERROR(CheckFits(ex, prompt.size()));
  std::vector<int32_t> table(std::min<size_t>((total + ex.block_size() - 1) / ex.block_size(), ex.num_kv_blocks()));
  std::iota(table.begin(), table.end(), 0);

  GenerateResult r;
  std::vector<int32_t> seq(prompt.begin(), prompt.end());
  std::vector<float> logits(c.vocab_size);
  Sampler sampler(o.sampling, c.vocab_size);
  Utf8Stream utf8;
  ForwardBatch batch;
  const auto t0 = std::chrono::steady_clock::now();
  // Prefill in chunks of the executor's batch limit; logits only for the last prompt token.
  for (size_t start = 0; start < prompt.size(); start += ex.max_batch_tokens()) {
    const size_t end = std::min(prompt.size(), start + ex.max_batch_tokens());
    batch.Clear();
    const int32_t s = batch.AddSequence(table);
    for (size_t i = start; i < end; ++i) batch.Add(prompt[i], static_cast<int32_t>(i), s, i + 1 == prompt.size());
    RETURN_IF_ERROR(ex.Forward(batch, logits));
  }
  const auto t1 = std::chrono::steady_clock::now();
  r.prefill_seconds = Seconds(t0, t1);
  for (int n = 0; n < o.max_tokens; ++n) {
    const SampleResult s = sampler.Sample(logits, seq, prompt.size());
    if (o.stop_at_eos && tok.IsEnd(s.token)) break;
    r.tokens.push_back(s.token);
    seq.push_back(s.token);
    const std::string text = utf8.Push(tok.TokenBytes(s.token));
    r.text += text;
    if (on_text && !text.empty()) on_text(text);
    if (seq.size() >= total) break;
    if ((seq.size() - 1) / ex.block_size() >= table.size()) break;  // KV pool is full
    batch.Clear();
    const int32_t si = batch.AddSequence(table);
    batch.Add(s.token, static_cast<int32_t>(seq.size() - 1), si, true);
    RETURN_IF_ERROR(ex.Forward(batch, logits));
  }
  const std::string tail = utf8.Finish();
  r.text += tail;
  if (on_text && !tail.empty()) on_text(tail);
  r.decode_seconds = Seconds(t1, std::chrono::steady_clock::now());
  return r;
}

absl::StatusOr<std::vector<float>> ForwardAllPositions(Executor& ex, std::span<const int32_t> tokens) {
  RETURN_IF_ERROR(CheckFits(ex, tokens.size()));
  const int V = ex.config().vocab_size;
  std::vector<int32_t> table((tokens.size() + ex.block_size() - 1) / ex.block_size());
  std::iota(table.begin(), table.end(), 0);
  std::vector<float> all(tokens.size() * V);
  ForwardBatch batch;
  for (size_t start = 0; start < tokens.size(); start += ex.max_batch_tokens()) {
    const size_t end = std::min(tokens.size(), start + ex.max_batch_tokens());
    batch.Clear();
    const int32_t s = batch.AddSequence(table);
    for (size_t i = start; i < end; ++i) batch.Add(tokens[i], static_cast<int32_t>(i), s, true);
    RETURN_IF_ERROR(ex.Forward(batch, std::span<float>(all.data() + start * V, (end - start) * V)));
  }
  return all;
}

}  // namespace flotilla
