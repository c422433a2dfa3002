#include <cstdlib>
#include <cstring>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kernel_table.h"

namespace flotilla::kernels::cpu {
namespace {

const KernelTable& Choose() {
  const char* forced = std::getenv("FLOTILLA_ISA");
  if (forced && std::strcmp(forced, "scalar") == 0) return ScalarKernels();
  if (GetCpuFeatures().HasAvx2Set()) {
    if (const KernelTable* t = Avx2Kernels()) return *t;
  }
  return ScalarKernels();
}

}  // namespace

const KernelTable& BestKernels() {
  static const KernelTable& table = Choose();
  return table;
}

const KernelTable* KernelsByName(const char* isa) {
  if (std::strcmp(isa, "scalar") == 0) return &ScalarKernels();
  if (std::strcmp(isa, "avx2") == 0 && GetCpuFeatures().HasAvx2Set()) return Avx2Kernels();
  return nullptr;
}

}  // namespace flotilla::kernels::cpu
