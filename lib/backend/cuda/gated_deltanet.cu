// Gated DeltaNet recurrence on the GPU: the chunkwise WY/UT form of backend/cpu/gated_deltanet.cc,
// forward and analytic backward, chunk kC = 64, fp32 state, every matrix product on tensor cores.
//
// Per (b, h), state S in R^{DK x DV} (DK = key_dim, DV = value_dim), S_0 = 0:  S <- e^{g_t} S;
// delta = beta_t (v_t - S^T k_t); S <- S + k_t delta^T;  o_t = S^T q_t.  Per chunk of C steps with
// entry state S0 (notation of the CPU file: gamma = inclusive cumsum of g in the chunk, Gam =
// e^gamma, e_s = e^{gamma_last - gamma_s}, E_ts = e^{gamma_t - gamma_s} for s <= t):
//   KKE_ts = E_ts k_t.k_s (s < t),  L = diag(beta) KKE,  A = (Q K^T) . E (s <= t)
//   Tinv  = (I + L)^{-1}                                   (the UT transform)
//   Ub    = V - diag(Gam) K S0,  Delta = Tinv diag(beta) Ub
//   O     = diag(Gam) Q S0 + A Delta,      S_next = Gam_last S0 + K^T diag(e) Delta
// Every exponent is gamma_t - gamma_s with s <= t (or gamma_t - 0): <= 0, so no overflow however
// strong the decay; Tinv is built by substitution and block products with no division, so the
// triangular solve cannot make a NaN.
//
// Tensor cores, fp32-faithful: every product is a block-wide 3xTF32 mma.sync product
// (tile_mma.cuh); q, k, v and dout tiles widened from bf16 are exact in TF32 and skip their lo
// products. Where every input is bf16 (the model's training mode), the prep, output and
// chunk-gradient kernels' products take their operands as split tiles instead (bf16 hi + lo,
// written once where the tile is made, read by ldmatrix into bf16 MMAs: ~2^-15 relative, far
// below the inputs' own rounding; tile_mma.cuh "bf16x3"); fp32 inputs keep 3xTF32 everywhere.
//
// Parallelism: the value columns of S evolve independently (delta_t[j] only involves S[:, j]), so a
// block of the forward's sequential pass owns one (b, h) and a tile of VT value columns, and walks
// the chunks in order doing only what the recurrence needs; the outputs O of every chunk then come
// from a chunk-parallel kernel (see "forward" below). The [C, C] matrices (A, KKE, Tinv) and the
// factors of the sequential passes' products that involve no state (W, U; M, dX0) are computed by
// gdn_prep_kernel for every chunk at once, in parallel, before each pass, so that a sequential pass
// does 2 products a chunk and fetches the next chunk's inputs while it computes, so that no phase
// of a chunk waits on a global load. Everything a chunk needs lives in shared memory, zero-padded
// to the tile grid (rows to 64, DK to a multiple of 16, value columns to VT), so padded tails (T
// not a multiple of 64, DV not a multiple of VT) feed zeros into every product and are never
// written out. The backward has two phases (see "backward" below): a short sequential pass of the
// state gradient per (b, h) and value tile, then one block per (b, h, chunk) for all the gradients,
// summing over the value tiles itself: every output element is written once, no atomics,
// deterministic.
#include <algorithm>
#include <string>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/tile_mma.cuh"

namespace sl::cuda {
namespace {

constexpr int kC = 64;  // chunk length (the states layout depends on it)
static_assert(kC == kGdnChunk);
constexpr int kThreads = 256;
// Leading dim of the [C, C] matrices: = 4 (mod 32), so the MMA fragments' loads are conflict-free.
constexpr int kLdc = kC + 4;

// DK, DV: the head dimensions key_dim, value_dim (dk, dv are gradients); NC = gdn_num_chunks(T).
struct GdnDims {
  int B, T, H, DK, DV, NC;
  int DKp;  // DK rounded up to 16 (the MMA tile)
  // Inputs stored as bf16, hence exact in TF32 once widened: q, k, v, dout.
  bool xq, xk, xv, xo;
  // Backward: accumulate (+=) into dq, dk, dv, dbeta, dg, else write (=) them (each element
  // gets exactly one contribution: dv from the state pass, the rest from the chunk kernel).
  bool acc = true;
  // Element offsets: token t of sequence b, head h, for q/k rows, v/out rows and beta/g.
  __device__ int64_t qk(int b, int t, int h) const { return ((int64_t{b} * T + t) * H + h) * DK; }
  __device__ int64_t vo(int b, int t, int h) const { return ((int64_t{b} * T + t) * H + h) * DV; }
  __device__ int64_t gate(int b, int t, int h) const { return (int64_t{b} * T + t) * H + h; }
  __device__ int64_t state(int b, int h, int c) const {
    return ((int64_t{b} * H + h) * NC + c) * DK * DV;
  }
};

// Ts = (I + L)^{-1} with L_ts = bet_t KKE_ts (s < t; KKE strictly lower, [kC][kLdc]), by 16 x 16
// blocks: the four diagonal blocks by substitution, then the off-diagonal blocks by distance
// d = I - J from the diagonal,
//   T_IJ = -T_II P_J,   P_J = sum_{K=J}^{I-1} L_IK T_KJ = diag(bet_I) KKE_{I, J..I-1} T_{J..I-1,
//   J},
// whose T_KJ (K - J < d) are already known: one warp per block (I, J) of the distance, both
// products on tensor cores (warp_mma, 3xTF32), the warp's P_J in its own 16 x 16 of the scratch
// P (3 * 256 floats), so the only barriers are between distances. The substitution: one thread
// per column j of a diagonal block, the column in registers (x_i = T_ij):
//   x_i = 0 (i < j), 1 (i = j), -bet_i sum_{s=j}^{i-1} KKE_is x_s (i > j),
// the sum in the order of s. (Scalar shared-memory loops for all of it were ~40% of the prep
// kernel's issue slots at the ladder's L3 shape: ncu, 2026-12-02.) Barrier at both ends.
__device__ void unit_lower_inverse(float* Ts, const float* KKE, const float* bet, float* P) {
  const int tid = threadIdx.x, nth = blockDim.x, warp = tid / 32;
  __syncthreads();
  for (int i = tid; i < kC * kC; i += nth) Ts[(i / kC) * kLdc + i % kC] = 0.f;
  __syncthreads();
  if (tid < kC) {
    const int o = (tid / 16) * 16, j = tid % 16;  // column o + j of the diagonal block at o
    float x[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      float acc = 0.f;
#pragma unroll
      for (int s2 = 0; s2 < i; ++s2)
        if (s2 >= j) acc += KKE[(o + i) * kLdc + o + s2] * x[s2];
      x[i] = i < j ? 0.f : i == j ? 1.f : -bet[o + i] * acc;
    }
#pragma unroll
    for (int i = 0; i < 16; ++i)
      if (i >= j) Ts[(o + i) * kLdc + o + j] = x[i];
  }
  const int g = tid % 32 / 4;  // the accumulator rows g, g + 8 of this lane (tile_mma.cuh's Acc)
  for (int d = 1; d < kC / 16; ++d) {
    __syncthreads();  // every block at a distance below d is written
    const int J = warp, I = J + d;
    if (I >= kC / 16) continue;
    float* Pw = P + 256 * J;  // [16][16]
    Acc c[1];
    warp_mma<false, false, 1>(c, KKE + 16 * I * kLdc + 16 * J, kLdc, Ts + 16 * J * kLdc + 16 * J,
                              kLdc, 0, 0, 16 * d, 0);
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 4; ++e) c[0].c[h][e] *= bet[16 * I + g + 8 * (e / 2)];
    store_acc(Pw, 16, 0, 0, c[0]);
    __syncwarp();
    Acc t[1];
    warp_mma<false, false, 1>(t, Ts + 16 * I * kLdc + 16 * I, kLdc, Pw, 16, 0, 0, 16, 0);
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 4; ++e) t[0].c[h][e] = -t[0].c[h][e];
    store_acc(Ts, kLdc, 16 * I, 16 * J, t[0]);
  }
  __syncthreads();
}

// ---- chunk loads ------------------------------------------------------------------------------

// Qs/Ks [kC][ldk] <- rows t < Cn of q/k (one head), zero elsewhere (rows >= Cn, columns >= DK);
// kSplit: as split tiles.
template <bool kSplit = false>
__device__ inline void load_qk(float* Qs, float* Ks, int ldk, DPtr q, DPtr k, const GdnDims& D,
                               int b, int h, int t0, int Cn) {
  const int64_t stride = int64_t{D.H} * D.DK;
  // Both tiles' loads before either's stores (2 vectors a thread each at DK 64 in bf16).
  const TileSrc qs{q, D.qk(b, t0, h), stride, Cn, kC, D.DK, D.DKp},
      ks{k, D.qk(b, t0, h), stride, Cn, kC, D.DK, D.DKp};
  TileRegs<2> rq, rk;
  rq.fetch(qs);
  rk.fetch(ks);
  rq.put<kSplit>(Qs, ldk, qs);
  rk.put<kSplit>(Ks, ldk, ks);
}
// x[0 .. kC) <- its inclusive prefix sums (reverse: suffix sums), by warp 0 in 6 shuffle steps
// (a serial loop by one thread waited ~64 shared-memory latencies). The caller puts barriers
// before and after.
__device__ inline void chunk_scan(float* x, bool reverse) {
  static_assert(kC == 64);
  if (threadIdx.x >= 32) return;
  const int l = threadIdx.x, i0 = reverse ? kC - 1 - 2 * l : 2 * l, i1 = reverse ? i0 - 1 : i0 + 1;
  const float a = x[i0], ab = a + x[i1];
  float s = ab;  // inclusive scan of the pair sums over the lanes
  for (int o = 1; o < 32; o <<= 1) {
    const float y = __shfl_up_sync(0xffffffffu, s, o);
    if (l >= o) s += y;
  }
  float pre = __shfl_up_sync(0xffffffffu, s, 1);
  if (l == 0) pre = 0.f;
  x[i0] = pre + a;
  x[i1] = pre + ab;
}

// Rows r < DK, columns j < nv <= VT of src [DKp][ldv] -> the [DK, DV] state block at `off`
// (indexed by the tile width VT, a compile-time power of two, not by nv: no integer division).
// As 16-byte vectors where the tile is whole and aligned (8 scalar stores a thread, each with
// its 64-bit address and DPtr's type branch, were ~10% of the state kernel's instructions).
template <int VT>
__device__ inline void store_state(DPtr dst, int64_t off, const float* src, int ldv,
                                   const GdnDims& D, int nv) {
  static_assert(VT % 4 == 0);
  if (!dst.bf && nv == VT && D.DV % 4 == 0 && ldv % 4 == 0 &&
      (reinterpret_cast<uintptr_t>(dst.p) + off * 4) % 16 == 0) {
    float* p = static_cast<float*>(dst.p) + off;
    for (int i = threadIdx.x; i < D.DK * (VT / 4); i += blockDim.x) {
      const int r = i / (VT / 4), j = (i % (VT / 4)) * 4;
      *reinterpret_cast<float4*>(p + int64_t{r} * D.DV + j) =
          *reinterpret_cast<const float4*>(src + r * ldv + j);
    }
    return;
  }
  for (int i = threadIdx.x; i < D.DK * VT; i += blockDim.x) {
    const int r = i / VT, j = i % VT;
    if (j < nv) dst.st(off + int64_t{r} * D.DV + j, src[r * ldv + j]);
  }
}

// bet, gam <- beta, g for t < Cn; zero past the chunk's end (so padded rows have beta 0 and the
// cumsum stays gamma_last). Then gamma = inclusive cumsum, Gam = e^gamma, e = e^{gamma_last -
// gamma}. Ends with a barrier.
__device__ inline void load_gates(float* bet, float* gam, float* Gam, float* ev, DPtr beta, DPtr g,
                                  const GdnDims& D, int b, int h, int t0, int Cn) {
  for (int t = threadIdx.x; t < kC; t += blockDim.x) {
    bet[t] = t < Cn ? beta.ld(D.gate(b, t0 + t, h)) : 0.f;
    gam[t] = t < Cn ? g.ld(D.gate(b, t0 + t, h)) : 0.f;
  }
  __syncthreads();
  chunk_scan(gam, false);
  __syncthreads();
  for (int t = threadIdx.x; t < kC; t += blockDim.x) {
    Gam[t] = expf(gam[t]);
    ev[t] = expf(gam[Cn - 1] - gam[t]);
  }
  __syncthreads();
}

