// Gated DeltaNet recurrence on the CPU (gdn_forward / gdn_backward; the function is stated in the
// op list, core/backend_ops.inc), in two forms that compute the same function, picked by the
// backend's GdnAlgo:
//   recurrent: the naive per-step recurrence (the reference);
//   chunk:     the chunkwise (WY/UT) form over chunks of kGdnChunk steps, the algorithm the CUDA
//              kernel implements on tensor cores.
// Forward and analytic backward of each.
//
// Notation per (b, h): a_t = exp(g_t) <= 1, state S in R^{Kd x Vd} (the head dimensions
// Kd = key_dim, Vd = value_dim).
//   S_t     = a_t S_{t-1} + k_t delta_t^T,   delta_t = beta_t (v_t - a_t S_{t-1}^T k_t),
//   o_t     = S_t^T q_t.
//
// Parallelism: one OpenMP task per (b, h) with a static schedule. Every (b, h) touches only its
// own slices of every output, and the work done for one (b, h) does not depend on the thread
// that runs it, so results are bitwise reproducible (for any thread count, in fact). Eigen does
// not parallelise products inside an OpenMP parallel region, so its products are serial here.
//
// Gradients: every backward ACCUMULATES (+=) into dq, dk, dv, dbeta, dg. The two algorithms
// below need all five; CpuBackend::gdn_backward gives a null one (skipped, as the Backend
// convention says) a scratch array.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/common.h"

