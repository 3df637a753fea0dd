// `scalinglab train --config RUN.toml [--set key=value ...] --out RUN [--device cpu|cuda[:i]]
//                   [--resume] [--threads N] [--init-from HF_DIR] [--nproc N]`
// --nproc N: data parallelism over N GPUs of this node (train/dist.h); under srun every task
// is a rank by itself and --nproc is not used.
#include <omp.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "train/config.h"
#include "train/dist.h"
#include "train/trainer.h"

namespace sl::cli {

void register_train(CLI::App& app) {
  struct Args {
    std::string config, out, device = "cpu", init_from;
    std::vector<std::string> sets;
    bool resume = false, quiet = false, force_config = false;
    int threads = 0, nproc = 1;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("train", "Train one model (a run directory with log.h5)");
  cmd->add_option("--config", args->config, "Run config (TOML), see experiments/");
  cmd->add_option("--set", args->sets, "Override a config key: section.key=value (repeatable)");
  cmd->add_option("--out", args->out, "Run directory (created)")->required();
  cmd->add_option("--device", args->device, "cpu | cuda[:i]");
  cmd->add_flag("--resume", args->resume, "Continue from RUN/ckpt (start fresh if none)");
  cmd->add_flag("--force-config", args->force_config,
                "With --resume: accept config changes that alter the run's trajectory (lr, seed, "
                "batch, data, ...; not the model), recorded in log.h5 config_changes");
  cmd->add_flag("--quiet", args->quiet, "No progress lines");
  cmd->add_option("--threads", args->threads, "CPU threads (default: all cores)");
  cmd->add_option("--init-from", args->init_from,
                  "Start from the weights of an HF directory (model.safetensors, config.json)");
  CLI::Option* nproc_opt =
      cmd->add_option("--nproc", args->nproc,
                      "Data-parallel ranks on this node, one per GPU (NCCL; needs --device cuda)");
  cmd->callback([args, nproc_opt]() {
    install_stop_handlers();  // as early as possible: a scheduler may signal a task at once
    // Checked before anything else: OpenMP cannot start 100000 threads (it crashed, after the run
    // directory existed), and more threads than cores only slow a run down.
    if (args->threads < 0)
      fail("train --threads " + std::to_string(args->threads) + ": must be >= 1 (or 0: all cores)");
    if (const int cores = omp_get_num_procs(); args->threads > cores) {
      std::fprintf(stderr,
                   "scalinglab: train: --threads %d is more than the %d cores here; using %d\n",
                   args->threads, cores, cores);
      args->threads = cores;
    }
    if (args->threads > 0) omp_set_num_threads(args->threads);
    TrainConfig cfg = load_config(args->config, args->sets);
    // --nproc 1 runs one rank through NCCL too (a check that the collectives change nothing).
    if (nproc_opt->count() > 0 && std::getenv("SL_WORLD") == nullptr) {
      if (args->device.rfind("cuda", 0) != 0 || args->device.find(':') != std::string::npos)
        fail("train --nproc " + std::to_string(args->nproc) +
             ": needs --device cuda (rank r uses cuda:r), not " + args->device);
      const int rc = launch_ranks(args->nproc);
      if (rc != 0) std::exit(rc);
      return;
    }
    TrainOptions opts{args->out,   args->device,    args->resume,
                      args->quiet, args->init_from, args->force_config};
    int rc = run_training(cfg, opts);
    if (rc != 0) std::exit(rc);
  });
}

}  // namespace sl::cli
