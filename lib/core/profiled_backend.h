// ProfiledBackend: a Backend that forwards every call to another one and adds up the time each
// op takes (wall clock between a synchronize() before and after the call, so asynchronous GPU
// work is charged to the op that queued it). The synchronizations serialize the device, so the
// total is a little above an unprofiled step; the shares are what `scalinglab bench --profile`
// reports to say where a step's time goes before anyone optimises it.
#pragma once
#include <chrono>
#include <map>
#include <string>

#include "core/backend.h"

namespace sl {

class ProfiledBackend final : public Backend {
 public:
  struct Stat {
    double seconds = 0;
    int64_t calls = 0;
  };
  explicit ProfiledBackend(Backend& inner) : in_(inner) {}
  const std::map<std::string, Stat>& stats() const { return stats_; }
  void reset() { stats_.clear(); }
  // Off: calls are forwarded untimed, with no synchronization (the unprofiled speed).
  void enable(bool on) { on_ = on; }

  std::string name() const override { return in_.name(); }
  DType act_dtype() const override { return in_.act_dtype(); }
  DType param_dtype() const override { return in_.param_dtype(); }
  Tensor alloc(int64_t n, DType t) override { return in_.alloc(n, t); }
  void free(Tensor t) override { in_.free(t); }
  void synchronize() override { in_.synchronize(); }
  double time_ms(const std::function<void()>& fn, int reps) override {
    return in_.time_ms(fn, reps);
  }

 private:
  // Times one forwarded call; `op` names the table row.
  struct Timed {
    ProfiledBackend& p;
    const char* op;
    std::chrono::steady_clock::time_point t0;
    Timed(ProfiledBackend& pb, const char* name) : p(pb), op(name) {
      if (!p.on_) return;
      p.in_.synchronize();
      t0 = std::chrono::steady_clock::now();
    }
    ~Timed() {
      if (!p.on_) return;
      p.in_.synchronize();
      Stat& s = p.stats_[op];
      s.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++s.calls;
    }
  };
  Backend& in_;
  std::map<std::string, Stat> stats_;
  bool on_ = true;

