#include "model/cuda/rank.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "model/cuda/cuda_status.h"

namespace flotilla::cuda_internal {
namespace {

namespace kc = kernels::cuda;
using kernels::DType;

// Activation rows are padded to 8 elements so that every row starts 32-byte aligned.
int64_t Pad(int64_t n) { return kc::AlignUp(n, 8); }

constexpr int64_t kBlasWorkspaceBytes = 32ll << 20;
// Kept free after the KV cache: CUDA context growth, cuBLAS internals, graph executables.
constexpr int64_t kDeviceReserveBytes = 512ll << 20;

}  // namespace

bool DeviceLinear::AnyQuantized() const {
  for (const DevicePart& p : parts) {
    if (kc::IsQuantized(p.w.type)) return true;
  }
  return false;
}

int64_t DeviceLinear::Bytes() const {
  int64_t n = 0;
  for (const DevicePart& p : parts) n += kc::RepackedBytes(p.w.type, p.w.rows, p.w.cols);
  return n;
}

// The activation a linear layer reads, and which converted forms of it exist already.
struct Rank::Act {
  const float* x;
  int64_t ld;
  int M;
  int64_t K;
  bool q8 = false;
  kc::ActType half = kc::ActType::kF32;  // kF32: act16_ holds nothing of this activation
};

Rank::Rank(int device, const Shard& shard, const LlamaConfig& c, const CudaExecutorOptions& o, Communicator* comm)
    : device_(device),
      shard_(shard),
      c_(c),
      o_(o),
      comm_(comm),
      tcap_(o.max_batch_tokens),
      gemv_max_(std::clamp(o.gemv_max_rows, 1, kc::kMaxMatVecRows)) {}

Rank::~Rank() {
  cudaSetDevice(device_);
  if (stream_) cudaStreamSynchronize(stream_);
  for (auto& [size, exec] : graphs_) cudaGraphExecDestroy(exec);
  kc::DestroyBlas(blas_);
  if (kv_mem_) cudaFree(kv_mem_);
  if (buffer_mem_) cudaFree(buffer_mem_);
  if (weight_mem_) cudaFree(weight_mem_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::string Rank::Where() const { return absl::StrCat("GPU ", device_, " (", device_name_, ")"); }

int64_t Rank::weight_bytes_per_token() const {
  int64_t n = output_.Bytes();
  for (const DeviceLayer& l : layers_) n += l.qkv.Bytes() + l.o.Bytes() + l.gate_up.Bytes() + l.down.Bytes();
  return n;
}

int64_t Rank::kv_block_bytes() const {
  return KvBlockBytes(c_, shard_.kv_heads, o_.block_size,
                      o_.kv_type == KvCacheType::kF32 ? KvCacheType::kF32 : KvCacheType::kF16);
}

std::vector<int> Rank::graph_sizes() const {
  std::vector<int> v;
  for (const auto& [size, exec] : graphs_) v.push_back(size);
  return v;
}

absl::Status Rank::Init(WeightSource& source) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  cudaDeviceProp prop{};
  CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device_));
  device_name_ = prop.name;
  sm_count_ = prop.multiProcessorCount;
  cudaStream_t s;
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  stream_ = s;

