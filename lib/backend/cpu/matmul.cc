// Linear layer y = x w^T (HF Linear: weight [out, in]) on Eigen's GEMM, which is itself
// OpenMP-parallel (so no outer omp loop here) and deterministic for a given thread count.
#include <Eigen/Dense>
#include <cstdint>

#include "backend/cpu/ops.h"

namespace sl::cpu {
namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using StridedMap = Eigen::Map<RowMat<T>, 0, Eigen::OuterStride<>>;
template <class T>
using ConstStridedMap = Eigen::Map<const RowMat<T>, 0, Eigen::OuterStride<>>;

}  // namespace

// y [M, N] (=|+=) x [M, K] ld ldx . w [N, K]^T
template <class T>
void matmul_forward(T* y, const T* x, int64_t ldx, const T* w, int64_t M, int64_t K, int64_t N,
                    bool accumulate) {
  ConstStridedMap<T> X(x, M, K, Eigen::OuterStride<>(ldx));
  Eigen::Map<const RowMat<T>> W(w, N, K);
  Eigen::Map<RowMat<T>> Y(y, M, N);
  if (accumulate) {
    Y.noalias() += X * W.transpose();
  } else {
    Y.noalias() = X * W.transpose();
  }
}

// dx [M, K] ld ldx += dy [M, N] . w [N, K];   dw [N, K] += dy^T . x
template <class T>
void matmul_backward(T* dx, T* dw, const T* dy, const T* x, int64_t ldx, const T* w, int64_t M,
                     int64_t K, int64_t N) {
  Eigen::Map<const RowMat<T>> DY(dy, M, N);
  if (dx) {
    StridedMap<T> DX(dx, M, K, Eigen::OuterStride<>(ldx));
    Eigen::Map<const RowMat<T>> W(w, N, K);
    DX.noalias() += DY * W;
  }
  if (dw) {
    ConstStridedMap<T> X(x, M, K, Eigen::OuterStride<>(ldx));
    Eigen::Map<RowMat<T>> DW(dw, N, K);
    DW.noalias() += DY.transpose() * X;
  }
}

template void matmul_forward<float>(float*, const float*, int64_t, const float*, int64_t, int64_t,
                                    int64_t, bool);
template void matmul_forward<double>(double*, const double*, int64_t, const double*, int64_t,
                                     int64_t, int64_t, bool);
template void matmul_backward<float>(float*, float*, const float*, const float*, int64_t,
                                     const float*, int64_t, int64_t, int64_t);
template void matmul_backward<double>(double*, double*, const double*, const double*, int64_t,
                                      const double*, int64_t, int64_t, int64_t);

}  // namespace sl::cpu
