// A fit form: one scaling law as the fitter sees it. law.h fits any form, bootstraps it and flags
// its identifiability; report.h writes it; `scalinglab fit <name>` exposes it. Each form is one
// file in lib/fit/forms/ that registers itself (SL_REGISTER_FORM) and that nothing else names, so
// adding a form is adding that file (docs/FITS.md "Fit forms").
//
// A form fixes
//   - its parameters: natural names in theta order, each with its map from the internal theta the
//     solver moves (natural = exp(theta) for a positive quantity, E = e^e, A = e^a; natural =
//     theta for an exponent) and its role (irreducible loss, coefficient, exponent), which the
//     identifiability flags read;
//   - its covariates: the per-point quantities it takes from Points (N, D, unique tokens U), in
//     whatever representation it evaluates fastest (logs, repetition counts);
//   - its log prediction log L(x_i; theta) and the Jacobian d log L(x_i; theta) / d theta,
//     vectorised over points; the fitter's log residual is r_i = log L(x_i; theta) - log L_i;
//   - its start grid; when a data set cannot identify it; the closed forms reported with a fit.
//
// Nothing here may need a symbol of sl_fit's own archive: the forms library is linked whole
// (lib/CMakeLists.txt) after sl_fit, and uses only this header's inline code.
#pragma once
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "fit/points.h"

namespace sl::fit {

class Form;

// The most parameters a form may have (fixed-capacity buffers of the cost functions).
constexpr int kMaxFormParams = 12;

// The data of one fit, as its form stores it.
struct LawData {
  const Form* form = nullptr;
  std::vector<std::vector<double>>
      x;                         // x[k][i]: covariate column k (Form::covariates()) of point i
  std::vector<double> log_loss;  // log L_i
  std::vector<double> weight;    // w_i > 0
  size_t size() const { return log_loss.size(); }
};

// Work arrays of Form::evaluate, owned by the caller and reused between calls (no allocation once
// they have their size).
struct FormScratch {
  Eigen::ArrayXXd p, aux;
};

// One parameter of a form.
struct Param {
  // How the internal theta_j maps to the natural value: kLog, natural = exp(theta_j) (a positive
  // quantity; bounds apply through the log); kLinear, natural = theta_j.
  enum Map { kLog, kLinear };
  // What the identifiability flags check: kIrreducible (E: "E_collapsed" below 1e-3 min L; the
  // E floor and restarts of law.cc), kCoefficient ("<name>_runaway" above 1e10), kExponent
  // ("<name>_runaway" above 2), kOther (nothing).
  enum Role { kIrreducible, kCoefficient, kExponent, kOther };
  std::string name;
  Map map = kLinear;
  Role role = kOther;
};

class Form {
 public:
  virtual ~Form() = default;

  // The form's name: `scalinglab fit <name>`, fit.json "form".
  virtual std::string name() const = 0;
  // The law as one line of text, e.g. "L(N, D) = E + A / N^alpha + B / D^beta".
  virtual std::string equation() const = 0;
  // Parameters in theta order. Exactly one has role kIrreducible, map kLog.
  virtual const std::vector<Param>& params() const = 0;
  // Names of the covariate columns of LawData::x, for messages ("N", "D", ...).
  virtual std::vector<std::string> covariates() const = 0;
  // The form's data from points: checks that the form can be fitted at all (enough points, the
  // quantities it needs), throwing sl::Error naming the form.
  virtual LawData data(const Points& p) const = 0;
  // At theta (internal, params() order): log_pred(i) = log L(x_i; theta) and, row i of jac (n x
  // P), d log L(x_i; theta) / d theta. `scratch` is the caller's, reused between calls. Returns
  // false where the prediction is not finite.
  virtual bool evaluate(const double* theta, const LawData& d, Eigen::ArrayXd& log_pred,
                        Eigen::MatrixXd& jac, FormScratch& scratch) const = 0;
  // Start points in theta for the multi-start fit.
  virtual std::vector<std::vector<double>> start_grid() const = 0;
  // Why `d` cannot identify the form at all ("" if it can). The default: fewer distinct points
  // than parameters, or fewer than 3 distinct values of a covariate in identifying(): with 2
  // distinct N, E + A/N^alpha is seen at two values only and (E, A, alpha) keep a free direction.
  virtual std::string underdetermined(const LawData& d) const {
    std::set<std::vector<double>> points;
    for (size_t i = 0; i < d.size(); ++i) {
      std::vector<double> x;
      for (const auto& col : d.x) x.push_back(col[i]);
      points.insert(x);
    }
    const int P = num_params();
    if (static_cast<int>(points.size()) < P)
      return std::to_string(points.size()) + " distinct points for " + std::to_string(P) +
             " parameters";
    const std::vector<std::string> names = covariates();
    for (int k : identifying()) {
      const int n = static_cast<int>(std::set<double>(d.x[k].begin(), d.x[k].end()).size());
      if (n < 3) return std::to_string(n) + " distinct " + names[k] + " (need 3)";
    }
    return "";
  }
  // Covariate columns that need 3 distinct values (default underdetermined()).
  virtual std::vector<int> identifying() const = 0;
  // Closed forms derived from fitted natural values, merged into fit.json (e.g. Chinchilla's
  // "compute_optimal"); none by default.
  virtual nlohmann::ordered_json closed_forms(const std::vector<double>& /*values*/) const {
    return nlohmann::ordered_json::object();
  }

