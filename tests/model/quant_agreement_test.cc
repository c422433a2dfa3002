// Quantized models are judged against the f32 model on the golden sequence, teacher-forced:
// at every position, does the quantized model's top token equal the f32 model's, and how far
// apart are the two next-token distributions (KL divergence, reported)?
#include <cmath>
#include <cstdio>

#include "gtest/gtest.h"
#include "model/executor.h"
#include "model/generate.h"
#include "tests/common/test_models.h"

namespace flotilla {
namespace {

struct Agreement {
  double top1 = 0;
  double mean_kl = 0;
};

std::vector<float> Logits(const std::string& file, const std::vector<int32_t>& seq) {
  auto model = testing::LoadShared(file);
  EXPECT_NE(model, nullptr);
  if (!model) return {};
  ExecutorOptions eo;
  eo.max_batch_tokens = 64;  // several chunks, so chunked prefill is exercised too
  auto ex = MakeCpuExecutor(model, eo);
  EXPECT_TRUE(ex.ok());
  auto all = ForwardAllPositions(**ex, seq);
  EXPECT_TRUE(all.ok()) << all.status();
  return all.ok() ? *all : std::vector<float>{};
}

Agreement Compare(const std::vector<float>& ref, const std::vector<float>& q, int V, size_t first, size_t n) {
  Agreement a;
  int agree = 0;
  for (size_t p = first; p < n; ++p) {
    const float* r = ref.data() + p * V;
    const float* s = q.data() + p * V;
    int ar = 0, as = 0;
    for (int i = 1; i < V; ++i) {
      if (r[i] > r[ar]) ar = i;
      if (s[i] > s[as]) as = i;
    }
    agree += ar == as;
    // KL(P_ref || P_q) with log-sum-exp normalisation.
    double zr = 0, zs = 0;
    for (int i = 0; i < V; ++i) {
      zr += std::exp(static_cast<double>(r[i] - r[ar]));
      zs += std::exp(static_cast<double>(s[i] - s[as]));
    }
    double kl = 0;
    for (int i = 0; i < V; ++i) {
      const double lp = r[i] - r[ar] - std::log(zr);
      const double lq = s[i] - s[as] - std::log(zs);
      kl += std::exp(lp) * (lp - lq);
    }
    a.mean_kl += kl;
  }
  a.top1 = static_cast<double>(agree) / (n - first);
  a.mean_kl /= (n - first);
  return a;
}

class QuantAgreement : public ::testing::TestWithParam<std::pair<std::string, double>> {};

TEST_P(QuantAgreement, TeacherForcedTop1AndKl) {
  const auto golden = testing::LoadGolden("stories260K-f32.json");
  std::vector<int32_t> seq = golden.prompt_ids;
  seq.insert(seq.end(), golden.generated_ids.begin(), golden.generated_ids.end());
  const auto ref = Logits("stories260K-f32.gguf", seq);
  const auto q = Logits(GetParam().first, seq);
  ASSERT_EQ(ref.size(), q.size());
  const int V = 512;
  // Positions from the last prompt token on predict the generated tokens.
  const Agreement a = Compare(ref, q, V, golden.prompt_ids.size() - 1, seq.size() - 1);
  std::printf("%s: teacher-forced top-1 agreement %.1f %%, mean KL %.5f nats over %zu positions\n",
              GetParam().first.c_str(), 100 * a.top1, a.mean_kl, golden.generated_ids.size());
  RecordProperty("top1_agreement", std::to_string(a.top1));
  RecordProperty("mean_kl", std::to_string(a.mean_kl));
  EXPECT_GE(a.top1, GetParam().second);
  EXPECT_LT(a.mean_kl, 0.5);
}

INSTANTIATE_TEST_SUITE_P(Files, QuantAgreement,
                         ::testing::Values(std::make_pair(std::string("stories260K-q8_0.gguf"), 0.95),
                                           std::make_pair(std::string("stories260K-q4_0.gguf"), 0.80),
                                           std::make_pair(std::string("stories260K-f16.gguf"), 0.99)));

}  // namespace
}  // namespace flotilla
