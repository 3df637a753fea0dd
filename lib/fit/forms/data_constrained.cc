// The data-constrained law of Muennighoff et al. (2023), "Scaling Data-Constrained Language
// Models" (NeurIPS 2023, arXiv:2305.16264): Chinchilla with the tokens D replaced by effective
// tokens D' that discount repeated epochs,
//
//   L(N, D, U) = E + A / N^alpha + B / D'^beta,
//   D'  = U + U R*_D (1 - exp(-R_D / R*_D)),     R_D = max(0, D / U - 1),
//
// U the unique training tokens a run saw and R_D its repetitions beyond the first epoch. A
// repeated token is worth dD'/dD = exp(-R_D / R*_D) of a fresh one, so R*_D is the e-folding
// number of repetitions, and D' < U (1 + R*_D) however long a run repeats its data. D <= U (one
// epoch or less) gives D' = D: Chinchilla. Muennighoff et al. fit R*_D = 15.4 (4 epochs worth
// almost 4 fresh ones).
//
// Only the data term is discounted: N' = N, their law with R*_N -> inf. Their effective
// parameters N' = U_N + U_N R*_N (1 - exp(-R_N / R*_N)), U_N = min(N_opt(U), N), R_N = N / U_N - 1,
// discount parameters beyond the compute-optimal size for the unique data; U_N comes from the
// law's own compute-optimal allocation (a fit inside the fit), and measuring R*_N needs sizes well
// beyond it at several repetition levels. A form with both terms would be another file here.
//
// theta = (e, a, alpha, b, beta, r), E = e^e, A = e^a, B = e^b, R*_D = e^r. With z = log D',
// the log prediction is the power-law sum LSE(e, a - alpha log N, b - beta z) (form.h power_sum)
// and, writing g = R*(1 - q), q = exp(-R_D / R*) (so D' = U (1 + g)),
//
//   dz/dr = R* dg/dR* / (1 + g) = (g - R_D q) / (1 + g),
//   d log L / dr = -beta p_2 dz/dr,
//
// the other columns as Chinchilla's with log D' for log D. 1 - q is computed as -expm1(-R/R*),
// exact where R_D << R*.
#include <set>

#include "fit/chinchilla.h"
#include "fit/form.h"

namespace sl::fit {

namespace {

class DataConstrainedForm final : public Form {
 public:
  std::string name() const override { return "data_constrained"; }
  std::string equation() const override {
    return "L(N, D, U) = E + A / N^alpha + B / D'^beta, D' = U + U R_D_star (1 - exp(-R_D / "
           "R_D_star)), R_D = D / U - 1";
  }
  const std::vector<Param>& params() const override {
    static const std::vector<Param> p = {
        {"E", Param::kLog, Param::kIrreducible},     {"A", Param::kLog, Param::kCoefficient},
        {"alpha", Param::kLinear, Param::kExponent}, {"B", Param::kLog, Param::kCoefficient},
        {"beta", Param::kLinear, Param::kExponent},  {"R_D_star", Param::kLog, Param::kOther}};
    return p;
  }
  // Columns: log N, log D, log U, R_D (D and U together name a point; R_D is what evaluate
  // reads).
  std::vector<std::string> covariates() const override { return {"N", "D", "U", "R_D"}; }
  std::vector<int> identifying() const override { return {0, 1}; }

  LawData data(const Points& p) const override {
    if (p.unique.size() != p.size())
      fail(
          "data_constrained fit: no unique-token counts U (give --unique-col; a collected sweep "
          "has unique_tokens)");
    require_points_of_n_and_d(p);
    // x = (log N, log D, log U, R_D = D / U - 1); U >= D: the run saw no token twice (U may count
    // the whole training split), R_D = 0.
    return law_data(
        p, [&](size_t i) { return std::log(p.n[i]); }, [&](size_t i) { return std::log(p.d[i]); },
        [&](size_t i) { return std::log(p.unique[i]); },
        [&](size_t i) { return std::max(0.0, p.d[i] / p.unique[i] - 1); });
  }

