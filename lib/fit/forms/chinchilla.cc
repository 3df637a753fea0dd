// The Chinchilla law (Hoffmann et al. 2022, fitted as Besiroglu et al. 2024 refit it):
//
//   L(N, D) = E + A / N^alpha + B / D^beta,   theta = (e, a, alpha, b, beta),
//   E = e^e, A = e^a, B = e^b,
//
// whose log prediction is LSE(e, a - alpha log N, b - beta log D) (form.h power_sum), with
// Jacobian (p_0, p_1, -p_1 log N, p_2, -p_2 log D), p_k the softmax weights of the three terms.
// Hoffmann's 4,500-point start grid; closed forms: the compute-optimal allocation (chinchilla.h).

#include "fit/chinchilla.h"
#include "fit/form.h"

namespace sl::fit {

namespace {

class ChinchillaForm final : public Form {
 public:
  std::string name() const override { return "chinchilla"; }
  std::string equation() const override { return "L(N, D) = E + A / N^alpha + B / D^beta"; }
  const std::vector<Param>& params() const override {
    static const std::vector<Param> p = {{"E", Param::kLog, Param::kIrreducible},
                                         {"A", Param::kLog, Param::kCoefficient},
                                         {"alpha", Param::kLinear, Param::kExponent},
                                         {"B", Param::kLog, Param::kCoefficient},
                                         {"beta", Param::kLinear, Param::kExponent}};
    return p;
  }
  std::vector<std::string> covariates() const override { return {"N", "D"}; }
  std::vector<int> identifying() const override { return {0, 1}; }

  // x = (log N, log D). Fewer points than the 5 parameters, or one N or one D, cannot be fitted.
  LawData data(const Points& p) const override {
    require_points_of_n_and_d(p);
    return law_data(
        p, [&](size_t i) { return std::log(p.n[i]); }, [&](size_t i) { return std::log(p.d[i]); });
  }

  bool evaluate(const double* theta, const LawData& d, Eigen::ArrayXd& log_pred,
                Eigen::MatrixXd& jac, FormScratch& s) const override {
    const Eigen::Index n = static_cast<Eigen::Index>(d.size());
    const double* z[2] = {d.x[0].data(), d.x[1].data()};
    if (!power_sum<2>(theta, {1, 3}, {2, 4}, z, n, log_pred, s.p)) return false;
    jac.resize(n, 5);
    jac.col(0) = s.p.col(0).matrix();
    for (int k = 0; k < 2; ++k) {
      jac.col(1 + 2 * k) = s.p.col(1 + k).matrix();
      jac.col(2 + 2 * k) = -(s.p.col(1 + k) * Eigen::Map<const Eigen::ArrayXd>(z[k], n)).matrix();
    }
    return true;
  }

  std::vector<std::vector<double>> start_grid() const override { return hoffmann_grid(2); }

  nlohmann::ordered_json closed_forms(const std::vector<double>& v) const override {
    return {{"compute_optimal", compute_optimal_json(Chinchilla::from_values(v))}};
  }
};

}  // namespace

SL_REGISTER_FORM(ChinchillaForm)

}  // namespace sl::fit
