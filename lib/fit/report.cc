#include "fit/report.h"

#include <cmath>

#include "fit/chinchilla.h"

namespace sl::fit {

using json = nlohmann::ordered_json;

json num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json fit_json(const FitResult& fit, const BootstrapResult* boot, double huber_delta) {
  json j;
  SL_ASSERT(fit.form != nullptr);
  j["form"] = fit.form->name();
  j["n_points"] = fit.n_points;
  json params = json::object();
  for (size_t k = 0; k < fit.names.size(); ++k) params[fit.names[k]] = num(fit.values[k]);
  j["params"] = params;
  j["objective"] = num(fit.objective);
  j["huber_delta"] = huber_delta;
  j["starts"] = fit.starts;
  j["starts_at_best"] = fit.starts_at_best;
  j["starts_failed"] = fit.starts_failed;
  j["starts_at_limit"] = fit.starts_at_limit;
  j["grid_iterations"] = fit.grid_iterations;
  j["converged"] = fit.converged;
  j["termination"] = fit.termination;
  j["iterations"] = fit.iterations;
  j["bound_hit"] = fit.bound_hit;
  j["flags"] = fit.flags;
  j["identifiable"] = fit.flags.empty();
  j["condition_number"] = num(fit.condition_number);
  j["dof"] = fit.dof;
  j["warnings"] = fit.warnings;
  j["seconds"] = fit.seconds;
  // The form's closed forms, e.g. Chinchilla's "compute_optimal": {"G", "a", "b", "gamma", "K"}.
  const json closed = fit.form->closed_forms(fit.values);
  for (const auto& [key, value] : closed.items()) j[key] = value;
  if (boot && boot->n > 0) {
    json se = json::object(), ci = json::object();
    for (size_t k = 0; k < boot->names.size(); ++k) {
      se[boot->names[k]] = num(boot->se[k]);
      ci[boot->names[k]] = json::array({num(boot->ci_lo[k]), num(boot->ci_hi[k])});
    }
    j["bootstrap"] = {{"n", boot->n},
                      {"seed", boot->seed},
                      {"se", se},
                      {"ci95", ci},
                      {"used", boot->n_used},
                      {"failed", boot->n_failed},
                      {"not_converged", boot->n_not_converged},
                      {"underdetermined", boot->n_underdetermined},
                      {"collapsed", boot->n_collapsed},
                      {"runaway", boot->n_runaway},
                      {"seconds", boot->seconds}};
  }
  return j;
}

namespace {

json ratio_json(const Ratio& r, const char* value_key, const char* base_key, const char* cand_key,
                bool with_boot) {
  json j;
  j[value_key] = num(r.value);
  j["status"] = r.status;
  j[base_key] = num(r.baseline);
  j[cand_key] = num(r.candidate);
  if (with_boot) {
    if (r.status == "ok") {
      j["ci95"] = json::array({num(r.ci_lo), num(r.ci_hi)});
    } else {
      j["ci95"] = nullptr;
      j["ci95_note"] = "no CI: the ratio is undefined at the full-data fit (" + r.status + ")";
    }
    j["ci95_replicates"] = r.boot_n;
    if (r.status == "ok" && std::isinf(r.ci_hi))
      j["ci95_note"] =
          "upper bound unbounded: L* was unreachable for the baseline in more than "
          "2.5% of the bootstrap replicates";
    j["bootstrap"] = {{"ok", r.boot_ok},
                      {"unreachable_baseline", r.boot_unreachable_baseline},
                      {"unreachable_candidate", r.boot_unreachable_candidate},
                      {"unreachable_both", r.boot_unreachable_both}};
  }
  return j;
}

}  // namespace

json savings_json(const SavingsResult& r, double huber_delta) {
  const bool boot = r.bootstrap > 0;
  json j;
  j["baseline"] = r.baseline.name;
  j["candidate"] = r.candidate.name;
  j["target_loss"] = r.target_loss;
  j["target_rule"] = r.target_rule;
  json pts = json::array();
  for (const SavingsPoint& p : r.points) {
    json q = {{"n", p.n}, {"extrapolation", p.extrapolation}};
    q.update(ratio_json(p.savings, "savings", "tokens_baseline", "tokens_candidate", boot));
    q["loss_floor_baseline"] = num(p.floor_baseline);
    q["loss_floor_candidate"] = num(p.floor_candidate);
    pts.push_back(q);
  }
  j["points"] = pts;
  j["trained_n"] = json::array({num(r.n_trained_min), num(r.n_trained_max)});
  // S(n_hi) / S(n_lo) over the trained range (SavingsGrowth).
  j["growth"] = {{"n_lo", num(r.growth.n_lo)},
                 {"n_hi", num(r.growth.n_hi)},
                 {"value", num(r.growth.value)},
                 {"verdict", r.growth.verdict}};
  if (boot) {
    j["growth"].update({{"ci95", json::array({num(r.growth.ci_lo), num(r.growth.ci_hi)})},
                        {"ci95_replicates", r.growth.boot_n}});
    if (std::isinf(r.growth.ci_hi))
      j["growth"]["ci95_note"] =
          "upper bound unbounded: S at the smaller N was zero (L* unreachable for the candidate) "
          "or "
          "S at the larger N unbounded in more than 2.5% of the replicates";
  }
  j["compute_multiplier"] =
      ratio_json(r.compute_multiplier, "value", "compute_baseline", "compute_candidate", boot);
  json co = json::object(), fits = json::object(), per = json::object();
  for (const ArchFit* a : {&r.baseline, &r.candidate}) {
    Chinchilla c = Chinchilla::from(a->fit);
    json table = json::array();
    for (double cc : r.at_c)
      table.push_back({{"c", cc},
                       {"n_opt", num(c.n_opt(cc))},
                       {"d_opt", num(c.d_opt(cc))},
                       {"loss", num(c.loss_opt(cc))}});
    co[a->name] = {{"G", num(c.G())},
                   {"a", num(c.a())},
                   {"b", num(c.b())},
                   {"compute_at_target", num(c.compute_for_loss(r.target_loss))},
                   {"points", table}};
    json f = fit_json(a->fit, boot ? &a->boot : nullptr, huber_delta);
    f["n_dropped_status"] = a->points.n_dropped_status;
    f["n_dropped_highest"] = a->points.n_dropped_highest;
    fits[a->name] = f;
    json sizes = json::array();
    for (const PerSizeFit& s : a->sizes) {
      json e = {{"size", s.key}, {"n", s.n}, {"n_points", s.n_points}};
      if (!s.skipped.empty()) {
        e["skipped"] = s.skipped;
      } else {
        e["E"] = num(s.fit.value("E"));
        e["B"] = num(s.fit.value("B"));
        e["beta"] = num(s.fit.value("beta"));
        e["objective"] = num(s.fit.objective);
        e["converged"] = s.fit.converged;
        e["exact"] = s.exact;
        e["dof"] = s.fit.dof;
        e["flags"] = s.fit.flags;
        e["bound_hit"] = s.fit.bound_hit;
        e["tokens_at_target"] = num(s.tokens_at_target);
      }
      sizes.push_back(e);
    }
    per[a->name] = sizes;
  }
  json ps = json::array();
  for (const PerSizeSavings& s : r.per_size) {
    json e = {{"size", s.key}, {"n_baseline", s.n_baseline}, {"n_candidate", s.n_candidate}};
    e.update(ratio_json(s.savings, "savings", "tokens_baseline", "tokens_candidate", false));
    ps.push_back(e);
  }
  per["savings"] = ps;
  if (!r.sensitivity.empty()) {
    json sens = json::array();
    for (const SensitivityRow& row : r.sensitivity) {
      json e = {{"model", row.model},
                {"n_params", row.n_params},
                {"objective", num(row.objective)},
                {"converged", row.converged}};
      for (const char* name : {"E", "A", "alpha", "B", "beta"})
        e[name] = {{r.baseline.name, num(row.baseline.value(name))},
                   {r.candidate.name, num(row.candidate.value(name))}};
      e["flags"] = {{r.baseline.name, row.baseline.flags}, {r.candidate.name, row.candidate.flags}};
      json pts = json::array();
      for (size_t k = 0; k < row.savings.size(); ++k) {
        json q = {{"n", r.points[k].n}};
        q.update(
            ratio_json(row.savings[k], "savings", "tokens_baseline", "tokens_candidate", boot));
        pts.push_back(q);
      }
      e["points"] = pts;
      if (boot)
        e["bootstrap"] = {{"n", r.bootstrap},
                          {"used", row.boot_used},
                          {"underdetermined", row.boot_underdetermined},
                          {"failed", row.boot_failed}};
      sens.push_back(e);
    }
    j["sensitivity"] = sens;
  }
  j["compute_optimal"] = co;
  j["fits"] = fits;
  j["per_size"] = per;
  j["bootstrap"] = {{"n", r.bootstrap}, {"seed", r.seed}};
  j["warnings"] = r.warnings;
  j["seconds"] = r.seconds;
  return j;
}

}  // namespace sl::fit
