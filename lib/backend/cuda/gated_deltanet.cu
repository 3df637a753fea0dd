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
// Tensor cores, fp32-faithful: every product is a block-wide 3xTF32 WMMA product (tile_mma.cuh);
// q, k, v and dout tiles widened from bf16 are exact in TF32 and skip their lo products.
//
// Parallelism: the value columns of S evolve independently (delta_t[j] only involves S[:, j]), so a
// block owns one (b, h) and a tile of VT value columns, and walks the chunks in order (backward:
// in reverse). The [C, C] matrices (A, KKE, Tinv) depend on no state: gdn_prep_kernel computes
// them for every chunk at once, in parallel, before each sequential kernel, which loads them
// (once per chunk and head instead of once per value tile, and off the serial path). Everything a
// chunk needs lives in shared memory, zero-padded to the tile grid (rows to 64, DK to a multiple of
// 16, value columns to VT), so padded tails (T not a multiple of 64, DV not a multiple of VT) feed
// zeros into every product and are never written out. Backward: dv is per column and written
// directly (+=); dq, dk, dbeta and dg are sums over the column tiles, so each tile writes its share
// to an fp32 workspace [ntiles, ...] and a second kernel adds the tiles in order: no atomics,
// deterministic.
#include <string>
#include <utility>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/tile_mma.cuh"

