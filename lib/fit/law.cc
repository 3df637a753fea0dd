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
#include "fit/cost.h"

namespace sl::fit {

using namespace detail;

namespace {

// theta index of a fixed parameter, checked (a positive value for a log-mapped one: E, A, B).
int fixed_index(const Form& form, const std::string& name, double v) {
  const int j = form.index(name);
  if (j < 0)
    fail("fixed value for unknown parameter '" + name + "' (parameters: " + form.name_list() + ")");
  const bool is_log = form.is_log(j);
  if (!std::isfinite(v) || (is_log && !(v > 0)))
    fail("fixed value of " + name + " must be finite" + (is_log ? " and > 0" : ""));
  return j;
}

// One Ceres problem for one data set, solved from many starts on one thread. Without bounds it
// is one problem in theta. With bounds there are two: the grid (and the first stage of every
// polish) runs in u (BoxMap, unconstrained), and the polish finishes in theta with an active set
// (PolishOnBox), which lands exactly on active bounds and checks the KKT conditions.
class LocalSolver {
 public:
  LocalSolver(const LawData& data, const FitOptions& o)
      : form_(*data.form), P_(form_.num_params()), ei_(form_.e_index()), opt_(o) {
    SL_ASSERT(P_ <= kMaxParams);
    const int P = P_;
    map_.lo.assign(P, -std::numeric_limits<double>::infinity());
    map_.hi.assign(P, std::numeric_limits<double>::infinity());
    min_loss_ = std::exp(*std::min_element(data.log_loss.begin(), data.log_loss.end()));
    for (const auto& [name, given] : o.bounds) {
      Bound b = given;
      if (b.hi_is_min_loss) b.hi = min_loss_;
      int j;
      double lo, hi;
      bound_in_theta(form_, name, b, &j, &lo, &hi);
      map_.lo[j] = lo;
      map_.hi[j] = hi;
    }
    // A fixed parameter is a box of zero width: the u map makes it a constant (dtheta/du = 0),
    // the active-set polish holds it and leaves it out of the KKT check.
    for (const auto& [name, v] : o.fixed) {
      if (o.bounds.count(name)) fail("parameter " + name + " is both fixed and bounded");
      const int j = fixed_index(form_, name, v);
      map_.lo[j] = map_.hi[j] = form_.is_log(j) ? std::log(v) : v;
      held_.push_back(j);
    }
    // The box of the theta problem: the user's bounds, and a floor under e = log E at
    // E = 1e-12 min L. E >= 0 is the closure of E = exp(e) > 0; below the floor E changes every
    // prediction by less than 1e-12 relative, so an optimum with E -> 0 ("collapsed") is held
    // there instead of crawling towards e = -inf until the iteration limit.
    e_floor_ = std::log(1e-12 * min_loss_);
    box_lo_ = map_.lo;
    box_hi_ = map_.hi;
    box_lo_[ei_] = std::max(box_lo_[ei_], std::min(e_floor_, box_hi_[ei_] - 1.0));
    problem_ = MakeProblem(data, /*reparam=*/false, theta_);
    for (int j = 0; j < P; ++j) {
      if (box_lo_[j] == box_hi_[j]) continue;  // fixed: held by the polish's manifold
      if (std::isfinite(box_lo_[j])) problem_->SetParameterLowerBound(theta_, j, box_lo_[j]);
      if (std::isfinite(box_hi_[j])) problem_->SetParameterUpperBound(theta_, j, box_hi_[j]);
    }
    if (map_.any()) problem_u_ = MakeProblem(data, /*reparam=*/true, u_);
  }

  struct Outcome {
    std::vector<double> theta;
    double cost = std::numeric_limits<double>::infinity();
    ceres::TerminationType termination = ceres::FAILURE;
    std::string message;
    int iterations = 0;
  };

