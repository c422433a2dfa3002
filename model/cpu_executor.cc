// The CPU backend: the Llama forward pass over the kernel table, one thread pool, and a paged
// f32 KV cache. All buffers are sized at construction for max_batch_tokens; Forward allocates
// nothing.
#include <spdlog/spdlog.h>

#include <cmath>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/quant.h"
#include "model/executor.h"

namespace flotilla {
namespace {

using kernels::cpu::KernelTable;
using kernels::cpu::ThreadPool;

class CpuExecutor final : public Executor {
 public:
  CpuExecutor(std::shared_ptr<const LoadedModel> model, const ExecutorOptions& o, int threads,
              const KernelTable& kt)
      : model_(std::move(model)),
        c_(model_->config),
        w_(model_->weights),
        kt_(kt),
        pool_(threads),
        num_blocks_(o.num_kv_blocks),
        block_size_(o.block_size),
        max_tokens_(o.max_batch_tokens) {
    const int64_t T = max_tokens_;
    x_.resize(T * c_.dim);
    xb_.resize(T * std::max(c_.dim, c_.q_dim()));
    q_.resize(T * c_.q_dim());
    k_.resize(T * c_.kv_dim());
    v_.resize(T * c_.kv_dim());
    att_.resize(T * c_.q_dim());
    gate_.resize(T * c_.ffn_dim);
    up_.resize(T * c_.ffn_dim);
    tables_.resize(T);
    int64_t scratch = 0;
    auto need = [&](const WeightMatrix& m) {
      scratch = std::max(scratch, kernels::cpu::MatMulScratchBytes(m.type, T, m.cols));
    };
    need(w_.output);
    for (const auto& l : w_.layers) {
      for (const WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) need(*m);
    }
    qscratch_.resize(scratch);
    attn_stride_ = c_.context_length;
    attn_scratch_.resize(static_cast<size_t>(pool_.size()) * attn_stride_);
    // Rotary angles in double, rounded once: theta_i = pos * base^(-2i/head_dim).
    const int half = c_.head_dim / 2;
    rope_cos_.resize(static_cast<size_t>(c_.context_length) * half);
    rope_sin_.resize(rope_cos_.size());
    for (int p = 0; p < c_.context_length; ++p) {
      for (int i = 0; i < half; ++i) {
        const double a = p * std::pow(static_cast<double>(c_.rope_theta), -2.0 * i / c_.head_dim);
        rope_cos_[static_cast<size_t>(p) * half + i] = static_cast<float>(std::cos(a));
        rope_sin_[static_cast<size_t>(p) * half + i] = static_cast<float>(std::sin(a));
      }
    }
    // The KV cache is left uninitialised: pages are committed only as blocks are first written.
    layer_kv_floats_ = static_cast<int64_t>(num_blocks_) * c_.kv_dim() * block_size_;
    kv_.reset(new float[2 * c_.n_layers * layer_kv_floats_]);
  }

  const LlamaConfig& config() const override { return c_; }
  int num_kv_blocks() const override { return num_blocks_; }
  int block_size() const override { return block_size_; }
  int max_batch_tokens() const override { return max_tokens_; }
  std::string Describe() const override {
    return absl::StrCat("cpu ", kt_.isa, ", ", pool_.size(), " thread", pool_.size() == 1 ? "" : "s");
  }

  absl::Status Forward(const ForwardBatch& b, std::span<float> logits) override;

 private:
  float* KCache(int l) { return kv_.get() + (2 * static_cast<int64_t>(l)) * layer_kv_floats_; }
  float* VCache(int l) { return kv_.get() + (2 * static_cast<int64_t>(l) + 1) * layer_kv_floats_; }
  void MatMul(const WeightMatrix& w, const float* x, int64_t M, float* y) {
    kernels::cpu::MatMul(kt_, pool_, w, x, M, y, w.rows, qscratch_.data());
  }
  // Runs f(t) for every token, spread over the pool when the batch is large enough to pay.
  template <class F>
  void ForTokens(int64_t T, F&& f) {
    if (T < 8) {
      for (int64_t t = 0; t < T; ++t) f(t);
      return;
    }
    pool_.ParallelFor(T, 1, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) f(t);
    });
  }

