// Host-side planning of the CUDA executor (no GPU needed): step packing, KV sizing and its error
// messages, tensor-parallel shards, and the factory's error where no GPU or no CUDA build is.
#include <cstdio>
#include <numeric>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/cuda/cuda_executor.h"
#include "model/cuda/plan.h"

namespace flotilla::cuda_internal {
namespace {

using ::testing::HasSubstr;

LlamaConfig SmallConfig() {
  LlamaConfig c;
  c.dim = 64;
  c.n_layers = 5;
  c.n_heads = 8;
  c.n_kv_heads = 4;
  c.head_dim = 8;
  c.ffn_dim = 172;
  c.vocab_size = 512;
  c.context_length = 512;
  return c;
}

TEST(CudaPlan, EagerBatchSplitsDecodeTokensAndPrefillTiles) {
  StepPlanner planner(/*max_tokens=*/64, /*max_blocks_per_seq=*/32, /*block_size=*/16, /*tile_tokens=*/4,
                      /*trash_block=*/99, {1, 2, 4});
  std::vector<int32_t> words(planner.layout().total, -7);
  const std::vector<int32_t> t0 = {5, 6, 7}, t1 = {8}, t2 = {9, 10};
  ForwardBatch b;
  const int s0 = b.AddSequence(t0), s1 = b.AddSequence(t1), s2 = b.AddSequence(t2);
  for (int p = 0; p < 6; ++p) b.Add(100 + p, 30 + p, s0, p == 5);  // a prefill chunk of 6 -> tiles 4 + 2
  b.Add(200, 3, s1, true);                                           // a decode token
  b.Add(300, 17, s2, true);                                          // a decode token
  const StepPlan& p = planner.Plan(b, /*allow_graph=*/true, words.data());
  const StepLayout& L = planner.layout();
  EXPECT_EQ(p.graph_size, 0);  // sequence 0 has several tokens: not a decode-only step
  EXPECT_EQ(p.T, 8);
  EXPECT_EQ(p.n_tiles, 2);
  EXPECT_EQ(words[L.tiles + 0], 0);
  EXPECT_EQ(words[L.tiles + 1], 4);
  EXPECT_EQ(words[L.tiles + 2], 4);
  EXPECT_EQ(words[L.tiles + 3], 2);
  ASSERT_EQ(p.n_decode, 2);
  EXPECT_EQ(words[L.decode_list + 0], 6);
  EXPECT_EQ(words[L.decode_list + 1], 7);
  ASSERT_EQ(p.n_logits, 3);
  EXPECT_EQ(words[L.logit_rows + 0], 5);
  EXPECT_EQ(words[L.logit_rows + 1], 6);
  EXPECT_EQ(words[L.logit_rows + 2], 7);
  EXPECT_EQ(p.logits_from, (std::vector<int32_t>{0, 1, 2}));
  // Block tables: only the blocks the positions need, packed in order of first appearance.
  EXPECT_EQ(words[L.table_start + 0], 0);
  EXPECT_EQ(words[L.table_start + 1], 3);  // positions 30..35 need 3 blocks of 16
  EXPECT_EQ(words[L.table_start + 2], 4);  // position 3 needs 1
  EXPECT_EQ(std::vector<int32_t>(words.begin() + L.blocks, words.begin() + L.blocks + 6),
            (std::vector<int32_t>{5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(p.upload_words, L.blocks + 6);
  EXPECT_EQ(words[L.seq + 6], 1);
  EXPECT_EQ(words[L.positions + 7], 17);
}

TEST(CudaPlan, DecodeStepIsPaddedToTheNextGraph) {
  StepPlanner planner(64, 32, 16, 16, /*trash_block=*/99, {4, 1, 2, 2, 128});  // 128 > max tokens: dropped
  EXPECT_EQ(planner.graph_sizes(), (std::vector<int>{1, 2, 4}));
  std::vector<int32_t> words(planner.layout().total, -7);
  const std::vector<int32_t> t0 = {1}, t1 = {2, 3, 4};
  ForwardBatch b;
  const int s0 = b.AddSequence(t0), s1 = b.AddSequence(t1);
  b.Add(11, 0, s0, true);
  b.Add(12, 40, s1, false);  // asks for no logits
  const StepPlan& p = planner.Plan(b, true, words.data());
  const StepLayout& L = planner.layout();
  EXPECT_EQ(p.graph_size, 2);
  EXPECT_EQ(p.T, 2);
  EXPECT_EQ(p.n_logits, 2);                              // the graph computes every row
  EXPECT_EQ(p.logits_from, (std::vector<int32_t>{0}));  // only the first is copied out

  ForwardBatch c;
  const int c0 = c.AddSequence(t0), c1 = c.AddSequence(t1), c2 = c.AddSequence(t0);
  c.Add(11, 0, c0, true);
  c.Add(12, 40, c1, true);
  c.Add(13, 5, c2, true);
  const StepPlan& q = planner.Plan(c, true, words.data());
  EXPECT_EQ(q.graph_size, 4);
  EXPECT_EQ(q.T, 4);
  EXPECT_EQ(q.real_T, 3);
  EXPECT_EQ(q.n_decode, 4);
  // The padding token reads and writes only the trash block.
  const int pad_seq = words[L.seq + 3];
  EXPECT_EQ(pad_seq, 3);
  EXPECT_EQ(words[L.blocks + words[L.table_start + pad_seq]], 99);
  EXPECT_EQ(words[L.positions + 3], 0);
  EXPECT_EQ(words[L.tokens + 3], 0);
  EXPECT_EQ(q.logits_from, (std::vector<int32_t>{0, 1, 2}));

  // Without graphs allowed, the same batch runs eagerly.
  const StepPlan& e = planner.Plan(c, false, words.data());
  EXPECT_EQ(e.graph_size, 0);
  EXPECT_EQ(e.T, 3);
  EXPECT_EQ(e.n_decode, 3);

  // A batch larger than every graph runs eagerly too.
  ForwardBatch big;
  for (int i = 0; i < 5; ++i) big.Add(1, 0, big.AddSequence(t0), true);
  EXPECT_EQ(planner.Plan(big, true, words.data()).graph_size, 0);
}

TEST(CudaPlan, PaddingPlanUsesOnlyTheTrashBlock) {
  StepPlanner planner(8, 4, 16, 16, 7, {8});
  std::vector<int32_t> words(planner.layout().total, -1);
  const StepPlan& p = planner.PlanPadding(8, words.data());
  EXPECT_EQ(p.T, 8);
  EXPECT_EQ(p.graph_size, 8);
  EXPECT_TRUE(p.logits_from.empty());
  EXPECT_EQ(words[planner.layout().blocks], 7);
}

TEST(CudaPlan, KvCacheFromFractionBytesOrBlocks) {
  const LlamaConfig c = SmallConfig();
  const int64_t block = KvBlockBytes(c, c.n_kv_heads, 16, KvCacheType::kF16);
  EXPECT_EQ(block, 2 * 5 * 4 * 8 * 16 * 2);
  CudaExecutorOptions o;
  o.kv_memory_fraction = 0.5;
  auto p = PlanKvCache(o, c, block, 100 * block, "GPU 0 (test)");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->num_blocks, 50);
  o.kv_cache_bytes = 40 * block + 3;
  p = PlanKvCache(o, c, block, 100 * block, "GPU 0 (test)");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->num_blocks, 40);
  o.num_kv_blocks = 7;  // explicit counts may be smaller than one context
  p = PlanKvCache(o, c, block, 100 * block, "GPU 0 (test)");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->num_blocks, 7);
}

TEST(CudaPlan, KvCacheErrorsNameTheNumbers) {
  const LlamaConfig c = SmallConfig();
  const int64_t block = 1 << 20;
  CudaExecutorOptions o;
  o.num_kv_blocks = 1000;
  auto p = PlanKvCache(o, c, block, 10ll << 20, "GPU 0 (test)");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(p.status().message(), HasSubstr("1000 blocks"));
  EXPECT_THAT(p.status().message(), HasSubstr("GPU 0 (test)"));

  o = CudaExecutorOptions{};
  o.kv_memory_fraction = 0.9;
  p = PlanKvCache(o, c, block, 20ll << 20, "GPU 0 (test)");  // 18 blocks; 512 tokens need 32
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("holds 18 blocks"));
  EXPECT_THAT(p.status().message(), HasSubstr("needs 32"));

