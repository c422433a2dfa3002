// The CPU backend: the Llama forward pass over the kernel table, one thread pool, and a paged
// f32 KV cache. All buffers are sized at construction for max_batch_tokens; Forward allocates
// nothing.
//
// A forward pass is one parallel region: every thread of the pool walks the same sequence of
// steps and meets the others at a barrier between dependent steps (about nine per layer for a
// batch, four for one token, one for one token of a tiny model: see Step::replicate),
// instead of a fork/join round per kernel call. Matrix products are handed out in units of rows
// whose size depends only on the matrix shape, claimed dynamically when a step is big (so a
// thread slowed by a busy host does not hold the others up for its whole share) and split
// statically when it is small (no atomics: a tiny model's steps are a few microseconds), in
// ranges sized by each thread's measured speed for models big enough to time them (ShareBalance:
// the host sometimes runs one core a third slower than the other).
// Q, K and V are one step whose units are heads, so the thread that computes a head also
// applies RoPE to it and stores K and V into the cache; gate and up are one step that applies
// SiLU*up to its rows; the output and down projections add into the residual stream in place.
// Each output element's arithmetic depends only on its own row and token, so a token's results
// are bitwise the same alone or in any batch and on any number of threads.
//
// That also makes it safe to change the thread count between steps: when barrier waits show
// that a peer thread arrives late, the executor times a few steps on the calling thread alone
// and keeps running alone for a while only if that is faster per token (SoloFallback: a peer
// descheduled by an oversubscribed host costs a scheduler time slice per barrier; a peer on a
// slower core costs less than its work is worth). Single-token passes short enough for barriers to
// matter also run alone, or (a tiny model) with the small products replicated on every thread,
// whenever that measured faster than the plain pool (ThreadModeChooser: it depends on how far
// apart the host placed the threads). FLOTILLA_ADAPTIVE_THREADS=0 turns off running alone (in
// both cases); the choice between the two ways of using the pool stays.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string_view>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/huge_pages.h"
#include "common/memory_info.h"
#include "common/status_macros.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/quant.h"
#include "model/cpu_buffers.h"
#include "model/executor.h"
#include "model/share_balance.h"
#include "model/solo_fallback.h"
#include "model/thread_mode.h"

