#include "fit/joint.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>

#include "core/error.h"
#include "fit/cost.h"

namespace sl::fit {

using namespace detail;

namespace {

constexpr int kP = 5;  // theta of one Chinchilla law: (e, a, alpha, b, beta)

// One architecture's cost seen from the joint vector x: theta_j = x[idx_j] mapped through the box
// map (or the constant fixed_j where idx_j < 0); Jacobian columns scattered to x by the chain rule
// dtheta_j / du_{idx_j}.
class JointCost final : public ceres::CostFunction {
 public:
  JointCost(ceres::CostFunction* inner, std::vector<int> idx, std::vector<double> fixed, int q,
            const BoxMap* map)
      : inner_(inner), idx_(std::move(idx)), fixed_(std::move(fixed)), map_(map) {
    set_num_residuals(inner->num_residuals());
    mutable_parameter_block_sizes()->push_back(q);
    jac_.resize(static_cast<size_t>(inner->num_residuals()) * kP);
  }
  bool Evaluate(double const* const* parameters, double* residuals,
                double** jacobians) const override {
    const double* x = parameters[0];
    double theta[kP], d[kP];
    for (int j = 0; j < kP; ++j) {
      theta[j] = idx_[j] < 0 ? fixed_[j] : map_->theta(idx_[j], x[idx_[j]]);
      d[j] = idx_[j] < 0 ? 0.0 : map_->dtheta(idx_[j], x[idx_[j]]);
    }
    const double* tp = theta;
    double* jt = jac_.data();
    const bool want = jacobians != nullptr && jacobians[0] != nullptr;
    if (!inner_->Evaluate(&tp, residuals, want ? &jt : nullptr)) return false;
    if (want) {
      const int q = parameter_block_sizes()[0];
      std::fill(jacobians[0], jacobians[0] + num_residuals() * q, 0.0);
      for (int r = 0; r < num_residuals(); ++r)
        for (int j = 0; j < kP; ++j)
          if (idx_[j] >= 0) jacobians[0][r * q + idx_[j]] += jac_[r * kP + j] * d[j];
    }
    return true;
  }