namespace sl {
namespace {

template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
// A [rows, cols] block of a [B, T, H, cols] tensor for one (b, h): row stride H*cols.
template <class T>
using CStrided = Eigen::Map<const Mat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using Strided = Eigen::Map<Mat<T>, 0, Eigen::OuterStride<>>;
// One (b, h) column of a [B, T, H] tensor: element stride H.
template <class T>
using CStridedVec = Eigen::Map<const Vec<T>, 0, Eigen::InnerStride<>>;
template <class T>
using StridedVec = Eigen::Map<Vec<T>, 0, Eigen::InnerStride<>>;

// Offsets for one (b, h): token t of a [B, T, H, d] tensor, and chunk c of states.
inline int64_t tok(int64_t b, int64_t t, int64_t h, int64_t T_, int64_t H, int64_t d) {
  return ((b * T_ + t) * H + h) * d;
}
inline int64_t state_off(int64_t b, int64_t h, int64_t c, int64_t H, int64_t NC, int64_t key_dim,
                         int64_t value_dim) {
  return ((b * H + h) * NC + c) * key_dim * value_dim;
}

// ================================================================================================
// Recurrent form
// ================================================================================================

// One forward step on a Kd x Vd row-major state, in place: S <- a S; u = v - S^T k;
// delta = beta u; S <- S + k delta^T. Writes u and delta (Vd each).
template <class T>
void recurrent_step(T* S, T* u, T* delta, const T* k, const T* v, T beta, T a, int64_t key_dim,
                    int64_t value_dim) {
  for (int64_t i = 0; i < key_dim * value_dim; ++i) S[i] *= a;
  for (int64_t j = 0; j < value_dim; ++j) u[j] = v[j];
  for (int64_t i = 0; i < key_dim; ++i) {
    const T ki = k[i];
    for (int64_t j = 0; j < value_dim; ++j) u[j] -= S[i * value_dim + j] * ki;
  }
  for (int64_t j = 0; j < value_dim; ++j) delta[j] = beta * u[j];
  for (int64_t i = 0; i < key_dim; ++i) {
    const T ki = k[i];
    for (int64_t j = 0; j < value_dim; ++j) S[i * value_dim + j] += ki * delta[j];
  }
}

template <class T>
void gdn_recurrent_forward(T* out, T* states, const T* q, const T* k, const T* v, const T* beta,
                           const T* g, int64_t B, int64_t T_, int64_t H, int64_t key_dim,
                           int64_t value_dim) {
  const int64_t NC = gdn_num_chunks(T_);
#pragma omp parallel
  {
    std::vector<T> S(key_dim * value_dim), u(value_dim), delta(value_dim);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      std::fill(S.begin(), S.end(), T(0));
      for (int64_t t = 0; t < T_; ++t) {
        if (t % kGdnChunk == 0) {  // save S entering chunk t/64 for the backward
          std::copy(S.begin(), S.end(),
                    states + state_off(b, h, t / kGdnChunk, H, NC, key_dim, value_dim));
        }
        const int64_t th = (b * T_ + t) * H + h;
        recurrent_step(S.data(), u.data(), delta.data(), k + th * key_dim, v + th * value_dim,
                       beta[th], std::exp(g[th]), key_dim, value_dim);
        // o_t = S_t^T q_t
        const T* qt = q + th * key_dim;
        T* ot = out + th * value_dim;
        for (int64_t j = 0; j < value_dim; ++j) ot[j] = 0;
        for (int64_t i = 0; i < key_dim; ++i) {
          for (int64_t j = 0; j < value_dim; ++j) ot[j] += S[i * value_dim + j] * qt[i];
        }
      }
    }
  }
}

// BPTT in reverse time. dS is the gradient w.r.t. S_t (the state after step t). Per step, with
// P = a_t S_{t-1} (decayed state), u = v_t - P^T k_t, delta = beta_t u:
//   o_t = S_t^T q_t:            dq_t += S_t do_t;             dS += q_t do_t^T
//   S_t = P + k_t delta^T:      ddelta = dS^T k_t;            dk_t += dS delta
//   delta = beta (v - P^T k):   dbeta_t += ddelta . u;        dv_t += beta ddelta;
//                               dk_t -= beta P ddelta;        dP = dS - beta k_t ddelta^T
//   P = a S_{t-1}, a = e^{g}:   dg_t += <dP, P>;              dS_{t-1} = a dP
// The states inside a chunk are recomputed from the saved chunk-entry state (no T states kept).
template <class T>
void gdn_recurrent_backward(T* dq, T* dk, T* dv, T* dbeta, T* dg, const T* dout, const T* states,
                            const T* q, const T* k, const T* v, const T* beta, const T* g,
                            int64_t B, int64_t T_, int64_t H, int64_t key_dim, int64_t value_dim) {
  const int64_t NC = gdn_num_chunks(T_);
  const int64_t SS = key_dim * value_dim;
#pragma omp parallel
  {
    // Sc[j] = state after step j-1 of the chunk (Sc[0] = chunk entry); U/D = u and delta rows.
    std::vector<T> Sc((kGdnChunk + 1) * SS), U(kGdnChunk * value_dim), D(kGdnChunk * value_dim);
    std::vector<T> dS(SS), dd(value_dim), dkt(key_dim);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      std::fill(dS.begin(), dS.end(), T(0));
      for (int64_t c = NC - 1; c >= 0; --c) {
        const int64_t t0 = c * kGdnChunk, Cn = std::min(kGdnChunk, T_ - t0);
        const T* S0 = states + state_off(b, h, c, H, NC, key_dim, value_dim);
        std::copy(S0, S0 + SS, Sc.begin());
        for (int64_t j = 0; j < Cn; ++j) {  // recompute the chunk's states
          const int64_t th = (b * T_ + t0 + j) * H + h;
          std::copy(Sc.begin() + j * SS, Sc.begin() + (j + 1) * SS, Sc.begin() + (j + 1) * SS);
          recurrent_step(Sc.data() + (j + 1) * SS, U.data() + j * value_dim,
                         D.data() + j * value_dim, k + th * key_dim, v + th * value_dim, beta[th],
                         std::exp(g[th]), key_dim, value_dim);
        }
        for (int64_t j = Cn - 1; j >= 0; --j) {
          const int64_t th = (b * T_ + t0 + j) * H + h;
          const T* Sprev = Sc.data() + j * SS;
          const T* Scur = Sc.data() + (j + 1) * SS;
          const T* qt = q + th * key_dim;
          const T* kt = k + th * key_dim;
          const T* dot = dout + th * value_dim;
          const T* u = U.data() + j * value_dim;
          const T* delta = D.data() + j * value_dim;
          const T bt = beta[th], a = std::exp(g[th]);
          // Output: dq_t += S_t do_t, dS += q_t do_t^T.
          for (int64_t i = 0; i < key_dim; ++i) {
            T acc = 0;
            for (int64_t jj = 0; jj < value_dim; ++jj) {
              acc += Scur[i * value_dim + jj] * dot[jj];
              dS[i * value_dim + jj] += qt[i] * dot[jj];
            }
            dq[th * key_dim + i] += acc;
          }
          // ddelta = dS^T k_t; dk_t = dS delta (accumulated locally, added once).
          std::fill(dd.begin(), dd.end(), T(0));
          for (int64_t i = 0; i < key_dim; ++i) {
            T acc = 0;
            for (int64_t jj = 0; jj < value_dim; ++jj) {
              dd[jj] += dS[i * value_dim + jj] * kt[i];
              acc += dS[i * value_dim + jj] * delta[jj];
            }
            dkt[i] = acc;
          }
          T db = 0;
          for (int64_t jj = 0; jj < value_dim; ++jj) {
            db += dd[jj] * u[jj];
            dv[th * value_dim + jj] += bt * dd[jj];
          }
          dbeta[th] += db;
          // With P = a S_{t-1}: dk_t -= beta P ddelta; dP = dS - beta k ddelta^T (in place in
          // dS); dg_t += <dP, P>; then dS_{t-1} = a dP.
          T dgt = 0;
          for (int64_t i = 0; i < key_dim; ++i) {
            T acc = 0;
            for (int64_t jj = 0; jj < value_dim; ++jj) {
              const T P = a * Sprev[i * value_dim + jj];
              acc += P * dd[jj];
              T& dP = dS[i * value_dim + jj];
              dP -= bt * kt[i] * dd[jj];
              dgt += dP * P;
              dP *= a;
            }
            dk[th * key_dim + i] += dkt[i] - bt * acc;
          }
          dg[th] += dgt;
        }
      }
    }
  }
}