  // Plan sizes first so that a model that does not fit fails before anything is uploaded.
  RETURN_IF_ERROR(PlanWeights(source));
  RETURN_IF_ERROR(PlanBuffers());
  size_t free_b = 0, total_b = 0;
  CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_b, &total_b));
  RETURN_IF_ERROR(CheckModelFits(weight_bytes_, buffer_bytes_, static_cast<int64_t>(free_b) - kDeviceReserveBytes,
                                 static_cast<int64_t>(total_b), Where()));

  // Weights: carve, then fill each matrix from the source.
  CUDA_RETURN_IF_ERROR(cudaMalloc(&weight_mem_, weight_bytes_));
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(weight_mem_, 0, weight_bytes_, stream_));
  char* wp = static_cast<char*>(weight_mem_);
  auto carve_matrix = [&](kc::DeviceWeight& w) {
    w = kc::MakeDeviceWeight(w.type, w.rows, w.cols, wp);
    wp += kc::RepackedBytes(w.type, w.rows, w.cols);
  };
  auto carve_norm = [&](float*& p) {
    p = reinterpret_cast<float*>(wp);
    wp += kc::AlignUp(c_.dim * 4, 256);
  };
  carve_matrix(embedding_);
  const bool output_shared = shard_.rank == 0 && source.OutputIsEmbedding();
  for (DevicePart& p : output_.parts) {
    if (output_shared) {
      p.w = embedding_;
    } else {
      carve_matrix(p.w);
    }
  }
  carve_norm(output_norm_);
  for (DeviceLayer& l : layers_) {
    carve_norm(l.attn_norm);
    carve_norm(l.ffn_norm);
    for (DeviceLinear* lin : {&l.qkv, &l.o, &l.gate_up, &l.down}) {
      for (DevicePart& p : lin->parts) carve_matrix(p.w);
    }
  }

  const int hd = c_.head_dim;
  const int64_t qd = static_cast<int64_t>(shard_.q_heads) * hd, kvd = static_cast<int64_t>(shard_.kv_heads) * hd;
  const int64_t F = shard_.ffn;
  auto fill = [&](const SourceRect& r, const kc::DeviceWeight& dst, int64_t dst_row0) {
    return source.Fill(r, dst, dst_row0, stream_);
  };
  RETURN_IF_ERROR(fill({MatrixId::kEmbedding, 0, 0, c_.vocab_size, 0, c_.dim}, embedding_, 0));
  if (shard_.rank == 0 && !output_shared) {
    RETURN_IF_ERROR(fill({MatrixId::kOutput, 0, 0, c_.vocab_size, 0, c_.dim}, output_.parts[0].w, 0));
  }
  RETURN_IF_ERROR(source.FillNorm(NormId::kOutput, 0, output_norm_, stream_));
  for (int li = 0; li < c_.n_layers; ++li) {
    DeviceLayer& l = layers_[li];
    RETURN_IF_ERROR(source.FillNorm(NormId::kAttention, li, l.attn_norm, stream_));
    RETURN_IF_ERROR(source.FillNorm(NormId::kFfn, li, l.ffn_norm, stream_));
    const SourceRect q{MatrixId::kQ, li, shard_.q_head0 * static_cast<int64_t>(hd), qd, 0, c_.dim};
    const SourceRect k{MatrixId::kK, li, shard_.kv_head0 * static_cast<int64_t>(hd), kvd, 0, c_.dim};
    const SourceRect v{MatrixId::kV, li, shard_.kv_head0 * static_cast<int64_t>(hd), kvd, 0, c_.dim};
    if (l.qkv.parts.size() == 1) {
      RETURN_IF_ERROR(fill(q, l.qkv.parts[0].w, 0));
      RETURN_IF_ERROR(fill(k, l.qkv.parts[0].w, qd));
      RETURN_IF_ERROR(fill(v, l.qkv.parts[0].w, qd + kvd));
    } else {
      RETURN_IF_ERROR(fill(q, l.qkv.parts[0].w, 0));
      RETURN_IF_ERROR(fill(k, l.qkv.parts[1].w, 0));
      RETURN_IF_ERROR(fill(v, l.qkv.parts[2].w, 0));
    }
    RETURN_IF_ERROR(fill({MatrixId::kO, li, 0, c_.dim, shard_.q_head0 * static_cast<int64_t>(hd), qd}, l.o.parts[0].w, 0));
    const SourceRect g{MatrixId::kGate, li, shard_.ffn0, F, 0, c_.dim};
    const SourceRect u{MatrixId::kUp, li, shard_.ffn0, F, 0, c_.dim};
    if (l.gate_up.parts.size() == 1) {
      RETURN_IF_ERROR(fill(g, l.gate_up.parts[0].w, 0));
      RETURN_IF_ERROR(fill(u, l.gate_up.parts[0].w, F));
    } else {
      RETURN_IF_ERROR(fill(g, l.gate_up.parts[0].w, 0));
      RETURN_IF_ERROR(fill(u, l.gate_up.parts[1].w, 0));
    }
    RETURN_IF_ERROR(fill({MatrixId::kDown, li, 0, c_.dim, shard_.ffn0, F}, l.down.parts[0].w, 0));
  }

  // Buffers.
  CUDA_RETURN_IF_ERROR(cudaMalloc(&buffer_mem_, buffer_bytes_));
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(buffer_mem_, 0, buffer_bytes_, stream_));  // padding columns stay zero
  char* bp = static_cast<char*>(buffer_mem_);
  auto carve = [&](int64_t bytes) -> void* {
    if (bytes == 0) return nullptr;
    void* p = bp;
    bp += kc::AlignUp(bytes, 256);
    return p;
  };
  x_ = static_cast<float*>(carve(tcap_ * ld_x_ * 4));
  xb_ = static_cast<float*>(carve(tcap_ * ld_xb_ * 4));
  qkv_ = static_cast<float*>(carve(tcap_ * ld_qkv_ * 4));
  att_ = static_cast<float*>(carve(tcap_ * ld_att_ * 4));
  gu_ = static_cast<float*>(carve(tcap_ * ld_gu_ * 4));
  q8_ = carve(q8_bytes_);
  act16_ = carve(act16_bytes_);
  tile_ = carve(tile_bytes_);
  blas_ws_ = carve(blas_ws_bytes_);
  logits_ = static_cast<float*>(carve(logits_bytes_));
  partial_ = static_cast<float*>(carve(partial_bytes_));
  rope_ = static_cast<float*>(carve(static_cast<int64_t>(c_.context_length) * hd * 4));
  step_ = static_cast<int32_t*>(carve(step_layout_.total * 4));

  // Rotary angles in double, rounded once, exactly as the CPU executor: pos * theta^(-2i/hd).
  {
    const int half = hd / 2;
    std::vector<float> table(static_cast<size_t>(c_.context_length) * hd);
    for (int p = 0; p < c_.context_length; ++p) {
      for (int i = 0; i < half; ++i) {
        const double a = p * std::pow(static_cast<double>(c_.rope_theta), -2.0 * i / hd);
        table[(static_cast<size_t>(p) * half + i) * 2] = static_cast<float>(std::cos(a));
        table[(static_cast<size_t>(p) * half + i) * 2 + 1] = static_cast<float>(std::sin(a));
      }
    }
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(rope_, table.data(), table.size() * 4, cudaMemcpyHostToDevice, stream_));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  }
  if (tcap_ > gemv_max_) CUDA_RETURN_IF_ERROR(kc::CreateBlas(&blas_, blas_ws_, static_cast<size_t>(blas_ws_bytes_)));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::Status Rank::PlanWeights(WeightSource& source) {
  const int hd = c_.head_dim;
  const int64_t qd = static_cast<int64_t>(shard_.q_heads) * hd, kvd = static_cast<int64_t>(shard_.kv_heads) * hd;
  const int64_t F = shard_.ffn, dim = c_.dim;
  auto matrix = [](DType t, int64_t rows, int64_t cols) {
    kc::DeviceWeight w;
    w.type = t;
    w.rows = rows;
    w.cols = cols;
    w.row_bytes = kc::RowDataBytes(t, cols);
    return w;
  };
  auto check = [&](MatrixId id, int layer, int64_t cols) -> absl::Status {
    const DType t = source.Type(id, layer);
    if (!kc::WeightShapeSupported(t, cols)) {
      return absl::InvalidArgumentError(absl::StrCat("the CUDA kernels cannot take a ", kernels::Info(t).name,
                                                     " matrix ", cols, " wide (layer ", layer, ")"));
    }
    return absl::OkStatus();
  };
  int64_t bytes = 0;
  RETURN_IF_ERROR(check(MatrixId::kEmbedding, 0, dim));
  embedding_ = matrix(source.Type(MatrixId::kEmbedding, 0), c_.vocab_size, dim);
  bytes += kc::RepackedBytes(embedding_.type, embedding_.rows, embedding_.cols);
  if (shard_.rank == 0) {
    RETURN_IF_ERROR(check(MatrixId::kOutput, 0, dim));
    output_.parts = {{matrix(source.Type(MatrixId::kOutput, 0), c_.vocab_size, dim), 0}};
    if (!source.OutputIsEmbedding()) bytes += output_.Bytes();
  }
  bytes += kc::AlignUp(dim * 4, 256) * (1 + 2 * static_cast<int64_t>(c_.n_layers));
  layers_.assign(c_.n_layers, DeviceLayer{});
  for (int li = 0; li < c_.n_layers; ++li) {
    DeviceLayer& l = layers_[li];
    for (MatrixId id : {MatrixId::kQ, MatrixId::kK, MatrixId::kV, MatrixId::kGate, MatrixId::kUp}) {
      RETURN_IF_ERROR(check(id, li, dim));
    }
    RETURN_IF_ERROR(check(MatrixId::kO, li, qd));
    RETURN_IF_ERROR(check(MatrixId::kDown, li, F));
    const DType tq = source.Type(MatrixId::kQ, li), tk = source.Type(MatrixId::kK, li),
                tv = source.Type(MatrixId::kV, li);
    if (tq == tk && tk == tv) {
      l.qkv.parts = {{matrix(tq, qd + 2 * kvd, dim), 0}};
    } else {
      l.qkv.parts = {{matrix(tq, qd, dim), 0}, {matrix(tk, kvd, dim), qd}, {matrix(tv, kvd, dim), qd + kvd}};
    }
    l.o.parts = {{matrix(source.Type(MatrixId::kO, li), dim, qd), 0}};
    const DType tg = source.Type(MatrixId::kGate, li), tu = source.Type(MatrixId::kUp, li);
    if (tg == tu) {
      l.gate_up.parts = {{matrix(tg, 2 * F, dim), 0}};
    } else {
      l.gate_up.parts = {{matrix(tg, F, dim), 0}, {matrix(tu, F, dim), F}};
    }
    l.down.parts = {{matrix(source.Type(MatrixId::kDown, li), dim, F), 0}};
    bytes += l.qkv.Bytes() + l.o.Bytes() + l.gate_up.Bytes() + l.down.Bytes();
  }
  weight_bytes_ = bytes;
  return absl::OkStatus();
}

