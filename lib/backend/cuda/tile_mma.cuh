// Block-wide matrix products on shared-memory tiles, on tensor cores at fp32-level accuracy.
//
// WMMA TF32 (m16n16k8) with the 3xTF32 split a = a_hi + a_lo (a_hi = a truncated to TF32,
// a_lo = tf32(a - a_hi)): ab ~ a_hi b_hi + a_hi b_lo + a_lo b_hi, relative error ~2^-20, i.e.
// fp32-level, at tensor-core speed. An operand that came from bf16 (8-bit mantissa) is exact in
// TF32 (10 bits): its lo part is zero and the product that would use it is skipped, so bf16 x
// bf16 products cost one MMA and bf16 x fp32 two.
//
// Plain TF32 (one MMA, 10-bit operands) was tried on the GDN forward and doubled the model's
// bf16 gradient error (docs/PERFORMANCE.md): states and intermediates like Delta and P are fp32
// quantities and keep fp32 precision here.
#pragma once
#include <mma.h>

#include <cstdint>
#include <type_traits>

#include "backend/cuda/common.cuh"

namespace sl::cuda {

namespace wmma = nvcuda::wmma;

// `exact` bits for mm(): operand A / B holds values exactly representable in TF32 (from bf16).
constexpr int kExactA = 1, kExactB = 2;

// hi = x with its 13 low mantissa bits cleared (a TF32 value, so lo = x - hi is exact in fp32),
// lo = tf32(x - hi). An exact operand (widened bf16) is used as loaded: its low bits are zero.
template <class Frag>
__device__ inline void split_tf32(Frag& hi, Frag& lo) {
#pragma unroll
  for (int i = 0; i < hi.num_elements; ++i) {
    const float x = hi.x[i], h = __uint_as_float(__float_as_uint(x) & 0xffffe000u);
    hi.x[i] = h;
    lo.x[i] = wmma::__float_to_tf32(x - h);
  }
}

using AccFrag = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;

// One warp: c[n] += op(A)[i0 .. i0 + 16, 0 .. K) op(B)[0 .. K, j0 + 16 n .. j0 + 16 n + 16) for
// n < NB, in 3xTF32 (operand layouts and `exact` as in mm() below). Each A fragment loaded from
// shared memory feeds NB products (shared-memory loads and fragment splits, not the tensor
// cores, bound these kernels). Kernels that sum many products into the same tiles keep `c` in
// registers across calls (no shared-memory round trip of the accumulators).
template <bool TA, bool TB, int NB>
__device__ inline void warp_mma(AccFrag (&c)[NB], const float* A, int lda, const float* B, int ldb,
                                int i0, int j0, int K, int exact) {
  using LA = std::conditional_t<TA, wmma::col_major, wmma::row_major>;
  using LB = std::conditional_t<TB, wmma::col_major, wmma::row_major>;
  const bool xa = exact & kExactA, xb = exact & kExactB;
  // Not unrolled: the loads of every k step hoisted together spilled the kernels that keep
  // accumulators in registers (gdn_chunk_grad_kernel: 184 -> 120 bytes of spill stores); the
  // whole GDN op measured 0.5% (backward) to 2% (forward) faster so.
#pragma unroll 1
  for (int k0 = 0; k0 < K; k0 += 8) {
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, LA> ah, al;
    wmma::load_matrix_sync(ah, TA ? A + k0 * lda + i0 : A + i0 * lda + k0, lda);
    if (!xa) split_tf32(ah, al);
#pragma unroll
    for (int n = 0; n < NB; ++n) {
      const int j = j0 + 16 * n;
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, LB> bh, bl;
      wmma::load_matrix_sync(bh, TB ? B + j * ldb + k0 : B + k0 * ldb + j, ldb);
      if (!xb) split_tf32(bh, bl);
      if (!xa) wmma::mma_sync(c[n], al, bh, c[n]);
      if (!xb) wmma::mma_sync(c[n], ah, bl, c[n]);
      wmma::mma_sync(c[n], ah, bh, c[n]);
    }
  }
}

// One warp's share of mm(): output tiles of 16 x (16 NB), round-robin over the warps.
template <bool TA, bool TB, int NB>
__device__ void mm_warp_tiles(float* C, int ldc, const float* A, int lda, const float* B, int ldb,
                              int M, int N, int K, bool accumulate, int exact) {
  const int warp = threadIdx.x / 32, nw = blockDim.x / 32, tn = N / (16 * NB);
  for (int tile = warp; tile < (M / 16) * tn; tile += nw) {
    const int i0 = (tile / tn) * 16, j0 = (tile % tn) * 16 * NB;
    AccFrag c[NB];
#pragma unroll
    for (int n = 0; n < NB; ++n) {
      if (accumulate)
        wmma::load_matrix_sync(c[n], C + i0 * ldc + j0 + 16 * n, ldc, wmma::mem_row_major);
      else
        wmma::fill_fragment(c[n], 0.f);
    }
    warp_mma<TA, TB, NB>(c, A, lda, B, ldb, i0, j0, K, exact);
#pragma unroll
    for (int n = 0; n < NB; ++n)
      wmma::store_matrix_sync(C + i0 * ldc + j0 + 16 * n, c[n], ldc, wmma::mem_row_major);
  }
}

// C[M, N] = (accumulate ? C : 0) + op(A)[M, K] op(B)[K, N], fp32 row-major in shared memory.
// TA: A is stored transposed ([K, M], leading dim lda); TB: B is stored transposed ([N, K]).
// M, N multiples of 16, K of 8, leading dims multiples of 4, tile origins 32-byte aligned.
// Warps take the output tiles round-robin and the tiling depends on M and N only, so consecutive
// calls with the same M, N give each warp the same tiles: calls accumulating into one C need no
// barrier between them. C must not overlap A or B. The caller puts barriers before (inputs
// written) and after (C read by other warps).
template <bool TA, bool TB>
__device__ void mm(float* C, int ldc, const float* A, int lda, const float* B, int ldb, int M,
                   int N, int K, bool accumulate, int exact = 0) {
  // 16 x 32 warp tiles when there are enough of them to keep every warp busy.
  if (N % 32 == 0 && (M / 16) * (N / 32) >= int(blockDim.x / 32))
    mm_warp_tiles<TA, TB, 2>(C, ldc, A, lda, B, ldb, M, N, K, accumulate, exact);
  else
    mm_warp_tiles<TA, TB, 1>(C, ldc, A, lda, B, ldb, M, N, K, accumulate, exact);
  __syncwarp();
}

// dst [NR][ldd] (fp32, shared) <- the [nr, nc] block of `src` at element offset `off` with row
// stride `stride`, zero in the padding rows nr .. NR and columns nc .. NC. When every row start is
// 16-byte aligned and nc is a whole number of 16-byte vectors, each thread moves 16 bytes per
// load (8 bf16 or 4 f32) instead of one element: these tiles are reloaded for every chunk or key
// block, and scalar 2-byte loads left the tensor-core kernels waiting on memory.
__device__ inline void load_tile(float* dst, int ldd, DPtr src, int64_t off, int64_t stride, int nr,
                                 int NR, int nc, int NC) {
  const int vec = src.bf ? 8 : 4;  // elements per 16-byte load
  const int esz = src.bf ? 2 : 4;
  const bool vok = nc % vec == 0 && NC % vec == 0 && ldd % 4 == 0 &&
                   (reinterpret_cast<uintptr_t>(src.p) + off * esz) % 16 == 0 &&
                   (stride * esz) % 16 == 0;
  if (!vok) {
    for (int i = threadIdx.x; i < NR * NC; i += blockDim.x) {
      const int r = i / NC, c = i % NC;
      dst[r * ldd + c] = r < nr && c < nc ? src.ld(off + r * stride + c) : 0.f;
    }
    return;
  }
  const int cpr = NC / vec;  // vectors per row
#pragma unroll 4
  for (int i = threadIdx.x; i < NR * cpr; i += blockDim.x) {
    const int r = i / cpr, c = (i % cpr) * vec;
    float* d = dst + r * ldd + c;
    if (r < nr && c < nc) {
      const int64_t e = off + r * stride + c;
      if (src.bf) {
        const uint4 u =
            *reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(src.p) + e);
        const __nv_bfloat162* p2 = reinterpret_cast<const __nv_bfloat162*>(&u);
        const float2 a = __bfloat1622float2(p2[0]), b = __bfloat1622float2(p2[1]),
                     cc = __bfloat1622float2(p2[2]), dd = __bfloat1622float2(p2[3]);
        reinterpret_cast<float4*>(d)[0] = make_float4(a.x, a.y, b.x, b.y);
        reinterpret_cast<float4*>(d)[1] = make_float4(cc.x, cc.y, dd.x, dd.y);
      } else {
        *reinterpret_cast<float4*>(d) =
            *reinterpret_cast<const float4*>(static_cast<const float*>(src.p) + e);
      }
    } else {
      for (int x = 0; x < vec; ++x) d[x] = 0.f;
    }
  }
}

// out[off + r * stride + c] += scale_r * src[r * lds + c] for r < nr, c < nc (scale null: 1), src
// in shared memory. Each thread loads its next 8 elements of `out` before it stores any: the
// compiler cannot move a load above a store that may alias it, so an element-by-element
// read-modify-write waits one global round trip per element (8 serial round trips a thread
// for a 64 x 32 tile of 256 threads).
__device__ inline void add_tile(DPtr out, int64_t off, int64_t stride, const float* src, int lds,
                                int nr, int nc, const float* scale = nullptr) {
  constexpr int kBatch = 8;
  const int n = nr * nc, nth = blockDim.x;
  for (int i0 = threadIdx.x; i0 < n; i0 += kBatch * nth) {
    int64_t o[kBatch];
    float v[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = i0 + u * nth, r = i / nc, c = i % nc;
      if (i < n) {
        o[u] = off + r * stride + c;
        v[u] = out.ld(o[u]) + (scale ? scale[r] : 1.f) * src[r * lds + c];
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u)
      if (i0 + u * nth < n) out.st(o[u], v[u]);
  }
}

}  // namespace sl::cuda
