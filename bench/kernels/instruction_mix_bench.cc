// The AVX-512 lane kernels' instruction mix without its data: how many cycles a position of a
// row group costs per token (8 `vpdpbusd`, then the convert, the chains' add, the scale product
// and the FMA that fold it into the token's accumulator; avx512_lanes.cc), built up one kind of
// instruction at a time. Each loop body adds one link to each of 8 product chains and one float
// chain (its FMA's 4-cycle latency below a body's issue time), so what it measures is issue
// throughput, not latency: which instructions share the multiply pipes with `vpdpbusd` and which
// ride for free on others. That sets the floor for batched Q8_0 / Q4_0 products, which are bound
// by these pipes, not by memory.
//
// Reported per body (one position and token's worth): `ns`, and `cycles` from it and the clock
// measured by a chain of dependent scalar adds (one a cycle) right before. On a vCPU whose core
// the host shares out, that clock reads low (1.9-2.3 GHz on this VM's slower vCPU in its
// slow-vCPU minutes, with the mix at 3.5 "cycles", below what 8 `vpdpbusd` need): compare `ns`
// there. On this project's Zen 5
// VM (2026-12-08): 8 vpdpbusd 4.4; + FMA 4.7; + FMA + product 5.1; the convert and the integer
// add nothing measurable; the whole mix with its loads and broadcasts 5.55. So the scale product
// and the FMA issue on the two pipes that run `vpdpbusd` (10 instructions there per 512
// multiply-adds of one token), and the loads (12 a body) add the rest: the lane kernels cannot
// go below about 5.5 cycles per position, row group and token on this core, whatever the memory
// does.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>

#include "kernels/cpu/cpu_features.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

namespace flotilla::kernels::cpu {
namespace {

#define FL_DP8                                                                                      \
  "vpdpbusd %%zmm30, %%zmm31, %%zmm0\n vpdpbusd %%zmm30, %%zmm31, %%zmm1\n"                         \
  "vpdpbusd %%zmm30, %%zmm31, %%zmm2\n vpdpbusd %%zmm30, %%zmm31, %%zmm3\n"                         \
  "vpdpbusd %%zmm30, %%zmm31, %%zmm4\n vpdpbusd %%zmm30, %%zmm31, %%zmm5\n"                         \
  "vpdpbusd %%zmm30, %%zmm31, %%zmm6\n vpdpbusd %%zmm30, %%zmm31, %%zmm7\n"
// The same with the activations broadcast from memory, as the kernel reads them.
#define FL_DP8_BCAST                                                                                \
  "vpdpbusd (%1)%{1to16%}, %%zmm31, %%zmm0\n vpdpbusd 4(%1)%{1to16%}, %%zmm31, %%zmm1\n"            \
  "vpdpbusd 8(%1)%{1to16%}, %%zmm31, %%zmm2\n vpdpbusd 12(%1)%{1to16%}, %%zmm31, %%zmm3\n"          \
  "vpdpbusd 16(%1)%{1to16%}, %%zmm31, %%zmm4\n vpdpbusd 20(%1)%{1to16%}, %%zmm31, %%zmm5\n"         \
  "vpdpbusd 24(%1)%{1to16%}, %%zmm31, %%zmm6\n vpdpbusd 28(%1)%{1to16%}, %%zmm31, %%zmm7\n"
#define FL_FMA "vfmadd231ps %%zmm29, %%zmm28, %%zmm8\n"
#define FL_MUL "vmulps %%zmm29, %%zmm28, %%zmm10\n"
#define FL_CVT_ADD "vcvtdq2ps %%zmm30, %%zmm11\n vpaddd %%zmm30, %%zmm31, %%zmm12\n"
// The rest of the kernel's work per position and token: the activation scale's broadcast, the
// chain start (the block's two offset terms summed, scaled, broadcast from a general register)
// and the token's share of the position's weight loads (8 over a tile of 8 tokens).
#define FL_REST                                                                                     \
  "vbroadcastss 32(%1), %%zmm13\n mov 36(%1), %%eax\n add 40(%1), %%eax\n shl $7, %%eax\n"         \
  "vpbroadcastd %%eax, %%zmm14\n vmovdqa64 (%1), %%zmm15\n"

// Two bodies per iteration, so the loop's own decrement and branch count half.
#define FL_LOOP(name, body)                                                                          \
  __attribute__((target("avx512f,avx512vnni"))) void name(int64_t n, const void* mem) {            \
    asm volatile(                                                                                   \
        "vpxord %%zmm30, %%zmm30, %%zmm30\n vpxord %%zmm31, %%zmm31, %%zmm31\n"                     \
        "vxorps %%zmm29, %%zmm29, %%zmm29\n vxorps %%zmm28, %%zmm28, %%zmm28\n"                     \
        "1:\n" body body "dec %0\n jnz 1b\n"                                                         \
        : "+r"(n)                                                                                   \
        : "r"(mem)                                                                                  \
        : "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",         \
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm28", "xmm29", "xmm30", "xmm31", "eax", "cc");           \
  }

FL_LOOP(Dp8, FL_DP8)
FL_LOOP(Dp8Fma, FL_DP8 FL_FMA)
FL_LOOP(Dp8FmaMul, FL_DP8 FL_FMA FL_MUL)
FL_LOOP(Dp8FmaMulCvtAdd, FL_DP8 FL_FMA FL_MUL FL_CVT_ADD)
FL_LOOP(KernelMix, FL_DP8_BCAST FL_FMA FL_MUL FL_CVT_ADD FL_REST)

// Cycles per nanosecond: a chain of dependent adds retires one a cycle.
double GigaHertz() {
  constexpr int64_t kAdds = 20'000'000;
  int64_t x = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < kAdds; ++i) asm volatile("add $1, %0" : "+r"(x));
  const std::chrono::duration<double, std::nano> dt = std::chrono::steady_clock::now() - t0;
  return kAdds / dt.count();
}

void BM_InstructionMix(benchmark::State& state) {
  if (!GetCpuFeatures().HasAvx512Set()) {
    state.SkipWithError("needs AVX-512 VNNI");
    return;
  }
  using Loop = void (*)(int64_t, const void*);
  static constexpr Loop kLoops[] = {Dp8, Dp8Fma, Dp8FmaMul, Dp8FmaMulCvtAdd, KernelMix};
  static constexpr const char* kNames[] = {"8 vpdpbusd", "+ FMA", "+ FMA + product", "+ FMA + product + convert + add",
                                           "kernel mix (with its loads and broadcasts)"};
  const int v = static_cast<int>(state.range(0));
  alignas(64) static const uint8_t mem[64] = {1, 2, 3, 4};
  constexpr int64_t kIters = 1'000'000;  // two bodies each
  const double ghz = GigaHertz();
  double ns = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    kLoops[v](kIters, mem);
    ns += std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  }
  const double ns_per_body = ns / (2.0 * kIters * static_cast<double>(state.iterations()));
  state.counters["ns"] = ns_per_body;
  state.counters["cycles"] = ns_per_body * ghz;
  state.counters["GHz"] = ghz;
  state.SetLabel(kNames[v]);
}
BENCHMARK(BM_InstructionMix)->DenseRange(0, 4)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace flotilla::kernels::cpu

#endif
