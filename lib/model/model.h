// Model: forward and backward of the docs/MODEL.md family (any pattern of block kinds), written
// once against the Backend interface: the embedding, one Block per layer (model/blocks/block.h,
// docs/DESIGN.md "Model blocks"), the final norm and LM head. Parameters and their gradients live
// in one flat buffer each, with views from the parameter table (spec.h) that each block resolves
// once into named fields; activations in buffers sized once for (B, T) at construction, so a
// training step allocates nothing.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "model/spec.h"

namespace sl {

class Block;
class BlockEnv;

// The device memory a Model of `spec` for B x T tokens allocates through Backend::alloc, in bytes,
// computed from the spec alone (no backend, nothing allocated): what the constructor below
// allocates, buffer for buffer, with activations of dtype `act` and master parameters of `param`
// (CUDA: bf16 and f32; the CPU: f32 and f32). The sweep's GPU packing adds the optimizer and the
// backend's own memory to it (train/memory.h).
struct ModelMemory {
  int64_t params = 0;       // master parameters, their gradients and the compute-dtype copy
  int64_t activations = 0;  // everything else: saved activations, residual stream, logits,
                            // gradient scratch, the device batch and step scalars
  int64_t total() const { return params + activations; }
};
ModelMemory model_memory(const ModelSpec& spec, int64_t B, int64_t T, DType act, DType param);

// Rows of the LM head's logits that exist at a time (the logits buffer is [rows, V]): all B*T
// rows while they take at most kLogitsChunkElems elements (every byte-vocabulary ladder size),
// else B*T split into the fewest equal chunks within that bound, rounded up to 64 rows (at most
// 63 rows over it; at least 64 rows, at most B*T). S4, vocab 50304: 4 chunks of 4096 of 16,384
// rows, 412 MB in bf16 instead of 1.65 GB. Measured on the H200 (bench --logits-rows, dense S4,
// docs/PERFORMANCE.md): 1280 rows 478k tokens/s at 8.45 GiB, 4096 496k at 8.72, 8192 497k at 9.10,
// unchunked 500k at 9.87.
constexpr int64_t kLogitsChunkElems = int64_t{256} << 20;
int64_t logits_chunk_rows(int64_t BT, int64_t V);

class Model {
 public:
  // B sequences of T tokens per forward/backward call. chunk_rows: rows of the LM head's logits
  // at a time (0: logits_chunk_rows(B*T, V); tests take small ones to cover several chunks).
  Model(const ModelSpec& spec, Backend& backend, int64_t B, int64_t T, int64_t chunk_rows = 0);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelSpec& spec() const { return spec_; }
  const std::vector<ParamInfo>& params() const { return table_; }
  // The parameter count, and the elements of the flat buffers below (alignment gaps included).
  int64_t num_params() const { return n_params_; }
  int64_t buffer_size() const { return buffer_n_; }
  int64_t batch() const { return B_; }
  int64_t seq_len() const { return T_; }
  Backend& backend() const { return be_; }

  // Flat buffers (backend memory, param_dtype): master parameters and their gradients.
  Tensor param_buffer() const { return params_; }
  Tensor grad_buffer() const { return grads_; }
  Tensor param(const ParamInfo& p) const { return params_.at(p.offset, p.numel); }
  Tensor grad(const ParamInfo& p) const { return grads_.at(p.offset, p.numel); }

  // docs/MODEL.md "Initialisation" from a seed (the same on every backend: drawn on the host).
  void init(uint64_t seed);
  // Host copies of the master parameters in table order, buffer_size() floats, the gaps zero
  // (checkpoints, export, tests).
  std::vector<float> get_params() const;
  void get_params(std::vector<float>& host) const;  // into `host` (resized; its pages reused)
  void set_params(const std::vector<float>& host);
  // After the optimizer changed the master parameters: refresh the compute copy (a no-op when the
  // compute and master dtypes agree, as on the CPU).
  void sync_compute_params();

  // ids, targets: host int32 [B, T]. Returns the mean cross-entropy (nats/token) over targets >= 0.
  // dloss != 0 also prepares the backward pass: the loss gradient is scaled by dloss (e.g.
  // 1/n_microbatches for gradient accumulation), so backward() adds dloss * d(mean loss)/dparam.
  // = stage_batch + run_forward + (with targets) waiting for the loss.
  double forward(const int32_t* ids, const int32_t* targets, float dloss = 0.f);

