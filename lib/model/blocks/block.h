// The block interface (docs/DESIGN.md "Model blocks"): one class per BlockKind, each in its own
// file of this folder, with a BlockType descriptor that says everything the rest of the toolkit
// needs to know about the kind: its pattern letter, its parameter rows (HF names, shapes, kinds),
// its FLOPs per token and how to make one. Model (model/model.h) loops over its blocks and never
// asks which kind one is.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "model/block_kind.h"
#include "model/spec.h"

namespace sl {

// The widths of a spec the blocks use (docs/MODEL.md "Notation").
struct Dims {
  int64_t d, H, hd, m, dk, dv, Cc, P, K, V;
  // Row stride of the GDN projection's activations (proj and its gradient): P rounded up to a
  // multiple of 8, so every row and its q|k|v and gate blocks start 16-byte aligned and the conv,
  // gate and norm kernels take their 8-element vector paths (P = 2 H k_h + 2 H v_h + 2 H is not a
  // multiple of 8 when H is not: the ladder's L0, L1, L3). The GEMM writes columns [0, P) only.
  int64_t ldp;
};
Dims dims_of(const ModelSpec& s);

// What the blocks share with the model: the spec and backend, the batch shape, the activation
// arena, and the buffers every block's backward borrows in turn (it runs one block at a time).
class BlockEnv {
 public:
  BlockEnv(const ModelSpec& spec, Backend& be, int64_t B, int64_t T, std::vector<Tensor>& arena);
  const ModelSpec& spec;
  Backend& be;
  const int64_t B, T, BT;
  const Dims D;
  // Activation buffer (act_dtype), allocated at construction only.
  Tensor act(int64_t n);
  // fp32 (f64 on the f64 backend) statistics buffer, likewise. Normalisation statistics, softmax
  // lse, GDN gates and states stay in it even when activations are bf16: they feed exp/rsqrt and
  // long recurrences.
  Tensor stat(int64_t n);
  // One stat buffer of n elements shared by every block that asks for `key` (allocated on the
  // first call): what only a forward reads, e.g. the attention blocks' mid-block residual.
  Tensor shared_stat(const std::string& key, int64_t n);
  // True when activations are narrower than stat tensors (bf16): the residual stream is then
  // fp32 and GEMMs read it through compute-dtype copies. as_act returns src itself otherwise,
  // else src [rows, cols] converted into buf.
  bool split_residual() const { return split_; }
  Tensor as_act(Tensor src, Tensor buf, int64_t rows, int64_t cols) const;

  // Set by the model after the blocks have allocated their activations:
  Tensor scratch;       // act dtype, max over the blocks of Block::scratch_size()
  Tensor stat_scratch;  // stat dtype, max of Block::stat_scratch_size() (null when 0)
  Tensor gcopy;         // act-dtype copy of an fp32 [BT, d] gradient a GEMM reads (bf16 only)

 private:
  std::vector<Tensor>& arena_;
  std::map<std::string, Tensor> shared_;
  bool split_;
};

// Views of one layer's parameters (or their gradients) in a flat buffer, found by HF suffix. A
// block resolves them once, at construction, into named fields; n > numel spans the fused block
// of adjacent parameters that starts there (e.g. q|k|v as one [3d, d] matrix).
class ParamViews {
 public:
  ParamViews(const std::vector<ParamInfo>& table, int64_t layer, Tensor buffer)
      : table_(table), prefix_("model.layers." + std::to_string(layer) + "."), buffer_(buffer) {}
  Tensor operator()(const char* suffix, int64_t n = -1) const;  // fails naming a missing one

 private:
  const std::vector<ParamInfo>& table_;
  std::string prefix_;
  Tensor buffer_;
};

class Block {
 public:
  virtual ~Block() = default;
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
  BlockKind kind() const { return kind_; }
  int64_t layer() const { return layer_; }

