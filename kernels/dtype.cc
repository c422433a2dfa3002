#include "kernels/dtype.h"

#include <cstdlib>

namespace flotilla::kernels {
namespace {

constexpr TypeInfo kTypes[] = {
    {DType::kF32, "F32", 1, 4},   {DType::kF16, "F16", 1, 2},     {DType::kQ4_0, "Q4_0", 32, 18},
    {DType::kQ8_0, "Q8_0", 32, 34}, {DType::kBF16, "BF16", 1, 2},
};

}  // namespace

const TypeInfo* FindType(uint32_t ggml_id) {
  for (const auto& t : kTypes) {
    if (static_cast<uint32_t>(t.type) == ggml_id) return &t;
  }
  return nullptr;
}

const TypeInfo& Info(DType t) {
  const TypeInfo* i = FindType(static_cast<uint32_t>(t));
  if (!i) std::abort();  // DType values are only ever made from FindType.
  return *i;
}

const char* GgmlTypeName(uint32_t id) {
  static const char* const kNames[] = {"F32",  "F16",  "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1",
                                       "Q8_0", "Q8_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K",
                                       "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
                                       "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M",
                                       "BF16"};
  if (id < sizeof(kNames) / sizeof(kNames[0])) return kNames[id];
  return "unknown";
}

}  // namespace flotilla::kernels