// ================================================================================================
// Chunk (WY/UT) form
// ================================================================================================
// Per (b, h) and chunk of C steps with entry state S0 [Kd, Vd]; rows t = 0..C-1 of Q, K [C, Kd],
// V [C, Vd]; gamma_t = sum_{j<=t} g_j (inclusive, within the chunk), Gam_t = exp(gamma_t),
// e_s = exp(gamma_{C-1} - gamma_s), E_ts = exp(gamma_t - gamma_s) for s <= t else 0.
// Unrolling the recurrence inside the chunk gives
//   S_t = Gam_t S0 + sum_{s<=t} E_ts k_s delta_s^T, hence
//   delta_t + sum_{s<t} L_ts delta_s = beta_t (v_t - Gam_t S0^T k_t),  L_ts = beta_t E_ts k_t.k_s:
//   Delta  = (I + L)^{-1} diag(beta) Ub,      Ub = V - diag(Gam) K S0             [C, Vd]
//   O      = diag(Gam) Q S0 + A Delta,        A = (Q K^T) . E  (elementwise)        [C, Vd]
//   S_next = Gam_{C-1} S0 + K^T diag(e) Delta                                       [Kd, Vd]
// Every exponent above is gamma_t - gamma_s with s <= t (or gamma_t - 0), so it is <= 0: no
// overflow however strong the decay (large positive exponents are the NaN pitfall).

// The intermediates of one chunk, shared by forward and backward (recomputed in backward).
// One chunk's rows of q, k, v, beta and g for head (b, h), as strided views (no copies): the
// inputs every chunk step of the forward and the backward reads.
template <class T>
struct ChunkIn {
  CStrided<T> Q, K, V;
  CStridedVec<T> bt, gt;
  ChunkIn(const T* q, const T* k, const T* v, const T* beta, const T* g, int64_t b, int64_t t0,
          int64_t h, int64_t C, int64_t T_, int64_t H, int64_t key_dim, int64_t value_dim)
      : Q(q + tok(b, t0, h, T_, H, key_dim), C, key_dim, Eigen::OuterStride<>(H * key_dim)),
        K(k + tok(b, t0, h, T_, H, key_dim), C, key_dim, Eigen::OuterStride<>(H * key_dim)),
        V(v + tok(b, t0, h, T_, H, value_dim), C, value_dim, Eigen::OuterStride<>(H * value_dim)),
        bt(beta + tok(b, t0, h, T_, H, 1), C, Eigen::InnerStride<>(H)),
        gt(g + tok(b, t0, h, T_, H, 1), C, Eigen::InnerStride<>(H)) {}
};

