// CpuBackend<T>: the Eigen/OpenMP reference backend. T = float for training, double for gradient
// checks. Activations, parameters and optimizer state are all of type T; every op forwards to the
// templated free function of the same name in ops.h / gated_deltanet.h.
#pragma once
#include "core/backend.h"

namespace sl {

template <class T>
class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(GdnAlgo gdn = GdnAlgo::chunk) : gdn_(gdn) {}
  static constexpr DType kType = sizeof(T) == 8 ? DType::f64 : DType::f32;

  std::string name() const override { return kType == DType::f64 ? "cpu64" : "cpu"; }
  DType act_dtype() const override { return kType; }
  DType param_dtype() const override { return kType; }

  Tensor alloc(int64_t n, DType t) override;
  void free(Tensor t) override;
  void zero(Tensor t) override;
  void upload(Tensor dst, const float* src) override;
  void download(float* dst, Tensor src) override;
  void convert(Tensor dst, Tensor src) override;

  void axpy(Tensor y, Tensor x, float alpha, int64_t n) override;
  void copy2d(Tensor dst, int64_t ld_dst, Tensor src, int64_t ld_src, int64_t rows, int64_t cols,
              bool accumulate) override;
  double sum_squares(Tensor x, int64_t n) override;
  void scale(Tensor x, float s, int64_t n) override;

  void embedding_forward(Tensor out, const int32_t* ids, Tensor wte, int64_t BT,
                         int64_t d) override;
  void embedding_backward(Tensor dwte, const int32_t* ids, Tensor dout, int64_t BT,
                          int64_t d) override;
  void matmul_forward(Tensor y, Tensor x, int64_t ldx, Tensor w, int64_t M, int64_t K, int64_t N,
                      bool accumulate) override;
  void matmul_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx, Tensor w, int64_t M,
                       int64_t K, int64_t N) override;
  void rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, int64_t ldx, Tensor w, int64_t R, int64_t C,
                       float eps) override;
  void rmsnorm_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx, Tensor w,
                        Tensor rstd, int64_t R, int64_t C) override;
  void rope_forward(Tensor x, int64_t B, int64_t T_, int64_t H, int64_t hd, float theta) override;
  void rope_backward(Tensor dx, int64_t B, int64_t T_, int64_t H, int64_t hd, float theta) override;
  void attention_forward(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, int64_t ldv,
                         int64_t B, int64_t T_, int64_t H, int64_t hd) override;
  void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k,
                          Tensor v, int64_t ldv, Tensor out, Tensor lse, int64_t B, int64_t T_,
                          int64_t H, int64_t hd) override;
  void swiglu_forward(Tensor h, Tensor gu, int64_t R, int64_t m) override;
  void swiglu_backward(Tensor dgu, Tensor dh, Tensor gu, int64_t R, int64_t m) override;
  void conv1d_silu_forward(Tensor y, Tensor x, int64_t ldx, Tensor w, int64_t B, int64_t T_,
                           int64_t C, int64_t K) override;
  void conv1d_silu_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx, Tensor w,
                            int64_t B, int64_t T_, int64_t C, int64_t K) override;
  void l2norm_forward(Tensor y, Tensor rnorm, Tensor x, int64_t ldx, int64_t BT, int64_t H,
                      int64_t C, float scale, float eps) override;
  void l2norm_backward(Tensor dx, Tensor dy, Tensor x, int64_t ldx, Tensor rnorm, int64_t BT,
                       int64_t H, int64_t C, float scale) override;
  void gdn_gates_forward(Tensor beta, Tensor g, Tensor b, Tensor a, int64_t ld, Tensor A_log,
                         Tensor dt_bias, int64_t BT, int64_t H, float beta_scale) override;
  void gdn_gates_backward(Tensor db, Tensor da, Tensor dA_log, Tensor ddt_bias, Tensor dbeta,
                          Tensor dg, Tensor b, Tensor a, int64_t ld, Tensor A_log, Tensor dt_bias,
                          int64_t BT, int64_t H, float beta_scale) override;
  void gdn_forward(Tensor out, Tensor states, Tensor q, Tensor k, Tensor v, Tensor beta, Tensor g,
                   int64_t B, int64_t T_, int64_t H, int64_t dk, int64_t dv) override;
  void gdn_backward(Tensor dq, Tensor dk_, Tensor dv_, Tensor dbeta, Tensor dg, Tensor dout,
                    Tensor states, Tensor q, Tensor k, Tensor v, Tensor beta, Tensor g, int64_t B,
                    int64_t T_, int64_t H, int64_t dk, int64_t dv) override;
  void gated_rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, Tensor gate, int64_t ldg, Tensor w,
                             int64_t R, int64_t H, int64_t C, float eps) override;
  void gated_rmsnorm_backward(Tensor dx, Tensor dgate, Tensor dw, Tensor dy, Tensor x, Tensor gate,
                              int64_t ldg, Tensor w, Tensor rstd, int64_t R, int64_t H,
                              int64_t C) override;
  double cross_entropy(Tensor losses, Tensor dlogits, Tensor logits, const int32_t* targets,
                       int64_t BT, int64_t V, float dscale) override;
  void adamw(Tensor p, Tensor g, Tensor m, Tensor v, int64_t n, float lr, float b1, float b2,
             float eps, float wd, float grad_scale, int64_t t) override;

 private:
  GdnAlgo gdn_;
};

extern template class CpuBackend<float>;
extern template class CpuBackend<double>;

}  // namespace sl
