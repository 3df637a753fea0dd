// `scalinglab fit <form>|savings`: scaling-law fits with Ceres, bootstrap CIs and the token-savings
// factor S(N) of a candidate arch over a baseline (docs/DESIGN.md "Fitting"). Every registered fit
// form (lib/fit/forms: chinchilla, data_law, data_constrained) is a subcommand of its own.
//
//   scalinglab fit chinchilla --data FILE.{csv,h5} [--n-col C] [--d-col C | --flops-col C]
//       [--loss-col C] [--group-col arch --group VALUE] [--bootstrap K] [--seed S] --out fit.json
//   scalinglab fit data_constrained --data FILE [column options] [--unique-col unique_tokens]
//       [--bootstrap K] --out fit.json
//   scalinglab fit savings --data FILE [column options] --group-col arch --baseline dense
//       --candidate hybrid [--target-loss median|min|VALUE] [--at-n N1,N2 (default: trained sizes
//       and 10x)] [--max-extrapolation 10] [--bootstrap K] [--seed S] --out savings.json
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "fit/form.h"
#include "fit/law.h"
#include "fit/points.h"
#include "fit/report.h"
#include "fit/savings.h"
#include "fit/table.h"

namespace sl::cli {

namespace {

// Options shared by both subcommands.
struct FitArgs {
  std::string data, out;
  fit::DataSpec spec;
  std::vector<std::string> bounds, fixed;
  int bootstrap = 0;
  uint64_t seed = 0;
  int threads = 0;
  double huber_delta = 1e-3;
  int max_iterations = 500;
  std::string formulation = "compressed";
  bool quiet = false;
  // savings only
  std::string baseline = "dense", candidate = "hybrid", target = "median";
  std::vector<double> at_n;  // empty: the trained sizes and 10x the largest
  double max_extrapolation = 10;
  std::vector<double> at_c = {1e18, 1e19, 1e20, 1e21, 1e22, 1e23, 1e24};
  bool no_per_size = false;
  bool sensitivity = false;
  double sensitivity_alpha = 0.34;
};

double parse_bound_value(const std::string& s, const std::string& arg, double dflt) {
  if (s.empty()) return dflt;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0' || std::isnan(v))
    fail("--bound " + arg + ": '" + s + "' is not a number");
  return v;
}

fit::FitOptions fit_options(const FitArgs& a) {
  fit::FitOptions o;
  o.huber_delta = a.huber_delta;
  o.num_threads = a.threads;
  o.max_iterations = a.max_iterations;
  if (!(a.huber_delta > 0)) fail("--huber-delta must be > 0");
  if (a.max_iterations < 1) fail("--max-iterations must be >= 1");
  if (a.formulation == "compressed")
    o.formulation = fit::Formulation::kCompressed;
  else if (a.formulation == "per-point")
    o.formulation = fit::Formulation::kPerPoint;
  else
    fail("--formulation: '" + a.formulation + "' is not compressed or per-point");
  for (const std::string& b : a.bounds) {
    // NAME=LO:HI, either side may be empty (unbounded).
    size_t eq = b.find('='), colon = b.find(':', eq == std::string::npos ? 0 : eq);
    if (eq == std::string::npos || colon == std::string::npos)
      fail("--bound " + b + ": expected NAME=LO:HI, e.g. alpha=0:2 or E=1:");
    std::string name = b.substr(0, eq);
    fit::Bound bound;
    bound.lo = parse_bound_value(b.substr(eq + 1, colon - eq - 1), b, bound.lo);
    const std::string hi = b.substr(colon + 1);
    if (hi == "min")
      bound.hi_is_min_loss = true;  // E=0:min: at most the lowest loss of the data fitted
    else
      bound.hi = parse_bound_value(hi, b, bound.hi);
    o.bounds[name] = bound;
  }
  for (const std::string& f : a.fixed) {
    // NAME=VALUE.
    const size_t eq = f.find('=');
    if (eq == std::string::npos || eq + 1 >= f.size())
      fail("--fix " + f + ": expected NAME=VALUE, e.g. alpha=0.34");
    const std::string v = f.substr(eq + 1);
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || *end != '\0' || !std::isfinite(x))
      fail("--fix " + f + ": '" + v + "' is not a finite number");
    o.fixed[f.substr(0, eq)] = x;
  }
  return o;
}

// Writes `j` to `path` through a temporary file and a rename, so an existing file is replaced
// whole or not at all.
void write_json(const std::string& path, const nlohmann::ordered_json& j) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) fail(path + ": cannot write (" + std::strerror(errno) + ")");
    out << j.dump(2) << "\n";
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      fail(path + ": write failed");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string err = std::strerror(errno);
    std::remove(tmp.c_str());
    fail(path + ": cannot write (" + err + ")");
  }
}

