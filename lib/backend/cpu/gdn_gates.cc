// Gated DeltaNet gates, per token t and head h:
//   beta = beta_scale * sigmoid(b)                    (beta_scale = 2: negative eigenvalues)
//   g    = -exp(A_log[h]) * softplus(a + dt_bias[h])  (log of the per-step state decay, <= 0)
#include <cmath>
#include <cstdint>
#include <vector>

#include "backend/cpu/common.h"
#include "backend/cpu/scalar_math.h"

namespace sl {

using cpu::sigmoid;
using cpu::softplus;

// b, a [BT, H] token stride ld -> beta, g [BT, H] contiguous.
template <class T>
void CpuBackend<T>::gdn_gates_forward(Tensor beta_t, Tensor g_t, Tensor b_t, Tensor a_t,
                                      Tensor A_log_t, Tensor dt_bias_t, const GatesShape& shape) {
  shape.check("gdn_gates_forward");
  const int64_t BT = shape.BT, H = shape.H, ld = shape.ld;
  const float beta_scale = shape.beta_scale;
  T *beta = beta_t.as<T>(), *g = g_t.as<T>();
  const T *b = b_t.as<T>(), *a = a_t.as<T>(), *A_log = A_log_t.as<T>(),
          *dt_bias = dt_bias_t.as<T>();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < BT; ++t) {
    for (int64_t h = 0; h < H; ++h) {
      beta[t * H + h] = beta_scale * sigmoid(b[t * ld + h]);
      g[t * H + h] = -std::exp(A_log[h]) * softplus(a[t * ld + h] + dt_bias[h]);
    }
  }
}

// With z = a + dt_bias and softplus' = sigmoid:
//   db += dbeta * beta_scale * s (1 - s),  s = sigmoid(b)
//   da += dg * (-exp(A_log) sigmoid(z)),   ddt_bias[h] += sum_t of the same
//   dA_log[h] += sum_t dg * g              (dg/dA_log = g)
// db, da have the token stride ld of b, a. A null dbeta or dg counts as zero. The [H] reductions
// run serially over tokens (cheap next to everything else) so their order is fixed.
template <class T>
void CpuBackend<T>::gdn_gates_backward(Tensor db_t, Tensor da_t, Tensor dA_log_t, Tensor ddt_bias_t,
                                       Tensor dbeta_t, Tensor dg_t, Tensor b_t, Tensor a_t,
                                       Tensor A_log_t, Tensor dt_bias_t, const GatesShape& shape,
                                       bool accumulate) {
  shape.check("gdn_gates_backward");
  const int64_t BT = shape.BT, H = shape.H, ld = shape.ld;
  const float beta_scale = shape.beta_scale;
  T *db = db_t.as<T>(), *da = da_t.as<T>(), *dA_log = dA_log_t.as<T>(),
    *ddt_bias = ddt_bias_t.as<T>();
  const T *dbeta = dbeta_t.as<T>(), *dg = dg_t.as<T>(), *b = b_t.as<T>(), *a = a_t.as<T>(),
          *A_log = A_log_t.as<T>(), *dt_bias = dt_bias_t.as<T>();
  if (db && dbeta) {
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < BT; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        const T s = sigmoid(b[t * ld + h]);
        T& o = db[t * ld + h];
        o = (accumulate ? o : T(0)) + dbeta[t * H + h] * beta_scale * s * (T(1) - s);
      }
    }
  }
  if (!dg) return;
  if (da) {
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < BT; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        const T z = a[t * ld + h] + dt_bias[h];
        T& o = da[t * ld + h];
        o = (accumulate ? o : T(0)) - dg[t * H + h] * std::exp(A_log[h]) * sigmoid(z);
      }
    }
  }
  if (dA_log || ddt_bias) {
    std::vector<T> acc_A(static_cast<size_t>(H), T(0)), acc_dt(static_cast<size_t>(H), T(0));
    for (int64_t t = 0; t < BT; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        const T z = a[t * ld + h] + dt_bias[h];
        const T e = std::exp(A_log[h]);
        acc_A[h] += dg[t * H + h] * (-e * softplus(z));
        acc_dt[h] += -dg[t * H + h] * e * sigmoid(z);
      }
    }
    for (int64_t h = 0; h < H; ++h) {
      if (dA_log) dA_log[h] += acc_A[h];
      if (ddt_bias) ddt_bias[h] += acc_dt[h];
    }
  }
}

SL_CPU_INSTANTIATE(gdn_gates_forward);
SL_CPU_INSTANTIATE(gdn_gates_backward);

}  // namespace sl
