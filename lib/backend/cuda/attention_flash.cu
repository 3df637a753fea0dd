// Causal attention on bf16 tensor cores, FlashAttention-2 style: the path attention.cu takes when
// q, k, v (and dout) are bf16 and the head dim is a multiple of 8 up to 128. Math as attention.cu
// (S = scale Q K^T, s <= t; P = exp(S - lse); O = P V; dS = P (dO V^T - D), D = rowsum(dO O)).
//
// Forward (flash_fwd_kernel): a block of BM = 16 MT NW query rows (warp w owns rows
// 16 MT w .. +16 MT; its Q fragments re-read from shared memory per k-step, or with QREG held in
// registers for the whole pass); K and V tiles of BN keys
// stream through two shared-memory stages with cp.async (tile j+1 loads while j is computed).
// S = Q K^T stays in registers (fp32), the online softmax runs there (rows split across the 4
// lanes of a quad, max and sum by two shuffles), P is rounded to bf16 in place and is the A
// operand of O += P V (the C layout of two 8-column n-tiles is the A layout of one 16-column
// k-step). Tiles wholly above the diagonal are skipped per warp; only diagonal tiles are masked.
//
// Backward: three kernels, no atomics, so the result is deterministic.
//   1. D = rowsum(dO * O) (flash_row_dots_kernel: 16-byte loads, a shuffle tree per row);
//   2. flash_bwd_dkv_kernel: a block per 64 keys (warp w owns keys 16w .. 16w+15, its K and V
//      fragments in registers for hd 64), walking the 64-row query tiles t >= s (Q, dO, lse, D
//      double-buffered) in register steps of QS queries. Per step, in registers: S^T = K Q^T,
//      dP^T = V dO^T, P^T, dS^T; then dV += P^T dO and dK += dS^T Q take P^T and dS^T as A
//      operands straight from registers.
//      dS^T is also stored (bf16, one 64 x 64 tile per (query tile, key tile) of the causal
//      triangle) for
//   3. flash_bwd_dq_kernel: a block per 64 query rows, dQ = scale sum_j dS_ij K_j over the
//      stored tiles in a fixed order (three stages of cp.async in flight).
// Gradient outputs are read-modify-written once per element at the end (store_row_pairs).
// Storing dS costs 2 x 8 KB of traffic per 64 x 64 tile; recomputing S and dP in a dQ pass would
// cost two more tile products (7 instead of 5 per tile), and atomics would make dQ depend on the
// order blocks finish.
#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/cuda/attention_flash.cuh"
#include "backend/cuda/mma_bf16.cuh"

namespace sl::cuda {
namespace {

// Asynchronous load of a [ROWS][HD] bf16 tile (shared row stride HD + 8: the 16-byte shift per
// row keeps ldmatrix conflict-free) from rows of global stride ld; rows >= valid and columns
// >= hd are zero-filled. `any` is a valid global address for the lanes that copy nothing.
template <int ROWS, int HD, int NT>
__device__ inline void load_rows(bf16* dst, const bf16* src, int64_t ld, int valid, int hd,
                                 const bf16* any) {
  constexpr int CH = HD / 8, LDS = HD + 8, N = ROWS * CH;
#pragma unroll
  for (int it = 0; it < (N + NT - 1) / NT; ++it) {
    const int i = it * NT + static_cast<int>(threadIdx.x);
    if (N % NT != 0 && i >= N) break;
    const int r = i / CH, c = (i % CH) * 8;
    const bool ok = r < valid && c < hd;
    cp_async16(dst + r * LDS + c, ok ? src + r * ld + c : any, ok);
  }
}

// Grid (ceil(T / BM), B*H); query blocks in reverse so the longest rows start first.
template <int HD, int MT, int NW, int BN, int MINB, bool QREG>
__global__ void __launch_bounds__(NW * 32, MINB)
    flash_fwd_kernel(DPtr out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                     FlashDims A) {
  constexpr int BM = 16 * MT * NW, LDS = HD + 8, KS = HD / 16, NS = BN / 8, NO = HD / 8;
  constexpr int NT = NW * 32;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);  // [BM][LDS]
  bf16* Ks = Qs + BM * LDS;                  // [2][BN][LDS]
  bf16* Vs = Ks + 2 * BN * LDS;              // [2][BN][LDS]
  const int qb = static_cast<int>(gridDim.x - 1 - blockIdx.x), bh = blockIdx.y;
  const int b = bh / A.H, h = bh % A.H, r0 = qb * BM;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, qd = lane & 3;
  const int64_t tok0 = int64_t{b} * A.T;
  const bf16* qh = q + tok0 * A.ld + h * A.hd;
  const bf16* kh = k + tok0 * A.ld + h * A.hd;
  const bf16* vh = v + tok0 * A.ldv + h * A.hd;
  const int nkb = (min(A.T, r0 + BM) + BN - 1) / BN;  // keys [0, min(T, r0 + BM))

