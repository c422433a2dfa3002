#include "model/cuda/plan.h"

#include <algorithm>
#include <climits>
#include <cstdio>

#include "absl/strings/str_cat.h"

namespace flotilla::cuda_internal {

absl::StatusOr<Shard> MakeShard(const LlamaConfig& c, int ranks, int rank, bool quantized) {
  if (ranks < 1 || rank < 0 || rank >= ranks) return absl::InvalidArgumentError(absl::StrCat("bad rank ", rank, " of ", ranks));
  if (c.n_heads % ranks != 0 || c.n_kv_heads % ranks != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor parallel ", ranks, " must divide the ", c.n_heads,
                                                   " attention heads and the ", c.n_kv_heads, " KV heads"));
  }
  if (c.ffn_dim % ranks != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor parallel ", ranks, " must divide the FFN width ", c.ffn_dim));
  }
  Shard s;
  s.rank = rank;
  s.ranks = ranks;
  s.q_heads = c.n_heads / ranks;
  s.q_head0 = rank * s.q_heads;
  s.kv_heads = c.n_kv_heads / ranks;
  s.kv_head0 = rank * s.kv_heads;
  s.ffn = c.ffn_dim / ranks;
  s.ffn0 = rank * s.ffn;
  // Row-parallel matrices (O, down) are cut along their inputs: cuts must fall between blocks.
  if (quantized && ranks > 1 && (s.ffn % 32 != 0 || (static_cast<int64_t>(s.q_heads) * c.head_dim) % 32 != 0)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor parallel ", ranks, " would cut quantized blocks: FFN slice ",
                                                   s.ffn, " and attention slice ", s.q_heads * c.head_dim,
                                                   " must be multiples of 32"));
  }
  return s;
}

int64_t KvBlockBytes(const LlamaConfig& c, int kv_heads, int block_size, KvCacheType t) {
  const int64_t elem = t == KvCacheType::kF32 ? 4 : 2;
  return 2 * static_cast<int64_t>(c.n_layers) * kv_heads * c.head_dim * block_size * elem;
}

std::string GiB(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f GiB", static_cast<double>(bytes) / (1ll << 30));
  return buf;
}

absl::StatusOr<KvPlan> PlanKvCache(const CudaExecutorOptions& o, const LlamaConfig& c, int64_t block_bytes,
                                   int64_t free_bytes, const std::string& where) {
  if (block_bytes <= 0) return absl::InvalidArgumentError("KV block size in bytes must be positive");
  const int64_t need_one = (c.context_length + o.block_size - 1) / o.block_size;
  KvPlan p;
  if (o.num_kv_blocks > 0) {
    p.num_blocks = o.num_kv_blocks;
    p.bytes = static_cast<int64_t>(o.num_kv_blocks) * block_bytes;
    if (p.bytes > free_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("KV cache of ", o.num_kv_blocks, " blocks x ", block_bytes,
                                                       " bytes = ", GiB(p.bytes), " does not fit in the ",
                                                       GiB(free_bytes), " left on ", where,
                                                       " after weights and buffers"));
    }
    return p;
  }
  int64_t budget;
  if (o.kv_cache_bytes > 0) {
    if (o.kv_cache_bytes > free_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat("KV cache budget of ", GiB(o.kv_cache_bytes),
                                                       " does not fit in the ", GiB(free_bytes), " left on ", where,
                                                       " after weights and buffers"));
    }
    budget = o.kv_cache_bytes;
  } else {
    if (!(o.kv_memory_fraction > 0.0 && o.kv_memory_fraction <= 1.0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV memory fraction ", o.kv_memory_fraction, " must be in (0, 1]"));
    }
    budget = static_cast<int64_t>(o.kv_memory_fraction * static_cast<double>(std::max<int64_t>(free_bytes, 0)));
  }
  const int64_t blocks = std::min<int64_t>(budget / block_bytes, INT_MAX - 1);
  if (blocks < need_one) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV budget of ", GiB(budget), " (", GiB(free_bytes), " free on ", where, " after weights and buffers) holds ",
        blocks, " blocks of ", o.block_size, " tokens x ", block_bytes, " bytes; one sequence of the full context (",
        c.context_length, " tokens) needs ", need_one));
  }
  p.num_blocks = static_cast<int>(blocks);
  p.bytes = blocks * block_bytes;
  return p;
}

absl::Status CheckModelFits(int64_t weight_bytes, int64_t buffer_bytes, int64_t free_bytes, int64_t total_bytes,
                            const std::string& where) {
  if (weight_bytes + buffer_bytes <= free_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat("the model needs ", GiB(weight_bytes), " of weights and ",
                                                   GiB(buffer_bytes), " of buffers on ", where, ", but only ",
                                                   GiB(free_bytes), " of its ", GiB(total_bytes), " are free"));
}

StepLayout MakeStepLayout(int max_tokens, int max_blocks_per_seq) {
  StepLayout l;
  int off = 0;
  auto take = [&](int words) {
    const int at = off;
    off += (words + 31) / 32 * 32;  // 128-byte aligned arrays
    return at;
  };
  l.tokens = take(max_tokens);
  l.positions = take(max_tokens);
  l.seq = take(max_tokens);
  l.decode_list = take(max_tokens);
  l.tiles = take(2 * max_tokens);
  l.logit_rows = take(max_tokens);
  l.table_start = take(max_tokens + 1);
  l.blocks = off;
  l.total = off + (static_cast<int64_t>(max_tokens) + 1) * max_blocks_per_seq;
  return l;
}

