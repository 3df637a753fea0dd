#include "train/optimizer.h"

#include <cmath>

namespace sl {

AdamW::AdamW(Model& model, const AdamWOptions& opts) : model_(model), opts_(opts) {
  Backend& be = model_.backend();
  m_ = be.alloc(model_.num_params(), be.param_dtype());
  v_ = be.alloc(model_.num_params(), be.param_dtype());
}

AdamW::~AdamW() {
  model_.backend().free(m_);
  model_.backend().free(v_);
}

double AdamW::grad_norm() const {
  return std::sqrt(model_.backend().sum_squares(model_.grad_buffer(), model_.num_params()));
}

void AdamW::update(double lr, double grad_norm, int64_t t) {
  const double clip =
      opts_.grad_clip > 0 && grad_norm > opts_.grad_clip ? opts_.grad_clip / grad_norm : 1.0;
  Backend& be = model_.backend();
  for (const ParamInfo& p : model_.params()) {
    be.adamw(model_.param(p), model_.grad(p), m_.at(p.offset, p.numel), v_.at(p.offset, p.numel),
             p.numel, static_cast<float>(lr), static_cast<float>(opts_.beta1),
             static_cast<float>(opts_.beta2), static_cast<float>(opts_.eps),
             p.decay() ? static_cast<float>(opts_.weight_decay) : 0.f, static_cast<float>(clip), t);
  }
  model_.sync_compute_params();
}

}  // namespace sl
