// Backend: the one interface every compute backend implements (CPU reference, CUDA).
// The model (lib/model) is written once against it.
//
// Conventions, stated once:
//  - Row-major everywhere. "[R, C] ld L" means element (r, c) is at r*L + c; ld defaults to C.
//    Ops that read from a fused projection output take the row stride so no copy is needed.
//  - BT = B*T tokens, token-major: activations are [B, T, ...] flattened to [BT, ...].
//  - Gradients: every *_backward ACCUMULATES (+=) into its parameter gradients (callers zero
//    the flat gradient buffer once per step). Its activation gradients it writes (=) or
//    accumulates (+=) as its `accumulate` says (every op of the dense and GDN blocks; rope's and
//    the embedding's accumulate), so a block's backward needs no zeroed scratch. Strided
//    outputs are written only inside their [rows, cols]. A null gradient output is skipped.
//  - Forward outputs are written (=), never accumulated, unless the op says so.
//  - Sizes, strides and the scalars both directions share come as one shape struct per family
//    of ops (core/op_shapes.h), built with designated initializers at the call site.
//  - Scalars are float on the interface; backends compute in their own precision (double in the
//    CPU<double> reference used by gradient checks).
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/op_shapes.h"
#include "core/tensor.h"

namespace sl {

// Gated DeltaNet recurrence algorithm of the CPU backend (both compute the same function; see
// backend/cpu/gated_deltanet.cc).
enum class GdnAlgo : uint8_t { chunk, recurrent };

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;  // "cpu", "cuda:0"
  // dtype of activations/compute buffers and of fp32/f64 master parameters and optimizer state.
  virtual DType act_dtype() const = 0;
  virtual DType param_dtype() const = 0;

  // ---- memory ---------------------------------------------------------------------------------
  virtual Tensor alloc(int64_t n, DType t) = 0;  // zero-initialised
  virtual void free(Tensor t) = 0;
  virtual void synchronize() {}

  // ---- asynchronous host staging ----------------------------------------------------------
  // A training step keeps the host out of the device's way: the next batch is staged and the
  // last step's scalars read back while the device works. Host buffers for these copies come
  // from alloc_host (page-locked where the backend has a device, so the copies are truly
  // asynchronous; plain memory on the CPU, where every copy is immediate).
  virtual void* alloc_host(size_t bytes);
  virtual void free_host(void* p);
  // Byte copies (no conversion) of a whole tensor, ordered with the ops. The host memory must
  // stay untouched until a fence() taken after the copy has passed.
  virtual void copy_to_device(Tensor dst, const void* host);
  virtual void copy_to_host(void* host, Tensor src);
  // A point in the op stream: wait(f) returns once everything enqueued before fence() is done.
  virtual uint64_t fence() { return 0; }
  virtual void wait(uint64_t /*fence*/) {}
  // The device's clock, for the profiler: stamp() marks the point of the op stream where
  // everything enqueued before it is done, without waiting for it; once synchronize() has
  // returned, stamp_ms(a, b) is the device time from stamp a to stamp b. clear_stamps() forgets
  // every stamp (their slots are reused). Default (ops that run as they are called, the CPU):
  // the host clock, read after a synchronize().
  virtual uint64_t stamp();
  virtual double stamp_ms(uint64_t a, uint64_t b);
  virtual void clear_stamps() {}
  // Bytes of backend memory allocated now and at most so far (alloc/free; 0 if not tracked).
  virtual int64_t bytes_in_use() const { return 0; }
  virtual int64_t peak_bytes() const { return 0; }

  // ---- graphs -----------------------------------------------------------------------------
  // A recorded sequence of ops replayed by launch(), reading and writing the same tensors each
  // time (so what changes between replays - the batch, the learning rate - lives in device
  // memory the ops read). CUDA captures the stream once into a CUDA graph, which removes the
  // per-op launch cost; the default returns null (nothing to gain: the caller runs fn itself).
  // `fn` must not synchronize, allocate or read back; run it once eagerly first so every
  // workspace it needs has its final size.
  class Graph {
   public:
    virtual ~Graph() = default;
    virtual void launch() = 0;
  };
  virtual std::unique_ptr<Graph> capture(std::function<void()> fn);
  // Milliseconds per call of `fn` (which enqueues work on this backend): the mean of `reps`
  // back-to-back calls, timed by the device's own clock where it has one (CUDA events around
  // the calls on the backend's stream), else by the host clock between two synchronize()s.
  // For `scalinglab bench --op`; warm up before calling it.
  virtual double time_ms(const std::function<void()>& fn, int reps) {
    synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) fn();
    synchronize();
    const std::chrono::duration<double, std::milli> dt = std::chrono::steady_clock::now() - t0;
    return dt.count() / (reps > 0 ? reps : 1);
  }

  // ---- compute ops: the op list (core/backend_ops.inc) -------------------------------------
#define SL_OP(name, params, args) virtual void name params = 0;
#include "core/backend_ops.inc"
#undef SL_OP
};

// Slots of the f64 step tensor adamw reads (the model writes the loss sum, the optimizer the
// gradient sum of squares, the host lr and t before each step).
enum StepSlot : int64_t { kStepLossSum, kStepGradSq, kStepLr, kStepT, kStepSlots };

// embedding_index's layout for BT tokens: [ids (BT) | order (BT)] int32, order the positions
// sorted by id (stable), so the positions of one id are consecutive in it.
inline int64_t embedding_index_size(int64_t BT) { return 2 * BT; }
// Fills out [embedding_index_size(BT)] from host ids [BT] (a stable counting sort by id, V the
// vocabulary; ids must be in [0, V)).
void embedding_index(const int32_t* ids, int64_t BT, int64_t V, int32_t* out);

// gdn_forward saves the state entering each chunk of kGdnChunk steps: states [B, H, NC,
// key_dim, value_dim] with NC = gdn_num_chunks(T).
inline constexpr int64_t kGdnChunk = 64;
inline int64_t gdn_num_chunks(int64_t T) { return (T + kGdnChunk - 1) / kGdnChunk; }

// Factory: "cpu" (float), "cpu64" (double, for gradient checks), "cuda", "cuda:1".
std::unique_ptr<Backend> make_backend(const std::string& device);
// Number of usable CUDA devices (0 without a GPU or in a build without CUDA).
int cuda_devices();

}  // namespace sl