// E_ts = e^{gamma_t - gamma_s} (s <= t: the exponent x is <= 0) from the SFU (`__expf`, 2^(x
// log2 e): within 2 + 1.16 |x| ulp, e.g. ~1e-6 relative at x = -10, far below bf16's rounding;
// the accurate expf's range reduction, with the element loops' index divisions, was ~17% of the
// prep kernel's instructions: ncu source counters, 2026-12-04).
__device__ inline float decay(float gt, float gs) { return __expf(gt - gs); }

// f(t, s0, x, y) on each 8-column chunk (row t, columns s0 .. s0 + 8) of two [kC][kLdc] fp32
// matrices X, Y, a thread a chunk (row t = i / 8) with 16-byte accesses; f writes x and y, which
// are stored back in the operand format `kSplit`. Each chunk is read and written by one thread,
// so no barrier is needed inside; the caller orders the writers before and the readers after.
template <bool kSplit = false, class F>
__device__ inline void each_chunk2(float* X, float* Y, F&& f) {
  for (int i = threadIdx.x; i < kC * (kC / 8); i += blockDim.x) {
    const int t = i >> 3, s0 = (i & 7) * 8, o = t * kLdc + s0;
    float x[8], y[8];
    get_chunk(X + o, x);
    get_chunk(Y + o, y);
    f(t, s0, x, y);
    put_op<kSplit>(X + o, x);
    put_op<kSplit>(Y + o, y);
  }
}

// After As = Q K^T and KKE = K K^T: A . E (s <= t) and KKE . E (s < t), zero elsewhere.
__device__ inline void mask_decay(float* As, float* KKE, const float* gam) {
  each_chunk2(As, KKE, [&](int t, int s0, float(&a)[8], float(&k)[8]) {
    const float gt = gam[t];
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const int s = s0 + e;
      const float E = s <= t ? decay(gt, gam[s]) : 0.f;
      a[e] *= E;
      k[e] = s < t ? k[e] * E : 0.f;
    }
  });
}

template <int VT>
struct Layout {
  static constexpr int ldv = VT + 4;
  // Shared memory floats: `big` [kC][DKp+4] buffers, `cc` [kC][kLdc], `vt` [kC][ldv], `st`
  // [DKp][ldv], then the gate vectors and a 32-float reduction buffer.
  static size_t bytes(int DKp, int big, int cc, int vt, int st, int vecs) {
    return sizeof(float) * static_cast<size_t>(big * kC * (DKp + 4) + cc * kC * kLdc +
                                               vt * kC * ldv + st * DKp * ldv + vecs * kC + 32);
  }
};
// big, cc, vt, st, vecs of each kernel's Layout (below).
constexpr int kFwdState[5] = {2, 0, 2, 1, 1};
constexpr int kFwdOutput[5] = {1, 1, 1, 1, 1};
// The forward's value tile fits both of its kernels (state needs more at DK > 64, output less).
constexpr int kFwdPick[5] = {2, 1, 2, 1, 1};
// The backward's phase (a) below (phase (b) has its own ChunkGradLayout).
constexpr int kBwdState[5] = {2, 0, 2, 2, 2};

// The chunk-local matrices, once per (b, h, chunk) and all chunks in parallel (the value tiles of
// the sequential kernels below would otherwise each recompute them, on their serial path):
// A = (Q K^T) . E (s <= t), KKE = (K K^T) . E (s < t) and Tinv = (I + diag(beta) KKE)^{-1}, each
// [kC][kC] fp32 at element offset prep_offset(b, h, c) of its array (KKE and Tinv only in the
// backward, which needs them in its chunk-parallel phase (b)), and every state-independent
// factor of the sequential kernels' products, so that these do 2 products a chunk (see
// "forward" and "backward" below):
//   forward:  -W = -Tinv diag(beta Gam) K [kC][DKp] (at wy_offset(b, h, c) of its array; stored
//             negated so the state kernel accumulates Delta = U + (-W) S0 in place) and
//             U = Tinv diag(beta) V [C, DV] into the Delta array [B, T, H, DV];
//   backward: M = Tinv^T diag(e) K [kC][DKp] (at wy_offset), dX0 = Tinv^T A^T dO [C, DV] into dX
//             [B, T, H, DV] and Q^T diag(Gam) dO [DK, DV] into dstates [B, H, NC, DK, DV].
// Diagonal factors go on the fp32 side of each product ((Tinv diag(beta Gam)) K, (A Tinv)^T dO,
// (diag(Gam) Q)^T dO, ...), so the operand widened from bf16 stays exact and skips its lo
// product. Padding feeds zeros: rows t >= Cn of K, V, dO are zero and beta_t = 0 there, so those
// rows of Tinv are the identity's and the rows t >= Cn of W, U, M, dX0 are zero; so are W's and
// M's columns DK .. DKp (K's are). Tinv by unit_lower_inverse (its off-diagonal blocks in 3xTF32).
__device__ inline int64_t prep_offset(const GdnDims& D, int b, int h, int c) {
  return ((int64_t{b} * D.H + h) * D.NC + c) * kC * kC;
}
// One chunk's [kC][kC] matrix of a prep array (at prep_offset) as a tile to load.
__device__ inline TileSrc prep_tile(const float* p) {
  return {DPtr{const_cast<float*>(p), false}, 0, kC, kC, kC, kC, kC};
}
__device__ inline int64_t wy_offset(const GdnDims& D, int b, int h, int c) {
  return ((int64_t{b} * D.H + h) * D.NC + c) * kC * D.DKp;
}

// Grid (B*H*NC), kThreads threads. dstates null: the forward's (-W into wy_out, U into x_out from
// vo = v); else the backward's (KKE, Tinv, M into wy_out, dX0 into x_out and Q^T diag(Gam) dO
// into dstates from vo = dout). Shared memory: Q, K [kC][DKp+4], then X1, X2 [kC][kLdc] (A,
// KKE), X3 [kC][max(kLdc, DKp+4)] (Tinv, later M; as large as a [kC][DKp+4] tile), then the
// inverse's scratch and the gate vectors: 90 KB at DK 64, so two blocks a SM fit and the
// registers may be as many (128) as two blocks leave (the compiler's own choice, 80 with spills,
// made the backward's prep 6% slower: 0.740 -> 0.784 ms at S4). The value-side products go by
// tiles of kLocalVT columns over buffers whose contents are spent.
constexpr int kLocalVT = 32, kLocalLd = kLocalVT + 4;
__host__ __device__ constexpr int prep_x3_floats(int DKp) {
  return kC * (kLdc > DKp + 4 ? kLdc : DKp + 4);
}
// kSplit: the products on split tiles (every input bf16; tile_mma.cuh): Q, K and the value tiles
// loaded split, the fp32 factors split where they are made, the arrays stored from fp32 first.
template <bool kSplit>
__global__ void __launch_bounds__(kThreads, 2)
    gdn_prep_kernel(float* A_out, float* kke_out, float* T_out, float* wy_out, float* x_out,
                    float* dstates, DPtr vo, DPtr q, DPtr k, DPtr beta, DPtr g, GdnDims D) {
  extern __shared__ __align__(128) float sm[];
  const int ldk = D.DKp + 4;
  float* Qs = sm;
  float* Ks = Qs + kC * ldk;
  float* As = Ks + kC * ldk;              // X1
  float* KKE = As + kC * kLdc;            // X2
  float* Ts = KKE + kC * kLdc;            // X3
  float* P = Ts + prep_x3_floats(D.DKp);  // 3 x 256 floats
  float* gam = P + 3 * 256;
  float* Gam = gam + kC;
  float* ev = Gam + kC;
  float* bet = ev + kC;
  const bool bwd = dstates != nullptr;
  const int c = blockIdx.x % D.NC, bh = blockIdx.x / D.NC, b = bh / D.H, h = bh % D.H;
  const int t0 = c * kC, Cn = min(kC, D.T - t0);
  const int tid = threadIdx.x, nth = blockDim.x;
  constexpr int kCc = kC / 8;  // 8-column chunks a row of a [kC][kC] matrix
  load_qk<kSplit>(Qs, Ks, ldk, q, k, D, b, h, t0, Cn);
  load_gates(bet, gam, Gam, ev, beta, g, D, b, h, t0, Cn);
  op_mm<kSplit, false, true, 2>(As, kLdc, Qs, ldk, Ks, ldk, kC, kC, D.DKp, false,
                                ex(D.xq, D.xk));  // Q K^T
  op_mm<kSplit, false, true, 2>(KKE, kLdc, Ks, ldk, Ks, ldk, kC, kC, D.DKp, false,
                                ex(D.xk, D.xk));  // K K^T
  __syncthreads();
  mask_decay(As, KKE, gam);
  unit_lower_inverse(Ts, KKE, bet, P);
  const int64_t o = prep_offset(D, b, h, c);
  // As 16-byte vectors (the arrays' chunks are [kC][kC] and 16-byte aligned).
  for (int i = tid; i < kC * kC / 4; i += nth) {
    const int t = i / (kC / 4), s2 = (i % (kC / 4)) * 4;
    reinterpret_cast<float4*>(A_out + o)[i] = *reinterpret_cast<const float4*>(As + t * kLdc + s2);
    if (bwd) {
      reinterpret_cast<float4*>(T_out + o)[i] =
          *reinterpret_cast<const float4*>(Ts + t * kLdc + s2);
      reinterpret_cast<float4*>(kke_out + o)[i] =
          *reinterpret_cast<const float4*>(KKE + t * kLdc + s2);
    }
  }
  __syncthreads();  // A and KKE stored: their buffers may be overwritten
  // Y [kC][ldk] <- -W (forward) or M (backward), from a [kC][kLdc] factor F over a spent buffer:
  //   forward:  F = -Tinv diag(beta Gam) (columns scaled) over A, -W = F K into Q's buffer;
  //   backward: (A Tinv) over KKE first (the dX0 tiles need it), then F^T = Tinv^T diag(e) stored
  //             as F = diag(e) Tinv (rows scaled) over A, M = F^T K over Tinv's.
  // A thread an 8-column chunk in the passes (each chunk read and written by one thread).
  float* Y;
  if (!bwd) {
    for (int i = tid; i < kC * kCc; i += nth) {
      const int t = i / kCc, s0 = (i % kCc) * 8, e0 = t * kLdc + s0;
      float tv[8], f[8], u[8];
      get_chunk(Ts + e0, tv);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        f[e] = -(tv[e] * (bet[s0 + e] * Gam[s0 + e]));
        u[e] = tv[e] * bet[s0 + e];  // Tinv diag(beta), the U tiles' factor
      }
      put_op<kSplit>(As + e0, f);
      put_op<kSplit>(KKE + e0, u);
    }
    __syncthreads();
    Y = Qs;  // Q is spent (A is made)
    op_mm<kSplit, false, false, 2>(Y, ldk, As, kLdc, Ks, ldk, kC, D.DKp, kC, false,
                                   ex(false, D.xk));
  } else {
    to_op<kSplit>(As, kLdc, kC, kC);
    to_op<kSplit>(Ts, kLdc, kC, kC);
    if (kSplit) __syncthreads();
    op_mm<kSplit, false, false, 2>(KKE, kLdc, As, kLdc, Ts, kLdc, kC, kC, kC, false);  // A Tinv
    // diag(Gam) Q, a thread a chunk of a row.
    for (int i = tid; i < kC * (D.DKp / 8); i += nth) {
      const int t = i / (D.DKp / 8), e0 = t * ldk + (i % (D.DKp / 8)) * 8;
      float x[8];
      get_op<kSplit>(Qs + e0, x);
#pragma unroll
      for (int e = 0; e < 8; ++e) x[e] *= Gam[t];
      put_op<kSplit>(Qs + e0, x);
    }
    __syncthreads();  // A Tinv and diag(Gam) Q made: A is spent
    for (int i = tid; i < kC * kCc; i += nth) {
      const int t = i / kCc, e0 = t * kLdc + (i % kCc) * 8;
      float x[8];
      get_op<kSplit>(Ts + e0, x);
#pragma unroll
      for (int e = 0; e < 8; ++e) x[e] *= ev[t];
      put_op<kSplit>(As + e0, x);
    }
    to_op<kSplit>(KKE, kLdc, kC, kC);  // A Tinv, the dX0 tiles' factor
    __syncthreads();                   // diag(e) Tinv made: Tinv is spent
    Y = Ts;
    op_mm<kSplit, true, false, 2>(Y, ldk, As, kLdc, Ks, ldk, kC, D.DKp, kC, false, ex(false, D.xk));
  }
  __syncthreads();
  {  // -W or M -> wy_out in the sequential kernels' operand format, a thread an 8-column chunk
    float* wo = wy_out + wy_offset(D, b, h, c);
    const int cpr = D.DKp / 8;  // chunks a row ([kC][DKp] per chunk, padding included)
    for (int t = tid / 2; t < kC; t += nth / 2)  // cpr is even
      for (int v = tid % 2; v < cpr; v += 2) {
        float x[8];
        get_chunk(Y + t * ldk + 8 * v, x);
        put_op<kSplit>(wo + t * D.DKp + 8 * v, x);
      }
  }
  // The value tiles. Forward: V over Tinv's buffer, U = (Tinv diag(beta)) V over A's. Backward:
  // dO over A's, dX0 = (A Tinv)^T dO over Tinv's (M's, once stored), (diag(Gam) Q)^T dO [DKp][ldv]
  // over K's (<= kC x ldk floats).
  constexpr int VT = kLocalVT, ldv = kLocalLd;
  float* Vs = bwd ? As : Ts;
  float* Us = bwd ? Ts : As;
  float* Ss = Ks;
  const bool xv = bwd ? D.xo : D.xv;
  for (int j0 = 0; j0 < D.DV; j0 += VT) {
    const int nv = min(VT, D.DV - j0);
    __syncthreads();  // the previous products' (or the previous tile's) reads are done
    load_tile<kSplit>(Vs, ldv, vo, D.vo(b, t0, h) + j0, int64_t{D.H} * D.DV, Cn, kC, nv, VT);
    __syncthreads();
    if (!bwd) {
      op_mm<kSplit, false, false, 2>(Us, ldv, KKE, kLdc, Vs, ldv, kC, VT, kC, false, ex(false, xv));
    } else {
      op_mm<kSplit, true, false, 2>(Us, ldv, KKE, kLdc, Vs, ldv, kC, VT, kC, false, ex(false, xv));
      op_mm<kSplit, true, false, 2>(Ss, ldv, Qs, ldk, Vs, ldv, D.DKp, VT, kC, false, ex(false, xv));
    }
    __syncthreads();
    {  // U or dX0 -> x_out, by 4-column vectors where the rows are whole and aligned
      const int64_t xo = D.vo(b, t0, h) + j0, xs = int64_t{D.H} * D.DV;
      const bool xvec =
          nv == VT && xs % 4 == 0 && (reinterpret_cast<uintptr_t>(x_out) + xo * 4) % 16 == 0;
      for (int i = tid; i < Cn * (VT / 4); i += nth) {
        const int t = i / (VT / 4), j = (i % (VT / 4)) * 4;
        const float4 u = *reinterpret_cast<const float4*>(Us + t * ldv + j);
        float* p = x_out + xo + t * xs + j;
        if (xvec) {
          *reinterpret_cast<float4*>(p) = u;
        } else {
          const float e[4] = {u.x, u.y, u.z, u.w};
          for (int q = 0; q < 4 && j + q < nv; ++q) p[q] = e[q];
        }
      }
    }
    if (bwd) store_state<VT>(DPtr{dstates, false}, D.state(b, h, c) + j0, Ss, ldv, D, nv);
  }
}
static_assert(kLocalLd <= kLdc);  // a value tile fits a [kC][kLdc] buffer

