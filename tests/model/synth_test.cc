// `flotilla synth` and WriteSyntheticModel: the files load in our reader with the shape and
// tensor types llama.cpp's quantizer would give, run, are deterministic per seed, pass an
// independent Python parse of the GGUF layout (tests/model/gguf_inspect.py), and carry the Llama 2
// tokenizer when asked.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "common/model_path.h"
#include "gtest/gtest.h"
#include "kernels/quant.h"
#include "model/executor.h"
#include "model/generate.h"
#include "model/loader.h"
#include "model/synthetic.h"
#include "model/tokenizer.h"
#include "tests/common/temp_dir.h"

namespace flotilla {
namespace {

using kernels::DType;

std::string SourceDir() {
  const char* s = std::getenv("FLOTILLA_SOURCE_DIR");
  return s ? s : ".";
}

// Runs a shell command; returns its exit status and first line of output.
int Shell(const std::string& cmd, std::string* first_line = nullptr) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[512];
  std::string out;
  while (fgets(buf, sizeof(buf), p)) out += buf;
  const int status = pclose(p);
  if (first_line) *first_line = out.substr(0, out.find('\n'));
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool HavePython() { return Shell("python3 -c 'import struct'") == 0; }

TEST(Synth, ParsesShapes) {
  auto s = ParseSyntheticShape("110m");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->dim, 768);
  EXPECT_EQ(s->n_layers, 12);
  EXPECT_EQ(s->n_heads, 12);
  EXPECT_EQ(s->n_kv_heads, 12);
  EXPECT_EQ(s->ffn_dim, 2048);
  EXPECT_EQ(s->vocab_size, 32000);
  EXPECT_FALSE(s->tied_output);
  s = ParseSyntheticShape("1b");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->dim, 2048);
  EXPECT_EQ(s->n_layers, 22);
  EXPECT_EQ(s->n_heads, 32);
  EXPECT_EQ(s->n_kv_heads, 4);
  EXPECT_EQ(s->ffn_dim, 5632);
  s = ParseSyntheticShape("64,2,4,2,100,300");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->ffn_dim, 100);
  for (const char* bad : {"", "2b", "64,2,4,2,100", "64,2,3,1,100,300", "64,2,4,3,100,300", "64,2,4,2,100,10", "64,x,4,2,100,300"}) {
    EXPECT_FALSE(ParseSyntheticShape(bad).ok()) << bad;
  }
}

struct TypeCase {
  DType type;
  DType attn, down, output;  // what each matrix must be stored as
};

TEST(Synth, WritesModelsThatLoadAndRun) {
  testing::TempDir dir;
  const auto shape = ParseSyntheticShape("64,2,4,2,100,300");
  ASSERT_TRUE(shape.ok());
  const bool python = HavePython();
  if (!python) std::fprintf(stderr, "python3 not found: skipping the independent GGUF parse\n");
  // FFN 100 is not a multiple of 32, so ffn_down falls back to F16 in block-quantized files, and
  // Q4_0 files keep a Q8_0 output matrix, as llama.cpp's quantizer does.
  for (const TypeCase& c : {TypeCase{DType::kF16, DType::kF16, DType::kF16, DType::kF16},
                            TypeCase{DType::kQ8_0, DType::kQ8_0, DType::kF16, DType::kQ8_0},
                            TypeCase{DType::kQ4_0, DType::kQ4_0, DType::kF16, DType::kQ8_0},
                            TypeCase{DType::kBF16, DType::kBF16, DType::kBF16, DType::kBF16}}) {
    const std::string name = kernels::Info(c.type).name;
    const std::string path = dir.File(name + ".gguf");
    SynthOptions o;
    o.type = c.type;
    o.seed = 5;
    ASSERT_TRUE(WriteSyntheticModel(*shape, o, path).ok()) << name;
    const auto file_bytes = static_cast<int64_t>(std::filesystem::file_size(path));
    EXPECT_GE(file_bytes, SyntheticModelBytes(*shape, c.type)) << name;
    EXPECT_LT(file_bytes, SyntheticModelBytes(*shape, c.type) + 64 * 1024) << name << ": tensors plus metadata";

    auto loaded = LoadModel(path);
    ASSERT_TRUE(loaded.ok()) << name << ": " << loaded.status();
    std::shared_ptr<const LoadedModel> m = std::move(*loaded);
    EXPECT_EQ(m->config.dim, 64);
    EXPECT_EQ(m->config.n_layers, 2);
    EXPECT_EQ(m->config.n_heads, 4);
    EXPECT_EQ(m->config.n_kv_heads, 2);
    EXPECT_EQ(m->config.ffn_dim, 100);
    EXPECT_EQ(m->config.vocab_size, 300);
    EXPECT_FALSE(m->config.tied_output);
    EXPECT_EQ(m->config.weight_type, c.type) << name;
    EXPECT_EQ(m->weights.layers[1].wq.type, c.attn) << name;
    EXPECT_EQ(m->weights.layers[1].w_down.type, c.down) << name;
    EXPECT_EQ(m->weights.output.type, c.output) << name;

    // Random weights of scale 0.02: the embedding's spread says the values are what we wrote.
    std::vector<float> row(64);
    double ss = 0;
    for (int r = 0; r < 300; ++r) {
      kernels::DequantizeRow(m->weights.token_embd.type,
                             static_cast<const char*>(m->weights.token_embd.data) + r * m->weights.token_embd.row_bytes,
                             row.data(), 64);
      for (float v : row) ss += v * v;
    }
    EXPECT_NEAR(std::sqrt(ss / (300 * 64)), 0.02, 0.002) << name;

    ExecutorOptions eo;
    eo.threads = 2;
    auto ex = MakeCpuExecutor(m, eo);
    ASSERT_TRUE(ex.ok()) << ex.status();
    Tokenizer tok(m->vocab);
    const auto prompt = tok.Encode("the rain in spain", true);
    auto all = ForwardAllPositions(**ex, prompt);
    ASSERT_TRUE(all.ok()) << all.status();
    for (float v : *all) ASSERT_TRUE(std::isfinite(v)) << name;
    GenerateOptions go;
    go.max_tokens = 8;
    go.sampling.temperature = 0;
    go.stop_at_eos = false;
    auto r = GenerateSingle(**ex, tok, prompt, go);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->tokens.size(), 8u) << name;

    if (python) {
      std::string line;
      EXPECT_EQ(Shell("python3 " + SourceDir() + "/tests/model/gguf_inspect.py " + path, &line), 0) << name << ": " << line;
    }
  }
}

