// CUDA ops: host launchers, one .cu file per op group in this folder (mirroring backend/cpu),
// forward and backward side by side. Shapes, layouts and the gradient convention are those of
// core/backend.h: backward ops ACCUMULATE (+=) into every gradient output; a null DPtr gradient
// output is skipped. Index arrays (ids, targets, AdamW items) and the f64 step scalars are
// device pointers. Everything is enqueued on ctx.stream and nothing waits for the device, so a
// step can be captured into a CUDA graph.
#pragma once
#include <cstdint>

#include "backend/cuda/common.cuh"

namespace sl::cuda {

// elementwise.cu
void convert(Ctx& ctx, DPtr dst, DPtr src, int64_t n);
void axpy(Ctx& ctx, DPtr y, DPtr x, float alpha, int64_t n);
void copy2d(Ctx& ctx, DPtr dst, int64_t ld_dst, DPtr src, int64_t ld_src, int64_t rows,
            int64_t cols, bool accumulate);
void scale(Ctx& ctx, DPtr x, float s, int64_t n);
void sum_squares(Ctx& ctx, double* out, DPtr x, int64_t n);  // *out = sum x^2

// embedding.cu
// index: the device copy of core/backend.h's embedding_index layout.
void embedding_forward(Ctx& ctx, DPtr out, const int32_t* index, DPtr wte, int64_t BT, int64_t d);
void embedding_backward(Ctx& ctx, DPtr dwte, const int32_t* index, DPtr dout, int64_t BT,
                        int64_t d);

// matmul.cu (cuBLASLt GEMMs through ctx.gemm, fp32 accumulation)
GemmPlans* gemm_plans_create(cudaStream_t stream);
void gemm_plans_destroy(GemmPlans* g);
void matmul_forward(Ctx& ctx, const Tensor& y, const Tensor& x, int64_t ldx, const Tensor& w,
                    int64_t M, int64_t K, int64_t N, bool accumulate);
void matmul_backward(Ctx& ctx, const Tensor& dx, const Tensor& dw, const Tensor& dy,
                     const Tensor& x, int64_t ldx, const Tensor& w, int64_t M, int64_t K,
                     int64_t N);

// rmsnorm.cu
void rmsnorm_forward(Ctx& ctx, DPtr y, DPtr rstd, DPtr x, int64_t ldx, DPtr w, int64_t R, int64_t C,
                     float eps);
void rmsnorm_backward(Ctx& ctx, DPtr dx, DPtr dw, DPtr dy, DPtr x, int64_t ldx, DPtr w, DPtr rstd,
                      int64_t R, int64_t C);

// rope.cu: cs, sn are device tables [T, hd/2] of cos/sin(t * inv_freq_i).
void rope(Ctx& ctx, DPtr x, const float* cs, const float* sn, int64_t B, int64_t T, int64_t H,
          int64_t hd, float sign);

// attention.cu
void attention_forward(Ctx& ctx, DPtr out, DPtr lse, DPtr q, DPtr k, DPtr v, int64_t ldv, int64_t B,
                       int64_t T, int64_t H, int64_t hd);
void attention_backward(Ctx& ctx, DPtr dq, DPtr dk, DPtr dv, DPtr dout, DPtr q, DPtr k, DPtr v,
                        int64_t ldv, DPtr out, DPtr lse, int64_t B, int64_t T, int64_t H,
                        int64_t hd);

// swiglu.cu
void swiglu_forward(Ctx& ctx, DPtr h, DPtr gu, int64_t R, int64_t m);
void swiglu_backward(Ctx& ctx, DPtr dgu, DPtr dh, DPtr gu, int64_t R, int64_t m);

// conv1d.cu
void conv1d_silu_forward(Ctx& ctx, DPtr y, DPtr x, int64_t ldx, DPtr w, int64_t B, int64_t T,
                         int64_t C, int64_t K);
void conv1d_silu_backward(Ctx& ctx, DPtr dx, DPtr dw, DPtr dy, DPtr x, int64_t ldx, DPtr w,
                          int64_t B, int64_t T, int64_t C, int64_t K);

// l2norm.cu
void l2norm_forward(Ctx& ctx, DPtr y, DPtr rnorm, DPtr x, int64_t ldx, int64_t BT, int64_t H,
                    int64_t C, float scale, float eps);
void l2norm_backward(Ctx& ctx, DPtr dx, DPtr dy, DPtr x, int64_t ldx, DPtr rnorm, int64_t BT,
                     int64_t H, int64_t C, float scale);

// gdn_gates.cu
void gdn_gates_forward(Ctx& ctx, DPtr beta, DPtr g, DPtr b, DPtr a, int64_t ld, DPtr A_log,
                       DPtr dt_bias, int64_t BT, int64_t H, float beta_scale);
void gdn_gates_backward(Ctx& ctx, DPtr db, DPtr da, DPtr dA_log, DPtr ddt_bias, DPtr dbeta, DPtr dg,
                        DPtr b, DPtr a, int64_t ld, DPtr A_log, DPtr dt_bias, int64_t BT, int64_t H,
                        float beta_scale);

// gated_deltanet.cu (chunkwise WY/UT form, chunk 64, fp32 state)
void gdn_forward(Ctx& ctx, DPtr out, DPtr states, DPtr q, DPtr k, DPtr v, DPtr beta, DPtr g,
                 int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv);
void gdn_backward(Ctx& ctx, DPtr dq, DPtr dk_, DPtr dv_, DPtr dbeta, DPtr dg, DPtr dout,
                  DPtr states, DPtr q, DPtr k, DPtr v, DPtr beta, DPtr g, int64_t B, int64_t T,
                  int64_t H, int64_t dk, int64_t dv);

// gated_rmsnorm.cu
void gated_rmsnorm_forward(Ctx& ctx, DPtr y, DPtr rstd, DPtr x, DPtr gate, int64_t ldg, DPtr w,
                           int64_t R, int64_t H, int64_t C, float eps);
void gated_rmsnorm_backward(Ctx& ctx, DPtr dx, DPtr dgate, DPtr dw, DPtr dy, DPtr x, DPtr gate,
                            int64_t ldg, DPtr w, DPtr rstd, int64_t R, int64_t H, int64_t C);

// cross_entropy.cu
void cross_entropy(Ctx& ctx, double* loss_sum, DPtr losses, DPtr dlogits, DPtr logits,
                   const int32_t* targets, int64_t BT, int64_t V, const double* dscale);

// adamw.cu
void adamw(Ctx& ctx, DPtr p, DPtr g, DPtr m, DPtr v, DPtr p_compute, const int32_t* items,
           int64_t n_items, int64_t n_total, const double* step, float b1, float b2, float eps,
           float wd, float max_norm);

}  // namespace sl::cuda