// ---- prefetch for the sequential kernels -------------------------------------------------------
// The sequential kernels fetch the next chunk's state-independent inputs while the current chunk
// computes, so that no phase of a chunk waits on global memory. The fp32 tiles (-W, U, M, dX0,
// Q^T diag(Gam) dO) go global -> shared by cp.async into their buffer as soon as its last reader
// of the current chunk is past a barrier; the bf16 K (which has to be widened) and the gates go
// through registers. (Registers for all of them were tried first: beside a product's fragments,
// 80 registers a thread, what three blocks a SM leave, made ptxas spill the loaded vectors to
// local memory right after their loads, which waits for them.)

// 16 bytes global -> shared without registers (cp.async, sm_80+, L2 only); src_bytes 0 writes
// zeros and reads nothing.
__device__ inline void cp_async16(float* dst, const void* src, int src_bytes) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(src_bytes)
               : "memory");
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ inline void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// dst [NR][ldd] <- an fp32 tile by cp.async (part of the caller's current group; zeros in the
// padding), or synchronously where its rows are not 16-byte vectors (odd widths, unaligned).
__device__ inline void copy_async(float* dst, int ldd, const TileSrc& s) {
  if (s.src.bf || !s.vec_ok() || ldd % 4 != 0) {
    s.load_scalar(dst, ldd);
    return;
  }
  const int cpr = s.NC / 4, n = s.NR * cpr;
  const float* p = static_cast<const float*>(s.src.p);
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    int r, cc;
    s.rc(i, r, cc);
    const bool in = r < s.nr && cc < s.nc;
    cp_async16(dst + r * ldd + cc, in ? p + s.off + r * s.stride + cc : p, in ? 16 : 0);
  }
}

// One chunk's beta and g in registers, lane l of warp 0 holding steps 2l and 2l + 1 (zero past
// the chunk's end, as load_gates); the other threads hold zeros.
struct GateRegs {
  float b0, b1, g0, g1;
  __device__ void fetch(DPtr beta, DPtr g, const GdnDims& D, int b, int h, int t0, int Cn) {
    b0 = b1 = g0 = g1 = 0.f;
    if (threadIdx.x >= 32) return;
    const int t = 2 * threadIdx.x;
    if (t < Cn) {
      g0 = g.ld(D.gate(b, t0 + t, h));
      if (beta) b0 = beta.ld(D.gate(b, t0 + t, h));
    }
    if (t + 1 < Cn) {
      g1 = g.ld(D.gate(b, t0 + t + 1, h));
      if (beta) b1 = beta.ld(D.gate(b, t0 + t + 1, h));
    }
  }
  // Warp 0 (all lanes): x0, x1 <- gamma_{2l}, gamma_{2l+1}, the inclusive cumsum of g with
  // chunk_scan's additions (so bit for bit load_gates' gamma); returns gamma_{Cn - 1}.
  __device__ float scan(int Cn, float& x0, float& x1) const {
    const int l = threadIdx.x;
    const float a = g0, ab = a + g1;
    float s = ab;
    for (int o = 1; o < 32; o <<= 1) {
      const float y = __shfl_up_sync(0xffffffffu, s, o);
      if (l >= o) s += y;
    }
    float pre = __shfl_up_sync(0xffffffffu, s, 1);
    if (l == 0) pre = 0.f;
    x0 = pre + a;
    x1 = pre + ab;
    return __shfl_sync(0xffffffffu, (Cn - 1) % 2 ? x1 : x0, (Cn - 1) / 2);
  }
};

// The sequential kernels' state (S, or dS) [DKp][VT] in registers across the chunks: warp w owns
// the 16 x 16 tiles w, w + 8, ... (NT a warp; tile i at rows 16 (i / (VT / 16)), columns 16 (i %
// (VT / 16))) as MMA accumulators, so the recurrence's product S += K^T X accumulates where S
// lives and the scaling and the stores of S read registers. What the other product (X += Y S)
// reads is the copy put() writes to shared memory, in the operand format: split once a chunk,
// where 3xTF32 split every fragment of it in every warp.
template <int VT, int NT>
struct StateRegs {
  Acc s[NT][1];
  int ntiles;  // (DKp / 16) (VT / 16)
  __device__ explicit StateRegs(const GdnDims& D) : ntiles((D.DKp / 16) * (VT / 16)) {}
  __device__ static int tile(int n) { return static_cast<int>(threadIdx.x) / 32 + 8 * n; }
  __device__ static int row0(int n) { return 16 * (tile(n) / (VT / 16)); }
  __device__ static int col0(int n) { return 16 * (tile(n) % (VT / 16)); }
  // f(row, column j, x_j, x_{j+1}) for every pair of elements this thread holds (by reference).
  template <class F>
  __device__ void each_pair(F&& f) {
    const int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      if (tile(n) >= ntiles) continue;
#pragma unroll
      for (int h = 0; h < 2; ++h)
#pragma unroll
        for (int r = 0; r < 2; ++r)
          f(row0(n) + g + 8 * r, col0(n) + 8 * h + 2 * t, s[n][0].c[h][2 * r],
            s[n][0].c[h][2 * r + 1]);
    }
  }
  // f(row, column, x) for every element this thread holds.
  template <class F>
  __device__ void each(F&& f) {
    each_pair([&](int i, int j, float& x0, float& x1) {
      f(i, j, x0);
      f(i, j + 1, x1);
    });
  }
  template <bool kSplit>
  __device__ void put(float* T, int ld) const {
#pragma unroll
    for (int n = 0; n < NT; ++n)
      if (tile(n) < ntiles) store_acc_op<kSplit>(T, ld, row0(n), col0(n), s[n][0]);
  }
  // S += K^T X (K [kC][DKp], X [kC][VT] in the operand format).
  template <bool kSplit>
  __device__ void add_kt(const float* Ks, int ldk, const float* X, int ldx, int exact) {
#pragma unroll
    for (int n = 0; n < NT; ++n)
      if (tile(n) < ntiles)
        op_mma<kSplit, true, false, 1, 2>(s[n], Ks, ldk, X, ldx, row0(n), col0(n), kC, exact);
  }
  // Rows < DK, columns < nv -> the [DK, DV] state block at `off` (pairs as 8-byte stores where
  // the block is fp32, whole and aligned).
  __device__ void store(DPtr dst, int64_t off, const GdnDims& D, int nv) {
    const bool pairs = !dst.bf && nv == VT && D.DV % 2 == 0 &&
                       (reinterpret_cast<uintptr_t>(dst.p) + off * 4) % 8 == 0;
    float* p = static_cast<float*>(dst.p) + off;
    each_pair([&](int i, int j, float& x0, float& x1) {
      if (i >= D.DK) return;
      const int64_t o = int64_t{i} * D.DV + j;
      if (pairs) {
        *reinterpret_cast<float2*>(p + o) = make_float2(x0, x1);
      } else {
        if (j < nv) dst.st(off + o, x0);
        if (j + 1 < nv) dst.st(off + o + 1, x1);
      }
    });
  }
};
// Tiles a warp of the sequential kernels: 1, 2 or 4 (pick_vt keeps (DKp / 16) (VT / 16) <= 32).
inline int state_nt(int DKp, int VT) {
  const int t = (DKp / 16) * (VT / 16);
  return t <= 8 ? 1 : t <= 16 ? 2 : t <= 32 ? 4 : 0;  // 0: unsupported (with_state_kernel fails)
}

// ---- forward ---------------------------------------------------------------------------------
// Two kernels after the prep: gdn_state_kernel walks the chunks of one (b, h) and value tile in
// order with only what the recurrence needs,
//   Delta  = Tinv diag(beta) (V - diag(Gam) K S0) = U - W S0,
//   S_next = Gam_last S0 + K^T diag(e) Delta,
// with U = Tinv diag(beta) V and W = Tinv diag(beta Gam) K from the prep (they depend on no
// state), saving S0 (the states output) and Delta (over U in the fp32 workspace [B, T, H, DV]);
// then gdn_output_kernel computes every chunk's O = diag(Gam) Q S0 + A Delta at once. The
// sequential kernel does 2 products a chunk (instead of 5) and loads neither Q nor A.