nlohmann::ordered_json data_json(const FitArgs& a, const fit::Points* p) {
  nlohmann::ordered_json d = {
      {"file", a.data}, {"n_col", a.spec.n_col}, {"loss_col", a.spec.loss_col}};
  if (a.spec.flops_col.empty())
    d["d_col"] = a.spec.d_col;
  else
    d["flops_col"] = a.spec.flops_col;
  if (!a.spec.group_col.empty()) d["group_col"] = a.spec.group_col;
  if (!a.spec.group.empty()) d["group"] = a.spec.group;
  if (!a.spec.weight_col.empty()) d["weight_col"] = a.spec.weight_col;
  if (!a.spec.unique_col.empty()) d["unique_col"] = a.spec.unique_col;
  d["flops_weighted"] = a.spec.flops_weighted;
  d["drop_highest"] = a.spec.drop_highest;
  if (p) {
    d["n_rows"] = p->n_rows_total;
    d["n_dropped_status"] = p->n_dropped_status;
    d["n_dropped_highest"] = p->n_dropped_highest;
  }
  return d;
}

void warn(const std::vector<std::string>& warnings) {
  for (const std::string& w : warnings)
    std::fprintf(stderr, "scalinglab fit: warning: %s\n", w.c_str());
}

// "S(1e+08)": a column head of the sensitivity table.
std::string fmt_n(double n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "S(%.3g)", n);
  return buf;
}

void run_form(const fit::Form& form, const FitArgs& a) {
  fit::FitOptions opt = fit_options(a);
  if (!a.spec.group_col.empty() && a.spec.group.empty())
    fail("fit " + form.name() + ": --group-col " + a.spec.group_col + " needs --group VALUE");
  if (a.bootstrap < 0) fail("--bootstrap must be >= 0");
  fit::Table table = fit::read_table(a.data);
  fit::Points p = fit::extract_points(table, a.spec);
  fit::LawData data = form.data(p);
  fit::FitResult res = fit::fit_law(data, opt);
  fit::BootstrapResult boot;
  if (a.bootstrap > 0) boot = fit::bootstrap_law(data, res, opt, a.bootstrap, a.seed);
  nlohmann::ordered_json j = fit::fit_json(res, &boot, opt.huber_delta);
  j["data"] = data_json(a, &p);
  std::vector<std::string> warnings = res.warnings;
  for (const std::string& w : fit::bootstrap_warnings(boot)) warnings.push_back("bootstrap: " + w);
  j["warnings"] = warnings;
  write_json(a.out, j);
  warn(warnings);
  if (!a.quiet) {
    std::printf("%s fit of %d points:", form.name().c_str(), res.n_points);
    for (size_t k = 0; k < res.names.size(); ++k)
      std::printf(k == 0 ? " %s %.4g" : "  %s %.4g", res.names[k].c_str(), res.values[k]);
    std::printf("\n");
    std::string flags;
    for (const std::string& f : res.flags) flags += (flags.empty() ? "" : ", ") + f;
    std::printf("objective %.6g, %d of %d starts at the best, %s, %s, %.2f s", res.objective,
                res.starts_at_best, res.starts, res.converged ? "converged" : "NOT converged",
                flags.empty() ? "identifiable" : ("NOT identifiable: " + flags).c_str(),
                res.seconds);
    if (boot.n > 0) std::printf("; bootstrap %d refits %.2f s", boot.n, boot.seconds);
    std::printf(" -> %s\n", a.out.c_str());
  }
}