template <class T>
struct ChunkWork {
  Vec<T> bet, gam, Gam, e;  // [C]: beta, gamma, exp(gamma), exp(gamma_last - gamma)
  Mat<T> E;                 // [C, C] exp(gamma_t - gamma_s), s <= t; 0 above the diagonal
  Mat<T> KK;                // [C, C] K K^T
  Mat<T> L;                 // [C, C] strictly lower L_ts = beta_t E_ts KK_ts (0 elsewhere)
  Mat<T> A;                 // [C, C] (Q K^T) . E
  Mat<T> Ub;                // [C, Vd] V - diag(Gam) K S0
  Mat<T> Delta;             // [C, Vd]

  // Everything that does not depend on the state: the gates, E, KK, L and A.
  template <class MQ, class MK>
  void prepare(const MQ& Q, const MK& K, const CStridedVec<T>& beta, const CStridedVec<T>& g) {
    const int64_t C = Q.rows();
    bet = beta;
    gam.resize(C);
    T acc = 0;
    for (int64_t t = 0; t < C; ++t) gam(t) = acc += g(t);
    Gam = gam.array().exp();
    e = (gam(C - 1) - gam.array()).exp();
    E.setZero(C, C);
    for (int64_t t = 0; t < C; ++t) {
      for (int64_t s = 0; s <= t; ++s) E(t, s) = std::exp(gam(t) - gam(s));
    }
    KK.noalias() = K * K.transpose();
    L.setZero(C, C);
    for (int64_t t = 0; t < C; ++t) {
      for (int64_t s = 0; s < t; ++s) L(t, s) = bet(t) * E(t, s) * KK(t, s);
    }
    A.noalias() = Q * K.transpose();
    A = A.cwiseProduct(E);
  }
  // Ub and Delta from the state S0 entering the chunk (after prepare).
  template <class MK, class MV, class MS>
  void state(const MK& K, const MV& V, const MS& S0) {
    Ub = V;
    Ub.noalias() -= Gam.asDiagonal() * (K * S0);
    // Forward substitution with the unit lower triangular I + L (the diagonal of L is not read).
    Delta = bet.asDiagonal() * Ub;
    L.template triangularView<Eigen::UnitLower>().solveInPlace(Delta);
  }
  template <class MQ, class MK, class MV, class MS>
  void compute(const MQ& Q, const MK& K, const MV& V, const MS& S0, const CStridedVec<T>& beta,
               const CStridedVec<T>& g) {
    prepare(Q, K, beta, g);
    state(K, V, S0);
  }
};

template <class T>
void gdn_chunk_forward(T* out, T* states, const T* q, const T* k, const T* v, const T* beta,
                       const T* g, int64_t B, int64_t T_, int64_t H, int64_t key_dim,
                       int64_t value_dim) {
  const int64_t NC = gdn_num_chunks(T_);
#pragma omp parallel
  {
    ChunkWork<T> w;
    Mat<T> S(key_dim, value_dim);
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      S.setZero();
      for (int64_t c = 0; c < NC; ++c) {
        const int64_t t0 = c * kGdnChunk, C = std::min(kGdnChunk, T_ - t0);
        Eigen::Map<Mat<T>>(states + state_off(b, h, c, H, NC, key_dim, value_dim), key_dim,
                           value_dim) = S;
        const ChunkIn<T> in(q, k, v, beta, g, b, t0, h, C, T_, H, key_dim, value_dim);
        const auto& [Q, K, V, bt, gt] = in;
        w.compute(Q, K, V, S, bt, gt);
        // O = diag(Gam) Q S0 + A Delta
        Strided<T> O(out + tok(b, t0, h, T_, H, value_dim), C, value_dim,
                     Eigen::OuterStride<>(H * value_dim));
        O.noalias() = w.Gam.asDiagonal() * (Q * S);
        O.noalias() += w.A * w.Delta;
        // S_next = Gam_{C-1} S0 + K^T diag(e) Delta
        S *= w.Gam(C - 1);
        S.noalias() += K.transpose() * (w.e.asDiagonal() * w.Delta);
      }
    }
  }
}

