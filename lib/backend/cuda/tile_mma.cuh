// Block-wide matrix products on shared-memory tiles, on tensor cores at fp32-level accuracy.
//
// mma.sync m16n8k8 TF32 (fp32 accumulation) with the 3xTF32 split a = a_hi + a_lo (a_hi = a with
// its 13 low mantissa bits cleared, a TF32 value; a_lo = a - a_hi, exact in fp32): ab ~ a_hi b_hi
// + a_hi b_lo + a_lo b_hi, relative error ~2^-20, i.e. fp32-level, at tensor-core speed. An
// operand that came from bf16 (8-bit mantissa) is exact in TF32 (10 bits): its lo part is zero
// and the product that would use it is skipped, so bf16 x bf16 products cost one MMA and bf16 x
// fp32 two.
//
// Raw PTX rather than WMMA: WMMA's fragment loads are generic (LD, not LDS), its layouts are
// opaque and its tf32 conversion rounds (a compare and selects per element); here a fragment
// element is one shared-memory load, the split two instructions (LOP3, FADD), and the
// accumulator layout is known (Acc below). The MMA reads the top 19 bits of a_lo (truncation):
// an error of 2^-11 |a_lo| <= 2^-21 |a|.
//
// Plain TF32 (one MMA, 10-bit operands) was tried on the GDN forward and doubled the model's
// bf16 gradient error (docs/PERFORMANCE.md): states and intermediates like Delta and P are fp32
// quantities and keep fp32 precision here.
#pragma once
#include <cstdint>
#include <type_traits>

#include "backend/cuda/common.cuh"
#include "backend/cuda/mma_bf16.cuh"

namespace sl::cuda {

// `exact` bits for mm(): operand A / B holds values exactly representable in TF32 (from bf16).
constexpr int kExactA = 1, kExactB = 2;
__device__ inline int ex(bool a, bool b) { return (a ? kExactA : 0) | (b ? kExactB : 0); }

// A 16 x 16 fp32 accumulator tile of one warp: two m16n8 MMA accumulators. With g = lane / 4,
// t = lane % 4, c[h] holds C[g][8h + 2t], C[g][8h + 2t + 1], C[g + 8][8h + 2t], C[g + 8][8h + 2t +
// 1].
struct Acc {
  float c[2][4] = {};
};
__device__ inline void load_acc(Acc& a, const float* C, int ldc, int i0, int j0) {
  const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float* p = C + (i0 + g + 8 * r) * ldc + j0 + 8 * h + 2 * t;
      a.c[h][2 * r] = p[0];
      a.c[h][2 * r + 1] = p[1];
    }
}
__device__ inline void store_acc(float* C, int ldc, int i0, int j0, const Acc& a) {
  const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float* p = C + (i0 + g + 8 * r) * ldc + j0 + 8 * h + 2 * t;
      p[0] = a.c[h][2 * r];
      p[1] = a.c[h][2 * r + 1];
    }
}

// d += a b for one m16n8k8 TF32 MMA (a: 4 registers, b: 2, row.col layouts).
__device__ inline void mma_tf32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
// hi <- x with the 13 low mantissa bits cleared, lo <- x - hi (both as MMA operand bits).
template <int N>
__device__ inline void split_tf32(const float (&x)[N], uint32_t (&hi)[N], uint32_t (&lo)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) {
    hi[i] = __float_as_uint(x[i]) & 0xffffe000u;
    lo[i] = __float_as_uint(x[i] - __uint_as_float(hi[i]));
  }
}

