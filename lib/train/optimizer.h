// AdamW with fp32 (param_dtype) moments and global-norm gradient clipping, over a Model's flat
// parameter buffer. Weight decay applies to matrices, embeddings and the conv only
// (ParamInfo::decay()), as in llm.c and OLMo-core.
#pragma once
#include <cstdint>

#include "model/model.h"

namespace sl {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 0.1;
  double grad_clip = 1.0;  // clip the global L2 gradient norm to this (<= 0: no clipping)
};

class AdamW {
 public:
  AdamW(Model& model, const AdamWOptions& opts);
  ~AdamW();
  AdamW(const AdamW&) = delete;
  AdamW& operator=(const AdamW&) = delete;

  // Global gradient L2 norm of the model's current gradients.
  double grad_norm() const;
  // One update with learning rate lr, the gradients scaled by min(1, clip / grad_norm); `t` is
  // the 1-based step count for bias correction. Refreshes the model's compute copy.
  void update(double lr, double grad_norm, int64_t t);

  Tensor m() const { return m_; }
  Tensor v() const { return v_; }

 private:
  Model& model_;
  AdamWOptions opts_;
  Tensor m_, v_;
};

}  // namespace sl
