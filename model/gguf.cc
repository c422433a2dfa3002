#include "model/gguf.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/dtype.h"

namespace flotilla {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr int kMaxArrayDepth = 4;
constexpr int kMaxDims = 4;

// A bounds-checked cursor over the file image.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  template <class T>
  absl::Status Read(T* out, const char* what) {
    if (remaining() < sizeof(T)) {
      return absl::DataLossError(absl::StrCat("GGUF truncated reading ", what, " at byte ", pos_, " (file is ",
                                              size_, " bytes)"));
    }
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }

  absl::Status ReadString(std::string* out, const char* what) {
    uint64_t len = 0;
    RETURN_IF_ERROR(Read(&len, what));
    if (len > remaining()) {
      return absl::DataLossError(absl::StrCat("GGUF ", what, " at byte ", pos_ - 8, " claims length ", len,
                                              " but only ", remaining(), " bytes remain"));
    }
    out->assign(reinterpret_cast<const char*>(data_ + pos_), len);
    pos_ += len;
    return absl::OkStatus();
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Smallest encoded size of a value of type t, used to reject counts that cannot fit.
size_t MinEncodedSize(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool: return 1;
    case GgufType::kUint16:
    case GgufType::kInt16: return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32: return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
    case GgufType::kString: return 8;
    case GgufType::kArray: return 12;
  }
  return 1;
}

bool ValidType(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kFloat64); }

absl::Status ReadValue(Reader& r, GgufType type, GgufValue* v, const std::string& key, int depth) {
  v->type = type;
  switch (type) {
    case GgufType::kUint8: { uint8_t x{}; RETURN_IF_ERROR(r.Read(&x, "u8 value")); v->u = x; v->i = x; return absl::OkStatus(); }
    case GgufType::kInt8: { int8_t x{}; RETURN_IF_ERROR(r.Read(&x, "i8 value")); v->i = x; v->u = static_cast<uint64_t>(x); return absl::OkStatus(); }
    case GgufType::kUint16: { uint16_t x{}; RETURN_IF_ERROR(r.Read(&x, "u16 value")); v->u = x; v->i = x; return absl::OkStatus(); }
    case GgufType::kInt16: { int16_t x{}; RETURN_IF_ERROR(r.Read(&x, "i16 value")); v->i = x; v->u = static_cast<uint64_t>(x); return absl::OkStatus(); }
    case GgufType::kUint32: { uint32_t x{}; RETURN_IF_ERROR(r.Read(&x, "u32 value")); v->u = x; v->i = x; return absl::OkStatus(); }
    case GgufType::kInt32: { int32_t x{}; RETURN_IF_ERROR(r.Read(&x, "i32 value")); v->i = x; v->u = static_cast<uint64_t>(x); return absl::OkStatus(); }
    case GgufType::kUint64: { uint64_t x{}; RETURN_IF_ERROR(r.Read(&x, "u64 value")); v->u = x; v->i = static_cast<int64_t>(x); return absl::OkStatus(); }
    case GgufType::kInt64: { int64_t x{}; RETURN_IF_ERROR(r.Read(&x, "i64 value")); v->i = x; v->u = static_cast<uint64_t>(x); return absl::OkStatus(); }
    case GgufType::kFloat32: { float x{}; RETURN_IF_ERROR(r.Read(&x, "f32 value")); v->f = x; return absl::OkStatus(); }
    case GgufType::kFloat64: { double x{}; RETURN_IF_ERROR(r.Read(&x, "f64 value")); v->f = x; return absl::OkStatus(); }
    case GgufType::kBool: {
      uint8_t x = 0;
      RETURN_IF_ERROR(r.Read(&x, "bool value"));
      if (x > 1) return absl::DataLossError(absl::StrCat("GGUF key '", key, "': bool value ", int{x}, " is not 0 or 1"));
      v->b = x != 0;
      return absl::OkStatus();
    }
    case GgufType::kString: return r.ReadString(&v->s, "string value");
    case GgufType::kArray: {
      if (depth >= kMaxArrayDepth) {
        return absl::DataLossError(absl::StrCat("GGUF key '", key, "': arrays nested deeper than ", kMaxArrayDepth));
      }
      uint32_t et = 0;
      uint64_t n = 0;
      RETURN_IF_ERROR(r.Read(&et, "array element type"));
      if (!ValidType(et)) return absl::DataLossError(absl::StrCat("GGUF key '", key, "': unknown array element type ", et));
      RETURN_IF_ERROR(r.Read(&n, "array length"));
      v->elem_type = static_cast<GgufType>(et);
      if (n > r.remaining() / MinEncodedSize(v->elem_type)) {
        return absl::DataLossError(absl::StrCat("GGUF key '", key, "': array of ", n, " elements cannot fit in the ",
                                                r.remaining(), " bytes that remain"));
      }
      v->array.resize(n);
      for (uint64_t k = 0; k < n; ++k) RETURN_IF_ERROR(ReadValue(r, v->elem_type, &v->array[k], key, depth + 1));
      return absl::OkStatus();
    }
  }
  return absl::DataLossError(absl::StrCat("GGUF key '", key, "': unknown value type ", static_cast<uint32_t>(type)));
}

}  // namespace

