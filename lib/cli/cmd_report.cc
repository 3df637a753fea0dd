// `scalinglab report SWEEP --out DIR`: fits, figures (gnuplot), params.tex and report.md of a
// collected sweep (lib/report/report.h lists the files).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "report/report.h"

namespace sl::cli {

void register_report(CLI::App& app) {
  struct Args {
    std::string sweep, out;
    std::vector<std::string> bounds;
    report::ReportOptions o;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "report", "Figures, LaTeX table and report.md of a collected sweep (sweep.h5/sweep.csv)");
  cmd->add_option("SWEEP", a->sweep, "Sweep directory (after `sweep collect`)")->required();
  cmd->add_option("--out", a->out, "Output directory (created)")->required();
  cmd->add_option("--baseline", a->o.baseline, "Baseline arch (default dense, else the first)");
  cmd->add_option("--candidate", a->o.candidate,
                  "Candidate arch (default hybrid, else the second)");
  cmd->add_option("--bootstrap", a->o.bootstrap, "Paired bootstrap replicates")
      ->capture_default_str();
  cmd->add_option("--seed", a->o.seed, "Bootstrap seed")->capture_default_str();
  cmd->add_option("--threads", a->o.threads, "Fit threads (default: all cores)");
  cmd->add_option("--huber-delta", a->o.huber_delta,
                  "Huber threshold of the fits on log residuals (larger: closer to least "
                  "squares, for ladders with few points)")
      ->capture_default_str();
  cmd->add_option("--sensitivity-alpha", a->o.sensitivity_alpha,
                  "alpha of the fixed-alpha row of the sensitivity table")
      ->capture_default_str();
  cmd->add_option("--bound", a->bounds,
                  "Bound a Chinchilla parameter: NAME=LO:HI (E, A, B, alpha, beta; a side may be "
                  "empty; HI = min: each architecture's lowest loss, e.g. E=0:min)");
  cmd->add_flag(
      "--no-render", [a](int64_t) { a->o.render = false; },
      "Write the gnuplot scripts and data only");
  cmd->callback([a]() {
    if (!(a->o.huber_delta > 0)) fail("--huber-delta must be > 0");
    for (const std::string& b : a->bounds) {
      // NAME=LO:HI, either side may be empty (unbounded).
      const size_t eq = b.find('='), colon = b.find(':', eq == std::string::npos ? 0 : eq);
      if (eq == std::string::npos || colon == std::string::npos)
        fail("--bound " + b + ": expected NAME=LO:HI, e.g. alpha=0:2 or E=1:");
      auto side = [&](const std::string& v, double dflt) {
        if (v.empty()) return dflt;
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0' || std::isnan(x))
          fail("--bound " + b + ": '" + v + "' is not a number");
        return x;
      };
      // HI = min: the lowest loss of each architecture's data (ReportOptions::bounds uses NaN).
      const std::string hi = b.substr(colon + 1);
      a->o.bounds[b.substr(0, eq)] = {
          side(b.substr(eq + 1, colon - eq - 1), -std::numeric_limits<double>::infinity()),
          hi == "min" ? std::nan("") : side(hi, std::numeric_limits<double>::infinity())};
    }
    report::ReportResult r = report::write_report(a->sweep, a->out, a->o);
    for (const std::string& w : r.warnings)
      std::fprintf(stderr, "scalinglab report: warning: %s\n", w.c_str());
    std::printf("report: %zu files -> %s/report.md\n", r.files.size(), a->out.c_str());
  });
}

}  // namespace sl::cli