  load_rows<BM, HD, NT>(Qs, qh + r0 * A.ld, A.ld, A.T - r0, A.hd, q);
  load_rows<BN, HD, NT>(Ks, kh, A.ld, A.T, A.hd, k);
  load_rows<BN, HD, NT>(Vs, vh, A.ldv, A.T, A.hd, v);
  cp_async_commit();

  const int w0 = r0 + warp * 16 * MT;  // this warp's rows: w0 .. w0 + 16 MT - 1
  float o[MT][NO][4] = {}, m[MT][2], l[MT][2] = {};
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) m[mt][0] = m[mt][1] = -INFINITY;
  unsigned qf[QREG ? MT : 1][QREG ? KS : 1][4];  // QREG: Q fragments held for the whole pass

  for (int j = 0; j < nkb; ++j) {
    const bf16* Kj = Ks + (j & 1) * BN * LDS;
    const bf16* Vj = Vs + (j & 1) * BN * LDS;
    if (j + 1 < nkb) {
      const int s1 = (j + 1) * BN;
      load_rows<BN, HD, NT>(Ks + ((j + 1) & 1) * BN * LDS, kh + s1 * A.ld, A.ld, A.T - s1, A.hd, k);
      load_rows<BN, HD, NT>(Vs + ((j + 1) & 1) * BN * LDS, vh + s1 * A.ldv, A.ldv, A.T - s1, A.hd,
                            v);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (QREG && j == 0) {
#pragma unroll
      for (int mt = 0; mt < (QREG ? MT : 1); ++mt)
#pragma unroll
        for (int kk = 0; kk < (QREG ? KS : 1); ++kk)
          ldsm_x4(qf[mt][kk], Qs + (warp * MT + mt) * 16 * LDS + kk * 16 + a_frag_addr(lane, LDS));
    }
    const int s0 = j * BN;
    if (s0 <= w0 + 16 * MT - 1) {  // else every key of the tile is after every row of the warp
      float s[MT][NS][4] = {};
#pragma unroll
      for (int kk = 0; kk < KS; ++kk) {
        unsigned qa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          if constexpr (QREG) {
#pragma unroll
            for (int r = 0; r < 4; ++r) qa[mt][r] = qf[mt][kk][r];
          } else {
            ldsm_x4(qa[mt], Qs + (warp * MT + mt) * 16 * LDS + kk * 16 + a_frag_addr(lane, LDS));
          }
        }
#pragma unroll
        for (int n2 = 0; n2 < NS / 2; ++n2) {
          unsigned bk[4];
          ldsm_x4(bk, Kj + n2 * 16 * LDS + kk * 16 + bt_frag_addr(lane, LDS));
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            mma_bf16(s[mt][2 * n2], qa[mt], bk[0], bk[1]);
            mma_bf16(s[mt][2 * n2 + 1], qa[mt], bk[2], bk[3]);
          }
        }
      }
      // Online softmax in the log2 domain: x = S scale log2(e), m the running row max of x, l the
      // running (lane-partial) row sum, O and l rescaled by 2^(m_old - m_new); 2^(x - m) is one
      // FFMA and one MUFU.EX2 (the max is taken on S itself: scale > 0). Tile 0 holds key
      // 0 <= t for every row, so m is finite from the first tile on (2^(-inf) = 0 there).
      const bool diag = s0 + BN - 1 > w0;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const int t = w0 + mt * 16 + g + 8 * hf;
          float mx = -INFINITY;
#pragma unroll
          for (int n = 0; n < NS; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              float& x = s[mt][n][2 * hf + e];
              if (diag && s0 + n * 8 + 2 * qd + e > t) x = -INFINITY;
              mx = fmaxf(mx, x);
            }
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
          const float mn = fmaxf(m[mt][hf], mx * A.scale_log2);
          const float corr = exp2_approx(m[mt][hf] - mn);
          m[mt][hf] = mn;
          float ls = 0.f;
#pragma unroll
          for (int n = 0; n < NS; ++n)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              float& x = s[mt][n][2 * hf + e];
              x = exp2_approx(fmaf(x, A.scale_log2, -mn));
              ls += x;
            }
          l[mt][hf] = l[mt][hf] * corr + ls;
#pragma unroll
          for (int n = 0; n < NO; ++n) {
            o[mt][n][2 * hf] *= corr;
            o[mt][n][2 * hf + 1] *= corr;
          }
        }
        // O += P V: P from registers (bf16), V fragments by ldmatrix.trans.