namespace flotilla {
namespace {

using kernels::DType;
using kernels::cpu::KernelTable;
using kernels::cpu::MatMulArgs;
using kernels::cpu::ThreadPool;

// A step whose total multiply-adds are below this is split statically between threads.
constexpr int64_t kDynamicWork = int64_t{1} << 20;
// Steps with at least this many tokens are compute-bound; fewer, memory-bound (see Units).
constexpr int64_t kDynamicTokens = 4;
// A layer whose output projection and feed-forward products together are at most this many
// multiply-adds per token has them computed whole by every thread in a single-token pass (see
// Step::replicate).
constexpr int64_t kReplicateWork = int64_t{1} << 16;

bool EnvOn(const char* name) {
  const char* e = std::getenv(name);
  return !(e && std::string_view(e) == "0");
}
bool AdaptiveThreads() { return EnvOn("FLOTILLA_ADAPTIVE_THREADS"); }

// Models with at least this many multiply-adds per token in their products size the threads'
// static shares by measured speed (ShareBalance); below it a pass is microseconds and reading
// the clock around each share would cost more than an uneven split. FLOTILLA_BALANCE_SHARES=0
// keeps the shares equal.
constexpr int64_t kBalanceWork = int64_t{1} << 23;

// Rows per unit of work for a matrix: about 32 units, a multiple of 16 rows, at least 16.
// It depends only on the matrix shape, never on the batch or the thread count.
int64_t UnitRows(int64_t rows) { return std::max<int64_t>(16, (rows / 32 + 15) / 16 * 16); }

class CpuExecutor final : public Executor {
 public:
  CpuExecutor(std::shared_ptr<const LoadedModel> model, const ExecutorOptions& o, int threads,
              const KernelTable& kt)
      : model_(std::move(model)),
        c_(model_->config),
        w_(model_->weights),
        kt_(kt),
        pool_(threads),
        shares_(threads),
        num_blocks_(o.num_kv_blocks),
        block_size_(o.block_size),
        max_tokens_(o.max_batch_tokens),
        adaptive_(AdaptiveThreads()),
        kv_type_(o.kv_type) {
    const int64_t T = max_tokens_;
    x_.resize(T * c_.dim);
    xb_.resize(T * std::max(c_.dim, c_.q_dim()));
    q_.resize(T * c_.q_dim());
    k_.resize(T * c_.kv_dim());
    v_.resize(T * c_.kv_dim());
    att_.resize(std::max<int64_t>(T, 2) * c_.q_dim());  // two rows at least: see Layer
    gate_.resize(T * c_.ffn_dim);
    up_.resize(T * c_.ffn_dim);
    tables_.resize(T);
    logit_rows_.resize(T);
    // Quantized activations: one row per token, for the widest input of any quantized matrix.
    // Q8_0 and Q4_0 weights read the same form in every variant, so one buffer serves a step.
    int64_t act_row = 0;
    auto need = [&](const WeightMatrix& m) { act_row = std::max(act_row, kt_.act_row_bytes(m.type, m.cols)); };
    need(w_.output);
    for (const auto& l : w_.layers) {
      for (const WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) need(*m);
    }
    act_.Resize(T * act_row);
    own_act_stride_ = (act_row + 127) / 128 * 128;
    own_act_.Resize(pool_.size() * own_act_stride_);
    own_xb_.resize(static_cast<size_t>(pool_.size()) * LinePairFloats(c_.dim));
    const int64_t replicated = int64_t{c_.dim} * (c_.q_dim() + 3 * int64_t{c_.ffn_dim});
    // Single-token passes of a small model choose among the pool, the pool with the small products
    // replicated, and (adaptive_) the calling thread alone, by timing them (ThreadModeChooser).
    std::vector<ThreadModeChooser::Mode> modes;
    if (OwnHeads(1, pool_.size()) && replicated <= kReplicateWork) {
      modes.push_back(ThreadModeChooser::Mode::kReplicate);
    }
    if (adaptive_) modes.push_back(ThreadModeChooser::Mode::kSolo);
    choose_mode_ = !modes.empty();
    one_token_mode_ = ThreadModeChooser(ThreadModeChooser::Options{}, std::move(modes));
    own_rows_.resize(static_cast<size_t>(pool_.size()) * OwnRowsFloats());
    int64_t macs = w_.output.rows * w_.output.cols;
    for (const LayerWeights& l : w_.layers) {
      for (const WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) macs += m->rows * m->cols;
    }
    balance_ = pool_.size() > 1 && macs >= kBalanceWork && EnvOn("FLOTILLA_BALANCE_SHARES");
    busy_.resize(pool_.size());
    pass_work_.resize(pool_.size());
    pass_ns_.resize(pool_.size());
    attn_stride_ = LinePairFloats(
        kernels::cpu::AttentionGroupScratch(c_.n_heads, c_.n_kv_heads, c_.head_dim, c_.context_length));
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
    // The KV cache is committed here, on huge pages, rather than page by page as blocks are
    // first written: a step that opened new blocks for a batch of 16 sequences (2,300 page faults
    // on the 110M shape) took several steps' time, and the worker's memory is what it says from
    // the start (as llama.cpp and vLLM reserve theirs).
    kv_row_bytes_ = KvRowBytes(kv_type_, c_.head_dim);
    layer_kv_bytes_ = static_cast<int64_t>(num_blocks_) * c_.n_kv_heads * block_size_ * kv_row_bytes_;
    const int64_t kv_bytes = 2 * c_.n_layers * layer_kv_bytes_;
    if (kv_.Allocate(static_cast<size_t>(kv_bytes))) {
      pool_.ParallelFor(kv_bytes, 4096, [&](int64_t b, int64_t e) { std::memset(kv_.data() + b, 0, e - b); });
    }
    // FLOTILLA_PACK_WEIGHTS=0 reads the weights in the file map for a process (benchmarks
    // compare the two).
    if (has_kv() && o.pack_weights && EnvOn("FLOTILLA_PACK_WEIGHTS")) CopyWeights();
  }

  const LlamaConfig& config() const override { return c_; }
  int num_kv_blocks() const override { return num_blocks_; }
  int block_size() const override { return block_size_; }
  int max_batch_tokens() const override { return max_tokens_; }
  // Whether the KV cache could be mapped.
  bool has_kv() const { return kv_.data() != nullptr; }
  std::string Describe() const override {
    return absl::StrCat("cpu ", kt_.isa, ", ", pool_.size(), " thread", pool_.size() == 1 ? "" : "s", ", ",
                        KvDTypeName(kv_type_), " KV", packed_matrices_ > 0   ? ", packed weights"
                        : copied_matrices_ > 0 ? ", copied weights"
                                               : "");
  }

  absl::Status Forward(const ForwardBatch& b, std::span<float> logits) override;

  // The pool's threads take the items in contiguous shares and steal from each other's at the
  // end. On one thread, or while steps run alone because the host took a peer away, in order.
  void ParallelFor(int64_t n, const std::function<void(int64_t)>& f) override {
    if (pool_.size() == 1 || fallback_.alone() || n < 2) {
      for (int64_t i = 0; i < n; ++i) f(i);
      return;
    }
    pool_.Run([&](int tid, int) { pool_.ForEach(tid, n, f); });
  }

