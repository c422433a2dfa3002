// Subcommands of the `flotilla` CLI. Each Register* adds one subcommand to the app; the
// callback it installs runs the command and stores its exit code in *exit_code.
#pragma once

#include <CLI/CLI.hpp>

namespace flotilla::cli {

void RegisterRun(CLI::App& app, int* exit_code);
void RegisterSynth(CLI::App& app, int* exit_code);
// Fleet operations (docs/operations.md).
void RegisterUp(CLI::App& app, int* exit_code);
void RegisterStatus(CLI::App& app, int* exit_code);
void RegisterScale(CLI::App& app, int* exit_code);
void RegisterDrain(CLI::App& app, int* exit_code);
void RegisterModels(CLI::App& app, int* exit_code);
void RegisterGenerate(CLI::App& app, int* exit_code);
void RegisterBench(CLI::App& app, int* exit_code);
void RegisterAutoscale(CLI::App& app, int* exit_code);

}  // namespace flotilla::cli
