// Whole-model CPU benchmark: decode, prompt processing and batched decode tokens/s of synthetic
// Llama shapes (written on the fly into a temporary directory, deleted afterwards) and of the
// shared stories260K file, each configuration run in its own child process so that its peak
// resident memory (ru_maxrss) is its own. Decode figures are printed beside their roofline:
// weight bytes read per token divided by the read bandwidth this run measures, once just before
// the decode run and again interleaved with it (segments of 4 steps, each after a short probe:
// the host's bandwidth drifts within seconds, and a fraction of a bandwidth measured at another
// moment can be off by a third either way). Batches are also set against one sequence at the
// same moment: segments of batched steps alternate with steps of one more sequence alone.
//
//   model_bench [--quick] [--shapes 110m,1b] [--types q8_0,q4_0,f16] [--threads 1,2]
//               [--batches 1,4,16] [--decode-tokens N] [--prompt-tokens N] [--dir DIR] [--keep]
//               [--isa NAME] [--no-tiny] [--adaptive] [--no-pack] [--json FILE]
//
// Models are written to --dir, by default a new directory in /dev/shm when it has 6 GiB free
// (else /tmp), and each is deleted once measured unless --keep.
//
// --no-pack runs the children with FLOTILLA_PACK_WEIGHTS=0 (quantized weights read as stored in
// the file instead of the kernels' packed layout), to compare the two. One measurement alone:
// `model_bench --child --model FILE --what decode|prompt|batch --threads T --n N [--batch B]
// [--interleave-bw] [--kv-cache-type f16|f32|q8_0]` (the parent always uses the f16 cache).
//
// Children run with FLOTILLA_ADAPTIVE_THREADS=0 (the executor's fall-back to one thread on an
// oversubscribed host is off, so a 2-thread figure is a 2-thread figure) unless --adaptive.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <span>
#include <sstream>
#include <thread>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/model/read_bandwidth.h"
#include "common/model_path.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/kernel_table.h"
#include "model/executor.h"
#include "model/loader.h"
#include "model/sampler.h"
#include "model/synthetic.h"

namespace flotilla::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// ---- child: one measurement on one model ------------------------------------------------------

struct ChildArgs {
  std::string model;
  std::string what;  // decode | prompt | batch
  int threads = 1;
  int n = 32;  // decode steps, prompt length, or steps of batched decode
  int batch = 1;
  std::string isa;
  int context = 0;
  // decode: also measure the roofline fraction alongside; batch of several: also the ratio to
  // one sequence at the same moment (see RunChild)
  bool interleave_bw = false;
  std::string kv_cache_type = "f16";  // f16 | f32 | q8_0
};

