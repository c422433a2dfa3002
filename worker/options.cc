#include "worker/options.h"

#include <CLI/CLI.hpp>

namespace flotilla::worker {

absl::StatusOr<WorkerOptions> ParseWorkerOptions(int argc, char** argv, int* exit_code) {
  WorkerOptions o;
  CLI::App app{"flotilla-worker: serves one model replica over gRPC with continuous batching"};
  app.set_config("--config", "", "TOML or INI file with any of these options");
  // A misspelt key must not be dropped silently: the worker would serve with other settings.
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.add_option("-m,--model", o.model, "Model file, or a name on the model search path")->required();
  app.add_option("--model-name", o.model_name, "Name clients use for the model (default: file name)");
  app.add_option("--tokenizer", o.tokenizer, "Tokenizer file (llama2.c checkpoints)");
  app.add_option("--backend", o.backend, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  app.add_option("--device", o.device, "CUDA device index")->capture_default_str();
  app.add_option("--tensor-parallel", o.tensor_parallel, "GPUs per replica (cuda)")->check(CLI::Range(1, 16))->capture_default_str();
  app.add_option("-t,--threads", o.threads, "CPU threads (0: one per core)")->check(CLI::Range(0, 256))->capture_default_str();
  app.add_option("--max-num-seqs", o.max_num_seqs, "Sequences per engine step")->check(CLI::Range(1, 4096))->capture_default_str();
  app.add_option("--max-tokens-per-step", o.max_tokens_per_step, "Token budget per step (prefill chunk + decodes)")
      ->check(CLI::Range(1, 65536))->capture_default_str();
  app.add_option("--max-waiting", o.max_waiting, "Queued requests beyond which new ones are refused")
      ->check(CLI::Range(0, 1 << 20))->capture_default_str();
  app.add_option("--kv-memory-mb", o.kv_memory_mb, "KV cache memory (CPU; committed at start, refused if the host or container lacks it)")->check(CLI::Range(1, 1 << 22))->capture_default_str();
  app.add_option("--num-kv-blocks", o.num_kv_blocks, "KV blocks (overrides --kv-memory-mb)")->check(CLI::Range(0, 1 << 24));
  app.add_option("--gpu-memory-fraction", o.gpu_memory_fraction, "Fraction of free GPU memory for the KV cache")
      ->check(CLI::Range(0.01, 0.99))->capture_default_str();
  app.add_option("--block-size", o.block_size, "Tokens per KV block")->check(CLI::Range(1, 1024))->capture_default_str();
  app.add_option("--kv-cache-type", o.kv_cache_type,
                 "KV cache element type: f16 (half the memory of f32), f32, or q8_0 (cpu backend only: 0.53x the "
                 "memory of f16, faster attention at long contexts, logits moved slightly)")
      ->check(CLI::IsMember({"f16", "f32", "q8_0"}))->capture_default_str();
  app.add_option("-c,--ctx-size", o.ctx_size, "Context length (0: the model file's)")->check(CLI::Range(0, 1 << 20));
  app.add_flag("!--no-prefix-cache", o.prefix_cache, "Disable the prefix cache");
  app.add_option("--host", o.host, "Address to listen on")->capture_default_str();
  app.add_option("--port", o.port, "gRPC port (0: any free port)")->check(CLI::Range(0, 65535))->capture_default_str();
  app.add_option("--metrics-port", o.metrics_port, "Prometheus /metrics port (0: any free port)")->check(CLI::Range(0, 65535));
  app.add_option("--worker-id", o.worker_id, "Identity in load reports (default: host:port)");
  app.add_option("--zone", o.zone, "Zone for locality routing");
  app.add_option("--region", o.region, "Region for locality routing");
  app.add_option("--chat-template", o.chat_template, "Chat template family override")
      ->check(CLI::IsMember({"", "llama-2", "llama-3", "chatml", "mistral", "plain"}));
  app.add_option("--ready-file", o.ready_file, "Written as JSON with the ports once serving");
  app.add_option("--log-format", o.log_format, "text or json")->check(CLI::IsMember({"text", "json"}))->capture_default_str();
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error")->capture_default_str();
  app.add_option("--drain-timeout-s", o.drain_timeout_s, "On SIGTERM, how long to let requests finish")->capture_default_str();
  app.add_option("--tls-cert", o.tls_cert, "PEM certificate for the gRPC port")->check(CLI::ExistingFile);
  app.add_option("--tls-key", o.tls_key, "PEM private key for the gRPC port")->check(CLI::ExistingFile);
  app.add_option("--tls-client-ca", o.tls_client_ca, "Require client certificates signed by this CA (mTLS)")
      ->check(CLI::ExistingFile);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    *exit_code = app.exit(e);
    return absl::InvalidArgumentError(e.what());
  }
  *exit_code = -1;
  if (o.tls_cert.empty() != o.tls_key.empty()) return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  if (!o.tls_client_ca.empty() && o.tls_cert.empty()) return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert");
  return o;
}

}  // namespace flotilla::worker