// Grid (B*H, ceil(DV / VT)), kThreads threads; 62.8 KB of shared memory at DK 64, VT 32, so three
// blocks a SM fit: registers are capped to match. S lives in registers (StateRegs); Ss holds its
// copy in the operand format for the first product. Per chunk c, three barriers (right: what is
// fetched for chunk c + 1 meanwhile):
//   Delta = U + (-W) S0, in place over U_c                     | U_{c+1} -> the other U (async);
//                                                                K_{c+1}, g_{c+1} -> registers
//   | Delta -> workspace, U_c <- diag(e) Delta in place (as an
//     operand)                                                 | -W_{c+1} -> Ws (async)
//   | S = Gam_last S + K^T U_c in registers, S -> Ss and the
//     states; e, Gam_last <- g_{c+1}; wait for copies          | then Ks <- K_{c+1}
// The two U buffers alternate: chunk c's is busy until its second product, the other (last read
// by chunk c - 1's second product) takes U_{c+1} for all of chunk c; -W's buffer is free once
// the first product is done, so its copy has the pass and the second product to land. kSplit:
// the operands as split tiles (-W is stored so by the prep kernel), else fp32 (3xTF32).
template <int VT, int NT, bool kSplit>
__global__ void __launch_bounds__(kThreads, 3)
    gdn_state_kernel(DPtr states, float* delta, DPtr k, DPtr g, const float* Wn_in, GdnDims D) {
  extern __shared__ __align__(128) float sm[];
  constexpr int ldv = Layout<VT>::ldv;
  const int ldk = D.DKp + 4;
  float* Ks = sm;
  float* Ws = Ks + kC * ldk;      // -W
  float* Ub = Ws + kC * ldk;      // 2 x [kC][ldv]: U, then Delta, then diag(e) Delta
  float* Ss = Ub + 2 * kC * ldv;  // S0 [DKp][ldv], the operand copy of the registers' S
  float* ev = Ss + D.DKp * ldv;
  float* GamL = ev + kC;  // Gam_last: one float of the 32-float tail
  const int b = blockIdx.x / D.H, h = blockIdx.x % D.H;
  const int j0 = blockIdx.y * VT, nv = min(VT, D.DV - j0);
  const int tid = threadIdx.x, nth = blockDim.x;
  // Chunk c's tiles: K [kC][DKp], -W [kC][DKp] (the prep stores it whole, padding included), U
  // [kC][VT] (this value tile's columns).
  auto ktile = [&](int c) {
    return TileSrc{k,    D.qk(b, c * kC, h), int64_t{D.H} * D.DK, min(kC, D.T - c * kC), kC, D.DK,
                   D.DKp};
  };
  auto wtile = [&](int c) {
    return TileSrc{
        DPtr{const_cast<float*>(Wn_in), false}, wy_offset(D, b, h, c), D.DKp, kC, kC, D.DKp, D.DKp};
  };
  auto utile = [&](int c) {
    return TileSrc{DPtr{delta, false},
                   D.vo(b, c * kC, h) + j0,
                   int64_t{D.H} * D.DV,
                   min(kC, D.T - c * kC),
                   kC,
                   nv,
                   VT};
  };
  TileRegs<2> kr;  // K: 2 vectors a thread at DK 64 in bf16 (an f32 K's second half: at put())
  GateRegs gr;
  StateRegs<VT, NT> S(D);         // S_0 = 0
  auto put_gates = [&](int Cn) {  // e = e^{gamma_last - gamma}, Gam_last = e^{gamma_last}
    if (tid >= 32) return;
    float x0, x1;
    const float gl = gr.scan(Cn, x0, x1);
    ev[2 * tid] = expf(gl - x0);
    ev[2 * tid + 1] = expf(gl - x1);
    if (tid == 0) *GamL = expf(gl);
  };
  copy_async(Ws, ldk, wtile(0));
  copy_async(Ub, ldv, utile(0));
  cp_async_commit();
  kr.fetch(ktile(0));
  gr.fetch({}, g, D, b, h, 0, min(kC, D.T));
  S.template put<kSplit>(Ss, ldv);
  S.store(states, D.state(b, h, 0) + j0, D, nv);
  kr.put<kSplit>(Ks, ldk, ktile(0));
  put_gates(min(kC, D.T));
  cp_async_wait<0>();
  __syncthreads();

  for (int c = 0; c < D.NC; ++c) {
    const int t0 = c * kC, Cn = min(kC, D.T - t0);
    const bool next = c + 1 < D.NC;
    float* Us = Ub + (c % 2) * kC * ldv;
    if (next) {
      copy_async(Ub + ((c + 1) % 2) * kC * ldv, ldv, utile(c + 1));
      cp_async_commit();
      kr.fetch(ktile(c + 1));
      gr.fetch({}, g, D, b, h, t0 + kC, min(kC, D.T - t0 - kC));
    }
    op_mm16<kSplit, false, false, 2>(Us, ldv, Ws, ldk, Ss, ldv, kC, VT, D.DKp,
                                     true);  // Delta = U + (-W) S0
    __syncthreads();
    if (next) {
      copy_async(Ws, ldk, wtile(c + 1));
      cp_async_commit();
    }
    // Delta -> the workspace, U_c <- diag(e) Delta, a thread an 8-column chunk (read whole
    // before it is rewritten as an operand); 16-byte stores where the workspace rows start
    // aligned (DV and j0 multiples of 4), else element by element.
    const int64_t vo0 = D.vo(b, t0, h) + j0, vstride = int64_t{D.H} * D.DV;
    const bool vec =
        nv % 4 == 0 && vstride % 4 == 0 && (reinterpret_cast<uintptr_t>(delta) + vo0 * 4) % 16 == 0;
    for (int i = tid; i < kC * (VT / 8); i += nth) {
      const int t = i / (VT / 8), j = (i % (VT / 8)) * 8;
      float d[8];
      get_chunk(Us + t * ldv + j, d);
      if (t < Cn && j < nv) {
        float* o = delta + vo0 + t * vstride + j;
        if (vec) {
          reinterpret_cast<float4*>(o)[0] = make_float4(d[0], d[1], d[2], d[3]);
          if (j + 4 < nv) reinterpret_cast<float4*>(o)[1] = make_float4(d[4], d[5], d[6], d[7]);
        } else {
          for (int q = 0; q < 8 && j + q < nv; ++q) o[q] = d[q];
        }
      }
      const float e = ev[t];
#pragma unroll
      for (int q = 0; q < 8; ++q) d[q] *= e;
      put_op<kSplit>(Us + t * ldv + j, d);
    }
    if (!next) break;  // the state leaving the last chunk is not saved
    const float gl = *GamL;
    S.each([&](int, int, float& x) { x *= gl; });
    __syncthreads();
    S.template add_kt<kSplit>(Ks, ldk, Us, ldv, ex(D.xk, false));  // S += K^T diag(e) Delta
    // Ss's readers (the first product) are past the barrier above.
    S.template put<kSplit>(Ss, ldv);
    S.store(states, D.state(b, h, c + 1) + j0, D, nv);
    put_gates(min(kC, D.T - t0 - kC));
    cp_async_wait<0>();
    __syncthreads();
    kr.put<kSplit>(Ks, ldk, ktile(c + 1));
  }
}

// Grid (B*H*NC), kThreads threads: O = diag(Gam) Q S0 + A Delta for one chunk, from the saved
// states and Delta, by value tiles (Q, A and the gates loaded once for all of them). Each warp
// owns one 16 x 16 tile of O (VT 32: all 8 warps; VT 16: 4) and keeps it in registers from the
// first product to the store: the row scaling by Gam is done on the accumulator (rows g and
// g + 8 of the tile, tile_mma.cuh's Acc layout), so a value tile costs 2 barriers and no
// shared-memory round trip of O (it was 5 and two). 53 KB of shared memory at DK 64, VT 32 and
// 64 registers: four blocks a SM.
template <int VT, bool kSplit>
__global__ void __launch_bounds__(kThreads, 4)
    gdn_output_kernel(DPtr out, DPtr states, const float* delta_in, DPtr q, DPtr g,
                      const float* A_in, GdnDims D) {
  extern __shared__ __align__(128) float sm[];
  constexpr int ldv = Layout<VT>::ldv, kTiles = (kC / 16) * (VT / 16);
  static_assert(kTiles <= kThreads / 32, "one output tile a warp");
  const int ldk = D.DKp + 4;
  float* Qs = sm;
  float* As = Qs + kC * ldk;
  float* Ds = As + kC * kLdc;  // Delta
  float* Ss = Ds + kC * ldv;   // [DKp][ldv]
  float* Gam = Ss + D.DKp * ldv;
  const int c = blockIdx.x % D.NC, bh = blockIdx.x / D.NC, b = bh / D.H, h = bh % D.H;
  const int t0 = c * kC, Cn = min(kC, D.T - t0);
  const int tid = threadIdx.x, nth = blockDim.x, warp = tid / 32;
  const int g8 = tid % 32 / 4, t4 = tid % 4;  // the lane's row and column pair in a tile
  const int i0 = 16 * (warp / (VT / 16)), jo = 16 * (warp % (VT / 16));  // this warp's tile
  // A by cp.async while Q and the gates are loaded through registers (waited for below).
  copy_async(As, kLdc, prep_tile(A_in + prep_offset(D, b, h, c)));
  cp_async_commit();
  load_tile<kSplit>(Qs, ldk, q, D.qk(b, t0, h), int64_t{D.H} * D.DK, Cn, kC, D.DK, D.DKp);
  for (int t = tid; t < kC; t += nth) Gam[t] = t < Cn ? g.ld(D.gate(b, t0 + t, h)) : 0.f;
  __syncthreads();
  chunk_scan(Gam, false);
  __syncthreads();
  for (int t = tid; t < kC; t += nth) Gam[t] = expf(Gam[t]);
  for (int j0 = 0; j0 < D.DV; j0 += VT) {
    const int nv = min(VT, D.DV - j0);
    __syncthreads();  // Gam written; the previous tile's products are done with Ss and Ds
    const int64_t so = D.state(b, h, c) + j0;
    // Both fp32 tiles in flight at once (cp.async; a bf16 state by load_scalar).
    copy_async(Ss, ldv, {states, so, D.DV, D.DK, D.DKp, nv, VT});
    copy_async(Ds, ldv,
               {DPtr{const_cast<float*>(delta_in), false}, D.vo(b, t0, h) + j0, int64_t{D.H} * D.DV,
                Cn, kC, nv, VT});
    cp_async_commit();
    cp_async_wait<0>();  // (the first tile's wait covers A's copy too)
    __syncthreads();
    if constexpr (kSplit) {  // the operands as split tiles (Q is loaded so; A once)
      if (j0 == 0) split_tile(As, kLdc, kC, kC);
      split_tile(Ss, ldv, D.DKp, VT);
      split_tile(Ds, ldv, kC, VT);
      __syncthreads();
    }
    if (warp >= kTiles) continue;
    Acc o[1];
    op_mma<kSplit, false, false, 1, 2>(o, Qs, ldk, Ss, ldv, i0, jo, D.DKp,
                                       ex(D.xq, false));  // Q S0
    const float ga = Gam[i0 + g8], gb = Gam[i0 + g8 + 8];
#pragma unroll
    for (int hh = 0; hh < 2; ++hh) {
      o[0].c[hh][0] *= ga, o[0].c[hh][1] *= ga;
      o[0].c[hh][2] *= gb, o[0].c[hh][3] *= gb;
    }
    op_mma<kSplit, false, false, 1, 2>(o, As, kLdc, Ds, ldv, i0, jo, kC, 0);  // O += A Delta
#pragma unroll
    for (int hh = 0; hh < 2; ++hh)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int t = i0 + g8 + 8 * r, j = jo + 8 * hh + 2 * t4;
        if (t >= Cn) continue;
        const int64_t e = D.vo(b, t0 + t, h) + j0 + j;
        const float x0 = o[0].c[hh][2 * r], x1 = o[0].c[hh][2 * r + 1];
        const int esz = out.bf ? 2 : 4;  // the column pair as one 4- or 8-byte store:
        if (j + 1 < nv && (reinterpret_cast<uintptr_t>(out.p) + e * esz) % (2 * esz) == 0) {
          if (out.bf)
            *reinterpret_cast<__nv_bfloat162*>(static_cast<__nv_bfloat16*>(out.p) + e) =
                __floats2bfloat162_rn(x0, x1);
          else
            *reinterpret_cast<float2*>(static_cast<float*>(out.p) + e) = make_float2(x0, x1);
        } else {
          if (j < nv) out.st(e, x0);
          if (j + 1 < nv) out.st(e + 1, x1);
        }
      }
  }
}

