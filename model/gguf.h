// GGUF v2/v3 reader over a memory map. Every count, length and offset is checked against the
// file before it is used, so a truncated or corrupt file gives an error naming the problem.
// The object is immutable after Open and safe to read from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/mapped_file.h"

namespace flotilla {

enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
const char* GgufTypeName(GgufType t);

struct GgufValue {
  GgufType type = GgufType::kUint8;
  // Exactly one of these is meaningful, by type: integers (signed kept in i, unsigned in u),
  // floats in f, bool in b, strings in s, arrays in array (elements of elem_type).
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  GgufType elem_type = GgufType::kUint8;
  std::vector<GgufValue> array;

  bool IsInteger() const;
  std::string ToString() const;  // short, for logs and `flotilla` output
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ggml order: dims[0] is the contiguous (inner) dimension
  uint32_t ggml_type = 0;
  uint64_t offset = 0;  // relative to the data section
  const uint8_t* data = nullptr;
  uint64_t n_bytes = 0;
  int64_t n_elements = 0;
};

class GgufFile {
 public:
  // Parses the header, metadata and tensor infos of `path`.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const std::shared_ptr<MappedFile>& file() const { return file_; }

  const GgufValue* Find(const std::string& key) const;
  const GgufTensorInfo* FindTensor(const std::string& name) const;

  // Typed getters: NotFound when absent, InvalidArgument naming key and type when mismatched.
  absl::StatusOr<std::string> GetString(const std::string& key) const;
  absl::StatusOr<uint64_t> GetUint(const std::string& key) const;  // any non-negative integer type
  absl::StatusOr<double> GetFloat(const std::string& key) const;   // any float or integer type
  absl::StatusOr<bool> GetBool(const std::string& key) const;
  absl::StatusOr<std::vector<std::string>> GetStringArray(const std::string& key) const;
  absl::StatusOr<std::vector<float>> GetFloatArray(const std::string& key) const;
  absl::StatusOr<std::vector<int32_t>> GetIntArray(const std::string& key) const;

 private:
  GgufFile() = default;
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

}  // namespace flotilla
