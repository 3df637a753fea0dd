// bf16 tensor-core building blocks for register-tiled kernels (sm_80+ instructions; the default
// build targets sm_90a): asynchronous global -> shared copies, ldmatrix fragment loads and the
// m16n8k16 bf16 MMA with fp32 accumulation.
//
// Fragment layouts of mma.sync.m16n8k16 (lane = 4 g + q, g = lane / 4, q = lane % 4; each
// register holds two consecutive bf16, the lower column in the low half):
//   A [16 x 16], row-major:  a0 = A[g][2q..2q+1]    a1 = A[g+8][2q..]
//                            a2 = A[g][8+2q..]      a3 = A[g+8][8+2q..]
//   B [16 x 8] (k x n):      b0 = B[2q..2q+1][g]    b1 = B[8+2q..][g]
//   C [16 x 8] fp32:         c0, c1 = C[g][2q], C[g][2q+1]   c2, c3 = C[g+8][2q], C[g+8][2q+1]
// ldmatrix.x4 loads four 8 x 8 b16 matrices whose row addresses come from lanes 8i..8i+7 (matrix
// i); lane gets M_i[g][2q..2q+1] in register i, or with .trans M_i[2q..2q+1][g]. So:
//   - an A fragment of a row-major [rows][k] tile: lane points at row (lane & 15), column
//     (lane >> 4) * 8 of the 16 x 16 block (a_frag_addr);
//   - B fragments for two n-tiles when B^T is stored row-major ([n][k], e.g. K for Q K^T): row
//     (lane & 7) + ((lane >> 4) << 3), column ((lane >> 3) & 1) * 8 (bt_frag_addr); registers
//     0, 1 are b0, b1 of n-tile 0 and 2, 3 those of n-tile 1;
//   - B fragments for two n-tiles when B is stored row-major ([k][n], e.g. V for P V), with
//     .trans: row (lane & 7) + (((lane >> 3) & 1) << 3), column (lane >> 4) * 8 (b_frag_addr);
//   - an A fragment when A^T is stored row-major ([k][rows]), with .trans: row (lane & 7) +
//     ((lane >> 4) << 3), column ((lane >> 3) & 1) * 8 (same as bt_frag_addr).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace sl::cuda {

using bf16 = __nv_bfloat16;

__device__ inline unsigned smem_u32(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, asynchronously; zero-filled (nothing read) when !pred. `src` must be
// a valid address even when !pred.
__device__ inline void cp_async16(void* dst, const void* src, bool pred) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(pred ? 16 : 0));
}
// 4 bytes, likewise.
__device__ inline void cp_async4(void* dst, const void* src, bool pred) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
               "r"(pred ? 4 : 0));
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ inline void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ inline void ldsm_x4(unsigned (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}
__device__ inline void ldsm_x4_t(unsigned (&r)[4], const bf16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

// Element offsets (row * ld + col) of this lane's ldmatrix row address in a 16 x 16 block.
__device__ inline int a_frag_addr(int lane, int ld) { return (lane & 15) * ld + (lane >> 4) * 8; }
__device__ inline int bt_frag_addr(int lane, int ld) {
  return ((lane & 7) + ((lane >> 4) << 3)) * ld + ((lane >> 3) & 1) * 8;
}
__device__ inline int b_frag_addr(int lane, int ld) {
  return ((lane & 7) + (((lane >> 3) & 1) << 3)) * ld + (lane >> 4) * 8;
}

// c += a b (m16n8k16, bf16 operands, fp32 accumulators).
__device__ inline void mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as a bf16 pair (lo in the low half), round to nearest even.
__device__ inline unsigned pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const unsigned*>(&v);
}

// The A fragment of a 16 x 16 block held as two C fragments (n-tiles 2k and 2k+1 of a product):
// how P = softmax(S) feeds P V without leaving registers.
__device__ inline void c_to_a(unsigned (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack_bf16(c0[0], c0[1]);
  a[1] = pack_bf16(c0[2], c0[3]);
  a[2] = pack_bf16(c1[0], c1[1]);
  a[3] = pack_bf16(c1[2], c1[3]);
}

// 2^x (MUFU.EX2, flush-to-zero; 2^-inf = 0).
__device__ inline float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace sl::cuda