// ---- backward --------------------------------------------------------------------------------
// Two phases (gdn_chunk_backward in backend/cpu/gated_deltanet.cc has the derivation):
//  (a) gdn_dstate_kernel: per (b, h) and value tile, chunks in reverse, only the state-gradient
//      recurrence, with dS = dL/dS_next of the chunk (zero after the last one):
//        dDelta = A^T dO + diag(e) K dS,   dX = Tinv^T dDelta = dX0 + M dS              [C, VT]
//        dS0    = Gam_last dS + Q^T diag(Gam) dO - K^T diag(beta Gam) dX            [DK, VT]
//      with dX0 = Tinv^T A^T dO and M = Tinv^T diag(e) K (K^T diag(beta Gam) dX = W^T dDelta
//      with the WY factor W = Tinv diag(beta Gam) K). It saves the dS entering each chunk (as the
//      forward saves S0) and dX, and adds dV = diag(beta) dX. The state-independent terms dX0, M
//      and Q^T diag(Gam) dO come from the prep kernel, all chunks at once, so the sequential
//      pass does 2 products a chunk.
//  (b) gdn_chunk_grad_kernel: every (b, h, chunk) at once, from the saved S0, dS and dX, loops
//      over the value tiles summing what the key-side gradients need over all value columns:
//        dA  += dO Delta^T,   dL += dX Delta^T                                      [C, C]
//        Pq  += dO S0^T,      Pk += diag(e) Delta dS^T - diag(Gam beta) dX S0^T     [C, DK]
//      then once per chunk: dQK = dA . E (s <= t), G_ts = -dL_ts beta_t E_ts (s < t),
//        dQ = diag(Gam) Pq + dQK K,   dK = Pk + dQK^T Q + (G + G^T) K
//      and the gate gradients from the row dot products. Each output element is written by one
//      block, once (+=): no per-tile partials, no atomics, deterministic.

// Phase (a). Grid (B*H, ceil(DV / VT)), kThreads threads. Reads and then overwrites the prep
// kernel's terms: dstates [B, H, NC, DK, DV] <- the dS entering each chunk (this tile's
// columns), dX [B, T, H, DV] fp32 <- dX (from dX0); reads M; dv (+=). 2 products a chunk, 72 KB
// of shared memory at DK 64, VT 32 (three blocks a SM). dS lives in registers (StateRegs); the
// dS buffer holds its copy in the operand format for the first product. Per chunk c (in
// reverse), three barriers, prefetching as the forward's state kernel (right: what is fetched for
// chunk c - 1):
//   [old dv_c -> registers]  dX = dX0 + M dS, in place over X_c   | dX0_{c-1} -> the other X
//                                                                   (async)
//   | dX -> workspace, dv += diag(beta) dX, X_c <- -diag(beta Gam) dX in place (as an operand);
//     dS -> dstates, dS = Gam_last dS + Q^T diag(Gam) dO           | M_{c-1} -> Ms (async);
//                                                                   K_{c-1}, gates -> registers
//   | dS += K^T X_c, dS -> its buffer;  beta, beta Gam, Gam_last  | Q^T diag(Gam) dO_{c-1} ->
//     <- gates                                                      dSl (async); then Ks <- K
// The X buffers alternate as the forward's U buffers. dS goes to dstates in the pass (not at the
// chunk's start) because that slot holds chunk c's Q^T diag(Gam) dO until its copy has landed,
// which every thread waits for before the pass's barrier; chunk c - 1's copy is waited for
// before chunk c - 1's pass. kSplit: the operands as split tiles (M is stored so by the prep).
template <int VT, int NT, bool kSplit>
__global__ void __launch_bounds__(kThreads, 3)
    gdn_dstate_kernel(float* dstates, float* dX, DPtr dv, DPtr k, DPtr beta, DPtr g,
                      const float* M_in, GdnDims D) {
  extern __shared__ __align__(128) float sm[];
  constexpr int ldv = Layout<VT>::ldv;
  const int ldk = D.DKp + 4;
  float* Ms = sm;
  float* Ks = Ms + kC * ldk;
  float* Xb = Ks + kC * ldk;       // 2 x [kC][ldv]: dX0, then dX, then -diag(beta Gam) dX
  float* dSb = Xb + 2 * kC * ldv;  // [DKp][ldv]: dS as an operand
  float* dSl = dSb + D.DKp * ldv;  // Q^T diag(Gam) dO
  float* bet = dSl + D.DKp * ldv;
  float* bg = bet + kC;   // beta Gam
  float* GamL = bg + kC;  // Gam_last: one float of the 32-float tail
  const int b = blockIdx.x / D.H, h = blockIdx.x % D.H;
  const int j0 = blockIdx.y * VT, nv = min(VT, D.DV - j0);
  const int tid = threadIdx.x, nth = blockDim.x;
  const int64_t vstride = int64_t{D.H} * D.DV;
  // Chunk c's tiles: M, K [kC][DKp], dX0 [kC][VT], Q^T diag(Gam) dO [DKp][VT] (this value
  // tile's columns; the last as a state block: rows DK .. DKp zero).
  auto mtile = [&](int c) {
    return TileSrc{
        DPtr{const_cast<float*>(M_in), false}, wy_offset(D, b, h, c), D.DKp, kC, kC, D.DKp, D.DKp};
  };
  auto ktile = [&](int c) {
    return TileSrc{k,    D.qk(b, c * kC, h), int64_t{D.H} * D.DK, min(kC, D.T - c * kC), kC, D.DK,
                   D.DKp};
  };
  auto xtile = [&](int c) {
    return TileSrc{
        DPtr{dX, false}, D.vo(b, c * kC, h) + j0, vstride, min(kC, D.T - c * kC), kC, nv, VT};
  };
  auto ltile = [&](int c) {
    return TileSrc{DPtr{dstates, false}, D.state(b, h, c) + j0, D.DV, D.DK, D.DKp, nv, VT};
  };
  TileRegs<2> kr;  // K: 2 vectors a thread at DK 64 in bf16 (an f32 K's second half: at put())
  GateRegs gr;
  StateRegs<VT, NT> S(D);         // dS after the last chunk: 0
  auto put_gates = [&](int Cn) {  // beta, beta Gam, Gam_last = e^{gamma_last}
    if (tid >= 32) return;
    float x0, x1;
    const float gl = gr.scan(Cn, x0, x1);
    bet[2 * tid] = gr.b0;
    bet[2 * tid + 1] = gr.b1;
    bg[2 * tid] = gr.b0 * expf(x0);
    bg[2 * tid + 1] = gr.b1 * expf(x1);
    if (tid == 0) *GamL = expf(gl);
  };
  // The pass works on 4-column units of the [kC][VT] tile, kUnits consecutive units a thread
  // (unit i = (row i / (VT / 4), columns 4 (i % (VT / 4)) ..)), so that a thread's units pair
  // up into whole 8-column chunks, which it rewrites as operands; dv's old values for them are
  // loaded into registers (4 bf16 or 4 f32 a unit) before the chunk's first product.
  constexpr int kUpr = VT / 4, kUnits = kC * kUpr / kThreads;
  static_assert(kC * kUpr % kThreads == 0 && kUnits % 2 == 0);
  uint4 dvr[kUnits];
  {
    const int c = D.NC - 1, Cn = D.T - c * kC;
    copy_async(Ms, ldk, mtile(c));
    copy_async(Xb + (c % 2) * kC * ldv, ldv, xtile(c));
    copy_async(dSl, ldv, ltile(c));
    cp_async_commit();
    kr.fetch(ktile(c));
    gr.fetch(beta, g, D, b, h, c * kC, Cn);
    S.template put<kSplit>(dSb, ldv);
    kr.put<kSplit>(Ks, ldk, ktile(c));
    put_gates(Cn);
    cp_async_wait<0>();
  }
  __syncthreads();

  for (int c = D.NC - 1; c >= 0; --c) {
    const int t0 = c * kC, Cn = min(kC, D.T - t0);
    const bool next = c > 0;  // chunk c - 1 (whole: only the last chunk can be short)
    float* Xs = Xb + (c % 2) * kC * ldv;
    if (next) copy_async(Xb + ((c + 1) % 2) * kC * ldv, ldv, xtile(c - 1));
    cp_async_commit();  // (empty at c = 0: the group count below stays the same)
    // dX and dv by 4-column units as vectors where the units are whole (nv a multiple of 4) and
    // aligned; else element by element before the units' pass.
    const int64_t vo0 = D.vo(b, t0, h) + j0;
    const int desz = dv.bf ? 2 : 4;
    const bool units = nv % 4 == 0 && vstride % 4 == 0 &&
                       (reinterpret_cast<uintptr_t>(dX) + vo0 * 4) % 16 == 0 &&
                       (!dv || (reinterpret_cast<uintptr_t>(dv.p) + vo0 * desz) % (4 * desz) == 0);
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      const int i = tid * kUnits + u, t = i / kUpr, j = (i % kUpr) * 4;
      dvr[u] = make_uint4(0u, 0u, 0u, 0u);
      if (units && dv && D.acc && t < Cn && j < nv) {
        const int64_t e = vo0 + t * vstride + j;
        if (dv.bf) {
          const uint2 w =
              *reinterpret_cast<const uint2*>(static_cast<const __nv_bfloat16*>(dv.p) + e);
          dvr[u] = make_uint4(w.x, w.y, 0u, 0u);
        } else {
          dvr[u] = *reinterpret_cast<const uint4*>(static_cast<const float*>(dv.p) + e);
        }
      }
    }
    op_mm16<kSplit, false, false>(Xs, ldv, Ms, ldk, dSb, ldv, kC, VT, D.DKp,
                                  true);  // dX = dX0 + M dS
    cp_async_wait<1>();  // the previous chunk's dSl copy (this chunk's pass reads it)
    __syncthreads();
    if (next) copy_async(Ms, ldk, mtile(c - 1));
    cp_async_commit();
    if (!units) {
      for (int i = tid; i < Cn * nv; i += nth) {
        const int t = i / nv, j = i % nv;
        const float x = Xs[t * ldv + j];
        dX[vo0 + t * vstride + j] = x;
        if (dv) dv.put(vo0 + t * vstride + j, bet[t] * x, D.acc);
      }
      __syncthreads();  // read before the units below overwrite them
    }
#pragma unroll
    for (int m = 0; m < kUnits / 2; ++m) {
      float xn[8];  // the chunk's -diag(beta Gam) dX
#pragma unroll
      for (int w = 0; w < 2; ++w) {
        const int u = 2 * m + w, i = tid * kUnits + u, t = i / kUpr, j = (i % kUpr) * 4;
        const float4 x4 = *reinterpret_cast<const float4*>(Xs + t * ldv + j);
        const float x[4] = {x4.x, x4.y, x4.z, x4.w};
        if (units && t < Cn && j < nv) {
          const int64_t e = vo0 + t * vstride + j;
          *reinterpret_cast<float4*>(dX + e) = x4;
          if (dv) {  // dv += beta dX from the old values in registers (rounded as DPtr::st)
            float o[4];
            if (dv.bf) {
              o[0] = __uint_as_float(dvr[u].x << 16);
              o[1] = __uint_as_float(dvr[u].x & 0xffff0000u);
              o[2] = __uint_as_float(dvr[u].y << 16);
              o[3] = __uint_as_float(dvr[u].y & 0xffff0000u);
            } else {
              o[0] = __uint_as_float(dvr[u].x), o[1] = __uint_as_float(dvr[u].y);
              o[2] = __uint_as_float(dvr[u].z), o[3] = __uint_as_float(dvr[u].w);
            }
#pragma unroll
            for (int q = 0; q < 4; ++q) o[q] = o[q] + bet[t] * x[q];
            if (dv.bf) {
              const __nv_bfloat162 lo = __floats2bfloat162_rn(o[0], o[1]),
                                   hi = __floats2bfloat162_rn(o[2], o[3]);
              *reinterpret_cast<uint2*>(static_cast<__nv_bfloat16*>(dv.p) + e) = make_uint2(
                  *reinterpret_cast<const unsigned*>(&lo), *reinterpret_cast<const unsigned*>(&hi));
            } else {
              *reinterpret_cast<float4*>(static_cast<float*>(dv.p) + e) =
                  make_float4(o[0], o[1], o[2], o[3]);
            }
          }
        }
        const float s = -bg[t];
#pragma unroll
        for (int q = 0; q < 4; ++q) xn[4 * w + q] = s * x[q];
      }
      const int i = tid * kUnits + 2 * m;
      put_op<kSplit>(Xs + (i / kUpr) * ldv + (i % kUpr) * 4, xn);
    }
    // dstates <- dS over chunk c's prep term (its copy into dSl was waited for by every thread
    // before the barrier above), then dS <- Gam_last dS + Q^T diag(Gam) dO, in registers.
    S.store(DPtr{dstates, false}, D.state(b, h, c) + j0, D, nv);
    if (!next) break;  // the state gradient entering chunk 0 is not needed
    {
      const float gl = *GamL;
      S.each([&](int r, int j, float& x) { x = gl * x + dSl[r * ldv + j]; });
    }
    kr.fetch(ktile(c - 1));  // (after the units: their registers are free)
    gr.fetch(beta, g, D, b, h, t0 - kC, kC);
    __syncthreads();
    copy_async(dSl, ldv, ltile(c - 1));
    cp_async_commit();
    // dS0 = Gam_last dS + Q^T diag(Gam) dO - K^T diag(beta Gam) dX; its operand copy (the first
    // product's reads of it are past the barrier above)
    S.template add_kt<kSplit>(Ks, ldk, Xs, ldv, ex(D.xk, false));
    S.template put<kSplit>(dSb, ldv);
    put_gates(kC);
    cp_async_wait<1>();  // dX0 and M of chunk c - 1 (dSl's may still be in flight)
    __syncthreads();
    kr.put<kSplit>(Ks, ldk, ktile(c - 1));
  }
}

