// `scalinglab train --config RUN.toml [--set key=value ...] --out RUN [--device cpu|cuda[:i]]
//                   [--resume] [--threads N] [--init-from HF_DIR]`
#include <omp.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "train/config.h"
#include "train/trainer.h"

namespace sl::cli {

void register_train(CLI::App& app) {
  struct Args {
    std::string config, out, device = "cpu", init_from;
    std::vector<std::string> sets;
    bool resume = false, quiet = false;
    int threads = 0;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("train", "Train one model (a run directory with log.h5)");
  cmd->add_option("--config", args->config, "Run config (TOML), see experiments/");
  cmd->add_option("--set", args->sets, "Override a config key: section.key=value (repeatable)");
  cmd->add_option("--out", args->out, "Run directory (created)")->required();
  cmd->add_option("--device", args->device, "cpu | cuda[:i]");
  cmd->add_flag("--resume", args->resume, "Continue from RUN/ckpt (start fresh if none)");
  cmd->add_flag("--quiet", args->quiet, "No progress lines");
  cmd->add_option("--threads", args->threads, "CPU threads (default: all cores)");
  cmd->add_option("--init-from", args->init_from,
                  "Start from the weights of an HF directory (model.safetensors, config.json)");
  cmd->callback([args]() {
    install_stop_handlers();  // as early as possible: a scheduler may signal a task at once
    if (args->threads > 0) omp_set_num_threads(args->threads);
    TrainConfig cfg = load_config(args->config, args->sets);
    TrainOptions opts{args->out, args->device, args->resume, args->quiet, args->init_from};
    int rc = run_training(cfg, opts);
    if (rc != 0) std::exit(rc);
  });
}

}  // namespace sl::cli