  o.kv_memory_fraction = 1.5;
  EXPECT_EQ(PlanKvCache(o, c, block, 20ll << 20, "x").status().code(), absl::StatusCode::kInvalidArgument);

  const absl::Status fit = CheckModelFits(8ll << 30, 1ll << 30, 4ll << 30, 80ll << 30, "GPU 1 (test)");
  EXPECT_EQ(fit.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(fit.message(), HasSubstr("8.00 GiB of weights"));
  EXPECT_THAT(fit.message(), HasSubstr("4.00 GiB of its 80.00 GiB"));
  EXPECT_TRUE(CheckModelFits(1, 1, 2, 2, "x").ok());
}

TEST(CudaPlan, TensorParallelShards) {
  LlamaConfig c = Llama3_8BConfig();
  auto s = MakeShard(c, 4, 3, /*quantized=*/true);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->q_heads, 8);
  EXPECT_EQ(s->q_head0, 24);
  EXPECT_EQ(s->kv_heads, 2);
  EXPECT_EQ(s->kv_head0, 6);
  EXPECT_EQ(s->ffn, 3584);
  EXPECT_EQ(s->ffn0, 3 * 3584);
  EXPECT_THAT(MakeShard(c, 3, 0, true).status().message(), HasSubstr("must divide"));
  const LlamaConfig small = SmallConfig();  // FFN 172: halves of 86 would cut 32-element blocks
  EXPECT_THAT(MakeShard(small, 2, 0, true).status().message(), HasSubstr("multiples of 32"));
  EXPECT_TRUE(MakeShard(small, 2, 0, false).ok());
  EXPECT_TRUE(MakeShard(small, 1, 0, true).ok());
}

TEST(CudaPlan, Llama3Shape) {
  const LlamaConfig c = Llama3_8BConfig();
  EXPECT_EQ(c.dim, 4096);
  EXPECT_EQ(c.n_layers, 32);
  EXPECT_EQ(c.n_heads, 32);
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.ffn_dim, 14336);
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.head_dim, 128);
}

// Where no GPU is usable (this CI machine: no driver) or the build has no CUDA, the factory
// fails at once with FAILED_PRECONDITION and says why; it never crashes or hangs.
TEST(CudaExecutorNoGpu, FactoryReportsWhy) {
  auto count = CudaDeviceCount();
  if (count.ok()) GTEST_SKIP() << *count << " GPU(s) visible: the no-GPU path cannot be exercised here";
  EXPECT_EQ(count.status().code(), absl::StatusCode::kFailedPrecondition);
  std::printf("no-GPU status: %s\n", count.status().ToString().c_str());
  auto ex = MakeCudaExecutorRandom(SmallConfig(), kernels::DType::kF16, 1, CudaExecutorOptions{});
  ASSERT_FALSE(ex.ok());
  EXPECT_EQ(ex.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ex.status().message(), ::testing::AnyOf(HasSubstr("no usable CUDA GPU"), HasSubstr("no CUDA backend")));
  auto loaded = std::make_shared<LoadedModel>();
  loaded->config = SmallConfig();
  EXPECT_EQ(MakeCudaExecutor(loaded, CudaExecutorOptions{}).status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace flotilla::cuda_internal
