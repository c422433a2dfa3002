// The batched forward pass: mixing sequences, scattered block tables and chunk sizes must not
// change any sequence's logits; invalid batches are rejected before anything is written.
#include "model/executor.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "kernels/cpu/kernel_table.h"
#include "model/generate.h"
#include "model/loader.h"
#include "model/synthetic.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_models.h"

namespace flotilla {
namespace {

ExecutorOptions CacheOptions(int blocks, int block_size, int max_batch_tokens, int threads) {
  ExecutorOptions o;
  o.num_kv_blocks = blocks;
  o.block_size = block_size;
  o.max_batch_tokens = max_batch_tokens;
  o.threads = threads;
  return o;
}

// Small blocks, so that sequences span many of them.
ExecutorOptions SmallBlocks(int threads) { return CacheOptions(128, 4, 256, threads); }

class ExecutorTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_ = testing::LoadShared(GetParam());
    ASSERT_NE(model_, nullptr);
    auto ex = MakeCpuExecutor(model_, SmallBlocks(2));
    ASSERT_TRUE(ex.ok()) << ex.status();
    ex_ = std::move(*ex);
  }
  std::shared_ptr<const LoadedModel> model_;
  std::unique_ptr<Executor> ex_;
};

// Reference: each sequence alone, one token per step, blocks 0.. in order.
std::vector<std::vector<float>> RunAlone(Executor& ex, const std::vector<std::vector<int32_t>>& seqs) {
  const int V = ex.config().vocab_size;
  std::vector<std::vector<float>> out;
  for (const auto& s : seqs) {
    std::vector<int32_t> table(64);
    std::iota(table.begin(), table.end(), 0);
    std::vector<float> logits(V), all;
    for (size_t i = 0; i < s.size(); ++i) {
      ForwardBatch b;
      const int32_t si = b.AddSequence(table);
      b.Add(s[i], static_cast<int32_t>(i), si, true);
      EXPECT_TRUE(ex.Forward(b, logits).ok());
      all.insert(all.end(), logits.begin(), logits.end());
    }
    out.push_back(all);
  }
  return out;
}

TEST_P(ExecutorTest, MixedPrefillAndDecodeBatchEqualsSequencesAlone) {
  std::mt19937 rng(9);
  std::vector<std::vector<int32_t>> seqs(5);
  for (auto& s : seqs) {
    s.resize(8 + rng() % 30);
    for (auto& t : s) t = 3 + rng() % 500;
  }
  const auto alone = RunAlone(*ex_, seqs);
  const int V = ex_->config().vocab_size;

  // Scattered, disjoint block tables.
  std::vector<int32_t> ids(128);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<std::vector<int32_t>> tables(seqs.size());
  for (size_t k = 0; k < seqs.size(); ++k) tables[k].assign(ids.begin() + k * 20, ids.begin() + (k + 1) * 20);

  // Each step feeds every unfinished sequence a random-size chunk, all in one batch.
  std::vector<size_t> done(seqs.size(), 0);
  std::vector<std::vector<float>> got(seqs.size());
  while (true) {
    ForwardBatch b;
    std::vector<std::pair<size_t, size_t>> rows;  // (seq, position) for each logits row
    for (size_t k = 0; k < seqs.size(); ++k) {
      if (done[k] == seqs[k].size()) continue;
      const size_t n = std::min<size_t>(seqs[k].size() - done[k], 1 + rng() % 7);
      const int32_t si = b.AddSequence(tables[k]);
      for (size_t i = done[k]; i < done[k] + n; ++i) {
        b.Add(seqs[k][i], static_cast<int32_t>(i), si, true);
        rows.emplace_back(k, i);
      }
      done[k] += n;
    }
    if (b.size() == 0) break;
    std::vector<float> logits(rows.size() * V);
    ASSERT_TRUE(ex_->Forward(b, logits).ok());
    for (size_t r = 0; r < rows.size(); ++r) got[rows[r].first].insert(got[rows[r].first].end(), logits.begin() + r * V, logits.begin() + (r + 1) * V);
  }
  for (size_t k = 0; k < seqs.size(); ++k) EXPECT_EQ(got[k], alone[k]) << "sequence " << k;
}