#pragma unroll
      for (int kk = 0; kk < BN / 16; ++kk) {
        unsigned pa[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) c_to_a(pa[mt], s[mt][2 * kk], s[mt][2 * kk + 1]);
#pragma unroll
        for (int n2 = 0; n2 < NO / 2; ++n2) {
          unsigned bv[4];
          ldsm_x4_t(bv, Vj + kk * 16 * LDS + n2 * 16 + b_frag_addr(lane, LDS));
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            mma_bf16(o[mt][2 * n2], pa[mt], bv[0], bv[1]);
            mma_bf16(o[mt][2 * n2 + 1], pa[mt], bv[2], bv[3]);
          }
        }
      }
    }
    __syncthreads();  // this stage is consumed before iteration j+1 refills it
  }

#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      float ls = l[mt][hf];
      ls += __shfl_xor_sync(0xffffffffu, ls, 1);
      ls += __shfl_xor_sync(0xffffffffu, ls, 2);
      const int t = w0 + mt * 16 + g + 8 * hf;
      if (t >= A.T) continue;
      store_row_pairs(out, (tok0 + t) * A.ld + h * A.hd, qd, A.hd, o[mt], hf, 1.f / ls, false);
      if (qd == 0) lse[int64_t{bh} * A.T + t] = (m[mt][hf] + log2f(ls)) / kLog2e;
    }
}

