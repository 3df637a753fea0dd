// The Ceres cost functions of the power-law fits (law.h): the log residual of one point (autodiff),
// the compressed Huber sum, the smooth box reparameterisation, and bounds in theta. Internal to
// lib/fit (law.cc, joint.cc).
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
#include "fit/law.h"

namespace sl::fit::detail {

constexpr int kMaxTerms = 2;
constexpr int kMaxParams = 1 + 2 * kMaxTerms;

// The log residual of one point, templated for autodiff (Formulation::kPerPoint):
//   r(theta) = LSE(e, a_1 - alpha_1 log x_1, ..., a_T - alpha_T log x_T) - log L,
// computed as m + log(sum_j exp(u_j - m)) with m = max_j u_j, so that no exp overflows.
template <int kTerms>
struct LogLawResidual {
  double log_x[kTerms];
  double log_loss;

  template <typename S>
  bool operator()(const S* theta, S* residual) const {
    S u[kTerms + 1];
    u[0] = theta[0];
    for (int k = 0; k < kTerms; ++k) u[k + 1] = theta[1 + 2 * k] - theta[2 + 2 * k] * log_x[k];
    S m = u[0];
    for (int k = 1; k <= kTerms; ++k)
      if (u[k] > m) m = u[k];
    S sum = S(0.0);
    for (int k = 0; k <= kTerms; ++k) sum += exp(u[k] - m);
    residual[0] = m + log(sum) - log_loss;
    return true;
  }
};

// The compressed formulation (see Formulation::kCompressed in law.h). With the softmax weights of
// the LSE terms
//   p_ij = exp(u_ij) / sum_l exp(u_il),   u_i0 = e,  u_ik = a_k - alpha_k log x_ki,
// the Jacobian of r_i is
//   J_i = d r_i / d theta = (p_i0, p_i1, -p_i1 log x_1i, p_i2, -p_i2 log x_2i).
// Residual 0 is F = sqrt(2 f) with Jacobian row grad f / F, grad f = sum_i w_i h'(r_i) J_i;
// residuals 1..P are identically 0 with Jacobian R, R^T R = M = sum_i w_i c_i J_i^T J_i. Ceres'
// model of its cost 1/2 |res + Jac s|^2 is then
//   f + grad f . s + 1/2 s^T (M + grad f grad f^T / (2 f)) s.
// Evaluations at the same theta share the transcendental work (Ceres evaluates the cost at a
// trial point and, if it accepts the step, the Jacobian at the same point).
template <int kTerms>
class CompressedHuberCost final : public ceres::CostFunction {
 public:
  static constexpr int kP = 1 + 2 * kTerms;

  CompressedHuberCost(const LawData& data, double delta, double kappa)
      : n_(static_cast<int>(data.size())), delta_(delta), kappa_(kappa) {
    set_num_residuals(1 + kP);
    mutable_parameter_block_sizes()->push_back(kP);
    for (int k = 0; k < kTerms; ++k)
      log_x_[k] = Eigen::Map<const Eigen::ArrayXd>(data.log_x[k].data(), n_);
    log_loss_ = Eigen::Map<const Eigen::ArrayXd>(data.log_loss.data(), n_);
    weight_ = Eigen::Map<const Eigen::ArrayXd>(data.weight.data(), n_);
    for (auto* a : {&x0_, &s_, &r_, &hp_, &c_, &tmp_}) a->resize(n_);
    for (int k = 0; k < kTerms; ++k) x_[k].resize(n_);
    jac_.resize(n_, kP);
  }

