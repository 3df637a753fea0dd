// Scalar activation functions shared by the CPU ops, written to neither overflow nor lose
// precision at large |z| (exp is only ever taken of a non-positive argument).
#pragma once
#include <algorithm>
#include <cmath>

namespace sl::cpu {

template <class T>
inline T sigmoid(T z) {
  if (z >= 0) return T(1) / (T(1) + std::exp(-z));
  const T e = std::exp(z);
  return e / (T(1) + e);
}

// silu(z) = z sigmoid(z)
template <class T>
inline T silu(T z) {
  return z * sigmoid(z);
}

// silu'(z) = s (1 + z (1 - s)), s = sigmoid(z)
template <class T>
inline T silu_grad(T z) {
  const T s = sigmoid(z);
  return s * (T(1) + z * (T(1) - s));
}

// softplus(z) = log(1 + e^z) = max(z, 0) + log1p(e^-|z|), exact everywhere (no threshold
// cut-off, so its derivative is exactly sigmoid(z)).
template <class T>
inline T softplus(T z) {
  return std::max(z, T(0)) + std::log1p(std::exp(-std::abs(z)));
}

}  // namespace sl::cpu
