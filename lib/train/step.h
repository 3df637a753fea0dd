// TrainStep: one optimizer step as the device sees it, shared by the trainer and `bench`; and
// EvalStep, the held-out forward.
//
// enqueue() stages a batch (host work and asynchronous copies, while the device still runs the
// previous step) and enqueues the step's ops: zero the gradients, forward, backward (gradients
// averaged over ranks during it when there is a Comm), gradient norm, AdamW. Nothing in it waits
// for the device; result() returns the loss and gradient norm of an enqueued step when the device
// has got that far. With graphs on, the ops are captured as one graph at the second step (the
// first runs eagerly so every workspace reaches its final size) and replayed from then on: one
// launch per step instead of a few hundred. Data parallelism runs eagerly (its collectives sit on
// a second stream between the ops).
#pragma once
#include <cstdint>
#include <memory>

#include "core/backend.h"
#include "core/comm.h"
#include "model/model.h"
#include "train/optimizer.h"

namespace sl {

class TrainStep {
 public:
  // graph: capture the ops once and replay them (ignored with a Comm, or when SL_CUDA_GRAPH=0).
  TrainStep(Model& model, AdamW& opt, Comm* comm, bool graph);
  // ids, targets: this rank's rows [B, T]; lr and the 1-based step count t for AdamW.
  uint64_t enqueue(const int32_t* ids, const int32_t* targets, double lr, int64_t t);
  // Mean loss (averaged over ranks with a Comm: a collective, every rank calls it) and gradient
  // norm of an enqueued step; waits for it.
  Model::StepResult result(uint64_t ticket);
  bool graphed() const { return graph_ != nullptr; }

 private:
  void ops();
  Model& model_;
  AdamW& opt_;
  Comm* comm_;
  bool use_graph_;
  int64_t eager_steps_ = 0;
  bool tried_ = false;  // capture() was called (it returns null where there are no graphs)
  std::unique_ptr<Backend::Graph> graph_;
};

// EvalStep: the forward alone - the loss over a held-out batch, no gradients - graphed like
// TrainStep (captured at the second batch, replayed after) and asynchronous the same way:
// enqueue() returns a ticket, loss() waits for it; up to Model::kResultSlots may be in flight.
class EvalStep {
 public:
  EvalStep(Model& model, bool graph);
  // ids, targets [B, T] (targets < 0 ignored; at least one valid).
  uint64_t enqueue(const int32_t* ids, const int32_t* targets);
  double loss(uint64_t ticket);  // mean over the batch's valid targets
  bool graphed() const { return graph_ != nullptr; }

 private:
  Model& model_;
  bool use_graph_;
  int64_t eager_ = 0;
  bool tried_ = false;
  std::unique_ptr<Backend::Graph> graph_;
};

}  // namespace sl