// dK, dV and the dS tiles. Grid (nqb, B*H): block kb owns keys [64 kb, 64 kb + 64) and walks the
// query tiles i >= kb. QS: query columns per register step (64 for hd 64; 32 for hd 128, which
// keeps its 2 x 64 accumulator registers); KVREG: K, V fragments kept in registers.
template <int HD, int QS, bool KVREG, int MINB>
__global__ void __launch_bounds__(128, MINB)
    flash_bwd_dkv_kernel(DPtr dk, DPtr dv, bf16* dS, const bf16* q, const bf16* k, const bf16* v,
                         const bf16* dout, const float* lse, const float* D, FlashDims A) {
  constexpr int LDS = HD + 8, KS = HD / 16, NO = HD / 8, NQ = QS / 8, NT = 128, BT = kBT;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Ks = reinterpret_cast<bf16*>(smem);                  // [BT][LDS]
  bf16* Vs = Ks + BT * LDS;                                  // [BT][LDS]
  bf16* Qs = Vs + BT * LDS;                                  // [2][BT][LDS]
  bf16* dOs = Qs + 2 * BT * LDS;                             // [2][BT][LDS]
  float* Ls = reinterpret_cast<float*>(dOs + 2 * BT * LDS);  // [2][BT] lse
  float* Ds = Ls + 2 * BT;                                   // [2][BT] D
  const int kb = blockIdx.x, bh = blockIdx.y, b = bh / A.H, h = bh % A.H, s0 = kb * BT;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, qd = lane & 3;
  const int64_t tok0 = int64_t{b} * A.T;
  const bf16* qh = q + tok0 * A.ld + h * A.hd;
  const bf16* kh = k + tok0 * A.ld + h * A.hd;
  const bf16* vh = v + tok0 * A.ldv + h * A.hd;
  const bf16* oh = dout + tok0 * A.ld + h * A.hd;
  const float* lh = lse + int64_t{bh} * A.T;
  const float* dh = D + int64_t{bh} * A.T;
  auto load_queries = [&](int i, int st) {
    const int t = i * BT;
    load_rows<BT, HD, NT>(Qs + st * BT * LDS, qh + t * A.ld, A.ld, A.T - t, A.hd, q);
    load_rows<BT, HD, NT>(dOs + st * BT * LDS, oh + t * A.ld, A.ld, A.T - t, A.hd, dout);
    const int r = threadIdx.x % BT;
    const bool ok = t + r < A.T;
    if (threadIdx.x < BT)
      cp_async4(Ls + st * BT + r, ok ? lh + t + r : lse, ok);
    else
      cp_async4(Ds + st * BT + r, ok ? dh + t + r : D, ok);
  };
  load_rows<BT, HD, NT>(Ks, kh + s0 * A.ld, A.ld, A.T - s0, A.hd, k);
  load_rows<BT, HD, NT>(Vs, vh + s0 * A.ldv, A.ldv, A.T - s0, A.hd, v);
  load_queries(kb, 0);
  cp_async_commit();

  const int ws = s0 + 16 * warp;  // this warp's keys: ws .. ws + 15
  const bf16* Kw = Ks + 16 * warp * LDS;
  const bf16* Vw = Vs + 16 * warp * LDS;
  unsigned kf[KVREG ? KS : 1][4], vf[KVREG ? KS : 1][4];
  float dka[NO][4] = {}, dva[NO][4] = {};
  bf16* tiles = dS + (int64_t{bh} * A.ntri()) * BT * BT;

  for (int i = kb; i < A.nqb; ++i) {
    const int st = (i - kb) & 1;
    if (i + 1 < A.nqb) {
      load_queries(i + 1, st ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (KVREG && i == kb) {
#pragma unroll
      for (int kk = 0; kk < (KVREG ? KS : 1); ++kk) {
        ldsm_x4(kf[kk], Kw + kk * 16 + a_frag_addr(lane, LDS));
        ldsm_x4(vf[kk], Vw + kk * 16 + a_frag_addr(lane, LDS));
      }
    }
    const bf16* Qi = Qs + st * BT * LDS;
    const bf16* Oi = dOs + st * BT * LDS;
    const float* Li = Ls + st * BT;
    const float* Di = Ds + st * BT;
    const int t0 = i * BT;
    bf16* tile = tiles + (int64_t{i} * (i + 1) / 2 + kb) * BT * BT;  // [key][query]
#pragma unroll
    for (int qs = 0; qs < BT / QS; ++qs) {
      const int tq0 = t0 + qs * QS;
      const bool skip = tq0 + QS - 1 < ws;  // every query of the step before every key
      float sT[NQ][4] = {}, dpT[NQ][4] = {};
      if (!skip) {
#pragma unroll
        for (int kk = 0; kk < KS; ++kk) {
          unsigned ka[4], va[4];
          if constexpr (KVREG) {
#pragma unroll
            for (int r = 0; r < 4; ++r) {
              ka[r] = kf[kk][r];
              va[r] = vf[kk][r];
            }
          } else {
            ldsm_x4(ka, Kw + kk * 16 + a_frag_addr(lane, LDS));
            ldsm_x4(va, Vw + kk * 16 + a_frag_addr(lane, LDS));
          }
#pragma unroll
          for (int n2 = 0; n2 < NQ / 2; ++n2) {
            unsigned bq[4], bo[4];
            const int off = (qs * QS + n2 * 16) * LDS + kk * 16 + bt_frag_addr(lane, LDS);
            ldsm_x4(bq, Qi + off);
            ldsm_x4(bo, Oi + off);
            mma_bf16(sT[2 * n2], ka, bq[0], bq[1]);
            mma_bf16(sT[2 * n2 + 1], ka, bq[2], bq[3]);
            mma_bf16(dpT[2 * n2], va, bo[0], bo[1]);
            mma_bf16(dpT[2 * n2 + 1], va, bo[2], bo[3]);
          }
        }
        // P^T[s][t] = 2^(x - lse_t log2 e), zero where s > t or t >= T; dS^T = P^T (dP^T - D_t).
        const bool mask = tq0 < ws + 15 || tq0 + QS > A.T;
#pragma unroll
        for (int n = 0; n < NQ; ++n)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int qi = qs * QS + n * 8 + 2 * qd + e, t = t0 + qi;
            const float lt = Li[qi] * kLog2e, dt = Di[qi];
#pragma unroll
            for (int hf = 0; hf < 2; ++hf) {
              const int s = ws + g + 8 * hf;
              float p = exp2_approx(sT[n][2 * hf + e] * A.scale_log2 - lt);
              if (mask && (s > t || t >= A.T)) p = 0.f;
              sT[n][2 * hf + e] = p;
              dpT[n][2 * hf + e] = p * (dpT[n][2 * hf + e] - dt);
            }
          }
      }
      // dS^T into the tile (zeros where skipped: the dQ kernel reads whole tiles).
#pragma unroll
      for (int n = 0; n < NQ; ++n)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const int kl = 16 * warp + g + 8 * hf, ql = qs * QS + n * 8 + 2 * qd;
          *reinterpret_cast<unsigned*>(tile + kl * BT + ql) =
              pack_bf16(dpT[n][2 * hf], dpT[n][2 * hf + 1]);
        }
      if (!skip) {
        // dV += P^T dO, dK += dS^T Q (scale applied at the end).
#pragma unroll
        for (int kq = 0; kq < QS / 16; ++kq) {
          unsigned pa[4], da[4];
          c_to_a(pa, sT[2 * kq], sT[2 * kq + 1]);
          c_to_a(da, dpT[2 * kq], dpT[2 * kq + 1]);
#pragma unroll
          for (int n2 = 0; n2 < NO / 2; ++n2) {
            unsigned bo[4], bq[4];
            const int off = (qs * QS + kq * 16) * LDS + n2 * 16 + b_frag_addr(lane, LDS);
            ldsm_x4_t(bo, Oi + off);
            ldsm_x4_t(bq, Qi + off);
            mma_bf16(dva[2 * n2], pa, bo[0], bo[1]);
            mma_bf16(dva[2 * n2 + 1], pa, bo[2], bo[3]);
            mma_bf16(dka[2 * n2], da, bq[0], bq[1]);
            mma_bf16(dka[2 * n2 + 1], da, bq[2], bq[3]);
          }
        }
      }
    }
    __syncthreads();  // this stage is consumed before iteration i+1 refills it
  }

#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int s = ws + g + 8 * hf;
    if (s >= A.T) continue;
    if (dk) store_row_pairs(dk, (tok0 + s) * A.ld + h * A.hd, qd, A.hd, dka, hf, A.scale, A.acc);
    if (dv) store_row_pairs(dv, (tok0 + s) * A.ldv + h * A.hd, qd, A.hd, dva, hf, 1.f, A.acc);
  }
}

