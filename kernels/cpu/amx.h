// AMX tiles for the AVX-512 variant's Q8_0 / Q4_0 batch products over sixteen-row groups
// (avx512_amx.cc): bit for bit the lane kernels' results (avx512_lanes.cc), which hand them
// every whole 16-token tile of a batch. Declared apart from avx512_common.h so that tests built
// without the AVX-512 flags can call them.
#pragma once

#include <cstdint>

#include "kernels/cpu/kernel_table.h"
#include "kernels/dtype.h"

namespace flotilla::kernels::cpu::avx512 {

// Whether batches run on AMX tiles: where AmxUsable() (cpu_features.h), unless FLOTILLA_AMX=0
// (to compare with the lane kernels). On the AMX host measured (2026-12-08, docs/performance.md)
// the tiles ran 110M Q8_0 batch 16 1.10x / 1.14x (2 / 1 threads), Q4_0 1.09x, 1B Q8_0 batch 16
// 1.13x, 110M prompts 1.07x. Read once.
bool AmxBatchesOn();
// Bytes an activation row of w's products carries after its OctActFormat part for the tiles: 0
// unless AmxBatchesOn() and w's rows at K take the lane layout.
int64_t AmxActBytes(DType w, int64_t K);
// Writes that part from the row's OctActFormat part (nothing where AmxActBytes is 0).
void WriteAmxAct(DType w, int64_t K, void* act);

// Tile configuration for the calling thread, around a call's AmxQ*GroupTiles.
void AmxBegin();
void AmxEnd();
// Rows [r0, r1) of row group g for every whole 16-token tile of a.M (a's activation rows carry
// the tiles' part).
void AmxQ8GroupTiles(const MatMulArgs& a, int64_t g, int64_t r0, int64_t r1);
void AmxQ4GroupTiles(const MatMulArgs& a, int64_t g, int64_t r0, int64_t r1);

}  // namespace flotilla::kernels::cpu::avx512
