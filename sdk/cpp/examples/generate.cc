// One-shot generation: the whole completion at once.
//   flotilla_sdk_example_generate [TARGET] [PROMPT]      (TARGET defaults to 127.0.0.1:50051)
// Set FLOTILLA_API_KEY to send an API key.
#include <cstdio>
#include <cstdlib>

#include "flotilla/sdk/client.h"

int main(int argc, char** argv) {
  flotilla::sdk::ClientOptions options;
  options.target = argc > 1 ? argv[1] : "127.0.0.1:50051";
  if (const char* key = std::getenv("FLOTILLA_API_KEY")) options.api_key = key;
  options.timeout = absl::Seconds(30);  // all attempts included
  auto client = flotilla::sdk::Client::Create(options);
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", client.status().ToString().c_str());
    return 1;
  }

  flotilla::v1::GenerateRequest request;
  request.set_prompt(argc > 2 ? argv[2] : "Once upon a time");
  request.set_max_tokens(64);
  request.mutable_sampling()->set_temperature(0);  // greedy: the same text every time

  auto completion = (*client)->Generate(request);
  if (!completion.ok()) {
    std::fprintf(stderr, "generate failed: %s\n", completion.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", completion->text.c_str());
  std::fprintf(stderr, "[%s, %u prompt + %u completion tokens, ttft %.1f ms, %d attempt(s)]\n",
               flotilla::sdk::FinishReasonName(completion->finish_reason), completion->usage.prompt_tokens(),
               completion->usage.completion_tokens(), completion->time_to_first_token_s * 1e3,
               completion->attempts);
  return 0;
}
