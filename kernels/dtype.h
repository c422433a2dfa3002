// Tensor element types with ggml's numeric ids and block layouts (GGUF stores these ids).
#pragma once

#include <cstddef>
#include <cstdint>

namespace flotilla::kernels {

enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ8_0 = 8,
  kBF16 = 30,
};

struct TypeInfo {
  DType type;
  const char* name;
  int64_t block_elems;  // elements per block (1 for plain types)
  int64_t block_bytes;  // bytes per block
};

// Information on a type Flotilla can compute with; nullptr for any other ggml id.
const TypeInfo* FindType(uint32_t ggml_id);
const TypeInfo& Info(DType t);
// A name for any ggml type id, known to us or not (for error messages).
const char* GgmlTypeName(uint32_t ggml_id);

// Bytes of one row of n elements; n must be a multiple of the block size.
inline int64_t RowBytes(DType t, int64_t n) {
  const TypeInfo& i = Info(t);
  return n / i.block_elems * i.block_bytes;
}

inline bool IsBlockQuantized(DType t) { return t == DType::kQ4_0 || t == DType::kQ8_0; }

}  // namespace flotilla::kernels
