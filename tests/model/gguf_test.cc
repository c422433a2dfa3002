// GGUF reading: every value type, the shared files, and corrupt files of every kind. A corrupt
// file must give an error that names the problem, never a crash (these also run under ASan).
#include "model/gguf.h"

#include <cstring>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf_writer.h"
#include "model/loader.h"
#include "model/synthetic.h"
#include "tests/common/temp_dir.h"
#include "tests/common/test_models.h"

namespace flotilla {
namespace {

using ::testing::HasSubstr;
using testing::ReadBytes;
using testing::TempDir;
using testing::WriteBytes;

TEST(Gguf, ReadsSharedModelMetadataAndTensors) {
  auto g = GgufFile::Open(testing::ModelPath("stories260K-q8_0.gguf"));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)->version(), 3u);
  EXPECT_EQ(*(*g)->GetString("general.architecture"), "llama");
  EXPECT_EQ(*(*g)->GetUint("llama.embedding_length"), 64u);
  EXPECT_NEAR(*(*g)->GetFloat("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-9);
  EXPECT_EQ((*g)->GetStringArray("tokenizer.ggml.tokens")->size(), 512u);
  EXPECT_EQ((*g)->tensors().size(), 48u);
  const GgufTensorInfo* down = (*g)->FindTensor("blk.0.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->ggml_type, 1u);  // F16: 172 is not a multiple of 32
  EXPECT_EQ(down->dims, (std::vector<uint64_t>{172, 64}));
  EXPECT_EQ((*g)->GetString("llama.embedding_length").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*g)->GetString("no.such.key").status().code(), absl::StatusCode::kNotFound);
}

TEST(Gguf, WriterRoundTripsEveryValueType) {
  TempDir dir;
  GgufWriter w;
  auto scalar = [](GgufType t) {
    GgufValue v;
    v.type = t;
    return v;
  };
  GgufValue u8 = scalar(GgufType::kUint8); u8.u = 200;
  GgufValue i8 = scalar(GgufType::kInt8); i8.i = -100;
  GgufValue u16 = scalar(GgufType::kUint16); u16.u = 60000;
  GgufValue i16 = scalar(GgufType::kInt16); i16.i = -30000;
  GgufValue i32 = scalar(GgufType::kInt32); i32.i = -2000000000;
  GgufValue u64 = scalar(GgufType::kUint64); u64.u = 1ull << 60;
  GgufValue i64 = scalar(GgufType::kInt64); i64.i = -(1ll << 60);
  GgufValue f64 = scalar(GgufType::kFloat64); f64.f = 3.141592653589793;
  GgufValue nested = scalar(GgufType::kArray);
  nested.elem_type = GgufType::kArray;
  for (int k = 0; k < 2; ++k) {
    GgufValue inner = scalar(GgufType::kArray);
    inner.elem_type = GgufType::kUint16;
    for (int j = 0; j < 3; ++j) {
      GgufValue e = scalar(GgufType::kUint16);
      e.u = k * 10 + j;
      inner.array.push_back(e);
    }
    nested.array.push_back(inner);
  }
  w.Set("t.u8", u8);
  w.Set("t.i8", i8);
  w.Set("t.u16", u16);
  w.Set("t.i16", i16);
  w.SetUint32("t.u32", 4000000000u);
  w.Set("t.i32", i32);
  w.Set("t.u64", u64);
  w.Set("t.i64", i64);
  w.SetFloat32("t.f32", 0.5f);
  w.Set("t.f64", f64);
  w.SetBool("t.bool", true);
  w.SetString("t.str", "h\xc3\xa9llo");
  w.SetStringArray("t.strs", {"a", "", "ccc"});
  w.Set("t.nested", nested);
  std::vector<float> data = {1, 2, 3, 4, 5, 6, 7, 8};
  ASSERT_TRUE(w.AddTensor("x", {8}, kernels::DType::kF32, [&](uint8_t* d, size_t n) { std::memcpy(d, data.data(), n); }).ok());
  ASSERT_TRUE(w.WriteFile(dir.File("t.gguf")).ok());
  auto g = GgufFile::Open(dir.File("t.gguf"));
  ASSERT_TRUE(g.ok()) << g.status();
  const auto& m = (*g)->metadata();
  EXPECT_EQ(m.at("t.u8").u, 200u);
  EXPECT_EQ(m.at("t.i8").i, -100);
  EXPECT_EQ(m.at("t.u16").u, 60000u);
  EXPECT_EQ(m.at("t.i16").i, -30000);
  EXPECT_EQ(*(*g)->GetUint("t.u32"), 4000000000u);
  EXPECT_EQ(m.at("t.i32").i, -2000000000);
  EXPECT_EQ(*(*g)->GetUint("t.u64"), 1ull << 60);
  EXPECT_EQ(m.at("t.i64").i, -(1ll << 60));
  EXPECT_EQ(*(*g)->GetFloat("t.f32"), 0.5);
  EXPECT_EQ(*(*g)->GetFloat("t.f64"), 3.141592653589793);
  EXPECT_TRUE(*(*g)->GetBool("t.bool"));
  EXPECT_EQ(*(*g)->GetString("t.str"), "h\xc3\xa9llo");
  EXPECT_EQ(*(*g)->GetStringArray("t.strs"), (std::vector<std::string>{"a", "", "ccc"}));
  ASSERT_EQ(m.at("t.nested").array.size(), 2u);
  EXPECT_EQ(m.at("t.nested").array[1].array[2].u, 12u);
  EXPECT_EQ((*g)->GetUint("t.i64").status().code(), absl::StatusCode::kInvalidArgument);  // negative
  const GgufTensorInfo* t = (*g)->FindTensor("x");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(std::memcmp(t->data, data.data(), 32), 0);
}

// A tiny but complete Llama file, written with the project's own writer.
std::string WriteTiny(const TempDir& dir, kernels::DType type = kernels::DType::kQ8_0) {
  SyntheticShape s{64, 2, 4, 2, 96, 300, 256, false};
  SynthOptions o;
  o.type = type;
  const std::string path = dir.File("tiny.gguf");
  EXPECT_TRUE(WriteSyntheticModel(s, o, path).ok());
  return path;
}

size_t Find(const std::string& bytes, const std::string& needle) {
  const size_t at = bytes.find(needle);
  EXPECT_NE(at, std::string::npos) << needle;
  return at;
}

template <class T>
void Patch(std::string& bytes, size_t at, T value) {
  std::memcpy(bytes.data() + at, &value, sizeof(T));
}

absl::Status OpenBytes(const TempDir& dir, const std::string& bytes) {
  WriteBytes(dir.File("bad.gguf"), bytes);
  auto m = LoadModel(dir.File("bad.gguf"));
  return m.ok() ? absl::OkStatus() : m.status();
}

TEST(GgufCorrupt, TruncatedAtEveryByteIsAnErrorNotACrash) {
  TempDir dir;
  const std::string good = ReadBytes(WriteTiny(dir, kernels::DType::kQ4_0));
  ASSERT_TRUE(OpenBytes(dir, good).ok());
  // The last tensor's data ends where the file's final padding starts.
  auto g = GgufFile::Open(dir.File("tiny.gguf"));
  ASSERT_TRUE(g.ok());
  size_t end = 0;
  for (const auto& t : (*g)->tensors()) end = std::max<size_t>(end, t.data - (*g)->file()->data() + t.n_bytes);
  // Every byte through the header, metadata and tensor infos; then a stride through the weights.
  const size_t meta_end = (*g)->tensors()[0].data - (*g)->file()->data();
  int errors = 0;
  for (size_t len = 0; len < end; len += (len < meta_end ? 1 : 97)) {
    const absl::Status s = OpenBytes(dir, good.substr(0, len));
    ASSERT_FALSE(s.ok()) << "truncated to " << len << " bytes was accepted";
    ++errors;
  }
  EXPECT_GT(errors, 1000);
  const absl::Status s = OpenBytes(dir, good.substr(0, end - 1));
  EXPECT_THAT(std::string(s.message()), HasSubstr("extends past the end"));
  EXPECT_THAT(std::string(OpenBytes(dir, good.substr(0, 20)).message()), HasSubstr("truncated reading metadata count"));
  EXPECT_THAT(std::string(OpenBytes(dir, good.substr(0, 20)).message()), HasSubstr("bad.gguf"));  // names the file
}

// A custom general.alignment places every tensor on that boundary, and GGUF v2 (the same layout
// with 64-bit counts, as v3) reads the same.
TEST(Gguf, CustomAlignmentAndVersion2) {
  TempDir dir;
  GgufWriter w(64);
  w.SetUint32("general.alignment", 64);
  const std::vector<float> a = {1.5f, -2.25f, 3.0f};  // 12 bytes: the next tensor needs padding
  const std::vector<float> b = {0.5f, 0.25f, -8.0f, 16.0f, 7.0f};
  auto fill = [](const std::vector<float>& v) {
    return [v](uint8_t* dst, size_t n) { std::memcpy(dst, v.data(), n); };
  };
  ASSERT_TRUE(w.AddTensor("a", {3}, kernels::DType::kF32, fill(a)).ok());
  ASSERT_TRUE(w.AddTensor("b", {5}, kernels::DType::kF32, fill(b)).ok());
  ASSERT_TRUE(w.WriteFile(dir.File("v3.gguf")).ok());
  std::string bytes = ReadBytes(dir.File("v3.gguf"));
  Patch<uint32_t>(bytes, 4, 2);
  WriteBytes(dir.File("v2.gguf"), bytes);
  for (const char* name : {"v3.gguf", "v2.gguf"}) {
    SCOPED_TRACE(name);
    auto g = GgufFile::Open(dir.File(name));
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ((*g)->version(), name[1] == '3' ? 3u : 2u);
    EXPECT_EQ((*g)->alignment(), 64u);
    const GgufTensorInfo* ta = (*g)->FindTensor("a");
    const GgufTensorInfo* tb = (*g)->FindTensor("b");
    ASSERT_NE(ta, nullptr);
    ASSERT_NE(tb, nullptr);
    for (const GgufTensorInfo* t : {ta, tb}) EXPECT_EQ((t->data - (*g)->file()->data()) % 64, 0) << t->name;
    EXPECT_EQ(tb->offset, 64u);
    EXPECT_EQ(std::memcmp(ta->data, a.data(), 12), 0);
    EXPECT_EQ(std::memcmp(tb->data, b.data(), 20), 0);
  }
  // An alignment that is not a power of two is refused with its name.
  GgufWriter bad;
  bad.SetUint32("general.alignment", 48);
  ASSERT_TRUE(bad.WriteFile(dir.File("bad.gguf")).ok());
  auto g = GgufFile::Open(dir.File("bad.gguf"));
  ASSERT_FALSE(g.ok());
  EXPECT_THAT(std::string(g.status().message()), HasSubstr("alignment"));
}

TEST(GgufCorrupt, HeaderErrors) {
  TempDir dir;
  const std::string good = ReadBytes(WriteTiny(dir));
  std::string b = good;
  b[0] = 'X';
  EXPECT_FALSE(OpenBytes(dir, b).ok());
  b = good;
  Patch<uint32_t>(b, 4, 1);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("version 1 is not supported"));
  b = good;
  Patch<uint64_t>(b, 8, 1ull << 60);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("tensor count"));
  b = good;
  Patch<uint64_t>(b, 16, 1ull << 60);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("metadata count"));
}

