// Exact causal softmax attention per (batch, head), on Eigen GEMMs over blocks of query rows.
// For one (b, h), with Q, K [T, hd], V [T, hd] and scale = 1/sqrt(hd):
//   S = scale Q K^T (masked to s <= t),  lse_t = logsumexp_s S_ts,  P = exp(S - lse),  O = P V.
// Backward recomputes P from the saved lse (flash-attention style), never storing [T, T]:
//   dP = dO V^T,  D_t = sum_c dO_tc O_tc,  dS = P (dP - D),
//   dQ += scale dS K,  dK += scale dS^T Q,  dV += P^T dO.
// Query rows go in blocks of kRows so a block's scores are [kRows, t_end], not [T, T]. Eigen
// runs single-threaded inside the omp loops (it detects the enclosing parallel region).
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "backend/cpu/common.h"

namespace sl {
namespace {

constexpr int64_t kRows = 64;

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using CMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using MMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;

// Scores of query rows [r0, r1) against keys [0, r1): S = scale Qb K^T, with the causal mask
// applied as -inf above the diagonal (key s > query t).
template <class T>
void block_scores(RowMat<T>& S, const CMap<T>& Qb, const CMap<T>& K, int64_t r0, int64_t r1,
                  T scale) {
  S.noalias() = scale * (Qb * K.topRows(r1).transpose());
  for (int64_t i = 0; i < r1 - r0; ++i) {
    for (int64_t s = r0 + i + 1; s < r1; ++s) S(i, s) = -std::numeric_limits<T>::infinity();
  }
}

}  // namespace

// q, k, out [B, T, H, hd]; v token stride ldv; lse [B, H, T].
template <class T>
void CpuBackend<T>::attention_forward(Tensor out_t, Tensor lse_t, Tensor q_t, Tensor k_t,
                                      Tensor v_t, const AttnShape& shape) {
  shape.check("attention_forward");
  const int64_t B = shape.B, T_ = shape.T, H = shape.H, hd = shape.hd, ldv = shape.ldv;
  T *out = out_t.as<T>(), *lse = lse_t.as<T>();
  const T *q = q_t.as<T>(), *k = k_t.as<T>(), *v = v_t.as<T>();
  const int64_t ld = H * hd;  // token stride of q, k, out
  const T scale = T(1) / std::sqrt(T(hd));
  const int64_t nblk = (T_ + kRows - 1) / kRows;
  // Every (b, h, query block) writes disjoint rows of out and lse.
#pragma omp parallel for schedule(static)
  for (int64_t job = 0; job < B * H * nblk; ++job) {
    const int64_t bh = job / nblk, blk = job % nblk;
    const int64_t b = bh / H, h = bh % H;
    const int64_t r0 = blk * kRows, r1 = std::min(T_, r0 + kRows), nr = r1 - r0;
    const int64_t base = b * T_;  // first token of this sequence
    CMap<T> K(k + base * ld + h * hd, T_, hd, Eigen::OuterStride<>(ld));
    CMap<T> V(v + base * ldv + h * hd, T_, hd, Eigen::OuterStride<>(ldv));
    CMap<T> Qb(q + (base + r0) * ld + h * hd, nr, hd, Eigen::OuterStride<>(ld));
    MMap<T> Ob(out + (base + r0) * ld + h * hd, nr, hd, Eigen::OuterStride<>(ld));
    RowMat<T> S(nr, r1);
    block_scores<T>(S, Qb, K, r0, r1, scale);
    T* lse_bh = lse + bh * T_;
    for (int64_t i = 0; i < nr; ++i) {
      const int64_t n = r0 + i + 1;  // keys 0..t
      const T mx = S.row(i).head(n).maxCoeff();
      T sum = 0;
      for (int64_t s = 0; s < n; ++s) {
        S(i, s) = std::exp(S(i, s) - mx);
        sum += S(i, s);
      }
      S.row(i).head(n) /= sum;
      S.row(i).tail(r1 - n).setZero();
      lse_bh[r0 + i] = mx + std::log(sum);
    }
    Ob.noalias() = S * V.topRows(r1);
  }
}

// dq, dk [B, T, H, hd] (=|+=); dv (token stride ldv) (=|+=). dK and dV of a (b, h) collect from
// every query block, so the blocks of one (b, h) run in order inside one thread.
template <class T>
void CpuBackend<T>::attention_backward(Tensor dq_t, Tensor dk_t, Tensor dv_t, Tensor dout_t,
                                       Tensor q_t, Tensor k_t, Tensor v_t, Tensor out_t,
                                       Tensor lse_t, const AttnShape& shape, bool accumulate) {
  shape.check("attention_backward");
  const int64_t B = shape.B, T_ = shape.T, H = shape.H, hd = shape.hd, ldv = shape.ldv;
  const int64_t ld = H * hd;
  T* dq = cpu::written<T>(dq_t, accumulate, B * T_, ld, ld);
  T* dk = cpu::written<T>(dk_t, accumulate, B * T_, ld, ld);
  T* dv = cpu::written<T>(dv_t, accumulate, B * T_, ld, ldv);
  const T *dout = dout_t.as<T>(), *q = q_t.as<T>(), *k = k_t.as<T>(), *v = v_t.as<T>();
  const T *out = out_t.as<T>(), *lse = lse_t.as<T>();
  const T scale = T(1) / std::sqrt(T(hd));
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int64_t b = bh / H, h = bh % H;
    const int64_t base = b * T_;
    CMap<T> K(k + base * ld + h * hd, T_, hd, Eigen::OuterStride<>(ld));
    CMap<T> V(v + base * ldv + h * hd, T_, hd, Eigen::OuterStride<>(ldv));
    const T* lse_bh = lse + bh * T_;
    RowMat<T> S, dS;
    Eigen::Matrix<T, Eigen::Dynamic, 1> D;
    for (int64_t r0 = 0; r0 < T_; r0 += kRows) {
      const int64_t r1 = std::min(T_, r0 + kRows), nr = r1 - r0;
      const int64_t off = (base + r0) * ld + h * hd;
      CMap<T> Qb(q + off, nr, hd, Eigen::OuterStride<>(ld));
      CMap<T> Ob(out + off, nr, hd, Eigen::OuterStride<>(ld));
      CMap<T> dOb(dout + off, nr, hd, Eigen::OuterStride<>(ld));
      S.resize(nr, r1);
      block_scores<T>(S, Qb, K, r0, r1, scale);
      for (int64_t i = 0; i < nr; ++i) {
        const T l = lse_bh[r0 + i];
        for (int64_t s = 0; s < r1; ++s) S(i, s) = std::exp(S(i, s) - l);  // exp(-inf) = 0
      }
      if (dv) {
        MMap<T> dV(dv + base * ldv + h * hd, r1, hd, Eigen::OuterStride<>(ldv));
        dV.noalias() += S.transpose() * dOb;
      }
      if (!dq && !dk) continue;
      D = (dOb.array() * Ob.array()).rowwise().sum().matrix();
      dS.noalias() = dOb * V.topRows(r1).transpose();
      dS = (S.array() * (dS.colwise() - D).array()).matrix();
      if (dq) {
        MMap<T> dQb(dq + off, nr, hd, Eigen::OuterStride<>(ld));
        dQb.noalias() += scale * (dS * K.topRows(r1));
      }
      if (dk) {
        MMap<T> dK(dk + base * ld + h * hd, r1, hd, Eigen::OuterStride<>(ld));
        dK.noalias() += scale * (dS.transpose() * Qb);
      }
    }
  }
}

SL_CPU_INSTANTIATE(attention_forward);
SL_CPU_INSTANTIATE(attention_backward);

}  // namespace sl
