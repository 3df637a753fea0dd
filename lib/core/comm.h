// Comm: the collectives one data-parallel training run needs between its ranks (one process per
// GPU, every rank holding the whole model). Each rank computes the gradient of its slice of the
// global batch; the gradients are averaged over ranks while the backward pass still runs (one
// reduction per block, started as soon as the block's gradients are final), then every rank takes
// the same AdamW step on the same averaged gradient, so the replicas stay equal bit for bit.
#pragma once
#include "core/tensor.h"

namespace sl {

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  // Starts replacing buf (f32, backend memory) by its mean over the ranks, in place, after the
  // work already queued on the backend; later backend work runs concurrently with it. Every rank
  // must start the same reductions in the same order.
  virtual void allreduce_mean_async(Tensor buf) = 0;
  // Orders all later backend work after every reduction started so far.
  virtual void wait() = 0;
  // x[i] = sum over ranks of x[i] (host values; blocking).
  virtual void allreduce_sum(double* x, int n) = 0;
};

}  // namespace sl