  // ---- the asynchronous step (what forward() is made of; a training step uses these so the
  // host never waits for the device inside a step, and the step can be captured as a graph) ---
  // Checks the batch on the host (ids in the vocabulary, targets < V, at least one target >= 0
  // when targets are given), lays it out (embedding_index) in page-locked memory and enqueues its
  // copy to the device, with the per-step scalars the device reads: the loss gradient scale
  // dloss / n_valid and the optimizer's lr and 1-based step t (AdamW reads them from
  // step_scalars(); 0 when no update follows). Returns at once; the staging memory is reused two
  // batches later, after the device has consumed it.
  void stage_batch(const int32_t* ids, const int32_t* targets, float dloss = 0.f, double lr = 0,
                   int64_t t = 0);
  // Enqueues the forward of the staged batch. The LM head runs in chunks of chunk_rows rows, so
  // no [B*T, V] logits buffer exists: with targets, for each chunk the logits, the loss sum
  // into step_scalars()[kStepLossSum] (written) and, when dloss != 0, the loss gradient in place
  // of the chunk's logits and at once the head's backward for it (d xf rows written, the head's
  // weight gradient accumulated). So the gradient buffer must be zeroed before the forward, and
  // backward() continues from the final norm. Without targets it stops at the final norm
  // (logits_host() computes the logits from it).
  void run_forward();
  // The f64 step tensor (core/backend.h StepSlot, then the loss gradient scale).
  Tensor step_scalars() const { return step_; }
  // Enqueues a copy of this step's loss sum and gradient sum of squares to the host; returns a
  // ticket for step_result(). At most kResultSlots tickets may be outstanding.
  struct StepResult {
    double loss = 0;       // mean cross-entropy of the staged batch (nats/token)
    double grad_norm = 0;  // sqrt of the gradient sum of squares (if the optimizer computed it)
  };
  static constexpr int kResultSlots = 4;
  uint64_t request_result();
  StepResult step_result(uint64_t ticket);  // waits for the copy
  // Accumulates parameter gradients (+=) for the last forward(); call zero_grad() to start over.
  void backward();
  void zero_grad();
  // Called during backward() with each range of the gradient buffer as soon as the range is final
  // (the tail, i.e. final norm and LM head; then each block from the last to the first; then the
  // embedding), so data parallelism can average it over ranks while the rest of the backward runs.
  void set_grads_ready(std::function<void(Tensor grads)> fn) { grads_ready_ = std::move(fn); }
  // Logits of the last forward [B*T, V] as floats on the host, recomputed chunk by chunk from the
  // final norm's output (which stays until the next forward). For parity checks and export.
  std::vector<float> logits_host();
  // Compute-dtype copy of the master parameters, or a null tensor when it is the master itself:
  // the optimizer writes it in its update pass.
  Tensor compute_param_buffer() const {
    return params_c_.data != params_.data ? params_c_ : Tensor{};
  }

 private:
  Tensor act(int64_t n);   // activation buffer (act_dtype), allocated at construction only
  Tensor stat(int64_t n);  // fp32 (f64 on the f64 backend) statistics buffer, likewise

  ModelSpec spec_;
  Backend& be_;
  int64_t B_, T_;
  int64_t chunk_rows_;  // LM head rows at a time; logits_ is [chunk_rows_, V]
  std::vector<ParamInfo> table_;
  std::vector<std::vector<int>> layer_params_;  // per layer: indices into table_
  int64_t n_params_ = 0, buffer_n_ = 0;
  Tensor params_, grads_, params_c_;  // params_c_ == params_ unless dtypes differ
  std::vector<Tensor> arena_;
  std::unique_ptr<BlockEnv> env_;               // what the blocks share (model/blocks/block.h)
  std::vector<std::unique_ptr<Block>> blocks_;  // one per layer
  // Residual stream: res_[0] = embedding, res_[l+1] = layer l output (some share buffers:
  // see the constructor).
  std::vector<Tensor> res_;
  Tensor xf_, xf_rstd_, logits_, losses_;
  Tensor dres_;  // backward residual gradient (fp32), updated in place by every block
  Tensor dxf_;   // fp32 gradient of the final norm's input
  // Device batch: index_ = embedding_index layout of the ids, then the targets (i32 [3 BT]);
  // step_ = f64 [kStepSlots + 1] (the last slot: dscale = dloss / n_valid).
  Tensor batch_, step_;
  static constexpr int64_t kDScale = kStepSlots;
  // Host staging ring (page-locked): batch and the scalars lr, t, dscale, each with the fence
  // after its copy; results ring: loss sum and grad sum of squares per ticket.
  struct Stage {
    int32_t* batch = nullptr;
    double* scalars = nullptr;  // [lr, t, dscale]
    uint64_t fence = 0;
    bool used = false;
  };
  Stage stage_[2];
  int next_stage_ = 0;
  double* results_ = nullptr;  // [kResultSlots, 2]
  uint64_t result_fence_[kResultSlots] = {};
  int64_t result_nvalid_[kResultSlots] = {};
  uint64_t next_result_ = 0;
  // What the last staged batch set up (host side).
  bool staged_targets_ = false, have_dlogits_ = false;
  float staged_dloss_ = 0.f;
  int64_t n_valid_ = 0;
  std::function<void(Tensor)> grads_ready_;
  void grads_ready(size_t first_param, size_t last_param);  // table_ indices, inclusive
};

}  // namespace sl