// Prints "tok_s=<median-based tokens/s> mean_tok_s=<...> bytes=<weight bytes per token>".
int RunChild(const ChildArgs& a) {
  LoadOptions lo;
  lo.context_length = a.context;
  auto loaded = LoadModel(a.model, lo);
  if (!loaded.ok()) {
    std::fprintf(stderr, "child: %s\n", std::string(loaded.status().message()).c_str());
    return 1;
  }
  std::shared_ptr<const LoadedModel> model = std::move(*loaded);
  const LlamaConfig& c = model->config;
  const int V = c.vocab_size;
  const int prefix = 8;  // tokens of context each sequence has before decode is timed
  ExecutorOptions eo;
  auto kv = ParseKvDType(a.kv_cache_type);
  if (!kv.ok()) {
    std::fprintf(stderr, "child: %s\n", std::string(kv.status().message()).c_str());
    return 1;
  }
  eo.kv_type = *kv;
  eo.threads = a.threads;
  eo.isa = a.isa;
  eo.block_size = 16;
  // Decode with interleaved bandwidth probes runs its steps twice (plain, then in segments); so
  // does a batch with `interleave_bw`, alternating segments with one more sequence alone.
  const int seqs = a.what == "batch" ? a.batch : 1;
  const bool pair_one = a.what == "batch" && a.batch > 1 && a.interleave_bw;
  const int pair_steps = std::max(a.n, 24);  // steps of the batch in the alternating phase
  const int per_seq_tokens =
      a.what == "prompt" ? a.n : prefix + a.n + (pair_one ? pair_steps : a.interleave_bw ? a.n : 0) + 8;
  const int all_seqs = seqs + (pair_one ? 1 : 0);  // sequence `seqs` is the one alone
  const int warm = 3;
  // The sequence alone steps at the batch's positions (its prompt is longer by the steps the
  // batch has taken before the alternating phase), so both sides attend over the same context.
  const int alone_ahead = a.n + warm;
  const int blocks_per_seq = (per_seq_tokens + eo.block_size - 1) / eo.block_size;
  eo.num_kv_blocks = all_seqs * blocks_per_seq;
  eo.max_batch_tokens = std::max({a.what == "prompt" ? a.n : 0, all_seqs * prefix + (pair_one ? alone_ahead : 0), seqs});
  auto exr = MakeCpuExecutor(model, eo);
  if (!exr.ok()) {
    std::fprintf(stderr, "child: %s\n", std::string(exr.status().message()).c_str());
    return 1;
  }
  Executor& ex = **exr;
  std::vector<std::vector<int32_t>> tables(all_seqs);
  for (int s = 0; s < all_seqs; ++s) {
    tables[s].resize(blocks_per_seq);
    std::iota(tables[s].begin(), tables[s].end(), s * blocks_per_seq);
  }
  std::mt19937 rng(42);
  auto random_token = [&] { return static_cast<int32_t>(3 + rng() % (V - 3)); };
  std::vector<float> logits(static_cast<size_t>(all_seqs) * V);
  ForwardBatch b;
  std::vector<double> times;

  if (a.what == "prompt") {
    // One warm-up pass, then timed passes over the same positions (the KV slots are rewritten).
    std::vector<int32_t> prompt(a.n);
    for (auto& t : prompt) t = random_token();
    for (int rep = 0; rep < 4; ++rep) {
      b.Clear();
      const int32_t si = b.AddSequence(tables[0]);
      for (int i = 0; i < a.n; ++i) b.Add(prompt[i], i, si, i + 1 == a.n);
      const auto t0 = Clock::now();
      if (!ex.Forward(b, logits).ok()) return 1;
      if (rep > 0) times.push_back(Seconds(t0, Clock::now()));
    }
    const double med = Median(times);
    const double mean = std::accumulate(times.begin(), times.end(), 0.0) / times.size();
    std::printf("tok_s=%.4f mean_tok_s=%.4f bytes=%lld\n", a.n / med, a.n / mean,
                static_cast<long long>(model->weights.TotalBytes()));
    return 0;
  }

  // decode (one sequence) or batch (several): prefill `prefix` tokens per sequence, then steps.
  b.Clear();
  for (int s = 0; s < all_seqs; ++s) {
    const int32_t si = b.AddSequence(tables[s]);
    const int len = prefix + (pair_one && s == seqs ? alone_ahead : 0);
    for (int i = 0; i < len; ++i) b.Add(random_token(), i, si, i + 1 == len);
  }
  if (const absl::Status st = ex.Forward(b, logits); !st.ok()) {
    std::fprintf(stderr, "child: prefill: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  std::vector<int32_t> next(all_seqs);
  for (int s = 0; s < all_seqs; ++s) next[s] = ArgMax(std::span<const float>(logits.data() + static_cast<size_t>(s) * V, V));
  // One decode step of sequences [s0, s1) at position prefix + i; seconds.
  auto step_of = [&](int s0, int s1, int i) -> double {
    b.Clear();
    for (int s = s0; s < s1; ++s) {
      const int32_t si = b.AddSequence(tables[s]);
      b.Add(next[s], prefix + i, si, true);
    }
    const auto t0 = Clock::now();
    if (const absl::Status st = ex.Forward(b, logits); !st.ok()) {
      std::fprintf(stderr, "child: decode step: %s\n", std::string(st.message()).c_str());
      return -1;
    }
    const double dt = Seconds(t0, Clock::now());
    for (int s = s0; s < s1; ++s) next[s] = ArgMax(std::span<const float>(logits.data() + static_cast<size_t>(s - s0) * V, V));
    return dt;
  };
  auto step = [&](int i) { return step_of(0, seqs, i); };
  const int64_t weight_bytes = model->weights.TotalBytes();
  for (int i = 0; i < a.n + warm; ++i) {
    const double dt = step(i);
    if (dt < 0) return 1;
    if (i >= warm) times.push_back(dt);
  }
  const double med = Median(times);
  const double mean = std::accumulate(times.begin(), times.end(), 0.0) / times.size();
  std::printf("tok_s=%.4f mean_tok_s=%.4f bytes=%lld", seqs / med, seqs / mean, static_cast<long long>(weight_bytes));
  if (a.what == "decode" && a.interleave_bw) {
    // The host's bandwidth drifts within seconds, so the roofline is also measured alongside:
    // segments of 4 steps, each right after a probe on the same thread count (the pool's
    // threads asleep first), and the fraction is the median over segments of the segment's
    // weight bytes per second over its probe's bandwidth.
    // The run's own peak resident memory is taken first: the probe's buffer is not the model's.
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    std::printf(" max_rss_kb=%ld", ru.ru_maxrss);
    ReadBandwidthProbe probe(int64_t{256} << 20, a.threads);
    std::vector<double> fractions, bws;
    const int seg = 4;
    for (int i = 0; i + seg <= a.n; i += seg) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      const double bw = probe.Measure(2);
      double t = 0;
      for (int k = 0; k < seg; ++k) {
        const double dt = step(a.n + warm + i + k);
        if (dt < 0) return 1;
        t += dt;
      }
      if (bw > 0) {
        bws.push_back(bw);
        fractions.push_back(seg * static_cast<double>(weight_bytes) / t / bw);
      }
    }
    std::printf(" roofline_fraction=%.4f interleaved_bw=%.4e segments=%zu", Median(fractions), Median(bws), fractions.size());
  }
  if (pair_one) {
    // The batch's speed-up over one sequence, measured at the same moment: the host's compute
    // and bandwidth drift within seconds, and the two runs of a batch-16 / batch-1 ratio taken
    // a minute apart could differ by a third from that alone. Segments of 4 steps of the batch
    // and of one more sequence alone alternate (which goes first alternates too); each segment
    // counts its median step (one step stalled by the host does not swing a pair), and the figure
    // is the median over segment pairs of (batch tokens/s / one sequence's tokens/s).
    const int seg = 4;
    std::vector<double> ratios;
    for (int i = 0; i + seg <= pair_steps; i += seg) {
      std::vector<double> t_batch, t_one;
      for (int order = 0; order < 2; ++order) {
        const bool batch_now = (order == 0) == ((i / seg) % 2 == 0);
        for (int k = 0; k < seg; ++k) {
          const double dt = batch_now ? step_of(0, seqs, alone_ahead + i + k) : step_of(seqs, seqs + 1, alone_ahead + i + k);
          if (dt < 0) return 1;
          (batch_now ? t_batch : t_one).push_back(dt);
        }
      }
      ratios.push_back(seqs * Median(t_one) / Median(t_batch));
    }
    std::printf(" ratio_to_one=%.4f ratio_pairs=%zu", Median(ratios), ratios.size());
  }
  std::printf("\n");
  return 0;
}

// ---- parent ---------------------------------------------------------------------------------

struct Result {
  bool ok = false;
  double tok_s = 0;
  double mean_tok_s = 0;
  int64_t bytes = 0;
  double max_rss_mb = 0;
  double roofline_fraction = 0;  // decode with interleaved probes; 0 when not measured
  double interleaved_bw = 0;
  double ratio_to_one = 0;  // batch with interleaved segments of one sequence alone; 0 when not measured
};

bool g_adaptive = false;
bool g_pack = true;

Result Spawn(const std::string& self, const ChildArgs& a) {
  std::vector<std::string> args = {self,      "--child",   "--model",    a.model,   "--what",
                                   a.what,    "--threads", std::to_string(a.threads), "--n",
                                   std::to_string(a.n), "--batch", std::to_string(a.batch), "--context",
                                   std::to_string(a.context)};
  if (!a.isa.empty()) {
    args.push_back("--isa");
    args.push_back(a.isa);
  }
  if (a.interleave_bw) args.push_back("--interleave-bw");
  int fds[2];
  Result r;
  if (pipe(fds) != 0) return r;
  const pid_t pid = fork();
  if (pid == 0) {
    if (!g_adaptive) setenv("FLOTILLA_ADAPTIVE_THREADS", "0", 1);
    if (!g_pack) setenv("FLOTILLA_PACK_WEIGHTS", "0", 1);
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);
    execv(self.c_str(), argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string out;
  char buf[512];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof(buf))) > 0) out.append(buf, n);
  close(fds[0]);
  int status = 0;
  struct rusage ru {};
  wait4(pid, &status, 0, &ru);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return r;
  double child_rss_kb = 0;
  for (absl::string_view kv : absl::StrSplit(absl::string_view(out.data(), out.size()), absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    std::pair<std::string, std::string> p = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (p.first == "tok_s") r.ok = absl::SimpleAtod(p.second, &r.tok_s);
    if (p.first == "mean_tok_s") (void)absl::SimpleAtod(p.second, &r.mean_tok_s);
    if (p.first == "bytes") (void)absl::SimpleAtoi(p.second, &r.bytes);
    if (p.first == "max_rss_kb") (void)absl::SimpleAtod(p.second, &child_rss_kb);
    if (p.first == "roofline_fraction") (void)absl::SimpleAtod(p.second, &r.roofline_fraction);
    if (p.first == "interleaved_bw") (void)absl::SimpleAtod(p.second, &r.interleaved_bw);
    if (p.first == "ratio_to_one") (void)absl::SimpleAtod(p.second, &r.ratio_to_one);
  }
  // KiB on Linux; a child that measured its run's peak before allocating more says so itself.
  r.max_rss_mb = (child_rss_kb > 0 ? child_rss_kb : ru.ru_maxrss) / 1024.0;
  return r;
}