  Outcome Solve(const std::vector<double>& start, bool polish) {
    const int P = P_;
    SL_ASSERT(static_cast<int>(start.size()) == P);
    Outcome out;
    if (!problem_u_) {
      for (int j = 0; j < P; ++j) theta_[j] = std::clamp(start[j], box_lo_[j], box_hi_[j]);
      out = Run(problem_.get(), theta_, polish);
    } else {
      for (int j = 0; j < P; ++j) u_[j] = map_.u(j, start[j]);
      out = Run(problem_u_.get(), u_, polish);
      for (int j = 0; j < P; ++j) out.theta[j] = map_.theta(j, u_[j]);
    }
    if (!polish || !std::isfinite(out.cost)) return out;
    // Unbounded fits need the box polish only when E collapses (E < 1e-6 min L).
    if (!problem_u_ && out.theta[ei_] > e_floor_ + std::log(1e6)) return out;
    Outcome box = PolishOnBox(out.theta);
    box.iterations += out.iterations;
    return std::isfinite(box.cost) ? box : out;
  }

  const std::vector<double>& lo() const { return map_.lo; }
  const std::vector<double>& hi() const { return map_.hi; }
  const std::vector<int>& held() const { return held_; }

 private:
  std::unique_ptr<ceres::Problem> MakeProblem(const LawData& data, bool reparam, double* x) {
    ceres::Problem::Options po;
    po.enable_fast_removal = false;
    auto problem = std::make_unique<ceres::Problem>(po);
    auto wrap = [&](ceres::CostFunction* c) -> ceres::CostFunction* {
      return reparam ? new ReparamCost(c, &map_) : c;
    };
    if (opt_.formulation == Formulation::kCompressed) {
      problem->AddResidualBlock(wrap(new CompressedHuberCost(data, opt_.huber_delta, opt_.kappa)),
                                nullptr, x);
    } else {
      for (size_t i = 0; i < data.size(); ++i) {
        ceres::CostFunction* cost = new PointResidual(data, i);
        // Ceres' cost is 1/2 rho(r^2); HuberLoss(delta) makes it exactly h(r), scaled by w_i.
        auto* loss = new ceres::ScaledLoss(new ceres::HuberLoss(opt_.huber_delta), data.weight[i],
                                           ceres::TAKE_OWNERSHIP);
        problem->AddResidualBlock(wrap(cost), loss, x);
      }
    }
    return problem;
  }

  Outcome Run(ceres::Problem* problem, double* x, bool polish) {
    const int P = P_;
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
    ceres::Solve(so, problem, &summary);
    Outcome out;
    out.theta.assign(x, x + P);
    out.termination = summary.termination_type;
    out.message = summary.message;
    out.iterations = summary.num_successful_steps + summary.num_unsuccessful_steps;
    if (summary.termination_type != ceres::FAILURE && std::isfinite(summary.final_cost))
      out.cost = summary.final_cost;
    return out;
  }

  // f and grad f at theta_ (theta space; clears the manifold).
  bool Gradient(double* f, std::vector<double>* g) {
    problem_->SetManifold(theta_, nullptr);
    return problem_->Evaluate(ceres::Problem::EvaluateOptions(), f, nullptr, g, nullptr) &&
           std::isfinite(*f);
  }