// dQ += scale sum_{j <= i} dS_ij K_j. Grid (nqb, B*H), query tiles in reverse (longest first);
// warp w owns rows 16w .. 16w+15 of the tile. Each shared-memory stage holds KT key tiles (their
// dS tiles, stored [key][query], and K rows); NST stages, NST - 1 in flight while one is
// multiplied: the kernel does little arithmetic per byte, so it lives on memory-level
// parallelism and on few barriers per byte.
template <int HD, int NST, int KT>
__global__ void __launch_bounds__(128)
    flash_bwd_dq_kernel(DPtr dq, const bf16* dS, const bf16* k, FlashDims A) {
  constexpr int LDS = HD + 8, LDP = kBT + 8, NO = HD / 8, NT = 128, BT = kBT;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Ps = reinterpret_cast<bf16*>(smem);  // [NST][KT][BT][LDP]
  bf16* Ks = Ps + NST * KT * BT * LDP;       // [NST][KT][BT][LDS]
  const int i = static_cast<int>(gridDim.x - 1 - blockIdx.x), bh = blockIdx.y;
  const int b = bh / A.H, h = bh % A.H, t0 = i * BT;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, qd = lane & 3;
  const int64_t tok0 = int64_t{b} * A.T;
  const bf16* kh = k + tok0 * A.ld + h * A.hd;
  const bf16* row_tiles = dS + (int64_t{bh} * A.ntri() + int64_t{i} * (i + 1) / 2) * BT * BT;
  const int ngroups = (i + KT) / KT;  // key tiles 0..i in groups of KT
  // Issues group u's loads into stage u % NST (an empty commit group past the last keeps the
  // group count, and so the wait below, uniform).
  auto load = [&](int u) {
#pragma unroll
    for (int kt = 0; kt < KT; ++kt) {
      const int j = u * KT + kt;
      if (j > i) break;
      const bf16* src = row_tiles + int64_t{j} * BT * BT;
      bf16* dst = Ps + ((u % NST) * KT + kt) * BT * LDP;
#pragma unroll
      for (int it = 0; it < BT * BT / 8 / NT; ++it) {
        const int c = it * NT + static_cast<int>(threadIdx.x);
        const int r = c / (BT / 8), col = (c % (BT / 8)) * 8;
        cp_async16(dst + r * LDP + col, src + r * BT + col, true);
      }
      load_rows<BT, HD, NT>(Ks + ((u % NST) * KT + kt) * BT * LDS, kh + j * BT * A.ld, A.ld,
                            A.T - j * BT, A.hd, k);
    }
    cp_async_commit();
  };
#pragma unroll
  for (int u = 0; u < NST - 1; ++u) load(u);
  float acc[NO][4] = {};
  for (int u = 0; u < ngroups; ++u) {
    load(u + NST - 1);  // into the stage consumed at iteration u - 1
    cp_async_wait<NST - 1>();
    __syncthreads();
#pragma unroll
    for (int kt = 0; kt < KT; ++kt) {
      if (u * KT + kt > i) break;
      const bf16* Pj = Ps + ((u % NST) * KT + kt) * BT * LDP;
      const bf16* Kj = Ks + ((u % NST) * KT + kt) * BT * LDS;
#pragma unroll
      for (int kk = 0; kk < BT / 16; ++kk) {
        unsigned a[4];
        ldsm_x4_t(a, Pj + kk * 16 * LDP + 16 * warp + bt_frag_addr(lane, LDP));
#pragma unroll
        for (int n2 = 0; n2 < NO / 2; ++n2) {
          unsigned bk[4];
          ldsm_x4_t(bk, Kj + kk * 16 * LDS + n2 * 16 + b_frag_addr(lane, LDS));
          mma_bf16(acc[2 * n2], a, bk[0], bk[1]);
          mma_bf16(acc[2 * n2 + 1], a, bk[2], bk[3]);
        }
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int t = t0 + 16 * warp + g + 8 * hf;
    if (t >= A.T) continue;
    store_row_pairs(dq, (tok0 + t) * A.ld + h * A.hd, qd, A.hd, acc, hf, A.scale, A.acc);
  }
}

// D[b*H + h, t] = dO . O over one head's row, bf16 inputs with a power-of-two number L = hd / 8
// of 16-byte chunks per row: L lanes per row, 32 / L rows per warp, a shuffle tree over the L.
// Rows r = (b*T + t)*H + h are contiguous [r][hd] in both tensors.
template <int L>
__global__ void flash_row_dots_kernel(float* D, const bf16* dout, const bf16* out, int64_t rows,
                                      int T, int H) {
  const int64_t gt = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const int64_t r = gt / L;
  const int c = static_cast<int>(gt % L) * 8;
  float acc = 0.f;
  if (r < rows) {
    const uint4 a = *reinterpret_cast<const uint4*>(dout + r * (L * 8) + c);
    const uint4 o = *reinterpret_cast<const uint4*>(out + r * (L * 8) + c);
    const unsigned av[4] = {a.x, a.y, a.z, a.w}, ov[4] = {o.x, o.y, o.z, o.w};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float2 x = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&av[e]));
      const float2 y = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&ov[e]));
      acc += x.x * y.x + x.y * y.y;
    }
  }