TEST_P(ExecutorTest, RejectsInvalidBatches) {
  const int V = ex_->config().vocab_size;
  std::vector<float> logits(V);
  std::vector<int32_t> table = {0, 1};
  auto expect_bad = [&](ForwardBatch b, const char* what) {
    const absl::Status s = ex_->Forward(b, logits);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << what << ": " << s;
  };
  ForwardBatch b;
  int32_t si = b.AddSequence(table);
  b.Add(V, 0, si, true);
  expect_bad(b, "token out of range");
  b = {};
  si = b.AddSequence(table);
  b.Add(1, 8, si, true);  // needs a third block
  expect_bad(b, "table too short");
  b = {};
  si = b.AddSequence(std::vector<int32_t>{500});
  EXPECT_TRUE(ex_->Forward(b, logits).ok()) << "a batch with no tokens is a no-op";
  std::vector<int32_t> bad_table = {999};
  b = {};
  si = b.AddSequence(bad_table);
  b.Add(1, 0, si, true);
  expect_bad(b, "block id out of range");
  b = {};
  si = b.AddSequence(table);
  b.Add(1, 0, si + 1, true);
  expect_bad(b, "unknown sequence");
  b = {};
  si = b.AddSequence(table);
  b.Add(1, 0, si, true);
  b.Add(2, 1, si, true);
  expect_bad(b, "logits buffer too small");
  b = {};
  si = b.AddSequence(table);
  b.Add(1, ex_->config().context_length, si, true);
  expect_bad(b, "position past the context");
}

TEST_P(ExecutorTest, ChunkedPrefillGivesTheSameGreedyOutput) {
  Tokenizer tok(model_->vocab);
  const auto prompt = tok.Encode("Once upon a time there was a big dog who liked to run in the park", true);
  GenerateOptions go;
  go.max_tokens = 40;
  go.sampling.temperature = 0;
  auto whole = GenerateSingle(*ex_, tok, prompt, go);
  ExecutorOptions o;
  o.max_batch_tokens = 3;  // forces 3-token prefill chunks
  o.num_kv_blocks = 40;
  auto small = MakeCpuExecutor(model_, o);
  ASSERT_TRUE(small.ok());
  auto chunked = GenerateSingle(**small, tok, prompt, go);
  ASSERT_TRUE(whole.ok() && chunked.ok());
  EXPECT_EQ(whole->tokens, chunked->tokens);
}