void run_savings(const FitArgs& a) {
  fit::SavingsOptions o;
  o.fit = fit_options(a);
  o.baseline = a.baseline;
  o.candidate = a.candidate;
  o.target = a.target;
  o.at_n = a.at_n;
  o.max_extrapolation = a.max_extrapolation;
  o.at_c = a.at_c;
  o.bootstrap = a.bootstrap;
  o.seed = a.seed;
  o.per_size = !a.no_per_size;
  o.sensitivity = a.sensitivity;
  o.sensitivity_alpha = a.sensitivity_alpha;
  if (a.spec.group_col.empty()) fail("fit savings: --group-col is required (e.g. arch)");
  if (!a.spec.group.empty()) fail("fit savings: use --baseline/--candidate, not --group");
  if (a.bootstrap < 0) fail("--bootstrap must be >= 0");
  fit::Table table = fit::read_table(a.data);
  fit::SavingsResult r = fit::savings_analysis(table, a.spec, o);
  nlohmann::ordered_json j = fit::savings_json(r, o.fit.huber_delta);
  j["data"] = data_json(a, nullptr);
  write_json(a.out, j);
  warn(r.warnings);
  if (!a.quiet) {
    std::printf("token savings %s over %s at L* = %.4g (%s):\n", a.candidate.c_str(),
                a.baseline.c_str(), r.target_loss, r.target_rule.c_str());
    for (const fit::SavingsPoint& p : r.points) {
      if (p.savings.status == "ok")
        std::printf("  N = %-9.3g S = %.3f", p.n, p.savings.value);
      else
        std::printf("  N = %-9.3g S undefined (%s)", p.n, p.savings.status.c_str());
      // No CI where S is undefined; every CI says how many replicates it rests on.
      if (r.bootstrap > 0 && p.savings.status == "ok")
        std::printf("  95%% CI [%.3f, %.3f] (%d of %d replicates)", p.savings.ci_lo,
                    p.savings.ci_hi, p.savings.boot_n, r.bootstrap);
      if (p.extrapolation > 1)
        std::printf("  extrapolated %.3gx%s", p.extrapolation,
                    p.extrapolation > a.max_extrapolation ? " (WARNING: beyond the guard)" : "");
      std::printf("\n");
    }
    if (r.growth.verdict != "undefined") {
      std::printf("  growth S(%.3g) / S(%.3g) = %.3f", r.growth.n_hi, r.growth.n_lo,
                  r.growth.value);
      if (r.growth.verdict != "no CI")
        std::printf("  95%% CI [%.3f, %.3f] (%d of %d replicates)", r.growth.ci_lo, r.growth.ci_hi,
                    r.growth.boot_n, r.bootstrap);
      std::printf(": %s\n", r.growth.verdict.c_str());
    }
    if (r.compute_multiplier.status == "ok")
      std::printf("  compute multiplier at equal loss %.3f\n", r.compute_multiplier.value);
    if (!r.sensitivity.empty()) {
      // Each S with its 95% CI and the replicates the CI rests on.
      std::printf("sensitivity of S to the model%s:\n  %-24s %6s",
                  r.bootstrap > 0 ? " (95% CI, replicates)" : "", "model", "params");
      const int w = r.bootstrap > 0 ? 30 : 11;
      for (const fit::SavingsPoint& p : r.points) std::printf("  %-*s", w, fmt_n(p.n).c_str());
      std::printf("\n");
      for (const fit::SensitivityRow& row : r.sensitivity) {
        std::printf("  %-24s %6d", row.model.c_str(), row.n_params);
        for (const fit::Ratio& s : row.savings) {
          char cell[96];
          if (s.status != "ok")
            std::snprintf(cell, sizeof cell, "undefined");
          else if (r.bootstrap > 0)
            std::snprintf(cell, sizeof cell, "%.3f [%.3f, %.3f] (%d)", s.value, s.ci_lo, s.ci_hi,
                          s.boot_n);
          else
            std::snprintf(cell, sizeof cell, "%.3f", s.value);
          std::printf("  %-*s", w, cell);
        }
        std::printf("\n");
      }
    }
    std::printf("%.2f s -> %s\n", r.seconds, a.out.c_str());
  }
}

// Options common to every subcommand; `names`: the fitted form's parameters, for --bound's help.
void add_common(CLI::App* cmd, FitArgs* a, const std::string& names) {
  cmd->add_option("--data", a->data, "Data: CSV with named columns, or a collected sweep.h5")
      ->required();
  cmd->add_option("--out", a->out, "Output JSON file")->required();
  cmd->add_option("--n-col", a->spec.n_col, "Column of N (parameters)")->capture_default_str();
  auto* d =
      cmd->add_option("--d-col", a->spec.d_col, "Column of D (tokens)")->capture_default_str();
  auto* c = cmd->add_option("--flops-col", a->spec.flops_col,
                            "Column of compute C; D = C / (6 N) (instead of --d-col)");
  d->excludes(c);
  cmd->add_option("--loss-col", a->spec.loss_col, "Column of the loss")->capture_default_str();
  cmd->add_option("--group-col", a->spec.group_col, "Column naming the architecture (e.g. arch)");
  cmd->add_option("--weight-col", a->spec.weight_col, "Column of per-point weights (> 0)");
  cmd->add_flag("--flops-weighted", a->spec.flops_weighted,
                "Weight each point by its compute 6 N D (as OLMo-core's ladder analysis)");
  cmd->add_option("--status-col", a->spec.status_col,
                  "Drop rows whose value here is not 'completed' (if the column exists)")
      ->capture_default_str();
  cmd->add_option("--drop-highest", a->spec.drop_highest,
                  "Drop the K highest-loss points (Epoch AI's Chinchilla analysis drops 5)");
  cmd->add_option("--bound", a->bounds,
                  "Bound a parameter: NAME=LO:HI (" + names +
                      "; a side may be empty; HI = min: the lowest loss fitted, e.g. E=0:min)");
  cmd->add_option("--fix", a->fixed,
                  "Hold a parameter at a value: NAME=VALUE (e.g. alpha=0.34 for a ladder whose "
                  "sizes cannot measure alpha)");
  cmd->add_option("--seed", a->seed, "Bootstrap seed")->capture_default_str();
  cmd->add_option("--threads", a->threads, "Threads (default: all cores)");
  cmd->add_option("--huber-delta", a->huber_delta, "Huber threshold on log residuals")
      ->capture_default_str();
  cmd->add_option("--max-iterations", a->max_iterations, "Ceres iterations per start")
      ->capture_default_str();
  cmd->add_option("--formulation", a->formulation,
                  "compressed (fast) | per-point (ceres::HuberLoss per point, reference)")
      ->capture_default_str();
  cmd->add_flag("--quiet", a->quiet, "No summary on stdout");
}

}  // namespace

