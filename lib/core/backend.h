// Backend: the one interface every compute backend implements (CPU reference, CUDA).
// The model (lib/model) is written once against it.
//
// Conventions, stated once:
//  - Row-major everywhere. "[R, C] ld L" means element (r, c) is at r*L + c; ld defaults to C.
//    Ops that read from a fused projection output take the row stride so no copy is needed.
//  - BT = B*T tokens, token-major: activations are [B, T, ...] flattened to [BT, ...].
//  - Gradients: every *_backward ACCUMULATES (+=) into each gradient output, parameter or
//  activation
//    alike; callers zero the buffers once per step. A null Tensor gradient output is skipped.
//  - Forward outputs are written (=), never accumulated, unless the op says so.
//  - Scalars are float on the interface; backends compute in their own precision (double in the
//    CPU<double> reference used by gradient checks).
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/tensor.h"

namespace sl {

// Gated DeltaNet recurrence algorithm (both compute the same function; see gated_deltanet.h).
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
  virtual void zero(Tensor t) = 0;
  // Host <-> backend copies of float arrays (converting to/from the tensor's dtype).
  virtual void upload(Tensor dst, const float* src) = 0;
  virtual void download(float* dst, Tensor src) = 0;
  // Copy with dtype conversion between two backend tensors of equal n (e.g. fp32 master -> bf16).
  virtual void convert(Tensor dst, Tensor src) = 0;
  virtual void synchronize() {}
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

  // ---- elementwise / copies -------------------------------------------------------------------
  // y[i] += alpha * x[i], i < n
  virtual void axpy(Tensor y, Tensor x, float alpha, int64_t n) = 0;
  // dst[r, c] (=|+=) src[r, c] for [rows, cols] with strides ld_dst, ld_src.
  virtual void copy2d(Tensor dst, int64_t ld_dst, Tensor src, int64_t ld_src, int64_t rows,
                      int64_t cols, bool accumulate) = 0;
  // sum_i x[i]^2 in double (for the global gradient norm).
  virtual double sum_squares(Tensor x, int64_t n) = 0;
  // x[i] *= s
  virtual void scale(Tensor x, float s, int64_t n) = 0;

  // ---- embedding ------------------------------------------------------------------------------
  // out[t, :] = wte[ids[t], :];  ids: host int32 [BT], wte [V, d], out [BT, d]
  virtual void embedding_forward(Tensor out, const int32_t* ids, Tensor wte, int64_t BT,
                                 int64_t d) = 0;
  // dwte[ids[t], :] += dout[t, :]
  virtual void embedding_backward(Tensor dwte, const int32_t* ids, Tensor dout, int64_t BT,
                                  int64_t d) = 0;