  // Active-set polish of a bounded fit in theta. The active set starts as the parameters within
  // 1e-4 of a bound; active ones are held exactly on their bound (SubsetManifold) while the free
  // ones are solved (Ceres' box bounds as a guard). A free parameter that ends on a bound joins
  // the set; then the KKT conditions of min f s.t. lo <= theta <= hi are checked on the active
  // ones, with g = grad f:
  //   theta_j = lo_j: g_j >= 0,   theta_j = hi_j: g_j <= 0
  // (f must not decrease inward). The most violating one (g_j pointing inward by more than
  // 1e-9 f, relative to the parameter's scale max(1, |theta_j|)) is released and the free
  // problem solved again. Each pass strictly lowers f or grows the set, so it ends; 4P passes cap
  // it. The outcome converged iff the last free solve did and KKT holds. E's floor is special:
  // E below 1e-6 min L is held there; released at most once (KKT), it stays held if it falls back.
  Outcome PolishOnBox(const std::vector<double>& start) {
    const int P = P_;
    const int ei = ei_;
    const auto& lo = box_lo_;
    const auto& hi = box_hi_;
    std::vector<int> side(P, 0);  // -1: held on lo, +1: held on hi, 0: free
    auto near = [](double t, double b, double tol) {
      return std::isfinite(b) && std::abs(t - b) <= tol * std::max(1.0, std::abs(b));
    };
    for (int j = 0; j < P; ++j) {
      theta_[j] = std::clamp(start[j], lo[j], hi[j]);
      if (near(theta_[j], lo[j], 1e-4))
        side[j] = -1;
      else if (near(theta_[j], hi[j], 1e-4))
        side[j] = 1;
    }
    // E below 1e-6 min L is on its way to the floor (its gradient, a factor E / L_i smaller than
    // the others, makes the last decades a crawl): start it held there and let KKT release it.
    if (theta_[ei] < e_floor_ + std::log(1e6) && lo[ei] == e_floor_) side[ei] = -1;
    Outcome out;
    out.termination = ceres::CONVERGENCE;
    out.message = "all parameters on bounds";
    bool e_released = false;
    for (int pass = 0; pass < 4 * P; ++pass) {
      std::vector<int> held;
      for (int j = 0; j < P; ++j) {
        if (side[j] < 0) theta_[j] = lo[j];
        if (side[j] > 0) theta_[j] = hi[j];
        if (side[j] != 0) held.push_back(j);
      }
      if (static_cast<int>(held.size()) < P) {
        problem_->SetManifold(theta_, held.empty() ? nullptr : new ceres::SubsetManifold(P, held));
        Outcome o = Run(problem_.get(), theta_, /*polish=*/true);
        o.iterations += out.iterations;
        out = o;
        if (!std::isfinite(out.cost)) return out;
      }
      double f = 0;
      std::vector<double> g;
      if (!Gradient(&f, &g)) {
        out.cost = std::numeric_limits<double>::infinity();
        return out;
      }
      out.theta.assign(theta_, theta_ + P);
      out.cost = f;
      bool grew = false;
      for (int j = 0; j < P; ++j) {
        if (side[j] != 0) continue;
        if (near(theta_[j], lo[j], 1e-12))
          side[j] = -1, grew = true;
        else if (near(theta_[j], hi[j], 1e-12))
          side[j] = 1, grew = true;
      }
      // A free E that collapsed again (E < 1e-6 min L; the solve crawls in log E) joins the set
      // on its floor: what is left between there and the floor changes predictions by < 1e-6.
      if (side[ei] == 0 && lo[ei] == e_floor_ && theta_[ei] < e_floor_ + std::log(1e6))
        side[ei] = -1, grew = true;
      if (grew) continue;
      int worst = -1;
      double worst_v = 1e-9 * std::max(f, 1e-300);
      for (int j = 0; j < P; ++j) {
        if (side[j] == 0 || lo[j] == hi[j]) continue;  // free, or fixed
        // Decrease of f per unit inward move (inward: +1 from lo, -1 from hi), scaled by the
        // parameter's size. On E's floor the scale is the loss itself: there df/de = E df/dE
        // vanishes with E, so the test uses the natural slope df/dE = g_0 / E (times min L),
        // the quantity L-BFGS-B in natural units sees at E = 0.
        const bool on_floor = j == ei && side[ei] < 0 && lo[ei] == e_floor_;
        // E released from its floor once and back: its optimum is within the floor's 1e-6.
        if (on_floor && e_released) continue;
        const double v = on_floor ? side[j] * g[j] / std::exp(theta_[j]) * min_loss_
                                  : side[j] * g[j] * std::max(1.0, std::abs(theta_[j]));
        if (v > worst_v) worst = j, worst_v = v;
      }
      if (worst < 0) return out;  // KKT holds
      side[worst] = 0;
      if (worst == ei && lo[ei] == e_floor_ && theta_[ei] < e_floor_ + std::log(1e6)) {
        e_released = true;
        // E leaves its floor: in log E the way up is a plateau (df/de ~ E), so restart e at
        // the best of a few values E = c min L with the other parameters held.
        double best_f = f, best_e = theta_[ei];
        for (double c : {1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.95}) {
          theta_[ei] = std::min(std::log(c * min_loss_), hi[ei]);
          double fc = 0;
          std::vector<double> gc;
          if (Gradient(&fc, &gc) && fc < best_f) best_f = fc, best_e = theta_[ei];
        }
        theta_[ei] = best_e;
      }
    }
    out.termination = ceres::NO_CONVERGENCE;
    out.message =
        "active-set polish: KKT conditions not met after " + std::to_string(4 * P) + " passes";
    return out;
  }