void register_fit(CLI::App& app) {
  CLI::App* fit = app.add_subcommand("fit", "Fit scaling laws (Ceres) and token savings");
  fit->require_subcommand(1);

  // One subcommand per fit form.
  for (const fit::Form* form : fit::all_forms()) {
    auto ca = std::make_shared<FitArgs>();
    CLI::App* cmd = fit->add_subcommand(form->name(),
                                        form->equation() + "; Huber sum on log residuals, " +
                                            std::to_string(form->start_grid().size()) + " starts");
    add_common(cmd, ca.get(), form->name_list());
    const std::vector<std::string> cov = form->covariates();
    if (std::find(cov.begin(), cov.end(), "U") != cov.end()) {
      ca->spec.unique_col = "unique_tokens";
      cmd->add_option("--unique-col", ca->spec.unique_col,
                      "Column of U, the unique training tokens each run saw (sweep collect "
                      "writes unique_tokens)")
          ->capture_default_str();
    }
    cmd->add_option("--group", ca->spec.group, "Fit the rows with this value of --group-col");
    cmd->add_option("--bootstrap", ca->bootstrap, "Bootstrap replicates (0: none)")
        ->capture_default_str();
    cmd->callback([ca, form]() { run_form(*form, *ca); });
  }

  auto sa = std::make_shared<FitArgs>();
  sa->bootstrap = 1000;
  CLI::App* sav = fit->add_subcommand(
      "savings", "Token-savings factor S(N) = D_baseline(N, L*) / D_candidate(N, L*) with CIs");
  add_common(sav, sa.get(), fit::form("chinchilla").name_list());
  sav->add_option("--baseline", sa->baseline, "Baseline group value")->capture_default_str();
  sav->add_option("--candidate", sa->candidate, "Candidate group value")->capture_default_str();
  sav->add_option("--target-loss", sa->target, "L*: median | min | a loss value")
      ->capture_default_str();
  sav->add_option("--at-n", sa->at_n,
                  "Model sizes N for S(N), comma-separated (default: the trained sizes and 10x "
                  "the largest)")
      ->delimiter(',');
  sav->add_option("--max-extrapolation", sa->max_extrapolation,
                  "Warn for S(N) at N more than this factor outside the trained sizes")
      ->capture_default_str();
  sav->add_option("--at-c", sa->at_c, "Compute values C for N_opt(C), D_opt(C), comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  sav->add_option("--size-col", sa->spec.size_cols,
                  "Columns naming a model size for the per-size data laws, comma-separated, e.g. "
                  "d_model,n_layers (default: the column 'size' if the table has one, else N)")
      ->delimiter(',');
  sav->add_flag("--no-per-size", sa->no_per_size, "Skip the per-size data laws");
  sav->add_flag("--sensitivity", sa->sensitivity,
                "Also S under Huber delta 0.1, shared E, shared E and alpha, fixed alpha (each "
                "with paired-bootstrap CIs)");
  sav->add_option("--sensitivity-alpha", sa->sensitivity_alpha,
                  "alpha of the fixed-alpha sensitivity row")
      ->capture_default_str();
  sav->add_option("--bootstrap", sa->bootstrap, "Paired bootstrap replicates (0: no CIs)")
      ->capture_default_str();
  sav->callback([sa]() { run_savings(*sa); });
}

}  // namespace sl::cli
