// cuBLAS is loaded on first use, not linked: a process that never asks for it (a CPU worker)
// does not map it. Needs the toolkit's libcublas (present wherever the CUDA backend builds), not
// a GPU: the status-name functions work without a device.
#include "kernels/cuda/cublas_loader.h"

#include <string>

#include "common/read_file.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_kernels.h"

namespace flotilla::kernels::cuda {
namespace {

bool Mapped(const std::string& name) {
  const absl::StatusOr<std::string> maps = ReadFileToString("/proc/self/maps");
  EXPECT_TRUE(maps.ok()) << maps.status();
  return maps.ok() && maps->find(name) != std::string::npos;
}

TEST(CublasLoader, LoadsOnFirstUseOnly) {
  EXPECT_FALSE(Mapped("libcublas")) << "linked instead of loaded on first use";
  const CublasApi* api = Cublas();
  ASSERT_NE(api, nullptr) << CublasLoadError();
  EXPECT_TRUE(Mapped(CublasLibraryName()));
  EXPECT_STREQ(CublasLoadError(), "");
  EXPECT_STREQ(api->status_name(CUBLAS_STATUS_NOT_INITIALIZED), "CUBLAS_STATUS_NOT_INITIALIZED");
  // Statuses travel as Error values through the kernels' error names.
  EXPECT_STREQ(ErrorName(kBlasBase + CUBLAS_STATUS_INVALID_VALUE), "CUBLAS_STATUS_INVALID_VALUE");
  EXPECT_STRNE(ErrorString(kBlasBase + CUBLAS_STATUS_INVALID_VALUE), "");
  EXPECT_STREQ(ErrorName(kBlasUnavailable), "CUBLAS_LIBRARY_UNAVAILABLE");
  EXPECT_EQ(Cublas(), api) << "loaded once";
}

}  // namespace
}  // namespace flotilla::kernels::cuda
