// The Ceres cost functions of the fits (law.h) for any fit form (form.h): the per-point Huber
// residual, the compressed Huber sum, the smooth box reparameterisation, and bounds in theta.
// Internal to lib/fit (law.cc, joint.cc).
#pragma once
#include <ceres/ceres.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "fit/form.h"
#include "fit/law.h"

namespace sl::fit::detail {

constexpr int kMaxParams = kMaxFormParams;
// P x P matrices and P vectors on the stack (at most kMaxParams).
using SmallMatrix =
    Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, 0, kMaxParams, kMaxParams>;
using SmallVector = Eigen::Matrix<double, Eigen::Dynamic, 1, 0, kMaxParams, 1>;

// The log residual of one point, r(theta) = log L(x; theta) - log L, and its Jacobian row from
// the form (Formulation::kPerPoint; Ceres applies the Huber loss).
class PointResidual final : public ceres::CostFunction {
 public:
  PointResidual(const LawData& data, size_t i) {
    point_.form = data.form;
    for (const auto& col : data.x) point_.x.push_back({col[i]});
    point_.log_loss = {data.log_loss[i]};
    point_.weight = {1.0};
    set_num_residuals(1);
    mutable_parameter_block_sizes()->push_back(data.form->num_params());
  }
  bool Evaluate(double const* const* parameters, double* residuals,
                double** jacobians) const override {
    if (!point_.form->evaluate(parameters[0], point_, log_pred_, jac_, scratch_)) return false;
    residuals[0] = log_pred_[0] - point_.log_loss[0];
    if (jacobians != nullptr && jacobians[0] != nullptr)
      for (int j = 0; j < jac_.cols(); ++j) jacobians[0][j] = jac_(0, j);
    return std::isfinite(residuals[0]);
  }

 private:
  LawData point_;
  mutable Eigen::ArrayXd log_pred_;
  mutable Eigen::MatrixXd jac_;
  mutable FormScratch scratch_;
};

// The compressed formulation (see Formulation::kCompressed in law.h). With J_i = d r_i / d theta
// the form's Jacobian row of point i (for a power-law sum, built from the softmax weights of its
// terms: J_i = (p_i0, p_i1, -p_i1 log x_1i, ...)), residual 0 is F = sqrt(2 f) with Jacobian row
// grad f / F, grad f = sum_i w_i h'(r_i) J_i; residuals 1..P are identically 0 with Jacobian R,
// R^T R = M = sum_i w_i c_i J_i^T J_i. Ceres' model of its cost 1/2 |res + Jac s|^2 is then
//   f + grad f . s + 1/2 s^T (M + grad f grad f^T / (2 f)) s.
// The form computes r and J together; evaluations at the same theta share them (Ceres evaluates
// the cost at a trial point and, if it accepts the step, the Jacobian at the same point).
class CompressedHuberCost final : public ceres::CostFunction {
 public:
  CompressedHuberCost(const LawData& data, double delta, double kappa)
      : data_(data),
        form_(*data.form),
        P_(form_.num_params()),
        n_(static_cast<int>(data.size())),
        delta_(delta),
        kappa_(kappa) {
    SL_ASSERT(P_ <= kMaxParams);
    set_num_residuals(1 + P_);
    mutable_parameter_block_sizes()->push_back(P_);
    log_loss_ = Eigen::Map<const Eigen::ArrayXd>(data_.log_loss.data(), n_);
    weight_ = Eigen::Map<const Eigen::ArrayXd>(data_.weight.data(), n_);
    for (auto* a : {&r_, &hp_, &c_, &tmp_}) a->resize(n_);
  }