// One warp: c[n] += op(A)[i0 .. i0 + 16, 0 .. K) op(B)[0 .. K, j0 + 16 n .. j0 + 16 n + 16) for
// n < NB, in 3xTF32 (operand layouts and `exact` as in mm() below). Each A fragment loaded from
// shared memory feeds NB products. Kernels that sum many products into the same tiles keep `c`
// in registers across calls (no shared-memory round trip of the accumulators). Fragment element
// addresses (g = lane / 4, t = lane % 4): A (i0 + g (+8), k0 + t (+4)), B (k0 + t (+4), n0 + g);
// with leading dims = 4 (mod 32) the non-transposed A and the transposed B are conflict-free.
// U: the k loop's unroll factor (1 or 2; see below).
template <bool TA, bool TB, int NB, int U = 1>
__device__ inline void warp_mma(Acc (&c)[NB], const float* A, int lda, const float* B, int ldb,
                                int i0, int j0, int K, int exact) {
  const bool xa = exact & kExactA, xb = exact & kExactB;
  const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
  // Element (row r, column k) of op(A) and (k, column n) of op(B).
  const auto a_at = [&](int r, int k) { return TA ? A[k * lda + r] : A[r * lda + k]; };
  const auto b_at = [&](int k, int n) { return TB ? B[n * ldb + k] : B[k * ldb + n]; };
  // Rolled (U = 1) by default: unrolled, gdn_dstate_kernel spills 24 bytes at its 80-register
  // cap and the GDN backward measured 3-5% slower (2026-12-02); the forward's kernels take U = 2
  // (the next step's fragment loads issued under this step's MMAs: GDN forward -3%).
#pragma unroll U
  for (int k0 = 0; k0 < K; k0 += 8) {
    const float af[4] = {a_at(i0 + g, k0 + t), a_at(i0 + g + 8, k0 + t), a_at(i0 + g, k0 + t + 4),
                         a_at(i0 + g + 8, k0 + t + 4)};
    uint32_t ah[4], al[4];
    split_tf32(af, ah, al);
#pragma unroll
    for (int n = 0; n < NB; ++n)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int col = j0 + 16 * n + 8 * h + g;
        const float bf[2] = {b_at(k0 + t, col), b_at(k0 + t + 4, col)};
        uint32_t bh[2], bl[2];
        split_tf32(bf, bh, bl);
        if (!xa) mma_tf32(c[n].c[h], al, bh);
        if (!xb) mma_tf32(c[n].c[h], ah, bl);
        mma_tf32(c[n].c[h], ah, bh);
      }
  }
}

// warp_mma on split tiles (bf16x3), below.
template <bool TA, bool TB, int NB, bool kRoll = false>
__device__ inline void warp_mma_x3(Acc (&c)[NB], const float* A, int lda, const float* B, int ldb,
                                   int i0, int j0, int K, int exact);

// One warp's share of mm() (kSplit: of mm_x3(), on split tiles): output tiles of 16 x (16 NB),
// round-robin over the warps. kRoll: warp_mma_x3's k loop kept rolled.
template <bool TA, bool TB, int NB, int U = 1, bool kSplit = false, bool kRoll = false>
__device__ void mm_warp_tiles(float* C, int ldc, const float* A, int lda, const float* B, int ldb,
                              int M, int N, int K, bool accumulate, int exact) {
  const int warp = threadIdx.x / 32, nw = blockDim.x / 32, tn = N / (16 * NB);
  for (int tile = warp; tile < (M / 16) * tn; tile += nw) {
    const int i0 = (tile / tn) * 16, j0 = (tile % tn) * 16 * NB;
    Acc c[NB];
    if (accumulate)
#pragma unroll
      for (int n = 0; n < NB; ++n) load_acc(c[n], C, ldc, i0, j0 + 16 * n);
    if constexpr (kSplit)
      warp_mma_x3<TA, TB, NB, kRoll>(c, A, lda, B, ldb, i0, j0, K, exact);
    else
      warp_mma<TA, TB, NB, U>(c, A, lda, B, ldb, i0, j0, K, exact);
#pragma unroll
    for (int n = 0; n < NB; ++n) store_acc(C, ldc, i0, j0 + 16 * n, c[n]);
  }
}

