#include "train/step.h"

#include <cstdlib>
#include <string>
#include <utility>

namespace sl {

namespace {
bool graphs_allowed() {
  const char* env = std::getenv("SL_CUDA_GRAPH");
  return !(env && std::string(env) == "0");
}
}  // namespace

Replayed::Replayed(Backend& backend, bool enabled, std::function<void()> ops)
    : backend_(backend), enabled_(enabled && graphs_allowed()), ops_(std::move(ops)) {}

void Replayed::run() {
  if (!tried_ && enabled_ && eager_runs_ > 0) {
    tried_ = true;
    graph_ = backend_.capture(ops_);
  }
  if (graph_) {
    graph_->launch();
  } else {
    ops_();
    ++eager_runs_;
  }
}

TrainStep::TrainStep(Model& model, AdamW& opt, Comm* comm, bool graph)
    : model_(model), opt_(opt), comm_(comm), ops_(model.backend(), graph && !comm, [this] {
        model_.zero_grad();
        model_.run_forward();
        model_.backward();
        if (comm_) comm_->wait();
        opt_.step();
      }) {}

uint64_t TrainStep::enqueue(const int32_t* ids, const int32_t* targets, double lr, int64_t t) {
  model_.stage_batch(ids, targets, 1.f, lr, t);
  ops_.run();
  return model_.request_result();
}

Model::StepResult TrainStep::result(uint64_t ticket) {
  Model::StepResult r = model_.step_result(ticket);
  if (comm_) {
    comm_->allreduce_sum(&r.loss, 1);
    r.loss /= comm_->world();
  }
  return r;
}

EvalStep::EvalStep(Model& model, bool graph)
    : model_(model), forward_(model.backend(), graph, [this] { model_.run_forward(); }) {}

uint64_t EvalStep::enqueue(const int32_t* ids, const int32_t* targets) {
  // dloss 0: the forward computes the loss sum and no logits gradient (what is captured).
  model_.stage_batch(ids, targets, 0.f);
  forward_.run();
  return model_.request_result();
}

double EvalStep::loss(uint64_t ticket) { return model_.step_result(ticket).loss; }

}  // namespace sl