const char* GgufTypeName(GgufType t) {
  static const char* const kNames[] = {"uint8", "int8",  "uint16", "int16", "uint32", "int32", "float32",
                                       "bool",  "string", "array", "uint64", "int64", "float64"};
  const auto i = static_cast<uint32_t>(t);
  return i < 13 ? kNames[i] : "unknown";
}

bool GgufValue::IsInteger() const {
  switch (type) {
    case GgufType::kUint8: case GgufType::kInt8: case GgufType::kUint16: case GgufType::kInt16:
    case GgufType::kUint32: case GgufType::kInt32: case GgufType::kUint64: case GgufType::kInt64:
      return true;
    default:
      return false;
  }
}

std::string GgufValue::ToString() const {
  switch (type) {
    case GgufType::kString: return s.size() > 64 ? "\"" + s.substr(0, 61) + "...\"" : "\"" + s + "\"";
    case GgufType::kBool: return b ? "true" : "false";
    case GgufType::kFloat32: case GgufType::kFloat64: return absl::StrCat(f);
    case GgufType::kArray: return absl::StrCat("[", GgufTypeName(elem_type), " x ", array.size(), "]");
    case GgufType::kInt8: case GgufType::kInt16: case GgufType::kInt32: case GgufType::kInt64: return absl::StrCat(i);
    default: return absl::StrCat(u);
  }
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Open(path));
  std::unique_ptr<GgufFile> g(new GgufFile());
  g->file_ = file;
  Reader r(file->data(), file->size());

  uint32_t magic = 0;
  RETURN_IF_ERROR(r.Read(&magic, "magic"));
  if (magic != kMagic) return absl::InvalidArgumentError("'" + path + "' is not a GGUF file (bad magic)");
  RETURN_IF_ERROR(r.Read(&g->version_, "version"));
  if (g->version_ != 2 && g->version_ != 3) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF version ", g->version_, " is not supported (want 2 or 3)"));
  }
  uint64_t n_tensors = 0, n_kv = 0;
  RETURN_IF_ERROR(r.Read(&n_tensors, "tensor count"));
  RETURN_IF_ERROR(r.Read(&n_kv, "metadata count"));
  // Each key-value needs at least 12 bytes, each tensor info at least 24.
  if (n_kv > r.remaining() / 12) {
    return absl::DataLossError(absl::StrCat("GGUF metadata count ", n_kv, " cannot fit in a ", file->size(), "-byte file"));
  }
  if (n_tensors > r.remaining() / 24) {
    return absl::DataLossError(absl::StrCat("GGUF tensor count ", n_tensors, " cannot fit in a ", file->size(), "-byte file"));
  }
  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key;
    RETURN_IF_ERROR(r.ReadString(&key, "metadata key"));
    uint32_t type = 0;
    RETURN_IF_ERROR(r.Read(&type, "metadata value type"));
    if (!ValidType(type)) return absl::DataLossError(absl::StrCat("GGUF key '", key, "' has unknown value type ", type));
    GgufValue v;
    RETURN_IF_ERROR(ReadValue(r, static_cast<GgufType>(type), &v, key, 0));
    if (!g->metadata_.emplace(key, std::move(v)).second) {
      return absl::DataLossError("GGUF metadata key '" + key + "' appears twice");
    }
  }
  if (const GgufValue* a = g->Find("general.alignment")) {
    if (!a->IsInteger() || a->u == 0 || (a->u & (a->u - 1)) != 0 || a->u > 1024 * 1024) {
      return absl::DataLossError("GGUF general.alignment " + a->ToString() + " is not a power of two");
    }
    g->alignment_ = a->u;
  }
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    RETURN_IF_ERROR(r.ReadString(&t.name, "tensor name"));
    uint32_t n_dims = 0;
    RETURN_IF_ERROR(r.Read(&n_dims, "tensor dimension count"));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return absl::DataLossError(absl::StrCat("GGUF tensor '", t.name, "' has ", n_dims, " dimensions (want 1 to ", kMaxDims, ")"));
    }
    t.dims.resize(n_dims);
    uint64_t elements = 1;
    for (auto& d : t.dims) {
      RETURN_IF_ERROR(r.Read(&d, "tensor dimension"));
      if (d == 0 || d > (uint64_t{1} << 40) || elements > std::numeric_limits<int64_t>::max() / d) {
        return absl::DataLossError(absl::StrCat("GGUF tensor '", t.name, "' has an invalid dimension ", d));
      }
      elements *= d;
    }
    t.n_elements = static_cast<int64_t>(elements);
    RETURN_IF_ERROR(r.Read(&t.ggml_type, "tensor type"));
    RETURN_IF_ERROR(r.Read(&t.offset, "tensor offset"));
    if (g->tensor_index_.count(t.name)) return absl::DataLossError("GGUF tensor '" + t.name + "' appears twice");
    g->tensor_index_[t.name] = g->tensors_.size();
    g->tensors_.push_back(std::move(t));
  }
  const uint64_t data_start = (r.pos() + g->alignment_ - 1) / g->alignment_ * g->alignment_;
  if (data_start > file->size() && n_tensors > 0) {
    return absl::DataLossError(absl::StrCat("GGUF data section would start at byte ", data_start, " past the end of the ",
                                            file->size(), "-byte file"));
  }
  for (auto& t : g->tensors_) {
    // Unknown types are reported by the model loader, which knows whether it needs the tensor;
    // here we only need their sizes, so they must at least be types we can size.
    const kernels::TypeInfo* info = kernels::FindType(t.ggml_type);
    if (!info) {
      return absl::InvalidArgumentError(absl::StrCat("GGUF tensor '", t.name, "' has type ",
                                                     kernels::GgmlTypeName(t.ggml_type), " (", t.ggml_type,
                                                     "), which Flotilla does not support"));
    }
    if (t.dims[0] % info->block_elems != 0) {
      return absl::DataLossError(absl::StrCat("GGUF tensor '", t.name, "': row of ", t.dims[0],
                                              " elements is not a multiple of the ", info->name, " block size ",
                                              info->block_elems));
    }
    t.n_bytes = static_cast<uint64_t>(t.n_elements) / info->block_elems * info->block_bytes;
    if (t.offset % g->alignment_ != 0) {
      return absl::DataLossError(absl::StrCat("GGUF tensor '", t.name, "' offset ", t.offset, " is not aligned to ",
                                              g->alignment_));
    }
    if (t.offset > file->size() - data_start || t.n_bytes > file->size() - data_start - t.offset) {
      return absl::DataLossError(absl::StrCat("GGUF tensor '", t.name, "' (", t.n_bytes, " bytes at data offset ",
                                              t.offset, ") extends past the end of the file (data section is ",
                                              file->size() - data_start, " bytes)"));
    }
    t.data = file->data() + data_start + t.offset;
  }
  return g;
}

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensorInfo* GgufFile::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
absl::Status TypeError(const std::string& key, const GgufValue& v, const char* want) {
  return absl::InvalidArgumentError(absl::StrCat("GGUF key '", key, "' is ", GgufTypeName(v.type),
                                                  (v.type == GgufType::kArray ? std::string(" of ") + GgufTypeName(v.elem_type) : ""),
                                                  ", want ", want));
}
absl::Status Missing(const std::string& key) { return absl::NotFoundError("GGUF key '" + key + "' is missing"); }
}  // namespace

