#include "model/blocks/attention.h"

#include <algorithm>

namespace sl {

namespace {

void param_rows(const ModelSpec& s, ParamRows& rows) {
  const int64_t d = s.d_model;
  rows.add("self_attn.q_proj.weight", {d, d}, ParamKind::linear);
  rows.add_fused("self_attn.k_proj.weight", {d, d}, ParamKind::linear);
  rows.add_fused("self_attn.v_proj.weight", {d, d}, ParamKind::linear);
  rows.add("self_attn.q_norm.weight", {d}, ParamKind::norm);
  rows.add("self_attn.k_norm.weight", {d}, ParamKind::norm);
  rows.add("self_attn.o_proj.weight", {d, d}, ParamKind::linear);
  rows.add("post_attention_layernorm.weight", {d}, ParamKind::norm);
  mlp_param_rows(s, rows);
  rows.add("post_feedforward_layernorm.weight", {d}, ParamKind::norm);
}

// The causal attention scores and weighted sum, as llm.c counts them.
double flops_per_token(const ModelSpec& s, int64_t seq_len) {
  return 6.0 * static_cast<double>(seq_len) * static_cast<double>(s.d_model);
}

std::unique_ptr<Block> make(const BlockEnv& env, int64_t layer, const ParamViews& w,
                            const ParamViews& dw) {
  return std::make_unique<AttentionBlock>(env, layer, w, dw);
}

// The MLP part (dh, dgu, dmo) is dead before the attention part (dov, datt, dq, dk, dqkv) is
// written, so the two overlap.
int64_t scratch_elems(int64_t BT, int64_t d, int64_t m) { return BT * std::max(3 * m + d, 7 * d); }

// Mirrors AttentionBlock::allocate, buffer by buffer.
BlockMemory memory(const ModelSpec& s, int64_t B, int64_t T, bool split) {
  const int64_t BT = B * T, d = s.d_model;
  BlockMemory m;
  m.act = BT * (3 * d + d + d + d + d);       // qkv_, q_, k_, att_, o_
  m.stat = BT * (1 + 1 + s.n_heads + 1 + 1);  // q_rstd_, k_rstd_, lse_, o_rstd_, mo_rstd_
  if (split) {
    m.shared_stat["attention.y"] = BT * d;  // y_
    m.act += 2 * BT * d;                    // xb_, yb_
  } else {
    m.stat += BT * d;  // y_
  }
  mlp_memory(s, BT, m);
  m.scratch = scratch_elems(BT, d, s.d_mlp);
  m.reads_input_in_backward = !split;
  return m;
}

}  // namespace

const BlockType& attention_block_type() {
  static const BlockType t = {.kind = BlockKind::attention,
                              .letter = 'A',
                              .name = "attention",
                              .hf_layer_type = "full_attention",
                              .param_rows = param_rows,
                              .flops_per_token = flops_per_token,
                              .make = make,
                              .memory = memory};
  return t;
}

AttentionBlock::AttentionBlock(const BlockEnv& env, int64_t layer, const ParamViews& w,
                               const ParamViews& dw)
    : Block(env, BlockKind::attention, layer), mlp_(env, w, dw) {
  const int64_t d = env.D.d;
  auto resolve = [&](const ParamViews& v) {
    return Params{v("self_attn.q_proj.weight", 3 * d * d),
                  v("self_attn.q_norm.weight"),
                  v("self_attn.k_norm.weight"),
                  v("self_attn.o_proj.weight"),
                  v("post_attention_layernorm.weight"),
                  v("post_feedforward_layernorm.weight")};
  };
  w_ = resolve(w);
  dw_ = resolve(dw);
}

// With fp32 activations the backward's GEMM reads x itself (xb_ is x); with bf16 its copy.
bool AttentionBlock::reads_input_in_backward() const { return !env_.split_residual(); }

void AttentionBlock::allocate(BlockEnv& env, Tensor x) {
  const int64_t BT = env.BT, d = env.D.d;
  qkv_ = env.act(BT * 3 * d);
  q_ = env.act(BT * d);
  k_ = env.act(BT * d);
  q_rstd_ = env.stat(BT);
  k_rstd_ = env.stat(BT);
  att_ = env.act(BT * d);
  lse_ = env.stat(env.B * env.D.H * env.T);
  o_ = env.act(BT * d);
  o_rstd_ = env.stat(BT);
  mo_rstd_ = env.stat(BT);
  // y (the mid-block residual) is read in the forward only (the backward reads the bf16 copy
  // yb), so with bf16 activations all attention blocks share one buffer.
  y_ = env.split_residual() ? env.shared_stat("attention.y", BT * d) : env.stat(BT * d);
  xb_ = env.split_residual() ? env.act(BT * d) : x;
  yb_ = env.split_residual() ? env.act(BT * d) : y_;
  mlp_.allocate(env);
}

int64_t AttentionBlock::scratch_size() const { return scratch_elems(env_.BT, env_.D.d, env_.D.m); }

//   qkv = x [Wq;Wk;Wv]^T      q = rope(rms(q0; q_norm))  k = rope(rms(k0; k_norm))  (full-d norms,
//                             one fused op each)
//   o = attn(q, k, v) Wo^T    y = x + rms(o; post_attention_layernorm)
//   out = y + rms(mlp(y); post_feedforward_layernorm)
void AttentionBlock::forward(Tensor x, Tensor out) {
  Backend& be = env_.be;
  const Dims& D = env_.D;
  const int64_t B = env_.B, T = env_.T, BT = env_.BT, d = D.d;
  const float eps = static_cast<float>(env_.spec.norm_eps),
              theta = static_cast<float>(env_.spec.rope_theta);
  const Tensor xb = input_copied_ ? xb_ : env_.as_act(x, xb_, BT, d);
  be.matmul_forward(qkv_, xb, w_.qkv, {.M = BT, .K = d, .N = 3 * d, .ldx = d}, false);
  be.rmsnorm_rope_forward(q_, q_rstd_, qkv_, w_.q_norm,
                          {.B = B, .T = T, .H = D.H, .hd = D.hd, .ldx = 3 * d, .theta = theta},
                          eps);
  be.rmsnorm_rope_forward(k_, k_rstd_, qkv_.at(d), w_.k_norm,
                          {.B = B, .T = T, .H = D.H, .hd = D.hd, .ldx = 3 * d, .theta = theta},
                          eps);
  be.attention_forward(att_, lse_, q_, k_, qkv_.at(2 * d),
                       {.B = B, .T = T, .H = D.H, .hd = D.hd, .ldv = 3 * d});
  be.matmul_forward(o_, att_, w_.o_proj, {.M = BT, .K = d, .N = d, .ldx = d}, false);
  // y = x + rms(o) and its compute-dtype copy yb for the MLP's GEMM, in one pass.
  be.rmsnorm_forward(y_, o_rstd_, o_, w_.post_attention_layernorm, {.R = BT, .C = d, .ldx = d}, eps,
                     x, env_.split_residual() ? yb_ : Tensor{});
  mlp_.forward(yb_, mlp_.mo);
  // out = y + rms(mo), with the next attention block's input copy.
  be.rmsnorm_forward(out, mo_rstd_, mlp_.mo, w_.post_feedforward_layernorm,
                     {.R = BT, .C = d, .ldx = d}, eps, y_, next_input_copy_);
}

// dres: on entry d out, on return d x. The residual adds pass the gradient through unchanged,
// so each path's gradient is added into dres in place once everything reading dres has run;
// every scratch gradient is written (=), so nothing is zeroed or copied.
void AttentionBlock::backward(Tensor /*x: read as xb_*/, Tensor dres) {
  Backend& be = env_.be;
  const Dims& D = env_.D;
  const int64_t B = env_.B, T = env_.T, BT = env_.BT, d = D.d;
  const float theta = static_cast<float>(env_.spec.rope_theta);
  const Tensor scratch = env_.scratch;
  // out = y + rms(mo): d y = d out + (MLP path). dmo sits after the MLP's scratch [0, 3 BT m).
  const Tensor dmo = scratch.at(mlp_.scratch_size(), BT * d);
  be.rmsnorm_backward(dmo, dw_.post_feedforward_layernorm, dres, mlp_.mo,
                      w_.post_feedforward_layernorm, mo_rstd_, {.R = BT, .C = d, .ldx = d}, false);
  mlp_.backward(yb_, dmo, dres, true);
  // The MLP's gradients are dead: the attention path's reuse the scratch from its start.
  int64_t off = 0;
  auto take = [&](int64_t n) {
    Tensor t = scratch.at(off, n);
    off += n;
    return t;
  };
  Tensor dov = take(BT * d), datt = take(BT * d), dq = take(BT * d), dk = take(BT * d),
         dqkv = take(BT * 3 * d);
  // y = x + rms(o): d x = d y + (attention path)
  be.rmsnorm_backward(dov, dw_.post_attention_layernorm, dres, o_, w_.post_attention_layernorm,
                      o_rstd_, {.R = BT, .C = d, .ldx = d}, false);
  be.matmul_backward(datt, dw_.o_proj, dov, att_, w_.o_proj, {.M = BT, .K = d, .N = d, .ldx = d},
                     false);
  be.attention_backward(dq, dk, dqkv.at(2 * d), datt, q_, k_, qkv_.at(2 * d), att_, lse_,
                        {.B = B, .T = T, .H = D.H, .hd = D.hd, .ldv = 3 * d}, false);
  be.rmsnorm_rope_backward(dqkv, dw_.q_norm, dq, qkv_, w_.q_norm, q_rstd_,
                           {.B = B, .T = T, .H = D.H, .hd = D.hd, .ldx = 3 * d, .theta = theta},
                           false);
  be.rmsnorm_rope_backward(dqkv.at(d), dw_.k_norm, dk, qkv_.at(d), w_.k_norm, k_rstd_,
                           {.B = B, .T = T, .H = D.H, .hd = D.hd, .ldx = 3 * d, .theta = theta},
                           false);
  be.matmul_backward(dres, dw_.qkv, dqkv, xb_, w_.qkv, {.M = BT, .K = d, .N = 3 * d, .ldx = d},
                     true);
}

}  // namespace sl