// Analytic backward of the chunk form, chunks in reverse order carrying dS = dL/dS_next (zero
// after the last chunk). Per chunk, with dO [C, Vd] and the recomputed intermediates:
//
//  (1) S_next = Gam_{C-1} S0 + K^T diag(e) Delta   and   O = diag(Gam) Q S0 + A Delta:
//      dDelta  = A^T dO + diag(e) K dS                                              [C, Vd]
//      dA      = (dO Delta^T) . [s <= t],   dQK = dA . E                            [C, C]
//      dQ     += dQK K + diag(Gam) dO S0^T
//      dK     += dQK^T Q + diag(e) Delta dS^T
//      dS0     = Q^T diag(Gam) dO + Gam_{C-1} dS
//      dgamma_t += sum_s dA_ts A_ts - sum_s' dA_s't A_s't          (A_ts = (q_t.k_s) E_ts)
//      dgamma_t += Gam_t q_t . (S0 do_t)
//      r_s = k_s . (dS delta_s):  dgamma_{C-1} += Gam_{C-1} <S0, dS> + sum_s e_s r_s,
//                                 dgamma_s -= e_s r_s
//  (2) Delta = (I + L)^{-1} X,  X = diag(beta) Ub:
//      dX = (I + L)^{-T} dDelta          (back substitution with the unit upper (I + L)^T)
//      dL = -dX Delta^T, strictly lower part only
//  (3) L_ts = beta_t E_ts KK_ts (s < t):
//      dbeta_t += sum_s dL_ts E_ts KK_ts      (no division by beta, which may be ~0)
//      dgamma_t += sum_s dL_ts L_ts,  dgamma_s -= sum_t dL_ts L_ts
//      G_ts = dL_ts beta_t E_ts = dKK_ts:  dK += (G + G^T) K
//  (4) X = diag(beta) (V - diag(Gam) K S0):
//      dbeta_t += dX_t . Ub_t;   dV += diag(beta) dX =: Y
//      Z = diag(Gam) Y S0^T [C, Kd]:  dK -= Z;  dgamma_t -= Z_t . k_t
//      dS0 -= K^T diag(Gam) Y
//  (5) gamma = inclusive cumsum of g within the chunk:  dg_j += sum_{t >= j} dgamma_t. (The
//      cross-chunk dependence of later chunks on g runs through Gam_{C-1} in S_next, i.e. through
//      dgamma_{C-1} above.)
//  Carry dS <- dS0 to the previous chunk.
//
// The carry needs only part of this: with W = (I + L)^{-1} diag(beta Gam) K [C, Kd] (the WY form),
//      dS0 = Gam_{C-1} dS + Q^T diag(Gam) dO - W^T dDelta,   dDelta = A^T dO + diag(e) K dS
// (K^T diag(Gam) Y = K^T diag(Gam beta) (I + L)^{-T} dDelta = W^T dDelta), which depends on the
// state only through dS. So the backward runs in two phases: (a) per (b, h), chunks in reverse,
// only that recurrence, saving the dS entering each chunk; (b) every (b, h, chunk) at once, all
// the gradients of the chunk from its saved S0 and dS - the split the fast GPU kernels use (a
// short sequential pass, then chunk-parallel work).
template <class T>
void gdn_chunk_backward(T* dq, T* dk, T* dv, T* dbeta, T* dg, const T* dout, const T* states,
                        const T* q, const T* k, const T* v, const T* beta, const T* g, int64_t B,
                        int64_t T_, int64_t H, int64_t key_dim, int64_t value_dim) {
  const int64_t NC = gdn_num_chunks(T_), KV = key_dim * value_dim;
  // (a) dS entering each chunk (dL/dS_next of chunk c), [B, H, NC, Kd, Vd] as the states.
  std::vector<T> dstates(static_cast<size_t>(B * H * NC * KV));
#pragma omp parallel
  {
    ChunkWork<T> w;
    Mat<T> dS(key_dim, value_dim), dDelta, W;
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      dS.setZero();
      for (int64_t c = NC - 1; c >= 0; --c) {
        const int64_t t0 = c * kGdnChunk, C = std::min(kGdnChunk, T_ - t0);
        Eigen::Map<Mat<T>>(dstates.data() + state_off(b, h, c, H, NC, key_dim, value_dim), key_dim,
                           value_dim) = dS;
        if (c == 0) break;
        const ChunkIn<T> in(q, k, v, beta, g, b, t0, h, C, T_, H, key_dim, value_dim);
        CStrided<T> dO(dout + tok(b, t0, h, T_, H, value_dim), C, value_dim,
                       Eigen::OuterStride<>(H * value_dim));
        w.prepare(in.Q, in.K, in.bt, in.gt);
        W = (w.bet.cwiseProduct(w.Gam)).asDiagonal() * in.K;
        w.L.template triangularView<Eigen::UnitLower>().solveInPlace(W);
        dDelta.noalias() = w.A.transpose() * dO;
        dDelta.noalias() += w.e.asDiagonal() * (in.K * dS);
        dS *= w.Gam(C - 1);
        dS.noalias() += in.Q.transpose() * (w.Gam.asDiagonal() * dO);
        dS.noalias() -= W.transpose() * dDelta;
      }
    }
  }
  // (b) Every chunk's gradients from its S0 and dS.
