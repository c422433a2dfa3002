// Streaming with the iterator style, and cancelling: prints tokens as they arrive and stops
// after N characters (the gateway then cancels the worker's request and frees its KV cache).
//   flotilla_sdk_example_stream [TARGET] [PROMPT] [MAX_CHARS]
#include <cstdio>
#include <cstdlib>
#include <string>

#include "flotilla/sdk/client.h"

int main(int argc, char** argv) {
  flotilla::sdk::ClientOptions options;
  options.target = argc > 1 ? argv[1] : "127.0.0.1:50051";
  if (const char* key = std::getenv("FLOTILLA_API_KEY")) options.api_key = key;
  auto client = flotilla::sdk::Client::Create(options);
  if (!client.ok()) return 1;

  flotilla::v1::GenerateRequest request;
  request.set_prompt(argc > 2 ? argv[2] : "Once upon a time");
  request.set_max_tokens(200);
  request.mutable_sampling()->set_temperature(0.8f);
  request.mutable_sampling()->set_seed(42);
  const size_t max_chars = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 400;

  flotilla::sdk::CallOptions call;
  call.timeout = absl::Seconds(20);
  std::unique_ptr<flotilla::sdk::GenerationStream> stream = (*client)->StartGenerate(request, call);
  flotilla::v1::GenerateResponse chunk;
  size_t printed = 0;
  while (stream->Next(&chunk)) {
    std::fputs(chunk.text().c_str(), stdout);
    std::fflush(stdout);
    printed += chunk.text().size();
    if (printed >= max_chars) stream->Cancel();  // Next() then returns false soon
  }
  absl::Status status = stream->Finish();
  std::printf("\n");
  if (absl::IsCancelled(status)) {
    std::fprintf(stderr, "[stopped after %zu characters]\n", printed);
    return 0;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "stream failed: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
