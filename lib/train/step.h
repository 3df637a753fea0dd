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
#include <functional>
#include <memory>

#include "core/backend.h"
#include "core/comm.h"
#include "model/model.h"
#include "train/optimizer.h"

namespace sl {

// A sequence of ops run eagerly once, then captured as a graph and replayed (the first run sizes
// every workspace); eager throughout when graphs are off (`enabled` false or SL_CUDA_GRAPH=0) or
// the backend has none (capture returns null).
class Replayed {
 public:
  Replayed(Backend& backend, bool enabled, std::function<void()> ops);
  void run();
  bool graphed() const { return graph_ != nullptr; }

 private:
  Backend& backend_;
  bool enabled_;
  std::function<void()> ops_;
  int64_t eager_runs_ = 0;
  bool tried_ = false;  // capture() was called
  std::unique_ptr<Backend::Graph> graph_;
};

class TrainStep {
 public:
  // graph: capture the ops once and replay them (ignored with a Comm, or when SL_CUDA_GRAPH=0).
  TrainStep(Model& model, AdamW& opt, Comm* comm, bool graph);
  TrainStep(const TrainStep&) = delete;  // its replayed ops point at this object
  TrainStep& operator=(const TrainStep&) = delete;
  // ids, targets: this rank's rows [B, T]; lr and the 1-based step count t for AdamW.
  uint64_t enqueue(const int32_t* ids, const int32_t* targets, double lr, int64_t t);
  // Mean loss (averaged over ranks with a Comm: a collective, every rank calls it) and gradient
  // norm of an enqueued step; waits for it.
  Model::StepResult result(uint64_t ticket);
  bool graphed() const { return ops_.graphed(); }

 private:
  Model& model_;
  AdamW& opt_;
  Comm* comm_;
  Replayed ops_;  // zero, forward, backward, AdamW
};

// EvalStep: the forward alone - the loss over a held-out batch, no gradients - graphed like
// TrainStep (captured at the second batch, replayed after) and asynchronous the same way:
// enqueue() returns a ticket, loss() waits for it; up to Model::kResultSlots may be in flight.
class EvalStep {
 public:
  EvalStep(Model& model, bool graph);
  EvalStep(const EvalStep&) = delete;  // likewise
  EvalStep& operator=(const EvalStep&) = delete;
  // ids, targets [B, T] (targets < 0 ignored; at least one valid).
  uint64_t enqueue(const int32_t* ids, const int32_t* targets);
  double loss(uint64_t ticket);  // mean over the batch's valid targets
  bool graphed() const { return forward_.graphed(); }

 private:
  Model& model_;
  Replayed forward_;
};

}  // namespace sl