  std::shared_ptr<const LoadedModel> model_;
  const LlamaConfig& c_;
  const LlamaWeights& w_;
  const KernelTable& kt_;
  ThreadPool pool_;
  const int num_blocks_;
  const int block_size_;
  const int max_tokens_;
  std::vector<float> x_, xb_, q_, k_, v_, att_, gate_, up_;
  std::vector<const int32_t*> tables_;
  std::vector<char> qscratch_;
  std::vector<float> attn_scratch_;
  int64_t attn_stride_ = 0;
  std::vector<float> rope_cos_, rope_sin_;
  int64_t layer_kv_floats_ = 0;
  std::unique_ptr<float[]> kv_;
};

absl::Status CpuExecutor::Forward(const ForwardBatch& b, std::span<float> logits) {
  RETURN_IF_ERROR(ValidateBatch(b, c_, num_blocks_, block_size_, max_tokens_, logits.size()));
  const int64_t T = static_cast<int64_t>(b.size());
  if (T == 0) return absl::OkStatus();
  const int dim = c_.dim, hd = c_.head_dim, kv = c_.kv_dim(), qd = c_.q_dim(), ffn = c_.ffn_dim, bs = block_size_;
  const int half = hd / 2;
  for (int64_t t = 0; t < T; ++t) tables_[t] = b.block_tables[b.seq[t]].data();

  // Embedding lookup.
  ForTokens(T, [&](int64_t t) {
    const auto* row = static_cast<const char*>(w_.token_embd.data) + b.tokens[t] * w_.token_embd.row_bytes;
    kernels::DequantizeRow(w_.token_embd.type, row, x_.data() + t * dim, dim);
  });

  kernels::cpu::PagedAttentionArgs attn{};
  attn.q = q_.data();
  attn.q_stride = qd;
  attn.out = att_.data();
  attn.out_stride = qd;
  attn.n_heads = c_.n_heads;
  attn.n_kv_heads = c_.n_kv_heads;
  attn.head_dim = hd;
  attn.block_size = bs;
  attn.positions = b.positions.data();
  attn.block_tables = tables_.data();
  attn.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t block_stride = static_cast<int64_t>(kv) * bs;

  for (int l = 0; l < c_.n_layers; ++l) {
    const LayerWeights& L = w_.layers[l];
    ForTokens(T, [&](int64_t t) { kt_.rms_norm(x_.data() + t * dim, L.attn_norm, xb_.data() + t * dim, dim, c_.norm_eps); });
    MatMul(L.wq, xb_.data(), T, q_.data());
    MatMul(L.wk, xb_.data(), T, k_.data());
    MatMul(L.wv, xb_.data(), T, v_.data());
    float* kc = KCache(l);
    float* vc = VCache(l);
    ForTokens(T, [&](int64_t t) {
      const int pos = b.positions[t];
      const float* cs = rope_cos_.data() + static_cast<int64_t>(pos) * half;
      const float* sn = rope_sin_.data() + static_cast<int64_t>(pos) * half;
      kt_.rope(q_.data() + t * qd, c_.n_heads, hd, cs, sn);
      kt_.rope(k_.data() + t * kv, c_.n_kv_heads, hd, cs, sn);
      // Store K and V in the token's slot: block table[pos / bs], slot pos % bs.
      const int64_t base = tables_[t][pos / bs] * block_stride + static_cast<int64_t>(pos % bs) * hd;
      for (int h = 0; h < c_.n_kv_heads; ++h) {
        const int64_t off = base + static_cast<int64_t>(h) * bs * hd;
        std::memcpy(kc + off, k_.data() + t * kv + h * hd, sizeof(float) * hd);
        std::memcpy(vc + off, v_.data() + t * kv + h * hd, sizeof(float) * hd);
      }
    });
    attn.k_cache = kc;
    attn.v_cache = vc;
    kernels::cpu::PagedAttention(kt_, pool_, attn, T, attn_scratch_.data(), attn_stride_);
    MatMul(L.wo, att_.data(), T, xb_.data());
    ForTokens(T, [&](int64_t t) { kt_.add(x_.data() + t * dim, xb_.data() + t * dim, x_.data() + t * dim, dim); });

    ForTokens(T, [&](int64_t t) { kt_.rms_norm(x_.data() + t * dim, L.ffn_norm, xb_.data() + t * dim, dim, c_.norm_eps); });
    MatMul(L.w_gate, xb_.data(), T, gate_.data());
    MatMul(L.w_up, xb_.data(), T, up_.data());
    ForTokens(T, [&](int64_t t) { kt_.silu_mul(gate_.data() + t * ffn, up_.data() + t * ffn, gate_.data() + t * ffn, ffn); });
    MatMul(L.w_down, gate_.data(), T, xb_.data());
    ForTokens(T, [&](int64_t t) { kt_.add(x_.data() + t * dim, xb_.data() + t * dim, x_.data() + t * dim, dim); });
  }

  // Final norm and logits only for the tokens that asked.
  int64_t n = 0;
  for (int64_t t = 0; t < T; ++t) {
    if (!b.want_logits[t]) continue;
    kt_.rms_norm(x_.data() + t * dim, w_.output_norm, xb_.data() + n * dim, dim, c_.norm_eps);
    ++n;
  }
  if (n > 0) MatMul(w_.output, xb_.data(), n, logits.data());
  return absl::OkStatus();
}

}  // namespace

