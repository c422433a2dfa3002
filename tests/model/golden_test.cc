// The engine must reproduce the reference greedy output exactly on the f32 and f16 files and the
// llama2.c checkpoint, with every kernel variant and thread count.
#include <algorithm>

#include "gtest/gtest.h"
#include "model/executor.h"
#include "model/generate.h"
#include "model/tokenizer.h"
#include "tests/common/test_models.h"

namespace flotilla {
namespace {

struct Case {
  std::string model;
  std::string isa;
  int threads;
  KvDType kv = KvDType::kF16;
};

// Short names in test listings (gtest would print the bytes of the struct).
void PrintTo(const Case& c, std::ostream* os) {
  *os << c.model << " isa=" << (c.isa.empty() ? "best" : c.isa) << " threads=" << c.threads
      << (c.kv == KvDType::kF16 ? " f16kv" : " f32kv");
}

class GoldenTest : public ::testing::TestWithParam<Case> {};

TEST_P(GoldenTest, GreedyMatchesReferenceExactly) {
  const Case& c = GetParam();
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  auto model = testing::LoadShared(c.model);
  ASSERT_NE(model, nullptr);
  Tokenizer tok(model->vocab);
  EXPECT_EQ(tok.Encode(golden.prompt, true), golden.prompt_ids);
  ExecutorOptions eo;
  eo.threads = c.threads;
  eo.isa = c.isa;
  eo.kv_type = c.kv;
  eo.max_batch_tokens = 64;
  auto ex = MakeCpuExecutor(model, eo);
  if (!ex.ok() && c.isa != "scalar") GTEST_SKIP() << ex.status();
  ASSERT_TRUE(ex.ok()) << ex.status();
  GenerateOptions go;
  go.max_tokens = 128;
  go.sampling.temperature = 0;
  auto r = GenerateSingle(**ex, tok, golden.prompt_ids, go);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tokens, golden.generated_ids);
  EXPECT_EQ(r->text, golden.text);
}

INSTANTIATE_TEST_SUITE_P(
    Files, GoldenTest,
    ::testing::Values(Case{"stories260K-f32.gguf", "", 1}, Case{"stories260K-f32.gguf", "", 2},
                      // 3 threads: 4 KV heads do not split evenly, so one-token steps take the
                      // shared path for Q, K, V and attention.
                      Case{"stories260K-f32.gguf", "", 3},
                      Case{"stories260K-f32.gguf", "scalar", 1}, Case{"stories260K-f16.gguf", "", 2},
                      Case{"stories260K-f16.gguf", "scalar", 1}, Case{"stories260K.bin", "", 2},
                      Case{"stories260K.bin", "scalar", 1},
                      Case{"stories260K-f32.gguf", "", 2, KvDType::kF32}, Case{"stories260K-f16.gguf", "", 2, KvDType::kF32},
                      Case{"stories260K.bin", "scalar", 1, KvDType::kF32},
                      // The AVX2 kernels where the best are AVX-512 (skipped without AVX2).
                      Case{"stories260K-f32.gguf", "avx2", 2}, Case{"stories260K-f16.gguf", "avx2", 1},
                      // The AVX-VNNI kernels (skipped without AVX-VNNI).
                      Case{"stories260K-f32.gguf", "avxvnni", 2}),
    [](const auto& info) {
      std::string n = info.param.model + "_" + (info.param.isa.empty() ? "best" : info.param.isa) + "_" +
                      std::to_string(info.param.threads) + "t_" + (info.param.kv == KvDType::kF16 ? "f16kv" : "f32kv");
      for (char& ch : n) if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return n;
    });

// A llama2.c checkpoint ends a generation at BOS, as llama2.c's run.c does (its models separate
// stories with BOS and hardly ever emit EOS); the GGUF of the same weights, whose vocabulary
// names only EOS, runs on through the BOS. Both agree on every token before it.
TEST(Llama2cEnd, GenerationStopsAtBosLikeRunC) {
  auto run = [](const std::string& file, int max_tokens) {
    auto model = testing::LoadShared(file);
    EXPECT_NE(model, nullptr);
    Tokenizer tok(model->vocab);
    ExecutorOptions eo;
    eo.max_batch_tokens = 64;
    auto ex = MakeCpuExecutor(model, eo);
    EXPECT_TRUE(ex.ok()) << ex.status();
    GenerateOptions go;
    go.max_tokens = max_tokens;
    go.sampling.temperature = 0;
    auto r = GenerateSingle(**ex, tok, tok.Encode("Once upon a time", true), go);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->tokens : std::vector<int32_t>{};
  };
  const std::vector<int32_t> bin = run("stories260K.bin", 500);
  const std::vector<int32_t> gguf = run("stories260K-f32.gguf", 500);
  ASSERT_FALSE(bin.empty());
  ASSERT_LT(bin.size(), 500u) << "no BOS within 500 tokens: the story did not end";
  ASSERT_GT(gguf.size(), bin.size());
  EXPECT_TRUE(std::equal(bin.begin(), bin.end(), gguf.begin()));
  EXPECT_EQ(gguf[bin.size()], 1) << "the .bin run stopped where the GGUF run emits BOS";
  EXPECT_EQ(std::count(bin.begin(), bin.end(), 1), 0);
}

}  // namespace
}  // namespace flotilla
