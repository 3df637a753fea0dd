// The training loop: AdamW with global-norm clipping on a Model, periodic held-out evaluation,
// the HDF5 run log, atomic checkpoints, resume, and preemption signals.
//
// RUN/ (docs/DESIGN.md "Run directory"): config.toml (fully resolved), log.h5, ckpt/state.h5, and
// for WSD ckpt/trunk/state.h5 (the last stable state, see the resume rules below).
// Exit codes of run_training: 0 completed or preempted (SIGTERM/SIGUSR1/SIGINT: checkpoint written,
// status "preempted"), 3 diverged (NaN/inf loss or gradient: status "diverged", the last good
// checkpoint is kept). Bad input throws sl::Error before anything in RUN/ is touched.
//
// One writer per run: the trainer holds RUN/lock (flock, the lock `sweep launch` takes for its
// child, which inherits it) for the whole run; a second trainer is refused in one line naming the
// holder's pid. An error once the run exists (a full disk, a failed write) throws after setting
// status "failed" with the error as status_reason.
//
// Log and checkpoint: the log rows up to step N are flushed (fsynced) before the checkpoint of
// step N is written, and a resume keeps the rows <= the checkpoint's step, so a kill -9 at any
// instant leaves no gap and no repeated step. (SL_TEST_CRASH=before_checkpoint:N or
// after_checkpoint:N SIGKILLs the process there: a hook for tests/cli/test_reliability.cc.)
//
// Resume rules: the checkpoint's config (checksummed with it) is compared key by key with the
// one given. Only train.tokens, train.budgets, train.eval_every, train.checkpoint_every and
// train.inject_nan_step may differ; any other change (model, seq_len, batch_size, lr and the
// rest of the optimizer and schedule, seed, data, eval_tokens) is refused naming the key, and so
// is data whose token count changed. tokens/budgets may change only if tokens covers the
// checkpoint, the budgets already reported stay, and every step already taken keeps its
// learning rate bit for bit (never for cosine, whose decay spans the run; always for constant).
// A WSD run whose budgets changed where that does not hold of its latest checkpoint (a budget
// added above the last one of a finished run: its decay steps become stable steps; or one added
// whose branch point the trunk has passed) goes back along its stable trunk instead: to
// RUN/ckpt/trunk/state.h5 (the state where the main line's decay began, written when the run
// reaches it) if the new budgets still to branch start at or after it, else to step 0 from the
// seed (refused in one line for a run initialised --init-from). The log keeps the rows up to
// that step and every reported budget's row, the later steps are trained and logged again, each
// once. config.toml and log.h5 then both hold the new config, and log.h5's config_changes
// records the change. `--force-config` (an explicit choice) lifts the key rule and the
// learning-rate rule, except for model.* keys.
#pragma once
#include <cstdint>
#include <string>

#include "train/config.h"

namespace sl {

struct TrainOptions {
  std::string out_dir;  // RUN
  std::string device = "cpu";
  bool resume = false;  // continue from RUN/ckpt if present (else start fresh)
  bool quiet = false;   // no per-eval progress lines on stdout
  // HF model directory (model.safetensors [+ config.json], Olmo3 or OlmoHybrid) whose weights
  // replace the seeded init; its tensors must match the config's model exactly. Ignored when
  // resuming from a checkpoint.
  std::string init_from;
  // --resume --force-config: accept a config whose other keys differ too (the run's trajectory
  // changes from the checkpoint on; the model itself must still match its tensors, tokens must
  // cover the checkpoint and reported budgets stay); log.h5's config_changes records it, marked
  // forced.
  bool force_config = false;
};

// Runs (or resumes) one training run. Returns the process exit code (see above).
int run_training(const TrainConfig& config, const TrainOptions& opts);

// Installs the SIGTERM/SIGUSR1/SIGINT handlers that ask the loop to checkpoint and stop.
void install_stop_handlers();
bool stop_requested();

}  // namespace sl