  // Whether the backward reads the block's input x itself (the model keeps that residual buffer;
  // the others take turns in two buffers).
  virtual bool reads_input_in_backward() const = 0;
  // Allocates the saved activations (env.act / env.stat / env.shared_stat), in a fixed order; x
  // is the block's input buffer in the residual stream.
  virtual void allocate(BlockEnv& env, Tensor x) = 0;
  // Elements of env.scratch (act dtype) and env.stat_scratch its backward uses.
  virtual int64_t scratch_size() const = 0;
  virtual int64_t stat_scratch_size() const { return 0; }
  // The input copy (bf16 activations): a block whose GEMM reads its input through an act-dtype
  // copy can have it written by the previous block's last op, when that op can write one beside
  // its output (an RMSNorm with a copy output). The model links the pairs (link()).
  virtual Tensor input_copy() const { return {}; }  // null: the block takes no input copy
  virtual bool writes_output_copy() const { return false; }
  void link(bool input_copied, Tensor next_input_copy) {
    input_copied_ = input_copied;
    next_input_copy_ = next_input_copy;
  }

  // out = block(x), saving what backward reads.
  virtual void forward(Tensor x, Tensor out) = 0;
  // dres: on entry d out, on return d x (in place); parameter gradients accumulate (+=).
  virtual void backward(Tensor x, Tensor dres) = 0;

 protected:
  Block(const BlockEnv& env, BlockKind kind, int64_t layer)
      : env_(env), kind_(kind), layer_(layer) {}
  const BlockEnv& env_;
  bool input_copied_ = false;  // input_copy() was written by the previous block
  Tensor next_input_copy_;     // where forward writes the next block's input copy (null: nowhere)

 private:
  BlockKind kind_;
  int64_t layer_;
};

// What one block of a kind allocates and borrows for B x T tokens, said without making one: the
// model's device-memory estimate (model.h model_memory) sums it over the layers. Each kind's
// function sits beside its allocate(), which it mirrors; tests/train/test_device_memory.cc
// checks the sum against what a Model really allocates.
struct BlockMemory {
  int64_t act = 0;   // elements of the act-dtype buffers allocate() makes (BlockEnv::act)
  int64_t stat = 0;  // elements of its stat-dtype buffers (BlockEnv::stat)
  // BlockEnv::shared_stat buffers, by key: allocated once per model, whatever the block count.
  std::map<std::string, int64_t> shared_stat;
  int64_t scratch = 0, stat_scratch = 0;  // Block::scratch_size(), Block::stat_scratch_size()
  bool reads_input_in_backward = false;   // Block::reads_input_in_backward()
};

// Everything about a block kind that is not an instance: one constant per kind, in its file.
struct BlockType {
  BlockKind kind;
  char letter;                // in ModelSpec::pattern
  const char* name;           // for messages
  const char* hf_layer_type;  // its entry in an HF config.json's layer_types
  // Appends the block's parameter rows (suffixes of rows.prefix), in table order.
  void (*param_rows)(const ModelSpec& spec, ParamRows& rows);
  // Training FLOPs per token (forward + backward) beyond 6 per weight (docs/MODEL.md "Counting").
  double (*flops_per_token)(const ModelSpec& spec, int64_t seq_len);
  // A block of layer `layer`; w and dw view its parameters and gradients (resolved here, once).
  std::unique_ptr<Block> (*make)(const BlockEnv& env, int64_t layer, const ParamViews& w,
                                 const ParamViews& dw);
  // What a block of the kind allocates for B x T tokens (split_residual: BlockEnv's, i.e. bf16
  // activations beside fp32 statistics).
  BlockMemory (*memory)(const ModelSpec& spec, int64_t B, int64_t T, bool split_residual);
};

// The registry: every kind's descriptor, indexed by BlockKind (model/blocks/block.cc).
const std::vector<const BlockType*>& block_types();
const BlockType& block_type(BlockKind kind);

}  // namespace sl
