// CPU reference ops: templated free functions (T = float or double), one file per op in this
// folder, forward and backward side by side. Shapes, layouts and the gradient convention are those
// of core/backend.h (backward ops ACCUMULATE into every gradient output; null pointer = skip).
// Every function is explicitly instantiated for float and double in its .cc file and
// multi-threaded with OpenMP over rows/tokens/heads. Reductions use a fixed order so results are
// bitwise reproducible for a given thread count.
#pragma once
#include <cstdint>

namespace sl::cpu {

// embedding.cc
template <class T>
void embedding_forward(T* out, const int32_t* ids, const T* wte, int64_t BT, int64_t d);
template <class T>
void embedding_backward(T* dwte, const int32_t* ids, const T* dout, int64_t BT, int64_t d);

// matmul.cc (Eigen GEMM)
template <class T>
void matmul_forward(T* y, const T* x, int64_t ldx, const T* w, int64_t M, int64_t K, int64_t N,
                    bool accumulate);
template <class T>
void matmul_backward(T* dx, T* dw, const T* dy, const T* x, int64_t ldx, const T* w, int64_t M,
                     int64_t K, int64_t N);

// rmsnorm.cc
template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, int64_t ldx, const T* w, int64_t R, int64_t C,
                     T eps, const T* res = nullptr, T* y_copy = nullptr);
template <class T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, int64_t ldx, const T* w, const T* rstd,
                      int64_t R, int64_t C);

// QK-norm + RoPE: y = rope(rms(x)) over rows of H heads; x [BT, H hd] ld ldx.
template <class T>
void rmsnorm_rope_forward(T* y, T* rstd, const T* x, int64_t ldx, const T* w, int64_t B, int64_t T_,
                          int64_t H, int64_t hd, T eps, double theta);
template <class T>
void rmsnorm_rope_backward(T* dx, T* dw, const T* dy, const T* x, int64_t ldx, const T* w,
                           const T* rstd, int64_t B, int64_t T_, int64_t H, int64_t hd,
                           double theta);

// rope.cc
template <class T>
void rope_forward(T* x, int64_t B, int64_t T_, int64_t H, int64_t hd, double theta);
template <class T>
void rope_backward(T* dx, int64_t B, int64_t T_, int64_t H, int64_t hd, double theta);

// attention.cc (exact softmax; scores recomputed in backward from lse)
template <class T>
void attention_forward(T* out, T* lse, const T* q, const T* k, const T* v, int64_t ldv, int64_t B,
                       int64_t T_, int64_t H, int64_t hd);
template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                        int64_t ldv, const T* out, const T* lse, int64_t B, int64_t T_, int64_t H,
                        int64_t hd);

// swiglu.cc
template <class T>
void swiglu_forward(T* h, const T* gu, int64_t R, int64_t m);
template <class T>
void swiglu_backward(T* dgu, const T* dh, const T* gu, int64_t R, int64_t m);

// conv1d.cc
template <class T>
void conv1d_silu_forward(T* y, const T* x, int64_t ldx, const T* w, int64_t B, int64_t T_,
                         int64_t C, int64_t K);
template <class T>
void conv1d_silu_backward(T* dx, T* dw, const T* dy, const T* x, int64_t ldx, const T* w, int64_t B,
                          int64_t T_, int64_t C, int64_t K);

// l2norm.cc
template <class T>
void l2norm_forward(T* y, T* rnorm, const T* x, int64_t ldx, int64_t BT, int64_t H, int64_t C,
                    T scale, T eps);
template <class T>
void l2norm_backward(T* dx, const T* dy, const T* x, int64_t ldx, const T* rnorm, int64_t BT,
                     int64_t H, int64_t C, T scale);

// gdn_gates.cc
template <class T>
void gdn_gates_forward(T* beta, T* g, const T* b, const T* a, int64_t ld, const T* A_log,
                       const T* dt_bias, int64_t BT, int64_t H, T beta_scale);
template <class T>
void gdn_gates_backward(T* db, T* da, T* dA_log, T* ddt_bias, const T* dbeta, const T* dg,
                        const T* b, const T* a, int64_t ld, const T* A_log, const T* dt_bias,
                        int64_t BT, int64_t H, T beta_scale);

// gated_rmsnorm.cc
template <class T>
void gated_rmsnorm_forward(T* y, T* rstd, const T* x, const T* gate, int64_t ldg, const T* w,
                           int64_t R, int64_t H, int64_t C, T eps);
template <class T>
void gated_rmsnorm_backward(T* dx, T* dgate, T* dw, const T* dy, const T* x, const T* gate,
                            int64_t ldg, const T* w, const T* rstd, int64_t R, int64_t H,
                            int64_t C);

// cross_entropy.cc
template <class T>
double cross_entropy(T* losses, T* dlogits, const T* logits, const int32_t* targets, int64_t BT,
                     int64_t V, T dscale);

// adamw.cc
template <class T>
void adamw(T* p, const T* g, T* m, T* v, int64_t n, double lr, double b1, double b2, double eps,
           double wd, double grad_scale, int64_t t);

}  // namespace sl::cpu
