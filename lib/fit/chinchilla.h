// Closed forms derived from a fitted Chinchilla law L(N, D) = E + A / N^alpha + B / D^beta and from
// a per-size data law L_N(D) = E_N + B_N / D^beta_N.
#pragma once
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "fit/law.h"

namespace sl::fit {

struct Chinchilla {
  double E = 0, A = 0, alpha = 0, B = 0, beta = 0;

  // From natural values in param_names(2) order (E, A, alpha, B, beta).
  static Chinchilla from_values(const std::vector<double>& v) {
    return {v[0], v[1], v[2], v[3], v[4]};
  }
  static Chinchilla from(const FitResult& r) { return from_values(r.values); }

  double loss(double n, double d) const {
    return E + A / std::pow(n, alpha) + B / std::pow(d, beta);
  }
  // The loss at size N with unlimited data: E + A / N^alpha. Targets at or below it are
  // unreachable.
  double floor(double n) const { return E + A / std::pow(n, alpha); }
  // Tokens D to reach loss `target` at size N: (B / (target - floor(N)))^(1 / beta); +inf where
  // unreachable (target <= floor(N)).
  double tokens_for_loss(double n, double target) const {
    double gap = target - floor(n);
    if (!(gap > 0)) return std::numeric_limits<double>::infinity();
    return std::pow(B / gap, 1.0 / beta);
  }

  // Compute-optimal allocation for C = 6 N D (Hoffmann et al., appendix D.2): minimising L at
  // fixed C gives N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b with G = (alpha A / (beta B))^(1/(alpha +
  // beta)), a = beta / (alpha + beta), b = alpha / (alpha + beta); then
  // L_opt(C) = E + K (C/6)^-gamma with gamma = alpha beta / (alpha + beta), K = A G^-alpha + B
  // G^beta.
  double G() const { return std::pow(alpha * A / (beta * B), 1.0 / (alpha + beta)); }
  double a() const { return beta / (alpha + beta); }
  double b() const { return alpha / (alpha + beta); }
  double gamma() const { return alpha * beta / (alpha + beta); }
  double K() const { return A * std::pow(G(), -alpha) + B * std::pow(G(), beta); }
  double n_opt(double c) const { return G() * std::pow(c / 6.0, a()); }
  double d_opt(double c) const { return std::pow(c / 6.0, b()) / G(); }
  double loss_opt(double c) const { return E + K() * std::pow(c / 6.0, -gamma()); }
  // Compute on the compute-optimal frontier to reach `target`: 6 (K / (target - E))^(1/gamma);
  // +inf where unreachable (target <= E).
  double compute_for_loss(double target) const {
    double gap = target - E;
    if (!(gap > 0)) return std::numeric_limits<double>::infinity();
    return 6.0 * std::pow(K() / gap, 1.0 / gamma());
  }
};

// fit.json's "compute_optimal": {"G", "a", "b", "gamma", "K"} (null where not finite).
inline nlohmann::ordered_json compute_optimal_json(const Chinchilla& c) {
  auto num = [](double v) {
    return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
  };
  return {{"G", num(c.G())},
          {"a", num(c.a())},
          {"b", num(c.b())},
          {"gamma", num(c.gamma())},
          {"K", num(c.K())}};
}

// L_N(D) = E + B / D^beta for one model size.
struct DataLaw {
  double E = 0, B = 0, beta = 0;
  static DataLaw from_values(const std::vector<double>& v) { return {v[0], v[1], v[2]}; }
  double loss(double d) const { return E + B / std::pow(d, beta); }
  // (B / (target - E))^(1 / beta); +inf where target <= E.
  double tokens_for_loss(double target) const {
    double gap = target - E;
    if (!(gap > 0)) return std::numeric_limits<double>::infinity();
    return std::pow(B / gap, 1.0 / beta);
  }
};

}  // namespace sl::fit
