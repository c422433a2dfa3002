// CPU kernel benchmarks (Google Benchmark): matrix products per weight type and shape at 1 and 2
// threads (GB/s of weights streamed, GFLOP/s), activation quantization, paged attention, and the
// thread pool's synchronisation costs (a Run round trip, a barrier inside a Run).
//
// Weight matrices are cycled through copies totalling >= 256 MiB, so every GEMV streams from
// memory as a decode step does (one matrix alone would sit in the 32 MiB L3). The ISA is the
// best this CPU runs unless FLOTILLA_ISA names another (scalar, avx2, avxvnni, avx512).
//
//   kernels_bench --benchmark_min_time=0.05 [--benchmark_filter=MatMul/Q8_0]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>
#include <vector>

#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/fp16.h"
#include "kernels/quant.h"

namespace flotilla::kernels::cpu {
namespace {

constexpr int64_t kColdBytes = int64_t{256} << 20;

const KernelTable& Kt() { return BestKernels(); }

// Activation scratch at a 64-byte boundary, as the executor allocates it (the quantized kernels'
// activation loads are 64 bytes wide; a misaligned buffer splits every one across cache lines).
struct Scratch {
  explicit Scratch(int64_t bytes) : buf(bytes + 64) {}
  void* data() { return buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64; }
  std::vector<char> buf;
};

std::vector<float> Random(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Copies of one random matrix: one, or (cold) enough of them to exceed the caches. `packed`: in
// the kernel table's packed layout (as the CPU executor uses them), when it has one for the
// type (matrix.packed says whether it did). file_bytes: the matrix's size as stored in a model
// file, what the GB/s figures count.
struct BenchWeights {
  BenchWeights(DType type, int64_t rows, int64_t K, bool packed, bool cold, uint64_t seed) {
    const int64_t file_row_bytes = RowBytes(type, K);
    file_bytes = rows * file_row_bytes;
    std::vector<uint8_t> file(file_bytes);
    std::vector<float> row = Random(K, seed);
    for (int64_t r = 0; r < rows; ++r) QuantizeRow(type, row.data(), file.data() + r * file_row_bytes, K);
    matrix = {type, nullptr, rows, K, file_row_bytes};
    packed = packed && CanPack(Kt(), matrix);
    const int64_t row_bytes = packed ? Kt().packed_row_bytes(type, K) : file_row_bytes;
    bytes = (rows * row_bytes + 63) / 64 * 64;  // every copy 64-byte aligned, as the executor places matrices
    copies = cold ? std::max<int64_t>(2, kColdBytes / bytes + 1) : 1;
    data.reset(static_cast<uint8_t*>(std::aligned_alloc(64, copies * bytes)));
    if (packed) {
      Kt().pack_rows(type, file.data(), file_row_bytes, rows, K, data.get());
    } else {
      std::copy(file.begin(), file.end(), data.get());
    }
    for (int64_t c = 1; c < copies; ++c) std::copy(data.get(), data.get() + bytes, data.get() + c * bytes);
    matrix = {type, data.get(), rows, K, row_bytes, packed};
  }
  WeightMatrix Next() {
    WeightMatrix m = matrix;
    m.data = data.get() + (i++ % copies) * bytes;
    return m;
  }
  std::unique_ptr<uint8_t, decltype(&std::free)> data{nullptr, &std::free};
  WeightMatrix matrix;
  int64_t file_bytes = 0, bytes = 0, copies = 0, i = 0;
};

// Args: type, rows, K, M (tokens), threads, packed (0/1; 1 where the kernels have a packed
// layout for the type, as the CPU executor uses them).
void BM_MatMul(benchmark::State& state) {
  const auto type = static_cast<DType>(state.range(0));
  const int64_t rows = state.range(1), K = state.range(2), M = state.range(3);
  const int threads = static_cast<int>(state.range(4));
  BenchWeights w(type, rows, K, state.range(5) != 0, /*cold=*/true, 1);
  ThreadPool pool(threads);
  const std::vector<float> x = Random(M * K, 2);
  std::vector<float> y(rows * M);
  Scratch scratch(MatMulScratchBytes(Kt(), type, M, K));
  for (auto _ : state) {
    MatMul(Kt(), pool, w.Next(), x.data(), M, y.data(), rows, scratch.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["GB"] = benchmark::Counter(iters * w.file_bytes / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOP"] = benchmark::Counter(iters * 2.0 * rows * K * M / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(Info(type).name) + " " + Kt().isa + (w.matrix.packed ? " packed" : ""));
}

void MatMulArgs(benchmark::internal::Benchmark* b) {
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kF16, DType::kBF16}) {
    // Decode: the 1B shape's matrices (attention output, FFN gate/up, FFN down), one token;
    // weights both as stored and packed.
    for (auto [rows, K] : {std::pair<int64_t, int64_t>{2048, 2048}, {5632, 2048}, {2048, 5632}}) {
      for (int threads : {1, 2}) {
        b->Args({static_cast<int64_t>(t), rows, K, 1, threads, 0});
        b->Args({static_cast<int64_t>(t), rows, K, 1, threads, 1});
      }
    }
    // Batches and a prompt chunk on the gate/up shape (packed where the executor packs).
    for (int64_t M : {4, 16, 128}) {
      for (int threads : {1, 2}) b->Args({static_cast<int64_t>(t), 5632, 2048, M, threads, 1});
    }
    // The 110M shape's gate/up at batch 16 (K = 768: a batch's activations fit L1).
    for (int threads : {1, 2}) b->Args({static_cast<int64_t>(t), 2048, 768, 16, threads, 1});
  }
}
BENCHMARK(BM_MatMul)->Apply(MatMulArgs)->ArgNames({"type", "rows", "K", "M", "threads", "packed"})->UseRealTime()->Unit(benchmark::kMicrosecond);

// The same products on a matrix that stays in L2/L3 (512 x 2048): the kernels' compute
// throughput, without the memory stream. Args: type, tokens, threads, packed (0: rows as stored
// in the file; 1: the variant's packed layout, skipped where it has none for the type).
void BM_MatMulHot(benchmark::State& state) {
  const auto type = static_cast<DType>(state.range(0));
  const int64_t rows = 512, K = 2048, M = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  const bool packed = state.range(3) != 0;
  const BenchWeights w(type, rows, K, packed, /*cold=*/false, 7);
  if (packed && !w.matrix.packed) {
    state.SkipWithError("no packed layout for this type in this variant");
    return;
  }
  const WeightMatrix& wm = w.matrix;
  ThreadPool pool(threads);
  const std::vector<float> x = Random(M * K, 2);
  std::vector<float> y(rows * M);
  Scratch scratch(MatMulScratchBytes(Kt(), type, M, K));
  for (auto _ : state) {
    MatMul(Kt(), pool, wm, x.data(), M, y.data(), rows, scratch.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["GB"] = benchmark::Counter(iters * w.file_bytes / 1e9, benchmark::Counter::kIsRate);
  state.counters["GFLOP"] = benchmark::Counter(iters * 2.0 * rows * K * M / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string(Info(type).name) + " " + Kt().isa + (packed ? " packed" : ""));
}
BENCHMARK(BM_MatMulHot)
    ->ArgsProduct({{static_cast<int64_t>(DType::kQ8_0), static_cast<int64_t>(DType::kQ4_0)}, {1, 4, 16}, {1}, {0, 1}})
    ->ArgsProduct({{static_cast<int64_t>(DType::kF16)}, {1, 16}, {1}, {0, 1}})
    ->ArgNames({"type", "M", "threads", "packed"})
    ->UseRealTime();

void BM_QuantizeActivations(benchmark::State& state) {
  const int64_t K = state.range(0);
  const std::vector<float> x = Random(K, 3);
  std::vector<char> out(Kt().act_row_bytes(DType::kQ8_0, K));
  for (auto _ : state) {
    Kt().quantize_act(DType::kQ8_0, x.data(), out.data(), K);
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GB"] = benchmark::Counter(static_cast<double>(state.iterations()) * K * 4 / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_QuantizeActivations)->Arg(2048)->Arg(5632);

// Args: context length, head_dim, heads, kv heads, f16 KV (0/1). One token's attention over all
// heads; GFLOP and ns per (head, position).
void BM_Attention(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0)), hd = static_cast<int>(state.range(1));
  const int n_heads = static_cast<int>(state.range(2)), n_kv = static_cast<int>(state.range(3));
  const bool f16 = state.range(4) != 0;
  const int bs = 16, n_blocks = (n + bs - 1) / bs;
  const auto kf = Random(static_cast<size_t>(n_blocks) * n_kv * bs * hd, 4);
  const auto vf = Random(kf.size(), 5);
  std::vector<uint16_t> kh(kf.size()), vh(vf.size());
  for (size_t i = 0; i < kf.size(); ++i) {
    kh[i] = F32ToF16(kf[i]);
    vh[i] = F32ToF16(vf[i]);
  }
  const auto q = Random(static_cast<size_t>(n_heads) * hd, 6);
  std::vector<float> out(q.size());
  std::vector<int32_t> table(n_blocks);
  for (int i = 0; i < n_blocks; ++i) table[i] = n_blocks - 1 - i;
  const int32_t pos = n - 1;
  const int32_t* tables[1] = {table.data()};
  PagedAttentionArgs a{};
  a.q = q.data();
  a.q_stride = n_heads * hd;
  a.out = out.data();
  a.out_stride = n_heads * hd;
  a.k_cache = f16 ? static_cast<const void*>(kh.data()) : kf.data();
  a.v_cache = f16 ? static_cast<const void*>(vh.data()) : vf.data();
  a.kv = f16 ? KvElem::kF16 : KvElem::kF32;
  a.n_heads = n_heads;
  a.n_kv_heads = n_kv;
  a.head_dim = hd;
  a.block_size = bs;
  a.positions = &pos;
  a.block_tables = tables;
  a.scale = 0.125f;
  std::vector<float> scratch(AttentionGroupScratch(n_heads, n_kv, hd, n));
  for (auto _ : state) {
    for (int g = 0; g < n_kv; ++g) Kt().attention_group(a, 0, g, scratch.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["GFLOP"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 4.0 * n * n_heads * hd / 1e9, benchmark::Counter::kIsRate);
  state.counters["ns/head-pos"] = benchmark::Counter(static_cast<double>(state.iterations()) * n * n_heads,
                                                     benchmark::Counter::kIsRate | benchmark::Counter::kInvert) ;
}
BENCHMARK(BM_Attention)
    ->Args({128, 64, 32, 4, 0})
    ->Args({1024, 64, 32, 4, 0})
    ->Args({1024, 64, 12, 12, 0})
    ->Args({512, 8, 8, 4, 0})
    // f16 KV (the default cache type) over short and long contexts, 110M's 12 heads of 64.
    ->Args({16, 64, 12, 12, 1})
    ->Args({64, 64, 12, 12, 1})
    ->Args({256, 64, 12, 12, 1})
    ->Args({1024, 64, 12, 12, 1})
    ->Args({256, 64, 32, 4, 1});

// One Run() round trip with an empty task: the cost of a fork/join.
void BM_PoolRun(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  for (auto _ : state) pool.Run([](int, int) {});
}
BENCHMARK(BM_PoolRun)->Arg(1)->Arg(2)->UseRealTime();

// A barrier inside one Run(): what each step of the forward pass pays.
void BM_PoolBarrier(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  const int64_t kPerRun = 1000;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    pool.Run([&](int tid, int) {
      for (int64_t i = 0; i < kPerRun; ++i) pool.Barrier(tid);
    });
  }
  const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  state.counters["ns_per_barrier"] = ns / static_cast<double>(state.iterations() * kPerRun);
}
BENCHMARK(BM_PoolBarrier)->Arg(2)->UseRealTime();

}  // namespace
}  // namespace flotilla::kernels::cpu

BENCHMARK_MAIN();