// Every logit of a fixed run: a 20-token prompt for sequence 0, then 3 steps of one token for
// each of 3 sequences (sequences 1 and 2 start from scratch), then 2 single-token steps of
// sequence 0.
void LogitsOfSteps(Executor& ex, std::vector<float>& all) {
  const int V = ex.config().vocab_size;
  std::vector<std::vector<int32_t>> tables = {{0, 1}, {2, 3}, {4, 5}};
  ForwardBatch b;
  int32_t si = b.AddSequence(tables[0]);
  for (int i = 0; i < 20; ++i) b.Add(5 + i, i, si, true);
  std::vector<float> logits(20 * V);
  ASSERT_TRUE(ex.Forward(b, logits).ok());
  all.insert(all.end(), logits.begin(), logits.end());
  for (int step = 0; step < 3; ++step) {
    b.Clear();
    for (int k = 0; k < 3; ++k) {
      si = b.AddSequence(tables[k]);
      b.Add(7 + k + step, k == 0 ? 20 + step : step, si, true);
    }
    logits.assign(3 * V, 0.0f);
    ASSERT_TRUE(ex.Forward(b, logits).ok());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  for (int step = 0; step < 2; ++step) {
    b.Clear();
    si = b.AddSequence(tables[0]);
    b.Add(11 + step, 23 + step, si, true);
    logits.assign(V, 0.0f);
    ASSERT_TRUE(ex.Forward(b, logits).ok());
    all.insert(all.end(), logits.begin(), logits.end());
  }
}

// Single-token steps on two threads may run on the pool, on the pool with the small products
// replicated (a model as small as stories260K), or on the calling thread alone
// (ThreadModeChooser: a short pass measures each mode, 8 passes each, in its first 24 passes):
// every step's logits equal a one-thread executor's bit for bit, whichever mode ran.
TEST_P(ExecutorTest, SingleTokenStepsEqualOneThreadInEitherThreadMode) {
  auto one = MakeCpuExecutor(model_, SmallBlocks(1));
  ASSERT_TRUE(one.ok()) << one.status();
  std::vector<int32_t> seq;
  for (int i = 0; i < 48; ++i) seq.push_back(1 + i * 37 % (model_->config.vocab_size - 1));
  const auto want = RunAlone(**one, {seq});
  const auto got = RunAlone(*ex_, {seq});
  EXPECT_EQ(got, want);
}

// The engine samples a step's sequences through ParallelFor: every index exactly once, on the
// pool's threads when there are several (ForEach shares with stealing), in order on one.
TEST(ExecutorParallelFor, EveryIndexExactlyOnceAtOneAndTwoThreads) {
  auto model = testing::LoadShared("stories260K-f32.gguf");
  ASSERT_NE(model, nullptr);
  for (int threads : {1, 2}) {
    auto ex = MakeCpuExecutor(model, SmallBlocks(threads));
    ASSERT_TRUE(ex.ok()) << ex.status();
    for (int64_t n : {0, 1, 2, 3, 16, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      (*ex)->ParallelFor(n, [&](int64_t i) { hits[static_cast<size_t>(i)].fetch_add(1); });
      for (int64_t i = 0; i < n; ++i) {
        EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "threads " << threads << " n " << n << " i " << i;
      }
    }
    // Usable again after a forward pass (the pool's state carries over between the two).
    std::vector<int32_t> seq = {1, 2, 3};
    ForwardBatch b;
    const std::vector<int32_t> table = {0};
    const int32_t si = b.AddSequence(table);
    for (int i = 0; i < 3; ++i) b.Add(seq[i], i, si, i == 2);
    std::vector<float> logits(model->config.vocab_size);
    ASSERT_TRUE((*ex)->Forward(b, logits).ok());
    std::vector<std::atomic<int>> hits(64);
    (*ex)->ParallelFor(64, [&](int64_t i) { hits[static_cast<size_t>(i)].fetch_add(1); });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  }
}

// A Q8_0 KV cache (--kv-cache-type q8_0): K and V rounded to 8 bits as stored. The logits of a
// prompt, batched decodes and single-token steps stay near the f16 cache's (NMSE <= 1e-3, and not
// equal: the cache really is 8-bit) and are bit for bit the same at 1 and 2 threads; the cache
// takes 68 bytes per 64-element row; a model whose head size is not a multiple of 32 is refused
// with a message saying so.
// What LogitsOfSteps needs: 16 blocks of 16 tokens, steps of up to 64.
ExecutorOptions StepsOptions(int threads) { return CacheOptions(16, 16, 64, threads); }

double Nmse(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    err += (got[i] - want[i]) * double{got[i] - want[i]};
    ref += want[i] * double{want[i]};
  }
  return err / ref;
}

// A synthetic model of `shape` in `type` written into `dir` and loaded (null, with a test
// failure, when either fails).
std::shared_ptr<const LoadedModel> Synth(testing::TempDir& dir, const std::string& shape, kernels::DType type,
                                         uint64_t seed) {
  auto s = ParseSyntheticShape(shape);
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return nullptr;
  SynthOptions so;
  so.type = type;
  so.seed = seed;
  const std::string path = dir.File(std::string(kernels::Info(type).name) + ".gguf");
  const absl::Status written = WriteSyntheticModel(*s, so, path);
  EXPECT_TRUE(written.ok()) << written;
  if (!written.ok()) return nullptr;
  auto loaded = LoadModel(path);
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  if (!loaded.ok()) return nullptr;
  return std::move(*loaded);
}

TEST(ExecutorKvCache, Q8CacheIsNearF16AndTheSameOnAnyThreadCount) {
  testing::TempDir dir;
  auto model = Synth(dir, "256,2,4,2,512,300", kernels::DType::kQ8_0, 5);  // head size 64, two KV heads
  ASSERT_NE(model, nullptr);
  auto run = [&](KvDType kv, int threads, std::vector<float>& out) {
    ExecutorOptions o = StepsOptions(threads);
    o.kv_type = kv;
    auto ex = MakeCpuExecutor(model, o);
    ASSERT_TRUE(ex.ok()) << ex.status();
    if (kv == KvDType::kQ8_0) {
      EXPECT_NE((*ex)->Describe().find("q8_0 KV"), std::string::npos) << (*ex)->Describe();
    }
    ASSERT_NO_FATAL_FAILURE(LogitsOfSteps(**ex, out));
  };
  std::vector<float> f16, q8_one, q8_two;
  ASSERT_NO_FATAL_FAILURE(run(KvDType::kF16, 1, f16));
  ASSERT_NO_FATAL_FAILURE(run(KvDType::kQ8_0, 1, q8_one));
  ASSERT_NO_FATAL_FAILURE(run(KvDType::kQ8_0, 2, q8_two));
  EXPECT_EQ(q8_one, q8_two);
  ASSERT_EQ(q8_one.size(), f16.size());
  EXPECT_LT(Nmse(q8_one, f16), 1e-3);
  EXPECT_GT(Nmse(q8_one, f16), 0);
  EXPECT_EQ(CpuKvBytesPerBlock(model->config, 16, KvDType::kQ8_0), 2LL * 2 * 2 * 16 * 68);
  EXPECT_EQ(CpuKvBytesPerBlock(model->config, 16, KvDType::kF16), 2LL * 2 * 2 * 16 * 128);

  auto tiny = testing::LoadShared("stories260K-f32.gguf");  // head size 8
  ASSERT_NE(tiny, nullptr);
  ExecutorOptions o = SmallBlocks(1);
  o.kv_type = KvDType::kQ8_0;
  auto refused = MakeCpuExecutor(tiny, o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("multiple of 32"), std::string::npos) << refused.status();
  EXPECT_EQ(ParseKvDType("q8_0").value(), KvDType::kQ8_0);
  EXPECT_FALSE(ParseKvDType("q4_0").ok());
}

// Decode splits each matrix statically between the threads; for a model big enough to time the
// shares (ShareBalance) they are sized by each thread's measured speed. On three threads over
// this machine's two cores one thread shares a core, so the shares usually move (to 0.36 / 0.33
// / 0.31 in a run with them printed); every step's logits must still equal one thread's bit for
// bit (which thread computes a row never changes its value).
TEST(ExecutorShares, SpeedSizedSharesGiveOneThreadsLogits) {
  testing::TempDir dir;
  auto model = Synth(dir, "768,3,12,4,1024,300", kernels::DType::kQ8_0, 11);  // 12M multiply-adds a token
  ASSERT_NE(model, nullptr);
  setenv("FLOTILLA_ADAPTIVE_THREADS", "0", 1);  // every pass on the pool, however late its peers
  auto one = MakeCpuExecutor(model, SmallBlocks(1));
  auto three = MakeCpuExecutor(model, SmallBlocks(3));
  unsetenv("FLOTILLA_ADAPTIVE_THREADS");
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_TRUE(three.ok()) << three.status();
  std::vector<int32_t> seq;
  for (int i = 0; i < 40; ++i) seq.push_back(3 + i * 53 % 290);
  EXPECT_EQ(RunAlone(**three, {seq}), RunAlone(**one, {seq}));
}

// Weights copied at load (into the kernels' own row layout where the variant has one, as stored
// otherwise): the same logits bit for bit as the weights read in the file map (to rounding where
// the packed layout sums in another order, and then bit for bit at 1 and 2 threads), for a prompt, a
// batch of decodes and single-token steps, at 1 and 2 threads, on the best kernels (AVX-512:
// every type packed) and on AVX2 (no packed layout: copied as stored). Synthetic models wide enough to be packed
// (stories260K's 64-wide rows are not): rows 768 and 1024 wide; 576 and 1536 (a small model's
// widths, 576 not a multiple of 256: AVX-512's sixteen-row groups end in a partial oct); 288 and
// 768 (stories15M's: 288 is 9 blocks, the last one alone).
TEST(ExecutorPacking, PackedWeightsGiveTheSameLogits) {
  testing::TempDir dir;
  std::vector<std::string> isas = {""};
  if (kernels::cpu::KernelsByName("avx2") != nullptr) isas.push_back("avx2");
  struct Shape {
    const char* spec;
    int64_t dim, ffn;
  };
  for (const Shape& shape :
       {Shape{"768,2,12,4,1024,300", 768, 1024}, Shape{"576,2,9,3,1536,300", 576, 1536}, Shape{"288,2,6,6,768,300", 288, 768}}) {
    for (kernels::DType type : {kernels::DType::kQ8_0, kernels::DType::kQ4_0, kernels::DType::kF16}) {
      SCOPED_TRACE(shape.spec);
      auto model = Synth(dir, shape.spec, type, 11);
      ASSERT_NE(model, nullptr);
      for (const std::string& isa : isas) {
        std::vector<float> packed_one_thread;
        for (int threads : {1, 2}) {
          std::vector<std::vector<float>> runs;
          for (bool pack : {false, true}) {
            ExecutorOptions o = StepsOptions(threads);
            o.pack_weights = pack;
            o.isa = isa;
            auto ex = MakeCpuExecutor(model, o);
            ASSERT_TRUE(ex.ok()) << ex.status();
            const kernels::cpu::KernelTable& kt =
                isa.empty() ? kernels::cpu::BestKernels() : *kernels::cpu::KernelsByName(isa.c_str());
            // Every matrix of this shape is dim or ffn wide: packed wherever the variant packs the type.
            const bool packs = kt.pack_rows != nullptr && kt.packed_row_bytes(type, shape.dim) > 0;
            const std::string d = (*ex)->Describe();
            EXPECT_EQ(d.find("packed weights") != std::string::npos, pack && packs) << d;
            EXPECT_EQ(d.find("copied weights") != std::string::npos, pack && !packs) << d;
            ASSERT_NO_FATAL_FAILURE(LogitsOfSteps(**ex, runs.emplace_back()));
          }
          const kernels::cpu::KernelTable& kt =
              isa.empty() ? kernels::cpu::BestKernels() : *kernels::cpu::KernelsByName(isa.c_str());
          // Q4_0 models keep a Q8_0 output matrix (dim wide).
          auto bits = [&](kernels::DType t, int64_t K) { return kt.packed_same_bits == nullptr || kt.packed_same_bits(t, K); };
          const bool same_bits = bits(type, shape.dim) && bits(type, shape.ffn) &&
                                 (type != kernels::DType::kQ4_0 || bits(kernels::DType::kQ8_0, shape.dim));
          if (same_bits) {
            EXPECT_EQ(runs[0], runs[1]) << kernels::Info(type).name << " isa=" << isa << " threads=" << threads;
          } else {
            // A layout that sums in another order: equal to rounding (which each layer's 8-bit
            // activations can round to a neighbouring step: the CUDA agreement tests' 1e-3 NMSE
            // bound for Q8_0, tenfold), and bit for bit the same on any number of threads.
            ASSERT_EQ(runs[0].size(), runs[1].size());
            EXPECT_LE(Nmse(runs[1], runs[0]), 1e-4) << kernels::Info(type).name << " isa=" << isa << " threads=" << threads;
            if (threads == 1) packed_one_thread = runs[1];
            if (threads == 2) {
              EXPECT_EQ(runs[1], packed_one_thread) << kernels::Info(type).name << " isa=" << isa;
            }
          }
        }
      }
    }
  }
}

int64_t ResidentBytes() {
  std::ifstream f("/proc/self/statm");
  int64_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// The KV cache is committed when the executor is made (no page faults in the steps that open
// new blocks; the worker's memory is what it will be), and a cache larger than the memory
// left is refused with a message rather than left to the OOM killer.
TEST(ExecutorMemory, KvCacheIsResidentFromTheStart) {
  auto model = testing::LoadShared("stories260K-q8_0.gguf");
  ASSERT_NE(model, nullptr);
  ExecutorOptions o;
  o.block_size = 16;
  o.max_batch_tokens = 16;
  o.threads = 2;
  const int64_t per_block = CpuKvBytesPerBlock(model->config, o.block_size, o.kv_type);
  o.num_kv_blocks = static_cast<int>((int64_t{64} << 20) / per_block);
  const int64_t kv_bytes = per_block * o.num_kv_blocks;
  const int64_t before = ResidentBytes();
  auto ex = MakeCpuExecutor(model, o);
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_GE(ResidentBytes() - before, kv_bytes * 95 / 100);
}

TEST(ExecutorMemory, KvCacheLargerThanTheMemoryLeftIsRefused) {
  auto model = testing::LoadShared("stories260K-q8_0.gguf");
  ASSERT_NE(model, nullptr);
  ExecutorOptions o;
  o.block_size = 1024;
  o.num_kv_blocks = 1 << 30;  // petabytes
  auto ex = MakeCpuExecutor(model, o);
  ASSERT_FALSE(ex.ok());
  EXPECT_EQ(ex.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(ex.status().message().find("KV cache"), std::string::npos) << ex.status();
}

INSTANTIATE_TEST_SUITE_P(Files, ExecutorTest,
                         ::testing::Values("stories260K-f32.gguf", "stories260K-q8_0.gguf", "stories260K-q4_0.gguf"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

}  // namespace
}  // namespace flotilla