 private:
  // Copies the matrices of the products into weights_ (on huge pages, see common/huge_pages.h),
  // in the kernel table's packed layout where it has one and as stored otherwise, and releases
  // each matrix's pages of the file map as it goes: the products read only the copy, so the
  // process holds one copy of the weights, not two (a tied token embedding is still read row by
  // row for lookups and comes back from the file page by page as needed). Copying unpacked rows
  // as they are pays for the huge pages alone (1.1B-shape Q4_0 decode on the AVX2 kernels +7 %).
  // Matrices outside the file map are left where they are: copying memory the model owns would
  // hold two copies.
  void CopyWeights() {
    const MappedFile* file = model_->file.get();
    auto in_file = [&](const WeightMatrix& m) {
      const auto* p = static_cast<const uint8_t*>(m.data);
      return file != nullptr && p >= file->data() && p + m.rows * m.row_bytes <= file->data() + file->size();
    };
    std::vector<WeightMatrix*> ms;
    auto add = [&](WeightMatrix& m) {
      if (!m.packed && in_file(m)) ms.push_back(&m);
    };
    for (auto& l : w_.layers) {
      for (WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) add(*m);
    }
    add(w_.output);
    // An untied token embedding too, as stored (its rows are looked up, not multiplied): read
    // in the file map, each lookup of a random row cost about 4 us on this VM (a TLB miss whose
    // page walk misses the caches; prefetching the rows did not help), 1.7 % of a 110M batch-16
    // step. A tied one stays in the file map: copying it as well would hold it twice.
    if (w_.token_embd.data != w_.output.data) add(w_.token_embd);
    if (ms.empty()) return;
    auto packs = [&](const WeightMatrix& m) { return &m != &w_.token_embd && kernels::cpu::CanPack(kt_, m); };
    auto row_bytes = [&](const WeightMatrix& m) { return packs(m) ? kt_.packed_row_bytes(m.type, m.cols) : m.row_bytes; };
    // Each matrix starts on 64 bytes (packed layouts are read with aligned loads).
    auto span = [&](const WeightMatrix& m) { return (m.rows * row_bytes(m) + 63) / 64 * 64; };
    int64_t total = 0;
    for (const WeightMatrix* m : ms) total += span(*m);
    // 64 bytes past the end as for every buffer the kernels read with whole-vector loads.
    // FLOTILLA_HUGE_PAGES=0 keeps the copy on 4 KiB pages (benchmarks compare the two).
    if (!weights_.Allocate(total + 64, EnvOn("FLOTILLA_HUGE_PAGES"))) {
      spdlog::warn("CPU executor: cannot allocate {} MB for a copy of the weights; reading them as stored", total >> 20);
      return;
    }
    char* dst = weights_.data();
    for (WeightMatrix* m : ms) {
      const bool pack = packs(*m);
      const int64_t rb = row_bytes(*m);
      const auto* src = static_cast<const char*>(m->data);
      // In chunks of about 4 MiB of the file, each released once copied, so that at no point
      // both copies of much more than a chunk are resident (the peak stays about one model).
      // Chunks and each thread's piece start on multiples of kPackRowAlign rows, as pack_rows
      // requires.
      constexpr int64_t kAlign = kernels::cpu::kPackRowAlign;
      const int64_t chunk = std::max<int64_t>(1, (int64_t{4} << 20) / m->row_bytes / kAlign) * kAlign;
      for (int64_t c0 = 0; c0 < m->rows; c0 += chunk) {
        const int64_t c1 = std::min(m->rows, c0 + chunk);
        pool_.Run([&](int tid, int nt) {
          const int64_t pieces = (c1 - c0 + kAlign - 1) / kAlign;
          const int64_t r0 = c0 + pieces * tid / nt * kAlign;
          const int64_t r1 = std::min(c1, c0 + pieces * (tid + 1) / nt * kAlign);
          if (r0 >= r1) return;
          if (pack) {
            kt_.pack_rows(m->type, src + r0 * m->row_bytes, m->row_bytes, r1 - r0, m->cols, dst + r0 * rb);
          } else {
            std::memcpy(dst + r0 * rb, src + r0 * m->row_bytes, static_cast<size_t>((r1 - r0) * rb));
          }
        });
        // From the matrix start: a page shared with the previous chunk goes once both are done.
        file->Release(src, static_cast<size_t>(c1 * m->row_bytes));
      }
      const int64_t bytes = span(*m);  // before row_bytes changes below
      m->data = dst;
      m->row_bytes = rb;
      m->packed = pack;
      dst += bytes;
      ++(pack ? packed_matrices_ : copied_matrices_);
    }
  }