TEST(GgufCorrupt, MetadataErrors) {
  TempDir dir;
  const std::string good = ReadBytes(WriteTiny(dir));
  // Huge string length: the first key's length field sits at byte 24.
  std::string b = good;
  Patch<uint64_t>(b, 24, 1ull << 62);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("claims length"));
  // Unknown value type right after the first key "general.architecture".
  b = good;
  const size_t key = Find(b, "general.architecture");
  Patch<uint32_t>(b, key + 20, 42);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("unknown value type 42"));
  // Huge array length for the token list.
  b = good;
  const size_t tokens = Find(b, "tokenizer.ggml.tokens");
  Patch<uint64_t>(b, tokens + 21 + 4 + 4, 1ull << 61);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("cannot fit"));
  // Duplicate key: rename a key to an earlier one of the same length.
  b = good;
  const size_t ctx = Find(b, "llama.block_count");  // 17 bytes
  std::memcpy(b.data() + ctx, "llama.context_len", 17);
  const size_t ctx2 = Find(b, "llama.context_length");
  (void)ctx2;
  EXPECT_FALSE(OpenBytes(dir, b).ok());
  // A bool that is neither 0 nor 1.
  b = good;
  const size_t bos = Find(b, "tokenizer.ggml.add_bos_token");
  b[bos + 28 + 4] = 7;
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("bool value 7"));
}