// Phase (b). Grid (B*H*NC), kThreads threads. Outputs (+=): dq, dk [B, T, H, DK], dbeta, dg
// [B, T, H]; each may be null (skipped). The four sums over the value tiles (dA, dL [C, C], Pq,
// Pk [C, DK]) stay in each warp's registers for the whole loop: warp w owns rows 16 (w / 2) ..
// + 16 and a half of the columns of each (two 16 x 16 tiles of dA and dL, KH of Pq and Pk), so
// the tile products need neither a shared-memory round trip of the accumulators nor a barrier.
// After the loop they go to shared memory over the spent tile buffers. KH = 2 covers DK <= 64
// (S0, dS and Pq, Pk padded with zeros to 32 KH columns), KH = 4 DK <= 128. Shared memory:
// 104 KB at DK 64, VT 32, so two blocks a SM (the 128-register cap); 172 KB at DK 128 (one).
constexpr int kChunkWarps = kThreads / 32;
static_assert(kChunkWarps == 8 && kC == 64, "the warp -> tile map below");
template <int VT, int KH>
struct ChunkGradLayout {
  static constexpr int ldv = VT + 4, DKw = 32 * KH, ldp = DKw + 4, nvec = 11 * kC + 32;
  // floats: Ks [kC][ldk], the vectors, then a region used twice: in the loop Ts [kC][kLdc], five
  // [kC][ldv] tiles and S0, dS [DKw][ldv]; after it dA, dL [kC][kLdc], Pq, Pk [kC][ldp], Q
  // [kC][ldk].
  __host__ __device__ static int loop_floats() { return kC * kLdc + 5 * kC * ldv + 2 * DKw * ldv; }
  __host__ __device__ static int post_floats(int ldk) {
    return 2 * kC * kLdc + 2 * kC * ldp + kC * ldk;
  }
  static size_t bytes(int DKp) {
    const int ldk = DKp + 4;
    return sizeof(float) *
           static_cast<size_t>(kC * ldk + nvec + std::max(loop_floats(), post_floats(ldk)));
  }
};
template <int VT, int KH, bool kSplit>
__global__ void __launch_bounds__(kThreads, KH == 2 ? 2 : 1)
    gdn_chunk_grad_kernel(DPtr dq, DPtr dk, DPtr dbeta, DPtr dg, DPtr dout, DPtr states,
                          const float* dstates, const float* dX_in, DPtr q, DPtr k, DPtr v,
                          DPtr beta, DPtr g, const float* A_in, const float* kke_in,
                          const float* T_in, GdnDims D) {
  extern __shared__ __align__(128) float sm[];
  using L = ChunkGradLayout<VT, KH>;
  constexpr int ldv = L::ldv, ldp = L::ldp;
  // 8-column chunks a row of a value tile; a thread a chunk in the per-tile passes.
  constexpr int kCpr = VT / 8;
  static_assert(VT % 8 == 0 && kC * kCpr <= kThreads && (kCpr & (kCpr - 1)) == 0);
  const int ldk = D.DKp + 4;
  float* Ks = sm;
  float* gam = Ks + kC * ldk;
  float* Gam = gam + kC;
  float* ev = Gam + kC;
  float* bet = ev + kC;
  float* dgam = bet + kC;
  float* dbet = dgam + kC;
  float* z3k = dbet + kC;  // sum over tiles of Gam_t beta_t dX_t . (K S0)_t
  float* colp = z3k + kC;  // [4][kC]: partial column sums (the dgamma terms below)
  float* red = colp + 4 * kC;
  float* region = red + 32;
  // In the loop:
  float* Ts = region;
  float* Xs = Ts + kC * kLdc;  // V, then X = diag(beta) (V - diag(Gam) K S0), then diag(e) Delta
  float* dOs = Xs + kC * ldv;
  float* dXs = dOs + kC * ldv;
  float* Dl = dXs + kC * ldv;  // Delta
  float* KS = Dl + kC * ldv;   // K S0, then -diag(Gam beta) dX
  float* S0 = KS + kC * ldv;   // [DKw][ldv]
  float* dSs = S0 + L::DKw * ldv;
  // After it:
  float* dA = region;          // sum of dO Delta^T, then dQK
  float* dL = dA + kC * kLdc;  // sum of dX Delta^T, then G
  float* Pq = dL + kC * kLdc;  // sum of dO S0^T, then dQ
  float* Pk = Pq + kC * ldp;   // sum of diag(e) Delta dS^T - diag(Gam beta) dX S0^T, then dK
  float* Qs = Pk + kC * ldp;
  const int c = blockIdx.x % D.NC, bh = blockIdx.x / D.NC, b = bh / D.H, h = bh % D.H;
  const int t0 = c * kC, Cn = min(kC, D.T - t0);
  const int tid = threadIdx.x, nth = blockDim.x, warp = tid / 32, lane = tid % 32;
  const int64_t po = prep_offset(D, b, h, c);
  // The products' `exact` flags (tile_mma.cuh): compile-time constants where kSplit (which needs
  // every input bf16), so that no lo fragment of q, k or dout is loaded or kept in registers.
  // Every product here keeps its k loop rolled (kRoll): unrolled, the fragments hoisted ahead
  // spilled at the 128-register cap beside the sums' 64 accumulator registers.
  const int xAK = kSplit ? kExactA : ex(D.xk, false), xO = kSplit ? kExactA : ex(D.xo, false),
            xBK = kSplit ? kExactB : ex(false, D.xk), xBQ = kSplit ? kExactB : ex(false, D.xq);
  for (int t = tid; t < kC; t += nth) dgam[t] = dbet[t] = z3k[t] = 0.f;
  const int64_t stride = int64_t{D.H} * D.DK;
  // Tinv by cp.async, waited for with the first value tile's copies (before its first use).
  copy_async(Ts, kLdc, prep_tile(T_in + po));
  // K in the operand format for the whole kernel (the row sums after the loop read it through
  // get_op4). In 3xTF32 the loop's K S0 product was 13% of this kernel's instructions (ncu,
  // 2026-12-04: two k8 steps of ~52 a k16, scalar LDS and a split a fragment element).
  load_tile<kSplit>(Ks, ldk, k, D.qk(b, t0, h), stride, Cn, kC, D.DK, D.DKp);
  load_gates(bet, gam, Gam, ev, beta, g, D, b, h, t0, Cn);  // ends with a barrier
  const float GamL = Gam[Cn - 1];
  float part = 0.f;  // this thread's share of Gam_last <S0, dS>
  // This warp's tiles: rows i0 .. i0 + 16; columns jc .. jc + 32 of dA, dL, jp .. jp + 16 KH of
  // Pq, Pk.
  const int i0 = 16 * (warp / 2), jc = 32 * (warp % 2), jp = 16 * KH * (warp % 2);
  Acc fA[2], fL[2], fq[KH], fk[KH];

  for (int j0 = 0; j0 < D.DV; j0 += VT) {
    const int nv = min(VT, D.DV - j0);
    __syncthreads();  // the previous tile's products are done with the tile buffers
    const int64_t so = D.state(b, h, c) + j0;
    // The fp32 tiles by cp.async, in flight while the bf16 ones are loaded (widened) through
    // registers: ~2 global round trips a tile. (One load_tile after another, each vector's load
    // behind the previous store, waited ~8: ncu's largest stall here, 2026-12-02. Both bf16
    // tiles' loads before either store would take 8 more registers: 92 bytes of spills.)
    const int64_t vo = D.vo(b, t0, h) + j0, vstride = int64_t{D.H} * D.DV;
    copy_async(S0, ldv, {states, so, D.DV, D.DK, L::DKw, nv, VT});  // zero rows DK .. DKw
    copy_async(dSs, ldv,
               {DPtr{const_cast<float*>(dstates), false}, so, D.DV, D.DK, L::DKw, nv, VT});
    copy_async(dXs, ldv, {DPtr{const_cast<float*>(dX_in), false}, vo, vstride, Cn, kC, nv, VT});
    cp_async_commit();
    TileSrc{v, vo, vstride, Cn, kC, nv, VT}.load(Xs, ldv);
    TileSrc{dout, vo, vstride, Cn, kC, nv, VT}.load<2, kSplit>(dOs, ldv);
    cp_async_wait<0>();
    __syncthreads();
    // A thread per 8-column chunk of S0 and dS (rows DK .. DKw are zero): its share of Gam_last
    // <S0, dS>, then both in the operand format for the products below (no other thread reads
    // the chunk before the barrier). Tinv once, at the first tile.
    for (int i = tid; i < L::DKw * kCpr; i += nth) {
      const int o = (i / kCpr) * ldv + (i % kCpr) * 8;
      float a[8], d[8];
      get_chunk(S0 + o, a);
      get_chunk(dSs + o, d);
#pragma unroll
      for (int e = 0; e < 8; ++e) part += GamL * a[e] * d[e];
      put_op<kSplit>(S0 + o, a);
      put_op<kSplit>(dSs + o, d);
    }
    if (j0 == 0) to_op<kSplit>(Ts, kLdc, kC, kC);
    __syncthreads();
    // K S0 (K is exact: bf16 in the split format, which needs every input bf16).
    op_mm16<kSplit, false, false, 1, true>(KS, ldv, Ks, ldk, S0, ldv, kC, VT, D.DKp, false, xAK);
    __syncthreads();
    // A thread per 8-column chunk of a row (kCpr threads a row; the rows stay with their
    // threads across tiles, so the sums need no barrier against each other): Ub = V - diag(Gam)
    // K S0;  dbeta_t += dX_t . Ub_t;  z3k_t += Gam_t beta_t dX_t . (K S0)_t; then X = diag(beta)
    // Ub, KS <- -diag(Gam beta) dX and dX itself as split tiles (the products below read them
    // so; dO is loaded split).
    {
      const int t = tid / kCpr, o = t * ldv + (tid % kCpr) * 8;
      float db = 0.f, zk = 0.f;
      if (t < kC) {
        float ks[8], u[8], x[8];
        get_chunk(KS + o, ks);
        get_chunk(dXs + o, x);
        const float gt = Gam[t], bt = bet[t];
        get_chunk(Xs + o, u);
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          zk += x[e] * ks[e];
          u[e] -= gt * ks[e];
          db += x[e] * u[e];
        }
        put_op<kSplit>(dXs + o, x);
#pragma unroll
        for (int e = 0; e < 8; ++e) x[e] *= -gt * bt;
        put_op<kSplit>(KS + o, x);
#pragma unroll
        for (int e = 0; e < 8; ++e) u[e] *= bt;
        put_op<kSplit>(Xs + o, u);
      }
#pragma unroll
      for (int m = 1; m < kCpr; m <<= 1) {
        db += __shfl_xor_sync(0xffffffffu, db, m);
        zk += __shfl_xor_sync(0xffffffffu, zk, m);
      }
      if (t < kC && tid % kCpr == 0) {
        dbet[t] += db;
        z3k[t] += Gam[t] * bet[t] * zk;
      }
    }
    __syncthreads();
    op_mm16<kSplit, false, false, 1, true>(Dl, ldv, Ts, kLdc, Xs, ldv, kC, VT, kC,
                                           false);  // Delta = Tinv X
    __syncthreads();
    // X <- diag(e) Delta, and Delta, as split tiles.
    for (int i = tid; i < kC * kCpr; i += nth) {
      const int t = i / kCpr, o = t * ldv + (i % kCpr) * 8;
      float d[8];
      get_chunk(Dl + o, d);
      put_op<kSplit>(Dl + o, d);
#pragma unroll
      for (int e = 0; e < 8; ++e) d[e] *= ev[t];
      put_op<kSplit>(Xs + o, d);
    }
    __syncthreads();
    // The sums, in this warp's registers (B operands stored transposed: Delta [C][VT] as
    // Delta^T, S0 and dS [DKw][VT] as S0^T, dS^T).
    // fA += dO Delta^T, fL += dX Delta^T, fq += dO S0^T, fk += diag(e) Delta dS^T and
    // fk += -diag(Gam beta) dX S0^T.
    op_mma<kSplit, false, true, 2, 1, true>(fA, dOs, ldv, Dl, ldv, i0, jc, VT, xO);
    op_mma<kSplit, false, true, 2, 1, true>(fL, dXs, ldv, Dl, ldv, i0, jc, VT, 0);
    op_mma<kSplit, false, true, KH, 1, true>(fq, dOs, ldv, S0, ldv, i0, jp, VT, xO);
    op_mma<kSplit, false, true, KH, 1, true>(fk, Xs, ldv, dSs, ldv, i0, jp, VT, 0);
    op_mma<kSplit, false, true, KH, 1, true>(fk, KS, ldv, S0, ldv, i0, jp, VT, 0);
  }
  __syncthreads();  // every warp is done with the tile buffers: the sums go over them