  // Per-call state shared by the threads of one forward pass.
  struct Step {
    const ForwardBatch* batch;
    int64_t T;
    int64_t n_logits;
    float* logits;
    kernels::cpu::PagedAttentionArgs attn;
    // One token of a tiny model on several threads: each thread splits only Q/K/V and attention
    // (by KV group) and the logits with the others, and computes the residual stream, the output
    // projection and the feed-forward products whole, in its own buffers (Rows). Splitting those
    // products costs more than computing them: each split is a barrier and then the other core's
    // half of the result crossing between the cores (0.3-0.7 us together on this project's VMs,
    // TSC-timed per phase), for products of a microsecond or two. So a layer meets the other
    // threads once (after attention) instead of four times. Every thread's values are the ones a
    // single thread computes, bit for bit.
    bool replicate;
  };
  // Where a pass keeps its residual stream (x), the products' outputs before they are added in
  // (out), the feed-forward's gate and up rows and the rows of Q, K and V: shared by the threads,
  // or one set per thread (Step::replicate). Per thread, even the Q/K/V rows, which each thread
  // writes only for its own heads: with the threads' heads side by side in one buffer, a 2-thread
  // stories260K pass ran Q/K/V and attention 1.5x slower per head than one thread did (lines,
  // and the pairs the hardware prefetches together, crossing between the cores).
  struct Rows {
    float* x;
    float* out;
    float* gate;
    float* up;
    float* q;
    float* k;
    float* v;
  };
  // One thread's own rows: x, out (dim each), gate, up (ffn each), q, k, v; each padded.
  int64_t OwnRowsFloats() const {
    auto p = [](int64_t n) { return LinePairFloats(n); };
    return 2 * (p(c_.dim) + p(c_.ffn_dim)) + p(c_.q_dim()) + 2 * p(c_.kv_dim());
  }
  Rows RowsFor(const Step& s, int tid, int nt) {
    Rows r{x_.data(), xb_.data(), gate_.data(), up_.data(), q_.data(), k_.data(), v_.data()};
    const int64_t d = LinePairFloats(c_.dim), f = LinePairFloats(c_.ffn_dim);
    float* base = own_rows_.data() + tid * OwnRowsFloats();
    if (s.replicate) r.x = base, r.out = base + d, r.gate = base + 2 * d, r.up = base + 2 * d + f;
    if (OwnHeads(s.T, nt)) {
      r.q = base + 2 * (d + f);
      r.k = r.q + LinePairFloats(c_.q_dim());
      r.v = r.k + LinePairFloats(c_.kv_dim());
    }
    return r;
  }
  // One token on several threads, each taking whole KV groups through Q/K/V and attention.
  bool OwnHeads(int64_t T, int nt) const { return T == 1 && nt > 1 && c_.n_kv_heads % nt == 0; }

  char* KCache(int l) { return kv_.data() + (2 * static_cast<int64_t>(l)) * layer_kv_bytes_; }
  char* VCache(int l) { return kv_.data() + (2 * static_cast<int64_t>(l) + 1) * layer_kv_bytes_; }

  void Region(const Step& s, int tid, int nt);
  void Layer(const Step& s, int l, int tid, int nt);

  // Calls f(u0, u1) on ranges of units covering [0, units) once, then a barrier. Decode steps
  // (fewer than kDynamicTokens tokens) and small steps are split statically, one contiguous range
  // per thread: each thread then streams one long run of weight rows, which the prefetchers
  // follow best. Big batched steps hand out single units dynamically, so a thread slowed by the
  // host does not hold the others up for its whole share.
  template <class F>
  void Units(int tid, int nt, int64_t units, int64_t work, int64_t T, F&& f) {
    if (nt == 1) {
      if (units > 0) f(int64_t{0}, units);
      return;
    }
    if (tid == 0) ++barriers_.n;
    if (T >= kDynamicTokens && work >= kDynamicWork) {
      pool_.ForEach(tid, units, [&](int64_t u) { f(u, u + 1); });
      return;
    }
    const int64_t u0 = shares_.Begin(units, tid), u1 = shares_.Begin(units, tid + 1);
    if (u0 < u1) {
      if (!balance_) {
        f(u0, u1);
      } else {
        const auto t0 = std::chrono::steady_clock::now();
        f(u0, u1);
        busy_[tid].ns += static_cast<double>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
        busy_[tid].work += static_cast<double>(work) * static_cast<double>(u1 - u0) / static_cast<double>(units);
      }
    }
    pool_.Barrier(tid);
  }
  // Calls f(t) for this thread's share of tokens [0, T), then a barrier.
  template <class F>
  void Tokens(int tid, int nt, int64_t T, F&& f) {
    for (int64_t t = T * tid / nt; t < T * (tid + 1) / nt; ++t) f(t);
    if (nt == 1) return;
    if (tid == 0) ++barriers_.n;
    pool_.Barrier(tid);
  }
  // Where a step's products read their input rows: normed f32 rows (xb) and their quantized
  // form (act). Normally the shared xb_ and act_; for a single token on several threads, each
  // thread's own copy (see Prepare).
  struct Input {
    float* xb;
    char* act;
  };
  Input Shared() { return {xb_.data(), act_.data()}; }

  // Prepares the input rows of the next products: f(t, in) writes token t's rows into `in`.
  // Tokens are shared out among the threads, then a barrier. A single token (decode of one
  // sequence) is instead prepared by every thread into its own copy, the same values, and
  // nobody waits: those barriers, where one thread worked and the others watched, were 4 of a
  // layer's 9 and cost a small model's 2-thread decode more than the work they guarded.
  template <class F>
  Input Prepare(int tid, int nt, int64_t T, F&& f) {
    if (T == 1 && nt > 1) {
      const Input own{own_xb_.data() + tid * LinePairFloats(c_.dim), own_act_.data() + tid * own_act_stride_};
      f(int64_t{0}, own);
      return own;
    }
    const Input shared = Shared();
    Tokens(tid, nt, T, [&](int64_t t) { f(t, shared); });
    return shared;
  }

