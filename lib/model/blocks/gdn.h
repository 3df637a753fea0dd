// The Gated DeltaNet block (BlockKind::gdn, letter G): OLMo Hybrid, pre-norm (docs/MODEL.md
// "Gated DeltaNet block (G)").
#pragma once
#include "model/blocks/block.h"
#include "model/blocks/mlp.h"

namespace sl {

const BlockType& gdn_block_type();

class GdnBlock final : public Block {
 public:
  GdnBlock(const BlockEnv& env, int64_t layer, const ParamViews& w, const ParamViews& dw);
  bool reads_input_in_backward() const override { return true; }  // its input_layernorm
  void allocate(BlockEnv& env, Tensor x) override;
  int64_t scratch_size() const override;
  int64_t stat_scratch_size() const override { return 2 * env_.BT * env_.D.H; }  // dbeta, dg
  void forward(Tensor x, Tensor out) override;
  void backward(Tensor x, Tensor dres) override;

 private:
  // Parameter (compute dtype) or gradient views, resolved at construction.
  struct Params {
    Tensor input_layernorm;
    Tensor proj;  // q_proj | k_proj | v_proj | b_proj | a_proj | g_proj as one [P, d]
    Tensor conv1d, A_log, dt_bias, o_norm, o_proj, post_attention_layernorm;
  };
  Params w_, dw_;
  Mlp mlp_;
  // Saved activations (BT = B*T rows).
  Tensor u_, u_rstd_;             // [BT, d] input_layernorm(x); [BT]
  Tensor proj_;                   // [BT, P] = u Wproj^T: q0 | k0 | v0 | b | a | gate
  Tensor conv_;                   // [BT, 2 H k_h] silu(causal conv(q0 | k0))
  Tensor gq_, gk_, q_rn_, k_rn_;  // [BT, H, k_h] L2-normed q (scaled) and k; [BT, H] 1/norms
  Tensor gv_;                     // [BT, H, v_h] silu(causal conv(v0)), contiguous for the GDN
  Tensor beta_, g_;               // [BT, H]
  Tensor states_;                 // [B, H, NC, k_h, v_h]
  Tensor go_, go_rstd_, on_;      // [BT, H v_h] recurrence output, [BT H] rstd, gated-normed output
  Tensor n_, n_rstd_;             // [BT, d] post_attention_layernorm(y) = MLP input
  Tensor y_;  // [BT, d] residual after the mixer (fp32, like the residual stream)
};

}  // namespace sl
