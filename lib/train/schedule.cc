#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace sl {

double Schedule::at(int64_t step) const {
  if (step < warmup_steps) return lr * static_cast<double>(step + 1) / warmup_steps;
  if (kind == "constant") return lr;
  if (kind == "wsd") {
    // Stable at lr, then linear to 0 over the last decay_fraction of the run: the value at step
    // s of the decay phase is lr * (total - s) / decay_steps, reaching lr/decay_steps at the end.
    const int64_t decay = total_steps - decay_start();
    const int64_t start = decay_start();
    if (step < start) return lr;
    return lr * static_cast<double>(total_steps - step) / decay;
  }
  // cosine from lr (end of warmup) to min_lr_ratio * lr (last step).
  const int64_t span = std::max<int64_t>(1, total_steps - warmup_steps - 1);
  const double p = std::min(1.0, static_cast<double>(step - warmup_steps) / span);
  const double lo = min_lr_ratio * lr;
  return lo + (lr - lo) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
}

int64_t Schedule::decay_start() const {
  if (kind != "wsd") return total_steps;
  return total_steps - std::max<int64_t>(1, std::llround(decay_fraction * total_steps));
}

}  // namespace sl