struct Options {
  std::vector<std::string> shapes = {"110m", "1b"};
  std::vector<std::string> types = {"q8_0", "q4_0", "f16"};
  std::vector<int> threads = {1, 2};
  std::vector<int> batches = {1, 4, 16};
  int decode_tokens = 32;
  int prompt_tokens = 128;
  std::string dir;
  bool keep = false;
  bool tiny = true;
  std::string isa;
  std::string json;
};

kernels::DType TypeOf(const std::string& s) {
  if (s == "f16") return kernels::DType::kF16;
  if (s == "q4_0") return kernels::DType::kQ4_0;
  if (s == "bf16") return kernels::DType::kBF16;
  if (s == "f32") return kernels::DType::kF32;
  return kernels::DType::kQ8_0;
}

std::string Run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[256];
  while (fgets(buf, sizeof(buf), p)) out += buf;
  pclose(p);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

int RunParent(const Options& o, const std::string& self) {
  namespace fs = std::filesystem;
  std::string dir = o.dir;
  bool made_dir = false;
  if (dir.empty()) {
    // tmpfs when it has room (writing gigabytes to a shared VM disk can take minutes), else /tmp.
    std::error_code ec;
    const auto shm = fs::space("/dev/shm", ec);
    const bool use_shm = !ec && shm.available > (uint64_t{6} << 30);
    char tmpl[64];
    std::snprintf(tmpl, sizeof(tmpl), "%s/flotilla-bench-XXXXXX", use_shm ? "/dev/shm" : "/tmp");
    if (!mkdtemp(tmpl)) {
      std::perror("mkdtemp");
      return 1;
    }
    dir = tmpl;
    made_dir = true;
  }
  std::printf("# Flotilla CPU model benchmark\n\n");
  std::printf("- date: %s\n", Run("date -u '+%Y-%m-%d %H:%M UTC'").c_str());
  std::printf("- cpu: %s; %u logical CPUs; features: %s\n", Run("lscpu | sed -n 's/^Model name: *//p'").c_str(),
              std::thread::hardware_concurrency(), kernels::cpu::GetCpuFeatures().ToString().c_str());
  std::printf("- kernels: %s; adaptive thread fall-back %s; weight packing %s\n",
              o.isa.empty() ? kernels::cpu::BestKernels().isa : o.isa.c_str(), g_adaptive ? "on" : "off",
              g_pack ? "on (where the kernels have a packed layout)" : "off (--no-pack)");
  std::printf("- model dir: %s\n", dir.c_str());
  std::printf("- load before: %s\n", Run("cut -d' ' -f1-3 /proc/loadavg").c_str());
  std::fflush(stdout);

  // Read bandwidth per thread count, measured before and after the model runs; the best is used.
  std::map<int, double> bw;
  auto measure_bw = [&] {
    for (int t : o.threads) bw[t] = std::max(bw[t], MeasureReadBandwidth(int64_t{1} << 30, t, 5));
  };
  measure_bw();

  struct Row {
    std::string model, type, what;
    int threads, batch;
    Result r;
    double bw = 0;  // read bandwidth measured just before a decode run, same thread count
  };
  std::vector<Row> rows;
  std::ofstream json;
  if (!o.json.empty()) json.open(o.json);
  auto record = [&](const std::string& name, const std::string& type, const ChildArgs& a) {
    // The host's memory bandwidth drifts (other tenants): measure it right before each decode run.
    // (Not for the tiny model, whose weights live in L2: its roofline is meaningless, and the
    // freshly unmapped buffer's teardown disturbed its short run.)
    const double bw_now = a.what == "decode" && name != "stories260K" ? MeasureReadBandwidth(int64_t{512} << 20, a.threads, 3) : 0;
    if (bw_now > 0) bw[a.threads] = std::max(bw[a.threads], bw_now);
    Result r = Spawn(self, a);
    rows.push_back({name, type, a.what, a.threads, a.batch, r, bw_now});
    std::fprintf(stderr, "  %-12s %-5s %-6s t=%d b=%-2d -> %s tok/s, max RSS %.0f MB\n", name.c_str(), type.c_str(),
                 a.what.c_str(), a.threads, a.batch, r.ok ? absl::StrCat(r.tok_s).c_str() : "FAILED", r.max_rss_mb);
    if (json.is_open()) {
      json << "{\"model\":\"" << name << "\",\"type\":\"" << type << "\",\"what\":\"" << a.what << "\",\"threads\":" << a.threads
           << ",\"batch\":" << a.batch << ",\"ok\":" << (r.ok ? "true" : "false") << ",\"tok_s\":" << r.tok_s
           << ",\"mean_tok_s\":" << r.mean_tok_s << ",\"weight_bytes\":" << r.bytes << ",\"max_rss_mb\":" << r.max_rss_mb
           << ",\"read_gbs_before\":" << bw_now / 1e9 << ",\"roofline_fraction_interleaved\":" << r.roofline_fraction
           << ",\"read_gbs_interleaved\":" << r.interleaved_bw / 1e9 << ",\"ratio_to_one_interleaved\":" << r.ratio_to_one
           << "}\n";
    }
  };

  std::map<std::string, int64_t> file_bytes;
  // The real tiny model: the 2-thread vs 1-thread decode question.
  if (o.tiny) {
    auto p = ResolveModelPath("stories260K-q8_0.gguf");
    if (p.ok()) {
      file_bytes["stories260K"] = static_cast<int64_t>(fs::file_size(*p));
      for (int t : o.threads) {
        ChildArgs a{*p, "decode", t, 480, 1, o.isa, 512};
        record("stories260K", "q8_0", a);
      }
    } else {
      std::fprintf(stderr, "stories260K-q8_0.gguf not found; skipping the tiny model\n");
    }
  }
  for (const std::string& shape_name : o.shapes) {
    auto shape = ParseSyntheticShape(shape_name);
    if (!shape.ok()) {
      std::fprintf(stderr, "%s\n", std::string(shape.status().message()).c_str());
      return 2;
    }
    for (const std::string& type : o.types) {
      const std::string path = dir + "/synth-" + shape_name + "-" + type + ".gguf";
      std::error_code ec;
      const auto need = SyntheticModelBytes(*shape, TypeOf(type));
      const auto space = fs::space(dir, ec);
      if (!ec && static_cast<int64_t>(space.available) < need + (int64_t{512} << 20)) {
        std::fprintf(stderr, "not enough disk in %s for %s (%.1f GB); skipping\n", dir.c_str(), path.c_str(), need / 1e9);
        continue;
      }
      if (!fs::exists(path)) {
        SynthOptions so;
        so.type = TypeOf(type);
        if (shape->vocab_size == 32000) {
          if (auto donor = ResolveModelPath("llama2-vocab-tiny-f16.gguf"); donor.ok()) so.vocab_from = *donor;
        }
        const auto t0 = Clock::now();
        const absl::Status s = WriteSyntheticModel(*shape, so, path);
        if (!s.ok()) {
          std::fprintf(stderr, "synth %s: %s\n", path.c_str(), std::string(s.message()).c_str());
          continue;
        }
        std::fprintf(stderr, "wrote %s (%.0f MB) in %.1f s\n", path.c_str(), fs::file_size(path) / 1e6, Seconds(t0, Clock::now()));
      }
      const std::string name = "synth-" + shape_name;
      file_bytes[name + "-" + type] = static_cast<int64_t>(fs::file_size(path));
      for (int t : o.threads) {
        record(name, type, ChildArgs{path, "decode", t, o.decode_tokens, 1, o.isa, 0, /*interleave_bw=*/true});
        record(name, type, ChildArgs{path, "prompt", t, o.prompt_tokens, 1, o.isa, 0});
      }
      // Batched decode at the largest thread count.
      const int bt = *std::max_element(o.threads.begin(), o.threads.end());
      for (int bsz : o.batches) {
        record(name, type, ChildArgs{path, "batch", bt, std::max(8, o.decode_tokens / 2), bsz, o.isa, 0, /*interleave_bw=*/bsz > 1});
      }
      if (!o.keep) fs::remove(path, ec);
    }
  }
  measure_bw();
  if (made_dir && !o.keep) fs::remove_all(dir);

  std::printf("- load after: %s\n\n", Run("cut -d' ' -f1-3 /proc/loadavg").c_str());
  std::printf("## Read bandwidth (streaming AVX2 loads; best over the run: 1 GiB x5 before and after, 512 MiB x3 before each decode)\n\n| threads | GB/s |\n|---|---|\n");
  for (auto [t, v] : bw) std::printf("| %d | %.1f |\n", t, v / 1e9);

  auto find = [&](const std::string& model, const std::string& type, const std::string& what, int t, int bsz) -> const Row* {
    for (const Row& r : rows) {
      if (r.model == model && r.type == type && r.what == what && r.threads == t && r.batch == bsz && r.r.ok) return &r;
    }
    return nullptr;
  };
  std::printf("\n## Decode (one sequence; tokens/s from the median step time)\n\n");
  std::printf("Roofline: weight bytes per token / read bandwidth measured just before the run (same thread count).\n");
  std::printf("Interleaved: the run's second half in segments of 4 steps, each right after a bandwidth probe; the median\n");
  std::printf("over segments of (weight bytes per second / probe bandwidth), with the probes' median GB/s. Best-BW: the\n");
  std::printf("best bandwidth of the whole run instead.\n\n");
  std::printf("| model | type | threads | tok/s | weight MB/token | GB/s before | roofline tok/s | %% of roofline | interleaved GB/s | %% of roofline, interleaved | %% of best-BW roofline | peak RSS MB | file MB |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    if (r.what != "decode" || !r.r.ok) continue;
    if (r.bw == 0) {
      std::printf("| %s | %s | %d | %.1f | %.1f | - | - | - | - | - | - | %.0f | - |\n", r.model.c_str(), r.type.c_str(), r.threads,
                  r.r.tok_s, r.r.bytes / 1e6, r.r.max_rss_mb);
      continue;
    }
    const double roof = r.bw / std::max<int64_t>(1, r.r.bytes);
    const double roof_best = bw[r.threads] / std::max<int64_t>(1, r.r.bytes);
    const auto fb = file_bytes.count(r.model == "stories260K" ? r.model : r.model + "-" + r.type)
                        ? file_bytes[r.model == "stories260K" ? r.model : r.model + "-" + r.type]
                        : 0;
    std::printf("| %s | %s | %d | %.1f | %.1f | %.1f | %.1f | %.0f %% | %.1f | %.0f %% | %.0f %% | %.0f | %.0f |\n", r.model.c_str(),
                r.type.c_str(), r.threads, r.r.tok_s, r.r.bytes / 1e6, r.bw / 1e9, roof, 100.0 * r.r.tok_s / roof,
                r.r.interleaved_bw / 1e9, 100.0 * r.r.roofline_fraction, 100.0 * r.r.tok_s / roof_best, r.r.max_rss_mb, fb / 1e6);
  }
  std::printf("\n## Prompt processing (%d-token prompt in one step; median of 3 after a warm-up)\n\n", o.prompt_tokens);
  std::printf("| model | type | threads | tok/s | peak RSS MB |\n|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    if (r.what != "prompt" || !r.r.ok) continue;
    std::printf("| %s | %s | %d | %.1f | %.0f |\n", r.model.c_str(), r.type.c_str(), r.threads, r.r.tok_s, r.r.max_rss_mb);
  }
  std::printf("\n## Batched decode (B sequences, one token each per step)\n\n");
  std::printf("x batch 1: against the batch-1 run. Interleaved: the same run's segments of 4 batched steps alternating\n");
  std::printf("with 4 steps of one more sequence alone; the median over segment pairs of the tokens/s ratio.\n\n");
  std::printf("| model | type | threads | batch | tok/s | x batch 1 | x batch 1, interleaved | peak RSS MB |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    if (r.what != "batch" || !r.r.ok) continue;
    const Row* one = find(r.model, r.type, "batch", r.threads, 1);
    const std::string inter = r.r.ratio_to_one > 0 ? absl::StrFormat("%.2f", r.r.ratio_to_one) : "-";
    std::printf("| %s | %s | %d | %d | %.1f | %.2f | %s | %.0f |\n", r.model.c_str(), r.type.c_str(), r.threads, r.batch, r.r.tok_s,
                one ? r.r.tok_s / one->r.tok_s : 0.0, inter.c_str(), r.r.max_rss_mb);
  }
  bool all_ok = true;
  for (const Row& r : rows) all_ok = all_ok && r.r.ok;
  return all_ok ? 0 : 1;
}

