#include "train/optimizer.h"

#include <limits>
#include <vector>

namespace sl {

AdamW::AdamW(Model& model, const AdamWOptions& opts) : model_(model), opts_(opts) {
  Backend& be = model_.backend();
  m_ = be.alloc(model_.buffer_size(), be.param_dtype());
  v_ = be.alloc(model_.buffer_size(), be.param_dtype());
  if (model_.buffer_size() > std::numeric_limits<int32_t>::max())
    fail("adamw: " + std::to_string(model_.buffer_size()) +
         " parameters exceed the int32 offsets of the update's item table");
  std::vector<int32_t> items;
  for (const ParamInfo& p : model_.params()) {
    items.push_back(static_cast<int32_t>(p.offset));
    items.push_back(static_cast<int32_t>(p.numel));
    items.push_back(p.decay() ? 1 : 0);
  }
  n_items_ = static_cast<int64_t>(model_.params().size());
  items_ = be.alloc(static_cast<int64_t>(items.size()), DType::i32);
  be.copy_to_device(items_, items.data());
  be.synchronize();  // `items` goes out of scope
}

AdamW::~AdamW() {
  Backend& be = model_.backend();
  be.free(m_);
  be.free(v_);
  be.free(items_);
}

void AdamW::step() {
  Backend& be = model_.backend();
  const Tensor st = model_.step_scalars();
  be.sum_squares(st.at(kStepGradSq, 1), model_.grad_buffer(), model_.buffer_size());
  be.adamw(model_.param_buffer(), model_.grad_buffer(), m_, v_, model_.compute_param_buffer(),
           items_, n_items_, st,
           {.b1 = static_cast<float>(opts_.beta1),
            .b2 = static_cast<float>(opts_.beta2),
            .eps = static_cast<float>(opts_.eps),
            .wd = static_cast<float>(opts_.weight_decay),
            .max_norm = static_cast<float>(opts_.grad_clip)});
}

}  // namespace sl
