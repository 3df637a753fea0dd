// Learning-rate schedules with linear warmup (docs/DESIGN.md "Schedules and token budgets").
#pragma once
#include <cstdint>
#include <string>

namespace sl {

struct Schedule {
  std::string kind = "cosine";  // "cosine" | "wsd" | "constant"
  double lr = 3e-3;             // peak
  int64_t total_steps = 1;
  int64_t warmup_steps = 0;     // lr rises linearly: lr * (step+1) / warmup_steps
  double min_lr_ratio = 0.1;    // cosine floor, as a fraction of lr
  double decay_fraction = 0.2;  // wsd: the last fraction of the steps decays linearly to 0

  // Learning rate for optimizer step `step` (0-based).
  double at(int64_t step) const;
  // wsd: the first step of the decay phase (total_steps for other kinds: they never branch).
  int64_t decay_start() const;
};

}  // namespace sl