absl::Status Rank::PlanBuffers() {
  const int hd = c_.head_dim;
  const int64_t qd = static_cast<int64_t>(shard_.q_heads) * hd, kvd = static_cast<int64_t>(shard_.kv_heads) * hd;
  const int64_t F = shard_.ffn;
  ld_x_ = Pad(c_.dim);
  ld_xb_ = Pad(std::max<int64_t>(c_.dim, qd));
  ld_qkv_ = Pad(qd + 2 * kvd);
  ld_att_ = Pad(qd);
  ld_gu_ = Pad(2 * F);
  const int64_t kmax = std::max<int64_t>({c_.dim, qd, F});
  const bool gemm = tcap_ > gemv_max_;
  // The widest quantized matrix sets the smallest useful dequantization tile.
  int64_t widest_quant = 0, most_quant_elems = 0;
  auto visit = [&](const DeviceLinear& lin) {
    for (const DevicePart& p : lin.parts) {
      if (!kc::IsQuantized(p.w.type)) continue;
      widest_quant = std::max(widest_quant, p.w.cols);
      most_quant_elems = std::max(most_quant_elems, p.w.rows * p.w.cols);
    }
  };
  visit(output_);
  for (const DeviceLayer& l : layers_) {
    for (const DeviceLinear* lin : {&l.qkv, &l.o, &l.gate_up, &l.down}) visit(*lin);
  }
  tile_bytes_ = 0;
  if (gemm && widest_quant > 0) {
    tile_bytes_ = std::max(kc::GemmTileBytes(1, widest_quant), std::min(o_.dequant_tile_bytes, most_quant_elems * 2));
  }
  blas_ws_bytes_ = gemm ? kBlasWorkspaceBytes : 0;
  step_layout_ = MakeStepLayout(tcap_, (c_.context_length + o_.block_size - 1) / o_.block_size);

  // Decode partitions depend on the SM count (Init queried it first).
  int64_t most_partial = 0;
  for (int n = 1; n <= tcap_; ++n) {
    const int p = kc::DecodePartitions(n, shard_.q_heads, c_.context_length, sm_count_);
    most_partial = std::max(most_partial, kc::DecodeScratchFloats(n, shard_.q_heads, hd, p));
  }
  bool any_quant = kc::IsQuantized(embedding_.type) || output_.AnyQuantized();
  for (const DeviceLayer& l : layers_) {
    any_quant = any_quant || l.qkv.AnyQuantized() || l.o.AnyQuantized() || l.gate_up.AnyQuantized() ||
                l.down.AnyQuantized();
  }
  q8_bytes_ = any_quant ? kc::Q8ActivationBytes(tcap_, kc::AlignUp(kmax, 32)) : 0;
  act16_bytes_ = gemm ? tcap_ * Pad(kmax) * 2 : 0;
  logits_bytes_ = shard_.rank == 0 ? static_cast<int64_t>(tcap_) * c_.vocab_size * 4 : 0;
  partial_bytes_ = most_partial * 4;
  auto a = [](int64_t b) { return kc::AlignUp(b, 256); };
  buffer_bytes_ = a(tcap_ * ld_x_ * 4) + a(tcap_ * ld_xb_ * 4) + a(tcap_ * ld_qkv_ * 4) + a(tcap_ * ld_att_ * 4) +
                  a(tcap_ * ld_gu_ * 4) + a(q8_bytes_) + a(act16_bytes_) + a(tile_bytes_) + a(blas_ws_bytes_) +
                  a(logits_bytes_) + a(partial_bytes_) + a(static_cast<int64_t>(c_.context_length) * hd * 4) +
                  a(step_layout_.total * 4);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Rank::FreeBytesForKv() const {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  size_t free_b = 0, total_b = 0;
  CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_b, &total_b));
  return std::max<int64_t>(0, static_cast<int64_t>(free_b) - kDeviceReserveBytes);
}

