// The CUDA executor end to end on the real stories260K model (skipped where no GPU is usable):
//  - f32 and f16 greedy generation of 128 tokens equals the golden ids (f32 and f16 KV cache,
//    CUDA graphs on and off);
//  - several sequences batched together generate what each generates alone;
//  - teacher-forced logits agree with the CPU executor on the same file (NMSE bounds below);
//  - a graph replay gives the same logits as the eager step, bit for bit;
//  - bad input and impossible memory requests fail with clear errors.
#include <cmath>
#include <numeric>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_kernels.h"
#include "model/cuda/cuda_executor.h"
#include "model/generate.h"
#include "model/tokenizer.h"
#include "tests/common/test_models.h"
#include "tests/cuda/cuda_test_util.h"

namespace flotilla {
namespace {

using ::testing::HasSubstr;
using kernels::testing::Nmse;

CudaExecutorOptions SmallOptions() {
  CudaExecutorOptions o;
  o.num_kv_blocks = 256;
  o.max_batch_tokens = 256;
  return o;
}

std::unique_ptr<Executor> MakeOrDie(std::shared_ptr<const LoadedModel> m, const CudaExecutorOptions& o) {
  auto ex = MakeCudaExecutor(std::move(m), o);
  EXPECT_TRUE(ex.ok()) << ex.status();
  return ex.ok() ? std::move(*ex) : nullptr;
}

std::vector<int32_t> Greedy(Executor& ex, const LoadedModel& m, const std::vector<int32_t>& prompt, int n) {
  Tokenizer tok(m.vocab);
  GenerateOptions go;
  go.max_tokens = n;
  go.stop_at_eos = false;
  go.sampling.temperature = 0;
  auto r = GenerateSingle(ex, tok, prompt, go);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->tokens : std::vector<int32_t>{};
}

struct GoldenCase {
  const char* model;
  KvCacheType kv;
  bool graphs;
};

void PrintTo(const GoldenCase& c, std::ostream* os) {
  *os << c.model << (c.kv == KvCacheType::kF32 ? " kv f32" : " kv f16") << (c.graphs ? " graphs" : " eager");
}

class CudaGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(CudaGolden, GreedyEqualsTheReference) {
  FLOTILLA_REQUIRE_GPU();
  const GoldenCase& gc = GetParam();
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  auto m = testing::LoadShared(gc.model);
  ASSERT_NE(m, nullptr);
  CudaExecutorOptions o = SmallOptions();
  o.kv_type = gc.kv;
  o.cuda_graphs = gc.graphs;
  auto ex = MakeOrDie(m, o);
  ASSERT_NE(ex, nullptr);
  EXPECT_THAT(ex->Describe(), HasSubstr("cuda"));
  EXPECT_EQ(Greedy(*ex, *m, golden.prompt_ids, 128), golden.generated_ids) << ex->Describe();
}

INSTANTIATE_TEST_SUITE_P(Models, CudaGolden,
                         ::testing::Values(GoldenCase{"stories260K-f32.gguf", KvCacheType::kF32, true},
                                           GoldenCase{"stories260K-f32.gguf", KvCacheType::kF16, true},
                                           GoldenCase{"stories260K-f32.gguf", KvCacheType::kF32, false},
                                           GoldenCase{"stories260K-f16.gguf", KvCacheType::kF32, true},
                                           GoldenCase{"stories260K-f16.gguf", KvCacheType::kF16, true}),
                         [](const auto& info) {
                           std::string n = info.param.model;
                           n = n.substr(12, n.find(".gguf") - 12);
                           return n + (info.param.kv == KvCacheType::kF32 ? "_kv32" : "_kv16") +
                                  (info.param.graphs ? "_graphs" : "_eager");
                         });

// Sequences generated together, with staggered starts (prefill chunks mixed with decode tokens
// in one step), produce what each produces alone.
TEST(CudaExecutor, BatchedEqualsAlone) {
  FLOTILLA_REQUIRE_GPU();
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  auto m = testing::LoadShared("stories260K-f32.gguf");
  ASSERT_NE(m, nullptr);
  auto ex = MakeOrDie(m, SmallOptions());
  ASSERT_NE(ex, nullptr);
  // Four prompts: the golden prompt and its continuation cut at different points.
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int32_t> all = golden.prompt_ids;
  all.insert(all.end(), golden.generated_ids.begin(), golden.generated_ids.end());
  for (int len : {5, 9, 17, 30}) prompts.emplace_back(all.begin(), all.begin() + len);
  const int n_gen = 24;
  std::vector<std::vector<int32_t>> alone;
  for (const auto& p : prompts) alone.push_back(Greedy(*ex, *m, p, n_gen));

  // Together: sequence i starts at step 2 * i; each owns 8 blocks of 16 after the first 8.
  const int V = m->config.vocab_size;
  const int S = static_cast<int>(prompts.size());
  std::vector<std::vector<int32_t>> tables(S), seqs = prompts, out(S);
  for (int i = 0; i < S; ++i) {
    tables[i].resize(8);
    std::iota(tables[i].begin(), tables[i].end(), 8 + 8 * i);
  }
  std::vector<size_t> fed(S, 0);  // tokens of seqs[i] already in the cache
  std::vector<float> logits;
  for (int step = 0; step < 200; ++step) {
    ForwardBatch b;
    std::vector<int> owner;
    for (int i = 0; i < S; ++i) {
      if (step < 2 * i || static_cast<int>(out[i].size()) >= n_gen) continue;
      const int s = b.AddSequence(tables[i]);
      for (size_t p = fed[i]; p < seqs[i].size(); ++p) {
        const bool last = p + 1 == seqs[i].size();
        b.Add(seqs[i][p], static_cast<int32_t>(p), s, last);
        if (last) owner.push_back(i);
      }
    }
    if (b.size() == 0) break;
    logits.assign(static_cast<size_t>(b.NumLogits()) * V, 0.0f);
    ASSERT_TRUE(ex->Forward(b, logits).ok());
    for (size_t r = 0; r < owner.size(); ++r) {
      const int i = owner[r];
      const float* row = logits.data() + r * V;
      const int32_t next = static_cast<int32_t>(std::max_element(row, row + V) - row);
      fed[i] = seqs[i].size();
      seqs[i].push_back(next);
      out[i].push_back(next);
    }
  }
  for (int i = 0; i < S; ++i) EXPECT_EQ(out[i], alone[i]) << "sequence " << i;
}

// A decode step replayed from a graph (padded to the next captured size) equals the eager step.
TEST(CudaExecutor, GraphReplayEqualsEagerStep) {
  FLOTILLA_REQUIRE_GPU();
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  for (const char* name : {"stories260K-f16.gguf", "stories260K-q8_0.gguf"}) {
    auto m = testing::LoadShared(name);
    ASSERT_NE(m, nullptr);
    CudaExecutorOptions with = SmallOptions(), without = SmallOptions();
    without.cuda_graphs = false;
    auto a = MakeOrDie(m, with), b = MakeOrDie(m, without);
    ASSERT_TRUE(a && b);
    const int V = m->config.vocab_size;
    // Three sequences prefilled alone, then one decode step of all three (graph of 4 for `a`).
    std::vector<std::vector<int32_t>> tables = {{0, 1}, {2, 3}, {4, 5}};
    std::vector<float> la, lb;
    for (Executor* ex : {a.get(), b.get()}) {
      for (int i = 0; i < 3; ++i) {
        ForwardBatch pb;
        const int s = pb.AddSequence(tables[i]);
        for (int p = 0; p < 5 + i; ++p) pb.Add(golden.prompt_ids[p % 5], p, s, false);
        std::vector<float> none;
        ASSERT_TRUE(ex->Forward(pb, none).ok());
      }
      ForwardBatch db;
      for (int i = 0; i < 3; ++i) db.Add(golden.generated_ids[i], 5 + i, db.AddSequence(tables[i]), true);
      std::vector<float>& l = ex == a.get() ? la : lb;
      l.assign(3 * V, 0.0f);
      ASSERT_TRUE(ex->Forward(db, l).ok());
    }
    EXPECT_EQ(la, lb) << name;
  }
}

struct AgreementCase {
  const char* model;
  int max_batch_tokens;  // 8: matrix-vector kernels throughout; 256: cuBLAS and flash prefill
  double max_nmse;
};

void PrintTo(const AgreementCase& c, std::ostream* os) {
  *os << c.model << " batch " << c.max_batch_tokens << " nmse<=" << c.max_nmse;
}

class CudaAgreement : public ::testing::TestWithParam<AgreementCase> {};

// Teacher-forced logits over the golden sequence against the CPU executor on the same file.
TEST_P(CudaAgreement, LogitsMatchTheCpuExecutor) {
  FLOTILLA_REQUIRE_GPU();
  const AgreementCase& c = GetParam();
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  std::vector<int32_t> seq = golden.prompt_ids;
  seq.insert(seq.end(), golden.generated_ids.begin(), golden.generated_ids.end());
  auto m = testing::LoadShared(c.model);
  ASSERT_NE(m, nullptr);
  ExecutorOptions co;
  co.num_kv_blocks = 64;
  co.threads = 2;
  auto cpu = MakeCpuExecutor(m, co);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  CudaExecutorOptions go = SmallOptions();
  go.kv_type = KvCacheType::kF32;  // the CPU cache is f32
  go.max_batch_tokens = c.max_batch_tokens;
  auto gpu = MakeOrDie(m, go);
  ASSERT_NE(gpu, nullptr);
  auto lc = ForwardAllPositions(**cpu, seq);
  auto lg = ForwardAllPositions(*gpu, seq);
  ASSERT_TRUE(lc.ok() && lg.ok());
  const double nmse = Nmse(*lg, *lc);
  const int V = m->config.vocab_size;
  int agree = 0;
  const int rows = static_cast<int>(seq.size());
  for (int r = 0; r < rows; ++r) {
    const float* a = lc->data() + r * V;
    const float* b = lg->data() + r * V;
    agree += (std::max_element(a, a + V) - a) == (std::max_element(b, b + V) - b);
  }
  EXPECT_LE(nmse, c.max_nmse) << c.model << " batch " << c.max_batch_tokens;
  EXPECT_GE(agree, rows * 97 / 100) << c.model << ": top-1 agreement " << agree << "/" << rows;
  RecordProperty("nmse", std::to_string(nmse));
}

INSTANTIATE_TEST_SUITE_P(Models, CudaAgreement,
                         ::testing::Values(AgreementCase{"stories260K-f32.gguf", 8, 1e-9},
                                           AgreementCase{"stories260K-f16.gguf", 8, 1e-9},
                                           AgreementCase{"stories260K-q8_0.gguf", 8, 1e-6},
                                           AgreementCase{"stories260K-q4_0.gguf", 8, 1e-6},
                                           AgreementCase{"stories260K-f32.gguf", 256, 1e-9},
                                           AgreementCase{"stories260K-f16.gguf", 256, 1e-5},
                                           AgreementCase{"stories260K-q8_0.gguf", 256, 1e-3},
                                           AgreementCase{"stories260K-q4_0.gguf", 256, 1e-3}),
                         [](const auto& info) {
                           std::string n = info.param.model;
                           n = n.substr(12, n.find(".gguf") - 12);
                           return n + "_batch" + std::to_string(info.param.max_batch_tokens);
                         });

TEST(CudaExecutor, RandomWeightsEveryTypeRunAndStayFinite) {
  FLOTILLA_REQUIRE_GPU();
  LlamaConfig c;
  c.dim = 256;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 64;
  c.ffn_dim = 512;
  c.vocab_size = 1000;
  c.context_length = 256;
  for (kernels::DType t : {kernels::DType::kF32, kernels::DType::kF16, kernels::DType::kBF16, kernels::DType::kQ8_0,
                           kernels::DType::kQ4_0}) {
    CudaExecutorOptions o;
    o.num_kv_blocks = 64;
    o.max_batch_tokens = 64;
    auto ex = MakeCudaExecutorRandom(c, t, 42, o);
    ASSERT_TRUE(ex.ok()) << ex.status();
    auto info = GetCudaExecutorInfo(**ex);
    ASSERT_TRUE(info.ok());
    EXPECT_GT(info->weight_bytes_per_token, 0);
    EXPECT_EQ(info->graph_batch_sizes, (std::vector<int>{1, 2, 4, 8, 16, 32, 64}));
    const std::vector<int32_t> table = {0, 1, 2, 3};
    ForwardBatch b;
    const int s = b.AddSequence(table);
    for (int p = 0; p < 40; ++p) b.Add(p * 7 % 1000, p, s, true);
    std::vector<float> logits(40 * 1000);
    ASSERT_TRUE((*ex)->Forward(b, logits).ok());
    for (float v : logits) ASSERT_TRUE(std::isfinite(v)) << kernels::Info(t).name;
  }
}

TEST(CudaExecutor, ErrorsNameTheProblem) {
  FLOTILLA_REQUIRE_GPU();
  auto m = testing::LoadShared("stories260K-f32.gguf");
  ASSERT_NE(m, nullptr);
  {
    CudaExecutorOptions o = SmallOptions();
    o.num_kv_blocks = 2'000'000'000;
    auto ex = MakeCudaExecutor(m, o);
    ASSERT_FALSE(ex.ok());
    EXPECT_EQ(ex.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(ex.status().message(), HasSubstr("2000000000 blocks"));
  }
  {
    CudaExecutorOptions o = SmallOptions();
    o.device = 64;
    auto ex = MakeCudaExecutor(m, o);
    ASSERT_FALSE(ex.ok());
    EXPECT_THAT(ex.status().message(), HasSubstr("visible"));
  }
  auto ex = MakeOrDie(m, SmallOptions());
  ASSERT_NE(ex, nullptr);
  const std::vector<int32_t> bad_table = {100000};
  ForwardBatch b;
  b.Add(1, 0, b.AddSequence(bad_table), true);
  std::vector<float> logits(m->config.vocab_size);
  EXPECT_EQ(ex->Forward(b, logits).code(), absl::StatusCode::kInvalidArgument);
  // Invalid input leaves the executor usable.
  const std::vector<int32_t> table = {0};
  ForwardBatch ok;
  ok.Add(1, 0, ok.AddSequence(table), true);
  EXPECT_TRUE(ex->Forward(ok, logits).ok());
}

}  // namespace
}  // namespace flotilla