  // Norms x into row `out_row` of in.xb and, when any of the step's matrices is quantized,
  // quantizes it into in.act.
  void NormAndQuantize(const Input& in, int64_t out_row, const float* x, const float* norm, bool quantize, DType type) {
    float* xb = in.xb + out_row * c_.dim;
    kt_.rms_norm(x, norm, xb, c_.dim, c_.norm_eps);
    if (quantize) kt_.quantize_act(type, xb, in.act + out_row * kt_.act_row_bytes(type, c_.dim), c_.dim);
  }
  // Rows [n0, n1) of w for all T tokens, reading x (f32, ldx apart) or its quantized rows act.
  void MatMulRows(const WeightMatrix& w, const float* x, const char* act, int64_t ldx, int64_t T, float* y, int64_t ldy,
                  int64_t n0, int64_t n1) {
    const bool q = kernels::IsBlockQuantized(w.type);
    const MatMulArgs a = kernels::cpu::MakeMatMulArgs(kt_, w, q ? static_cast<const void*>(act) : x, ldx, T, y, ldy);
    kernels::cpu::MatMulFor(kt_, w)(a, n0, n1);
  }

  std::shared_ptr<const LoadedModel> model_;
  const LlamaConfig& c_;
  LlamaWeights w_;  // the model's, with the matrices CopyWeights copied pointing into weights_
  HugePageBuffer weights_;
  int64_t packed_matrices_ = 0;
  int64_t copied_matrices_ = 0;  // copied as stored (no packed layout for them)
  const KernelTable& kt_;
  ThreadPool pool_;
  // The threads' static shares (Units), sized by speed when balance_; each thread's measured work
  // and time in them during the current pass, on its own cache line.
  ShareBalance shares_;
  bool balance_ = false;
  struct alignas(64) Busy {
    double work = 0;
    double ns = 0;
  };
  std::vector<Busy> busy_;
  std::vector<double> pass_work_, pass_ns_;  // Forward's copies of busy_ for shares_
  const int num_blocks_;
  const int block_size_;
  const int max_tokens_;
  const bool adaptive_;
  // Barriers of the current forward pass, counted by thread 0, on a cache line of its own (the
  // other threads read the members around it in every step).
  struct alignas(64) OwnLine {
    int64_t n = 0;
  };
  OwnLine barriers_;
  SoloFallback fallback_;  // passes alone while peers arrive late at barriers (adaptive_)
  ThreadModeChooser one_token_mode_;  // how single-token passes run (choose_mode_)
  bool warned_ = false;
  Floats x_, xb_, q_, k_, v_, att_, gate_, up_;
  std::vector<const int32_t*> tables_;
  std::vector<int64_t> logit_rows_;
  AlignedBytes act_;
  AlignedBytes own_act_;      // per thread: one token's quantized row (Prepare)
  int64_t own_act_stride_ = 0;  // bytes between two threads' rows in own_act_
  Floats own_xb_;             // per thread: one token's normed row (Prepare)
  bool choose_mode_ = false;   // single-token passes run as one_token_mode_ says
  Floats own_rows_;  // per thread: Rows for Step::replicate
  Floats attn_scratch_;
  int64_t attn_stride_ = 0;
  std::vector<float> rope_cos_, rope_sin_;
  const KvDType kv_type_;
  int64_t layer_kv_bytes_ = 0;  // one layer's K (or V) cache
  int64_t kv_row_bytes_ = 0;    // one slot of one KV head: head_dim elements
  HugePageBuffer kv_;  // empty when it could not be mapped (MakeCpuExecutor fails)
};

bool AnyQuantized(std::initializer_list<const WeightMatrix*> ms) {
  for (const WeightMatrix* m : ms) {
    if (kernels::IsBlockQuantized(m->type)) return true;
  }
  return false;
}

DType QuantizedType(std::initializer_list<const WeightMatrix*> ms) {
  for (const WeightMatrix* m : ms) {
    if (kernels::IsBlockQuantized(m->type)) return m->type;
  }
  return DType::kQ8_0;
}

absl::Status CpuExecutor::Forward(const ForwardBatch& b, std::span<float> logits) {
  RETURN_IF_ERROR(ValidateBatch(b, c_, num_blocks_, block_size_, max_tokens_, logits.size()));
  const int64_t T = static_cast<int64_t>(b.size());
  if (T == 0) return absl::OkStatus();
  Step s{};
  s.batch = &b;
  s.T = T;
  s.logits = logits.data();
  for (int64_t t = 0; t < T; ++t) {
    tables_[t] = b.block_tables[b.seq[t]].data();
    if (b.want_logits[t]) logit_rows_[s.n_logits++] = t;
  }
  // q and out are set per layer (Layer: per-thread Q rows, alternating output rows).
  auto& attn = s.attn;
  attn.q_stride = c_.q_dim();
  attn.out_stride = c_.q_dim();
  attn.n_heads = c_.n_heads;
  attn.n_kv_heads = c_.n_kv_heads;
  attn.head_dim = c_.head_dim;
  attn.block_size = block_size_;
  attn.positions = b.positions.data();
  attn.block_tables = tables_.data();
  attn.scale = 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
  if (pool_.size() == 1) {
    Region(s, 0, 1);
    return absl::OkStatus();
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed_ns = [&] {
    return static_cast<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
  };
  if (fallback_.alone()) {
    Region(s, 0, 1);
    if (fallback_.RecordAlone(T, elapsed_ns()) && !warned_) {
      spdlog::warn("CPU executor: peer threads reach barriers late and one thread alone measured faster "
                   "(host oversubscribed?); running steps on one thread for a while");
      warned_ = true;
    }
    return absl::OkStatus();
  }
  const bool timed = choose_mode_ && T == 1;
  auto record = [&] {
    if (timed) one_token_mode_.Record(elapsed_ns());
  };
  const ThreadModeChooser::Mode mode = timed ? one_token_mode_.mode() : ThreadModeChooser::Mode::kPool;
  if (mode == ThreadModeChooser::Mode::kSolo) {
    Region(s, 0, 1);
    record();
    return absl::OkStatus();
  }
  s.replicate = mode == ThreadModeChooser::Mode::kReplicate;
  const uint64_t slow_before = pool_.slow_barriers();
  barriers_.n = 0;
  pool_.Run([&](int tid, int nt) { Region(s, tid, nt); });
  const int64_t ns = elapsed_ns();
  if (balance_) {
    for (size_t i = 0; i < busy_.size(); ++i) {
      pass_work_[i] = busy_[i].work;
      pass_ns_[i] = busy_[i].ns;
      busy_[i] = Busy{};
    }
    shares_.Record(pass_work_, pass_ns_);
  }
  record();
  const int64_t slow = static_cast<int64_t>(pool_.slow_barriers() - slow_before);
  if (adaptive_) fallback_.RecordPool(T, ns, slow, barriers_.n);
  return absl::OkStatus();
}

void CpuExecutor::Region(const Step& s, int tid, int nt) {
  const ForwardBatch& b = *s.batch;
  const int dim = c_.dim;
  const Rows r = RowsFor(s, tid, nt);
  auto embed = [&](int64_t t) {
    const auto* row = static_cast<const char*>(w_.token_embd.data) + b.tokens[t] * w_.token_embd.row_bytes;
    kernels::DequantizeRow(w_.token_embd.type, row, r.x + t * dim, dim);
  };
  if (s.replicate) {
    embed(0);
  } else {
    Tokens(tid, nt, s.T, embed);
  }
  for (int l = 0; l < c_.n_layers; ++l) Layer(s, l, tid, nt);

  // Final norm and logits only for the tokens that asked, packed in their order.
  if (s.n_logits == 0) return;
  const WeightMatrix& out = w_.output;
  const bool q = AnyQuantized({&out});
  const Input in = Prepare(tid, nt, s.n_logits, [&](int64_t i, const Input& to) {
    NormAndQuantize(to, i, r.x + logit_rows_[i] * dim, w_.output_norm, q, out.type);
  });
  const int64_t ur = UnitRows(out.rows);
  Units(tid, nt, (out.rows + ur - 1) / ur, out.rows * out.cols * s.n_logits, s.n_logits, [&](int64_t u0, int64_t u1) {
    MatMulRows(out, in.xb, in.act, dim, s.n_logits, s.logits, out.rows, u0 * ur, std::min(out.rows, u1 * ur));
  });
}

void CpuExecutor::Layer(const Step& s, int l, int tid, int nt) {
  const ForwardBatch& b = *s.batch;
  const LayerWeights& L = w_.layers[l];
  const int64_t T = s.T;
  const int dim = c_.dim, hd = c_.head_dim, kv = c_.kv_dim(), qd = c_.q_dim(), ffn = c_.ffn_dim, bs = block_size_;
  const int half = hd / 2;
  char* kc = KCache(l);
  char* vc = VCache(l);
  const Rows r = RowsFor(s, tid, nt);
  // The output projection's and the feed-forward's products: split among the threads (a barrier
  // after each), or whole on every thread (Step::replicate).
  auto products = [&](int64_t units, int64_t work, auto&& f) {
    if (!s.replicate) return Units(tid, nt, units, work, T, f);
    if (units > 0) f(int64_t{0}, units);
  };

  // Attention input.
  const bool qkv_q = AnyQuantized({&L.wq, &L.wk, &L.wv});
  const DType qkv_t = QuantizedType({&L.wq, &L.wk, &L.wv});
  const Input qkv_in = Prepare(tid, nt, T, [&](int64_t t, const Input& to) {
    NormAndQuantize(to, t, r.x + t * dim, L.attn_norm, qkv_q, qkv_t);
  });

  // Q, K, V by heads; each head is rotated (Q, K) and stored in the cache (K, V) by its thread.
  // kind 0: query heads [h0, h1), 1: key heads, 2: value heads.
  // Where token t's row of KV head h goes (kind 1: K, 2: V): slot pos % bs of block
  // table[pos / bs]; layout [block][kv_head][slot][head_dim].
  auto kv_row = [&](int kind, int64_t t, int64_t h) {
    const int pos = b.positions[t];
    const int64_t row = (static_cast<int64_t>(tables_[t][pos / bs]) * c_.n_kv_heads + h) * bs + pos % bs;
    return (kind == 1 ? kc : vc) + row * kv_row_bytes_;
  };
  auto qkv_heads = [&](int kind, int64_t h0, int64_t h1) {
    const WeightMatrix& w = kind == 0 ? L.wq : kind == 1 ? L.wk : L.wv;
    float* y = kind == 0 ? r.q : kind == 1 ? r.k : r.v;
    const int64_t ldy = kind == 0 ? qd : kv;
    // The cache rows about to be written were last touched a step ago and are no longer in any
    // cache: asked for (for writing) before the product, they arrive while it runs instead of
    // stalling each store. RoPE and the stores of a 110M batch-16 step 430 -> 210 us (TSC, both
    // threads summed), 1.02x the step.
    if (kind != 0) {
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t h = h0; h < h1; ++h) {
          const char* dst = kv_row(kind, t, h);
          for (int64_t o = 0; o < kv_row_bytes_; o += 64) __builtin_prefetch(dst + o, 1);
        }
      }
    }
    MatMulRows(w, qkv_in.xb, qkv_in.act, dim, T, y, ldy, h0 * hd, h1 * hd);
    for (int64_t t = 0; t < T; ++t) {
      const int pos = b.positions[t];
      const float* cs = rope_cos_.data() + static_cast<int64_t>(pos) * half;
      const float* sn = rope_sin_.data() + static_cast<int64_t>(pos) * half;
      for (int64_t h = h0; h < h1; ++h) {
        float* head = y + t * ldy + h * hd;
        if (kind != 2) kt_.rope(head, 1, hd, cs, sn);
        if (kind != 0) {
          char* dst = kv_row(kind, t, h);
          if (kv_type_ == KvDType::kQ8_0) {
            kt_.quantize_q8_0(head, dst, hd);
          } else if (kv_type_ == KvDType::kF16) {
            kt_.f32_to_f16(head, reinterpret_cast<uint16_t*>(dst), hd);
          } else {
            std::memcpy(dst, head, sizeof(float) * hd);
          }
        }
      }
    }
  };