  bool evaluate(const double* theta, const LawData& d, Eigen::ArrayXd& log_pred,
                Eigen::MatrixXd& jac, FormScratch& s) const override {
    const Eigen::Index n = static_cast<Eigen::Index>(d.size());
    const Eigen::Map<const Eigen::ArrayXd> log_u(d.x[2].data(), n), rep(d.x[3].data(), n);
    const double r_star = std::exp(theta[5]);
    // aux columns: 0 one minus q = 1 - exp(-R_D / R*), 1 g = R* (1 - q), 2 z = log D', 3 dz/dr.
    s.aux.resize(n, 4);
    s.aux.col(0) = -((-rep / r_star).expm1());
    s.aux.col(1) = r_star * s.aux.col(0);
    s.aux.col(2) = log_u + s.aux.col(1).log1p();
    s.aux.col(3) = (s.aux.col(1) - rep * (1.0 - s.aux.col(0))) / (1.0 + s.aux.col(1));
    if (!s.aux.allFinite()) return false;
    const double* z[2] = {d.x[0].data(), &s.aux(0, 2)};
    if (!power_sum<2>(theta, {1, 3}, {2, 4}, z, n, log_pred, s.p)) return false;
    jac.resize(n, 6);
    jac.col(0) = s.p.col(0).matrix();
    for (int k = 0; k < 2; ++k) {
      jac.col(1 + 2 * k) = s.p.col(1 + k).matrix();
      jac.col(2 + 2 * k) = -(s.p.col(1 + k) * Eigen::Map<const Eigen::ArrayXd>(z[k], n)).matrix();
    }
    jac.col(5) = (-theta[4] * s.p.col(2) * s.aux.col(3)).matrix();
    return true;
  }

  // Hoffmann's grid for (E, A, alpha, B, beta) times R*_D in {2, 15, 100}: few, typical
  // (Muennighoff et al.'s 15.4) and barely discounting repetitions.
  std::vector<std::vector<double>> start_grid() const override {
    std::vector<std::vector<double>> g;
    for (const auto& t : hoffmann_grid(2))
      for (double r : {2.0, 15.0, 100.0}) {
        std::vector<double> s = t;
        s.push_back(std::log(r));
        g.push_back(s);
      }
    return g;
  }

  // R*_D is measured by the points that repeat their data: with none, D' = D whatever R*_D (its
  // Jacobian column vanishes); with one, R*_D passes through it.
  std::string underdetermined(const LawData& d) const override {
    std::string why = Form::underdetermined(d);
    if (!why.empty()) return why;
    std::set<std::vector<double>> repeated;
    for (size_t i = 0; i < d.size(); ++i)
      if (d.x[3][i] > 0) repeated.insert({d.x[0][i], d.x[1][i], d.x[2][i]});
    if (repeated.size() < 2)
      return std::to_string(repeated.size()) +
             " distinct points repeat their data (D > U; need 2 to measure R_D_star)";
    return "";
  }

  // The compute-optimal allocation with unlimited unique data (D' = D: Chinchilla's), and what
  // repetition is worth: effective epochs D' / U = 1 + R* (1 - exp(-(epochs - 1) / R*)) at a few
  // epoch counts, and their limit 1 + R*.
  nlohmann::ordered_json closed_forms(const std::vector<double>& v) const override {
    const double r_star = v[5];
    auto num = [](double x) {
      return std::isfinite(x) ? nlohmann::ordered_json(x) : nlohmann::ordered_json(nullptr);
    };
    nlohmann::ordered_json epochs = nlohmann::ordered_json::array();
    for (double e : {2.0, 4.0, 8.0, 16.0, 64.0})
      epochs.push_back(
          {{"epochs", e}, {"effective", num(1 + r_star * -std::expm1(-(e - 1) / r_star))}});
    return {{"compute_optimal", compute_optimal_json(Chinchilla::from_values(v))},
            {"repetition",
             {{"R_D_star", num(r_star)},
              {"max_effective_epochs", num(1 + r_star)},
              {"effective_epochs", epochs}}}};
  }
};

}  // namespace

SL_REGISTER_FORM(DataConstrainedForm)

}  // namespace sl::fit