// C[M, N] = (accumulate ? C : 0) + op(A)[M, K] op(B)[K, N], fp32 row-major in shared memory.
// TA: A is stored transposed ([K, M], leading dim lda); TB: B is stored transposed ([N, K]).
// M, N multiples of 16, K of 8.
// Warps take the output tiles round-robin and the tiling depends on M and N only, so consecutive
// calls with the same M, N give each warp the same tiles: calls accumulating into one C need no
// barrier between them. C must not overlap A or B. The caller puts barriers before (inputs
// written) and after (C read by other warps).
template <bool TA, bool TB, int U = 1>
__device__ void mm(float* C, int ldc, const float* A, int lda, const float* B, int ldb, int M,
                   int N, int K, bool accumulate, int exact = 0) {
  // 16 x 32 warp tiles when there are enough of them to keep every warp busy.
  if (N % 32 == 0 && (M / 16) * (N / 32) >= int(blockDim.x / 32))
    mm_warp_tiles<TA, TB, 2, U>(C, ldc, A, lda, B, ldb, M, N, K, accumulate, exact);
  else
    mm_warp_tiles<TA, TB, 1, U>(C, ldc, A, lda, B, ldb, M, N, K, accumulate, exact);
  __syncwarp();
}

// ---- bf16x3: fp32 operands split once, in shared memory, for m16n8k16 bf16 MMAs ---------------
// x = hi + lo + r with hi = bf16(x), lo = bf16(x - hi) (x - hi is exact in fp32): |r| <= 2^-16
// |x|, and ab ~ a_hi b_hi + a_hi b_lo + a_lo b_hi drops a_lo b_lo (<= 2^-16 |ab|): ~2^-15
// relative at worst, against 3xTF32's ~2^-20 and plain TF32's 2^-11 (which doubled the model's
// gradient error). What it buys: the split happens once per element, where the tile is written,
// instead of in every warp that reads a fragment (LOP3 + FADD an element, the LDS scalar), and a
// fragment is one ldmatrix: a k16 step of a 16 x 32 warp tile is 6 ldmatrix + 12 MMAs where
// 3xTF32 took two k8 steps of ~48 instructions each (ncu on the GDN chunk-gradient kernel,
// 2026-12-02: HMMA 6.7% of its instructions, LDS, FADD and LOP3 33%).
//
// A split tile keeps the fp32 tile's geometry: row r at float offset r * ld, and the 32 bytes of
// an 8-column chunk (columns 8c .. 8c + 8, floats 8c .. 8c + 8 of the row) hold the 8 bf16 hi
// (bytes 0 .. 16) then the 8 bf16 lo (16 .. 32), so a tile is split in place, a thread a chunk,
// with no barrier between its read and its write. Rows are 16-byte aligned (ld % 4 == 0); with
// ld = 4 (mod 8) floats (e.g. 36, 68; 20 and 52 too) the 8 row addresses of an ldmatrix fall in
// distinct bank groups.