  // Attention by (token, KV head): the group's query heads share each K and V row.
  // Attention's output rows: with Step::replicate a thread may start the next layer's attention
  // while another still reads this one's output (nothing else separates them), so layers take
  // turns between two rows.
  float* att = att_.data() + (s.replicate ? (l & 1) * int64_t{qd} : 0);
  auto attn = s.attn;
  attn.q = r.q;
  attn.out = att;
  attn.k_cache = kc;
  attn.v_cache = vc;
  attn.kv = kv_type_ == KvDType::kQ8_0 ? kernels::cpu::KvElem::kQ8_0
            : kv_type_ == KvDType::kF16  ? kernels::cpu::KvElem::kF16
                                         : kernels::cpu::KvElem::kF32;
  float* scratch = attn_scratch_.data() + tid * attn_stride_;
  const int64_t nh = c_.n_heads, nkv = c_.n_kv_heads, group = nh / nkv;

  if (OwnHeads(T, nt)) {
    // One token: each thread takes whole KV groups (as many as every other thread), their
    // query, key and value heads and then their attention, so no barrier separates the two
    // (attention reads only its group's heads).
    const int64_t g0 = nkv * tid / nt, g1 = nkv * (tid + 1) / nt;
    if (g0 < g1) {
      qkv_heads(0, g0 * group, g1 * group);
      qkv_heads(1, g0, g1);
      qkv_heads(2, g0, g1);
      for (int64_t g = g0; g < g1; ++g) kt_.attention_group(attn, 0, static_cast<int>(g), scratch);
    }
    if (tid == 0) ++barriers_.n;
    pool_.Barrier(tid);
  } else {
    Units(tid, nt, nh + 2 * nkv, (qd + 2 * kv) * int64_t{dim} * T, T, [&](int64_t u0, int64_t u1) {
      // Heads u of [0, nh) are Q, [nh, nh + nkv) K, then V: one product per matrix the range touches.
      for (int kind = 0; kind < 3; ++kind) {
        const int64_t first = kind == 0 ? 0 : kind == 1 ? nh : nh + nkv;
        const int64_t h0 = std::max(u0, first) - first, h1 = std::min(u1, first + (kind == 0 ? nh : nkv)) - first;
        if (h0 < h1) qkv_heads(kind, h0, h1);
      }
    });
    int64_t attn_work = 0;
    for (int64_t t = 0; t < T; ++t) attn_work += (b.positions[t] + 1) * int64_t{qd};
    Units(tid, nt, T * nkv, attn_work, T, [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) kt_.attention_group(attn, u / nkv, static_cast<int>(u % nkv), scratch);
    });
  }

