#include <cstdlib>
#include <cstring>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kernel_table.h"

namespace flotilla::kernels::cpu {
namespace {

const KernelTable& Choose() {
  if (const char* forced = std::getenv("FLOTILLA_ISA"); forced && *forced) {
    if (const KernelTable* t = KernelsByName(forced)) return *t;
  }
  if (const KernelTable* t = KernelsByName("avx512")) return *t;
  if (const KernelTable* t = KernelsByName("avxvnni")) return *t;
  if (const KernelTable* t = KernelsByName("avx2")) return *t;
  return ScalarKernels();
}

}  // namespace

const KernelTable& BestKernels() {
  static const KernelTable& table = Choose();
  return table;
}

const KernelTable* KernelsByName(const char* isa) {
  const CpuFeatures& f = GetCpuFeatures();
  if (std::strcmp(isa, "scalar") == 0) return &ScalarKernels();
  if (std::strcmp(isa, "avx2") == 0 && f.HasAvx2Set()) return Avx2Kernels();
  if (std::strcmp(isa, "avxvnni") == 0 && f.HasAvxVnniSet()) return AvxVnniKernels();
  if (std::strcmp(isa, "avx512") == 0 && f.HasAvx512Set()) return Avx512Kernels();
  return nullptr;
}

}  // namespace flotilla::kernels::cpu