// The 8 floats x as a split chunk at p (32 bytes, 16-byte aligned).
__device__ inline void put_split(float* p, const float (&x)[8]) {
  unsigned hi[4], lo[4];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x[2 * e], x[2 * e + 1]);
    const float2 hf = __bfloat1622float2(h);
    hi[e] = *reinterpret_cast<const unsigned*>(&h);
    lo[e] = pack_bf16(x[2 * e] - hf.x, x[2 * e + 1] - hf.y);
  }
  reinterpret_cast<uint4*>(p)[0] = make_uint4(hi[0], hi[1], hi[2], hi[3]);
  reinterpret_cast<uint4*>(p)[1] = make_uint4(lo[0], lo[1], lo[2], lo[3]);
}
// The 8 floats of the (fp32) chunk at p.
__device__ inline void get_chunk(const float* p, float (&x)[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z, x[7] = b.w;
}
// The two values of a split pair: hi word h, lo word l (two bf16 each, the lower column in the
// low half): x = hi + lo.
__device__ inline void split_pair(unsigned h, unsigned l, float& x0, float& x1) {
  x0 = __uint_as_float(h << 16) + __uint_as_float(l << 16);
  x1 = __uint_as_float(h & 0xffff0000u) + __uint_as_float(l & 0xffff0000u);
}
// The 8 values of the split chunk at p (hi + lo: x to ~2^-16).
__device__ inline void get_split(const float* p, float (&x)[8]) {
  const uint4 h = reinterpret_cast<const uint4*>(p)[0], l = reinterpret_cast<const uint4*>(p)[1];
  split_pair(h.x, l.x, x[0], x[1]);
  split_pair(h.y, l.y, x[2], x[3]);
  split_pair(h.z, l.z, x[4], x[5]);
  split_pair(h.w, l.w, x[6], x[7]);
}
// Chunk i of an [R][ld] tile of C columns (C % 8 == 0), row-major order: its first float.
__device__ inline float* chunk_at(float* T, int ld, int C, int i) {
  return T + (i / (C / 8)) * ld + (i % (C / 8)) * 8;
}
// The [R][C] fp32 tile T (leading dim ld) split in place, block-wide, a thread a chunk (no
// barrier inside: the caller orders it after the tile's writers and before its readers).
__device__ inline void split_tile(float* T, int ld, int R, int C) {
  for (int i = threadIdx.x; i < R * (C / 8); i += blockDim.x) {
    float* p = chunk_at(T, ld, C, i);
    float x[8];
    get_chunk(p, x);
    put_split(p, x);
  }
}

// warp_mma on split tiles: c[n] += op(A)[i0 .. i0 + 16, 0 .. K) op(B)[0 .. K, j0 + 16 n ..) for
// n < NB, in bf16x3 (hi hi + hi lo + lo hi; `exact` as in mm(): an operand from bf16 has lo = 0
// and its product is skipped). TA: A stored [K][M]; TB: B stored [N][K] (as in mm()). K % 16 == 0.
// Fragment addresses as in mma_bf16.cuh (the float offset of a column is the same in a split
// tile as in the fp32 one); a lo plane is 4 floats past its hi. kRoll: the k loop stays rolled
// (the compiler's unrolling hoists the next steps' fragments: in the GDN chunk-gradient kernel,
// at its 128-register cap beside the sums' accumulators, 200 bytes of spills against 24).
template <bool TA, bool TB, int NB, bool kRoll>
__device__ inline void warp_mma_x3(Acc (&c)[NB], const float* A, int lda, const float* B, int ldb,
                                   int i0, int j0, int K, int exact) {
  const bool xa = exact & kExactA, xb = exact & kExactB;
  const int l = threadIdx.x % 32;
  const float* pa = TA ? A + ((l & 7) + ((l >> 4) << 3)) * lda + i0 + ((l >> 3) & 1) * 8
                       : A + (i0 + (l & 15)) * lda + (l >> 4) * 8;
  const float* pb = TB ? B + (j0 + (l & 7) + ((l >> 4) << 3)) * ldb + ((l >> 3) & 1) * 8
                       : B + ((l & 7) + (((l >> 3) & 1) << 3)) * ldb + j0 + (l >> 4) * 8;
  const int sa = TA ? 16 * lda : 16, sb = TB ? 16 : 16 * ldb;  // a k16 step
  const int nb = TB ? 16 * ldb : 16;                           // the next 16 output columns
  const auto lda_x4 = [](unsigned(&r)[4], const float* p, bool trans) {
    if (trans)
      ldsm_x4_t(r, reinterpret_cast<const bf16*>(p));
    else
      ldsm_x4(r, reinterpret_cast<const bf16*>(p));
  };
  const auto step = [&] {
    unsigned ah[4], al[4];
    lda_x4(ah, pa, TA);
    if (!xa) lda_x4(al, pa + 4, TA);
#pragma unroll
    for (int n = 0; n < NB; ++n) {
      unsigned bh[4], bl[4];
      lda_x4(bh, pb + n * nb, !TB);
      if (!xb) lda_x4(bl, pb + n * nb + 4, !TB);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        mma_bf16(c[n].c[h], ah, bh[2 * h], bh[2 * h + 1]);
        if (!xb) mma_bf16(c[n].c[h], ah, bl[2 * h], bl[2 * h + 1]);
        if (!xa) mma_bf16(c[n].c[h], al, bh[2 * h], bh[2 * h + 1]);
      }
    }
    pa += sa, pb += sb;
  };
  if constexpr (kRoll) {
#pragma unroll 1
    for (int k0 = 0; k0 < K; k0 += 16) step();
  } else {
    for (int k0 = 0; k0 < K; k0 += 16) step();
  }
}