  // Output projection, added into the residual stream by the thread that computes the rows.
  const bool o_q = AnyQuantized({&L.wo});
  const Input o_in = !o_q ? Shared() : Prepare(tid, nt, T, [&](int64_t t, const Input& to) {
    kt_.quantize_act(L.wo.type, att + t * qd, to.act + t * kt_.act_row_bytes(L.wo.type, qd), qd);
  });
  const int64_t ur_o = UnitRows(dim);
  products((dim + ur_o - 1) / ur_o, int64_t{dim} * qd * T, [&](int64_t u0, int64_t u1) {
    const int64_t n0 = u0 * ur_o, n1 = std::min<int64_t>(dim, u1 * ur_o);
    MatMulRows(L.wo, att, o_in.act, qd, T, r.out, dim, n0, n1);
    for (int64_t t = 0; t < T; ++t) kt_.add(r.x + t * dim + n0, r.out + t * dim + n0, r.x + t * dim + n0, n1 - n0);
  });

  // Feed-forward: gate and up by row ranges, SiLU(gate) * up in place of gate.
  const bool gu_q = AnyQuantized({&L.w_gate, &L.w_up});
  const DType gu_t = QuantizedType({&L.w_gate, &L.w_up});
  const Input ffn_in = Prepare(tid, nt, T, [&](int64_t t, const Input& to) {
    NormAndQuantize(to, t, r.x + t * dim, L.ffn_norm, gu_q, gu_t);
  });
  const int64_t ur_f = UnitRows(ffn);
  products((ffn + ur_f - 1) / ur_f, 2 * int64_t{ffn} * dim * T, [&](int64_t u0, int64_t u1) {
    const int64_t r0 = u0 * ur_f, r1 = std::min<int64_t>(ffn, u1 * ur_f);
    MatMulRows(L.w_gate, ffn_in.xb, ffn_in.act, dim, T, r.gate, ffn, r0, r1);
    MatMulRows(L.w_up, ffn_in.xb, ffn_in.act, dim, T, r.up, ffn, r0, r1);
    // SiLU per unit: its chunk boundaries depend only on the shape, never on the split.
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t n0 = u * ur_f, n1 = std::min<int64_t>(ffn, n0 + ur_f);
      for (int64_t t = 0; t < T; ++t) {
        kt_.silu_mul(r.gate + t * ffn + n0, r.up + t * ffn + n0, r.gate + t * ffn + n0, n1 - n0);
      }
    }
  });
  const Input down_in = !AnyQuantized({&L.w_down}) ? Shared() : Prepare(tid, nt, T, [&](int64_t t, const Input& to) {
    kt_.quantize_act(L.w_down.type, r.gate + t * ffn, to.act + t * kt_.act_row_bytes(L.w_down.type, ffn), ffn);
  });
  products((dim + ur_o - 1) / ur_o, int64_t{dim} * ffn * T, [&](int64_t u0, int64_t u1) {
    const int64_t n0 = u0 * ur_o, n1 = std::min<int64_t>(dim, u1 * ur_o);
    MatMulRows(L.w_down, r.gate, down_in.act, ffn, T, r.out, dim, n0, n1);
    for (int64_t t = 0; t < T; ++t) kt_.add(r.x + t * dim + n0, r.out + t * dim + n0, r.x + t * dim + n0, n1 - n0);
  });
}

}  // namespace

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
  RETURN_IF_ERROR(CheckKvDType(c, o.kv_type));
  if (o.num_kv_blocks == 0) o.num_kv_blocks = (c.context_length + o.block_size - 1) / o.block_size + 1;
  if (o.num_kv_blocks < 0) return absl::InvalidArgumentError("KV block count must be positive");
  int threads = o.threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (threads > 256) return absl::InvalidArgumentError(absl::StrCat("thread count ", threads, " is too large"));
  // The KV cache is committed at construction: ask for more than the host (or the container)
  // has left and the OOM killer would end the process mid-start without a word.
  const int64_t kv_bytes = CpuKvBytesPerBlock(c, o.block_size, o.kv_type) * o.num_kv_blocks;
  if (const std::optional<int64_t> avail = AvailableMemoryBytes(); avail && kv_bytes > *avail) {
    return absl::ResourceExhaustedError(absl::StrCat("a KV cache of ", o.num_kv_blocks, " blocks needs ", kv_bytes >> 20,
                                                     " MiB, more than the ", *avail >> 20, " MiB of memory available"));
  }
  const KernelTable* kt = &kernels::cpu::BestKernels();
  if (!o.isa.empty()) {
    kt = kernels::cpu::KernelsByName(o.isa.c_str());
    if (!kt) return absl::InvalidArgumentError("kernel variant '" + o.isa + "' is unknown or unsupported on this CPU");
  }
  auto ex = std::make_unique<CpuExecutor>(std::move(model), o, threads, *kt);
  if (!ex->has_kv()) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot map ", kv_bytes >> 20, " MiB for the KV cache (", o.num_kv_blocks, " blocks)"));
  }
  return std::unique_ptr<Executor>(std::move(ex));
}

}  // namespace flotilla