#pragma omp parallel
  {
    ChunkWork<T> w;
    Mat<T> dDelta, dA, dL, G, Y, Z, dQl, dKl;
    Vec<T> dgam, dbet;
#pragma omp for schedule(static)
    for (int64_t bhc = 0; bhc < B * H * NC; ++bhc) {
      const int64_t b = bhc / (H * NC), h = bhc / NC % H, c = bhc % NC;
      {
        const int64_t t0 = c * kGdnChunk, C = std::min(kGdnChunk, T_ - t0);
        Eigen::Map<const Mat<T>> S0(states + state_off(b, h, c, H, NC, key_dim, value_dim), key_dim,
                                    value_dim);
        Eigen::Map<const Mat<T>> dS(dstates.data() + state_off(b, h, c, H, NC, key_dim, value_dim),
                                    key_dim, value_dim);
        const ChunkIn<T> in(q, k, v, beta, g, b, t0, h, C, T_, H, key_dim, value_dim);
        const auto& [Q, K, V, bt, gt] = in;
        CStrided<T> dO(dout + tok(b, t0, h, T_, H, value_dim), C, value_dim,
                       Eigen::OuterStride<>(H * value_dim));
        w.compute(Q, K, V, S0, bt, gt);
        const T GamL = w.Gam(C - 1);
        dgam.setZero(C);
        dbet.setZero(C);

        // (1) Through O and S_next.
        dDelta.noalias() = w.A.transpose() * dO;
        dDelta.noalias() += w.e.asDiagonal() * (K * dS);
        dA.noalias() = dO * w.Delta.transpose();
        for (int64_t t = 0; t < C; ++t) {
          for (int64_t s = 0; s < C; ++s) {
            if (s > t) {
              dA(t, s) = 0;  // masked (not part of A); dA becomes dQK below
              continue;
            }
            const T wts = dA(t, s) * w.A(t, s);  // gamma path of E_ts
            dgam(t) += wts;
            dgam(s) -= wts;
            dA(t, s) *= w.E(t, s);
          }
        }
        // Inter-chunk output term: Z = diag(Gam) dO S0^T is dQ's share, and Z_t . q_t dgamma_t's.
        Z.noalias() = w.Gam.asDiagonal() * (dO * S0.transpose());
        dgam += Z.cwiseProduct(Q).rowwise().sum();
        dQl = Z;
        dQl.noalias() += dA * K;
        // dK from A and from S_next; r_s = k_s . (dS delta_s) from the rows of Delta dS^T.
        Z.noalias() = w.Delta * dS.transpose();
        {
          Vec<T> r = Z.cwiseProduct(K).rowwise().sum();
          Vec<T> er = w.e.cwiseProduct(r);
          dgam -= er;
          dgam(C - 1) += er.sum() + GamL * S0.cwiseProduct(dS).sum();
        }
        dKl = w.e.asDiagonal() * Z;
        dKl.noalias() += dA.transpose() * Q;

        // (2) dX = (I + L)^{-T} dDelta (in place in dDelta); dL = -dX Delta^T (strictly lower).
        w.L.transpose().template triangularView<Eigen::UnitUpper>().solveInPlace(dDelta);
        const Mat<T>& dX = dDelta;
        dL.noalias() = dX * w.Delta.transpose();
        // (3) Through L_ts = beta_t E_ts KK_ts; G = dKK (strictly lower).
        G.setZero(C, C);
        for (int64_t t = 0; t < C; ++t) {
          for (int64_t s = 0; s < t; ++s) {
            const T d = -dL(t, s);
            dbet(t) += d * w.E(t, s) * w.KK(t, s);
            const T wts = d * w.L(t, s);
            dgam(t) += wts;
            dgam(s) -= wts;
            G(t, s) = d * w.bet(t) * w.E(t, s);
          }
        }
        dKl.noalias() += G * K;
        dKl.noalias() += G.transpose() * K;
        // (4) Through X = diag(beta) Ub.
        dbet += dX.cwiseProduct(w.Ub).rowwise().sum();
        Y = w.bet.asDiagonal() * dX;
        Z.noalias() = w.Gam.asDiagonal() * (Y * S0.transpose());
        dKl -= Z;
        dgam -= Z.cwiseProduct(K).rowwise().sum();

        // Accumulate into the outputs.
        Strided<T>(dq + tok(b, t0, h, T_, H, key_dim), C, key_dim,
                   Eigen::OuterStride<>(H * key_dim)) += dQl;
        Strided<T>(dk + tok(b, t0, h, T_, H, key_dim), C, key_dim,
                   Eigen::OuterStride<>(H * key_dim)) += dKl;
        Strided<T>(dv + tok(b, t0, h, T_, H, value_dim), C, value_dim,
                   Eigen::OuterStride<>(H * value_dim)) += Y;
        StridedVec<T>(dbeta + tok(b, t0, h, T_, H, 1), C, Eigen::InnerStride<>(H)) += dbet;
        // (5) dg_j += sum_{t >= j} dgamma_t (reverse cumulative sum).
        StridedVec<T> dgv(dg + tok(b, t0, h, T_, H, 1), C, Eigen::InnerStride<>(H));
        T acc = 0;
        for (int64_t j = C - 1; j >= 0; --j) dgv(j) += acc += dgam(j);
      }
    }
  }
}

}  // namespace

