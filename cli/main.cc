// `flotilla`: the operator CLI. Thin: each subcommand lives in its own file.
#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "common/logging.h"

int main(int argc, char** argv) {
  // Logs go to stderr so that stdout carries only what a command outputs.
  (void)flotilla::SetupLogging({.format = "text", .level = "info", .component = "flotilla"});
  CLI::App app{"flotilla: run, serve, operate and benchmark LLM inference"};
  app.require_subcommand(1);
  int exit_code = 0;
  flotilla::cli::RegisterRun(app, &exit_code);
  flotilla::cli::RegisterSynth(app, &exit_code);
  flotilla::cli::RegisterUp(app, &exit_code);
  flotilla::cli::RegisterStatus(app, &exit_code);
  flotilla::cli::RegisterScale(app, &exit_code);
  flotilla::cli::RegisterDrain(app, &exit_code);
  flotilla::cli::RegisterModels(app, &exit_code);
  flotilla::cli::RegisterGenerate(app, &exit_code);
  flotilla::cli::RegisterBench(app, &exit_code);
  flotilla::cli::RegisterAutoscale(app, &exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
