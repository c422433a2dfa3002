// flotilla-worker's settings: command-line flags, optionally from a TOML/INI config file
// (--config FILE; flags given on the command line win).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace flotilla::worker {

struct WorkerOptions {
  std::string model;       // path or name on the model search path
  std::string model_name;  // served name; default: the file name without extension
  std::string tokenizer;   // llama2.c checkpoints only
  std::string backend = "cpu";
  int device = 0;          // cuda
  int tensor_parallel = 1; // cuda
  int threads = 0;
  int max_num_seqs = 64;
  int max_tokens_per_step = 512;
  int max_waiting = 1024;
  int kv_memory_mb = 512;
  int num_kv_blocks = 0;   // overrides kv_memory_mb when set
  double gpu_memory_fraction = 0.9;
  int block_size = 16;
  std::string kv_cache_type = "f16";  // f16 or f32
  int ctx_size = 0;
  bool prefix_cache = true;
  std::string host = "127.0.0.1";
  int port = 0;
  int metrics_port = 0;
  std::string worker_id;
  std::string zone;
  std::string region;
  std::string chat_template;  // family override: llama-2, llama-3, chatml, mistral, plain
  std::string ready_file;
  std::string log_format = "text";
  std::string log_level = "info";
  int drain_timeout_s = 60;
  // TLS on the gRPC port; with tls_client_ca, clients (gateways) must present a certificate
  // signed by it (mTLS).
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
};

// Parses argv. Returns the options, or an error whose message is the usage or the problem.
// `exit_code` is set when parsing ended the program (e.g. --help: 0).
absl::StatusOr<WorkerOptions> ParseWorkerOptions(int argc, char** argv, int* exit_code);

// Loads the model, builds the engine and serves until SIGTERM/SIGINT (then drains). Returns
// the process exit code.
int RunWorker(const WorkerOptions& options);

}  // namespace flotilla::worker
