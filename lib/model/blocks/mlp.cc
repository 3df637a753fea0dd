#include "model/blocks/mlp.h"

namespace sl {

void mlp_param_rows(const ModelSpec& s, ParamRows& rows) {
  const int64_t d = s.d_model, m = s.d_mlp;
  rows.add("mlp.gate_proj.weight", {m, d}, ParamKind::linear);
  rows.add_fused("mlp.up_proj.weight", {m, d}, ParamKind::linear);
  rows.add("mlp.down_proj.weight", {d, m}, ParamKind::linear);
}

Mlp::Mlp(const BlockEnv& env, const ParamViews& w, const ParamViews& dw) : env_(env) {
  const int64_t d = env.D.d, m = env.D.m;
  w_ = {w("mlp.gate_proj.weight", 2 * m * d), w("mlp.down_proj.weight")};
  dw_ = {dw("mlp.gate_proj.weight", 2 * m * d), dw("mlp.down_proj.weight")};
}

void Mlp::allocate(BlockEnv& env) {
  gu_ = env.act(env.BT * 2 * env.D.m);
  h_ = env.act(env.BT * env.D.m);
  mo = env.act(env.BT * env.D.d);
}
void mlp_memory(const ModelSpec& s, int64_t BT, BlockMemory& m) {
  m.act += BT * (2 * s.d_mlp + s.d_mlp + s.d_model);  // gu_, h_, mo (allocate above)
}

void Mlp::forward(Tensor in, Tensor out) {
  Backend& be = env_.be;
  const int64_t BT = env_.BT, d = env_.D.d, m = env_.D.m;
  // One [2m, d] GEMM: gate and up side by side in gu [BT, 2m].
  be.matmul_forward(gu_, in, w_.gate_up, {.M = BT, .K = d, .N = 2 * m, .ldx = d}, false);
  be.swiglu_forward(h_, gu_, {.R = BT, .C = m});
  be.matmul_forward(out, h_, w_.down, {.M = BT, .K = m, .N = d, .ldx = m}, false);
}

void Mlp::backward(Tensor in, Tensor dmo, Tensor din, bool accumulate) {
  Backend& be = env_.be;
  const int64_t BT = env_.BT, d = env_.D.d, m = env_.D.m;
  Tensor dh = env_.scratch.at(0, BT * m), dgu = env_.scratch.at(BT * m, BT * 2 * m);
  be.matmul_backward(dh, dw_.down, dmo, h_, w_.down, {.M = BT, .K = m, .N = d, .ldx = m}, false);
  be.swiglu_backward(dgu, dh, gu_, {.R = BT, .C = m}, false);
  be.matmul_backward(din, dw_.gate_up, dgu, in, w_.gate_up, {.M = BT, .K = d, .N = 2 * m, .ldx = d},
                     accumulate);
}

}  // namespace sl