absl::Status Rank::AllocateKv(int num_blocks) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  kv_blocks_ = num_blocks + 1;
  const int64_t bytes = static_cast<int64_t>(kv_blocks_) * kv_block_bytes();
  CUDA_RETURN_IF_ERROR(cudaMalloc(&kv_mem_, bytes));
  // Zero, so that reading a slot that was never written yields zeros rather than NaN patterns.
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(kv_mem_, 0, bytes, stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

kc::Q8Activations Rank::Q8View(int64_t K) const { return kc::MakeQ8Activations(q8_, tcap_, K); }

kc::TokenTable Rank::Tokens() const {
  kc::TokenTable t;
  t.positions = step_ + step_layout_.positions;
  t.seq = step_ + step_layout_.seq;
  t.table_start = step_ + step_layout_.table_start;
  t.blocks = step_ + step_layout_.blocks;
  return t;
}

kc::KvLayer Rank::KvLayerAt(int layer) const {
  kc::KvLayer kv;
  kv.type = o_.kv_type == KvCacheType::kF32 ? kc::KvType::kF32 : kc::KvType::kF16;
  kv.n_kv_heads = shard_.kv_heads;
  kv.head_dim = c_.head_dim;
  kv.block_size = o_.block_size;
  // Per layer: K for every block, then V for every block.
  const int64_t half_layer = static_cast<int64_t>(kv_blocks_) * kv_block_bytes() / (2 * c_.n_layers);
  char* base = static_cast<char*>(kv_mem_) + 2 * half_layer * layer;
  kv.k = base;
  kv.v = base + half_layer;
  return kv;
}

absl::Status Rank::EnsureQ8(Act& a) {
  if (!a.q8) {
    CUDA_RETURN_IF_ERROR(kc::QuantizeActivations(a.x, a.ld, a.M, a.K, Q8View(a.K), stream_));
    a.q8 = true;
  }
  return absl::OkStatus();
}

absl::Status Rank::RunLinear(const DeviceLinear& lin, Act& a, float* y, int64_t ldy, bool accumulate) {
  for (const DevicePart& part : lin.parts) {
    float* yp = y + part.y_offset;
    if (a.M <= gemv_max_) {
      kc::MatVecArgs m;
      m.w = part.w;
      m.M = a.M;
      m.y = yp;
      m.ldy = ldy;
      m.accumulate = accumulate;
      if (kc::IsQuantized(part.w.type)) {
        RETURN_IF_ERROR(EnsureQ8(a));
        m.xq = Q8View(a.K);
      } else {
        m.x = a.x;
        m.x_type = kc::ActType::kF32;
        m.ldx = a.ld;
      }
      CUDA_RETURN_IF_ERROR(kc::MatVec(m, stream_));
      continue;
    }
    kc::GemmArgs g;
    g.w = part.w;
    g.M = a.M;
    g.y = yp;
    g.ldy = ldy;
    g.accumulate = accumulate;
    g.tile = tile_;
    g.tile_bytes = tile_bytes_;
    const kc::ActType t = kc::GemmActivationType(part.w.type);
    if (t == kc::ActType::kF32) {
      g.x = a.x;
      g.ldx = a.ld;
    } else {
      if (a.half != t) {
        CUDA_RETURN_IF_ERROR(kc::ConvertActivations(a.x, a.ld, a.M, a.K, act16_, t, Pad(a.K), stream_));
        a.half = t;
      }
      g.x = act16_;
      g.ldx = Pad(a.K);
    }
    CUDA_RETURN_IF_ERROR(kc::Gemm(blas_, g, stream_));
  }
  return absl::OkStatus();
}

absl::Status Rank::Enqueue(int T, int n_decode, int n_tiles, int n_logits) {
  const int hd = c_.head_dim;
  const int64_t qd = static_cast<int64_t>(shard_.q_heads) * hd, kvd = static_cast<int64_t>(shard_.kv_heads) * hd;
  const int64_t F = shard_.ffn;
  const bool gemv = T <= gemv_max_;
  const bool first = shard_.rank == 0;
  const kc::TokenTable tokens = Tokens();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int partitions = kc::DecodePartitions(n_decode, shard_.q_heads, c_.context_length, sm_count_);

  CUDA_RETURN_IF_ERROR(kc::EmbedTokens(embedding_, step_ + step_layout_.tokens, T, x_, ld_x_, stream_));
  for (int li = 0; li < c_.n_layers; ++li) {
    const DeviceLayer& L = layers_[li];
    const kc::KvLayer kv = KvLayerAt(li);

    // Attention block.
    Act a{xb_, ld_xb_, T, c_.dim};
    kc::RmsNormArgs norm;
    norm.x = x_;
    norm.ldx = ld_x_;
    norm.weight = L.attn_norm;
    norm.n = c_.dim;
    norm.eps = c_.norm_eps;
    norm.M = T;
    norm.out = xb_;
    norm.ldo = ld_xb_;
    const kc::Q8Activations q8_dim = Q8View(c_.dim);
    const bool fuse_q8 = gemv && c_.dim % kc::kQBlock == 0;
    if (fuse_q8 && L.qkv.AnyQuantized()) {
      norm.q8 = &q8_dim;
      a.q8 = true;
    }
    CUDA_RETURN_IF_ERROR(kc::RmsNorm(norm, stream_));
    RETURN_IF_ERROR(RunLinear(L.qkv, a, qkv_, ld_qkv_, false));

    kc::RopeKvArgs rk;
    rk.q = qkv_;
    rk.ldq = ld_qkv_;
    rk.k = qkv_ + qd;
    rk.v = qkv_ + qd + kvd;
    rk.ldkv = ld_qkv_;
    rk.n_heads = shard_.q_heads;
    rk.T = T;
    rk.rope = rope_;
    rk.tokens = tokens;
    rk.kv = kv;
    CUDA_RETURN_IF_ERROR(kc::RopeAndStoreKv(rk, stream_));

    kc::AttentionArgs at;
    at.q = qkv_;
    at.ldq = ld_qkv_;
    at.out = att_;
    at.ldo = ld_att_;
    at.n_heads = shard_.q_heads;
    at.scale = scale;
    at.tokens = tokens;
    at.kv = kv;
    if (n_decode > 0) {
      CUDA_RETURN_IF_ERROR(kc::AttentionDecode(at, step_ + step_layout_.decode_list, n_decode, partitions, partial_, stream_));
    }
    if (n_tiles > 0) CUDA_RETURN_IF_ERROR(kc::AttentionPrefill(at, step_ + step_layout_.tiles, n_tiles, stream_));

    // Output projection, added to the residual. Tensor parallel: the first rank adds its partial
    // sum to the residual, the others write theirs, and the all-reduce sums them all.
    Act ao{att_, ld_att_, T, qd};
    RETURN_IF_ERROR(RunLinear(L.o, ao, x_, ld_x_, first));
    if (comm_) RETURN_IF_ERROR(comm_->AllReduceSum(x_, static_cast<int64_t>(T) * ld_x_, stream_));

    // Feed-forward block.
    Act af{xb_, ld_xb_, T, c_.dim};
    norm.weight = L.ffn_norm;
    norm.q8 = nullptr;
    if (fuse_q8 && L.gate_up.AnyQuantized()) {
      norm.q8 = &q8_dim;
      af.q8 = true;
    }
    CUDA_RETURN_IF_ERROR(kc::RmsNorm(norm, stream_));
    RETURN_IF_ERROR(RunLinear(L.gate_up, af, gu_, ld_gu_, false));
    Act ad{gu_, ld_gu_, T, F};
    const kc::Q8Activations q8_ffn = Q8View(F);
    const bool fuse_down = gemv && F % kc::kQBlock == 0 && L.down.AnyQuantized();
    CUDA_RETURN_IF_ERROR(kc::SiluMul(gu_, gu_ + F, ld_gu_, T, F, gu_, ld_gu_, fuse_down ? &q8_ffn : nullptr, stream_));
    ad.q8 = fuse_down;
    RETURN_IF_ERROR(RunLinear(L.down, ad, x_, ld_x_, first));
    if (comm_) RETURN_IF_ERROR(comm_->AllReduceSum(x_, static_cast<int64_t>(T) * ld_x_, stream_));
  }

  if (first && n_logits > 0) {
    kc::RmsNormArgs norm;
    norm.x = x_;
    norm.ldx = ld_x_;
    norm.weight = output_norm_;
    norm.n = c_.dim;
    norm.eps = c_.norm_eps;
    norm.M = n_logits;
    norm.rows = step_ + step_layout_.logit_rows;
    norm.out = xb_;
    norm.ldo = ld_xb_;
    Act a{xb_, ld_xb_, n_logits, c_.dim};
    const kc::Q8Activations q8_dim = Q8View(c_.dim);
    if (n_logits <= gemv_max_ && c_.dim % kc::kQBlock == 0 && output_.AnyQuantized()) {
      norm.q8 = &q8_dim;
      a.q8 = true;
    }
    CUDA_RETURN_IF_ERROR(kc::RmsNorm(norm, stream_));
    RETURN_IF_ERROR(RunLinear(output_, a, logits_, c_.vocab_size, false));
  }
  return absl::OkStatus();
}

absl::Status Rank::CaptureGraphs(StepPlanner& planner, int32_t* words) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  for (int g : planner.graph_sizes()) {
    const StepPlan& p = planner.PlanPadding(g, words);
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(step_, words, p.upload_words * 4, cudaMemcpyHostToDevice, stream_));
    // Warm-up outside capture: first launches load modules and let cuBLAS pick its kernels.
    RETURN_IF_ERROR(Enqueue(p.T, p.n_decode, p.n_tiles, p.n_logits));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
    CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    const absl::Status st = Enqueue(p.T, p.n_decode, p.n_tiles, p.n_logits);
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
    if (!st.ok()) {
      if (graph) cudaGraphDestroy(graph);
      return st;
    }
    CUDA_RETURN_IF_ERROR(end);
    cudaGraphExec_t exec = nullptr;
    const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    CUDA_RETURN_IF_ERROR(inst);
    graphs_[g] = exec;
  }
  return absl::OkStatus();
}

