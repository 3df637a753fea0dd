// The run configuration (TOML), docs/DESIGN.md "Run config". Every key is declared here with its
// meaning; the loader rejects unknown keys and wrong types with one line naming the file and key.
// Counts are bounded so nothing derived from them overflows int64: tokens, budgets, warmup_tokens
// and eval_tokens at most 10^15, seq_len and batch_size at most 2^20. Which keys a --resume may
// change: train/trainer.h.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/spec.h"

namespace sl {

struct TrainConfig {
  // [model]: arch ("dense" | "hybrid") or pattern ("GGGA", repeated to n_layers when shorter),
  // size = ladder preset (docs/MODEL.md "Ladder"); d_model / n_layers / n_heads override it;
  // vocab_size (256 = byte level); d_mlp, gdn_key_dim, gdn_value_dim (0 = docs/MODEL.md defaults).
  ModelSpec model;
  std::string size;  // the preset name given, "" if the shape was explicit

  // [train]
  int64_t seq_len = 256;       // tokens per sequence
  int64_t batch_size = 16;     // sequences per optimizer step
  int64_t tokens = 4'000'000;  // training tokens; steps = ceil(tokens / (batch_size * seq_len))
  // WSD budget branches (schedule = "wsd" only): token budgets D_1 < ... < D_n. One run trains the
  // stable branch (constant lr after warmup) and, at the step where a standalone WSD run to D_i
  // would start its decay, branches a cooldown (lr linearly to 0 over decay_fraction of D_i),
  // evaluates, appends a /budgets row and returns to the saved stable-branch state. The run ends
  // with the cooldown of D_n, so `tokens` is set to D_n. Every D_i must exceed warmup_tokens and
  // the D_i must fall on distinct optimizer steps. Empty: one budget, `tokens`.
  std::vector<int64_t> budgets;
  double lr = 3e-3;                 // peak learning rate
  std::string schedule = "cosine";  // "cosine" | "wsd" | "constant"
  int64_t warmup_tokens = 200'000;  // linear warmup from 0 to lr
  double min_lr_ratio = 0.1;        // cosine: final lr = min_lr_ratio * lr
  double decay_fraction = 0.2;      // wsd: linear decay to 0 over the last fraction of the tokens
  double weight_decay = 0.1;        // AdamW, decoupled; matrices, embeddings and conv only
  double beta1 = 0.9, beta2 = 0.95, adam_eps = 1e-8;
  double grad_clip = 1.0;          // global L2 norm clip (<= 0: off)
  uint64_t seed = 0;               // init and data order
  int64_t eval_every = 100;        // steps between held-out evaluations (and at the end)
  int64_t eval_tokens = 65'536;    // held-out tokens per evaluation (first windows of data.val)
  int64_t checkpoint_every = 500;  // steps (and always on SIGTERM/SIGUSR1 and at the end)
  int64_t inject_nan_step = -1;    // testing aid: poison the weights before this step (-1: off)

  // [data]: a text file/dir (byte level) or llm.c .bin shard(s) (glob allowed). Relative paths in
  // a config file are relative to that file; in --set overrides, to the working directory.
  std::string train_data, val_data;

  int64_t steps() const { return (tokens + batch_size * seq_len - 1) / (batch_size * seq_len); }
  int64_t tokens_per_step() const { return batch_size * seq_len; }
  // Optimizer steps to reach `t` tokens (the last step may overshoot t).
  int64_t steps_for(int64_t t) const { return (t + tokens_per_step() - 1) / tokens_per_step(); }
};

// Loads `path` (if non-empty) and applies `--set section.key=value` overrides (the value is parsed
// as a TOML value, else taken as a string). Throws sl::Error naming the file and key.
TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides);
TrainConfig parse_config(const std::string& toml_text, const std::string& origin,
                         const std::string& base_dir, const std::vector<std::string>& overrides);
// The fully resolved config as TOML (what RUN/config.toml holds); parse_config(to_toml(c)) == c.
std::string to_toml(const TrainConfig& c);
// What identifies a run: the resolved TOML, except that with schedule "wsd" train.tokens and
// train.budgets are left out (written as tokens = 0, no budgets), so a WSD run that gains budgets
// stays the same run.
std::string identity_toml(const TrainConfig& c);
// Stable run id: 12 hex digits of a 64-bit FNV-1a hash of identity_toml(c). (Before WSD budgets
// were left out, WSD ids hashed the whole TOML; sweep directories made then keep their recorded
// ids: sweep.h prepare_dir matches runs by identity_toml, not by id.)
std::string run_id_of(const TrainConfig& c);

}  // namespace sl
