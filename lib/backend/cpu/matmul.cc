// Linear layer y = x w^T (HF Linear: weight [out, in]) on single-threaded Eigen GEMMs over fixed
// row blocks, spread over OpenMP threads. Eigen's own GEMM parallelism is disabled project-wide
// (EIGEN_DONT_PARALLELIZE): its threads spin-wait on each other, which on a shared or loaded
// machine made two threads 4-5x slower than one. Fixed-size blocks also make every output element
// independent of the thread count (same reduction order), so results are bitwise reproducible.
#include <Eigen/Dense>
#include <algorithm>
#include <cstdint>

#include "backend/cpu/common.h"

namespace sl {
namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using StridedMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ConstStridedMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;

// Rows per task: large enough that packing the shared operand once per block is amortised.
constexpr int64_t kRowBlock = 64;

}  // namespace

// y [M, N] ld ldy (=|+=) x [M, K] ld ldx . w [N, K]^T, blocks of rows of y.
template <class T>
void CpuBackend<T>::matmul_forward(Tensor y_t, Tensor x_t, Tensor w_t, const MatmulShape& shape,
                                   bool accumulate) {
  shape.check("matmul_forward");
  const int64_t M = shape.M, K = shape.K, N = shape.N, ldx = shape.ldx, ldy = shape.y_stride();
  T* y = y_t.as<T>();
  const T *x = x_t.as<T>(), *w = w_t.as<T>();
  Eigen::Map<const RowMat<T>> W(w, N, K);
  const int64_t nb = (M + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t r0 = b * kRowBlock, rows = std::min(kRowBlock, M - r0);
    ConstStridedMap<T> X(x + r0 * ldx, rows, K, Eigen::OuterStride<>(ldx));
    StridedMap<T> Y(y + r0 * ldy, rows, N, Eigen::OuterStride<>(ldy));
    if (accumulate) {
      Y.noalias() += X * W.transpose();
    } else {
      Y.noalias() = X * W.transpose();
    }
  }
}

// dx [M, K] ld ldx (=|+=) dy [M, N] ld ldy . w [N, K]   (blocks of rows of dx)
// dw [N, K] += dy^T . x                          (blocks of rows of dw, each reducing over all M)
template <class T>
void CpuBackend<T>::matmul_backward(Tensor dx_t, Tensor dw_t, Tensor dy_t, Tensor x_t, Tensor w_t,
                                    const MatmulShape& shape, bool accumulate) {
  shape.check("matmul_backward");
  const int64_t M = shape.M, K = shape.K, N = shape.N, ldx = shape.ldx, ldy = shape.y_stride();
  T* dx = cpu::written<T>(dx_t, accumulate, M, K, ldx);
  T* dw = dw_t.as<T>();
  const T *dy = dy_t.as<T>(), *x = x_t.as<T>(), *w = w_t.as<T>();
  if (dx) {
    Eigen::Map<const RowMat<T>> W(w, N, K);
    const int64_t nb = (M + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t r0 = b * kRowBlock, rows = std::min(kRowBlock, M - r0);
      ConstStridedMap<T> DY(dy + r0 * ldy, rows, N, Eigen::OuterStride<>(ldy));
      StridedMap<T> DX(dx + r0 * ldx, rows, K, Eigen::OuterStride<>(ldx));
      DX.noalias() += DY * W;
    }
  }
  if (dw) {
    ConstStridedMap<T> X(x, M, K, Eigen::OuterStride<>(ldx));
    const int64_t nb = (N + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t n0 = b * kRowBlock, rows = std::min(kRowBlock, N - n0);
      ConstStridedMap<T> DY(dy + n0, M, rows, Eigen::OuterStride<>(ldy));  // columns n0.. of dy
      Eigen::Map<RowMat<T>> DW(dw + n0 * K, rows, K);
      DW.noalias() += DY.transpose() * X;
    }
  }
}

SL_CPU_INSTANTIATE(matmul_forward);
SL_CPU_INSTANTIATE(matmul_backward);

}  // namespace sl