template <class T>
void CpuBackend<T>::gdn_forward(Tensor out, Tensor states, Tensor q, Tensor k, Tensor v,
                                Tensor beta, Tensor g, const GdnShape& shape) {
  shape.check("gdn_forward");
  const int64_t B = shape.B, T_ = shape.T, H = shape.H, key_dim = shape.key_dim,
                value_dim = shape.value_dim;
  auto f = gdn_ == GdnAlgo::chunk ? gdn_chunk_forward<T> : gdn_recurrent_forward<T>;
  f(out.as<T>(), states.as<T>(), q.as<T>(), k.as<T>(), v.as<T>(), beta.as<T>(), g.as<T>(), B, T_, H,
    key_dim, value_dim);
}

template <class T>
void CpuBackend<T>::gdn_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dbeta, Tensor dg,
                                 Tensor dout, Tensor states, Tensor q, Tensor k, Tensor v,
                                 Tensor beta, Tensor g, const GdnShape& shape, bool accumulate) {
  shape.check("gdn_backward");
  const int64_t B = shape.B, T_ = shape.T, H = shape.H, key_dim = shape.key_dim,
                value_dim = shape.value_dim;
  // A null gradient output is skipped (core/backend.h): both algorithms compute all five
  // together, so a skipped one is accumulated into a zeroed scratch array and dropped. Written
  // (accumulate false): zeroed first, then accumulated (0 + x: the same bits).
  std::vector<T> scratch[5];
  auto out = [&](Tensor t, int i, int64_t n) {
    if (t.data) {
      if (!accumulate) std::fill_n(t.as<T>(), n, T(0));
      return t.as<T>();
    }
    scratch[i].assign(static_cast<size_t>(n), T(0));
    return scratch[i].data();
  };
  const int64_t BTH = B * T_ * H;
  auto f = gdn_ == GdnAlgo::chunk ? gdn_chunk_backward<T> : gdn_recurrent_backward<T>;
  f(out(dq, 0, BTH * key_dim), out(dk, 1, BTH * key_dim), out(dv, 2, BTH * value_dim),
    out(dbeta, 3, BTH), out(dg, 4, BTH), dout.as<T>(), states.as<T>(), q.as<T>(), k.as<T>(),
    v.as<T>(), beta.as<T>(), g.as<T>(), B, T_, H, key_dim, value_dim);
}

SL_CPU_INSTANTIATE(gdn_forward);
SL_CPU_INSTANTIATE(gdn_backward);

}  // namespace sl
