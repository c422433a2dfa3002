// Lists the models a fleet serves and how many healthy workers each has.
//   flotilla_sdk_example_list_models [TARGET]
#include <cstdio>
#include <cstdlib>

#include "flotilla/sdk/client.h"

int main(int argc, char** argv) {
  flotilla::sdk::ClientOptions options;
  options.target = argc > 1 ? argv[1] : "127.0.0.1:50051";
  if (const char* key = std::getenv("FLOTILLA_API_KEY")) options.api_key = key;
  options.timeout = absl::Seconds(5);
  auto client = flotilla::sdk::Client::Create(options);
  if (!client.ok()) return 1;
  auto models = (*client)->ListModels();
  if (!models.ok()) {
    std::fprintf(stderr, "%s\n", models.status().ToString().c_str());
    return 1;
  }
  for (const auto& m : *models) {
    std::printf("%-32s ctx %-6u %-6s %u healthy\n", m.id().c_str(), m.context_length(), m.quantization().c_str(),
                m.healthy_workers());
  }
  return 0;
}
