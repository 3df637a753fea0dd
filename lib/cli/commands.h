// Subcommands of the single `scalinglab` executable; each lives in lib/cli/cmd_<name>.cc and
// registers itself on the root CLI11 app. A subcommand reports bad input by throwing sl::Error.
#pragma once
#include <CLI/CLI.hpp>

namespace sl::cli {
void register_train(CLI::App& app);
void register_fit(CLI::App& app);
void register_bench(CLI::App& app);
void register_export(CLI::App& app);
void register_doctor(CLI::App& app);
void register_sweep(CLI::App& app);
void register_data(CLI::App& app);
void register_report(CLI::App& app);
void register_study(CLI::App& app);
}  // namespace sl::cli