absl::Status Rank::CopyLogits(const StepPlan& p, std::span<float> logits) {
  const int64_t V = c_.vocab_size;
  const auto& from = p.logits_from;
  for (size_t k = 0; k < from.size();) {
    size_t n = 1;
    while (k + n < from.size() && from[k + n] == from[k] + static_cast<int32_t>(n)) ++n;
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(logits.data() + k * V, logits_ + from[k] * V, n * V * sizeof(float),
                                         cudaMemcpyDeviceToHost, stream_));
    k += n;
  }
  return absl::OkStatus();
}

absl::Status Rank::Run(const StepPlan& p, const int32_t* words, std::span<float> logits) {
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(step_, words, p.upload_words * 4, cudaMemcpyHostToDevice, stream_));
  if (p.graph_size > 0) {
    auto it = graphs_.find(p.graph_size);
    if (it == graphs_.end()) return absl::InternalError(absl::StrCat("no CUDA graph of size ", p.graph_size));
    CUDA_RETURN_IF_ERROR(cudaGraphLaunch(it->second, stream_));
  } else {
    RETURN_IF_ERROR(Enqueue(p.T, p.n_decode, p.n_tiles, p.n_logits));
  }
  if (shard_.rank == 0) RETURN_IF_ERROR(CopyLogits(p, logits));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

}  // namespace flotilla::cuda_internal