#pragma unroll
  for (int o = L / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (r < rows && c == 0) {
    const int64_t h = r % H, bt = r / H, b = bt / T, t = bt % T;
    D[(b * H + h) * T + t] = acc;
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Whether the bf16 path takes this call: bf16 inputs read by cp.async (16-byte rows: hd and the
// strides multiples of 8, 16-byte aligned bases), outputs of either dtype written as aligned
// pairs (store_row_pairs), fp32 lse, head dim <= 128.
bool eligible(std::initializer_list<DPtr> bf_inputs, std::initializer_list<DPtr> outputs, DPtr lse,
              int64_t T, int64_t H, int64_t hd, int64_t ldv) {
  if (hd < 8 || hd > 128 || hd % 8 != 0 || ldv % 8 != 0 || lse.bf) return false;
  if (T > (int64_t{1} << 24) || H > 65535) return false;
  for (DPtr p : bf_inputs)
    if (!p.bf || !aligned16(p.p)) return false;
  for (DPtr p : outputs)
    if (p && reinterpret_cast<uintptr_t>(p.p) % (p.bf ? 4 : 8) != 0) return false;
  return true;
}

// SL_CUDA_ATTENTION=mma keeps the bf16 kernels on mma.sync (below) where the wgmma ones
// would run (before/after comparisons in one binary); SL_CUDA_ATTENTION_VARIANT=N picks a wgmma
// tile shape (tuning).
bool use_wgmma() {
  static const bool on = [] {
    const char* e = std::getenv("SL_CUDA_ATTENTION");
    return !(e && std::strcmp(e, "mma") == 0);
  }();
  return on;
}
int variant() {
  static const int v = [] {
    const char* e = std::getenv("SL_CUDA_ATTENTION_VARIANT");
    return e ? std::atoi(e) : 0;
  }();
  return v;
}

// Checks `smem` against the device and opts the kernel in.
template <class K>
void prepare(K kernel, size_t smem, const Ctx& ctx, const char* what) {
  if (smem > ctx.smem_optin)
    fail(std::string("cuda attention ") + what + ": needs " + std::to_string(smem) +
         " bytes of shared memory, the device allows " + std::to_string(ctx.smem_optin));
  smem_opt_in(kernel, smem);
  // The largest shared-memory carveout: the driver otherwise may pick a smaller one that fits
  // fewer blocks per SM than the registers allow.
  SL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                     cudaSharedmemCarveoutMaxShared));
}

template <int HD, int MT, int NW, int BN, int MINB, bool QREG>
void forward(Ctx& ctx, DPtr out, float* lse, const bf16* q, const bf16* k, const bf16* v,
             const FlashDims& A, int64_t BH) {
  constexpr int BM = 16 * MT * NW;
  const size_t smem = sizeof(bf16) * static_cast<size_t>((BM + 4 * BN) * (HD + 8));
  auto kern = flash_fwd_kernel<HD, MT, NW, BN, MINB, QREG>;
  prepare(kern, smem, ctx, "forward");
  const dim3 grid(static_cast<unsigned>((A.T + BM - 1) / BM), static_cast<unsigned>(BH));
  kern<<<grid, NW * 32, smem, ctx.stream>>>(out, lse, q, k, v, A);
  SL_CUDA_LAUNCHED();
}

template <int HD, int QS, bool KVREG, int MINB>
void backward(Ctx& ctx, DPtr dq, DPtr dk, DPtr dv, bf16* dS, const bf16* q, const bf16* k,
              const bf16* v, const bf16* dout, const float* lse, const float* D, const FlashDims& A,
              int64_t BH) {
  const dim3 grid(static_cast<unsigned>(A.nqb), static_cast<unsigned>(BH));
  // dK, dV and the dS tiles: on the warpgroup MMA where the device has it.
  if (!use_wgmma() ||
      !wgmma_attention_dkv(ctx, dk, dv, dS, q, k, v, dout, lse, D, A, BH, variant())) {
    const size_t smem_kv = sizeof(bf16) * 6 * kBT * (HD + 8) + sizeof(float) * 4 * kBT;
    auto kv = flash_bwd_dkv_kernel<HD, QS, KVREG, MINB>;
    prepare(kv, smem_kv, ctx, "backward (dk, dv)");
    kv<<<grid, 128, smem_kv, ctx.stream>>>(dk, dv, dS, q, k, v, dout, lse, D, A);
    SL_CUDA_LAUNCHED();
  }
  if (!dq) return;
  if (use_wgmma() && wgmma_attention_dq(ctx, dq, dS, k, A, BH)) return;
  // Three stages of one key tile each (two and four stages, or two tiles a stage, measured the
  // same or slower).
  constexpr int NST = 3, KT = 1;
  const size_t smem_q = sizeof(bf16) * NST * KT * kBT * ((kBT + 8) + (HD + 8));
  auto qk = flash_bwd_dq_kernel<HD, NST, KT>;
  prepare(qk, smem_q, ctx, "backward (dq)");
  qk<<<grid, 128, smem_q, ctx.stream>>>(dq, dS, k, A);
  SL_CUDA_LAUNCHED();
}

}  // namespace