  // ---- linear layer ---------------------------------------------------------------------------
  // y[M, N] (=|+=) x[M, K] ld ldx  .  w[N, K]^T       (HF Linear: weight is [out, in])
  virtual void matmul_forward(Tensor y, Tensor x, int64_t ldx, Tensor w, int64_t M, int64_t K,
                              int64_t N, bool accumulate) = 0;
  // dx[M, K] ld ldx += dy[M, N] . w[N, K];   dw[N, K] += dy^T . x
  virtual void matmul_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx, Tensor w,
                               int64_t M, int64_t K, int64_t N) = 0;

  // ---- RMSNorm --------------------------------------------------------------------------------
  // y[r, :] = w * x[r, :] * rstd[r],  rstd[r] = 1/sqrt(mean_c x[r,c]^2 + eps); x [R, C] ld ldx,
  // y [R, C] contiguous, w [C], rstd [R] (saved for backward).
  virtual void rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, int64_t ldx, Tensor w, int64_t R,
                               int64_t C, float eps) = 0;
  // dx (ld ldx) += d/dx,  dw += sum_r dy * x * rstd
  virtual void rmsnorm_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx, Tensor w,
                                Tensor rstd, int64_t R, int64_t C) = 0;

  // ---- RoPE (HF "default", rotate_half: pairs (i, i + hd/2), inv_freq_i = theta^(-2i/hd)) -------
  // In place on x [B, T, H, hd]: x' = x*cos(t*f) + rotate_half(x)*sin(t*f), position t = 0..T-1.
  virtual void rope_forward(Tensor x, int64_t B, int64_t T, int64_t H, int64_t hd, float theta) = 0;
  // In place on dx: the transpose rotation (rotation by -t*f).
  virtual void rope_backward(Tensor dx, int64_t B, int64_t T, int64_t H, int64_t hd,
                             float theta) = 0;

  // ---- causal softmax attention ---------------------------------------------------------------
  // q, k [B, T, H, hd] contiguous; v [B, T, H, hd] with token stride ldv; out [B, T, H, hd];
  // lse [B, H, T] = logsumexp of each score row (saved for backward). scale = 1/sqrt(hd).
  // out[t] = sum_{s<=t} softmax_s(q_t.k_s*scale) v_s
  virtual void attention_forward(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, int64_t ldv,
                                 int64_t B, int64_t T, int64_t H, int64_t hd) = 0;
  // dq, dk [B,T,H,hd] += ; dv (token stride ldv) +=
  virtual void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k,
                                  Tensor v, int64_t ldv, Tensor out, Tensor lse, int64_t B,
                                  int64_t T, int64_t H, int64_t hd) = 0;

  // ---- SwiGLU ---------------------------------------------------------------------------------
  // gu [R, 2m]: gate = columns [0, m), up = [m, 2m).  h [R, m] = silu(gate) * up
  virtual void swiglu_forward(Tensor h, Tensor gu, int64_t R, int64_t m) = 0;
  // dgu [R, 2m] +=
  virtual void swiglu_backward(Tensor dgu, Tensor dh, Tensor gu, int64_t R, int64_t m) = 0;

  // ---- causal depthwise conv1d over time + SiLU (GDN) -----------------------------------------
  // x [B, T, C] ld ldx; w [C, K] (HF conv1d.weight [C, 1, K]); y [B, T, C] contiguous.
  // y[b,t,c] = silu( sum_{j<K} w[c, j] * x[b, t-K+1+j, c] ), x at negative time = 0.
  virtual void conv1d_silu_forward(Tensor y, Tensor x, int64_t ldx, Tensor w, int64_t B, int64_t T,
                                   int64_t C, int64_t K) = 0;
  virtual void conv1d_silu_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx,
                                    Tensor w, int64_t B, int64_t T, int64_t C, int64_t K) = 0;

  // ---- per-head L2 norm (GDN q, k) ------------------------------------------------------------
  // x [BT, H, C] with token stride ldx; y [BT, H, C] contiguous; rnorm [BT, H] saved.
  // y = scale * x / sqrt(sum_c x^2 + eps)
  virtual void l2norm_forward(Tensor y, Tensor rnorm, Tensor x, int64_t ldx, int64_t BT, int64_t H,
                              int64_t C, float scale, float eps) = 0;
  virtual void l2norm_backward(Tensor dx, Tensor dy, Tensor x, int64_t ldx, Tensor rnorm,
                               int64_t BT, int64_t H, int64_t C, float scale) = 0;

  // ---- GDN gates ------------------------------------------------------------------------------
  // b, a: [BT, H] with token stride ld (columns of the fused projection).
  // beta = beta_scale * sigmoid(b)           (beta_scale = 2 with allow_neg_eigval)
  // g    = -exp(A_log[h]) * softplus(a + dt_bias[h])      beta, g: [BT, H] contiguous
  virtual void gdn_gates_forward(Tensor beta, Tensor g, Tensor b, Tensor a, int64_t ld,
                                 Tensor A_log, Tensor dt_bias, int64_t BT, int64_t H,
                                 float beta_scale) = 0;
  virtual void gdn_gates_backward(Tensor db, Tensor da, Tensor dA_log, Tensor ddt_bias,
                                  Tensor dbeta, Tensor dg, Tensor b, Tensor a, int64_t ld,
                                  Tensor A_log, Tensor dt_bias, int64_t BT, int64_t H,
                                  float beta_scale) = 0;

  // ---- gated delta rule (see backend/cpu/gated_deltanet.h for the math) -----------------------
  // q, k [B, T, H, dk]; v [B, T, H, dv]; beta, g [B, T, H]; out [B, T, H, dv].
  // states [B, H, NC, dk, dv] (NC = ceil(T/64)): state entering each 64-step chunk, saved for
  // backward (fp32 or better).
  virtual void gdn_forward(Tensor out, Tensor states, Tensor q, Tensor k, Tensor v, Tensor beta,
                           Tensor g, int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv) = 0;
  virtual void gdn_backward(Tensor dq, Tensor dk_, Tensor dv_, Tensor dbeta, Tensor dg, Tensor dout,
                            Tensor states, Tensor q, Tensor k, Tensor v, Tensor beta, Tensor g,
                            int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv) = 0;

  // ---- gated RMSNorm (GDN output) -------------------------------------------------------------
  // x [R, C] contiguous (R = BT*H rows of one head each, C = dv); gate [BT, H*C] token stride ldg
  // (so row r = t*H + h reads gate[t, h*C : (h+1)*C]); w [C]; y [R, C].
  // y = w * x * rstd * silu(gate),  rstd = 1/sqrt(mean x^2 + eps)
  virtual void gated_rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, Tensor gate, int64_t ldg,
                                     Tensor w, int64_t R, int64_t H, int64_t C, float eps) = 0;
  virtual void gated_rmsnorm_backward(Tensor dx, Tensor dgate, Tensor dw, Tensor dy, Tensor x,
                                      Tensor gate, int64_t ldg, Tensor w, Tensor rstd, int64_t R,
                                      int64_t H, int64_t C) = 0;

  // ---- cross-entropy --------------------------------------------------------------------------
  // logits [BT, V]; targets host int32 [BT] (target < 0: ignored, no loss, no grad).
  // losses[t] = logsumexp(logits[t]) - logits[t, target]  (written, [BT]).
  // If dlogits is non-null: dlogits[t] += dscale * (softmax(logits[t]) - onehot(target)).
  // Returns sum of losses (double) over non-ignored targets.
  virtual double cross_entropy(Tensor losses, Tensor dlogits, Tensor logits, const int32_t* targets,
                               int64_t BT, int64_t V, float dscale) = 0;

  // ---- optimizer --------------------------------------------------------------------------------
  // AdamW (decoupled): g' = g * grad_scale; m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
  // p -= lr * ( m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps) + wd * p ).  step t >= 1.
  virtual void adamw(Tensor p, Tensor g, Tensor m, Tensor v, int64_t n, float lr, float b1,
                     float b2, float eps, float wd, float grad_scale, int64_t t) = 0;
};

// Factory: "cpu" (float), "cpu64" (double, for gradient checks), "cuda", "cuda:1".
std::unique_ptr<Backend> make_backend(const std::string& device);
// Number of usable CUDA devices (0 without a GPU or in a build without CUDA).
int cuda_devices();

}  // namespace sl