StepPlanner::StepPlanner(int max_tokens, int max_blocks_per_seq, int block_size, int tile_tokens, int trash_block,
                         std::vector<int> graph_sizes)
    : layout_(MakeStepLayout(max_tokens, max_blocks_per_seq)),
      block_size_(block_size),
      tile_tokens_(std::max(1, tile_tokens)),
      trash_block_(trash_block) {
  std::sort(graph_sizes.begin(), graph_sizes.end());
  graph_sizes.erase(std::unique(graph_sizes.begin(), graph_sizes.end()), graph_sizes.end());
  for (int g : graph_sizes) {
    if (g >= 1 && g <= max_tokens) graph_sizes_.push_back(g);
  }
  packed_.reserve(max_tokens);
  need_.reserve(max_tokens);
  count_.reserve(max_tokens);
  plan_.logits_from.reserve(max_tokens);
}

const StepPlan& StepPlanner::Plan(const ForwardBatch& b, bool allow_graph, int32_t* w) {
  const StepLayout& L = layout_;
  StepPlan& p = plan_;
  const int T = static_cast<int>(b.size());
  p = StepPlan{.logits_from = std::move(p.logits_from)};
  p.logits_from.clear();
  p.real_T = T;
  seq_map_.assign(b.block_tables.size(), -1);
  packed_.clear();
  need_.clear();
  count_.clear();
  bool decode_only = true;
  for (int t = 0; t < T; ++t) {
    int32_t& ps = seq_map_[b.seq[t]];
    if (ps < 0) {
      ps = static_cast<int32_t>(packed_.size());
      packed_.push_back(b.seq[t]);
      need_.push_back(0);
      count_.push_back(0);
    }
    if (++count_[ps] > 1) decode_only = false;
    need_[ps] = std::max(need_[ps], b.positions[t] / block_size_ + 1);
    w[L.tokens + t] = b.tokens[t];
    w[L.positions + t] = b.positions[t];
    w[L.seq + t] = ps;
  }
  if (allow_graph && decode_only && T > 0) {
    for (int g : graph_sizes_) {
      if (g >= T) {
        p.graph_size = g;
        break;
      }
    }
  }
  const int S = static_cast<int>(packed_.size());
  int64_t off = 0;
  for (int ps = 0; ps < S; ++ps) {
    w[L.table_start + ps] = static_cast<int32_t>(off);
    const auto& table = b.block_tables[packed_[ps]];
    std::copy(table.begin(), table.begin() + need_[ps], w + L.blocks + off);
    off += need_[ps];
  }
  if (p.graph_size > 0) {
    const int g = p.graph_size;
    p.T = g;
    if (g > T) {  // padding tokens: token 0 at position 0 of a sequence holding the trash block
      w[L.table_start + S] = static_cast<int32_t>(off);
      w[L.blocks + off++] = trash_block_;
      for (int t = T; t < g; ++t) {
        w[L.tokens + t] = 0;
        w[L.positions + t] = 0;
        w[L.seq + t] = S;
      }
    }
    for (int t = 0; t < g; ++t) {
      w[L.decode_list + t] = t;
      w[L.logit_rows + t] = t;
    }
    p.n_decode = g;
    p.n_logits = g;
    for (int t = 0; t < T; ++t) {
      if (b.want_logits[t]) p.logits_from.push_back(t);
    }
  } else {
    p.T = T;
    for (int i = 0; i < T;) {
      int j = i;
      while (j + 1 < T && b.seq[j + 1] == b.seq[i]) ++j;
      if (j == i) {
        w[L.decode_list + p.n_decode++] = i;
      } else {
        for (int k = i; k <= j; k += tile_tokens_) {
          w[L.tiles + 2 * p.n_tiles] = k;
          w[L.tiles + 2 * p.n_tiles + 1] = std::min(tile_tokens_, j + 1 - k);
          ++p.n_tiles;
        }
      }
      i = j + 1;
    }
    for (int t = 0; t < T; ++t) {
      if (b.want_logits[t]) {
        p.logits_from.push_back(p.n_logits);
        w[L.logit_rows + p.n_logits++] = t;
      }
    }
  }
  p.upload_words = L.blocks + off;
  return p;
}

const StepPlan& StepPlanner::PlanPadding(int n, int32_t* w) {
  const StepLayout& L = layout_;
  StepPlan& p = plan_;
  p = StepPlan{.logits_from = std::move(p.logits_from)};
  p.logits_from.clear();
  p.T = n;
  p.graph_size = n;
  p.n_decode = n;
  p.n_logits = n;
  w[L.table_start] = 0;
  w[L.blocks] = trash_block_;
  for (int t = 0; t < n; ++t) {
    w[L.tokens + t] = 0;
    w[L.positions + t] = 0;
    w[L.seq + t] = 0;
    w[L.decode_list + t] = t;
    w[L.logit_rows + t] = t;
  }
  p.upload_words = L.blocks + 1;
  return p;
}

}  // namespace flotilla::cuda_internal

namespace flotilla {

LlamaConfig Llama3_8BConfig(int context_length) {
  LlamaConfig c;
  c.name = "llama-3-8b-shape";
  c.dim = 4096;
  c.n_layers = 32;
  c.n_heads = 32;
  c.n_kv_heads = 8;
  c.head_dim = 128;
  c.ffn_dim = 14336;
  c.vocab_size = 128256;
  c.context_length = context_length;
  c.file_context_length = 8192;
  c.norm_eps = 1e-5f;
  c.rope_theta = 500000.0f;
  c.tied_output = false;
  return c;
}

}  // namespace flotilla