std::vector<int> Ints(const std::string& s) {
  std::vector<int> v;
  for (absl::string_view p : absl::StrSplit(s, ',', absl::SkipEmpty())) {
    int x;
    if (absl::SimpleAtoi(p, &x)) v.push_back(x);
  }
  return v;
}

}  // namespace
}  // namespace flotilla::bench

int main(int argc, char** argv) {
  using namespace flotilla::bench;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto value = [&](size_t& i) -> std::string {
    if (i + 1 >= args.size()) {
      std::fprintf(stderr, "%s needs a value\n", args[i].c_str());
      std::exit(2);
    }
    return args[++i];
  };
  bool child = false;
  ChildArgs ca;
  Options o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--child") child = true;
    else if (a == "--model") ca.model = value(i);
    else if (a == "--what") ca.what = value(i);
    else if (a == "--n") ca.n = std::stoi(value(i));
    else if (a == "--batch") ca.batch = std::stoi(value(i));
    else if (a == "--context") ca.context = std::stoi(value(i));
    else if (a == "--interleave-bw") ca.interleave_bw = true;
    else if (a == "--kv-cache-type") ca.kv_cache_type = value(i);
    else if (a == "--isa") o.isa = ca.isa = value(i);
    else if (a == "--threads") {
      const std::string v = value(i);
      o.threads = Ints(v);
      ca.threads = o.threads.empty() ? 1 : o.threads[0];
    } else if (a == "--shapes") o.shapes = absl::StrSplit(value(i), ',', absl::SkipEmpty());
    else if (a == "--types") o.types = absl::StrSplit(value(i), ',', absl::SkipEmpty());
    else if (a == "--batches") o.batches = Ints(value(i));
    else if (a == "--decode-tokens") o.decode_tokens = std::stoi(value(i));
    else if (a == "--prompt-tokens") o.prompt_tokens = std::stoi(value(i));
    else if (a == "--dir") o.dir = value(i);
    else if (a == "--keep") o.keep = true;
    else if (a == "--no-tiny") o.tiny = false;
    else if (a == "--adaptive") g_adaptive = true;
    else if (a == "--no-pack") g_pack = false;
    else if (a == "--json") o.json = value(i);
    else if (a == "--quick") {
      o.shapes = {"110m"};
      o.types = {"q8_0", "q4_0"};
      o.decode_tokens = 16;
      o.prompt_tokens = 64;
    } else {
      std::fprintf(stderr, "unknown argument %s (see the comment at the top of bench/model/model_bench.cc)\n", a.c_str());
      return 2;
    }
  }
  if (child) return RunChild(ca);
  return RunParent(o, "/proc/self/exe");
}