absl::StatusOr<std::string> GgufFile::GetString(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return Missing(key);
  if (v->type != GgufType::kString) return TypeError(key, *v, "string");
  return v->s;
}

absl::StatusOr<uint64_t> GgufFile::GetUint(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return Missing(key);
  if (!v->IsInteger()) return TypeError(key, *v, "an integer");
  if (v->i < 0 && (v->type == GgufType::kInt8 || v->type == GgufType::kInt16 || v->type == GgufType::kInt32 ||
                   v->type == GgufType::kInt64)) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF key '", key, "' is negative (", v->i, ")"));
  }
  return v->u;
}

absl::StatusOr<double> GgufFile::GetFloat(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return Missing(key);
  if (v->type == GgufType::kFloat32 || v->type == GgufType::kFloat64) return v->f;
  if (v->IsInteger()) return static_cast<double>(v->i);
  return TypeError(key, *v, "a number");
}

absl::StatusOr<bool> GgufFile::GetBool(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return Missing(key);
  if (v->type != GgufType::kBool) return TypeError(key, *v, "bool");
  return v->b;
}

absl::StatusOr<std::vector<std::string>> GgufFile::GetStringArray(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return Missing(key);
  if (v->type != GgufType::kArray || v->elem_type != GgufType::kString) return TypeError(key, *v, "array of string");
  std::vector<std::string> out;
  out.reserve(v->array.size());
  for (const auto& e : v->array) out.push_back(e.s);
  return out;
}

absl::StatusOr<std::vector<float>> GgufFile::GetFloatArray(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return Missing(key);
  if (v->type != GgufType::kArray || (v->elem_type != GgufType::kFloat32 && v->elem_type != GgufType::kFloat64)) {
    return TypeError(key, *v, "array of float32");
  }
  std::vector<float> out;
  out.reserve(v->array.size());
  for (const auto& e : v->array) out.push_back(static_cast<float>(e.f));
  return out;
}

absl::StatusOr<std::vector<int32_t>> GgufFile::GetIntArray(const std::string& key) const {
  const GgufValue* v = Find(key);
  if (!v) return Missing(key);
  if (v->type != GgufType::kArray) return TypeError(key, *v, "array of integers");
  std::vector<int32_t> out;
  out.reserve(v->array.size());
  for (const auto& e : v->array) {
    if (!e.IsInteger()) return TypeError(key, *v, "array of integers");
    out.push_back(static_cast<int32_t>(e.i));
  }
  return out;
}

}  // namespace flotilla
