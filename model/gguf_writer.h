// Writing GGUF v3 files: metadata of every value type and tensors whose bytes are produced at
// write time by a callback, so multi-gigabyte synthetic models never sit in memory at once.
// Used by `flotilla synth` and by tests that build (and corrupt) model files.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/dtype.h"
#include "model/gguf.h"

namespace flotilla {

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t alignment = 32) : alignment_(alignment) {}

  void Set(const std::string& key, GgufValue value);
  void SetString(const std::string& key, const std::string& v);
  void SetUint32(const std::string& key, uint32_t v);
  void SetFloat32(const std::string& key, float v);
  void SetBool(const std::string& key, bool v);
  void SetStringArray(const std::string& key, const std::vector<std::string>& v);
  void SetFloatArray(const std::string& key, const std::vector<float>& v);
  void SetInt32Array(const std::string& key, const std::vector<int32_t>& v);

  // `fill(dst, n_bytes)` writes the tensor's bytes when the file is written. dims in ggml order
  // (dims[0] is the row length).
  using Fill = std::function<void(uint8_t* dst, size_t n_bytes)>;
  absl::Status AddTensor(const std::string& name, std::vector<uint64_t> dims, kernels::DType type, Fill fill);

  absl::Status WriteFile(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    kernels::DType type;
    uint64_t n_bytes;
    Fill fill;
  };
  uint32_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace flotilla
