#include "fit/law.h"

#include <ceres/ceres.h>

#include <Eigen/Dense>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <exception>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/rng.h"

namespace sl::fit {

namespace {

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
void bound_in_theta(int terms, const std::string& name, const Bound& b, int* index, double* lo,
                    double* hi) {
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

// One Ceres problem for one data set, solved from many starts on one thread.
class LocalSolver {
 public:
  LocalSolver(const LawData& data, const FitOptions& o) : terms_(data.terms), opt_(o) {
    const int P = 1 + 2 * terms_;
    ceres::Problem::Options po;
    po.enable_fast_removal = false;
    problem_ = std::make_unique<ceres::Problem>(po);
    if (o.formulation == Formulation::kCompressed) {
      ceres::CostFunction* cost =
          terms_ == 2 ? static_cast<ceres::CostFunction*>(
                            new CompressedHuberCost<2>(data, o.huber_delta, o.kappa))
                      : new CompressedHuberCost<1>(data, o.huber_delta, o.kappa);
      problem_->AddResidualBlock(cost, nullptr, theta_);
    } else {
      for (size_t i = 0; i < data.size(); ++i) {
        ceres::CostFunction* cost;
        if (terms_ == 2) {
          auto* f = new LogLawResidual<2>{{data.log_x[0][i], data.log_x[1][i]}, data.log_loss[i]};
          cost = new ceres::AutoDiffCostFunction<LogLawResidual<2>, 1, 5>(f);
        } else {
          auto* f = new LogLawResidual<1>{{data.log_x[0][i]}, data.log_loss[i]};
          cost = new ceres::AutoDiffCostFunction<LogLawResidual<1>, 1, 3>(f);
        }
        // Ceres' cost is 1/2 rho(r^2); HuberLoss(delta) makes it exactly h(r), scaled by w_i.
        auto* loss = new ceres::ScaledLoss(new ceres::HuberLoss(o.huber_delta), data.weight[i],
                                           ceres::TAKE_OWNERSHIP);
        problem_->AddResidualBlock(cost, loss, theta_);
      }
    }
    lo_.assign(P, -std::numeric_limits<double>::infinity());
    hi_.assign(P, std::numeric_limits<double>::infinity());
    for (const auto& [name, b] : o.bounds) {
      int j;
      double lo, hi;
      bound_in_theta(terms_, name, b, &j, &lo, &hi);
      lo_[j] = lo;
      hi_[j] = hi;
      if (std::isfinite(lo)) problem_->SetParameterLowerBound(theta_, j, lo);
      if (std::isfinite(hi)) problem_->SetParameterUpperBound(theta_, j, hi);
    }
  }

  struct Outcome {
    std::vector<double> theta;
    double cost = std::numeric_limits<double>::infinity();
    ceres::TerminationType termination = ceres::FAILURE;
    std::string message;
    int iterations = 0;
  };

  Outcome Solve(const std::vector<double>& start, bool polish) {
    const int P = 1 + 2 * terms_;
    SL_ASSERT(static_cast<int>(start.size()) == P);
    for (int j = 0; j < P; ++j) theta_[j] = std::clamp(start[j], lo_[j], hi_[j]);
    ceres::Solver::Options so;
    so.minimizer_type = ceres::TRUST_REGION;
    so.trust_region_strategy_type = ceres::LEVENBERG_MARQUARDT;
    so.linear_solver_type = ceres::DENSE_QR;
    so.initial_trust_region_radius = 1.0;
    so.max_num_iterations = opt_.max_iterations;
    so.function_tolerance = polish ? opt_.polish_function_tolerance : opt_.function_tolerance;
    so.parameter_tolerance = polish ? opt_.polish_parameter_tolerance : opt_.parameter_tolerance;
    so.gradient_tolerance = opt_.gradient_tolerance;
    so.num_threads = 1;
    so.logging_type = ceres::SILENT;
    so.minimizer_progress_to_stdout = false;
    ceres::Solver::Summary summary;
    ceres::Solve(so, problem_.get(), &summary);
    Outcome out;
    out.theta.assign(theta_, theta_ + P);
    out.termination = summary.termination_type;
    out.message = summary.message;
    out.iterations = summary.num_successful_steps + summary.num_unsuccessful_steps;
    if (summary.termination_type != ceres::FAILURE && std::isfinite(summary.final_cost))
      out.cost = summary.final_cost;
    return out;
  }

  const std::vector<double>& lo() const { return lo_; }
  const std::vector<double>& hi() const { return hi_; }

 private:
  int terms_;
  FitOptions opt_;
  double theta_[kMaxParams] = {};
  std::unique_ptr<ceres::Problem> problem_;
  std::vector<double> lo_, hi_;
};

void finish(const LawData& data, const LocalSolver& solver, const LocalSolver::Outcome& polished,
            FitResult* res) {
  res->terms = data.terms;
  res->names = param_names(data.terms);
  res->theta = polished.theta;
  res->values = natural_params(data.terms, polished.theta);
  res->objective = polished.cost;
  res->n_points = static_cast<int>(data.size());
  res->converged = polished.termination == ceres::CONVERGENCE;
  res->termination = polished.message;
  res->iterations = polished.iterations;
  if (!res->converged) res->warnings.push_back("fit did not converge (" + polished.message + ")");
  for (size_t j = 0; j < res->theta.size(); ++j) {
    for (double b : {solver.lo()[j], solver.hi()[j]}) {
      if (!std::isfinite(b)) continue;
      if (std::abs(res->theta[j] - b) <= 1e-6 * std::max(1.0, std::abs(b))) {
        res->bound_hit.push_back(res->names[j]);
        bool is_log = j == 0 || j % 2 == 1;
        char buf[160];
        std::snprintf(buf, sizeof buf, "parameter %s sits on its %s bound %.6g",
                      res->names[j].c_str(), b == solver.lo()[j] ? "lower" : "upper",
                      is_log ? std::exp(b) : b);
        res->warnings.push_back(buf);
      }
    }
  }
}

int resolve_threads(int threads) {
  if (threads > 0) return threads;
  unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void parallel_for(int n, int threads, const std::function<void(int, int)>& fn) {
  threads = std::min(resolve_threads(threads), std::max(n, 1));
  std::atomic<int> next{0};
  std::exception_ptr error;
  std::mutex mu;
  auto work = [&](int tid) {
    try {
      for (int k = next++; k < n; k = next++) fn(k, tid);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!error) error = std::current_exception();
      next = n;
    }
  };
  if (threads <= 1) {
    work(0);
  } else {
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(work, t);
    for (auto& th : pool) th.join();
  }
  if (error) std::rethrow_exception(error);
}

std::vector<std::string> param_names(int terms) {
  if (terms == 2) return {"E", "A", "alpha", "B", "beta"};
  SL_ASSERT(terms == 1);
  return {"E", "B", "beta"};
}

std::vector<double> natural_params(int terms, const std::vector<double>& theta) {
  std::vector<double> v(theta.size());
  SL_ASSERT(static_cast<int>(theta.size()) == 1 + 2 * terms);
  v[0] = std::exp(theta[0]);
  for (int k = 0; k < terms; ++k) {
    v[1 + 2 * k] = std::exp(theta[1 + 2 * k]);
    v[2 + 2 * k] = theta[2 + 2 * k];
  }
  return v;
}

std::vector<double> internal_params(int terms, const std::vector<double>& natural) {
  std::vector<double> t(natural.size());
  SL_ASSERT(static_cast<int>(natural.size()) == 1 + 2 * terms);
  t[0] = std::log(natural[0]);
  for (int k = 0; k < terms; ++k) {
    t[1 + 2 * k] = std::log(natural[1 + 2 * k]);
    t[2 + 2 * k] = natural[2 + 2 * k];
  }
  return t;
}

double FitResult::value(const std::string& name) const {
  for (size_t j = 0; j < names.size(); ++j)
    if (names[j] == name) return values[j];
  fail("no parameter '" + name + "' in this fit");
}

std::vector<std::vector<double>> hoffmann_grid(int terms) {
  std::vector<std::vector<double>> g;
  const double exps[] = {0, 0.5, 1, 1.5, 2};
  const double es[] = {-1, -0.5, 0, 0.5, 1};
  const double as[] = {0, 5, 10, 15, 20, 25};
  if (terms == 2) {
    for (double alpha : exps)
      for (double beta : exps)
        for (double e : es)
          for (double a : as)
            for (double b : as) g.push_back({e, a, alpha, b, beta});
  } else {
    SL_ASSERT(terms == 1);
    for (double beta : exps)
      for (double e : es)
        for (double b : as) g.push_back({e, b, beta});
  }
  return g;
}

namespace {

int count_distinct(const std::vector<double>& v) {
  return static_cast<int>(std::set<double>(v.begin(), v.end()).size());
}

}  // namespace

LawData chinchilla_data(const Points& p) {
  if (p.size() < 5)
    fail("chinchilla fit: " + std::to_string(p.size()) +
         " points, fewer than its 5 parameters (E, A, alpha, B, beta)");
  if (count_distinct(p.n) < 2) fail("chinchilla fit: all points have the same N; need >= 2 sizes");
  if (count_distinct(p.d) < 2)
    fail("chinchilla fit: all points have the same D; need >= 2 budgets");
  LawData d;
  d.terms = 2;
  for (size_t i = 0; i < p.size(); ++i) {
    d.log_x[0].push_back(std::log(p.n[i]));
    d.log_x[1].push_back(std::log(p.d[i]));
    d.log_loss.push_back(std::log(p.loss[i]));
    d.weight.push_back(p.weight[i]);
  }
  return d;
}

LawData data_law_data(const std::vector<double>& dd, const std::vector<double>& loss,
                      const std::vector<double>& weight) {
  SL_ASSERT(dd.size() == loss.size() && dd.size() == weight.size());
  if (dd.size() < 3 || count_distinct(dd) < 3)
    fail("data law fit: " + std::to_string(count_distinct(dd)) +
         " distinct token budgets, fewer than its 3 parameters (E, B, beta)");
  LawData d;
  d.terms = 1;
  for (size_t i = 0; i < dd.size(); ++i) {
    if (!(dd[i] > 0) || !(loss[i] > 0) || !(weight[i] > 0) || !std::isfinite(dd[i]) ||
        !std::isfinite(loss[i]))
      fail("data law fit: point " + std::to_string(i) + " has a non-positive or non-finite value");
    d.log_x[0].push_back(std::log(dd[i]));
    d.log_loss.push_back(std::log(loss[i]));
    d.weight.push_back(weight[i]);
  }
  return d;
}

FitResult fit_law(const LawData& data, const FitOptions& options) {
  auto t0 = std::chrono::steady_clock::now();
  const int P = 1 + 2 * data.terms;
  if (static_cast<int>(data.size()) < P)
    fail("fit: " + std::to_string(data.size()) + " points, fewer than the " + std::to_string(P) +
         " parameters");
  std::vector<std::vector<double>> starts =
      options.starts.empty() ? hoffmann_grid(data.terms) : options.starts;
  for (const auto& s : starts)
    if (static_cast<int>(s.size()) != P) fail("fit: a start point has the wrong size");
  const int n = static_cast<int>(starts.size());
  std::vector<double> cost(n, std::numeric_limits<double>::infinity());
  std::vector<std::vector<double>> theta(n);
  std::vector<int> iterations(n, 0);
  std::vector<char> hit_limit(n, 0);
  const int threads = std::min(resolve_threads(options.num_threads), std::max(n, 1));
  std::vector<std::unique_ptr<LocalSolver>> solvers(threads);
  parallel_for(n, threads, [&](int k, int tid) {
    if (!solvers[tid]) solvers[tid] = std::make_unique<LocalSolver>(data, options);
    LocalSolver::Outcome o = solvers[tid]->Solve(starts[k], /*polish=*/false);
    cost[k] = o.cost;
    theta[k] = std::move(o.theta);
    iterations[k] = o.iterations;
    hit_limit[k] = o.termination == ceres::NO_CONVERGENCE;
  });
  int best = -1;
  int failed = 0;
  for (int k = 0; k < n; ++k) {
    if (!std::isfinite(cost[k])) {
      ++failed;
      continue;
    }
    if (best < 0 || cost[k] < cost[best]) best = k;
  }
  if (best < 0) fail("fit: no start point gave a finite objective");
  LocalSolver& solver =
      solvers[0] ? *solvers[0] : *(solvers[0] = std::make_unique<LocalSolver>(data, options));
  LocalSolver::Outcome polished = solver.Solve(theta[best], /*polish=*/true);
  if (!std::isfinite(polished.cost) || polished.cost > cost[best]) {
    // Keep the grid optimum if the polish failed (it cannot do worse than its start).
    polished.theta = theta[best];
    polished.cost = cost[best];
  }
  FitResult res;
  res.starts = n;
  res.starts_failed = failed;
  res.best_start = best;
  for (int k = 0; k < n; ++k) {
    if (cost[k] <= cost[best] * (1 + options.best_rtol) + 1e-300) ++res.starts_at_best;
    res.starts_at_limit += hit_limit[k];
    res.grid_iterations += iterations[k];
  }
  finish(data, solver, polished, &res);
  res.seconds = seconds_since(t0);
  return res;
}

FitResult fit_law_from(const LawData& data, const FitOptions& options,
                       const std::vector<double>& start) {
  auto t0 = std::chrono::steady_clock::now();
  LocalSolver solver(data, options);
  LocalSolver::Outcome o = solver.Solve(start, /*polish=*/true);
  if (!std::isfinite(o.cost)) fail("fit: the objective is not finite at the start point");
  FitResult res;
  res.starts = 1;
  res.starts_at_best = 1;
  res.best_start = 0;
  finish(data, solver, o, &res);
  res.seconds = seconds_since(t0);
  return res;
}

namespace {

// Replicate data: the points drawn with replacement, each distinct point once with its weight
// times its multiplicity (the same objective as the duplicated list, with less work).
LawData resample(const LawData& data, Rng& rng, std::vector<int>& counts) {
  const size_t n = data.size();
  counts.assign(n, 0);
  for (size_t i = 0; i < n; ++i) ++counts[rng.below(n)];
  LawData r;
  r.terms = data.terms;
  for (size_t i = 0; i < n; ++i) {
    if (counts[i] == 0) continue;
    for (int k = 0; k < data.terms; ++k) r.log_x[k].push_back(data.log_x[k][i]);
    r.log_loss.push_back(data.log_loss[i]);
    r.weight.push_back(data.weight[i] * counts[i]);
  }
  return r;
}

}  // namespace

BootstrapResult bootstrap_law(const LawData& data, const FitResult& full, const FitOptions& options,
                              int replicates, uint64_t seed, uint64_t stream) {
  auto t0 = std::chrono::steady_clock::now();
  if (replicates < 0) fail("bootstrap: the number of replicates must be >= 0");
  BootstrapResult b;
  b.n = replicates;
  b.seed = seed;
  b.stream = stream;
  b.names = full.names;
  const int P = static_cast<int>(full.theta.size());
  b.samples.assign(replicates, std::vector<double>(P, std::nan("")));
  std::vector<char> failed(replicates, 0), not_conv(replicates, 0);
  parallel_for(replicates, options.num_threads, [&](int k, int) {
    Rng rng(seed, stream_id(stream, static_cast<uint64_t>(k)));
    std::vector<int> counts;
    LawData rep = resample(data, rng, counts);
    LocalSolver solver(rep, options);
    LocalSolver::Outcome o = solver.Solve(full.theta, /*polish=*/true);
    if (!std::isfinite(o.cost)) {
      failed[k] = 1;
      return;
    }
    not_conv[k] = o.termination != ceres::CONVERGENCE;
    b.samples[k] = natural_params(data.terms, o.theta);
  });
  for (int k = 0; k < replicates; ++k) {
    b.n_failed += failed[k];
    b.n_not_converged += not_conv[k];
  }
  b.se.assign(P, std::nan(""));
  b.ci_lo.assign(P, std::nan(""));
  b.ci_hi.assign(P, std::nan(""));
  for (int j = 0; j < P; ++j) {
    std::vector<double> v;
    for (int k = 0; k < replicates; ++k)
      if (std::isfinite(b.samples[k][j])) v.push_back(b.samples[k][j]);
    if (v.size() >= 2) {
      double mean = 0;
      for (double x : v) mean += x;
      mean /= v.size();
      double ss = 0;
      for (double x : v) ss += (x - mean) * (x - mean);
      b.se[j] = std::sqrt(ss / (v.size() - 1));
    }
    b.ci_lo[j] = percentile(v, 0.025);
    b.ci_hi[j] = percentile(v, 0.975);
  }
  b.seconds = seconds_since(t0);
  return b;
}

double percentile(std::vector<double> v, double q) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }), v.end());
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  double pos = q * (v.size() - 1);
  size_t i = static_cast<size_t>(std::floor(pos));
  if (i + 1 >= v.size()) return v.back();
  double frac = pos - i;
  if (frac == 0) return v[i];
  if (std::isinf(v[i]) || std::isinf(v[i + 1])) return frac < 0.5 ? v[i] : v[i + 1];
  return v[i] + frac * (v[i + 1] - v[i]);
}

}  // namespace sl::fit
