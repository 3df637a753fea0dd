// The attention paths' shared pieces (attention.cu: the fp32-exact 3xTF32 kernels and the row
// dots D; attention_flash.cu: the bf16 tensor-core kernels; attention_wgmma.cu: their sm_90a
// warpgroup-MMA versions).
#pragma once
#include <cmath>
#include <cstdint>

#include "backend/cuda/common.cuh"
#include "backend/cuda/mma_bf16.cuh"
#include "core/op_shapes.h"

namespace sl::cuda {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kBT = 64;  // backward tile: 64 keys x 64 queries (the dS^T tiles)

// The bf16 kernels' shape and scalars (both attention_flash.cu and attention_wgmma.cu).
struct FlashDims {
  int T, H, hd;
  int nqb;                  // backward query tiles, ceil(T / kBT)
  int64_t ld, ldv;          // token strides: q, k, out, dout, dq, dk (H hd); v, dv (ldv)
  float scale, scale_log2;  // 1/sqrt(hd), and that times log2(e)
  bool acc;                 // backward: gradients accumulated (+=) or written (=)
  __device__ int64_t ntri() const { return int64_t{nqb} * (nqb + 1) / 2; }  // dS tiles per head
};
inline FlashDims flash_dims(int64_t T, int64_t H, int64_t hd, int64_t ldv) {
  const float scale = 1.f / sqrtf(static_cast<float>(hd));
  return {static_cast<int>(T),
          static_cast<int>(H),
          static_cast<int>(hd),
          static_cast<int>((T + kBT - 1) / kBT),
          H * hd,
          ldv,
          scale,
          scale * kLog2e,
          false};
}

// The lane's column pairs c = 8n + 2q (< hd) of one row of an output with row offset `row`:
// p[row + c], p[row + c + 1] (= or, if acc, +=) scale * v[n][2hf], v[n][2hf + 1]. When
// accumulating, every
// old value is loaded before the first store: a load after a store through the same pointer
// cannot be hoisted above it, so interleaved read-modify-writes would each pay a full memory
// round trip. Pairs are 4-byte (bf16) or 8-byte (fp32) aligned (row + c even; eligible()).
template <int NO>
__device__ inline void store_row_pairs(DPtr p, int64_t row, int qd, int hd, const float (&v)[NO][4],
                                       int hf, float scale, bool acc) {
  float2 old[NO];
#pragma unroll
  for (int n = 0; n < NO; ++n) {
    old[n] = make_float2(0.f, 0.f);
    const int c = n * 8 + 2 * qd;
    if (acc && c < hd)
      old[n] = p.bf ? __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(
                          static_cast<const bf16*>(p.p) + row + c))
                    : *reinterpret_cast<const float2*>(static_cast<const float*>(p.p) + row + c);
  }
#pragma unroll
  for (int n = 0; n < NO; ++n) {
    const int c = n * 8 + 2 * qd;
    if (c >= hd) break;
    const float x = old[n].x + scale * v[n][2 * hf], y = old[n].y + scale * v[n][2 * hf + 1];
    if (p.bf)
      *reinterpret_cast<__nv_bfloat162*>(static_cast<bf16*>(p.p) + row + c) =
          __floats2bfloat162_rn(x, y);
    else
      *reinterpret_cast<float2*>(static_cast<float*>(p.p) + row + c) = make_float2(x, y);
  }
}

// attention.cu: D[b*H + h, t] = sum_c dout[b, t, h, c] out[b, t, h, c] (fp32).
void attention_row_dots(Ctx& ctx, float* D, DPtr dout, DPtr out, int64_t B, int64_t T, int64_t H,
                        int64_t hd);

// attention_flash.cu: the bf16 path, with the arguments of the op list's attention_forward and
// attention_backward (core/backend_ops.inc), tensors as device pointers. Each returns false, having
// launched nothing, when the call is not one it takes (an input not bf16 or not 16-byte aligned,
// lse not fp32, hd not a multiple of 8 up to 128); the caller then runs the fp32-exact kernels.
bool flash_attention_forward(Ctx& ctx, DPtr out, DPtr lse, DPtr q, DPtr k, DPtr v,
                             const AttnShape& shape);
bool flash_attention_backward(Ctx& ctx, DPtr dq, DPtr dk, DPtr dv, DPtr dout, DPtr q, DPtr k,
                              DPtr v, DPtr out, DPtr lse, const AttnShape& shape, bool accumulate);

// attention_wgmma.cu: the same kernels on Hopper's warpgroup MMA, for the calls the functions
// above take (B H = BH heads of shape A); each returns false, having launched nothing, on a device
// other than compute capability 9.0. `variant` picks a tile shape (0: the default; others for
// `bench --op` tuning through SL_CUDA_ATTENTION_VARIANT).
//   forward: out, lse as flash_attention_forward's;
//   dkv: dK, dV (per A.acc) and the dS^T tiles of the causal triangle that flash_bwd_dkv_kernel
//        writes (query tile i, key tile j, unscaled, bf16 [64 keys][64 queries], at index
//        i (i + 1) / 2 + j of the head's A.ntri()), from D = rowsum(dO O) and lse;
//   dq: dq (per A.acc) = scale sum_j dS_ij K_j from those tiles.
bool wgmma_attention_forward(Ctx& ctx, DPtr out, float* lse, const bf16* q, const bf16* k,
                             const bf16* v, const FlashDims& A, int64_t BH, int variant);
bool wgmma_attention_dkv(Ctx& ctx, DPtr dk, DPtr dv, bf16* dS, const bf16* q, const bf16* k,
                         const bf16* v, const bf16* dout, const float* lse, const float* D,
                         const FlashDims& A, int64_t BH, int variant);
bool wgmma_attention_dq(Ctx& ctx, DPtr dq, const bf16* dS, const bf16* k, const FlashDims& A,
                        int64_t BH);

}  // namespace sl::cuda
