#include "model/gguf_writer.h"

#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"

namespace flotilla {
namespace {

class Out {
 public:
  explicit Out(FILE* f) : f_(f) {}
  template <class T>
  void Pod(const T& v) { Bytes(&v, sizeof(T)); }
  void Bytes(const void* p, size_t n) {
    if (ok_ && std::fwrite(p, 1, n, f_) != n) ok_ = false;
    pos_ += n;
  }
  void Str(const std::string& s) {
    Pod<uint64_t>(s.size());
    Bytes(s.data(), s.size());
  }
  void PadTo(uint64_t align) {
    static const char zeros[256] = {};
    while (pos_ % align != 0) Bytes(zeros, std::min<uint64_t>(align - pos_ % align, sizeof(zeros)));
  }
  bool ok() const { return ok_; }
  uint64_t pos() const { return pos_; }

 private:
  FILE* f_;
  uint64_t pos_ = 0;
  bool ok_ = true;
};

void WriteValue(Out& o, const GgufValue& v) {
  switch (v.type) {
    case GgufType::kUint8: o.Pod<uint8_t>(v.u); break;
    case GgufType::kInt8: o.Pod<int8_t>(v.i); break;
    case GgufType::kUint16: o.Pod<uint16_t>(v.u); break;
    case GgufType::kInt16: o.Pod<int16_t>(v.i); break;
    case GgufType::kUint32: o.Pod<uint32_t>(v.u); break;
    case GgufType::kInt32: o.Pod<int32_t>(v.i); break;
    case GgufType::kUint64: o.Pod<uint64_t>(v.u); break;
    case GgufType::kInt64: o.Pod<int64_t>(v.i); break;
    case GgufType::kFloat32: o.Pod<float>(static_cast<float>(v.f)); break;
    case GgufType::kFloat64: o.Pod<double>(v.f); break;
    case GgufType::kBool: o.Pod<uint8_t>(v.b ? 1 : 0); break;
    case GgufType::kString: o.Str(v.s); break;
    case GgufType::kArray:
      o.Pod<uint32_t>(static_cast<uint32_t>(v.elem_type));
      o.Pod<uint64_t>(v.array.size());
      for (const auto& e : v.array) WriteValue(o, e);
      break;
  }
}

GgufValue Scalar(GgufType t) {
  GgufValue v;
  v.type = t;
  return v;
}

}  // namespace

void GgufWriter::Set(const std::string& key, GgufValue value) {
  for (auto& [k, v] : kv_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::SetString(const std::string& key, const std::string& s) {
  GgufValue v = Scalar(GgufType::kString);
  v.s = s;
  Set(key, std::move(v));
}
void GgufWriter::SetUint32(const std::string& key, uint32_t x) {
  GgufValue v = Scalar(GgufType::kUint32);
  v.u = x;
  v.i = x;
  Set(key, std::move(v));
}
void GgufWriter::SetFloat32(const std::string& key, float x) {
  GgufValue v = Scalar(GgufType::kFloat32);
  v.f = x;
  Set(key, std::move(v));
}
void GgufWriter::SetBool(const std::string& key, bool x) {
  GgufValue v = Scalar(GgufType::kBool);
  v.b = x;
  Set(key, std::move(v));
}
void GgufWriter::SetStringArray(const std::string& key, const std::vector<std::string>& xs) {
  GgufValue v = Scalar(GgufType::kArray);
  v.elem_type = GgufType::kString;
  v.array.reserve(xs.size());
  for (const auto& s : xs) {
    GgufValue e = Scalar(GgufType::kString);
    e.s = s;
    v.array.push_back(std::move(e));
  }
  Set(key, std::move(v));
}
void GgufWriter::SetFloatArray(const std::string& key, const std::vector<float>& xs) {
  GgufValue v = Scalar(GgufType::kArray);
  v.elem_type = GgufType::kFloat32;
  for (float x : xs) {
    GgufValue e = Scalar(GgufType::kFloat32);
    e.f = x;
    v.array.push_back(e);
  }
  Set(key, std::move(v));
}
void GgufWriter::SetInt32Array(const std::string& key, const std::vector<int32_t>& xs) {
  GgufValue v = Scalar(GgufType::kArray);
  v.elem_type = GgufType::kInt32;
  for (int32_t x : xs) {
    GgufValue e = Scalar(GgufType::kInt32);
    e.i = x;
    e.u = static_cast<uint64_t>(x);
    v.array.push_back(e);
  }
  Set(key, std::move(v));
}

absl::Status GgufWriter::AddTensor(const std::string& name, std::vector<uint64_t> dims, kernels::DType type, Fill fill) {
  const kernels::TypeInfo& info = kernels::Info(type);
  if (dims.empty() || dims[0] % info.block_elems != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': row length must be a multiple of ", info.block_elems));
  }
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;
  tensors_.push_back({name, std::move(dims), type, n / info.block_elems * info.block_bytes, std::move(fill)});
  return absl::OkStatus();
}

absl::Status GgufWriter::WriteFile(const std::string& path) const {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return absl::PermissionDeniedError("cannot create '" + path + "'");
  std::unique_ptr<FILE, int (*)(FILE*)> closer(f, std::fclose);
  Out o(f);
  o.Pod<uint32_t>(0x46554747);
  o.Pod<uint32_t>(3);
  o.Pod<uint64_t>(tensors_.size());
  o.Pod<uint64_t>(kv_.size());
  for (const auto& [k, v] : kv_) {
    o.Str(k);
    o.Pod<uint32_t>(static_cast<uint32_t>(v.type));
    WriteValue(o, v);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    o.Str(t.name);
    o.Pod<uint32_t>(static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) o.Pod<uint64_t>(d);
    o.Pod<uint32_t>(static_cast<uint32_t>(t.type));
    o.Pod<uint64_t>(offset);
    offset += (t.n_bytes + alignment_ - 1) / alignment_ * alignment_;
  }
  o.PadTo(alignment_);
  std::vector<uint8_t> buf;
  for (const auto& t : tensors_) {
    buf.assign(t.n_bytes, 0);
    if (t.fill) t.fill(buf.data(), buf.size());
    o.Bytes(buf.data(), buf.size());
    o.PadTo(alignment_);
  }
  if (!o.ok()) return absl::DataLossError("short write to '" + path + "' (disk full?)");
  if (std::fclose(closer.release()) != 0) return absl::DataLossError("cannot finish writing '" + path + "'");
  return absl::OkStatus();
}

}  // namespace flotilla