  int num_params() const { return static_cast<int>(params().size()); }
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (const Param& p : params()) n.push_back(p.name);
    return n;
  }
  // "E, A, alpha, B, beta", for messages.
  std::string name_list() const {
    std::string s;
    for (const Param& p : params()) s += (s.empty() ? "" : ", ") + p.name;
    return s;
  }
  // What a form of N and D checks in data(): at least as many points as parameters, and two or
  // more distinct N and D (throws naming the form, e.g. "chinchilla fit: ...").
  void require_points_of_n_and_d(const Points& p) const {
    const std::string law = name() + " fit: ";
    if (static_cast<int>(p.size()) < num_params())
      fail(law + std::to_string(p.size()) + " points, fewer than its " +
           std::to_string(num_params()) + " parameters (" + name_list() + ")");
    if (std::set<double>(p.n.begin(), p.n.end()).size() < 2)
      fail(law + "all points have the same N; need >= 2 sizes");
    if (std::set<double>(p.d.begin(), p.d.end()).size() < 2)
      fail(law + "all points have the same D; need >= 2 budgets");
  }
  // LawData of this form: columns[k](i) is covariate k of point i; the log losses and weights
  // from the points.
  template <class... Column>
  LawData law_data(const Points& p, Column... columns) const {
    LawData d;
    d.form = this;
    d.x.resize(sizeof...(Column));
    for (size_t i = 0; i < p.size(); ++i) {
      size_t k = 0;
      ((d.x[k++].push_back(columns(i))), ...);
      d.log_loss.push_back(std::log(p.loss[i]));
      d.weight.push_back(p.weight[i]);
    }
    return d;
  }
  // theta index of `name`, -1 if the form has no such parameter.
  int index(const std::string& name) const {
    const auto& ps = params();
    for (size_t j = 0; j < ps.size(); ++j)
      if (ps[j].name == name) return static_cast<int>(j);
    return -1;
  }
  // theta index of the irreducible loss E.
  int e_index() const {
    const auto& ps = params();
    for (size_t j = 0; j < ps.size(); ++j)
      if (ps[j].role == Param::kIrreducible) return static_cast<int>(j);
    fail("internal error: form " + name() + " has no irreducible loss");
  }
  bool is_log(int j) const { return params()[j].map == Param::kLog; }
  // Natural values from theta, and back.
  std::vector<double> natural(const std::vector<double>& theta) const {
    SL_ASSERT(static_cast<int>(theta.size()) == num_params());
    std::vector<double> v(theta.size());
    for (size_t j = 0; j < v.size(); ++j) v[j] = is_log(j) ? std::exp(theta[j]) : theta[j];
    return v;
  }
  std::vector<double> internal(const std::vector<double>& natural) const {
    SL_ASSERT(static_cast<int>(natural.size()) == num_params());
    std::vector<double> t(natural.size());
    for (size_t j = 0; j < t.size(); ++j) t[j] = is_log(j) ? std::log(natural[j]) : natural[j];
    return t;
  }
};