TEST(GgufCorrupt, TensorInfoErrors) {
  TempDir dir;
  const std::string good = ReadBytes(WriteTiny(dir));
  const size_t name = Find(good, "output.weight");  // info: name, n_dims u32, dims u64 x2, type u32, offset u64
  const size_t n_dims = name + 13, dim0 = n_dims + 4, type = dim0 + 16, offset = type + 4;
  std::string b = good;
  Patch<uint32_t>(b, n_dims, 9);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("dimensions"));
  b = good;
  Patch<uint64_t>(b, dim0, 0);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("invalid dimension"));
  b = good;
  Patch<uint64_t>(b, dim0 + 8, 1ull << 50);
  EXPECT_FALSE(OpenBytes(dir, b).ok());
  b = good;
  Patch<uint32_t>(b, type, 99);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("does not support"));
  b = good;
  Patch<uint32_t>(b, type, 12);  // Q4_K
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("Q4_K"));
  b = good;
  Patch<uint64_t>(b, offset, 1ull << 40);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("extends past the end"));
  b = good;
  Patch<uint64_t>(b, offset, 3);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("not aligned"));
  // A row that is not a whole number of blocks.
  b = good;
  Patch<uint64_t>(b, dim0, 65);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("block size"));
}

TEST(GgufCorrupt, ModelLevelErrorsNameTheProblem) {
  TempDir dir;
  const std::string good = ReadBytes(WriteTiny(dir));
  std::string b = good;
  const size_t arch = Find(b, "llama") ;
  (void)arch;
  // Architecture value "llama" -> "gpt2x" (same length) where it is the value of general.architecture.
  const size_t key = Find(b, "general.architecture");
  const size_t value = key + 20 + 4 + 8;
  std::memcpy(b.data() + value, "gpt2x", 5);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("architecture 'gpt2x' is not supported"));
  b = good;
  const size_t tm = Find(b, "tokenizer.ggml.model");
  std::memcpy(b.data() + tm + 20 + 4 + 8, "gpt2x", 5);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("tokenizer model 'gpt2x'"));
  b = good;
  const size_t t = Find(b, "blk.1.ffn_up.weight");
  b[t + 4] = '7';  // blk.7: the model lacks blk.1.ffn_up
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("'blk.1.ffn_up.weight' is missing"));
  b = good;
  const size_t bos = Find(b, "tokenizer.ggml.bos_token_id");
  Patch<uint32_t>(b, bos + 27 + 4, 5000);
  EXPECT_THAT(std::string(OpenBytes(dir, b).message()), HasSubstr("not a token id"));
  // The shared "q4_k_m" file holds Q5_0 tensors, which Flotilla does not run.
  auto m = LoadModel(testing::ModelPath("stories260K-q4_k_m.gguf"));
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("Q5_0"));
}

