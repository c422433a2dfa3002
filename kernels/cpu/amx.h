// The AVX-512 variant's Q8_0 / Q4_0 products over sixteen-row groups (avx512_lanes.cc), on AMX
// tiles instead (avx512_amx.cc): bit for bit MatMulQ8Lanes' / MatMulQ4Lanes' results, for any
// batch. Call only where AmxUsable() (cpu_features.h). Declared apart from avx512_common.h so
// that tests built without the AVX-512 flags can call them.
#pragma once

#include <cstdint>

#include "kernels/cpu/kernel_table.h"

namespace flotilla::kernels::cpu::avx512 {

void MatMulQ8LanesAmx(const MatMulArgs& a, int64_t n0, int64_t n1);
void MatMulQ4LanesAmx(const MatMulArgs& a, int64_t n0, int64_t n1);

}  // namespace flotilla::kernels::cpu::avx512