bool flash_attention_forward(Ctx& ctx, DPtr out, DPtr lse, DPtr q, DPtr k, DPtr v,
                             const AttnShape& shape) {
  const int64_t B = shape.B, T = shape.T, H = shape.H, hd = shape.hd, ldv = shape.ldv;
  if (!eligible({q, k, v}, {out}, lse, T, H, hd, ldv)) return false;
  const FlashDims A = flash_dims(T, H, hd, ldv);
  auto* Q = static_cast<const bf16*>(q.p);
  auto* K = static_cast<const bf16*>(k.p);
  auto* V = static_cast<const bf16*>(v.p);
  auto* L = static_cast<float*>(lse.p);
  if (use_wgmma() && wgmma_attention_forward(ctx, out, L, Q, K, V, A, B * H, variant()))
    return true;
  // Tile shapes as measured best on an H200 (docs/PERFORMANCE.md): 128-row query blocks of 4
  // warps with two 16-row MMA tiles each (every K fragment feeds two MMAs), Q fragments re-read
  // from shared memory per k-step (holding them in registers measured 4-10% slower: the
  // registers serve the scheduler better); 64-key tiles for hd 64, 32 for hd 128, whose O
  // accumulator is twice as large.
  if (hd <= 64)
    forward<64, 2, 4, 64, 1, false>(ctx, out, L, Q, K, V, A, B * H);
  else
    forward<128, 2, 4, 32, 1, false>(ctx, out, L, Q, K, V, A, B * H);
  return true;
}

