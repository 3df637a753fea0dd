// The attention block (BlockKind::attention, letter A): OLMo 3, post-norm, QK-norm over the full
// width before RoPE (docs/MODEL.md "Attention block (A)").
#pragma once
#include "model/blocks/block.h"
#include "model/blocks/mlp.h"

namespace sl {

const BlockType& attention_block_type();

class AttentionBlock final : public Block {
 public:
  AttentionBlock(const BlockEnv& env, int64_t layer, const ParamViews& w, const ParamViews& dw);
  bool reads_input_in_backward() const override;
  void allocate(BlockEnv& env, Tensor x) override;
  int64_t scratch_size() const override;
  Tensor input_copy() const override { return xb_; }
  bool writes_output_copy() const override { return true; }
  void forward(Tensor x, Tensor out) override;
  void backward(Tensor x, Tensor dres) override;

 private:
  // Parameter (compute dtype) or gradient views, resolved at construction.
  struct Params {
    Tensor qkv;  // q_proj | k_proj | v_proj as one [3d, d]
    Tensor q_norm, k_norm, o_proj, post_attention_layernorm, post_feedforward_layernorm;
  };
  Params w_, dw_;
  Mlp mlp_;
  // Saved activations (BT = B*T rows).
  Tensor qkv_;              // [BT, 3d] = x Wqkv^T (q | k | v), pre-norm
  Tensor q_, k_;            // [BT, d] after QK-norm and RoPE
  Tensor q_rstd_, k_rstd_;  // [BT]
  Tensor att_, lse_;        // [BT, d] attention output (heads concatenated), [B, H, T]
  Tensor o_, o_rstd_;       // [BT, d] = att Wo^T, input of post_attention_layernorm; [BT]
  Tensor mo_rstd_;          // [BT] post_feedforward_layernorm rstd
  Tensor y_;                // [BT, d] residual after the mixer (fp32, like the residual stream)
  // Compute-dtype copies of the residual where a GEMM reads it (post-norm): x and y as act dtype
  // (x and y themselves when activations are fp32: then nothing is copied).
  Tensor xb_, yb_;
};

}  // namespace sl