 public:
// Every op: same signature as Backend's, timed under its own name.
#define SL_TIMED(ret, op, params, args) \
  ret op params override {              \
    Timed timed_(*this, #op);           \
    return in_.op args;                 \
  }
  SL_TIMED(void, zero, (Tensor t), (t))
  SL_TIMED(void, upload, (Tensor dst, const float* src), (dst, src))
  SL_TIMED(void, download, (float* dst, Tensor src), (dst, src))
  SL_TIMED(void, convert, (Tensor dst, Tensor src), (dst, src))
  SL_TIMED(void, axpy, (Tensor y, Tensor x, float alpha, int64_t n), (y, x, alpha, n))
  SL_TIMED(void, copy2d,
           (Tensor dst, int64_t ld_dst, Tensor src, int64_t ld_src, int64_t rows, int64_t cols,
            bool accumulate),
           (dst, ld_dst, src, ld_src, rows, cols, accumulate))
  SL_TIMED(double, sum_squares, (Tensor x, int64_t n), (x, n))
  SL_TIMED(void, scale, (Tensor x, float s, int64_t n), (x, s, n))
  SL_TIMED(void, embedding_forward,
           (Tensor out, const int32_t* ids, Tensor wte, int64_t BT, int64_t d),
           (out, ids, wte, BT, d))
  SL_TIMED(void, embedding_backward,
           (Tensor dwte, const int32_t* ids, Tensor dout, int64_t BT, int64_t d),
           (dwte, ids, dout, BT, d))
  SL_TIMED(void, matmul_forward,
           (Tensor y, Tensor x, int64_t ldx, Tensor w, int64_t M, int64_t K, int64_t N,
            bool accumulate),
           (y, x, ldx, w, M, K, N, accumulate))
  SL_TIMED(void, matmul_backward,
           (Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx, Tensor w, int64_t M, int64_t K,
            int64_t N),
           (dx, dw, dy, x, ldx, w, M, K, N))
  SL_TIMED(void, rmsnorm_forward,
           (Tensor y, Tensor rstd, Tensor x, int64_t ldx, Tensor w, int64_t R, int64_t C,
            float eps),
           (y, rstd, x, ldx, w, R, C, eps))
  SL_TIMED(void, rmsnorm_backward,
           (Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx, Tensor w, Tensor rstd,
            int64_t R, int64_t C),
           (dx, dw, dy, x, ldx, w, rstd, R, C))
  SL_TIMED(void, rope_forward, (Tensor x, int64_t B, int64_t T, int64_t H, int64_t hd, float theta),
           (x, B, T, H, hd, theta))
  SL_TIMED(void, rope_backward,
           (Tensor dx, int64_t B, int64_t T, int64_t H, int64_t hd, float theta),
           (dx, B, T, H, hd, theta))
  SL_TIMED(void, attention_forward,
           (Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, int64_t ldv, int64_t B, int64_t T,
            int64_t H, int64_t hd),
           (out, lse, q, k, v, ldv, B, T, H, hd))
  SL_TIMED(void, attention_backward,
           (Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v, int64_t ldv,
            Tensor out, Tensor lse, int64_t B, int64_t T, int64_t H, int64_t hd),
           (dq, dk, dv, dout, q, k, v, ldv, out, lse, B, T, H, hd))
  SL_TIMED(void, swiglu_forward, (Tensor h, Tensor gu, int64_t R, int64_t m), (h, gu, R, m))
  SL_TIMED(void, swiglu_backward, (Tensor dgu, Tensor dh, Tensor gu, int64_t R, int64_t m),
           (dgu, dh, gu, R, m))
  SL_TIMED(void, conv1d_silu_forward,
           (Tensor y, Tensor x, int64_t ldx, Tensor w, int64_t B, int64_t T, int64_t C, int64_t K),
           (y, x, ldx, w, B, T, C, K))
  SL_TIMED(void, conv1d_silu_backward,
           (Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx, Tensor w, int64_t B, int64_t T,
            int64_t C, int64_t K),
           (dx, dw, dy, x, ldx, w, B, T, C, K))
  SL_TIMED(void, l2norm_forward,
           (Tensor y, Tensor rnorm, Tensor x, int64_t ldx, int64_t BT, int64_t H, int64_t C,
            float scale, float eps),
           (y, rnorm, x, ldx, BT, H, C, scale, eps))
  SL_TIMED(void, l2norm_backward,
           (Tensor dx, Tensor dy, Tensor x, int64_t ldx, Tensor rnorm, int64_t BT, int64_t H,
            int64_t C, float scale),
           (dx, dy, x, ldx, rnorm, BT, H, C, scale))
  SL_TIMED(void, gdn_gates_forward,
           (Tensor beta, Tensor g, Tensor b, Tensor a, int64_t ld, Tensor A_log, Tensor dt_bias,
            int64_t BT, int64_t H, float beta_scale),
           (beta, g, b, a, ld, A_log, dt_bias, BT, H, beta_scale))
  SL_TIMED(void, gdn_gates_backward,
           (Tensor db, Tensor da, Tensor dA_log, Tensor ddt_bias, Tensor dbeta, Tensor dg, Tensor b,
            Tensor a, int64_t ld, Tensor A_log, Tensor dt_bias, int64_t BT, int64_t H,
            float beta_scale),
           (db, da, dA_log, ddt_bias, dbeta, dg, b, a, ld, A_log, dt_bias, BT, H, beta_scale))
  SL_TIMED(void, gdn_forward,
           (Tensor out, Tensor states, Tensor q, Tensor k, Tensor v, Tensor beta, Tensor g,
            int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv),
           (out, states, q, k, v, beta, g, B, T, H, dk, dv))
  SL_TIMED(void, gdn_backward,
           (Tensor dq, Tensor dk_, Tensor dv_, Tensor dbeta, Tensor dg, Tensor dout, Tensor states,
            Tensor q, Tensor k, Tensor v, Tensor beta, Tensor g, int64_t B, int64_t T, int64_t H,
            int64_t dk, int64_t dv),
           (dq, dk_, dv_, dbeta, dg, dout, states, q, k, v, beta, g, B, T, H, dk, dv))
  SL_TIMED(void, gated_rmsnorm_forward,
           (Tensor y, Tensor rstd, Tensor x, Tensor gate, int64_t ldg, Tensor w, int64_t R,
            int64_t H, int64_t C, float eps),
           (y, rstd, x, gate, ldg, w, R, H, C, eps))
  SL_TIMED(void, gated_rmsnorm_backward,
           (Tensor dx, Tensor dgate, Tensor dw, Tensor dy, Tensor x, Tensor gate, int64_t ldg,
            Tensor w, Tensor rstd, int64_t R, int64_t H, int64_t C),
           (dx, dgate, dw, dy, x, gate, ldg, w, rstd, R, H, C))
  SL_TIMED(double, cross_entropy,
           (Tensor losses, Tensor dlogits, Tensor logits, const int32_t* targets, int64_t BT,
            int64_t V, float dscale),
           (losses, dlogits, logits, targets, BT, V, dscale))
  SL_TIMED(void, adamw,
           (Tensor p, Tensor g, Tensor m, Tensor v, int64_t n, float lr, float b1, float b2,
            float eps, float wd, float grad_scale, int64_t t),
           (p, g, m, v, n, lr, b1, b2, eps, wd, grad_scale, t))
#undef SL_TIMED
};

}  // namespace sl