// mm() on split tiles (A, B as warp_mma_x3; C fp32, not split): 16 x 32 output tiles where there
// are enough of them (as mm()).
template <bool TA, bool TB>
__device__ void mm_x3(float* C, int ldc, const float* A, int lda, const float* B, int ldb, int M,
                      int N, int K, bool accumulate, int exact = 0) {
  if (N % 32 == 0 && (M / 16) * (N / 32) >= int(blockDim.x / 32))
    mm_warp_tiles<TA, TB, 2, 1, true>(C, ldc, A, lda, B, ldb, M, N, K, accumulate, exact);
  else
    mm_warp_tiles<TA, TB, 1, 1, true>(C, ldc, A, lda, B, ldb, M, N, K, accumulate, exact);
  __syncwarp();
}

// A kernel's operand format, a template flag: kSplit (bf16x3 on split tiles, where the inputs are
// bf16 and 2^-15 is far below their own rounding) or fp32 tiles (3xTF32, the fp32 activations of
// the doctor's and the tests' exact mode, which check to 1e-4). The kernel writes its operand
// tiles with put_op / to_op and multiplies them with op_mma / op_mm, the same code for both.
template <bool kSplit>
__device__ inline void put_op(float* p, const float (&x)[8]) {
  if constexpr (kSplit) {
    put_split(p, x);
  } else {
    reinterpret_cast<float4*>(p)[0] = make_float4(x[0], x[1], x[2], x[3]);
    reinterpret_cast<float4*>(p)[1] = make_float4(x[4], x[5], x[6], x[7]);
  }
}
template <bool kSplit>
__device__ inline void get_op(const float* p, float (&x)[8]) {
  if constexpr (kSplit)
    get_split(p, x);
  else
    get_chunk(p, x);
}
// x0, x1 at columns j, j + 1 (j even) of the row at p, in the operand format: in a split tile,
// the pair's hi and lo words of their chunk (one 32-bit store each; the chunk's other columns
// untouched, so threads may write one chunk's pairs at once).
template <bool kSplit>
__device__ inline void put_op2(float* p, int j, float x0, float x1) {
  if constexpr (kSplit) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
    const float2 hf = __bfloat1622float2(h);
    unsigned* w = reinterpret_cast<unsigned*>(p + (j & ~7)) + (j & 7) / 2;
    w[0] = *reinterpret_cast<const unsigned*>(&h);
    w[4] = pack_bf16(x0 - hf.x, x1 - hf.y);
  } else {
    *reinterpret_cast<float2*>(p + j) = make_float2(x0, x1);
  }
}
// store_acc in the operand format: C[i0 .. + 16][j0 .. + 16] (leading dim ldc) <- a.
template <bool kSplit>
__device__ inline void store_acc_op(float* C, int ldc, int i0, int j0, const Acc& a) {
  const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int r = 0; r < 2; ++r)
      put_op2<kSplit>(C + (i0 + g + 8 * r) * ldc, j0 + 8 * h + 2 * t, a.c[h][2 * r],
                      a.c[h][2 * r + 1]);
}
// Elements c .. c + 4 of the row at p (c % 4 == 0) in the operand format (in a split chunk:
// their hi and lo bf16 words, 16 bytes apart).
template <bool kSplit>
__device__ inline void get_op4(const float* p, int c, float (&x)[4]) {
  if constexpr (kSplit) {
    const char* w = reinterpret_cast<const char*>(p + (c & ~7)) + (c & 7) * 2;
    const uint2 h = *reinterpret_cast<const uint2*>(w), l = *reinterpret_cast<const uint2*>(w + 16);
    split_pair(h.x, l.x, x[0], x[1]);
    split_pair(h.y, l.y, x[2], x[3]);
  } else {
    const float4 v = *reinterpret_cast<const float4*>(p + c);
    x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
  }
}
template <bool kSplit>
__device__ inline void to_op(float* T, int ld, int R, int C) {
  if constexpr (kSplit) split_tile(T, ld, R, C);
}
// kRoll: as warp_mma_x3's (split tiles only).
template <bool kSplit, bool TA, bool TB, int NB, int U = 1, bool kRoll = false>
__device__ inline void op_mma(Acc (&c)[NB], const float* A, int lda, const float* B, int ldb,
                              int i0, int j0, int K, int exact) {
  if constexpr (kSplit)
    warp_mma_x3<TA, TB, NB, kRoll>(c, A, lda, B, ldb, i0, j0, K, exact);
  else
    warp_mma<TA, TB, NB, U>(c, A, lda, B, ldb, i0, j0, K, exact);
}
// The same with 16 x 16 warp tiles only (fewer registers: kernels near their register cap).
template <bool kSplit, bool TA, bool TB, int U = 1, bool kRoll = false>
__device__ void op_mm16(float* C, int ldc, const float* A, int lda, const float* B, int ldb, int M,
                        int N, int K, bool accumulate, int exact = 0) {
  if constexpr (kSplit)
    mm_warp_tiles<TA, TB, 1, 1, true, kRoll>(C, ldc, A, lda, B, ldb, M, N, K, accumulate, exact);
  else
    mm_warp_tiles<TA, TB, 1, U>(C, ldc, A, lda, B, ldb, M, N, K, accumulate, exact);
  __syncwarp();
}
// mm() (or mm_x3()) in the kernel's operand format.
template <bool kSplit, bool TA, bool TB, int U = 1>
__device__ void op_mm(float* C, int ldc, const float* A, int lda, const float* B, int ldb, int M,
                      int N, int K, bool accumulate, int exact = 0) {
  if constexpr (kSplit)
    mm_x3<TA, TB>(C, ldc, A, lda, B, ldb, M, N, K, accumulate, exact);
  else
    mm<TA, TB, U>(C, ldc, A, lda, B, ldb, M, N, K, accumulate, exact);
}

