// Our Q8_0 and Q4_0 quantizers against llama.cpp's: the shared stories260K files were quantized by
// llama.cpp from the same weights as the f32 file, so quantizing the f32 tensors here must give
// the quantized files' bytes exactly (the layout and rounding are ggml's, not just close to it).
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/quant.h"
#include "model/gguf.h"
#include "tests/common/test_models.h"

namespace flotilla {
namespace {

constexpr uint32_t kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ4_0 = 2, kGgmlQ8_0 = 8;

// Compares every tensor that `quantized` stores as `ggml_type` with our quantization of the same
// tensor of `source` (F32 or F16 rows, converted to f32 first). Returns the number compared.
int CompareTensors(const std::string& source, const std::string& quantized, uint32_t ggml_type,
                   kernels::DType type) {
  auto src = GgufFile::Open(testing::ModelPath(source));
  auto q = GgufFile::Open(testing::ModelPath(quantized));
  EXPECT_TRUE(src.ok()) << src.status();
  EXPECT_TRUE(q.ok()) << q.status();
  if (!src.ok() || !q.ok()) return 0;
  int compared = 0;
  for (const auto& t : (*q)->tensors()) {
    if (t.ggml_type != ggml_type) continue;
    const GgufTensorInfo* s = (*src)->FindTensor(t.name);
    EXPECT_NE(s, nullptr) << t.name;
    if (s == nullptr) continue;
    EXPECT_EQ(s->dims, t.dims) << t.name;
    EXPECT_TRUE(s->ggml_type == kGgmlF32 || s->ggml_type == kGgmlF16) << t.name;
    const int64_t n = s->n_elements;
    std::vector<float> f(n);
    kernels::DequantizeRow(s->ggml_type == kGgmlF32 ? kernels::DType::kF32 : kernels::DType::kF16, s->data, f.data(), n);
    std::vector<uint8_t> ours(t.n_bytes);
    kernels::QuantizeRow(type, f.data(), ours.data(), n);
    int64_t first_diff = -1;
    for (uint64_t i = 0; i < t.n_bytes && first_diff < 0; ++i) {
      if (ours[i] != t.data[i]) first_diff = static_cast<int64_t>(i);
    }
    EXPECT_EQ(first_diff, -1) << t.name << ": first differing byte " << first_diff << " of " << t.n_bytes;
    ++compared;
  }
  return compared;
}

TEST(QuantizerBytes, Q8_0MatchesLlamaCpp) {
  EXPECT_GT(CompareTensors("stories260K-f32.gguf", "stories260K-q8_0.gguf", kGgmlQ8_0, kernels::DType::kQ8_0), 0);
}

TEST(QuantizerBytes, Q4_0MatchesLlamaCpp) {
  EXPECT_GT(CompareTensors("stories260K-f32.gguf", "stories260K-q4_0.gguf", kGgmlQ4_0, kernels::DType::kQ4_0), 0);
}

TEST(QuantizerBytes, Q8_0OutputOfTheQ4_0FileMatchesLlamaCpp) {
  EXPECT_GT(CompareTensors("stories260K-f32.gguf", "stories260K-q4_0.gguf", kGgmlQ8_0, kernels::DType::kQ8_0), 0);
}

}  // namespace
}  // namespace flotilla