  bool Evaluate(double const* const* parameters, double* residuals,
                double** jacobians) const override {
    const double* theta = parameters[0];
    if (!(has_cache_ && std::equal(theta, theta + P_, cached_theta_))) {
      has_cache_ = false;
      if (!Compute(theta)) return false;
      std::copy(theta, theta + P_, cached_theta_);
      has_cache_ = true;
    }
    const double F = std::sqrt(2.0 * f_);
    residuals[0] = F;
    for (int j = 1; j <= P_; ++j) residuals[j] = 0.0;
    if (jacobians == nullptr || jacobians[0] == nullptr) return true;

    // h'(r_i) and c_i = h''(r_i) + h'(r_i)^2 / (2 h(r_i) + kappa) (h'' = 1 inside, 0 outside).
    const double d = delta_;
    tmp_ = r_.abs();
    hp_ = (tmp_ <= d).select(r_, d * r_.sign());
    c_ = weight_ * (tmp_ <= d).select(1.0 + r_.square() / (r_.square() + kappa_),
                                      (d * d) / (2.0 * d * tmp_ - d * d + kappa_));
    SmallVector grad = jac_.transpose() * (weight_ * hp_).matrix();
    // M = sum_i w_i c_i J_i^T J_i, entry by entry (P (P + 1) / 2 dot products of length n).
    SmallMatrix M(P_, P_);
    for (int a = 0; a < P_; ++a) {
      tmp_ = c_ * jac_.col(a).array();
      for (int b = a; b < P_; ++b) M(a, b) = M(b, a) = (tmp_ * jac_.col(b).array()).sum();
    }

    Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> J(
        jacobians[0], 1 + P_, P_);
    if (F > 0)
      J.row(0) = (grad / F).transpose();
    else
      J.row(0).setZero();
    // R with R^T R = M (+ a relative 1e-12 ridge so that the Cholesky factor exists).
    M.diagonal().array() += 1e-12 * std::max(M.trace(), 1e-300);
    Eigen::LLT<SmallMatrix> llt(M);
    if (llt.info() == Eigen::Success) {
      J.bottomRows(P_) = llt.matrixU();
    } else {
      // (Heap-sized: GCC 12 warns of uninitialised storage in the fixed-capacity solver.)
      const Eigen::MatrixXd Md = M;
      Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> es(Md);
      J.bottomRows(P_) =
          es.eigenvalues().cwiseMax(0.0).cwiseSqrt().asDiagonal() * es.eigenvectors().transpose();
    }
    return true;
  }

 private:
  // Residuals r_i, the Jacobian and the Huber sum f at theta.
  bool Compute(const double* theta) const {
    if (!form_.evaluate(theta, data_, log_pred_, jac_, scratch_)) return false;
    r_ = log_pred_ - log_loss_;
    if (!r_.allFinite()) return false;
    const double d = delta_;
    tmp_ = r_.abs();
    // f = sum_i w_i h(r_i).
    f_ = (weight_ * (tmp_ <= d).select(0.5 * r_.square(), d * (tmp_ - 0.5 * d))).sum();
    return std::isfinite(f_);
  }

