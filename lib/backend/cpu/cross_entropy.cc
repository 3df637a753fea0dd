// Softmax cross-entropy over the vocabulary, one row per token:
//   loss_t = logsumexp(logits_t) - logits_t[target_t],  lse taken after subtracting the row max.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "backend/cpu/common.h"
#include "core/error.h"

namespace sl {

// logits [BT, V] -> losses [BT] (0 where target < 0); dlogits (if non-null) = dscale *
// (softmax - onehot(target)) on non-ignored rows and 0 on ignored ones (written, not added:
// dlogits may be logits itself - each row is read whole before it is overwritten). loss_sum +=
// the sum of losses, added in token order in double so it does not depend on the thread count.
// dscale is read only with dlogits, rounded to float (the interface's scalar precision).
template <class T>
void CpuBackend<T>::cross_entropy(Tensor loss_sum, Tensor losses_t, Tensor dlogits_t,
                                  Tensor logits_t, Tensor targets_t, const RowsShape& shape,
                                  Tensor dscale_t) {
  shape.check("cross_entropy");
  const int64_t BT = shape.R, V = shape.C;
  T *losses = losses_t.as<T>(), *dlogits = dlogits_t.as<T>();
  const T* logits = logits_t.as<T>();
  const int32_t* targets = targets_t.as<int32_t>();
  const T dscale = dlogits ? static_cast<T>(static_cast<float>(dscale_t.as<double>()[0])) : T(0);
  for (int64_t t = 0; t < BT; ++t) {
    if (targets[t] >= V)
      fail("cross_entropy: target " + std::to_string(targets[t]) + " out of range for vocab " +
           std::to_string(V));
  }
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < BT; ++t) {
    const int32_t tgt = targets[t];
    if (tgt < 0) {
      losses[t] = T(0);
      if (dlogits) std::fill_n(dlogits + t * V, V, T(0));
      continue;
    }
    const T* lr = logits + t * V;
    const T mx = *std::max_element(lr, lr + V);
    T sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(lr[i] - mx);
    const T lse = mx + std::log(sum);
    losses[t] = lse - lr[tgt];
    if (dlogits) {
      T* dr = dlogits + t * V;
      for (int64_t i = 0; i < V; ++i) dr[i] = dscale * std::exp(lr[i] - lse);
      dr[tgt] -= dscale;
    }
  }
  double total = 0;
  for (int64_t t = 0; t < BT; ++t) {
    if (targets[t] >= 0) total += double(losses[t]);
  }
  loss_sum.as<double>()[0] += total;
}

SL_CPU_INSTANTIATE(cross_entropy);

}  // namespace sl