namespace sl::cuda {
namespace {

constexpr int kC = 64;  // chunk length (the states layout depends on it)
static_assert(kC == kGdnChunk);
constexpr int kThreads = 256;
constexpr int kLdc = kC + 4;  // leading dim of the [C, C] matrices (multiple of 4 for WMMA)

// DK, DV: the head dimensions key_dim, value_dim (dk, dv are gradients); NC = gdn_num_chunks(T).
struct GdnDims {
  int B, T, H, DK, DV, NC;
  int DKp;  // DK rounded up to 16 (the WMMA tile)
  // Inputs stored as bf16, hence exact in TF32 once widened: q, k, v, dout.
  bool xq, xk, xv, xo;
  // Element offsets: token t of sequence b, head h, for q/k rows, v/out rows and beta/g.
  __device__ int64_t qk(int b, int t, int h) const { return ((int64_t{b} * T + t) * H + h) * DK; }
  __device__ int64_t vo(int b, int t, int h) const { return ((int64_t{b} * T + t) * H + h) * DV; }
  __device__ int64_t gate(int b, int t, int h) const { return (int64_t{b} * T + t) * H + h; }
  __device__ int64_t state(int b, int h, int c) const {
    return ((int64_t{b} * H + h) * NC + c) * DK * DV;
  }
};

// The `exact` bits of mm() for operands that are (a) / (b) widened from bf16.
__device__ inline int ex(bool a, bool b) { return (a ? kExactA : 0) | (b ? kExactB : 0); }

// Ts = (I + L)^{-1} with L_ts = bet_t KKE_ts (s < t; KKE strictly lower, [kC][kLdc]), by 16 x 16
// blocks: the four diagonal blocks by substitution (one thread per column), then the
// off-diagonal blocks by distance d = I - J from the diagonal,
//   T_IJ = -T_II sum_{K=J}^{I-1} L_IK T_KJ,
// whose T_KJ (K - J < d) are already known. P: scratch of 3 * 256 floats. Barrier at both ends.
__device__ void unit_lower_inverse(float* Ts, const float* KKE, const float* bet, float* P) {
  const int tid = threadIdx.x, nth = blockDim.x;
  __syncthreads();
  for (int i = tid; i < kC * kC; i += nth) Ts[(i / kC) * kLdc + i % kC] = 0.f;
  __syncthreads();
  if (tid < kC) {
    const int o = (tid / 16) * 16, j = o + tid % 16;  // column j of the diagonal block at o
    Ts[j * kLdc + j] = 1.f;
    for (int i = j + 1; i < o + 16; ++i) {
      float acc = 0.f;
      for (int s = j; s < i; ++s) acc += KKE[i * kLdc + s] * Ts[s * kLdc + j];
      Ts[i * kLdc + j] = -bet[i] * acc;
    }
  }
  for (int d = 1; d < kC / 16; ++d) {
    const int nb = kC / 16 - d;  // blocks (I, J) = (J + d, J), J < nb
    __syncthreads();
    for (int e = tid; e < nb * 256; e += nth) {
      const int J = e / 256, r = (e % 256) / 16, c = e % 16, row = 16 * (J + d) + r;
      float acc = 0.f;
      for (int k = 16 * J; k < 16 * (J + d); ++k)
        acc += KKE[row * kLdc + k] * Ts[k * kLdc + 16 * J + c];
      P[e] = bet[row] * acc;
    }
    __syncthreads();
    for (int e = tid; e < nb * 256; e += nth) {
      const int J = e / 256, r = (e % 256) / 16, c = e % 16, I = J + d, row = 16 * I + r;
      float acc = 0.f;
      for (int k = 0; k <= r; ++k) acc += Ts[row * kLdc + 16 * I + k] * P[J * 256 + k * 16 + c];
      Ts[row * kLdc + 16 * J + c] = -acc;
    }
  }
  __syncthreads();
}

// ---- chunk loads ------------------------------------------------------------------------------

// Qs/Ks [kC][ldk] <- rows t < Cn of q/k (one head), zero elsewhere (rows >= Cn, columns >= DK).
__device__ inline void load_qk(float* Qs, float* Ks, int ldk, DPtr q, DPtr k, const GdnDims& D,
                               int b, int h, int t0, int Cn) {
  const int64_t stride = int64_t{D.H} * D.DK;
  load_tile(Qs, ldk, q, D.qk(b, t0, h), stride, Cn, kC, D.DK, D.DKp);
  load_tile(Ks, ldk, k, D.qk(b, t0, h), stride, Cn, kC, D.DK, D.DKp);
}
// Vs [kC][ldv] <- value columns j0 .. j0 + nv of `v` (v or dout) for rows t < Cn, zero elsewhere.
template <int VT>
__device__ inline void load_vtile(float* Vs, int ldv, DPtr v, const GdnDims& D, int b, int h,
                                  int t0, int Cn, int j0, int nv) {
  load_tile(Vs, ldv, v, D.vo(b, t0, h) + j0, int64_t{D.H} * D.DV, Cn, kC, nv, VT);
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
  if (threadIdx.x == 0) {
    float acc = 0.f;
    for (int t = 0; t < kC; ++t) gam[t] = acc += gam[t];
  }
  __syncthreads();
  for (int t = threadIdx.x; t < kC; t += blockDim.x) {
    Gam[t] = expf(gam[t]);
    ev[t] = expf(gam[Cn - 1] - gam[t]);
  }
  __syncthreads();
}

// After As = Q K^T and KKE = K K^T: A . E (s <= t) and KKE . E (s < t), zero elsewhere.
__device__ inline void mask_decay(float* As, float* KKE, const float* gam) {
  for (int i = threadIdx.x; i < kC * kC; i += blockDim.x) {
    const int t = i / kC, s = i % kC;
    const float E = s <= t ? expf(gam[t] - gam[s]) : 0.f;
    As[t * kLdc + s] *= E;
    KKE[t * kLdc + s] = s < t ? KKE[t * kLdc + s] * E : 0.f;
  }
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
constexpr int kFwd[5] = {2, 2, 3, 1, 4};  // big, cc, vt, st, vecs
constexpr int kBwd[5] = {3, 4, 6, 2, 6};

// The chunk-local [C, C] matrices, once per (b, h, chunk) and all chunks in parallel (the value
// tiles of the sequential kernels below would otherwise each recompute them, on their serial
// path): A = (Q K^T) . E (s <= t), KKE = (K K^T) . E (s < t) and Tinv = (I + diag(beta) KKE)^{-1},
// each [kC][kC] fp32 at element offset prep_offset(b, h, c) of its array; KKE only when kke is
// non-null (the backward's). The same products in the same order as before, so bit for bit the
// values the sequential kernels computed themselves.
__device__ inline int64_t prep_offset(const GdnDims& D, int b, int h, int c) {
  return ((int64_t{b} * D.H + h) * D.NC + c) * kC * kC;
}
constexpr int kPrepCc = 3;  // [kC][kLdc] buffers: A, KKE, Tinv (+ 3 x 256 floats of scratch)

// Grid (B*H*NC), kThreads threads.
__global__ void __launch_bounds__(kThreads)
    gdn_prep_kernel(float* A_out, float* kke_out, float* T_out, DPtr q, DPtr k, DPtr beta, DPtr g,
                    GdnDims D) {
  extern __shared__ __align__(128) float sm[];
  const int ldk = D.DKp + 4;
  float* Qs = sm;
  float* Ks = Qs + kC * ldk;
  float* As = Ks + kC * ldk;
  float* KKE = As + kC * kLdc;
  float* Ts = KKE + kC * kLdc;
  float* P = Ts + kC * kLdc;  // 3 x 256 floats
  float* gam = P + 3 * 256;
  float* Gam = gam + kC;
  float* ev = Gam + kC;
  float* bet = ev + kC;
  const int c = blockIdx.x % D.NC, bh = blockIdx.x / D.NC, b = bh / D.H, h = bh % D.H;
  const int t0 = c * kC, Cn = min(kC, D.T - t0);
  load_qk(Qs, Ks, ldk, q, k, D, b, h, t0, Cn);
  load_gates(bet, gam, Gam, ev, beta, g, D, b, h, t0, Cn);
  mm<false, true>(As, kLdc, Qs, ldk, Ks, ldk, kC, kC, D.DKp, false, ex(D.xq, D.xk));   // Q K^T
  mm<false, true>(KKE, kLdc, Ks, ldk, Ks, ldk, kC, kC, D.DKp, false, ex(D.xk, D.xk));  // K K^T
  __syncthreads();
  mask_decay(As, KKE, gam);
  unit_lower_inverse(Ts, KKE, bet, P);
  const int64_t o = prep_offset(D, b, h, c);
  for (int i = threadIdx.x; i < kC * kC; i += blockDim.x) {
    const int t = i / kC, s2 = i % kC;
    A_out[o + i] = As[t * kLdc + s2];
    T_out[o + i] = Ts[t * kLdc + s2];
    if (kke_out) kke_out[o + i] = KKE[t * kLdc + s2];
  }
}

// dst [kC][kLdc] <- one chunk's [kC][kC] matrix of a prep array (16-byte loads).
__device__ inline void load_cc(float* dst, const float* src) {
  for (int i = threadIdx.x; i < kC * kC / 4; i += blockDim.x) {
    const float4 v = reinterpret_cast<const float4*>(src)[i];
    const int t = (4 * i) / kC, s = (4 * i) % kC;
    *reinterpret_cast<float4*>(dst + t * kLdc + s) = v;
  }
}

// Grid (B*H, ceil(DV / VT)), kThreads threads. See Layout / kFwd for the shared memory.
// Two blocks per SM fit its shared memory (DK = 64: 108 KB each): registers are capped to match.
template <int VT>
__global__ void __launch_bounds__(kThreads, 2)
    gdn_forward_kernel(DPtr out, DPtr states, DPtr q, DPtr k, DPtr v, DPtr beta, DPtr g,
                       const float* A_in, const float* T_in, GdnDims D) {
  extern __shared__ __align__(128) float sm[];
  constexpr int ldv = Layout<VT>::ldv;
  const int ldk = D.DKp + 4;
  float* Qs = sm;
  float* Ks = Qs + kC * ldk;
  float* As = Ks + kC * ldk;
  float* Ts = As + kC * kLdc;
  float* Xs = Ts + kC * kLdc;  // K S0, then X = diag(beta) Ub, then diag(e) Delta
  float* Ds = Xs + kC * ldv;   // V, then Delta
  float* Os = Ds + kC * ldv;   // Q S0, then the output
  float* Ss = Os + kC * ldv;   // the state tile [DKp][ldv]
  float* gam = Ss + D.DKp * ldv;
  float* Gam = gam + kC;
  float* ev = Gam + kC;
  float* bet = ev + kC;
  const int b = blockIdx.x / D.H, h = blockIdx.x % D.H;
  const int j0 = blockIdx.y * VT, nv = min(VT, D.DV - j0);
  const int tid = threadIdx.x, nth = blockDim.x;
  for (int i = tid; i < D.DKp * ldv; i += nth) Ss[i] = 0.f;

  for (int c = 0; c < D.NC; ++c) {
    const int t0 = c * kC, Cn = min(kC, D.T - t0);
    __syncthreads();  // the previous chunk is done with the shared buffers
    const int64_t so = D.state(b, h, c) + j0;
    for (int i = tid; i < D.DK * nv; i += nth)
      states.st(so + int64_t{i / nv} * D.DV + i % nv, Ss[(i / nv) * ldv + i % nv]);
    load_qk(Qs, Ks, ldk, q, k, D, b, h, t0, Cn);
    load_vtile<VT>(Ds, ldv, v, D, b, h, t0, Cn, j0, nv);
    load_gates(bet, gam, Gam, ev, beta, g, D, b, h, t0, Cn);
    load_cc(As, A_in + prep_offset(D, b, h, c));
    load_cc(Ts, T_in + prep_offset(D, b, h, c));
    mm<false, false>(Xs, ldv, Ks, ldk, Ss, ldv, kC, VT, D.DKp, false, ex(D.xk, false));  // K S0
    __syncthreads();
    for (int i = tid; i < kC * VT; i += nth) {  // X = diag(beta) (V - diag(Gam) K S0)
      const int t = i / VT, j = i % VT;
      Xs[t * ldv + j] = bet[t] * (Ds[t * ldv + j] - Gam[t] * Xs[t * ldv + j]);
    }
    __syncthreads();
    mm<false, false>(Ds, ldv, Ts, kLdc, Xs, ldv, kC, VT, kC, false);  // Delta = Tinv X
    mm<false, false>(Os, ldv, Qs, ldk, Ss, ldv, kC, VT, D.DKp, false, ex(D.xq, false));  // Q S0
    __syncthreads();
    const float GamL = Gam[Cn - 1];
    for (int i = tid; i < kC * VT; i += nth) {
      const int t = i / VT, j = i % VT;
      Os[t * ldv + j] *= Gam[t];
      Xs[t * ldv + j] = ev[t] * Ds[t * ldv + j];
    }
    for (int i = tid; i < D.DKp * VT; i += nth) Ss[(i / VT) * ldv + i % VT] *= GamL;
    __syncthreads();
    mm<false, false>(Os, ldv, As, kLdc, Ds, ldv, kC, VT, kC, true);  // O += A Delta
    mm<true, false>(Ss, ldv, Ks, ldk, Xs, ldv, D.DKp, VT, kC, true,
                    ex(D.xk, false));  // S += K^T diag(e) Delta
    __syncthreads();
    for (int i = tid; i < Cn * nv; i += nth) {
      const int t = i / nv, j = i % nv;
      out.st(D.vo(b, t0 + t, h) + j0 + j, Os[t * ldv + j]);
    }
  }
}

// Backward, chunks in reverse carrying dS = dL/dS_next (zero after the last chunk); the steps
// (1)-(5) are those of gdn_chunk_backward in backend/cpu/gated_deltanet.cc, with the triangular
// solves replaced by products with Tinv and dK accumulated in shared memory.
// Grid (B*H, ntiles), kThreads threads. Outputs: dv (+=, this tile's columns); partials for
// this tile (=): dq_p, dk_p [B, T, H, DK], dbeta_p, dg_p [B, T, H], each at offset tile * size.
template <int VT>
__global__ void __launch_bounds__(kThreads)
    gdn_backward_kernel(float* dq_p, float* dk_p, float* dbeta_p, float* dg_p, DPtr dv, DPtr dout,
                        DPtr states, DPtr q, DPtr k, DPtr v, DPtr beta, DPtr g, const float* A_in,
                        const float* kke_in, const float* T_in, GdnDims D) {
  extern __shared__ __align__(128) float sm[];
  constexpr int ldv = Layout<VT>::ldv;
  const int ldk = D.DKp + 4;
  float* Qs = sm;
  float* Ks = Qs + kC * ldk;
  float* Zs = Ks + kC * ldk;  // dO S0^T -> dQ; then Delta dS^T -> dK
  float* As = Zs + kC * ldk;
  float* KKE = As + kC * kLdc;
  float* Ts = KKE + kC * kLdc;
  float* Ws = Ts + kC * kLdc;  // scratch of the inverse, dA -> dQK, then d -> G
  float* Ub = Ws + kC * kLdc;  // V, then Ub = V - diag(Gam) K S0
  float* Dl = Ub + kC * ldv;   // Delta
  float* dOs = Dl + kC * ldv;
  float* dDs = dOs + kC * ldv;  // dDelta, then -diag(Gam) Y
  float* Tmp = dDs + kC * ldv;  // X, K dS, diag(Gam) dO, dX -> Y
  float* KS = Tmp + kC * ldv;   // K S0
  float* S0 = KS + kC * ldv;    // [DKp][ldv]
  float* dS = S0 + D.DKp * ldv;
  float* gam = dS + D.DKp * ldv;
  float* Gam = gam + kC;
  float* ev = Gam + kC;
  float* bet = ev + kC;
  float* dgam = bet + kC;
  float* dbet = dgam + kC;
  float* red = dbet + kC;
  const int b = blockIdx.x / D.H, h = blockIdx.x % D.H;
  const int j0 = blockIdx.y * VT, nv = min(VT, D.DV - j0);
  const int tid = threadIdx.x, nth = blockDim.x, warp = tid / 32, lane = tid % 32;
  const int nw = nth / 32;
  const int64_t n_gate = int64_t{D.B} * D.T * D.H;
  float* dqp = dq_p + blockIdx.y * n_gate * D.DK;
  float* dkp = dk_p + blockIdx.y * n_gate * D.DK;
  float* dbp = dbeta_p + blockIdx.y * n_gate;
  float* dgp = dg_p + blockIdx.y * n_gate;
  for (int i = tid; i < D.DKp * ldv; i += nth) dS[i] = 0.f;

  for (int c = D.NC - 1; c >= 0; --c) {
    const int t0 = c * kC, Cn = min(kC, D.T - t0);
    __syncthreads();
    const int64_t so = D.state(b, h, c) + j0;
    for (int i = tid; i < D.DKp * VT; i += nth) {
      const int r = i / VT, j = i % VT;
      S0[r * ldv + j] = r < D.DK && j < nv ? states.ld(so + int64_t{r} * D.DV + j) : 0.f;
    }
    load_qk(Qs, Ks, ldk, q, k, D, b, h, t0, Cn);
    load_vtile<VT>(Ub, ldv, v, D, b, h, t0, Cn, j0, nv);
    load_vtile<VT>(dOs, ldv, dout, D, b, h, t0, Cn, j0, nv);
    for (int t = tid; t < kC; t += nth) dgam[t] = dbet[t] = 0.f;
    load_gates(bet, gam, Gam, ev, beta, g, D, b, h, t0, Cn);
    const float GamL = Gam[Cn - 1];
    // A, KKE, Tinv from the prep kernel; recompute Ub and Delta.
    load_cc(As, A_in + prep_offset(D, b, h, c));
    load_cc(KKE, kke_in + prep_offset(D, b, h, c));
    load_cc(Ts, T_in + prep_offset(D, b, h, c));
    mm<false, false>(KS, ldv, Ks, ldk, S0, ldv, kC, VT, D.DKp, false, ex(D.xk, false));
    __syncthreads();
    for (int i = tid; i < kC * VT; i += nth) {
      const int t = i / VT, j = i % VT;
      const float u = Ub[t * ldv + j] - Gam[t] * KS[t * ldv + j];
      Ub[t * ldv + j] = u;
      Tmp[t * ldv + j] = bet[t] * u;
    }
    __syncthreads();
    mm<false, false>(Dl, ldv, Ts, kLdc, Tmp, ldv, kC, VT, kC, false);  // Delta = Tinv X

    // (1) Through O and S_next.
    //   dDelta = A^T dO + diag(e) K dS;  dA = dO Delta^T (s <= t);  Z = diag(Gam) dO S0^T
    mm<true, false>(dDs, ldv, As, kLdc, dOs, ldv, kC, VT, kC, false, ex(false, D.xo));
    mm<false, true>(Zs, ldk, dOs, ldv, S0, ldv, kC, D.DKp, VT, false, ex(D.xo, false));
    __syncthreads();
    mm<false, false>(Tmp, ldv, Ks, ldk, dS, ldv, kC, VT, D.DKp, false, ex(D.xk, false));  // K dS
    mm<false, true>(Ws, kLdc, dOs, ldv, Dl, ldv, kC, kC, VT, false, ex(D.xo, false));  // dO Delta^T
    __syncthreads();
    for (int i = tid; i < kC * VT; i += nth) {
      const int t = i / VT, j = i % VT;
      dDs[t * ldv + j] += ev[t] * Tmp[t * ldv + j];
      Tmp[t * ldv + j] = Gam[t] * dOs[t * ldv + j];  // for dS0 below
    }
    for (int i = tid; i < kC * D.DKp; i += nth) Zs[(i / D.DKp) * ldk + i % D.DKp] *= Gam[i / D.DKp];
    for (int i = tid; i < kC * kC; i += nth) {
      const int t = i / kC, s = i % kC;
      if (s > t) Ws[t * kLdc + s] = 0.f;
    }
    __syncthreads();
    // dgamma_t += sum_s dA_ts A_ts - sum_u dA_ut A_ut + Z_t . q_t   (a warp per row)
    for (int t = warp; t < kC; t += nw) {
      float acc = 0.f;
      for (int s = lane; s < kC; s += 32)
        acc += Ws[t * kLdc + s] * As[t * kLdc + s] - Ws[s * kLdc + t] * As[s * kLdc + t];
      for (int r = lane; r < D.DKp; r += 32) acc += Zs[t * ldk + r] * Qs[t * ldk + r];
      acc = warp_sum(acc);
      if (lane == 0) dgam[t] += acc;
    }
    __syncthreads();
    for (int i = tid; i < kC * kC; i += nth) {  // dQK = dA . E
      const int t = i / kC, s = i % kC;
      if (s <= t) Ws[t * kLdc + s] *= expf(gam[t] - gam[s]);
    }
    __syncthreads();
    mm<false, false>(Zs, ldk, Ws, kLdc, Ks, ldk, kC, D.DKp, kC, true,
                     ex(false, D.xk));  // dQ = Z + dQK K
    __syncthreads();
    for (int i = tid; i < Cn * D.DK; i += nth) {
      const int t = i / D.DK, r = i % D.DK;
      dqp[D.qk(b, t0 + t, h) + r] = Zs[t * ldk + r];
    }
    __syncthreads();
    mm<false, true>(Zs, ldk, Dl, ldv, dS, ldv, kC, D.DKp, VT, false);  // Z2 = Delta dS^T
    __syncthreads();
    // r_t = e_t k_t . Z2_t;  dgamma_t -= r_t;  dgamma_last += sum_t r_t + Gam_last <S0, dS>.
    // Then Z2 <- diag(e) Z2, the first term of dK (each warp scales the rows it has read).
    float rsum = 0.f;
    for (int t = warp; t < kC; t += nw) {
      float acc = 0.f;
      for (int r = lane; r < D.DKp; r += 32) acc += Zs[t * ldk + r] * Ks[t * ldk + r];
      acc = ev[t] * warp_sum(acc);
      if (lane == 0) dgam[t] -= acc;
      rsum += acc;
      __syncwarp();
      for (int r = lane; r < D.DKp; r += 32) Zs[t * ldk + r] *= ev[t];
    }
    float part = lane == 0 ? rsum : 0.f;  // rsum is the same on every lane of a warp
    for (int i = tid; i < D.DKp * VT; i += nth) {
      const int r = i / VT, j = i % VT;
      part += GamL * S0[r * ldv + j] * dS[r * ldv + j];
    }
    const float last = block_sum(part, red);  // barriers: dS reads done
    if (tid == 0) dgam[Cn - 1] += last;
    for (int i = tid; i < D.DKp * VT; i += nth) dS[(i / VT) * ldv + i % VT] *= GamL;
    __syncthreads();
    mm<true, false>(Zs, ldk, Ws, kLdc, Qs, ldk, kC, D.DKp, kC, true,
                    ex(false, D.xq));  // dK += dQK^T Q
    mm<true, false>(dS, ldv, Qs, ldk, Tmp, ldv, D.DKp, VT, kC, true,
                    ex(D.xq, false));  // dS0 += Q^T diag(Gam) dO
    __syncthreads();

    // (2) dX = Tinv^T dDelta;  d_ts = -(dX Delta^T)_ts, s < t.
    mm<true, false>(Tmp, ldv, Ts, kLdc, dDs, ldv, kC, VT, kC, false);
    __syncthreads();
    mm<false, true>(Ws, kLdc, Tmp, ldv, Dl, ldv, kC, kC, VT, false);
    __syncthreads();
    for (int i = tid; i < kC * kC; i += nth) {
      const int t = i / kC, s = i % kC;
      Ws[t * kLdc + s] = s < t ? -Ws[t * kLdc + s] : 0.f;
    }
    __syncthreads();
    // (3) Through L_ts = beta_t KKE_ts:  dbeta_t += sum_s d_ts KKE_ts;
    //     dgamma_t += sum_s d_ts L_ts - sum_u d_ut L_ut.
    // (4) Through X = diag(beta) Ub:  dbeta_t += dX_t . Ub_t.   (a warp per row)
    for (int t = warp; t < kC; t += nw) {
      float db = 0.f, dgt = 0.f;
      for (int s = lane; s < kC; s += 32) {
        const float db_ts = Ws[t * kLdc + s] * KKE[t * kLdc + s];
        db += db_ts;
        dgt += bet[t] * db_ts - Ws[s * kLdc + t] * bet[s] * KKE[s * kLdc + t];
      }
      for (int j = lane; j < VT; j += 32) db += Tmp[t * ldv + j] * Ub[t * ldv + j];
      db = warp_sum(db);
      dgt = warp_sum(dgt);
      if (lane == 0) {
        dbet[t] += db;
        dgam[t] += dgt;
      }
    }
    __syncthreads();
    // G_ts = d_ts beta_t E_ts (= dKK_ts);  Y = diag(beta) dX;  dV += Y;  dDs <- -diag(Gam) Y
    for (int i = tid; i < kC * kC; i += nth) {
      const int t = i / kC, s = i % kC;
      if (s < t) Ws[t * kLdc + s] *= bet[t] * expf(gam[t] - gam[s]);
    }
    for (int i = tid; i < kC * VT; i += nth) {
      const int t = i / VT, j = i % VT;
      const float y = bet[t] * Tmp[t * ldv + j];
      dDs[t * ldv + j] = -Gam[t] * y;
      if (dv && t < Cn && j < nv) dv.add(D.vo(b, t0 + t, h) + j0 + j, y);
    }
    __syncthreads();
    // dgamma_t -= Z_t . k_t with Z = diag(Gam) Y S0^T, i.e. += (-Gam_t Y_t) . (K S0)_t
    for (int t = warp; t < kC; t += nw) {
      float acc = 0.f;
      for (int j = lane; j < VT; j += 32) acc += dDs[t * ldv + j] * KS[t * ldv + j];
      acc = warp_sum(acc);
      if (lane == 0) dgam[t] += acc;
    }
    // dK += (G + G^T) K - diag(Gam) Y S0^T;   dS0 -= K^T diag(Gam) Y
    mm<false, false>(Zs, ldk, Ws, kLdc, Ks, ldk, kC, D.DKp, kC, true, ex(false, D.xk));
    mm<true, false>(Zs, ldk, Ws, kLdc, Ks, ldk, kC, D.DKp, kC, true, ex(false, D.xk));
    mm<false, true>(Zs, ldk, dDs, ldv, S0, ldv, kC, D.DKp, VT, true);
    mm<true, false>(dS, ldv, Ks, ldk, dDs, ldv, D.DKp, VT, kC, true, ex(D.xk, false));
    __syncthreads();
    for (int i = tid; i < Cn * D.DK; i += nth) {
      const int t = i / D.DK, r = i % D.DK;
      dkp[D.qk(b, t0 + t, h) + r] = Zs[t * ldk + r];
    }
    // (5) dg_j = sum_{t >= j} dgamma_t (this chunk's rows; the cross-chunk path went through
    // dgamma_last above); dbeta.
    if (tid == 0) {
      float acc = 0.f;
      for (int t = Cn - 1; t >= 0; --t) {
        acc += dgam[t];
        dgp[D.gate(b, t0 + t, h)] = acc;
      }
    }
    for (int t = tid; t < Cn; t += nth) dbp[D.gate(b, t0 + t, h)] = dbet[t];
  }
}

// out[i] += sum_tiles part[tile * n + i], tiles in order.
__global__ void add_tiles_kernel(DPtr out, const float* part, int64_t n, int ntiles) {
  SL_GRID_STRIDE(i, n) {
    float s = 0.f;
    for (int tl = 0; tl < ntiles; ++tl) s += part[tl * n + i];
    out.add(i, s);
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
  if (Layout<32>::bytes(D.DKp, n[0], n[1], n[2], n[3], n[4]) <= ctx.smem_optin) return 32;
  if (Layout<16>::bytes(D.DKp, n[0], n[1], n[2], n[3], n[4]) <= ctx.smem_optin) return 16;
  return 0;
}

[[noreturn]] void too_big(const Ctx& ctx, const GdnDims& D, const int (&n)[5], const char* what) {
  fail(std::string("cuda gdn ") + what + ": key dim " + std::to_string(D.DK) + " needs " +
       std::to_string(Layout<16>::bytes(D.DKp, n[0], n[1], n[2], n[3], n[4])) +
       " bytes of shared memory per block, the device allows " + std::to_string(ctx.smem_optin));
}

// Floats of one prep array: [B, H, NC][kC][kC].
size_t prep_floats(const GdnDims& D) { return size_t{1} * D.B * D.H * D.NC * kC * kC; }

// The prep kernel into A_out, kke_out (null: not written), T_out.
void prep(Ctx& ctx, const GdnDims& D, float* A_out, float* kke_out, float* T_out, DPtr q, DPtr k,
          DPtr beta, DPtr g) {
  const size_t smem =
      sizeof(float) * (size_t{2} * kC * (D.DKp + 4) + kPrepCc * kC * kLdc + 3 * 256 + 4 * kC);
  if (smem > ctx.smem_optin)
    fail("cuda gdn: key dim " + std::to_string(D.DK) + " needs " + std::to_string(smem) +
         " bytes of shared memory per block, the device allows " + std::to_string(ctx.smem_optin));
  smem_opt_in(gdn_prep_kernel, smem);
  gdn_prep_kernel<<<static_cast<unsigned>(D.B * D.H * D.NC), kThreads, smem, ctx.stream>>>(
      A_out, kke_out, T_out, q, k, beta, g, D);
  SL_CUDA_LAUNCHED();
}

template <int VT>
void forward_vt(Ctx& ctx, const GdnDims& D, DPtr out, DPtr states, DPtr q, DPtr k, DPtr v,
                DPtr beta, DPtr g) {
  const size_t np = prep_floats(D);
  float* A = ctx.work->get_as<float>(2 * np);
  float* Tinv = A + np;
  prep(ctx, D, A, nullptr, Tinv, q, k, beta, g);
  const auto& n = kFwd;
  const size_t smem = Layout<VT>::bytes(D.DKp, n[0], n[1], n[2], n[3], n[4]);
  smem_opt_in(gdn_forward_kernel<VT>, smem);
  const dim3 grid(static_cast<unsigned>(D.B * D.H), static_cast<unsigned>((D.DV + VT - 1) / VT));
  gdn_forward_kernel<VT>
      <<<grid, kThreads, smem, ctx.stream>>>(out, states, q, k, v, beta, g, A, Tinv, D);
  SL_CUDA_LAUNCHED();
}

template <int VT>
void backward_vt(Ctx& ctx, const GdnDims& D, DPtr dq, DPtr dk, DPtr dv, DPtr dbeta, DPtr dg,
                 DPtr dout, DPtr states, DPtr q, DPtr k, DPtr v, DPtr beta, DPtr g) {
  const int ntiles = (D.DV + VT - 1) / VT;
  const int64_t n_gate = int64_t{D.B} * D.T * D.H, n_qk = n_gate * D.DK;
  // Workspace: the prep arrays A, KKE, Tinv, then the per-tile partials.
  const size_t np = prep_floats(D);
  float* A =
      ctx.work->get_as<float>(3 * np + static_cast<size_t>(ntiles * (2 * n_qk + 2 * n_gate)));
  float* kke = A + np;
  float* Tinv = kke + np;
  prep(ctx, D, A, kke, Tinv, q, k, beta, g);
  float* part = Tinv + np;
  float* dq_p = part;
  float* dk_p = dq_p + ntiles * n_qk;
  float* dbeta_p = dk_p + ntiles * n_qk;
  float* dg_p = dbeta_p + ntiles * n_gate;
  const auto& n = kBwd;
  const size_t smem = Layout<VT>::bytes(D.DKp, n[0], n[1], n[2], n[3], n[4]);
  smem_opt_in(gdn_backward_kernel<VT>, smem);
  const dim3 grid(static_cast<unsigned>(D.B * D.H), static_cast<unsigned>(ntiles));
  gdn_backward_kernel<VT><<<grid, kThreads, smem, ctx.stream>>>(
      dq_p, dk_p, dbeta_p, dg_p, dv, dout, states, q, k, v, beta, g, A, kke, Tinv, D);
  SL_CUDA_LAUNCHED();
  const std::pair<DPtr, const float*> outs[] = {
      {dq, dq_p}, {dk, dk_p}, {dbeta, dbeta_p}, {dg, dg_p}};
  for (int o = 0; o < 4; ++o) {
    const int64_t nn = o < 2 ? n_qk : n_gate;
    if (!outs[o].first) continue;
    add_tiles_kernel<<<grid_for(nn, 256), 256, 0, ctx.stream>>>(outs[o].first, outs[o].second, nn,
                                                                ntiles);
    SL_CUDA_LAUNCHED();
  }
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
  switch (pick_vt(ctx, D, kFwd)) {
    case 32:
      return forward_vt<32>(ctx, D, out, states, q, k, v, beta, g);
    case 16:
      return forward_vt<16>(ctx, D, out, states, q, k, v, beta, g);
    default:
      too_big(ctx, D, kFwd, "forward");
  }
}

void CudaBackend::gdn_backward(Tensor dq_t, Tensor dk_t, Tensor dv_t, Tensor dbeta_t, Tensor dg_t,
                               Tensor dout_t, Tensor states_t, Tensor q_t, Tensor k_t, Tensor v_t,
                               Tensor beta_t, Tensor g_t, const GdnShape& shape) {
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
  const GdnDims D = dims(B, T, H, key_dim, value_dim, q, k, v, dout, "backward");
  switch (pick_vt(ctx, D, kBwd)) {
    case 32:
      return backward_vt<32>(ctx, D, dq, dk, dv, dbeta, dg, dout, states, q, k, v, beta, g);
    case 16:
      return backward_vt<16>(ctx, D, dq, dk, dv, dbeta, dg, dout, states, q, k, v, beta, g);
    default:
      too_big(ctx, D, kBwd, "backward");
  }
}

}  // namespace sl