// The registry: every form of lib/fit/forms, by name.
inline std::map<std::string, const Form*>& form_registry() {
  static std::map<std::string, const Form*> r;
  return r;
}
// The form called `name`; throws sl::Error listing the known ones.
inline const Form& form(const std::string& name) {
  const auto& r = form_registry();
  const auto it = r.find(name);
  if (it != r.end()) return *it->second;
  std::string all;
  for (const auto& [n, f] : r) all += (all.empty() ? "" : ", ") + n;
  fail("no fit form '" + name + "' (forms: " + all + ")");
}
// Every registered form, by name.
inline std::vector<const Form*> all_forms() {
  std::vector<const Form*> v;
  for (const auto& [n, f] : form_registry()) v.push_back(f);
  return v;
}
// A static instance registers its form at program start (SL_REGISTER_FORM).
struct FormRegistration {
  explicit FormRegistration(const Form* f) {
    // Checked at startup: a malformed form is a bug in its file, not bad input.
    int irreducible = 0;
    for (const Param& p : f->params())
      irreducible += p.role == Param::kIrreducible && p.map == Param::kLog;
    const char* why = irreducible != 1                   ? "needs one log-mapped irreducible loss E"
                      : f->num_params() > kMaxFormParams ? "has too many parameters"
                      : form_registry().count(f->name()) ? "is registered twice"
                      : f->name() == "savings"           ? "takes the name of `fit savings`"
                                                         : nullptr;
    if (why) {
      std::fprintf(stderr, "scalinglab: internal error: fit form '%s' %s\n", f->name().c_str(),
                   why);
      std::abort();
    }
    form_registry()[f->name()] = f;
  }
};
#define SL_REGISTER_FORM(Type)                                        \
  namespace {                                                         \
  const Type sl_form_instance_;                                       \
  const ::sl::fit::FormRegistration sl_form_reg_{&sl_form_instance_}; \
  }

// Hoffmann et al.'s start grid in theta for E + sum_k A_k / x_k^alpha_k, theta = (e, a_1,
// alpha_1, ..., a_T, alpha_T): alpha_k in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1}, a_k in {0, 5,
// ..., 25}: 5 * 5 * 5 * 6 * 6 = 4,500 starts for T = 2, 150 for T = 1.
inline std::vector<std::vector<double>> hoffmann_grid(int terms) {
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

// The power-law sum shared by the forms here: at every point
//
//   L = E + sum_k C_k / X_k^g_k = exp(e) + sum_k exp(c_k - g_k z_k),   z_k = log X_k,
//
// with theta entries e = theta[0], c_k = theta[c[k]], g_k = theta[g[k]] and z_k the n values at
// z[k]. Writes log L to log_pred and the softmax weights p_0 = E / L, p_k = (C_k / X_k^g_k) / L
// to columns 0..K of p, from which the Jacobian follows:
//
//   d log L / de = p_0,   d log L / dc_k = p_k,   d log L / dg_k = -p_k z_k
//
// (and the chain rule through z_k where X_k itself depends on theta, e.g. effective data).
// Direct evaluation, falling back per point to the log-sum-exp with the largest exponent shifted
// out where a term overflows. Returns false if log L is not finite.
template <int K>
inline bool power_sum(const double* theta, const int (&c)[K], const int (&g)[K],
                      const double* const (&z)[K], Eigen::Index n, Eigen::ArrayXd& log_pred,
                      Eigen::ArrayXXd& p) {
  p.resize(n, K + 2);  // columns 0..K: the terms (then their weights); K + 1: their sum
  auto s = p.col(K + 1);
  p.col(0).setConstant(std::exp(theta[0]));
  s = p.col(0);
  for (int k = 0; k < K; ++k) {
    p.col(k + 1) = (theta[c[k]] - theta[g[k]] * Eigen::Map<const Eigen::ArrayXd>(z[k], n)).exp();
    s += p.col(k + 1);
  }
  log_pred = s.log();
  if (!log_pred.allFinite() || !(s > 0).all()) {
    for (Eigen::Index i = 0; i < n; ++i) {
      double u[K + 1];
      u[0] = theta[0];
      for (int k = 0; k < K; ++k) u[k + 1] = theta[c[k]] - theta[g[k]] * z[k][i];
      const double m = *std::max_element(u, u + K + 1);
      p(i, K + 1) = 0;
      for (int k = 0; k <= K; ++k) {
        p(i, k) = std::exp(u[k] - m);
        p(i, K + 1) += p(i, k);
      }
      log_pred[i] = m + std::log(p(i, K + 1));
    }
    if (!log_pred.allFinite()) return false;
  }
  // The weights p_ik = term_ik / L_i.
  const Eigen::ArrayXd inv = s.inverse();
  for (int k = 0; k <= K; ++k) p.col(k) *= inv;
  return true;
}

}  // namespace sl::fit