TEST(GgufCorrupt, RandomByteFlipsNeverCrash) {
  TempDir dir;
  const std::string good = ReadBytes(WriteTiny(dir));
  std::mt19937 rng(3);
  // Only the header, metadata and tensor infos matter; flips in weights are just other weights.
  auto g = GgufFile::Open(dir.File("tiny.gguf"));
  const size_t meta_end = (*g)->tensors()[0].data - (*g)->file()->data();
  for (int i = 0; i < 3000; ++i) {
    std::string b = good;
    for (int k = 0; k < 3; ++k) b[rng() % meta_end] ^= static_cast<char>(1 + rng() % 255);
    (void)OpenBytes(dir, b);  // any result but a crash or hang is fine
  }
}

TEST(Llama2c, CorruptCheckpointsAndTokenizers) {
  TempDir dir;
  const std::string ckpt = ReadBytes(testing::ModelPath("stories260K.bin"));
  const std::string tok = ReadBytes(testing::ModelPath("tok512.bin"));
  WriteBytes(dir.File("tok512.bin"), tok);
  WriteBytes(dir.File("m.bin"), ckpt);
  ASSERT_TRUE(LoadModel(dir.File("m.bin")).ok());
  WriteBytes(dir.File("m.bin"), ckpt.substr(0, ckpt.size() - 4));
  EXPECT_THAT(std::string(LoadModel(dir.File("m.bin")).status().message()), HasSubstr("its shape needs"));
  WriteBytes(dir.File("m.bin"), ckpt.substr(0, 20));
  EXPECT_THAT(std::string(LoadModel(dir.File("m.bin")).status().message()), HasSubstr("shorter than its header"));
  std::string b = ckpt;
  Patch<int32_t>(b, 12, 7);  // 7 heads do not divide dim 64
  WriteBytes(dir.File("m.bin"), b);
  EXPECT_FALSE(LoadModel(dir.File("m.bin")).ok());
  b = ckpt;
  Patch<int32_t>(b, 0, -64);
  WriteBytes(dir.File("m.bin"), b);
  EXPECT_FALSE(LoadModel(dir.File("m.bin")).ok());
  WriteBytes(dir.File("m.bin"), ckpt);
  WriteBytes(dir.File("tok512.bin"), tok.substr(0, tok.size() / 2));
  EXPECT_THAT(std::string(LoadModel(dir.File("m.bin")).status().message()), HasSubstr("truncated"));
  std::filesystem::remove(dir.File("tok512.bin"));
  EXPECT_THAT(std::string(LoadModel(dir.File("m.bin")).status().message()), HasSubstr("no tokenizer"));
}

TEST(Loader, ContextOverrideAndUnknownFiles) {
  LoadOptions o;
  o.context_length = 512;
  auto m = LoadModel(testing::ModelPath("stories260K-f32.gguf"), o);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->config.context_length, 512);
  EXPECT_EQ((*m)->config.file_context_length, 128);
  EXPECT_TRUE((*m)->config.tied_output == false);
  o.context_length = -3;
  EXPECT_FALSE(LoadModel(testing::ModelPath("stories260K-f32.gguf"), o).ok());
  EXPECT_EQ(LoadModel("/nonexistent/model.gguf").status().code(), absl::StatusCode::kNotFound);
  TempDir dir;
  WriteBytes(dir.File("x.txt"), "hello");
  EXPECT_THAT(std::string(LoadModel(dir.File("x.txt")).status().message()), HasSubstr("neither a GGUF"));
}

}  // namespace
}  // namespace flotilla
