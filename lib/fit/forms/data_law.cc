// The per-size data law: one model size's loss against its token budget,
//
//   L_N(D) = E + B / D^beta,   theta = (e, b, beta),   E = e^e, B = e^b,
//
// the one-term case of the power-law sum (form.h power_sum): log prediction LSE(e, b - beta log
// D), Jacobian (p_0, p_1, -p_1 log D). Hoffmann's grid for one term (150 starts). fit savings
// fits one per size and architecture as a model-free check of S(N) (savings.h).
#include <set>

#include "fit/form.h"

namespace sl::fit {

namespace {

class DataLawForm final : public Form {
 public:
  std::string name() const override { return "data_law"; }
  std::string equation() const override { return "L(D) = E + B / D^beta"; }
  const std::vector<Param>& params() const override {
    static const std::vector<Param> p = {{"E", Param::kLog, Param::kIrreducible},
                                         {"B", Param::kLog, Param::kCoefficient},
                                         {"beta", Param::kLinear, Param::kExponent}};
    return p;
  }
  std::vector<std::string> covariates() const override { return {"D"}; }
  std::vector<int> identifying() const override { return {0}; }

  // x = (log D); N is not read. Fewer than 3 distinct budgets cannot be fitted.
  LawData data(const Points& p) const override {
    SL_ASSERT(p.d.size() == p.loss.size() && p.d.size() == p.weight.size());
    const size_t distinct = std::set<double>(p.d.begin(), p.d.end()).size();
    if (p.size() < 3 || distinct < 3)
      fail("data law fit: " + std::to_string(distinct) +
           " distinct token budgets, fewer than its 3 parameters (E, B, beta)");
    for (size_t i = 0; i < p.size(); ++i)
      if (!(p.d[i] > 0) || !(p.loss[i] > 0) || !(p.weight[i] > 0) || !std::isfinite(p.d[i]) ||
          !std::isfinite(p.loss[i]))
        fail("data law fit: point " + std::to_string(i) +
             " has a non-positive or non-finite value");
    return law_data(p, [&](size_t i) { return std::log(p.d[i]); });
  }

  bool evaluate(const double* theta, const LawData& d, Eigen::ArrayXd& log_pred,
                Eigen::MatrixXd& jac, FormScratch& s) const override {
    const Eigen::Index n = static_cast<Eigen::Index>(d.size());
    const double* z[1] = {d.x[0].data()};
    if (!power_sum<1>(theta, {1}, {2}, z, n, log_pred, s.p)) return false;
    jac.resize(n, 3);
    jac.col(0) = s.p.col(0).matrix();
    jac.col(1) = s.p.col(1).matrix();
    jac.col(2) = -(s.p.col(1) * Eigen::Map<const Eigen::ArrayXd>(z[0], n)).matrix();
    return true;
  }

  std::vector<std::vector<double>> start_grid() const override { return hoffmann_grid(1); }
};

}  // namespace

SL_REGISTER_FORM(DataLawForm)

}  // namespace sl::fit
