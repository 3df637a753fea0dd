// The SwiGLU MLP every block kind ends with (docs/MODEL.md "Shared pieces"):
// mo = down(silu(gate(in)) * up(in)), with gate and up adjacent so they run as one [2m, d] GEMM.
#pragma once
#include "model/blocks/block.h"

namespace sl {

// Appends mlp.gate_proj, mlp.up_proj, mlp.down_proj to a block's rows.
void mlp_param_rows(const ModelSpec& spec, ParamRows& rows);
// Adds what Mlp::allocate makes for BT tokens to a block's memory (BlockType::memory).
void mlp_memory(const ModelSpec& spec, int64_t BT, BlockMemory& m);

class Mlp {
 public:
  // Resolves the views of the layer's MLP parameters (w) and their gradients (dw).
  Mlp(const BlockEnv& env, const ParamViews& w, const ParamViews& dw);
  void allocate(BlockEnv& env);
  void forward(Tensor in, Tensor mo);
  // dmo: gradient of mo; din (=|+=) gradient of the MLP input. Its scratch gradients dh, dgu are
  // written, not accumulated, in env.scratch [0, 3 BT m), so nothing is zeroed.
  void backward(Tensor in, Tensor dmo, Tensor din, bool accumulate);
  // elements of env.scratch the backward uses, from its start
  int64_t scratch_size() const { return 3 * env_.BT * env_.D.m; }

  Tensor mo;  // [BT, d] the MLP output

 private:
  struct Params {
    Tensor gate_up;  // gate_proj | up_proj: [2m, d]
    Tensor down;     // [d, m]
  };
  const BlockEnv& env_;
  Params w_, dw_;
  Tensor gu_, h_;  // [BT, 2m] gate|up, [BT, m] silu(gate)*up
};

}  // namespace sl
