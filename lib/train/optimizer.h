// AdamW with fp32 (param_dtype) moments and global-norm gradient clipping, over a Model's flat
// parameter buffer. Weight decay applies to matrices, embeddings and the conv only
// (ParamInfo::decay()), as in llm.c and OLMo-core.
//
// The whole update is two ops on the device, with no host round trip: the gradient sum of
// squares into the model's step tensor, then one multi-tensor AdamW launch that reads it (clip
// factor, non-finite skip), the learning rate and the step count from that tensor and writes the
// compute copy of the weights in the same pass.
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

  // Enqueues one update of the model's current gradients with the lr and 1-based step t staged
  // with the batch (Model::stage_batch): the gradients scaled by min(1, clip / grad norm), and
  // nothing changed when the loss or the gradient norm is not finite (the caller sees that in
  // the step's result and stops). The model's compute copy is refreshed in the same pass.
  void step();

  Tensor m() const { return m_; }
  Tensor v() const { return v_; }

 private:
  Model& model_;
  AdamWOptions opts_;
  Tensor m_, v_;
  Tensor items_;  // i32 [n_items, 3]: (offset, numel, decay) per parameter tensor
  int64_t n_items_ = 0;
};

}  // namespace sl