#pragma unroll
  for (int n = 0; n < 2; ++n) {
    store_acc(dA, kLdc, i0, jc + 16 * n, fA[n]);
    store_acc(dL, kLdc, i0, jc + 16 * n, fL[n]);
  }
#pragma unroll
  for (int n = 0; n < KH; ++n) {
    store_acc(Pq, ldp, i0, jp + 16 * n, fq[n]);
    store_acc(Pk, ldp, i0, jp + 16 * n, fk[n]);
  }
  __syncthreads();
  load_tile<kSplit>(Qs, ldk, q, D.qk(b, t0, h), stride, Cn, kC, D.DK, D.DKp);
  // dA: the masked part of A only; d_ts = -dL_ts for s < t (the strictly lower L).
  each_chunk2(dA, dL, [](int t, int s0, float(&a)[8], float(&l)[8]) {
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      a[e] = s0 + e <= t ? a[e] : 0.f;
      l[e] = s0 + e < t ? -l[e] : 0.f;
    }
  });
  __syncthreads();
  // Per row t (a warp each; A, KKE read from the prep arrays):
  //   dgamma_t += sum_s dA_ts A_ts - sum_u dA_ut A_ut + sum_s d_ts L_ts - sum_u d_ut L_ut
  //             + Gam_t Pq_t . q_t - e_t r_t - Z_t . k_t
  //   dbeta_t  += sum_s d_ts KKE_ts
  // with L = diag(beta) KKE, e_t r_t = Pk_t . k_t + z3k_t (the e Delta dS^T part of Pk) and
  // Z_t . k_t = z3k_t; dgamma_last += sum_t e_t r_t + Gam_last <S0, dS>. Then Pq <- diag(Gam) Pq.
  const float* Ag = A_in + po;
  const float* KKg = kke_in + po;
  // The column sums sum_u (dA_ut A_ut + d_ut beta_u KKE_ut) first, a thread per column and
  // quarter of the rows, so that the global reads of A and KKE are coalesced (a warp per row
  // reading column t gathered 32 rows' sectors a load).
  static_assert(kThreads == 4 * kC);
  {
    const int t = tid % kC, u0 = (tid / kC) * (kC / 4);
    float cs = 0.f;
#pragma unroll 4
    for (int u = u0; u < u0 + kC / 4; ++u)
      cs += dA[u * kLdc + t] * Ag[u * kC + t] + dL[u * kLdc + t] * bet[u] * KKg[u * kC + t];
    colp[tid] = cs;
  }
  __syncthreads();
  // The row sums, 8 lanes a row and 4 rows a warp at a time (rows 8 warp .. + 8): lane j of a
  // row takes the float4s at columns 4 j + 32 m, so the 8 lanes of a row read 128 contiguous
  // bytes of each array and reduce in 3 shuffle steps. (A warp a row with scalar loads and four
  // 5-step warp sums was ~10% of this kernel's instructions: ncu, 2026-12-04.) Pq <- diag(Gam) Pq
  // on the way, each lane on the elements it read.
  static_assert(kC == 64 && kChunkWarps * 8 == kC);
  float rsum = 0.f;
  {
    const int j = lane % 8;
#pragma unroll
    for (int it = 0; it < 2; ++it) {
      const int t = 8 * warp + 4 * it + lane / 8;
      float acc = 0.f, db = 0.f, zq = 0.f, er = 0.f;
#pragma unroll
      for (int m = 0; m < 2; ++m) {
        const int sc = 4 * j + 32 * m;
        const float4 da = *reinterpret_cast<const float4*>(dA + t * kLdc + sc),
                     dl = *reinterpret_cast<const float4*>(dL + t * kLdc + sc),
                     aa = *reinterpret_cast<const float4*>(Ag + t * kC + sc),
                     kk = *reinterpret_cast<const float4*>(KKg + t * kC + sc);
        acc += da.x * aa.x + da.y * aa.y + da.z * aa.z + da.w * aa.w;
        db += dl.x * kk.x + dl.y * kk.y + dl.z * kk.z + dl.w * kk.w;
      }
      acc += bet[t] * db;  // sum_s d_ts L_ts
      const float gt = Gam[t];
      for (int c = 4 * j; c < D.DKp; c += 32) {
        float4* pq = reinterpret_cast<float4*>(Pq + t * ldp + c);
        const float4 pk = *reinterpret_cast<const float4*>(Pk + t * ldp + c), x = *pq;
        float qv[4], kv[4];
        get_op4<kSplit>(Qs + t * ldk, c, qv);
        get_op4<kSplit>(Ks + t * ldk, c, kv);
        zq += x.x * qv[0] + x.y * qv[1] + x.z * qv[2] + x.w * qv[3];
        er += pk.x * kv[0] + pk.y * kv[1] + pk.z * kv[2] + pk.w * kv[3];
        *pq = make_float4(gt * x.x, gt * x.y, gt * x.z, gt * x.w);
      }
#pragma unroll
      for (int o = 1; o < 8; o <<= 1) {
        acc += __shfl_xor_sync(0xffffffffu, acc, o);
        db += __shfl_xor_sync(0xffffffffu, db, o);
        zq += __shfl_xor_sync(0xffffffffu, zq, o);
        er += __shfl_xor_sync(0xffffffffu, er, o);
      }
      if (j == 0) {
        er += z3k[t];
        acc -= (colp[t] + colp[kC + t]) + (colp[2 * kC + t] + colp[3 * kC + t]);
        dgam[t] += acc + gt * zq - er - z3k[t];
        dbet[t] += db;
        rsum += er;
      }
    }
  }
  const float last = block_sum(part + rsum, red);  // barriers
  if (tid == 0) dgam[Cn - 1] += last;
  // dQK = dA . E;  G_ts = d_ts beta_t E_ts, stored in the operand format for the products below
  // (K and Q are already: loaded so) in the same pass. (Entries s > t are zero from the mask.)
  each_chunk2<kSplit>(dA, dL, [&](int t, int s0, float(&a)[8], float(&l)[8]) {
    const float gt = gam[t], bt = bet[t];
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const float E = s0 + e <= t ? decay(gt, gam[s0 + e]) : 0.f;
      a[e] *= E;
      l[e] *= bt * E;
    }
  });
  __syncthreads();
  // Pq += dQK K;  Pk += dQK^T Q + G K + G^T K.
  op_mm16<kSplit, false, false, 1, true>(Pq, ldp, dA, kLdc, Ks, ldk, kC, D.DKp, kC, true, xBK);
  op_mm16<kSplit, true, false, 1, true>(Pk, ldp, dA, kLdc, Qs, ldk, kC, D.DKp, kC, true, xBQ);
  op_mm16<kSplit, false, false, 1, true>(Pk, ldp, dL, kLdc, Ks, ldk, kC, D.DKp, kC, true, xBK);
  op_mm16<kSplit, true, false, 1, true>(Pk, ldp, dL, kLdc, Ks, ldk, kC, D.DKp, kC, true, xBK);
  __syncthreads();
  if (dq) add_tile(dq, D.qk(b, t0, h), stride, Pq, ldp, Cn, D.DK, nullptr, D.acc);
  if (dk) add_tile(dk, D.qk(b, t0, h), stride, Pk, ldp, Cn, D.DK, nullptr, D.acc);
  // dg_j = sum_{t >= j} dgamma_t within the chunk (the cross-chunk path went through
  // dgamma_last); dbeta.
  for (int t = Cn + tid; t < kC; t += nth) dgam[t] = 0.f;
  __syncthreads();
  chunk_scan(dgam, true);
  __syncthreads();
  for (int t = tid; t < Cn; t += nth) {
    if (dg) dg.put(D.gate(b, t0 + t, h), dgam[t], D.acc);
    if (dbeta) dbeta.put(D.gate(b, t0 + t, h), dbet[t], D.acc);
  }
}

GdnDims dims(int64_t B, int64_t T, int64_t H, int64_t key_dim, int64_t value_dim, DPtr q, DPtr k,
             DPtr v, DPtr dout, const char* what) {
  if (B * T * H > (int64_t{1} << 40) || T > (int64_t{1} << 30) || key_dim < 1 || value_dim < 1 ||
      key_dim > 4096)
    fail(std::string("cuda gdn ") + what + ": unsupported sizes");
  const int key_pad = static_cast<int>((key_dim + 15) / 16 * 16);
  return {static_cast<int>(B),
          static_cast<int>(T),
          static_cast<int>(H),
          static_cast<int>(key_dim),
          static_cast<int>(value_dim),
          static_cast<int>((T + kC - 1) / kC),
          key_pad,
          q.bf,
          k.bf,
          v.bf,
          dout.bf};
}

// The value tile: 32 columns where the shared memory allows, else 16. 0 if neither fits.
int pick_vt(const Ctx& ctx, const GdnDims& D, const int (&n)[5]) {
  // (32 only up to DKp 256: the sequential kernels' state stays within 4 tiles a warp.)
  if (D.DKp <= 256 && Layout<32>::bytes(D.DKp, n[0], n[1], n[2], n[3], n[4]) <= ctx.smem_optin)
    return 32;
  if (Layout<16>::bytes(D.DKp, n[0], n[1], n[2], n[3], n[4]) <= ctx.smem_optin) return 16;
  return 0;
}

[[noreturn]] void too_big(const Ctx& ctx, const GdnDims& D, const int (&n)[5], const char* what) {
  fail(std::string("cuda gdn ") + what + ": key dim " + std::to_string(D.DK) + " needs " +
       std::to_string(Layout<16>::bytes(D.DKp, n[0], n[1], n[2], n[3], n[4])) +
       " bytes of shared memory per block, the device allows " + std::to_string(ctx.smem_optin));
}

// The prep kernel's operand format (and so that of the -W or M array it stores for the sequential
// kernels): split tiles where q, k and vo (v, or dout) are all bf16.
bool prep_split(const GdnDims& D, DPtr vo) { return D.xq && D.xk && vo.bf; }