// One tile to load: rows < nr, columns < nc of `src` at element offset `off` (row stride
// `stride`) into a [NR][NC] fp32 shared-memory tile, zero in the padding rows nr .. NR and
// columns nc .. NC.
struct TileSrc {
  DPtr src;
  int64_t off, stride;
  int nr, NR, nc, NC;
  // Elements a 16-byte vector: 8 bf16 or 4 f32, as a shift (the type is a runtime flag, so `x /
  // vec` and `x % vec` compiled to full integer divisions, ~30 instructions each, in every tile
  // load: ncu source counters of the GDN dstate kernel, 2026-12-04).
  __device__ int vec_shift() const { return src.bf ? 3 : 2; }
  __device__ int vec() const { return 1 << vec_shift(); }
  // Whole rows of 16-byte vectors, 16-byte aligned (nc, NC >= 0).
  __device__ bool vec_ok() const {
    const int m = vec() - 1, esz = src.bf ? 2 : 4;
    return (nc & m) == 0 && (NC & m) == 0 &&
           (reinterpret_cast<uintptr_t>(src.p) + off * esz) % 16 == 0 && (stride * esz) % 16 == 0;
  }
  __device__ int vectors() const { return NR * (NC >> vec_shift()); }
  // Row r and first column cc of vector i (row-major order; cpr = NC / vec vectors a row). By a
  // shift and mask where cpr is a power of two (every tile of the GDN kernels): a division by a
  // runtime divisor is ~20 integer instructions, and the sequential GDN kernels, issue-bound,
  // spend a third of their instructions on integer work (ncu, 2026-12-02).
  __device__ void rc(int i, int& r, int& cc) const {
    const int cpr = NC >> vec_shift();
    if ((cpr & (cpr - 1)) == 0) {
      r = i >> (__ffs(cpr) - 1);
      cc = (i & (cpr - 1)) * vec();
    } else {
      r = i / cpr;
      cc = (i % cpr) * vec();
    }
  }
  // The 16 bytes of vector i, or zeros in the padding.
  __device__ uint4 ld16(int i) const {
    int r, cc;
    rc(i, r, cc);
    if (r >= nr || cc >= nc) return make_uint4(0u, 0u, 0u, 0u);
    const int esz = src.bf ? 2 : 4;
    return *reinterpret_cast<const uint4*>(static_cast<const char*>(src.p) +
                                           (off + r * stride + cc) * esz);
  }
  // Vector i into dst [NR][ldd] (bf16 widened by a shift: its bits are the top half of fp32's);
  // kSplit: a bf16 vector is a whole split chunk, hi = its bits and lo = 0 (exact). A kernel
  // takes kSplit only where its inputs are bf16: an fp32 vector (half a chunk) traps.
  template <bool kSplit = false>
  __device__ void put16(float* dst, int ldd, int i, uint4 u) const {
    int r, cc;
    rc(i, r, cc);
    float* d = dst + r * ldd + cc;
    if constexpr (kSplit) {
      if (!src.bf) __trap();
      reinterpret_cast<uint4*>(d)[0] = u;
      reinterpret_cast<uint4*>(d)[1] = make_uint4(0u, 0u, 0u, 0u);
    } else if (src.bf) {
      const unsigned w[4] = {u.x, u.y, u.z, u.w};
      float v[8];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        v[2 * e] = __uint_as_float(w[e] << 16);
        v[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
      }
      reinterpret_cast<float4*>(d)[0] = make_float4(v[0], v[1], v[2], v[3]);
      reinterpret_cast<float4*>(d)[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
      *reinterpret_cast<uint4*>(d) = u;
    }
  }
  // dst [NR][ldd] <- the tile element by element (the fallback where rows are not vectors);
  // kSplit: a thread a split chunk (NC % 8 == 0).
  template <bool kSplit = false>
  __device__ void load_scalar(float* dst, int ldd) const {
    if constexpr (kSplit) {
      for (int i = threadIdx.x; i < NR * (NC / 8); i += blockDim.x) {
        const int r = i / (NC / 8), c0 = (i % (NC / 8)) * 8;
        float x[8];
#pragma unroll
        for (int e = 0; e < 8; ++e)
          x[e] = r < nr && c0 + e < nc ? src.ld(off + r * stride + c0 + e) : 0.f;
        put_split(dst + r * ldd + c0, x);
      }
    } else {
      for (int i = threadIdx.x; i < NR * NC; i += blockDim.x) {
        const int r = i / NC, cc = i % NC;
        dst[r * ldd + cc] = r < nr && cc < nc ? src.ld(off + r * stride + cc) : 0.f;
      }
    }
  }
  // dst [NR][ldd] <- the tile, synchronously: each thread issues kBatch 16-byte loads
  // before it stores any. (A store to shared memory through a generic pointer may alias the next
  // global load, so the compiler keeps them in order: load, store, load, ... waited one global
  // round trip a vector; ncu showed the GDN chunk-gradient kernel's stores waiting on their loads
  // as its largest stall, 2026-12-02.)
  // kBatch 2 (8 registers): 4 spilled at the register caps of two GDN kernels.
  template <int kBatch = 2, bool kSplit = false>
  __device__ void load(float* dst, int ldd) const {
    if (!vec_ok() || ldd % 4 != 0) {
      load_scalar<kSplit>(dst, ldd);
      return;
    }
    const int n = vectors(), nth = blockDim.x;
    for (int i0 = threadIdx.x; i0 < n; i0 += kBatch * nth) {
      uint4 r[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u)
        if (i0 + u * nth < n) r[u] = ld16(i0 + u * nth);
#pragma unroll
      for (int u = 0; u < kBatch; ++u)
        if (i0 + u * nth < n) put16<kSplit>(dst, ldd, i0 + u * nth, r[u]);
    }
  }
};

// dst [NR][ldd] (fp32, shared; kSplit: a split tile) <- the [nr, nc] block of `src` at element
// offset `off` with row stride `stride`, zero in the padding (TileSrc::load).
template <bool kSplit = false>
__device__ inline void load_tile(float* dst, int ldd, DPtr src, int64_t off, int64_t stride, int nr,
                                 int NR, int nc, int NC) {
  TileSrc{src, off, stride, nr, NR, nc, NC}.load<2, kSplit>(dst, ldd);
}

// load_tile in two halves through registers: fetch() issues the 16-byte loads of up to N
// vectors a thread (thread i: vectors i, i + nth, ...), put() writes them to shared memory (bf16
// widened by a shift: its bits are the top half of the fp32 ones). Vectors past N a thread (a
// large DK, or an f32 K: N is sized for bf16) and tiles that are not 16-byte vectors put() reads
// itself, synchronously: correct, only not prefetched.
template <int N>
struct TileRegs {
  uint4 r[N];
  __device__ void fetch(const TileSrc& s) {
#pragma unroll
    for (int u = 0; u < N; ++u) r[u] = make_uint4(0u, 0u, 0u, 0u);
    if (!s.vec_ok()) return;
    const int n = s.vectors();
#pragma unroll
    for (int u = 0; u < N; ++u) {
      const int i = threadIdx.x + u * blockDim.x;
      if (i < n) r[u] = s.ld16(i);
    }
  }
  template <bool kSplit = false>
  __device__ void put(float* dst, int ldd, const TileSrc& s) const {
    if (!s.vec_ok() || ldd % 4 != 0) {
      s.load_scalar<kSplit>(dst, ldd);
      return;
    }
    const int n = s.vectors();
#pragma unroll
    for (int u = 0; u < N; ++u) {
      const int i = threadIdx.x + u * blockDim.x;
      if (i < n) s.put16<kSplit>(dst, ldd, i, r[u]);
    }
    for (int i = threadIdx.x + N * blockDim.x; i < n; i += blockDim.x)
      s.put16<kSplit>(dst, ldd, i, s.ld16(i));
  }
};

// out[off + r * stride + c] (+= when accumulating, else =) scale_r * src[r * lds + c] for r < nr,
// c < nc (scale null: 1), src in shared memory. Where the rows are whole 16-byte-aligned 8-element
// chunks (nc % 8 == 0: every GDN head dim of the models), a thread a chunk: 16-byte accesses and
// one row/column split a chunk (the element-by-element form spent ~40 integer instructions an
// element on its runtime division by nc and 64-bit offsets: ~10% of the GDN chunk-gradient
// kernel's instructions, ncu 2026-12-04). Each thread loads its next chunks (elements) of `out`
// before it stores any: the compiler cannot move a load above a store that may alias it, so a
// read-modify-write one after another waits one global round trip each.
__device__ inline void add_tile(DPtr out, int64_t off, int64_t stride, const float* src, int lds,
                                int nr, int nc, const float* scale = nullptr,
                                bool accumulate = true) {
  const int nth = blockDim.x;
  const int64_t esz = out.bf ? 2 : 4;
  if (nc % 8 == 0 && lds % 4 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0 &&
      (reinterpret_cast<uintptr_t>(out.p) + off * esz) % 16 == 0 && (stride * esz) % 16 == 0) {
    constexpr int kBatch = 2;
    const int cpr = nc / 8, n = nr * cpr;
    const int sh = (cpr & (cpr - 1)) == 0 ? __ffs(cpr) - 1 : -1;  // cpr a power of two: a shift
    for (int i0 = threadIdx.x; i0 < n; i0 += kBatch * nth) {
      int64_t o[kBatch];
      float v[kBatch][8];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int i = i0 + u * nth;
        if (i >= n) continue;
        const int r = sh >= 0 ? i >> sh : i / cpr, c = (i - r * cpr) * 8;
        o[u] = off + r * stride + c;
        if (accumulate)
          ld8(out, o[u], v[u]);
        else
#pragma unroll
          for (int e = 0; e < 8; ++e) v[u][e] = 0.f;
        float x[8];
        get_chunk(src + r * lds + c, x);
        const float sc = scale ? scale[r] : 1.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) v[u][e] += sc * x[e];
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u)
        if (i0 + u * nth < n) st8(out, o[u], v[u]);
    }
    return;
  }
  constexpr int kBatch = 8;
  const int n = nr * nc;
  for (int i0 = threadIdx.x; i0 < n; i0 += kBatch * nth) {
    int64_t o[kBatch];
    float v[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      const int i = i0 + u * nth, r = i / nc, c = i % nc;
      if (i < n) {
        o[u] = off + r * stride + c;
        v[u] = (accumulate ? out.ld(o[u]) : 0.f) + (scale ? scale[r] : 1.f) * src[r * lds + c];
      }
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u)
      if (i0 + u * nth < n) out.st(o[u], v[u]);
  }
}

}  // namespace sl::cuda