  bool Evaluate(double const* const* parameters, double* residuals,
                double** jacobians) const override {
    const double* theta = parameters[0];
    if (!(has_cache_ && std::equal(theta, theta + kP, cached_theta_))) {
      if (!Compute(theta)) return false;
      std::copy(theta, theta + kP, cached_theta_);
      has_cache_ = true;
    }
    const double F = std::sqrt(2.0 * f_);
    residuals[0] = F;
    for (int j = 1; j <= kP; ++j) residuals[j] = 0.0;
    if (jacobians == nullptr || jacobians[0] == nullptr) return true;

    // h'(r_i) and c_i = h''(r_i) + h'(r_i)^2 / (2 h(r_i) + kappa) (h'' = 1 inside, 0 outside).
    const double d = delta_;
    tmp_ = r_.abs();
    hp_ = (tmp_ <= d).select(r_, d * r_.sign());
    c_ = weight_ * (tmp_ <= d).select(1.0 + r_.square() / (r_.square() + kappa_),
                                      (d * d) / (2.0 * d * tmp_ - d * d + kappa_));
    // J_i rows, p_ij = x_ij / s_i.
    tmp_ = s_.inverse();
    jac_.col(0) = (x0_ * tmp_).matrix();
    for (int k = 0; k < kTerms; ++k) {
      jac_.col(1 + 2 * k) = (x_[k] * tmp_).matrix();
      jac_.col(2 + 2 * k) = -(jac_.col(1 + 2 * k).array() * log_x_[k]).matrix();
    }
    Eigen::Matrix<double, kP, 1> grad = jac_.transpose() * (weight_ * hp_).matrix();
    // M = sum_i w_i c_i J_i^T J_i, entry by entry (P (P + 1) / 2 dot products of length n).
    Eigen::Matrix<double, kP, kP> M;
    for (int a = 0; a < kP; ++a) {
      tmp_ = c_ * jac_.col(a).array();
      for (int b = a; b < kP; ++b) M(a, b) = M(b, a) = (tmp_ * jac_.col(b).array()).sum();
    }

    Eigen::Map<Eigen::Matrix<double, 1 + kP, kP, Eigen::RowMajor>> J(jacobians[0]);
    if (F > 0)
      J.row(0) = (grad / F).transpose();
    else
      J.row(0).setZero();
    // R with R^T R = M (+ a relative 1e-12 ridge so that the Cholesky factor exists).
    M.diagonal().array() += 1e-12 * std::max(M.trace(), 1e-300);
    Eigen::LLT<Eigen::Matrix<double, kP, kP>> llt(M);
    if (llt.info() == Eigen::Success) {
      J.bottomRows(kP) = llt.matrixU();
    } else {
      Eigen::SelfAdjointEigenSolver<Eigen::Matrix<double, kP, kP>> es(M);
      J.bottomRows(kP) =
          es.eigenvalues().cwiseMax(0.0).cwiseSqrt().asDiagonal() * es.eigenvectors().transpose();
    }
    return true;
  }

 private:
  // Residuals r_i and the Huber sum f at theta.
  bool Compute(const double* theta) const {
    // Direct evaluation: exp(e) + sum_k exp(a_k - alpha_k log x_k); falls back to the shifted
    // LSE per point only if something overflows.
    x0_.setConstant(std::exp(theta[0]));
    s_ = x0_;
    for (int k = 0; k < kTerms; ++k) {
      x_[k] = (theta[1 + 2 * k] - theta[2 + 2 * k] * log_x_[k]).exp();
      s_ += x_[k];
    }
    r_ = s_.log() - log_loss_;
    if (!r_.allFinite() || !(s_ > 0).all()) {
      for (int i = 0; i < n_; ++i) {
        double u[kTerms + 1];
        u[0] = theta[0];
        for (int k = 0; k < kTerms; ++k)
          u[k + 1] = theta[1 + 2 * k] - theta[2 + 2 * k] * log_x_[k][i];
        double m = *std::max_element(u, u + kTerms + 1);
        x0_[i] = std::exp(u[0] - m);
        s_[i] = x0_[i];
        for (int k = 0; k < kTerms; ++k) {
          x_[k][i] = std::exp(u[k + 1] - m);
          s_[i] += x_[k][i];
        }
        r_[i] = m + std::log(s_[i]) - log_loss_[i];
      }
      if (!r_.allFinite()) return false;
    }
    const double d = delta_;
    tmp_ = r_.abs();
    // f = sum_i w_i h(r_i).
    f_ = (weight_ * (tmp_ <= d).select(0.5 * r_.square(), d * (tmp_ - 0.5 * d))).sum();
    return std::isfinite(f_);
  }

  int n_;
  double delta_, kappa_;
  Eigen::ArrayXd log_x_[kTerms], log_loss_, weight_;
  // Cache of the last evaluation point.
  mutable Eigen::ArrayXd x0_, x_[kTerms], s_, r_, hp_, c_, tmp_;
  mutable Eigen::Matrix<double, Eigen::Dynamic, kP> jac_;
  mutable double f_ = 0;
  mutable double cached_theta_[kP] = {};
  mutable bool has_cache_ = false;
};

// theta index of each natural parameter's bound, in log space for E, A_k.
inline void bound_in_theta(int terms, const std::string& name, const Bound& b, int* index,
                           double* lo, double* hi) {
  std::vector<std::string> names = param_names(terms);
  auto it = std::find(names.begin(), names.end(), name);
  if (it == names.end()) {
    std::string all;
    for (auto& n : names) all += (all.empty() ? "" : ", ") + n;
    fail("bound on unknown parameter '" + name + "' (parameters: " + all + ")");
  }
  *index = static_cast<int>(it - names.begin());
  bool is_log = *index == 0 || *index % 2 == 1;
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
