// Robust multi-start fits of scaling laws with Ceres, and their bootstrap, written once for every
// fit form (form.h: the law's parameters, theta maps, log prediction, starts, closed forms).
//
// For the power-law forms, e.g. Chinchilla, L(N, D) = E + A / N^alpha + B / D^beta, the fit is
// that of Hoffmann et al. (2022) and Besiroglu et al. (Epoch AI, 2024): with internal parameters
// theta (E = exp(e), A = exp(a), ...) the log residual of point i is
//
//   r_i(theta) = log L(x_i; theta) - log L_i = LSE(e, a - alpha log N_i, b - beta log D_i) - log
//   L_i
//
// (LSE = log-sum-exp), and the objective is the weighted Huber sum
//
//   f(theta) = sum_i w_i h(r_i),  h(r) = r^2 / 2 for |r| <= delta, delta (|r| - delta / 2) else,
//
// minimised from every point of the form's start grid (Hoffmann's 4,500 points for Chinchilla),
// keeping the best. f is the number Epoch AI reports as the objective (1.0183e-3 on the
// Chinchilla data).
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "fit/form.h"
#include "fit/points.h"

namespace sl::fit {

// Chinchilla data: x = (log N, log D) (form("chinchilla").data). Throws sl::Error if there are
// fewer points than the 5 parameters or fewer than 2 distinct N or D.
LawData chinchilla_data(const Points& p);
// Data law for one model size: x = log D (form("data_law")). Throws sl::Error if fewer than 3
// points or distinct D.
LawData data_law_data(const std::vector<double>& d, const std::vector<double>& loss,
                      const std::vector<double>& weight);

// How the Huber sum is handed to Ceres.
enum class Formulation {
  // One residual block with 1 + P residuals (P parameters). Residual 0 is sqrt(2 f), so that
  // Ceres' cost 1/2 |residuals|^2 is exactly f, with Jacobian row grad f / sqrt(2 f).
  // Residuals 1..P are
  // 0 with a Jacobian R, R^T R = sum_i w_i c_i J_i^T J_i, J_i = d r_i / d theta,
  //   c_i = h''(r_i) + h'(r_i)^2 / (2 h(r_i) + kappa):
  // the Gauss-Newton curvature of the Huber sum (points in the quadratic zone) plus a small
  // IRLS-like term for the linear zone that keeps the model positive far from an optimum. Exact
  // cost and gradient; a better curvature model than ceres::HuberLoss' (whose Triggs correction is
  // clamped for Huber, giving linear convergence), and O(P^2) work for Ceres per iteration.
  kCompressed,
  // One residual block per point (the form's log prediction of that point and its Jacobian) with
  // ceres::HuberLoss(delta) scaled by w_i: the textbook Ceres formulation, with Ceres' own
  // robust-loss curvature. Same objective, slower; kept as the reference.
  kPerPoint,
};

// Bounds on one natural parameter (a log-mapped one, E, A, B > 0, is bounded through its log).
struct Bound {
  double lo = -std::numeric_limits<double>::infinity();  // lower bound (natural units)
  double hi = std::numeric_limits<double>::infinity();   // upper bound (natural units)
  // The upper bound is the fitted data's lowest loss (OLMo-core's E <= min L, per data set; `hi`
  // is then ignored). `--bound E=0:min`.
  bool hi_is_min_loss = false;
};

struct FitOptions {
  double huber_delta = 1e-3;  // Huber threshold delta on log residuals (Hoffmann, Epoch AI)
  std::vector<std::vector<double>> starts;  // start points in theta; empty: the form's grid
  int num_threads = 0;       // threads for the start grid and the bootstrap; 0: all cores
  int max_iterations = 500;  // Ceres iterations per start (a start that hits it did not converge)
  double function_tolerance = 1e-8;   // grid starts: stop when |df| / f < this
  double parameter_tolerance = 1e-8;  // grid starts: stop when |dtheta| / |theta| < this
  double gradient_tolerance = 1e-12;  // stop when max |projected gradient| < this
  // The best start is then polished with these tighter tolerances; its termination decides
  // FitResult::converged. The bootstrap refits use them too.
  double polish_function_tolerance = 1e-12;   // |df| / f for the polish
  double polish_parameter_tolerance = 1e-10;  // |dtheta| / |theta| for the polish
  double best_rtol = 1e-5;  // a start ends "at the best" when f <= f_best (1 + best_rtol)
  double kappa = 1e-4;      // kappa of the compressed curvature model (see Formulation)
  Formulation formulation = Formulation::kCompressed;  // see Formulation
  std::map<std::string, Bound> bounds;  // by the form's parameter name ("E", "A", "alpha", ...)
  // Parameters held at a value (natural units, by name), e.g. {"alpha", 0.34} for a ladder whose
  // sizes are too few or too close to measure alpha. Not combinable with a bound on the same name.
  std::map<std::string, double> fixed;
};

struct FitResult {
  const Form* form = nullptr;      // the law fitted
  std::vector<std::string> names;  // natural parameter names (form->names())
  std::vector<double> theta;       // internal parameters at the optimum
  std::vector<double> values;      // natural parameters at the optimum, in names order
  double objective = 0;            // f at the optimum (weighted Huber sum)
  int n_points = 0;
  int starts = 0;                      // grid starts run
  int starts_at_best = 0;              // starts that ended within best_rtol of the best start's f
  int starts_failed = 0;               // starts whose evaluation failed (non-finite at the start)
  int starts_at_limit = 0;             // starts that stopped at max_iterations
  long grid_iterations = 0;            // Ceres iterations summed over the starts
  int best_start = -1;                 // index of the best start in the grid
  bool converged = false;              // the polished best start met a convergence criterion
  std::string termination;             // Ceres' message for the polished best start
  int iterations = 0;                  // Ceres iterations of the polish
  std::vector<std::string> bound_hit;  // parameters at (within 1e-6 of) a bound
  // Identifiability (identifiability_flags()): empty when the optimum is an ordinary one.
  std::vector<std::string> flags;
  // Condition number s_max / s_min of the weighted Jacobian diag(sqrt w) J of the log residuals
  // with respect to theta at the optimum (+inf when rank-deficient, e.g. fewer points than
  // parameters).
  double condition_number = std::nan("");
  int dof = 0;                                  // residual degrees of freedom: distinct points - P
  std::vector<std::string> warnings;            // not converged, bounds hit, flags: for stderr
  double seconds = 0;                           // wall time of the grid and the polish
  double value(const std::string& name) const;  // natural parameter by name
};

// Identifiability of an optimum theta of `data`, as flags (empty: none), by the roles of the
// form's parameters (form.h Param):
//   "E_collapsed"         E < 1e-3 min L: the irreducible loss has gone to 0 (its CI means
//                         nothing)
//   "<exponent>_runaway"  an exponent > 2 (the fit trades exponent against coefficient)
//   "<coefficient>_runaway"  a coefficient > 1e10
//   "ill_conditioned"     condition number of the weighted Jacobian > 1e8 (or rank-deficient)
//   "exact"               no residual degrees of freedom (distinct points <= P): the law passes
//                         through the points and nothing measures its error
// `condition_number` and `dof` receive the numbers behind the last two.
// `held`: theta indices held fixed (FitOptions::fixed), left out of the Jacobian and of P.
std::vector<std::string> identifiability_flags(const LawData& data,
                                               const std::vector<double>& theta,
                                               double* condition_number = nullptr,
                                               int* dof = nullptr,
                                               const std::vector<int>& held = {});

// Why a data set cannot identify its law at all ("" if it can): Form::underdetermined, e.g. for
// Chinchilla fewer distinct points than parameters, or fewer than 3 distinct N or D. With 2
// distinct N, E + A/N^alpha is seen at two values only, so (E, A, alpha) keep a free direction;
// likewise 2 distinct D leave E + B/D^beta a one-parameter family (shift a constant between E and
// the D term and refit B, beta through the two levels).
std::string underdetermined(const LawData& data);

// Multi-start fit. Throws sl::Error if no start produced a finite objective.
FitResult fit_law(const LawData& data, const FitOptions& options);

// One local solve from `start` (theta) with the polish tolerances; for tests and the bootstrap.
FitResult fit_law_from(const LawData& data, const FitOptions& options,
                       const std::vector<double>& start);

// The points of `data` drawn `counts[i]` times each: each drawn point once, its weight times its
// count (the same objective as the list with duplicates, with less work).
LawData reweighted(const LawData& data, const std::vector<int>& counts);
// Bootstrap replicate k of `data`: n points drawn with replacement from Rng(seed,
// stream_id(stream, k)), as bootstrap_law draws them (other fits of the same replicate, e.g. the
// sensitivity rows of savings.h, resample through this).
LawData bootstrap_replicate(const LawData& data, uint64_t seed, uint64_t stream, int k);
// The bootstrap's refit of one replicate's data from `start` (the full-data optimum): fit_law_from,
// plus restarts with E = 0.3, 0.6, 0.9 min L where E ends collapsed; the lowest f wins.
FitResult bootstrap_refit(const LawData& replicate, const FitOptions& options,
                          const std::vector<double>& start);

struct BootstrapResult {
  int n = 0;  // replicates
  uint64_t seed = 0;
  uint64_t stream = 0;      // replicate k draws from Rng(seed, stream_id(stream, k))
  int n_failed = 0;         // replicates whose refit failed (their samples are NaN)
  int n_not_converged = 0;  // replicates that stopped at max_iterations (kept)
  // Replicates whose resample cannot identify the law (underdetermined(): fewer distinct points
  // than parameters, too few distinct N or D, ...): not refitted, samples NaN, outside every CI.
  int n_underdetermined = 0;
  int n_collapsed = 0;  // refits with E_collapsed (kept, counted apart)
  int n_runaway = 0;    // refits with a runaway exponent or coefficient (kept, counted apart)
  int n_used = 0;       // replicates behind the CIs (finite samples)
  // Per replicate: "ok", "not_converged", "collapsed", "runaway", "underdetermined", "failed"
  // (the first that applies, in the order underdetermined, failed, collapsed, runaway,
  // not_converged).
  std::vector<std::string> status;
  std::vector<std::string> names;
  std::vector<std::vector<double>> samples;  // [replicate][parameter], natural values
  std::vector<double> se;                    // standard deviation over replicates (ddof 1)
  std::vector<double> ci_lo, ci_hi;          // 2.5% and 97.5% percentiles (linear interpolation)
  double seconds = 0;
};

// Resamples the points with replacement (replicate k from Rng(seed, stream_id(stream, k)), so
// results do not depend on the thread count) and refits each replicate from `full.theta` with
// the polish tolerances.
BootstrapResult bootstrap_law(const LawData& data, const FitResult& full, const FitOptions& options,
                              int replicates, uint64_t seed, uint64_t stream = 0);

// Warning lines for a bootstrap's replicates that were left out or are suspect ("N of K ...").
std::vector<std::string> bootstrap_warnings(const BootstrapResult& b);

// Percentile q in [0, 1] of the non-NaN values of `v` (linear interpolation between order
// statistics, as numpy's default; +-inf values take part in the order); NaN if there are none.
double percentile(std::vector<double> v, double q);

// Runs fn(task) for task in [0, n) on `threads` threads (0: all cores); rethrows the first error.
void parallel_for(int n, int threads, const std::function<void(int task, int thread)>& fn);

}  // namespace sl::fit
