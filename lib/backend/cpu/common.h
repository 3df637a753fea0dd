// Shared pieces of the CPU ops. Each op of the list (core/backend_ops.inc) is defined once, as its
// CpuBackend<T> member, in this folder's file for the op (forward and backward side by side), and
// instantiated there for float and double with SL_CPU_INSTANTIATE.
//
// In an op's definition a Tensor parameter is named <x>_t and the typed pointer its body computes
// with is <x>, the list's name (a null tensor gives a null pointer: a skipped gradient output).
// Scalars stay float, the interface's type, and meet T only inside T arithmetic (float -> double
// is exact). Loops are multi-threaded with OpenMP over rows/tokens/heads; reductions use a fixed
// order, so results are bitwise reproducible for a given thread count.
#pragma once
#include <algorithm>
#include <cstdint>

#include "backend/cpu/cpu_backend.h"

namespace sl::cpu {

// The write (=) mode of an op with `accumulate`: the reference loops accumulate, so the output's
// [rows, cols] (row stride ld; padding untouched) is zeroed first. Null: nothing.
template <class T>
T* written(Tensor t, bool accumulate, int64_t rows, int64_t cols, int64_t ld) {
  T* p = t.as<T>();
  if (p && !accumulate) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) std::fill_n(p + r * ld, cols, T(0));
  }
  return p;
}

// The function type of every op, from the list: op_type::rmsnorm_forward is
// void(Tensor y, Tensor rstd, ...), so SL_CPU_INSTANTIATE need not restate a signature.
namespace op_type {
#define SL_OP(name, params, args) using name = void params;
#include "core/backend_ops.inc"
#undef SL_OP
}  // namespace op_type

}  // namespace sl::cpu

// Instantiates CpuBackend<float>::op and CpuBackend<double>::op in the file that defines op (the
// class's explicit instantiation in cpu_backend.cc covers only the members defined there). Use it
// inside namespace sl, after the definition.
#define SL_CPU_INSTANTIATE(op)                     \
  template cpu::op_type::op CpuBackend<float>::op; \
  template cpu::op_type::op CpuBackend<double>::op
