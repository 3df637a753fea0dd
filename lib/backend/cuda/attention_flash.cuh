// The two attention paths' shared pieces (attention.cu: the fp32-exact 3xTF32 kernels and the
// row dots D; attention_flash.cu: the bf16 tensor-core kernels).
#pragma once
#include <cstdint>

#include "backend/cuda/common.cuh"

namespace sl::cuda {

// attention.cu: D[b*H + h, t] = sum_c dout[b, t, h, c] out[b, t, h, c] (fp32).
void attention_row_dots(Ctx& ctx, float* D, DPtr dout, DPtr out, int64_t B, int64_t T, int64_t H,
                        int64_t hd);

// attention_flash.cu: the bf16 path, with the signatures of ops.h's attention_forward and
// attention_backward. Each returns false, having launched nothing, when the call is not one it
// takes (an input not bf16 or not 16-byte aligned, lse not fp32, hd not a multiple of 8 up to
// 128); the caller then runs the fp32-exact kernels.
bool flash_attention_forward(Ctx& ctx, DPtr out, DPtr lse, DPtr q, DPtr k, DPtr v, int64_t ldv,
                             int64_t B, int64_t T, int64_t H, int64_t hd);
bool flash_attention_backward(Ctx& ctx, DPtr dq, DPtr dk, DPtr dv, DPtr dout, DPtr q, DPtr k,
                              DPtr v, int64_t ldv, DPtr out, DPtr lse, int64_t B, int64_t T,
                              int64_t H, int64_t hd, bool accumulate);

// attention_wgmma.cu: the forward on Hopper's warpgroup MMA, for the calls flash_attention_forward
// takes; false (nothing launched) on a device other than compute capability 9.0. `variant` picks a
// tile shape (0: the default; others for `bench --op` tuning through SL_CUDA_ATTENTION_VARIANT).
bool wgmma_attention_forward(Ctx& ctx, DPtr out, DPtr lse, DPtr q, DPtr k, DPtr v, int64_t ldv,
                             int64_t B, int64_t T, int64_t H, int64_t hd, int variant);

}  // namespace sl::cuda
