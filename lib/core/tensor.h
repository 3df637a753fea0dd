// Tensor: a typed, untyped-pointer view of backend memory (host or device), llm.c style.
// Shapes are not stored: every op takes its dimensions explicitly, with the layout in a comment.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"

namespace sl {

// i32: token ids, targets and index arrays (never an op's arithmetic type).
enum class DType : uint8_t { f32, f64, bf16, i32 };

inline size_t dtype_size(DType t) {
  return t == DType::f64 ? 8 : t == DType::f32 || t == DType::i32 ? 4 : 2;
}
inline const char* dtype_name(DType t) {
  return t == DType::f64 ? "f64" : t == DType::f32 ? "f32" : t == DType::i32 ? "i32" : "bf16";
}

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::f32;
  int64_t n = 0;  // number of elements in the view

  Tensor() = default;
  Tensor(void* d, DType t, int64_t count) : data(d), dtype(t), n(count) {}

  explicit operator bool() const { return data != nullptr; }

  // Sub-view of `count` elements starting `offset` elements in (count < 0: to the end).
  Tensor at(int64_t offset, int64_t count = -1) const {
    SL_ASSERT(offset >= 0 && offset <= n);
    int64_t c = count < 0 ? n - offset : count;
    SL_ASSERT(offset + c <= n);
    return Tensor(static_cast<char*>(data) + offset * dtype_size(dtype), dtype, c);
  }
  // Typed pointer; the dtype must match T (checked).
  template <class T>
  T* as() const;
};

template <>
inline float* Tensor::as<float>() const {
  SL_ASSERT(dtype == DType::f32 || data == nullptr);
  return static_cast<float*>(data);
}
template <>
inline double* Tensor::as<double>() const {
  SL_ASSERT(dtype == DType::f64 || data == nullptr);
  return static_cast<double*>(data);
}
template <>
inline int32_t* Tensor::as<int32_t>() const {
  SL_ASSERT(dtype == DType::i32 || data == nullptr);
  return static_cast<int32_t*>(data);
}

}  // namespace sl