int64_t CpuKvBytesPerBlock(const LlamaConfig& c, int block_size) {
  return 2LL * c.n_layers * c.kv_dim() * block_size * static_cast<int64_t>(sizeof(float));
}

absl::Status ValidateBatch(const ForwardBatch& b, const LlamaConfig& c, int num_kv_blocks, int block_size,
                           int max_batch_tokens, size_t logits_size) {
  const size_t T = b.tokens.size();
  if (b.positions.size() != T || b.seq.size() != T || b.want_logits.size() != T) {
    return absl::InvalidArgumentError("batch arrays differ in length");
  }
  if (T > static_cast<size_t>(max_batch_tokens)) {
    return absl::InvalidArgumentError(absl::StrCat("batch of ", T, " tokens exceeds the limit of ", max_batch_tokens));
  }
  size_t n_logits = 0;
  for (size_t t = 0; t < T; ++t) {
    if (b.tokens[t] < 0 || b.tokens[t] >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", b.tokens[t], " is outside the vocabulary of ", c.vocab_size));
    }
    const int32_t pos = b.positions[t];
    if (pos < 0 || pos >= c.context_length) {
      return absl::InvalidArgumentError(absl::StrCat("position ", pos, " is outside the context of ", c.context_length));
    }
    if (b.seq[t] < 0 || static_cast<size_t>(b.seq[t]) >= b.block_tables.size()) {
      return absl::InvalidArgumentError(absl::StrCat("token ", t, " names sequence ", b.seq[t], " which the batch lacks"));
    }
    const auto& table = b.block_tables[b.seq[t]];
    const size_t need = static_cast<size_t>(pos) / block_size + 1;
    if (table.size() < need) {
      return absl::InvalidArgumentError(absl::StrCat("position ", pos, " needs ", need, " KV blocks; the table has ", table.size()));
    }
    for (size_t i = 0; i < need; ++i) {
      if (table[i] < 0 || table[i] >= num_kv_blocks) {
        return absl::InvalidArgumentError(absl::StrCat("KV block id ", table[i], " is outside the pool of ", num_kv_blocks));
      }
    }
    n_logits += b.want_logits[t] ? 1 : 0;
  }
  if (logits_size < n_logits * static_cast<size_t>(c.vocab_size)) {
    return absl::InvalidArgumentError(absl::StrCat("logits buffer of ", logits_size, " floats is too small for ", n_logits, " rows"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Executor>> MakeCpuExecutor(std::shared_ptr<const LoadedModel> model,
                                                          const ExecutorOptions& options) {
  ExecutorOptions o = options;
  const LlamaConfig& c = model->config;
  if (o.block_size <= 0 || o.block_size > 1024) {
    return absl::InvalidArgumentError(absl::StrCat("KV block size ", o.block_size, " must be in [1, 1024]"));
  }
  if (o.max_batch_tokens <= 0 || o.max_batch_tokens > 1 << 16) {
    return absl::InvalidArgumentError(absl::StrCat("max batch tokens ", o.max_batch_tokens, " must be in [1, 65536]"));
  }
  if (o.num_kv_blocks == 0) o.num_kv_blocks = (c.context_length + o.block_size - 1) / o.block_size + 1;
  if (o.num_kv_blocks < 0) return absl::InvalidArgumentError("KV block count must be positive");
  int threads = o.threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (threads > 256) return absl::InvalidArgumentError(absl::StrCat("thread count ", threads, " is too large"));
  const KernelTable* kt = &kernels::cpu::BestKernels();
  if (!o.isa.empty()) {
    kt = kernels::cpu::KernelsByName(o.isa.c_str());
    if (!kt) return absl::InvalidArgumentError("kernel variant '" + o.isa + "' is unknown or unsupported on this CPU");
  }
  return std::unique_ptr<Executor>(new CpuExecutor(std::move(model), o, threads, *kt));
}

}  // namespace flotilla