 private:
  std::unique_ptr<ceres::CostFunction> inner_;
  std::vector<int> idx_;
  std::vector<double> fixed_;
  const BoxMap* map_;
  mutable std::vector<double> jac_;
};

// mean log N (x[0] of the Chinchilla form).
double mean_log_x(const LawData& d) {
  double s = 0;
  for (double v : d.x[0]) s += v;
  return s / d.size();
}

// f of one data set at theta (the compressed cost's residual 0 is sqrt(2 f)).
double objective(const LawData& data, const std::vector<double>& theta, double delta) {
  CompressedHuberCost cost(data, delta, 1e-4);
  double res[1 + kP];
  const double* tp = theta.data();
  if (!cost.Evaluate(&tp, res, nullptr)) return std::numeric_limits<double>::infinity();
  return 0.5 * res[0] * res[0];
}

FitResult arch_result(const LawData& data, const std::vector<double>& theta, double delta) {
  FitResult r;
  r.form = data.form;
  r.names = data.form->names();
  r.theta = theta;
  r.values = data.form->natural(theta);
  r.objective = objective(data, theta, delta);
  r.n_points = static_cast<int>(data.size());
  r.flags = identifiability_flags(data, theta, &r.condition_number, &r.dof);
  return r;
}

}  // namespace

JointResult fit_joint(const LawData& db, const LawData& dc, const FitResult& sep_b,
                      const FitResult& sep_c, const JointOptions& options) {
  // The joint models share Chinchilla's parameters by index: (e, a, alpha, b, beta).
  if (db.form != &form("chinchilla") || dc.form != &form("chinchilla"))
    fail("joint fit: both data sets must be Chinchilla data");
  JointOptions o = options;
  // FitOptions::fixed: alpha is the joint model's own fixed-alpha choice; nothing else is.
  for (const auto& [name, v] : o.fit.fixed) {
    if (name != "alpha") fail("joint fit: only alpha can be fixed, not " + name);
    if (std::isnan(o.fixed_alpha)) o.fixed_alpha = v;
  }
  const bool fixed_alpha = !std::isnan(o.fixed_alpha);
  if (fixed_alpha && !(o.fixed_alpha > 0)) fail("joint fit: a fixed alpha must be > 0");
  const LawData* data[2] = {&db, &dc};
  const FitResult* sep[2] = {&sep_b, &sep_c};

  // The joint vector x: names (theta index of each entry) and each architecture's index map.
  std::vector<int> of_theta;  // theta index j of x entry
  std::vector<int> idx[2] = {std::vector<int>(kP, -1), std::vector<int>(kP, -1)};
  std::vector<double> fixed(kP, 0.0);
  auto add = [&](int j, std::initializer_list<int> archs) {
    for (int a : archs) idx[a][j] = static_cast<int>(of_theta.size());
    of_theta.push_back(j);
  };
  if (o.share_e)
    add(0, {0, 1});
  else
    add(0, {0}), add(0, {1});
  if (fixed_alpha)
    fixed[2] = o.fixed_alpha;
  else if (o.share_alpha)
    add(2, {0, 1});
  else
    add(2, {0}), add(2, {1});
  for (int a = 0; a < 2; ++a)
    for (int j : {1, 3, 4}) add(j, {a});
  const int q = static_cast<int>(of_theta.size());

  // Box map on x: the user's bounds (theta units) and E's floor 1e-12 min L.
  double min_loss = std::numeric_limits<double>::infinity();
  for (const LawData* d : data)
    for (double l : d->log_loss) min_loss = std::min(min_loss, std::exp(l));
  std::vector<double> lo(kP, -std::numeric_limits<double>::infinity()),
      hi(kP, std::numeric_limits<double>::infinity());
  for (const auto& [name, given] : o.fit.bounds) {
    // A min-loss bound is the lowest loss of both data sets (one box for the joint vector).
    Bound b = given;
    if (b.hi_is_min_loss) b.hi = min_loss;
    int j;
    double l, h;
    bound_in_theta(*db.form, name, b, &j, &l, &h);
    lo[j] = l;
    hi[j] = h;
  }
  lo[0] = std::max(lo[0], std::min(std::log(1e-12 * min_loss), hi[0] - 1.0));
  if (fixed_alpha && (o.fixed_alpha < lo[2] || o.fixed_alpha > hi[2]))
    fail("joint fit: the fixed alpha is outside its bound");
  BoxMap map;
  for (int i = 0; i < q; ++i) {
    map.lo.push_back(lo[of_theta[i]]);
    map.hi.push_back(hi[of_theta[i]]);
  }

  std::vector<double> x(q);
  ceres::Problem problem;
  for (int a = 0; a < 2; ++a) {
    auto* inner = new CompressedHuberCost(*data[a], o.fit.huber_delta, o.fit.kappa);
    problem.AddResidualBlock(new JointCost(inner, idx[a], fixed, q, &map), nullptr, x.data());
  }

  // Starts: the separate fits' parameters, with E and alpha varied. A changed alpha keeps
  // A / N^alpha at the mean log N: a' = a + (alpha' - alpha) mean(log N).
  std::vector<double> e_starts = {sep_b.theta[0], sep_c.theta[0]};
  for (double c : {0.05, 0.2, 0.4, 0.6, 0.8, 0.95}) e_starts.push_back(std::log(c * min_loss));
  // alpha starts: NaN = each architecture its own (unshared only), else both at the value.
  std::vector<double> alpha_starts = {sep_b.theta[2], sep_c.theta[2],
                                      0.5 * (sep_b.theta[2] + sep_c.theta[2])};
  if (!o.share_alpha) alpha_starts.insert(alpha_starts.begin(), std::nan(""));
  if (fixed_alpha) alpha_starts = {o.fixed_alpha};
  std::vector<std::vector<double>> theta_starts;  // in x
  if (o.given_starts_only) e_starts.clear();
  for (double e0 : e_starts)
    for (double al0 : alpha_starts) {
      std::vector<double> theta_x(q);
      for (int a = 0; a < 2; ++a) {
        std::vector<double> t = sep[a]->theta;
        const double alpha_new = std::isnan(al0) ? t[2] : al0;
        t[1] += (alpha_new - t[2]) * mean_log_x(*data[a]);
        t[2] = alpha_new;
        t[0] = e0;
        for (int j = 0; j < kP; ++j)
          if (idx[a][j] >= 0) theta_x[idx[a][j]] = t[j];
      }
      theta_starts.push_back(theta_x);
    }
  for (const auto& [tb, tc] : o.starts) {
    SL_ASSERT(tb.size() == kP && tc.size() == kP);
    std::vector<double> theta_x(q);
    // Shared entries take the candidate's value, then the baseline's (the same in a joint
    // optimum).
    for (int j = 0; j < kP; ++j)
      if (idx[1][j] >= 0) theta_x[idx[1][j]] = tc[j];
    for (int j = 0; j < kP; ++j)
      if (idx[0][j] >= 0) theta_x[idx[0][j]] = tb[j];
    theta_starts.push_back(theta_x);
  }
  double best = std::numeric_limits<double>::infinity();
  std::vector<double> best_x;
  ceres::Solver::Summary best_summary;
  int starts = 0;
  for (const std::vector<double>& theta_x : theta_starts) {
    for (int i = 0; i < q; ++i) x[i] = map.u(i, theta_x[i]);
    ceres::Solver::Options so;
    so.linear_solver_type = ceres::DENSE_QR;
    so.max_num_iterations = o.fit.max_iterations;
    so.function_tolerance = o.fit.polish_function_tolerance;
    so.parameter_tolerance = o.fit.polish_parameter_tolerance;
    so.gradient_tolerance = o.fit.gradient_tolerance;
    so.logging_type = ceres::SILENT;
    ceres::Solver::Summary summary;
    ceres::Solve(so, &problem, &summary);
    ++starts;
    if (summary.termination_type != ceres::FAILURE && summary.final_cost < best) {
      best = summary.final_cost;
      best_x = x;
      best_summary = summary;
    }
  }
  if (best_x.empty()) fail("joint fit: no start gave a finite objective");

  JointResult r;
  r.model = fixed_alpha ? (o.share_e ? "shared E, alpha = " : "alpha = ") : "";
  if (fixed_alpha) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", o.fixed_alpha);
    r.model += buf;
  } else {
    r.model = o.share_e ? (o.share_alpha ? "shared E and alpha" : "shared E")
                        : (o.share_alpha ? "shared alpha" : "separate");
  }
  for (int a = 0; a < 2; ++a) {
    std::vector<double> t(kP);
    for (int j = 0; j < kP; ++j)
      t[j] = idx[a][j] < 0 ? fixed[j] : map.theta(idx[a][j], best_x[idx[a][j]]);
    (a == 0 ? r.baseline : r.candidate) = arch_result(*data[a], t, o.fit.huber_delta);
  }
  r.objective = best;
  r.n_params = q;
  r.dof = static_cast<int>(db.size() + dc.size()) - q;
  r.starts = starts;
  r.converged = best_summary.termination_type == ceres::CONVERGENCE;
  r.termination = best_summary.message;
  return r;
}

}  // namespace sl::fit
