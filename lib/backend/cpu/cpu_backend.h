// CpuBackend<T>: the Eigen/OpenMP reference backend. T = float for training, double for gradient
// checks. Activations, parameters and optimizer state are all of type T. Each op of the list is
// defined once, as a member, in its file of backend/cpu (common.h: the conventions there).
#pragma once
#include "core/backend.h"

namespace sl {

template <class Real>  // not T: the op list names a sequence length T
class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(GdnAlgo gdn = GdnAlgo::chunk) : gdn_(gdn) {}
  static constexpr DType kType = sizeof(Real) == 8 ? DType::f64 : DType::f32;

  std::string name() const override { return kType == DType::f64 ? "cpu64" : "cpu"; }
  DType act_dtype() const override { return kType; }
  DType param_dtype() const override { return kType; }

  Tensor alloc(int64_t n, DType t) override;
  void free(Tensor t) override;
#define SL_OP(name, params, args) void name params override;
#include "core/backend_ops.inc"
#undef SL_OP

 private:
  GdnAlgo gdn_;
};

extern template class CpuBackend<float>;
extern template class CpuBackend<double>;

}  // namespace sl