bool flash_attention_backward(Ctx& ctx, DPtr dq, DPtr dk, DPtr dv, DPtr dout, DPtr q, DPtr k,
                              DPtr v, DPtr out, DPtr lse, const AttnShape& shape, bool accumulate) {
  const int64_t B = shape.B, T = shape.T, H = shape.H, hd = shape.hd, ldv = shape.ldv;
  if (!eligible({q, k, v, dout}, {dq, dk, dv}, lse, T, H, hd, ldv)) return false;
  FlashDims A = flash_dims(T, H, hd, ldv);
  A.acc = accumulate;
  // Workspace: D [B*H, T] fp32, then the dS tiles [B*H][ntri][64][64] bf16.
  const int64_t ntri = int64_t{A.nqb} * (A.nqb + 1) / 2;
  const size_t d_bytes = (static_cast<size_t>(B * H * T) * sizeof(float) + 255) / 256 * 256;
  char* w = static_cast<char*>(
      ctx.work->get(d_bytes + static_cast<size_t>(B * H * ntri) * kBT * kBT * sizeof(bf16)));
  auto* D = reinterpret_cast<float*>(w);
  auto* dS = reinterpret_cast<bf16*>(w + d_bytes);
  const int64_t rows = B * T * H;
  auto dots = [&](auto kernel, int lanes) {
    kernel<<<static_cast<unsigned>((rows * lanes + 255) / 256), 256, 0, ctx.stream>>>(
        D, static_cast<const bf16*>(dout.p), static_cast<const bf16*>(out.p), rows,
        static_cast<int>(T), static_cast<int>(H));
    SL_CUDA_LAUNCHED();
  };
  if (!out.bf || !aligned16(out.p))
    attention_row_dots(ctx, D, dout, out, B, T, H, hd);
  else if (hd == 64)
    dots(flash_row_dots_kernel<8>, 8);
  else if (hd == 128)
    dots(flash_row_dots_kernel<16>, 16);
  else if (hd == 32)
    dots(flash_row_dots_kernel<4>, 4);
  else
    attention_row_dots(ctx, D, dout, out, B, T, H, hd);
  auto* Q = static_cast<const bf16*>(q.p);
  auto* K = static_cast<const bf16*>(k.p);
  auto* V = static_cast<const bf16*>(v.p);
  auto* dO = static_cast<const bf16*>(dout.p);
  auto* L = static_cast<const float*>(lse.p);
  // hd 64: 16-query register steps with K, V fragments in registers, three blocks per SM;
  // hd 128: 32-query steps, K and V fragments re-read from shared memory. (Measured best of:
  // 16/32/64-query steps, K and V in registers or not, 2-4 blocks per SM.)
  if (hd <= 64)
    backward<64, 16, true, 3>(ctx, dq, dk, dv, dS, Q, K, V, dO, L, D, A, B * H);
  else
    backward<128, 32, false, 1>(ctx, dq, dk, dv, dS, Q, K, V, dO, L, D, A, B * H);
  return true;
}

}  // namespace sl::cuda