  const Form& form_;
  int P_;   // parameters
  int ei_;  // theta index of E
  FitOptions opt_;
  BoxMap map_;                           // the user's bounds in theta
  double e_floor_ = 0;                   // log(1e-12 min L)
  double min_loss_ = 0;                  // min L of the data
  std::vector<double> box_lo_, box_hi_;  // map_'s bounds and the floor under e
  std::vector<int> held_;                // theta indices of FitOptions::fixed
  double theta_[kMaxParams] = {};
  double u_[kMaxParams] = {};
  std::unique_ptr<ceres::Problem> problem_;    // in theta, with box bounds
  std::unique_ptr<ceres::Problem> problem_u_;  // in u (BoxMap); only with bounds
};

std::string fmt_g(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

// The warning line of one identifiability flag.
std::string flag_text(const std::string& flag, const FitResult& r, const std::string& why) {
  if (flag == "E_collapsed")
    return "E collapsed to " + fmt_g(r.values[r.form->e_index()]) +
           " (< 1e-3 min loss): the irreducible loss is not identified by these points";
  if (flag == "ill_conditioned")
    return "ill-conditioned optimum (Jacobian condition number " + fmt_g(r.condition_number) +
           "): parameters trade off against each other";
  if (flag == "exact")
    return "exact fit: " + std::to_string(r.n_points) + " points for " +
           std::to_string(r.values.size()) + " parameters, no residual degrees of freedom";
  if (flag == "underdetermined") return "the points cannot identify the law: " + why;
  // "<name>_runaway" (a name may hold '_' itself).
  const std::string name = flag.substr(0, flag.rfind('_'));
  const bool exponent = r.form->params()[r.form->index(name)].role == Param::kExponent;
  return name + " ran off to " + fmt_g(r.value(name)) + (exponent ? " (> 2)" : " (> 1e10)") +
         ": exponent and coefficient trade off, the optimum is not a measurement";
}

void finish(const LawData& data, const LocalSolver& solver, const LocalSolver::Outcome& polished,
            FitResult* res) {
  res->form = data.form;
  res->names = data.form->names();
  res->theta = polished.theta;
  res->values = data.form->natural(polished.theta);
  res->objective = polished.cost;
  res->n_points = static_cast<int>(data.size());
  res->converged = polished.termination == ceres::CONVERGENCE;
  res->termination = polished.message;
  res->iterations = polished.iterations;
  if (!res->converged) res->warnings.push_back("fit did not converge (" + polished.message + ")");
  res->flags =
      identifiability_flags(data, res->theta, &res->condition_number, &res->dof, solver.held());
  const std::string why = underdetermined(data);
  if (!why.empty()) res->flags.push_back("underdetermined");
  for (const std::string& f : res->flags) res->warnings.push_back(flag_text(f, *res, why));
  for (size_t j = 0; j < res->theta.size(); ++j) {
    if (solver.lo()[j] == solver.hi()[j]) continue;  // fixed, not bounded
    for (double b : {solver.lo()[j], solver.hi()[j]}) {
      if (!std::isfinite(b)) continue;
      if (std::abs(res->theta[j] - b) <= 1e-6 * std::max(1.0, std::abs(b))) {
        res->bound_hit.push_back(res->names[j]);
        const bool is_log = data.form->is_log(static_cast<int>(j));
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

double FitResult::value(const std::string& name) const {
  for (size_t j = 0; j < names.size(); ++j)
    if (names[j] == name) return values[j];
  fail("no parameter '" + name + "' in this fit");
}

std::string underdetermined(const LawData& data) { return data.form->underdetermined(data); }

std::vector<std::string> identifiability_flags(const LawData& data,
                                               const std::vector<double>& theta,
                                               double* condition_number, int* dof,
                                               const std::vector<int>& held) {
  const Form& form = *data.form;
  const int P = form.num_params();
  const int n = static_cast<int>(data.size());
  SL_ASSERT(static_cast<int>(theta.size()) == P);
  std::vector<std::string> flags;
  const std::vector<double> v = form.natural(theta);
  const double min_loss = std::exp(*std::min_element(data.log_loss.begin(), data.log_loss.end()));
  if (v[form.e_index()] < 1e-3 * min_loss) flags.push_back("E_collapsed");
  for (int j = 0; j < P; ++j)
    if (form.params()[j].role == Param::kExponent && v[j] > 2)
      flags.push_back(form.params()[j].name + "_runaway");
  for (int j = 0; j < P; ++j)
    if (form.params()[j].role == Param::kCoefficient && v[j] > 1e10)
      flags.push_back(form.params()[j].name + "_runaway");
  // Weighted Jacobian of the log residuals, row i = sqrt(w_i) J_i, J_i = d log L(x_i) / d theta
  // (the form's; for a power-law sum (p_i0, p_i1, -p_i1 log x_1i, ...), p_ij the softmax weights
  // of its terms).
  Eigen::ArrayXd log_pred;
  Eigen::MatrixXd J;
  FormScratch scratch;
  const bool finite = form.evaluate(theta.data(), data, log_pred, J, scratch) && J.allFinite();
  if (finite)
    for (int i = 0; i < n; ++i) J.row(i) *= std::sqrt(data.weight[i]);
  // Only the free parameters' columns: a fixed one is not estimated.
  std::vector<int> cols;
  for (int j = 0; j < P; ++j)
    if (std::find(held.begin(), held.end(), j) == held.end()) cols.push_back(j);
  const int Pf = static_cast<int>(cols.size());
  double cond = std::numeric_limits<double>::infinity();
  if (finite && n >= Pf && Pf > 0) {
    Eigen::MatrixXd Jf(n, Pf);
    for (int c = 0; c < Pf; ++c) Jf.col(c) = J.col(cols[c]);
    Eigen::JacobiSVD<Eigen::MatrixXd> svd(Jf);
    const auto& sv = svd.singularValues();
    if (sv(Pf - 1) > 1e-300 && sv(0) / sv(Pf - 1) < 1e300) cond = sv(0) / sv(Pf - 1);
  }
  if (!(cond <= 1e8)) flags.push_back("ill_conditioned");
  const int d = n - Pf;
  if (d <= 0) flags.push_back("exact");
  if (condition_number) *condition_number = cond;
  if (dof) *dof = d;
  return flags;
}

LawData chinchilla_data(const Points& p) { return form("chinchilla").data(p); }

LawData data_law_data(const std::vector<double>& d, const std::vector<double>& loss,
                      const std::vector<double>& weight) {
  SL_ASSERT(d.size() == loss.size() && d.size() == weight.size());
  Points p;
  p.d = d;
  p.loss = loss;
  p.weight = weight;
  return form("data_law").data(p);
}

FitResult fit_law(const LawData& data, const FitOptions& options) {
  auto t0 = std::chrono::steady_clock::now();
  SL_ASSERT(data.form != nullptr);
  const int P = data.form->num_params();
  if (static_cast<int>(data.size()) < P)
    fail("fit: " + std::to_string(data.size()) + " points, fewer than the " + std::to_string(P) +
         " parameters");
  std::vector<std::vector<double>> starts =
      options.starts.empty() ? data.form->start_grid() : options.starts;
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

// The bootstrap's refit of a replicate: a local solve from the full-data optimum, and, where E
// ends collapsed (E < 1e-6 min L), also from E = c min L, c in {0.3, 0.6, 0.9}: a collapsed E
// sits on a plateau of log E (df/de ~ E) from which no local step climbs to a basin with E > 0
// that a refit in natural units can reach (L-BFGS-B does on the hybrid ladder of
// tests/fit/test_bounded.cc). The lowest f wins.
LocalSolver::Outcome refit(const LawData& rep, LocalSolver& solver,
                           const std::vector<double>& start) {
  LocalSolver::Outcome o = solver.Solve(start, /*polish=*/true);
  const double min_loss = std::exp(*std::min_element(rep.log_loss.begin(), rep.log_loss.end()));
  const int ei = rep.form->e_index();
  if (std::isfinite(o.cost) && std::exp(o.theta[ei]) >= 1e-6 * min_loss) return o;
  for (double c : {0.3, 0.6, 0.9}) {
    std::vector<double> s = start;
    s[ei] = std::log(c * min_loss);
    LocalSolver::Outcome q = solver.Solve(s, /*polish=*/true);
    if (q.cost < o.cost) o = std::move(q);
  }
  return o;
}

}  // namespace

LawData reweighted(const LawData& data, const std::vector<int>& counts) {
  SL_ASSERT(counts.size() == data.size());
  LawData r;
  r.form = data.form;
  r.x.resize(data.x.size());
  for (size_t i = 0; i < data.size(); ++i) {
    if (counts[i] == 0) continue;
    for (size_t k = 0; k < data.x.size(); ++k) r.x[k].push_back(data.x[k][i]);
    r.log_loss.push_back(data.log_loss[i]);
    r.weight.push_back(data.weight[i] * counts[i]);
  }
  return r;
}

LawData bootstrap_replicate(const LawData& data, uint64_t seed, uint64_t stream, int k) {
  Rng rng(seed, stream_id(stream, static_cast<uint64_t>(k)));
  const size_t n = data.size();
  std::vector<int> counts(n, 0);
  for (size_t i = 0; i < n; ++i) ++counts[rng.below(n)];
  return reweighted(data, counts);
}

FitResult bootstrap_refit(const LawData& rep, const FitOptions& options,
                          const std::vector<double>& start) {
  auto t0 = std::chrono::steady_clock::now();
  LocalSolver solver(rep, options);
  LocalSolver::Outcome o = refit(rep, solver, start);
  if (!std::isfinite(o.cost)) fail("fit: the objective is not finite at the start point");
  FitResult res;
  res.starts = 1;
  res.starts_at_best = 1;
  res.best_start = 0;
  finish(rep, solver, o, &res);
  res.seconds = seconds_since(t0);
  return res;
}

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
  b.status.assign(replicates, "ok");
  parallel_for(replicates, options.num_threads, [&](int k, int) {
    const LawData rep = bootstrap_replicate(data, seed, stream, k);
    // A resample that cannot identify the law has a set of optima, and whichever one the refit
    // stops at says nothing about the data: leave it out of the CIs and count it.
    if (!underdetermined(rep).empty()) {
      b.status[k] = "underdetermined";
      return;
    }
    LocalSolver solver(rep, options);
    LocalSolver::Outcome o = refit(rep, solver, full.theta);
    if (!std::isfinite(o.cost)) {
      b.status[k] = "failed";
      return;
    }
    b.samples[k] = data.form->natural(o.theta);
    std::vector<std::string> flags = identifiability_flags(rep, o.theta);
    auto has = [&](const std::string& suffix) {
      return std::any_of(flags.begin(), flags.end(), [&](const std::string& f) {
        return f.size() >= suffix.size() &&
               f.compare(f.size() - suffix.size(), suffix.size(), suffix) == 0;
      });
    };
    if (has("collapsed"))
      b.status[k] = "collapsed";
    else if (has("runaway"))
      b.status[k] = "runaway";
    else if (o.termination != ceres::CONVERGENCE)
      b.status[k] = "not_converged";
  });
  for (int k = 0; k < replicates; ++k) {
    const std::string& st = b.status[k];
    b.n_failed += st == "failed";
    b.n_underdetermined += st == "underdetermined";
    b.n_collapsed += st == "collapsed";
    b.n_runaway += st == "runaway";
    b.n_not_converged += st == "not_converged";
    b.n_used += std::isfinite(b.samples[k][0]);
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

std::vector<std::string> bootstrap_warnings(const BootstrapResult& b) {
  std::vector<std::string> w;
  const std::string of = " of " + std::to_string(b.n) + " ";
  if (b.n_underdetermined > 0)
    w.push_back(std::to_string(b.n_underdetermined) + of +
                "resamples cannot identify the law (too few distinct points, N or D): left out "
                "of the CIs");
  if (b.n_failed > 0) w.push_back(std::to_string(b.n_failed) + of + "refits failed");
  if (b.n_collapsed > 0)
    w.push_back(std::to_string(b.n_collapsed) + of + "refits have E collapsed to 0 (kept)");
  if (b.n_runaway > 0)
    w.push_back(std::to_string(b.n_runaway) + of +
                "refits have an exponent > 2 or a coefficient > 1e10 (kept)");
  if (b.n_not_converged > 0)
    w.push_back(std::to_string(b.n_not_converged) + of +
                "refits stopped at the iteration limit (kept)");
  return w;
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