TEST(Synth, SameSeedSameBytes) {
  testing::TempDir dir;
  const auto shape = ParseSyntheticShape("64,1,4,4,64,300");
  ASSERT_TRUE(shape.ok());
  SynthOptions o;
  o.type = DType::kQ4_0;
  o.seed = 9;
  ASSERT_TRUE(WriteSyntheticModel(*shape, o, dir.File("a.gguf")).ok());
  ASSERT_TRUE(WriteSyntheticModel(*shape, o, dir.File("b.gguf")).ok());
  o.seed = 10;
  ASSERT_TRUE(WriteSyntheticModel(*shape, o, dir.File("c.gguf")).ok());
  EXPECT_EQ(testing::ReadBytes(dir.File("a.gguf")), testing::ReadBytes(dir.File("b.gguf")));
  EXPECT_NE(testing::ReadBytes(dir.File("a.gguf")), testing::ReadBytes(dir.File("c.gguf")));
}

// The CLI: default vocabulary for 32,000-token shapes is Llama 2's, from the model search path.
TEST(Synth, CommandCarriesTheLlama2Vocabulary) {
  const char* bin = std::getenv("FLOTILLA_BIN_DIR");
  const std::string flotilla = std::string(bin ? bin : "build/bin") + "/flotilla";
  if (!std::filesystem::exists(flotilla)) GTEST_SKIP() << flotilla << " is not built";
  if (!ResolveModelPath("llama2-vocab-tiny-f16.gguf").ok()) GTEST_SKIP() << "llama2-vocab-tiny-f16.gguf not found";
  testing::TempDir dir;
  const std::string path = dir.File("v.gguf");
  std::string line;
  ASSERT_EQ(Shell(flotilla + " synth --shape 64,1,4,4,64,32000 --type q8_0 --seed 3 -o " + path, &line), 0) << line;
  auto m = LoadModel(path);
  ASSERT_TRUE(m.ok()) << m.status();
  Tokenizer tok((*m)->vocab);
  EXPECT_EQ(tok.Encode("Hello world", true), (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_NE(Shell(flotilla + " synth --shape 3b --type q8_0 -o " + dir.File("x.gguf")), 0);
  EXPECT_NE(Shell(flotilla + " synth --shape 110m --type q5_k -o " + dir.File("x.gguf")), 0);
  if (HavePython()) {
    EXPECT_EQ(Shell("python3 " + SourceDir() + "/tests/model/gguf_inspect.py " + path, &line), 0) << line;
  }
}

}  // namespace
}  // namespace flotilla