  const LawData data_;
  const Form& form_;
  int P_, n_;
  double delta_, kappa_;
  Eigen::ArrayXd log_loss_, weight_;
  // Cache of the last evaluation point.
  mutable Eigen::ArrayXd log_pred_, r_, hp_, c_, tmp_;
  mutable Eigen::MatrixXd jac_;
  mutable FormScratch scratch_;
  mutable double f_ = 0;
  mutable double cached_theta_[kMaxParams] = {};
  mutable bool has_cache_ = false;
};

// theta index of the bound parameter `name` of `form`, and the bound in theta (through the log
// for a log-mapped parameter, e.g. E, A).
inline void bound_in_theta(const Form& form, const std::string& name, const Bound& b, int* index,
                           double* lo, double* hi) {
  *index = form.index(name);
  if (*index < 0)
    fail("bound on unknown parameter '" + name + "' (parameters: " + form.name_list() + ")");
  const bool is_log = form.is_log(*index);
  if (!(b.lo < b.hi)) fail("bound on " + name + ": lower bound must be < upper bound");
  if (is_log) {
    if (b.hi <= 0) fail("bound on " + name + ": upper bound must be > 0");
    *lo = b.lo > 0 ? std::log(b.lo) : -std::numeric_limits<double>::infinity();
    *hi = std::isfinite(b.hi) ? std::log(b.hi) : std::numeric_limits<double>::infinity();
  } else {
    *lo = b.lo;
    *hi = b.hi;
  }
}

// Smooth maps from an unconstrained u to a theta inside its box (MINUIT's transformations, James &
// Roos 1975), so that a bounded fit runs Levenberg-Marquardt without Ceres' projected steps (which
// stall on an active bound and still report convergence):
//   [lo, hi]:  theta = lo + (hi - lo) (1 + sin u) / 2,    dtheta/du = (hi - lo) cos(u) / 2
//   [lo, inf): theta = lo - 1 + sqrt(u^2 + 1),            dtheta/du =  u / sqrt(u^2 + 1)
//   (-inf, hi]: theta = hi + 1 - sqrt(u^2 + 1),           dtheta/du = -u / sqrt(u^2 + 1)
//   free:      theta = u.
// A bound is reached at a finite u where dtheta/du = 0, so u is stationary there whichever way f
// slopes: the map alone cannot tell an active bound from a start stuck on it. That is what the
// active-set polish in theta (LocalSolver::PolishOnBox) decides, with the KKT conditions.
struct BoxMap {
  std::vector<double> lo, hi;  // bounds in theta (-inf / +inf: none)
  bool any() const {
    for (size_t j = 0; j < lo.size(); ++j)
      if (std::isfinite(lo[j]) || std::isfinite(hi[j])) return true;
    return false;
  }
  double theta(int j, double u) const {
    const bool l = std::isfinite(lo[j]), h = std::isfinite(hi[j]);
    if (l && h) return lo[j] + (hi[j] - lo[j]) * 0.5 * (1 + std::sin(u));
    if (l) return lo[j] - 1 + std::sqrt(u * u + 1);
    if (h) return hi[j] + 1 - std::sqrt(u * u + 1);
    return u;
  }
  double dtheta(int j, double u) const {
    const bool l = std::isfinite(lo[j]), h = std::isfinite(hi[j]);
    if (l && h) return (hi[j] - lo[j]) * 0.5 * std::cos(u);
    if (l) return u / std::sqrt(u * u + 1);
    if (h) return -u / std::sqrt(u * u + 1);
    return 1.0;
  }
  // The inverse, for a start: theta is first moved 1e-3 (of the box, or absolute for a one-sided
  // bound) inside, off the stationary point at the bound.
  double u(int j, double theta) const {
    const bool l = std::isfinite(lo[j]), h = std::isfinite(hi[j]);
    if (l && h) {
      const double w = hi[j] - lo[j];
      if (w == 0) return 0;  // a fixed parameter: theta = lo whatever u
      const double t = std::clamp(theta, lo[j] + 1e-3 * w, hi[j] - 1e-3 * w);
      return std::asin(2 * (t - lo[j]) / w - 1);
    }
    if (l) {
      const double q = std::max(theta - lo[j], 1e-3) + 1;
      return std::sqrt(q * q - 1);
    }
    if (h) {
      const double q = std::max(hi[j] - theta, 1e-3) + 1;
      return std::sqrt(q * q - 1);
    }
    return theta;
  }
};

// A cost function of theta seen as a function of u (BoxMap): residuals unchanged, Jacobian columns
// scaled by dtheta_j/du_j (chain rule). For the compressed cost the curvature rows R become R D,
// D = diag(dtheta/du), i.e. the Gauss-Newton model D M D of the Huber sum in u.
class ReparamCost final : public ceres::CostFunction {
 public:
  ReparamCost(ceres::CostFunction* inner, const BoxMap* map) : inner_(inner), map_(map) {
    set_num_residuals(inner->num_residuals());
    *mutable_parameter_block_sizes() = inner->parameter_block_sizes();
  }
  bool Evaluate(double const* const* parameters, double* residuals,
                double** jacobians) const override {
    const int P = parameter_block_sizes()[0];
    double theta[kMaxParams], d[kMaxParams];
    for (int j = 0; j < P; ++j) {
      theta[j] = map_->theta(j, parameters[0][j]);
      d[j] = map_->dtheta(j, parameters[0][j]);
    }
    const double* tp = theta;
    if (!inner_->Evaluate(&tp, residuals, jacobians)) return false;
    if (jacobians != nullptr && jacobians[0] != nullptr)
      for (int r = 0; r < num_residuals(); ++r)
        for (int j = 0; j < P; ++j) jacobians[0][r * P + j] *= d[j];
    return true;
  }

 private:
  std::unique_ptr<ceres::CostFunction> inner_;
  const BoxMap* map_;
};

}  // namespace sl::fit::detail