// Floats of one prep array: [B, H, NC][kC][kC]; of the -W or M array: [B, H, NC][kC][DKp].
size_t prep_floats(const GdnDims& D) { return size_t{1} * D.B * D.H * D.NC * kC * kC; }
size_t wy_floats(const GdnDims& D) { return size_t{1} * D.B * D.H * D.NC * kC * D.DKp; }

// The prep kernel (see there): forward (dstates null) into A_out, wy_out (-W), x_out (U) from
// vo = v; backward into A_out, kke_out, T_out, wy_out (M), x_out (dX0), dstates from vo = dout.
void prep(Ctx& ctx, const GdnDims& D, float* A_out, float* kke_out, float* T_out, float* wy_out,
          float* x_out, DPtr vo, DPtr q, DPtr k, DPtr beta, DPtr g, float* dstates = nullptr) {
  const size_t smem = sizeof(float) * (size_t{2} * kC * (D.DKp + 4) + size_t{2} * kC * kLdc +
                                       prep_x3_floats(D.DKp) + 3 * 256 + 4 * kC);
  if (smem > ctx.smem_optin)
    fail("cuda gdn: key dim " + std::to_string(D.DK) + " needs " + std::to_string(smem) +
         " bytes of shared memory per block, the device allows " + std::to_string(ctx.smem_optin));
  // kSplit: bf16x3 products where every input is bf16 (tile_mma.cuh), else 3xTF32.
  const auto run = [&](auto sp) {
    constexpr bool kSplit = decltype(sp)::value;
    smem_opt_in(gdn_prep_kernel<kSplit>, smem);
    gdn_prep_kernel<kSplit>
        <<<static_cast<unsigned>(D.B * D.H * D.NC), kThreads, smem, ctx.stream>>>(
            A_out, kke_out, T_out, wy_out, x_out, dstates, vo, q, k, beta, g, D);
    SL_CUDA_LAUNCHED();
  };
  if (prep_split(D, vo))
    run(std::true_type{});
  else
    run(std::false_type{});
}

// f(NT, kSplit) as compile-time constants (std::integral_constant, std::bool_constant) for the
// sequential kernels: NT = state_nt(DKp, VT) (1, 2 or up to maxNT), kSplit as given.
template <int maxNT, class F>
void with_state_kernel(const GdnDims& D, int VT, bool split, F&& f) {
  const auto s = [&](auto nt) {
    if (split)
      f(nt, std::true_type{});
    else
      f(nt, std::false_type{});
  };
  const int nt = state_nt(D.DKp, VT);
  if (nt == 1) return s(std::integral_constant<int, 1>{});
  if (nt == 2) return s(std::integral_constant<int, 2>{});
  if constexpr (maxNT >= 4)
    if (nt == 4) return s(std::integral_constant<int, 4>{});
  fail("cuda gdn: key dim " + std::to_string(D.DK) + " exceeds the state kernels' tiling");
}

template <int VT>
void forward_vt(Ctx& ctx, const GdnDims& D, DPtr out, DPtr states, DPtr q, DPtr k, DPtr v,
                DPtr beta, DPtr g) {
  // Workspace: the prep's A and -W, then Delta [B, T, H, DV] fp32 (U from the prep, which the
  // state kernel overwrites with Delta).
  const size_t np = prep_floats(D), nw = wy_floats(D), ndelta = size_t{1} * D.B * D.T * D.H * D.DV;
  float* A = ctx.work->get_as<float>(np + nw + ndelta);
  float* Wn = A + np;
  float* delta = Wn + nw;
  prep(ctx, D, A, nullptr, nullptr, Wn, delta, v, q, k, beta, g);
  const unsigned ntiles = static_cast<unsigned>((D.DV + VT - 1) / VT);
  with_state_kernel<4>(D, VT, prep_split(D, v), [&](auto nt, auto sp) {
    constexpr int NT = decltype(nt)::value;
    constexpr bool kSplit = decltype(sp)::value;
    const auto& n = kFwdState;
    const size_t smem = Layout<VT>::bytes(D.DKp, n[0], n[1], n[2], n[3], n[4]);
    smem_opt_in(gdn_state_kernel<VT, NT, kSplit>, smem);
    const dim3 grid(static_cast<unsigned>(D.B * D.H), ntiles);
    gdn_state_kernel<VT, NT, kSplit>
        <<<grid, kThreads, smem, ctx.stream>>>(states, delta, k, g, Wn, D);
    SL_CUDA_LAUNCHED();
  });
  // kSplit: bf16x3 products where every input is bf16 (tile_mma.cuh), else 3xTF32.
  const auto output = [&](auto sp) {
    constexpr bool kSplit = decltype(sp)::value;
    const auto& n = kFwdOutput;
    const size_t smem = Layout<VT>::bytes(D.DKp, n[0], n[1], n[2], n[3], n[4]);
    smem_opt_in(gdn_output_kernel<VT, kSplit>, smem);
    gdn_output_kernel<VT, kSplit>
        <<<static_cast<unsigned>(D.B * D.H * D.NC), kThreads, smem, ctx.stream>>>(
            out, states, delta, q, g, A, D);
    SL_CUDA_LAUNCHED();
  };
  if (D.xq && D.xk && D.xv)
    output(std::true_type{});
  else
    output(std::false_type{});
}

template <int VT>
void backward_vt(Ctx& ctx, const GdnDims& D, DPtr dq, DPtr dk, DPtr dv, DPtr dbeta, DPtr dg,
                 DPtr dout, DPtr states, DPtr q, DPtr k, DPtr v, DPtr beta, DPtr g) {
  // Workspace: the prep arrays A, KKE, Tinv, then phase (a)'s dstates [B, H, NC, DK, DV] and dX
  // [B, T, H, DV], then the prep's M [B, H, NC][kC][DKp] (at a multiple of 4 floats, for its
  // 16-byte loads), fp32.
  const size_t np = prep_floats(D);
  const size_t nds = size_t{1} * D.B * D.H * D.NC * D.DK * D.DV;
  const size_t ndx = size_t{1} * D.B * D.T * D.H * D.DV;
  const size_t nm_at = 3 * np + (nds + ndx + 3) / 4 * 4;
  float* A = ctx.work->get_as<float>(nm_at + wy_floats(D));
  float* kke = A + np;
  float* Tinv = kke + np;
  float* dstates = Tinv + np;
  float* dX = dstates + nds;
  float* M = A + nm_at;
  prep(ctx, D, A, kke, Tinv, M, dX, dout, q, k, beta, g, dstates);
  // (gdn_backward checks DK <= 128: two tiles a warp at most.)
  with_state_kernel<2>(D, VT, prep_split(D, dout), [&](auto nt, auto sp) {
    constexpr int NT = decltype(nt)::value;
    constexpr bool kSplit = decltype(sp)::value;
    const auto& n = kBwdState;
    const size_t smem = Layout<VT>::bytes(D.DKp, n[0], n[1], n[2], n[3], n[4]);
    smem_opt_in(gdn_dstate_kernel<VT, NT, kSplit>, smem);
    const dim3 grid(static_cast<unsigned>(D.B * D.H), static_cast<unsigned>((D.DV + VT - 1) / VT));
    gdn_dstate_kernel<VT, NT, kSplit>
        <<<grid, kThreads, smem, ctx.stream>>>(dstates, dX, dv, k, beta, g, M, D);
    SL_CUDA_LAUNCHED();
  });
  // KH: the key-side tiles per warp of the chunk-parallel kernel (gdn_backward checks DK <= 128).
  // kSplit: bf16x3 products where every input is bf16 (tile_mma.cuh), else 3xTF32.
  const bool split = D.xq && D.xk && D.xv && D.xo;
  const auto chunk_grad = [&](auto kh, auto sp) {
    constexpr int KH = decltype(kh)::value;
    constexpr bool kSplit = decltype(sp)::value;
    const size_t smem = ChunkGradLayout<VT, KH>::bytes(D.DKp);
    if (smem > ctx.smem_optin)
      fail("cuda gdn backward: key dim " + std::to_string(D.DK) + " needs " + std::to_string(smem) +
           " bytes of shared memory per block, the device allows " +
           std::to_string(ctx.smem_optin));
    smem_opt_in(gdn_chunk_grad_kernel<VT, KH, kSplit>, smem);
    gdn_chunk_grad_kernel<VT, KH, kSplit>
        <<<static_cast<unsigned>(D.B * D.H * D.NC), kThreads, smem, ctx.stream>>>(
            dq, dk, dbeta, dg, dout, states, dstates, dX, q, k, v, beta, g, A, kke, Tinv, D);
    SL_CUDA_LAUNCHED();
  };
  using Two = std::integral_constant<int, 2>;
  using Four = std::integral_constant<int, 4>;
  using Split = std::true_type;
  using Fp32 = std::false_type;
  if (D.DKp <= 64)
    split ? chunk_grad(Two{}, Split{}) : chunk_grad(Two{}, Fp32{});
  else
    split ? chunk_grad(Four{}, Split{}) : chunk_grad(Four{}, Fp32{});
}

}  // namespace

}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's kernels, common.cuh

void CudaBackend::gdn_forward(Tensor out_t, Tensor states_t, Tensor q_t, Tensor k_t, Tensor v_t,
                              Tensor beta_t, Tensor g_t, const GdnShape& shape) {
  const int64_t B = shape.B, T = shape.T, H = shape.H, key_dim = shape.key_dim,
                value_dim = shape.value_dim;
  const char* op = "gdn_forward";
  const DPtr out = dptr(out_t, op, "out"), states = dptr(states_t, op, "states"),
             q = dptr(q_t, op, "q"), k = dptr(k_t, op, "k"), v = dptr(v_t, op, "v"),
             beta = dptr(beta_t, op, "beta"), g = dptr(g_t, op, "g");
  Ctx& ctx = cuda_ctx();
  if (B * T * H <= 0) return;
  const GdnDims D = dims(B, T, H, key_dim, value_dim, q, k, v, {}, "forward");
  switch (pick_vt(ctx, D, kFwdPick)) {
    case 32:
      return forward_vt<32>(ctx, D, out, states, q, k, v, beta, g);
    case 16:
      return forward_vt<16>(ctx, D, out, states, q, k, v, beta, g);
    default:
      too_big(ctx, D, kFwdPick, "forward");
  }
}

void CudaBackend::gdn_backward(Tensor dq_t, Tensor dk_t, Tensor dv_t, Tensor dbeta_t, Tensor dg_t,
                               Tensor dout_t, Tensor states_t, Tensor q_t, Tensor k_t, Tensor v_t,
                               Tensor beta_t, Tensor g_t, const GdnShape& shape, bool accumulate) {
  const int64_t B = shape.B, T = shape.T, H = shape.H, key_dim = shape.key_dim,
                value_dim = shape.value_dim;
  const char* op = "gdn_backward";
  const DPtr dq = dptr(dq_t, op, "dq"), dk = dptr(dk_t, op, "dk"), dv = dptr(dv_t, op, "dv"),
             dbeta = dptr(dbeta_t, op, "dbeta"), dg = dptr(dg_t, op, "dg"),
             dout = dptr(dout_t, op, "dout"), states = dptr(states_t, op, "states"),
             q = dptr(q_t, op, "q"), k = dptr(k_t, op, "k"), v = dptr(v_t, op, "v"),
             beta = dptr(beta_t, op, "beta"), g = dptr(g_t, op, "g");
  Ctx& ctx = cuda_ctx();
  if (B * T * H <= 0) return;
  GdnDims D = dims(B, T, H, key_dim, value_dim, q, k, v, dout, "backward");
  D.acc = accumulate;
  // The chunk-parallel kernel keeps 32 KH key columns a warp in registers (KH <= 4), and the
  // sequential pass's value tile of 32 fits at every key dim up to 128.
  if (D.DKp > 128)
    fail("cuda gdn backward: key dim " + std::to_string(key_dim) + " is above the 128 supported");
  if (pick_vt(ctx, D, kBwdState) != 32) too_big(ctx, D, kBwdState, "backward");
  backward_vt<32>(ctx, D, dq, dk, dv, dbeta, dg, dout, states, q, k, v, beta, g);
}

}  // namespace sl
