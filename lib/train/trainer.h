// The training loop: AdamW with global-norm clipping on a Model, periodic held-out evaluation,
// the HDF5 run log, atomic checkpoints, resume, and preemption signals.
//
// RUN/ (docs/DESIGN.md "Run directory"): config.toml (fully resolved), log.h5, ckpt/state.h5.
// Exit codes of run_training: 0 completed or preempted (SIGTERM/SIGUSR1/SIGINT: checkpoint written,
// status "preempted"), 3 diverged (NaN/inf loss or gradient: status "diverged", the last good
// checkpoint is kept). Bad input throws sl::Error before anything in RUN/ is touched.
#pragma once
#include <cstdint>
#include <string>

#include "train/config.h"

namespace sl {

struct TrainOptions {
  std::string out_dir;       // RUN
  std::string device = "cpu";
  bool resume = false;       // continue from RUN/ckpt if present (else start fresh)
  bool quiet = false;        // no per-eval progress lines on stdout
  // HF model directory (model.safetensors [+ config.json], Olmo3 or OlmoHybrid) whose weights
  // replace the seeded init; its tensors must match the config's model exactly. Ignored when
  // resuming from a checkpoint.
  std::string init_from;
};

// Runs (or resumes) one training run. Returns the process exit code (see above).
int run_training(const TrainConfig& config, const TrainOptions& opts);

// Installs the SIGTERM/SIGUSR1/SIGINT handlers that ask the loop to checkpoint and stop.
void install_stop_handlers();
bool stop_requested();

}  // namespace sl
