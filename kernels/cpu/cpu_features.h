// CPU features, probed once (CPUID + XGETBV), and the choice of kernel variant they allow.
#pragma once

#include <string>

namespace flotilla::kernels::cpu {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512vnni = false;
  bool avx512vbmi = false;
  bool avxvnni = false;
  // AMX tiles with 8-bit integer products, and the OS saving their state (XCR0 bits 17 and 18).
  // Linux also wants each process to ask for the tile data state: AmxUsable.
  bool amx_int8 = false;

  bool HasAvx2Set() const { return avx2 && fma && f16c; }
  // What avxvnni_kernels.cc is compiled for (Alder Lake and later Intel client CPUs; Zen 4 and
  // later report it too, but take the AVX-512 variant).
  bool HasAvxVnniSet() const { return HasAvx2Set() && avxvnni; }
  // What avx512_kernels.cc is compiled for (Cascade Lake, Ice Lake, Sapphire Rapids, Zen 4 and later).
  bool HasAvx512Set() const {
    return HasAvx2Set() && avx512f && avx512bw && avx512vl && avx512vnni;
  }
  std::string ToString() const;
};

// Probed on first call; later calls return the same object. Thread-safe.
const CpuFeatures& GetCpuFeatures();

// Whether this process may run AMX tile instructions: the CPU has them (amx_int8) and the kernel
// granted the process its tile data state (asked for once, on the first call; Linux 5.16 and
// later). Thread-safe.
bool AmxUsable();

}  // namespace flotilla::kernels::cpu
